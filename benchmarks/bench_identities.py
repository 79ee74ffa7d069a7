"""What identity descriptors cost when indexing photos, in one run against indexing without them.

    uv run python benchmarks/bench_identities.py [--repeats 3]

Each repeat indexes ../shared/data/photos into a fresh index twice, in turns: with identities (the
default for photos) and with --no-identities, each a fresh `fecsearch index` process; then
`fecsearch people` on the index without them, which describes its faces from the stored landmarks
(decoding the photos again, detecting nothing) and clusters them. Last, the descriptor network
alone: 224 px crops a second in ONNX Runtime and in torch, batches of 32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from photos_index import PHOTOS
from photos_index import timed_fecsearch as timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds = {"index_with_identities": [], "index_without": [], "people_describe_and_cluster": []}
    for _ in range(args.repeats):
        folder = Path(tempfile.mkdtemp())
        seconds["index_with_identities"].append(timed(["index", str(PHOTOS), "--index", str(folder / "a"), "--quiet"]))
        seconds["index_without"].append(timed(["index", str(PHOTOS), "--index", str(folder / "b"), "--quiet",
                                               "--no-identities"]))
        seconds["people_describe_and_cluster"].append(timed(["people", "--index", str(folder / "b"), "--quiet"]))
    median = {k: round(statistics.median(v), 2) for k, v in seconds.items()}
    print(json.dumps({"seconds_median": median, "faces": 74,
                      "with_over_without": round(median["index_with_identities"] / median["index_without"], 2),
                      "descriptors_per_s": network_rates()}, indent=2))


def network_rates(count: int = 128) -> dict:
    import numpy as np
    from PIL import Image

    from fecsearch.models.identity import IdentityNetwork

    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(count)]
    rates = {}
    for runtime in ("onnx", "torch"):
        network = IdentityNetwork(runtime=runtime)
        network.describe(crops[:8])  # warm-up
        start = time.perf_counter()
        network.describe(crops)
        rates[runtime] = round(count / (time.perf_counter() - start), 1)
    return rates


if __name__ == "__main__":
    main()
