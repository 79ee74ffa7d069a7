"""fecsearch.runtime.heap: training keeps its large tensors in the heap, and the weights stay the same.

Each check runs in child processes: once applied, the setting holds for the rest of a process, so
each setting needs a process of its own.
"""
from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from fecsearch.runtime.heap import environment_with

def glibc_with_mallinfo2() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")  # glibc 2.33 and later


pytestmark = pytest.mark.skipif(not glibc_with_mallinfo2(), reason="the setting and its probe are glibc's")

# How many bytes of a 256 MB tensor glibc serves by mmap (mallinfo2's hblkhd grows by them).
MAPPED = """
import ctypes, torch
from fecsearch.runtime.heap import keep_large_allocations_in_heap

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
applied = keep_large_allocations_in_heap()
before = libc.mallinfo2().hblkhd
x = torch.ones(64, 1024, 1024)
print(applied, libc.mallinfo2().hblkhd - before)
"""

# Two bfloat16 training steps of FaceRes with every block learning, as `train affnet --bf16` takes
# them (a batch of 128 at 112 px: the float32 islands' tensors are 103 MB), then the weights' digest.
STEPS = """
import hashlib, torch
import torch.nn.functional as F
from fecsearch.models.registry import create_model
from fecsearch.runtime.heap import keep_large_allocations_in_heap

keep_large_allocations_in_heap()
torch.manual_seed(0)
model = create_model("affnet-faceres-cl-p", random_init=True).train().to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters(), 1e-4)
p = model.config.preprocess
faces = torch.randn(128, p.channels, p.size, p.size).contiguous(memory_format=torch.channels_last)
votes = torch.softmax(torch.randn(128, 8), 1)
for _ in range(2):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.head(model.trunk(faces))
    loss = F.cross_entropy(logits.float(), votes)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def run_child(code: str, heap: bool) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=environment_with(heap), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_large_tensor_comes_from_the_heap_not_from_a_fresh_mapping():
    applied, mapped = run_child(MAPPED, heap=True).split()
    assert applied == "True" and int(mapped) == 0
    applied, mapped = run_child(MAPPED, heap=False).split()  # glibc's default maps it
    assert applied == "False" and int(mapped) >= 256 * 2**20


def test_training_steps_write_the_same_weights_with_either_malloc():
    assert run_child(STEPS, heap=True) == run_child(STEPS, heap=False)
