"""Indexing on a GPU against the CPU of the same machine, and whether the two embed alike.

    python benchmarks/bench_gpu.py --faces DIR --photos DIR [--copies N] [--model M] [--out FILE]

Run on a machine with a CUDA GPU and torch built for it. --faces: cropped faces (FER+ valid),
--photos: photos for detection. Four measurements, all in one run on one machine, so that each GPU
number has its CPU baseline beside it. --copies N indexes N copies of each folder (other paths, the
same files), so that a run lasts long enough for a steady rate:
  agreement   the same faces through the network in torch on the CPU and on the GPU: the largest
              difference of a vector coordinate and the smallest cosine between the two vectors
  network     prepared faces already in memory through the network alone (mirror average on, as
              indexes embed), faces/s on the GPU by batch size and on every CPU core (torch)
  index       `fecsearch index --cropped` of --faces, a fresh index each time: as it runs with no
              flags, with --device cpu, and with --device cuda --runtime torch
  photos      `fecsearch index` of --photos (detection, alignment, embedding; --no-identities, as
              the identity network is the same in every run), the same three ways
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fecsearch.models import DEFAULT_MODEL
from fecsearch.models.inference import indexing_device, load_inference, nvidia_driver_seen
from fecsearch.models.preprocess import load_prepared


def environment() -> dict:
    import onnxruntime

    return {"date": datetime.date.today().isoformat(), "machine": platform.machine(), "cpu_cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "onnxruntime_providers": onnxruntime.get_available_providers(),
            "nvidia_driver_seen": nvidia_driver_seen(), "indexing_device": indexing_device(None)}


def agreement(model: str, faces: torch.Tensor) -> dict:
    cpu = load_inference(model, device="cpu", runtime="torch").embed(faces)
    gpu = load_inference(model, device="cuda", runtime="torch").embed(faces)
    cosine = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    return {"faces": len(faces), "max_abs_difference": float(np.abs(cpu - gpu).max()),
            "min_cosine": float(cosine.min())}


def network_rate(network, faces: torch.Tensor, repeat: int = 3) -> float:
    network.embed(faces[:64])  # warm-up: kernels chosen, memory allocated
    if str(network.device).startswith("cuda"):
        torch.cuda.synchronize()
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        network.embed(faces)  # returns numpy: the vectors are back on the host when it returns
        best = max(best, len(faces) / (time.perf_counter() - start))
    return round(best, 1)


def network(model: str, faces: torch.Tensor, batch_sizes: list[int]) -> dict:
    gpu = load_inference(model, device="cuda", runtime="torch")
    by_batch = {}
    for size in batch_sizes:
        gpu.batch_size = size
        by_batch[str(size)] = network_rate(gpu, faces)
    torch.set_num_threads(os.cpu_count() or 1)
    cpu = network_rate(load_inference(model, device="cpu", runtime="torch"), faces[:2048], repeat=2)
    return {"gpu_faces_per_second_by_batch": by_batch, "cpu_torch_faces_per_second": cpu,
            "cpu_threads": torch.get_num_threads()}


def index_run(folder: Path, flags: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as index:
        command = [sys.executable, "-m", "fecsearch", "index", str(folder), "--index", index, "--json", "--quiet",
                   *flags]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            return {"flags": flags, "error": done.stderr.strip()[-2000:]}
        summary = json.loads(done.stdout)
        return {"flags": flags, "faces": summary["faces_added"], "seconds": round(summary["seconds"], 2),
                "faces_per_second": summary["faces_per_second"]}


def copies(folder: Path, count: int, into: Path) -> Path:
    """count copies of folder's images under into/0, into/1, ...: new paths, so each is indexed."""
    for i in range(count):
        shutil.copytree(folder, into / str(i))
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--repeat", type=int, default=2, help="runs of each index command")
    parser.add_argument("--copies", type=int, default=1, help="index this many copies of each folder")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: torch sees no CUDA GPU here")
    result = {"command": shlex.join(["python", "benchmarks/bench_gpu.py", *sys.argv[1:]]), "model": args.model,
              **environment()}
    paths = sorted(p for p in args.faces.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    config = load_inference(args.model, device="cpu", runtime="torch").config
    faces = load_prepared(paths, config.preprocess)
    result["agreement"] = agreement(args.model, faces[:512])
    print("agreement", result["agreement"], flush=True)
    repeated = torch.cat([faces] * max(1, 8192 // len(faces)))  # enough work to keep the GPU busy
    result["network"] = network(args.model, repeated, [64, 256, 1024])
    print("network", result["network"], flush=True)
    ways = [[], ["--device", "cpu"], ["--device", "cuda", "--runtime", "torch"]]
    with tempfile.TemporaryDirectory() as scratch:
        for part, folder, flags in (("index", args.faces, ["--cropped"]), ("photos", args.photos, ["--no-identities"])):
            if args.copies > 1:
                folder = copies(folder, args.copies, Path(scratch) / part)
            result[part] = []
            for way in ways:
                for _ in range(args.repeat):
                    result[part].append(index_run(folder, ["--model", args.model, *flags, *way]))
                    print(part, result[part][-1], flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
