"""The search and rating pages, driven in headless Chromium (Debian's package) by Playwright."""
import os
import shutil
import sqlite3

import pytest
from conftest import STUDY, run_cli

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    """Debian's chromium; missing fails under CI (.ci/run installs it) and skips elsewhere."""
    path = os.environ.get("FECSEARCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        message = "chromium is not installed (apt-get install chromium); the page tests need it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, errors


def test_search_page_upload_click_a_face_and_more_like_this(page, photos):
    page.goto("/")
    page.wait_for_selector("#index-info:has-text('faces')")
    page.set_input_files("#file", str(photos / "couple.jpg"))
    boxes = page.locator(".face-box")
    boxes.nth(1).wait_for()
    assert boxes.count() == 2
    boxes.nth(1).click()
    assert page.locator(".face-box[data-face='1']").get_attribute("aria-pressed") == "true"
    results = page.locator("#results .result")
    assert results.count() == 12
    # the face itself is indexed: it comes first, at distance zero
    assert results.first.locator(".caption").inner_text().startswith("#1 d=0.000")
    first_id = results.first.get_attribute("data-face-id")
    # the keyboard picks the other face
    page.locator(".face-box[data-face='0']").focus()
    page.keyboard.press("Enter")
    assert page.locator(".face-box[data-face='0']").get_attribute("aria-pressed") == "true"
    assert results.first.get_attribute("data-face-id") != first_id
    # more like this: a result becomes the query
    second = results.nth(1)
    second_id = second.get_attribute("data-face-id")
    second.click()
    page.wait_for_selector(f"#query-face-id:has-text('{second_id}')")
    assert page.locator("#query-face").is_visible() and not page.locator("#photo").is_visible()
    page.wait_for_function(f"document.querySelector('#results .result').dataset.faceId === '{second_id}'")
    assert page.locator("#results .result").count() == 12
    # the thumbnails really loaded
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")


def test_search_page_searches_among_one_person(page, photos, photos_index):
    """The "among" list holds the people `fecsearch people` found; choosing one limits the results."""
    run_cli("people", "--index", photos_index, "--quiet")
    page.goto("/")
    page.wait_for_selector("#person option:nth-child(2)", state="attached")
    people = page.locator("#person option")
    assert people.count() >= 11 and people.first.inner_text() == "everyone"
    chosen = people.nth(1).get_attribute("value")
    faces = int(people.nth(1).inner_text().split("(")[1].split()[0])
    page.select_option("#person", chosen)
    page.set_input_files("#file", str(photos / "img29.jpg"))
    page.wait_for_function(f"document.querySelectorAll('#results .result').length === {min(faces, 12)}")
    theirs = {str(f) for (f,) in sqlite3.connect(photos_index / "faces.db").execute(
        "select face_id from face_people where person_id = ?", [int(chosen)])}
    shown = {page.locator("#results .result").nth(i).get_attribute("data-face-id") for i in range(min(faces, 12))}
    assert shown <= theirs


def test_search_page_says_why_an_upload_is_refused(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    page.goto("/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "notes.jpg" in page.inner_text("#status") and "not a recognised image" in page.inner_text("#status")


def test_summary_tab(page):
    page.goto("/")
    page.click("#tab-summary")
    page.wait_for_selector("#summary .result")
    assert page.locator("#summary .result").count() == 10
    assert page.locator("#panel-search").is_hidden()
    page.locator("#summary .result").first.click()  # searches from the cluster's face
    page.wait_for_selector("#query-face:not([hidden])")
    assert page.locator("#panel-search").is_visible()


def answer_shown(page) -> dict:
    return page.evaluate("question")


def test_rating_page_votes_by_key_and_click_reach_the_harness(page, server, rating_faces, browser):
    total = len(server.rating.pairs)
    assert total > 6  # room for the five scripted answers and more
    page.goto("/rate")
    page.fill("#rater", "alice")
    page.keyboard.press("Enter")
    page.wait_for_selector("#board:not([hidden])")
    expected = {}

    def cast(action, answer):
        q = answer_shown(page)
        before = page.evaluate("document.getElementById('progress').value")
        action()
        page.wait_for_function(f"document.getElementById('progress').value === {before + 1}")
        expected[(q["query"], *sorted((q["left"], q["right"])))] = \
            answer if answer == "same" or q["left"] < q["right"] else {"left": "right", "right": "left"}[answer]

    cast(lambda: page.keyboard.press("ArrowLeft"), "left")
    cast(lambda: page.keyboard.press("ArrowRight"), "right")
    cast(lambda: page.keyboard.press("ArrowDown"), "same")
    cast(lambda: page.click("#answer-right"), "right")
    cast(lambda: page.click("#pick-left"), "left")
    assert f"5 of {total} pairs answered by alice" in page.inner_text("#progress-text")
    while answer_shown(page):
        cast(lambda: page.keyboard.press("ArrowLeft"), "left")
    assert page.locator("#done").is_visible()
    # a second rater, by click
    other = browser.new_context(base_url=server.url).new_page()
    other.goto("/rate")
    other.fill("#rater", "bob")
    other.click("button[type=submit]")
    other.wait_for_selector("#board:not([hidden])")
    assert f"0 of {total} pairs answered by bob" in other.inner_text("#progress-text")
    other.click("#answer-same")
    other.wait_for_selector(f"#progress-text:has-text('1 of {total}')")

    with sqlite3.connect(server.votes) as db:
        stored = {(q, left, right): a for q, left, right, a in
                  db.execute("select query, left, right, answer from votes where rater = 'alice'")}
        assert db.execute("select count(*) from votes where rater = 'bob'").fetchone()[0] == 1
    assert stored == expected and len(stored) == total
    # the harness reads the same votes: every pair is answered, so the study runs
    result = run_cli("bench", "rank-diff", "--data", rating_faces, "--judge", "people", "--votes", server.votes,
                     "--a", STUDY["model_a"], "--b", STUDY["model_b"], "--queries", STUDY["n_queries"],
                     "--max-n", STUDY["max_n"], "--json")
    assert '"mean_by_n"' in result.output
