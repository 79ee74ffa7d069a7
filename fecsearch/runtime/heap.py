"""Keep a CPU training's large tensors in the process heap instead of fresh pages at every step.

glibc's malloc serves each request over its mmap threshold (32 MB at most) with a mapping of its own
and unmaps it on free. A training step allocates and frees tensors of 50 to 100 MB many times (a
batch of 128 FaceRes maps at 56x56 in float32 is 103 MB, in `models.mobilenet.Float32OnCpu`), so the
kernel maps and zeroes those pages again at every step. With mmap off and the heap never trimmed,
freed blocks are reused where they are: the same arithmetic, so the same weights to the bit, and a
process that keeps its peak memory until it exits, as a training process does anyway.

Measured on a 2-core AMD EPYC (`uv run python benchmarks/bench_train_heap.py`, benchmarks/RESULTS.md,
"Training without fresh pages"): a FaceRes training step 0.76x as long, a compact one 0.94x, the
FaceRes head's float32 feature cache 0.41x; the default's recipe 73.2 minutes instead of 94.7, with
every weight equal to the bit.
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt's parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

# The environment variable that turns this off, for comparing the two in one machine's runs.
DISABLE_ENV = "FECSEARCH_DEFAULT_MALLOC"

_applied = False


def keep_large_allocations_in_heap() -> bool:
    """Turn off glibc's per-allocation mmap and heap trimming for the rest of this process.

    Returns whether the setting is in force: False off Linux/glibc (other allocators have their own
    policies), or when FECSEARCH_DEFAULT_MALLOC=1 asks for glibc's defaults. Idempotent."""
    global _applied
    if _applied:
        return True
    if os.environ.get(DISABLE_ENV, "") not in ("", "0") or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname on Linux; find_library would spawn ldconfig
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so "never" is its largest value
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def environment_with(heap: bool) -> dict[str, str]:
    """This process's environment for a child process that applies the setting (heap=True) or keeps
    glibc's defaults (heap=False) when it trains: for measuring the two side by side."""
    env = {k: v for k, v in os.environ.items() if k != DISABLE_ENV}
    if not heap:
        env[DISABLE_ENV] = "1"
    return env
