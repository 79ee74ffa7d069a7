"""`fecsearch index` of one folder by this checkout and by an earlier commit, in turns: wall time and
faces/s of each (of the whole command, and of indexing alone as its --json summary says), and their ratio (the machine is noisy; the ratio is what compares across runs).

    uv run python benchmarks/bench_against.py --base REV [--rounds 3] [--cropped] [--compare]
                                              [--this-options=--no-identities] FOLDER
    uv run python benchmarks/bench_against.py --base REV --warm-queries 128 [--rounds 3] FOLDER

The earlier commit is checked out with `git worktree` in a temporary folder and run with this
environment's Python from there, so `python -m fecsearch` imports its code. Each run indexes into a
fresh temporary index (no file is skipped as unchanged). --compare keeps the last round's two
indexes and says how far this checkout's faces moved from the earlier commit's: the faces both
found, the largest change of a box corner in pixels, and how far each unit vector moved.
--warm-queries N times warm queries by new photos instead: FOLDER is indexed once by this checkout;
then in each round each checkout opens that index in a fresh process and queries N copies of
FOLDER's images (copies, so that none is answered from the index as a file it holds), and reports
the median milliseconds of a query.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def index_once(tree: Path, folder: Path, cropped: bool, keep: Path | None = None, options: list[str] = ()) -> dict:
    index = keep or Path(tempfile.mkdtemp()) / "idx"
    command = [sys.executable, "-m", "fecsearch", "index", str(folder), "--index", str(index), "--quiet", "--json",
               *options]
    start = time.perf_counter()
    done = subprocess.run(command + (["--cropped"] if cropped else []), cwd=tree, capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    if keep is None:
        shutil.rmtree(index.parent)
    summary = json.loads(done.stdout)
    # faces/s of the whole command, start-up included, and of indexing alone (its own summary's)
    return {"wall_s": wall, "faces": summary["faces_added"], "faces_per_s": summary["faces_added"] / wall,
            "indexing_faces_per_s": summary["faces_per_second"]}


WARM_QUERIES = """
import shutil, statistics, sys, tempfile, time
from pathlib import Path
from fecsearch.faces.images import find_images
from fecsearch.query.search import Searcher
copies = Path(tempfile.mkdtemp())
photos = [Path(shutil.copy(p, copies / p.name)) for p in find_images(Path(sys.argv[2]))[0]]
searcher = Searcher(Path(sys.argv[1]))
searcher.query_image(photos[0])  # warm: sessions open, first run done
times = []
for i in range(int(sys.argv[3])):
    start = time.perf_counter()
    searcher.query_image(photos[i % len(photos)])
    times.append(time.perf_counter() - start)
shutil.rmtree(copies)
print(statistics.median(times) * 1e3)
"""


def warm_queries_once(tree: Path, index: Path, folder: Path, n: int) -> float:
    """Median ms of a warm query by a new photo, by the code in `tree`."""
    done = subprocess.run([sys.executable, "-c", WARM_QUERIES, str(index), str(folder), str(n)], cwd=tree,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def stored_faces(index: Path) -> dict:
    """(path, face number) -> (box, vector) of an index's faces."""
    import numpy as np

    with sqlite3.connect(index / "faces.db") as db:
        rows = db.execute("SELECT i.path, f.face_index, f.x1, f.y1, f.x2, f.y2, f.embedding FROM faces f "
                          "JOIN images i ON i.id = f.image_id").fetchall()
    return {(r[0], r[1]): (np.array(r[2:6]), np.frombuffer(r[6], np.float32)) for r in rows}


def compare(base_index: Path, this_index: Path) -> dict:
    """How far this checkout's faces are from the earlier commit's: the same faces found, boxes moved,
    vectors moved (L2 between unit vectors)."""
    import numpy as np

    base, this = stored_faces(base_index), stored_faces(this_index)
    both = sorted(set(base) & set(this))
    box = np.array([np.abs(base[k][0] - this[k][0]).max() for k in both])
    moved = np.array([np.linalg.norm(base[k][1] - this[k][1]) for k in both])
    return {"faces_base": len(base), "faces_this": len(this), "faces_in_both": len(both),
            "box_moved_px_max": round(float(box.max()), 3) if len(both) else None,
            "vector_moved_p50": round(float(np.median(moved)), 4) if len(both) else None,
            "vector_moved_p90": round(float(np.percentile(moved, 90)), 4) if len(both) else None,
            "vector_moved_max": round(float(moved.max()), 4) if len(both) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cropped", action="store_true")
    parser.add_argument("--this-options", default="",
                        help="index options for this checkout only, e.g. --this-options=--no-identities to do an older commit's work")
    parser.add_argument("--compare", action="store_true",
                        help="also compare the faces of the last round's two indexes: boxes and vectors moved")
    parser.add_argument("--warm-queries", type=int, default=0, metavar="N",
                        help="time N warm queries by new photos in each round instead of indexing")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    base = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    try:
        measure = warm_query_report if args.warm_queries else indexing_report
        report = {"folder": str(args.folder), "base": args.base, "rounds": args.rounds,
                  "this_options": args.this_options, **measure(args, base, work)}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def warm_query_report(args, base: Path, work: Path) -> dict:
    """The same index (built by this checkout) queried by each checkout in turns."""
    index = work / "index"
    index_once(ROOT, args.folder.resolve(), False, keep=index)
    runs = {"base": [], "this": []}
    for _ in range(args.rounds):
        for name, tree in (("base", base), ("this", ROOT)):
            runs[name].append(warm_queries_once(tree, index, args.folder.resolve(), args.warm_queries))
    report = {"warm_queries": args.warm_queries}
    for name, rows in runs.items():
        report[name] = {"p50_ms": [round(r, 1) for r in rows], "median_p50_ms": round(statistics.median(rows), 1)}
    report["this_over_base_time"] = round(report["this"]["median_p50_ms"] / report["base"]["median_p50_ms"], 2)
    return report


def indexing_report(args, base: Path, work: Path) -> dict:
    """Each checkout indexes the folder into a fresh index, in turns."""
    runs = {"base": [], "this": []}
    for round_ in range(args.rounds):
        for name, tree in (("base", base), ("this", ROOT)):
            keep = work / f"index-{name}" if args.compare and round_ == args.rounds - 1 else None
            options = args.this_options.split() if name == "this" else []
            runs[name].append(index_once(tree, args.folder.resolve(), args.cropped, keep, options))
    report = {}
    for name, rows in runs.items():
        report[name] = {"faces": rows[0]["faces"],
                        "wall_s": [round(r["wall_s"], 1) for r in rows],
                        "median_faces_per_s": round(statistics.median(r["faces_per_s"] for r in rows), 1),
                        "median_indexing_faces_per_s": round(statistics.median(r["indexing_faces_per_s"]
                                                                               for r in rows), 1)}
    for key in ("median_faces_per_s", "median_indexing_faces_per_s"):
        report[f"this_over_base_{key[7:]}"] = round(report["this"][key] / report["base"][key], 2)
    if args.compare:
        report["faces_moved"] = compare(work / "index-base", work / "index-this")
    return report

if __name__ == "__main__":
    main()
