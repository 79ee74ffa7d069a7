"""Training-step time of the lite classifiers (`train affnet`), and of FECNet's head on the FaceRes
trunk's maps (`train fecnet`): float32 against `--bf16`.

    uv run python benchmarks/bench_train_precision.py
    uv run python benchmarks/bench_train_precision.py --heads      # also the FECNet heads on FaceRes maps

One step as `train affnet` takes it: a batch of 128 prepared FER+ faces through trunk, head and
soft-label cross-entropy, backward, Adam. float32 in the default layout, and bf16 as `--bf16` runs
it (autocast to bfloat16, channels-last). The median of --steps steps after two warm-up steps,
for the lite trunk and the one twice as wide (lite-x2); ratios are to the lite trunk in float32,
measured in the same run. bfloat16 is fast only on CPUs with AMX (or AVX-512 BF16); the script
prints which the CPU reports.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni")))


def step_times(model_name: str, bf16: bool, faces: torch.Tensor, votes: torch.Tensor, steps: int) -> list[float]:
    from fecsearch.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(model_name, random_init=True).train()
    if bf16:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        x = faces.contiguous(memory_format=torch.channels_last) if bf16 else faces
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model.head(model.trunk(x))
        loss = F.cross_entropy(logits.float(), votes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times[2:]


def head_step_times(model_name: str, bf16: bool, faces: torch.Tensor, steps: int) -> list[float]:
    """One `train fecnet` step above the feature cache: 270 faces' trunk maps (90 triplets) through the
    FECNet head, eq. (1)'s loss, backward, Adam."""
    from fecsearch.models.registry import create_model
    from fecsearch.train.fecnet import triplet_loss

    torch.manual_seed(0)
    model = create_model(model_name, random_init=True)
    with torch.no_grad():
        maps = model.trunk.eval()(faces)  # what the feature cache holds
    head = model.head.train()
    if bf16:
        head.to(memory_format=torch.channels_last)
        maps = maps.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(head.parameters(), 5e-4)
    odd, margin = torch.randint(1, 4, (90,)), torch.full((90,), 0.2)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            e = head(maps).float().view(90, 3, -1)
        loss = triplet_loss(e[:, 0], e[:, 1], e[:, 2], odd, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--heads", action="store_true", help="also FECNet's head on FaceRes maps (112 and 64 px)")
    args = parser.parse_args()
    from fecsearch.data.labels import read_ferplus
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared

    valid = read_ferplus(DATA / "ferplus" / "valid")
    faces = load_prepared(valid.paths[:128], get_config("affnet-lite-cl-p").preprocess).float()
    votes = torch.from_numpy(valid.votes[:128]).float()
    rows = {}
    for model in ("affnet-lite-cl-p", "affnet-lite-x2-cl-p"):
        for bf16 in (False, True):
            ms = statistics.median(step_times(model, bf16, faces, votes, args.steps)) * 1000
            rows[f"{model} {'bf16' if bf16 else 'fp32'}"] = round(ms, 1)
            print(f"{model:20} {'bf16' if bf16 else 'fp32'}: {ms:.0f} ms a step of 128 faces", flush=True)
    heads = {}
    for model in ("fecnet-faceres-16d", "fecnet-faceres64-16d") if args.heads else ():
        crops = load_prepared(valid.paths[:270], get_config(model).preprocess).float()
        for bf16 in (False, True):
            ms = statistics.median(head_step_times(model, bf16, crops, args.steps)) * 1000
            heads[f"{model} {'bf16' if bf16 else 'fp32'}"] = round(ms, 1)
            print(f"{model:20} head {'bf16' if bf16 else 'fp32'}: {ms:.0f} ms a step of 90 triplets", flush=True)
    base = rows["affnet-lite-cl-p fp32"]
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                      "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "ms_per_step": rows,
                      "ratio_to_lite_fp32": {k: round(v / base, 2) for k, v in rows.items()},
                      **({"fecnet_head_ms_per_step": heads,
                          "head_bf16_ratio": {m: round(heads[f"{m} bf16"] / heads[f"{m} fp32"], 2)
                                              for m in ("fecnet-faceres-16d", "fecnet-faceres64-16d")}}
                         if heads else {})}, indent=1))


if __name__ == "__main__":
    main()
