"""Training-step time under `--bf16` with and without the two layout fixes of 2026-12-07, in one run.

    uv run python benchmarks/bench_train_steps.py
    uv run python benchmarks/bench_train_steps.py --layers    # the stride-2 depthwise convs alone
    uv run python benchmarks/bench_train_steps.py --profile affnet-faceres-cl-p   # where a step's time goes
    uv run python benchmarks/bench_train_steps.py --compile   # torch.compile'd steps against eager ones

The fixes (both on by default in fecsearch; off reproduces the weights trained before them):
- `models.mobilenet.STRIDED_DEPTHWISE_IN_FLOAT32`: FaceRes's stride-2 depthwise units compute in
  float32 under bfloat16 autocast (oneDNN's bfloat16 backward of those layers is slow on this CPU);
- `models.heads.CHANNELS_LAST_GRADIENT`: the gradient reaching the FECNet/AFFNet head's last
  BatchNorm keeps the maps' channels-last layout (BatchNorm's backward over mixed layouts is slow).

Steps as `train affnet --bf16` (a batch of 128 faces through trunk and classifier, soft-label
cross-entropy, backward, Adam; FaceRes with every block learning, `--tune-blocks 11`) and as
`train fecnet --bf16` above a feature cache (90 triplets' maps through the FECNet head, eq. (1),
backward, Adam). Off and on alternate, --rounds times, each round the median of --steps steps after
two warm-up steps; the ratio is on / off per round, and the script reports each model's median ratio.
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

from fecsearch.train.common import set_bf16_layout_fixes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def classifier_step(forward, optimizer, faces: torch.Tensor, votes: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = forward(faces)
    loss = F.cross_entropy(logits.float(), votes)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def head_step(forward, optimizer, maps: torch.Tensor, odd: torch.Tensor, margin: torch.Tensor) -> None:
    from fecsearch.train.fecnet import triplet_loss

    with torch.autocast("cpu", dtype=torch.bfloat16):
        e = forward(maps).float().view(len(odd), 3, -1)
    loss = triplet_loss(e[:, 0], e[:, 1], e[:, 2], odd, margin)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def make_step(model_name: str, valid, compiled: bool = False):
    """A closure running one training step of model_name as `--bf16` trains it, on FER+ valid faces;
    with `compiled`, its forward pass (and so its backward) through torch.compile's default backend."""
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.models.registry import create_model

    torch.manual_seed(0)
    config = get_config(model_name)
    model = create_model(model_name, random_init=True)
    if config.family == "affnet":
        faces = load_prepared(valid.paths[:128], config.preprocess).float()
        faces = faces.contiguous(memory_format=torch.channels_last)
        votes = torch.from_numpy(valid.votes[:128]).float()
        model.train().to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)
        forward = (lambda x: model.head(model.trunk(x)))
        forward = torch.compile(forward) if compiled else forward
        return lambda: classifier_step(forward, optimizer, faces, votes)
    faces = load_prepared(valid.paths[:270], config.preprocess).float()
    with torch.no_grad():
        maps = model.trunk.eval()(faces).contiguous(memory_format=torch.channels_last)  # the feature cache
    head = model.head.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(head.parameters(), 5e-4)
    odd, margin = torch.randint(1, 4, (90,)), torch.full((90,), 0.2)
    forward = torch.compile(head) if compiled else head
    return lambda: head_step(forward, optimizer, maps, odd, margin)


def median_ms(step, steps: int) -> float:
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]) * 1000


def depthwise_ms(channels: int, size: int, dtype: torch.dtype, steps: int) -> float:
    """One stride-2 3x3 depthwise conv alone, forward and backward, batch of 128, channels-last."""
    x = torch.randn(128, channels, size, size).contiguous(memory_format=torch.channels_last).to(dtype)
    x.requires_grad_(True)
    weight = (torch.randn(channels, 1, 3, 3) * 0.1).to(dtype).requires_grad_(True)

    def step():
        y = F.conv2d(x, weight, None, 2, 0, 1, channels)
        y.backward(torch.ones_like(y))
    return median_ms(step, steps)


def profile(model_name: str, valid, steps: int) -> None:
    """torch.profiler's table of one model's --bf16 steps with the fixes off, by operator and shape."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profile

    set_bf16_layout_fixes(False)
    step = make_step(model_name, valid)
    step()
    with run_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    set_bf16_layout_fixes(True)
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", action="append",
                        help="default: affnet-faceres-cl-p, fecnet-faceres-16d, affnet-lite-x2-cl-p, fecnet-lite-x2-16d")
    parser.add_argument("--layers", action="store_true",
                        help="only the stride-2 depthwise convs alone, bfloat16 against float32")
    parser.add_argument("--profile", metavar="MODEL", help="only torch.profiler's table of MODEL's steps, fixes off")
    parser.add_argument("--compile", action="store_true",
                        help="eager steps against torch.compile'd ones (fixes on) instead of fixes off against on")
    args = parser.parse_args()
    from fecsearch.data.labels import read_ferplus

    valid = read_ferplus(DATA / "ferplus" / "valid")
    if args.profile:
        return profile(args.profile, valid, 3)
    if args.layers:
        for channels, size in ((64, 57), (128, 29), (256, 15)):  # FaceRes's, padded, at 112 px
            bf16, fp32 = (depthwise_ms(channels, size, d, args.steps) for d in (torch.bfloat16, torch.float32))
            print(f"stride-2 depthwise, {channels} channels, {size} px: bfloat16 {bf16:.0f} ms, float32 {fp32:.0f} ms")
        return
    models = args.model or ["affnet-faceres-cl-p", "fecnet-faceres-16d", "affnet-lite-x2-cl-p", "fecnet-lite-x2-16d"]
    results = {}
    for name in models:
        if args.compile:  # two networks from one seed; the compiled one's first step compiles it, untimed
            steps = {False: make_step(name, valid), True: make_step(name, valid, compiled=True)}
            steps[True]()
        else:  # one network, its steps timed with the fixes off and on
            step = make_step(name, valid)
            steps = {False: step, True: step}
        rows = []
        for _ in range(args.rounds):
            timed = {}
            for on in (False, True):
                if not args.compile:
                    set_bf16_layout_fixes(on)
                timed[on] = median_ms(steps[on], args.steps)
            rows.append((timed[False], timed[True]))
        set_bf16_layout_fixes(True)
        off_key, on_key = ("eager", "compiled") if args.compile else ("off", "on")
        results[name] = paired_row(name, rows, off_key, on_key, width=22)
    print_record(args, "models", results)


def paired_row(label: str, rows, off_key: str, on_key: str, width: int) -> dict:
    """Print one line of paired (off, on) times in ms, and return its JSON record."""
    ratio = statistics.median(on / off for off, on in rows)
    print(f"{label:{width}} {off_key} {statistics.median(r[0] for r in rows):6.0f} ms  {on_key} "
          f"{statistics.median(r[1] for r in rows):6.0f} ms  ratio {ratio:.2f}", flush=True)
    return {f"ms_{off_key}": [round(off, 1) for off, _ in rows], f"ms_{on_key}": [round(on, 1) for _, on in rows],
            f"ratio_{on_key}_to_{off_key}": round(ratio, 3)}


def print_record(args, key: str, results: dict) -> None:
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(), "steps": args.steps, "rounds": args.rounds,
                      key: results}, indent=1))


if __name__ == "__main__":
    main()
