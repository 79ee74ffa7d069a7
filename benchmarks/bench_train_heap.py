"""Training steps and feature caches with glibc's default malloc against fecsearch's heap setting.

    uv run python benchmarks/bench_train_heap.py
    uv run python benchmarks/bench_train_heap.py --model affnet-faceres-cl-p --rounds 3

`fecsearch train` keeps large tensors in the heap (`fecsearch.runtime.heap`); glibc's default maps
every allocation over 32 MB anew and returns it on free. The setting holds for a whole process, so
each measurement runs in its own child process, the two settings alternating, --rounds times:
- a model's training step as `train affnet --bf16` / `train fecnet --bf16` takes it (the step of
  benchmarks/bench_train_steps.py, with the bfloat16 layout fixes on), median of --steps steps;
- the feature cache under a FECNet head (`train.common.cached_features`, float32 as the default's
  FaceRes head builds it, bfloat16 for the compact trunk's `--bf16-cache`), over --faces FER+ valid faces.
Each round's ratio is heap / default; the script prints each measurement's median ratio and a JSON record.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("affnet-faceres-cl-p", "fecnet-faceres-16d", "affnet-lite-x2-cl-p", "fecnet-lite-x2-16d")
CACHES = {"fecnet-faceres-16d": False, "fecnet-lite-x2-16d": True}  # the recipe's cache: bfloat16 or not


def child(kind: str, name: str, steps: int, faces: int) -> None:
    """In a child process: apply the setting the environment asks for, time one thing, print ms."""
    import torch

    from fecsearch.runtime.heap import keep_large_allocations_in_heap

    keep_large_allocations_in_heap()  # a no-op under FECSEARCH_DEFAULT_MALLOC=1
    sys.path.insert(0, str(HERE))
    from bench_train_steps import DATA, make_step, median_ms

    from fecsearch.data.labels import read_ferplus

    valid = read_ferplus(DATA / "ferplus" / "valid")
    if kind == "step":
        print(median_ms(make_step(name, valid), steps))
        return
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.models.registry import create_model
    from fecsearch.train.common import cached_features

    torch.manual_seed(0)
    x = load_prepared(valid.paths[:faces], get_config(name).preprocess)
    trunk = create_model(name, random_init=True).trunk
    cached_features(trunk, x[:256], bf16=CACHES[name])  # warm-up: the first batches' one-off costs
    t0 = time.perf_counter()
    cached_features(trunk, x, bf16=CACHES[name])
    print((time.perf_counter() - t0) * 1000)


def measure(kind: str, name: str, heap: bool, args) -> float:
    from fecsearch.runtime.heap import environment_with

    out = subprocess.run([sys.executable, __file__, "--child", kind, name, "--steps", str(args.steps),
                          "--faces", str(args.faces)], env=environment_with(heap), capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help=f"default: {', '.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--faces", type=int, default=2048, help="faces in each timed feature cache")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.steps, args.faces)
    sys.path.insert(0, str(HERE))
    from bench_train_steps import paired_row, print_record

    jobs = [("step", m) for m in args.model or MODELS]
    jobs += [("cache", m) for m in CACHES if m in (args.model or MODELS)]
    results = {}
    for kind, name in jobs:
        rows = []
        for _ in range(args.rounds):
            default = measure(kind, name, False, args)
            heap = measure(kind, name, True, args)
            rows.append((default, heap))
        label = f"{name} {'step' if kind == 'step' else 'cache of ' + str(args.faces) + ' faces'}"
        results[label] = paired_row(label, rows, "default", "heap", width=40)
    print_record(args, "results", results)


if __name__ == "__main__":
    main()
