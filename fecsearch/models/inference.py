"""The network that indexing and queries embed faces with: in ONNX Runtime (no torch needed) or torch.

Both take prepared faces (models.preprocess.prepare_face_arrays) and give the vectors an index
stores, mirror average included; tests/test_onnx.py holds them to within 1e-4 of each other.
`runtime="auto"` takes ONNX Runtime where the model has a current exported graph (every shipped
model has one) and onnxruntime is installed, and torch otherwise (a checkpoint of your own, until
`python -m fecsearch.models.onnx_export --weights it.safetensors` exports it).
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from fecsearch.faces.images import file_sha256
from fecsearch.models.config import ModelConfig, average_mirrored, trained_config
from fecsearch.runtime.onnx import RUNTIMES, RuntimeUnavailable, onnx_installed, torch_installed


class StaleGraph(RuntimeUnavailable):
    """An exported graph that is missing or does not come from the weights it sits beside."""


PRECISIONS = ("auto", "fp32", "int8")


def graph_path(weights: Path, precision: str = "fp32") -> Path:
    """Where a weights file's exported graph lives: beside it, with the suffix .onnx (.int8.onnx for
    the int8 graph models/quantize.py writes)."""
    return Path(weights).with_suffix(".int8.onnx" if precision == "int8" else ".onnx")


def choose_precision(wanted: str, weights: Path, runtime: str = "auto", device: str | None = None) -> str:
    """The precision a new index embeds with: "auto" takes int8 where the model has an int8 graph and
    ONNX Runtime runs it on the CPU (1.5x the faces/s there, the same accuracy: models/quantize.py),
    fp32 otherwise (a GPU gains nothing from it); "fp32" and "int8" are taken as asked. An index
    keeps its precision: one begun in int8 on a CPU runs the same int8 graph on a GPU later, where
    ONNX Runtime's CUDA provider computes its quantise-dequantise pairs in float (not run on a GPU
    here)."""
    if wanted not in PRECISIONS:
        raise ValueError(f"unknown precision '{wanted}' ({', '.join(PRECISIONS)})")
    if wanted != "auto":
        return wanted
    usable = (runtime != "torch" and onnx_installed() and graph_path(weights, "int8").exists()
              and onnx_device(device).startswith("cpu"))
    return "int8" if usable else "fp32"


class OnnxNetwork:
    """A model's exported graph in an ONNX Runtime session: prepared faces -> vectors, like
    models.network.InferenceNetwork, without torch."""

    runtime = "onnx"
    batch_size = 64

    def __init__(self, config: ModelConfig, weights: Path, device: str | None = "cpu", threads: int | None = None,
                 weights_sha256: str | None = None, precision: str = "fp32"):
        """weights_sha256: the weights' checksum where the caller has just computed it (an index checks it);
        precision: "fp32", or "int8" for the graph models/quantize.py writes."""
        from fecsearch.runtime.onnx import session

        graph = graph_path(weights, precision)
        if not graph.exists():
            if precision == "int8":
                raise StaleGraph(f"{weights} has no int8 graph {graph.name}; write it with `python -m "
                                 f"fecsearch.models.quantize --weights {weights} --calibration FACES`, or use "
                                 f"--precision fp32 for a new index")
            raise StaleGraph(f"{weights} has no exported graph {graph.name}; write it with "
                             f"`python -m fecsearch.models.onnx_export --weights {weights}`, or use --runtime torch")
        # Bulk embedding on a CPU runs one single-threaded session per core, each on its own batches:
        # these small convolutions share out better by batch than within one run (1.1x the faces/s
        # of one session with a thread per core: benchmarks/RESULTS.md, "Embedding lanes").
        # The other lanes open on the first call with several batches: a query embeds one face.
        self.lanes = cpu_lanes(device, threads)
        self.sessions = [session(graph, device, 1 if self.lanes > 1 else threads)]
        self.session = self.sessions[0]
        self._graph, self._pool = graph, None
        made_from = self.session.get_modelmeta().custom_metadata_map.get("weights_sha256")
        if made_from != (weights_sha256 or file_sha256(weights)):
            again = (f"`python -m fecsearch.models.onnx_export --weights {weights}`, then `python -m "
                     f"fecsearch.models.quantize --weights {weights} --calibration FACES`" if precision == "int8" else
                     f"`python -m fecsearch.models.onnx_export --weights {weights}`, or use --runtime torch")
            raise StaleGraph(f"{graph} was exported from other weights than {weights.name}; export it again with "
                             f"{again}")
        self.config, self.device, self.precision = config, device, precision
        self.output = "embedding" if config.family == "fecnet" else config.output

    def _open_lanes(self) -> None:
        if self._pool is not None:
            return
        from concurrent.futures import ThreadPoolExecutor

        from fecsearch.runtime.onnx import session

        self.sessions += [session(self._graph, self.device, 1) for _ in range(self.lanes - len(self.sessions))]
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="embed-lane")

    def _run(self, faces: np.ndarray, lane: int = 0) -> np.ndarray:
        return self.sessions[lane].run([self.output], {"image": faces})[0]

    def _embed_batch(self, batch: np.ndarray, lane: int = 0) -> np.ndarray:
        if self.config.mirror_average:
            both = self._run(np.ascontiguousarray(np.concatenate([batch, batch[..., ::-1]])), lane)
            return average_mirrored(both[:len(batch)], both[len(batch):], self.config)
        return self._run(np.ascontiguousarray(batch), lane)

    def embed(self, faces) -> np.ndarray:
        """Prepared faces (N, C, S, S) -> their vectors (N, D), float32."""
        faces = np.asarray(faces, dtype=np.float32)
        batches = [faces[i:i + self.batch_size] for i in range(0, len(faces), self.batch_size)]
        if not batches:
            return np.zeros((0, self.config.embedding_size), np.float32)
        lanes = min(self.lanes, len(batches))
        if lanes == 1:
            out = [self._embed_batch(b) for b in batches]
        else:
            # lane k embeds batches k, k + lanes, ...; ONNX Runtime lets the GIL go while it runs
            self._open_lanes()
            done = list(self._pool.map(lambda k: [self._embed_batch(b, k) for b in batches[k::lanes]], range(lanes)))
            out = [done[i % lanes][i // lanes] for i in range(len(batches))]
        return np.concatenate(out).astype(np.float32)


def cpu_lanes(device: str | None, threads: int | None) -> int:
    """Single-threaded sessions an OnnxNetwork runs side by side: one per core on a CPU when the
    caller leaves the threads to it (threads=None), else one session with the threads asked for."""
    import os

    if threads is not None or not onnx_device(device).startswith("cpu"):
        return 1
    return max(1, os.cpu_count() or 1)


def load_inference(name: str, checkpoint: str | Path | None = None, device: str | None = None,
                   runtime: str = "auto", mirror_average: bool | None = None, threads: int | None = None,
                   weights_sha256: str | None = None, precision: str = "fp32"):
    """A named model (with `checkpoint`'s weights, if given) ready to embed, in the runtime asked for.

    device None: CUDA when the runtime has it, else the CPU. mirror_average None: the model's own
    setting. threads: ONNX Runtime's threads (None: every core). precision: "fp32", or "int8" (the
    model's int8 graph, in ONNX Runtime only; "auto" resolves with choose_precision)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime '{runtime}' ({', '.join(RUNTIMES)})")
    config, weights = trained_config(name, checkpoint)
    if mirror_average is not None:
        config = replace(config, mirror_average=mirror_average)
    precision = choose_precision(precision, weights, runtime, device)
    if precision == "int8":
        # int8 vectors come from the int8 graph alone: no fallback that would embed differently
        if runtime == "torch":
            raise RuntimeUnavailable("int8 vectors come from ONNX Runtime's int8 graph; --runtime torch cannot make "
                                     "them (use --runtime onnx, or an index built with --precision fp32)")
        if not onnx_installed():
            raise RuntimeUnavailable("int8 vectors need onnxruntime (pip install onnxruntime)")
        return OnnxNetwork(config, weights, onnx_device(device), threads, weights_sha256, precision)
    if runtime in ("auto", "onnx"):
        if not onnx_installed():
            if runtime == "onnx":
                raise RuntimeUnavailable("--runtime onnx: onnxruntime is not installed (pip install onnxruntime)")
        else:
            try:
                return OnnxNetwork(config, weights, onnx_device(device), threads, weights_sha256)
            except RuntimeUnavailable:
                if runtime == "onnx" or not torch_installed():
                    raise
    if not torch_installed():
        raise RuntimeUnavailable(f"model '{name}' needs torch here (pip install 'fecsearch[torch]'), "
                           f"or onnxruntime with an exported graph")
    from fecsearch.models.registry import checked_device, create_model

    model = create_model(name, checkpoint=checkpoint, device=checked_device(device))
    model.config = config
    network = model.for_inference()
    network.device = str(network.device)
    return network


def nvidia_driver_seen() -> bool:
    """Whether this machine may have an NVIDIA GPU, asked without importing torch (seconds): on
    Linux the driver's files are there or there is no GPU to find."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")


def indexing_device(device: str | None, runtime: str = "auto", precision: str = "auto") -> str | None:
    """The device an index run embeds on: the one asked for, if asked; else CUDA through torch where
    torch sees a GPU and ONNX Runtime has no CUDA provider (what `pip install 'fecsearch[torch]'`
    gives on a GPU machine). There the default model indexed cropped faces 2.6x as fast as ONNX
    Runtime on the same machine's 16 cores (benchmarks/RESULTS.md, "On a GPU"); the fast one gained
    nothing, and lost nothing. None leaves the
    choice to load_inference: ONNX Runtime's CUDA provider where it has one, else the CPU. Queries
    do not come here: one face is not worth starting CUDA for. int8 stays in ONNX Runtime."""
    if device or runtime == "onnx" or precision == "int8" or not torch_installed() or not nvidia_driver_seen():
        return device
    if onnx_installed() and onnx_device(None) != "cpu":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else device


def indexing_placement(device: str | None, runtime: str = "auto",
                       precision: str = "auto") -> tuple[str | None, tuple[str | None, str] | None]:
    """(the device the network embeds on, where detection runs instead, or None to run it beside
    the network). A GPU found for the network alone (indexing_device) leaves MTCNN where it was asked
    for: its many small convolutions ran no faster on an H100 than in ONNX Runtime on the machine's
    cores (benchmarks/RESULTS.md, "On a GPU")."""
    chosen = indexing_device(device, runtime, precision)
    return chosen, (None if chosen == device else (device, runtime))


def onnx_device(device: str | None) -> str:
    """The device asked for, else CUDA when this onnxruntime has it, else the CPU."""
    if device:
        return device
    import onnxruntime

    return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
