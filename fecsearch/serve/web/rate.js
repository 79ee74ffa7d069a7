// The rating page: the people judge of `fecsearch bench rank-diff`, one question at a time.
"use strict";
const $ = (id) => document.getElementById(id);
let rater = null;
let question = null;
let sending = false;

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function show(state) {
  $("progress-text").textContent = `${state.answered} of ${state.total} pairs answered by ${state.rater}`;
  $("progress").max = state.total;
  $("progress").value = state.answered;
  question = state.question;
  $("question").hidden = !question;
  document.querySelectorAll(".answer[id^=answer]").forEach((b) => { b.hidden = !question; });
  $("done").hidden = Boolean(question);
  if (question) {
    $("query").src = question.query_image;
    $("left").src = question.left_image;
    $("right").src = question.right_image;
  }
}

async function start(name) {
  rater = name;
  localStorage.setItem("fecsearch-rater", name);
  try {
    show(await api(`/api/rating/next?rater=${encodeURIComponent(name)}`));
    $("who").hidden = true;
    $("board").hidden = false;
    $("answer-same").focus();
  } catch (err) { $("status").textContent = err.message; }
}

async function answer(choice) {
  if (!question || sending) return;
  sending = true;
  try {
    show(await api("/api/rating/vote", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater, pair: question.pair, left: question.left, right: question.right, answer: choice }),
    }));
    $("status").textContent = "";
  } catch (err) { $("status").textContent = err.message; }
  sending = false;
}

$("who").addEventListener("submit", (e) => { e.preventDefault(); start($("rater").value.trim()); });
$("answer-left").addEventListener("click", () => answer("left"));
$("answer-right").addEventListener("click", () => answer("right"));
$("answer-same").addEventListener("click", () => answer("same"));
$("pick-left").addEventListener("click", () => answer("left"));
$("pick-right").addEventListener("click", () => answer("right"));
document.addEventListener("keydown", (e) => {
  if ($("board").hidden || e.target.tagName === "INPUT") return;
  const choice = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "same", s: "same", S: "same" }[e.key];
  if (choice) { e.preventDefault(); answer(choice); }
});
$("rater").value = localStorage.getItem("fecsearch-rater") || "";
api("/api/rating").then((info) => {
  if (!info.enabled) { $("off").hidden = false; $("who").hidden = true; }
}).catch((err) => { $("status").textContent = err.message; });
