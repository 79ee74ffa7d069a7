"""Speed-up of training FECNet's head on cached trunk features over running the frozen trunk each step.

    uv run python benchmarks/bench_feature_cache.py [--steps 30]

One step = the paper's batch (30 triplets of each type = 270 faces): with the cache, a lookup and the
head's forward and backward pass; without, the frozen trunk's forward pass first. The one-off cost
of filling the cache (one trunk pass per face and its mirror image) is reported too.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fecsearch.models import create_model
from fecsearch.train.fecnet import triplet_loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default="fecnet-lite-16d")
    args = parser.parse_args()
    model = create_model(args.model, random_init=True)
    model.trunk.requires_grad_(False).eval()
    p = model.config.preprocess
    faces = torch.randn(270, p.channels, p.size, p.size)
    odd, margin = torch.randint(1, 4, (90,)), torch.full((90,), 0.2)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=5e-4)
    with torch.no_grad():
        cached = model.trunk(faces).half()

    def step(features):
        e = model.head(features).view(90, 3, -1)
        loss = triplet_loss(e[:, 0], e[:, 1], e[:, 2], odd, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(fn):
        fn()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - start) / args.steps

    def uncached():
        with torch.no_grad():
            features = model.trunk(faces)
        step(features)

    with_cache = timed(lambda: step(cached.float()))
    without = timed(uncached)
    start = time.perf_counter()
    with torch.no_grad():
        model.trunk(faces)
    trunk_per_face = (time.perf_counter() - start) / len(faces)
    print(json.dumps({"model": args.model, "steps": args.steps, "s_per_step_cached": round(with_cache, 4),
                      "s_per_step_uncached": round(without, 4), "speedup": round(without / with_cache, 2),
                      "cache_fill_s_per_face": round(trunk_per_face * 2, 5)}, indent=2))


if __name__ == "__main__":
    main()
