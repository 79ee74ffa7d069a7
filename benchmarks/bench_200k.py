"""CelebA scale on one machine: 200,000 cropped faces indexed end to end, then searched.

    uv run python benchmarks/bench_200k.py [--faces 200000] [--work /tmp/fecsearch-200k] [--no-mirror]
                                           [--precision auto|fp32|int8]

The faces are FER+ train's 28,709 crops and variants of them (mirrored, shifted by a few pixels,
brighter or darker), written once as PNG files under --work and reused by later runs. Measured:
  index       `fecsearch index FACES --cropped --json` in a fresh process: wall time, faces/s,
              peak memory (/usr/bin/time -v), database and FAISS sizes;
  rerun       the same command again with nothing changed (every file is stat-ed, none embedded);
  queries     warm, in one process (fecsearch.open_index): by face id and by image, p50/p95;
  baseline    the same process's time to embed 2,000 of the faces with the model alone
              (models.pipeline.embed_files), so that faces/s compares across machines and runs;
              in the index's precision, and in fp32 (the float graph) for the ratio between them;
              and in one ONNX Runtime session with a thread per core (how indexing ran the
              network before its embedding lanes), the baseline that does not move with them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ferplus" / "train"


def variants(image: Image.Image, k: int) -> Image.Image:
    """The k-th variant of a face: k = 0 is the face itself."""
    if k == 0:
        return image
    rng = np.random.default_rng(k)
    out = ImageOps.mirror(image) if k % 2 else image
    dx, dy = (int(v) for v in rng.integers(-3, 4, 2))
    out = out.transform(out.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), resample=Image.BILINEAR)
    return ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.8, 1.2)))


def make_faces(folder: Path, count: int) -> Path:
    done = folder / f"done-{count}"
    if done.exists():
        return folder
    sources = sorted(DATA.glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        k, j = divmod(i, len(sources))
        out = folder / f"v{k}" / f"{sources[j].stem}-v{k}.png"
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            variants(Image.open(sources[j]), k).save(out)
    done.touch()
    return folder


def timed_index(faces: Path, index: Path, extra: list[str]) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "fecsearch", "index", str(faces), "--cropped",
               "--index", str(index), "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"wall_s": round(wall, 1), "faces_added": summary["faces_added"], "faces_total": summary["faces_total"],
            "faces_per_s_wall": round(summary["faces_added"] / wall, 1), "index_type": summary["index_type"],
            "faiss": summary["index_update"], "peak_rss_mb": round(peak_kb / 1024)}


def pct(values) -> dict:
    return {"p50_ms": round(float(np.percentile(values, 50)) * 1e3, 2),
            "p95_ms": round(float(np.percentile(values, 95)) * 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fecsearch-200k"))
    parser.add_argument("--no-mirror", action="store_true", help="Index without the mirror average.")
    parser.add_argument("--precision", default="auto", help="The index's precision (fecsearch index --precision).")
    args = parser.parse_args()
    started = time.perf_counter()
    faces = make_faces(args.work / "faces", args.faces)
    made = time.perf_counter() - started
    index = args.work / (("index-no-mirror" if args.no_mirror else "index") + f"-{args.precision}")
    if index.exists():
        import shutil

        shutil.rmtree(index)
    extra = (["--no-mirror"] if args.no_mirror else []) + ["--precision", args.precision]
    report = {"faces": args.faces, "mirror": not args.no_mirror, "make_faces_s": round(made, 1)}
    report["index"] = timed_index(faces, index, extra)
    report["rerun"] = timed_index(faces, index, extra)
    report["database_mb"] = round(sum(p.stat().st_size for p in index.glob("faces.db*")) / 2**20, 1)
    report["faiss_mb"] = round((index / "faces.faiss").stat().st_size / 2**20, 1)

    import fecsearch
    from fecsearch.faces.images import find_images
    from fecsearch.models.config import DEFAULT_MODEL
    from fecsearch.models.inference import load_inference
    from fecsearch.models.pipeline import FacePipeline, embed_files

    searcher = fecsearch.open_index(index, device="cpu")
    report["precision"] = searcher.info()["precision"]
    rng = np.random.default_rng(0)
    ids = rng.integers(1, args.faces + 1, 300)
    by_id, by_image = [], []
    for face_id in ids:
        start = time.perf_counter()
        searcher.search_face(int(face_id), k=10)
        by_id.append(time.perf_counter() - start)
    paths = [p for p in sorted(faces.glob("v0/*.png"))[:100]]
    for p in paths:
        start = time.perf_counter()
        searcher.search_image(p, k=10, cropped=True)
        by_image.append(time.perf_counter() - start)
    report["query_by_id"] = pct(by_id[20:])
    report["query_by_image"] = pct(by_image[10:])
    sample = find_images(faces / "v0")[0][:2000]
    pipeline = searcher.pipeline(cropped=True)
    start = time.perf_counter()
    embed_files(pipeline, sample)
    report["baseline_embed_faces_per_s"] = round(len(sample) / (time.perf_counter() - start), 1)
    report["index_over_baseline"] = round(report["index"]["faces_per_s_wall"] / report["baseline_embed_faces_per_s"], 2)
    # the network as indexing ran it before embedding lanes: one session, ONNX Runtime's threads on every core
    one_session = load_inference(DEFAULT_MODEL, device="cpu", mirror_average=not args.no_mirror,
                                 precision=report["precision"], threads=os.cpu_count())
    start = time.perf_counter()
    embed_files(FacePipeline(one_session, cropped=True, device="cpu", runtime=one_session.runtime), sample)
    report["one_session_embed_faces_per_s"] = round(len(sample) / (time.perf_counter() - start), 1)
    report["index_over_one_session"] = round(report["index"]["faces_per_s_wall"]
                                             / report["one_session_embed_faces_per_s"], 2)
    fp32 = load_inference(DEFAULT_MODEL, device="cpu", mirror_average=not args.no_mirror, precision="fp32")
    start = time.perf_counter()
    embed_files(FacePipeline(fp32, cropped=True, device="cpu", runtime=fp32.runtime), sample)
    report["fp32_baseline_embed_faces_per_s"] = round(len(sample) / (time.perf_counter() - start), 1)
    report["baseline_over_fp32"] = round(report["baseline_embed_faces_per_s"]
                                         / report["fp32_baseline_embed_faces_per_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
