"""Read a TensorFlow.js graph model (model.json + weight shards) and evaluate it with numpy.

Used only to convert and to check converted weights (scripts/build_faceres_weights.py): the
numpy evaluation follows the graph's own nodes, ops and padding, so it is a reference computed
independently of the torch network it checks. It knows the few ops MobileNet-style graphs use.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8}


def read_weights(model_json: str | Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest, dequantised to its original dtype, by node name."""
    model_json = Path(model_json)
    spec = json.loads(model_json.read_text())
    weights = {}
    for group in spec["weightsManifest"]:
        data = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            quant = w.get("quantization")
            stored = np.dtype(_DTYPES[quant["dtype"] if quant else w["dtype"]])
            raw = np.frombuffer(data, stored, count, offset)
            offset += count * stored.itemsize
            if quant and quant["dtype"] != "float16":
                raw = raw.astype(np.float32) * quant["scale"] + quant["min"]
            weights[w["name"]] = raw.astype(_DTYPES[w["dtype"]]).reshape(w["shape"])
        if offset != len(data):
            raise ValueError(f"{model_json}: weight shards hold {len(data)} bytes, the manifest {offset}")
    return weights


def _b64(text: str) -> str:
    return base64.b64decode(text).decode()


def _same_pad(x: np.ndarray, kernel: tuple[int, int], stride: int) -> np.ndarray:
    pads = [(0, 0)]
    for size, k in zip(x.shape[1:3], kernel):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def _patches(x: np.ndarray, kh: int, kw: int, stride: int, padding: str):
    """Yield (dy, dx, strided input slice) for every kernel offset (NHWC)."""
    if padding == "SAME":
        x = _same_pad(x, (kh, kw), stride)
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    for dy in range(kh):
        for dx in range(kw):
            yield dy, dx, x[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride, :]


def conv2d(x, kernel, stride, padding):
    kh, kw, _, cout = kernel.shape
    out = None
    for dy, dx, part in _patches(x, kh, kw, stride, padding):
        term = part @ kernel[dy, dx]
        out = term if out is None else out + term
    return out


def depthwise(x, kernel, stride, padding):
    kh, kw = kernel.shape[:2]
    out = None
    for dy, dx, part in _patches(x, kh, kw, stride, padding):
        term = part * kernel[dy, dx, :, 0]
        out = term if out is None else out + term
    return out


def _attr_str(node, key):
    return _b64(node["attr"][key]["s"])


def _stride(node):
    return int(node["attr"]["strides"]["list"]["i"][1])


class GraphModel:
    """`GraphModel(path)(images, output)` -> that output node's value for NHWC float64 images."""

    def __init__(self, model_json: str | Path):
        spec = json.loads(Path(model_json).read_text())
        self.nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
        self.weights = {k: v.astype(np.float64) for k, v in read_weights(model_json).items()}

    def __call__(self, images: np.ndarray, output: str) -> np.ndarray:
        values = {}

        def value(name: str):
            name = name.split(":")[0]
            if name in values:
                return values[name]
            node = self.nodes[name]
            op, inputs = node["op"], node.get("input", [])
            if op == "Placeholder":
                result = images
            elif op == "Const":
                result = self.weights[name]
            else:
                args = [value(i) for i in inputs]
                if op == "Conv2D":
                    result = conv2d(args[0], args[1], _stride(node), _attr_str(node, "padding"))
                elif op == "DepthwiseConv2dNative":
                    result = depthwise(args[0], args[1], _stride(node), _attr_str(node, "padding"))
                elif op == "Add" or op == "AddV2" or op == "BiasAdd":
                    result = args[0] + args[1]
                elif op == "Mul":
                    result = args[0] * args[1]
                elif op == "Relu":
                    result = np.maximum(args[0], 0)
                elif op == "Minimum":
                    result = np.minimum(args[0], args[1])
                elif op == "Maximum":
                    result = np.maximum(args[0], args[1])
                elif op == "Mean":
                    result = args[0].mean(axis=tuple(int(a) for a in np.atleast_1d(args[1])))
                elif op == "_FusedMatMul":
                    result = args[0] @ args[1] + args[2]
                    fused = node["attr"].get("fused_ops", {}).get("list", {}).get("s", [])
                    if any(_b64(o) == "Relu" for o in fused):
                        result = np.maximum(result, 0)
                else:
                    raise NotImplementedError(f"op {op} ({name})")
            values[name] = result
            return result

        return value(output)
