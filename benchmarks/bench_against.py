"""`fecsearch index` of one folder by this checkout and by an earlier commit, in turns: wall time and
faces/s of each (of the whole command, and of indexing alone as its --json summary says), and their ratio (the machine is noisy; the ratio is what compares across runs).

    uv run python benchmarks/bench_against.py --base REV [--rounds 3] [--cropped] FOLDER

The earlier commit is checked out with `git worktree` in a temporary folder and run with this
environment's Python from there, so `python -m fecsearch` imports its code. Each run indexes into a
fresh temporary index (no file is skipped as unchanged).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def index_once(tree: Path, folder: Path, cropped: bool) -> dict:
    index = Path(tempfile.mkdtemp()) / "idx"
    command = [sys.executable, "-m", "fecsearch", "index", str(folder), "--index", str(index), "--quiet", "--json"]
    start = time.perf_counter()
    done = subprocess.run(command + (["--cropped"] if cropped else []), cwd=tree, capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    shutil.rmtree(index.parent)
    summary = json.loads(done.stdout)
    # faces/s of the whole command, start-up included, and of indexing alone (its own summary's)
    return {"wall_s": wall, "faces": summary["faces_added"], "faces_per_s": summary["faces_added"] / wall,
            "indexing_faces_per_s": summary["faces_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cropped", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp()) / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    runs = {"base": [], "this": []}
    try:
        for _ in range(args.rounds):
            for name, tree in (("base", base), ("this", ROOT)):
                runs[name].append(index_once(tree, args.folder.resolve(), args.cropped))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
    report = {"folder": str(args.folder), "base": args.base, "rounds": args.rounds}
    for name, rows in runs.items():
        report[name] = {"faces": rows[0]["faces"],
                        "wall_s": [round(r["wall_s"], 1) for r in rows],
                        "median_faces_per_s": round(statistics.median(r["faces_per_s"] for r in rows), 1),
                        "median_indexing_faces_per_s": round(statistics.median(r["indexing_faces_per_s"]
                                                                               for r in rows), 1)}
    for key in ("median_faces_per_s", "median_indexing_faces_per_s"):
        report[f"this_over_base_{key[7:]}"] = round(report["this"][key] / report["base"][key], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
