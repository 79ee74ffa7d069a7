// The search page: upload a photo, pick a face, browse the nearest expressions; album summary.
"use strict";
const $ = (id) => document.getElementById(id);
let upload = null;  // the last upload's answer, with results for every face

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function k() { return Math.max(1, Math.min(100, parseInt($("k").value, 10) || 12)); }

// "among": everyone, or one person found by `fecsearch people`
function person() { return $("person").value ? `&person=${encodeURIComponent($("person").value)}` : ""; }

async function loadPeople() {
  try {
    const answer = await api("/api/people");
    for (const p of answer.people) {
      const option = document.createElement("option");
      option.value = String(p.id);
      option.textContent = `${p.name || `person ${p.id}`} (${p.faces} faces)`;
      $("person").append(option);
    }
  } catch (err) { /* an index without people: "everyone" is the only choice */ }
}

function resultButton(r, caption) {
  const button = document.createElement("button");
  button.className = "result";
  button.dataset.faceId = r.face_id;
  button.title = `${r.path}\nface ${r.face_id}: more like this`;
  const img = document.createElement("img");
  img.src = r.thumbnail; img.alt = `face ${r.face_id}`; img.loading = "lazy";
  const text = document.createElement("div");
  text.className = "caption"; text.textContent = caption;
  button.append(img, text);
  button.addEventListener("click", () => moreLike(r.face_id));
  return button;
}

function showResults(results) {
  $("results-title").hidden = results.length === 0;
  $("results").replaceChildren(...results.map(
    (r) => resultButton(r, `#${r.rank} d=${r.distance.toFixed(3)}`)));
}

function showFaces(answer, chosen) {
  const photo = $("photo");
  photo.querySelectorAll(".face-box").forEach((b) => b.remove());
  answer.faces.forEach((f) => {
    const [x1, y1, x2, y2] = f.box;
    const box = document.createElement("button");
    box.className = "face-box";
    box.dataset.face = f.face;
    box.setAttribute("aria-pressed", String(f.face === chosen));
    box.setAttribute("aria-label", `face ${f.face} (detection ${(f.probability * 100).toFixed(0)}%)`);
    Object.assign(box.style, {
      left: `${(100 * x1) / answer.width}%`, top: `${(100 * y1) / answer.height}%`,
      width: `${(100 * (x2 - x1)) / answer.width}%`, height: `${(100 * (y2 - y1)) / answer.height}%`,
    });
    const tag = document.createElement("span");
    tag.textContent = f.face;
    box.append(tag);
    box.addEventListener("click", () => chooseFace(f.face));
    photo.append(box);
  });
}

function chooseFace(face) {
  showFaces(upload, face);
  showResults(upload.faces[face].results);
  say(`face ${face} of ${upload.faces.length}: ${upload.faces[face].results.length} nearest expressions`);
}

async function search(file) {
  if (!file) return;
  $("query-face").hidden = true;
  $("photo-img").src = URL.createObjectURL(file);
  $("photo").hidden = false;
  $("photo").querySelectorAll(".face-box").forEach((b) => b.remove());
  showResults([]);
  say(`looking for faces in ${file.name} ...`);
  const form = new FormData();
  form.append("image", file);
  try {
    const cropped = $("cropped").checked ? "&cropped=1" : "";
    upload = await api(`/api/search?k=${k()}&all=1${cropped}${person()}`, { method: "POST", body: form });
  } catch (err) {
    $("photo").hidden = true;
    say(err.message, true);
    return;
  }
  if (upload.faces.length === 0) { say(`no face found in ${file.name}`); return; }
  chooseFace(upload.face);
}

async function moreLike(faceId) {
  selectTab("search");
  say(`searching from face ${faceId} ...`);
  try {
    const answer = await api(`/api/faces/${faceId}/similar?k=${k()}${person()}`);
    $("photo").hidden = true;
    $("query-face").hidden = false;
    $("query-face-id").textContent = faceId;
    $("query-face-img").src = `/api/faces/${faceId}/thumbnail`;
    showResults(answer.results);
    say(`${answer.results.length} expressions nearest to face ${faceId} (${answer.path})`);
    const first = $("results").querySelector("button");
    if (first) first.focus();
  } catch (err) { say(err.message, true); }
}

async function summarise() {
  const n = Math.max(1, Math.min(100, parseInt($("clusters").value, 10) || 10));
  $("summary-status").textContent = "clustering the album ...";
  try {
    const answer = await api(`/api/summary?n=${n}`);
    $("summary").replaceChildren(...answer.clusters.map(
      (c) => resultButton(c, `${c.size} face${c.size === 1 ? "" : "s"}`)));
    $("summary-status").textContent =
      `${answer.faces} faces in ${answer.clusters.length} expressions; each shows its most typical face`;
  } catch (err) { $("summary-status").textContent = err.message; }
}

function selectTab(name) {
  for (const other of ["search", "summary"]) {
    $(`tab-${other}`).setAttribute("aria-selected", String(other === name));
    $(`panel-${other}`).hidden = other !== name;
  }
  if (name === "summary" && !$("summary").children.length) summarise();
}

$("tab-search").addEventListener("click", () => selectTab("search"));
$("tab-summary").addEventListener("click", () => selectTab("summary"));
$("summary-refresh").addEventListener("click", summarise);
$("file").addEventListener("change", (e) => search(e.target.files[0]));
const drop = $("drop");
drop.tabIndex = 0;
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  search(e.dataTransfer.files[0]);
});
api("/api/info").then((info) => {
  $("index-info").textContent = `${info.faces} faces in ${info.images} images · ${info.model}`;
}).catch((err) => say(err.message, true));
loadPeople();
