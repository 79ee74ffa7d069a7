"""Load on `fecsearch serve` over loopback: concurrent clients searching by uploaded photo and by face id.

    uv run python benchmarks/bench_serve.py [--clients 16] [--seconds 30] [--baseline-seconds 10]

Builds an index of ../shared/data/photos (or reuses --index), starts `fecsearch serve` in its own
process, then in this process:
  1. baseline: one client, requests one after another, for --baseline-seconds per kind;
  2. load: --clients threads for --seconds, half of them uploading one of the photos after another
     (POST /api/search), half searching by a random face id (GET /api/faces/ID/similar): this
     shows whether the quick searches by id wait behind the slow uploads.
Prints p50/p95 latency, throughput and errors per kind, and the load's throughput as a ratio to
the one-client baseline's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from photos_index import PHOTOS, photos_index

DATA = PHOTOS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_request(client: httpx.Client, kind: str, rng: random.Random, photos: list[bytes], face_ids: list[int]):
    start = time.perf_counter()
    if kind == "upload":
        r = client.post("/api/search?k=10", files={"image": ("photo.jpg", rng.choice(photos), "image/jpeg")})
    else:
        r = client.get(f"/api/faces/{rng.choice(face_ids)}/similar?k=10")
    ok = r.status_code == 200 and bool(r.json()["results"] if kind == "id" else "faces" in r.json())
    return time.perf_counter() - start, ok


def summarise(latencies: dict, errors: dict, seconds: float) -> dict:
    out = {}
    for kind, values in latencies.items():
        if not values:
            continue
        out[kind] = {"requests": len(values), "errors": errors[kind], "per_s": round(len(values) / seconds, 2),
                     "p50_ms": round(float(np.percentile(values, 50)) * 1e3, 1),
                     "p95_ms": round(float(np.percentile(values, 95)) * 1e3, 1)}
    return out


def run_clients(url: str, kinds: list[str], seconds: float, photos, face_ids, seed: int) -> dict:
    """One client thread per entry of kinds, each sending that kind of request back to back."""
    latencies = {k: [] for k in ("upload", "id")}
    errors = {k: 0 for k in ("upload", "id")}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client_loop(number: int):
        rng = random.Random(seed * 1000 + number)
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.perf_counter() < deadline:
                kind = kinds[number]
                try:
                    elapsed, ok = one_request(client, kind, rng, photos, face_ids)
                except httpx.HTTPError:
                    elapsed, ok = 0.0, False
                with lock:
                    if ok:
                        latencies[kind].append(elapsed)
                    else:
                        errors[kind] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(len(kinds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(latencies, errors, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    index = photos_index(args.index)
    photos = [p.read_bytes() for p in sorted(DATA.glob("*.jpg"))]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "fecsearch", "serve", "--index", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                httpx.get(f"{url}/api/health")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.3)
        import sqlite3

        face_ids = [i for (i,) in sqlite3.connect(index / "faces.db").execute("select id from faces")]
        baseline = {}
        for kind in ("upload", "id"):
            baseline.update(run_clients(url, [kind], args.baseline_seconds, photos, face_ids, args.seed))
        kinds = ["upload", "id"] * (args.clients // 2) + ["upload"] * (args.clients % 2)
        load = run_clients(url, kinds, args.seconds, photos, face_ids, args.seed)
    finally:
        server.terminate()
        server.wait(10)
    report = {"machine": f"{os.cpu_count()} CPUs", "faces": len(face_ids), "photos": len(photos),
              "baseline_1_client": baseline, f"load_{args.clients}_clients_{args.seconds:g}s": load,
              "throughput_ratio_load_to_baseline": {
                  k: round(load[k]["per_s"] / baseline[k]["per_s"], 2) for k in load if k in baseline}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
