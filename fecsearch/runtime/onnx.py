"""ONNX Runtime sessions for the shipped networks: CPU, or CUDA where onnxruntime-gpu is installed.

Inference without torch: a query or an index run needs only numpy, Pillow and onnxruntime
(tens of MB) instead of torch (GBs with its CUDA libraries), and starts in a fraction of the time.
The graphs are exported from the torch networks by `python -m fecsearch.models.onnx_export`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

RUNTIMES = ("auto", "onnx", "torch")


class RuntimeUnavailable(RuntimeError):
    """The runtime asked for cannot run here (not installed, no CUDA, no current graph); the
    message says what to install or use instead."""


def module_installed(name: str) -> bool:
    """Whether a package can be imported here, found without importing it."""
    return importlib.util.find_spec(name) is not None


def onnx_installed() -> bool:
    return module_installed("onnxruntime")


def torch_installed() -> bool:
    return module_installed("torch")


def providers(device: str | None) -> list[str]:
    """The execution providers for a device name ("cpu", "cuda", "cuda:1")."""
    import onnxruntime

    if not device or str(device).startswith("cpu"):
        return ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise RuntimeUnavailable("--device cuda: this onnxruntime has no CUDA support; install onnxruntime-gpu, "
                               "or use --runtime torch")
        index = str(device).partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise ValueError(f"unknown device '{device}' (cpu, cuda or cuda:N)")


def session(path: str | Path, device: str | None = "cpu", threads: int | None = None):
    """An inference session for one .onnx file; threads=None lets ONNX Runtime use every core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise for users
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # ONNX Runtime's threads otherwise spin for a while after each run, taking the CPU from the
    # next step (detection, FAISS, another session): a warm search by id went from 0.2 to 8 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=providers(device))


def metadata(path: str | Path) -> dict[str, str]:
    """The key-value metadata an exported graph carries (which weights it came from, its config)."""
    return dict(session(path).get_modelmeta().custom_metadata_map)
