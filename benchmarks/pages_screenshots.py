"""Screenshots of `fecsearch serve`'s pages, in headless Chromium.

    uv run python benchmarks/pages_screenshots.py [--index PATH] [--out benchmarks]

Serves an index of ../shared/data/photos (built first unless --index holds one) with a small
rating study over the first 40 FER+ validation faces, then saves serve_search.jpg (the selfie,
its third face chosen), serve_summary.jpg and serve_rate.jpg.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from photos_index import PHOTOS, photos_index

FER_VALID = PHOTOS.parent / "ferplus" / "valid"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import RunningServer
    from playwright.sync_api import sync_playwright

    from fecsearch.evaluation.rankdiff import plan_study
    from fecsearch.serve.app import create_app
    from fecsearch.serve.library import Library
    from fecsearch.serve.rating import Rating

    index = photos_index(args.index)
    work = Path(tempfile.mkdtemp())
    faces = work / "faces"
    faces.mkdir()
    for p in sorted(FER_VALID.glob("*.png"))[:40]:
        shutil.copy(p, faces / p.name)
    rating = Rating(plan_study(faces, "fecnet-lite-16d", "affnet-lite-cl-p", 2, 3, 0), work / "votes.db")
    server = RunningServer(create_app(Library(index), rating))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800}, base_url=server.url)
            page.goto("/")
            page.set_input_files("#file", str(PHOTOS / "selfie-many-people.jpg"))
            page.locator(".face-box").nth(2).click()
            page.wait_for_function("[...document.querySelectorAll('#results img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(args.out / "serve_search.jpg"), type="jpeg", quality=85)
            page.click("#tab-summary")
            page.wait_for_selector("#summary .result")
            page.wait_for_function("[...document.querySelectorAll('#summary img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(args.out / "serve_summary.jpg"), type="jpeg", quality=85)
            page.goto("/rate")
            page.fill("#rater", "alice")
            page.keyboard.press("Enter")
            page.wait_for_selector("#board:not([hidden])")
            page.keyboard.press("ArrowLeft")
            page.wait_for_selector("#progress-text:has-text('1 of')")
            page.wait_for_function("[...document.querySelectorAll('.rating img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(args.out / "serve_rate.jpg"), type="jpeg", quality=85)
            browser.close()
    finally:
        server.stop()
    print(f"wrote serve_search.jpg, serve_summary.jpg, serve_rate.jpg in {args.out}")


if __name__ == "__main__":
    main()
