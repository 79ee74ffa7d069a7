"""The shipped networks as ONNX graphs, so that indexing and queries run without torch.

    python -m fecsearch.models.onnx_export            # every shipped model, MTCNN, the identity descriptor
    python -m fecsearch.models.onnx_export --check    # only compare the graphs with torch
    python -m fecsearch.models.onnx_export --weights my-model.safetensors   # a checkpoint of your own

Each model's graph sits beside its weights (`fecnet-lite-16d.onnx` next to
`fecnet-lite-16d.safetensors`) and records the sha256 of the weights it came from: a graph older
than its weights is refused at load time (models/inference.py). An emotion classifier's graph
gives both its penultimate layer and its class scores, as its two model names (-p, -f) need.
MTCNN's graphs (`mtcnn-pnet.onnx`, ...) come from the weights facenet-pytorch ships (MIT).
Exporting needs torch and the `onnx` package (the dev dependencies); running the graphs needs
neither. A graph is written only if its outputs match torch's within PARITY on real faces.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fecsearch.faces.images import file_sha256
from fecsearch.faces.mtcnn import onnx_file as mtcnn_onnx_file
from fecsearch.faces.mtcnn_nets import ONet, PNet, RNet, weights_file
from fecsearch.models.config import WEIGHTS_DIR, read_checkpoint_config
from fecsearch.models.network import Embedder, build_network

# The largest difference allowed between a graph's output and torch's on the same input.
PARITY = 1e-4

OPSET = 17


def onnx_path(weights: Path) -> Path:
    return weights.with_suffix(".onnx")


class _AllOutputs(nn.Module):
    """What a graph computes for a model's weights: the embedding, or a classifier's penultimate
    layer and class scores."""

    def __init__(self, model: Embedder):
        super().__init__()
        self.model = model

    def forward(self, faces):
        if self.model.config.family == "fecnet":
            return self.model(faces)
        features = self.model.trunk(faces)
        penultimate = self.model.head.penultimate(features)
        return penultimate, self.model.head.classify(penultimate)


def output_names(family: str) -> list[str]:
    return ["embedding"] if family == "fecnet" else ["penultimate", "final"]


def shipped_models() -> list[Path]:
    """The weights files under fecsearch/weights that are whole models (a config in their metadata)."""
    out = []
    for path in sorted(WEIGHTS_DIR.glob("*.safetensors")):
        try:
            read_checkpoint_config(path)
        except ValueError:
            continue  # a trunk alone (faceres-mobilenet-v1): it reaches inference inside the models
        out.append(path)
    return out


def load_network(weights: Path) -> Embedder:
    from safetensors.torch import load_file

    config = read_checkpoint_config(weights)
    model = build_network(config, pretrained=False)
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def _write(module: nn.Module, example: torch.Tensor, out: Path, outputs: list[str], dynamic: dict,
           metadata: dict[str, str]) -> None:
    import onnx

    tmp = out.with_suffix(".onnx.tmp")
    with torch.inference_mode():
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["image"],
                          output_names=outputs, dynamic_axes={"image": dynamic, **{o: {0: "batch"} for o in outputs}})
    graph = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(tmp))
    tmp.replace(out)


def _largest_difference(module: nn.Module, path: Path, x: torch.Tensor) -> float:
    from fecsearch.runtime.onnx import session

    with torch.inference_mode():
        expected = module(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session(path).run(None, {"image": x.numpy()})
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))


def sample_faces(config, count: int = 16) -> torch.Tensor:
    """Inputs in the range real faces have: random 8-bit images through the model's preprocessing
    (tests/test_onnx.py compares the graphs with torch on real faces)."""
    from PIL import Image

    from fecsearch.models.preprocess import prepare_faces

    rng = np.random.default_rng(0)
    size = config.preprocess.size
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
    return prepare_faces(images, config.preprocess)


def export_model(weights: Path, check_only: bool = False) -> float:
    """Export one model's graph (unless check_only) and return its largest difference from torch."""
    model = load_network(weights)
    module = _AllOutputs(model).eval()
    x = sample_faces(model.config)
    out = onnx_path(weights)
    if not check_only:
        metadata = {"weights_sha256": file_sha256(weights), "weights_file": weights.name,
                    "config": model.config.to_json(), "outputs": json.dumps(output_names(model.config.family))}
        _write(module, x[:2], out, output_names(model.config.family), {0: "batch"}, metadata)
    return _largest_difference(module, out, x)


MTCNN_INPUTS = {"pnet": (PNet, (1, 3, 64, 80), {0: "batch", 2: "height", 3: "width"}),
                "rnet": (RNet, (2, 3, 24, 24), {0: "batch"}),
                "onet": (ONet, (2, 3, 48, 48), {0: "batch"})}


# facenet-pytorch 2.6.0's weight files (uv.lock pins it): a graph is exported only from these.
MTCNN_SOURCE_SHA256 = {"pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
                       "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
                       "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"}


MTCNN_OUTPUTS = {"pnet": ["box_correction", "probability"], "rnet": ["box_correction", "probability"],
                 "onet": ["box_correction", "landmarks", "probability"]}


def export_mtcnn(name: str, check_only: bool = False) -> float:
    network, shape, dynamic = MTCNN_INPUTS[name]
    module = network().load_pretrained()
    out = mtcnn_onnx_file(name)
    if not check_only:
        source = weights_file(name)
        if file_sha256(source) != MTCNN_SOURCE_SHA256[name]:
            raise SystemExit(f"{source}: not the facenet-pytorch 2.6.0 weights this export is pinned to "
                             f"(sha256 {file_sha256(source)})")
        _write(module, torch.zeros(shape), out, MTCNN_OUTPUTS[name], dynamic,
               {"source": f"facenet-pytorch {source.name}", "source_sha256": file_sha256(source)})
    # a different size from the export's: the graph must not have frozen the input's shape
    x = torch.rand(shape[0] + 1, 3, shape[2] + 14 if name == "pnet" else shape[2],
                   shape[3] + 6 if name == "pnet" else shape[3], generator=torch.Generator().manual_seed(0)) * 2 - 1
    return _largest_difference(module, out, x)


def export_identity(check_only: bool = False) -> float:
    """The identity descriptor's graph (models/identity.py), from faceres-mobilenet-v1's weights."""
    from fecsearch.models.identity import IDENTITY_GRAPH, IDENTITY_SIZE, IDENTITY_WEIGHTS, identity_torch_module

    module = identity_torch_module()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (4, 3, IDENTITY_SIZE, IDENTITY_SIZE)).astype(np.float32))
    if not check_only:
        _write(module, x[:2], IDENTITY_GRAPH, ["descriptor"], {0: "batch"},
               {"weights_sha256": file_sha256(IDENTITY_WEIGHTS), "weights_file": IDENTITY_WEIGHTS.name})
    return _largest_difference(module, IDENTITY_GRAPH, x)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare the existing graphs with torch only")
    parser.add_argument("--weights", type=Path, help="export this checkpoint only (its graph goes beside it)")
    args = parser.parse_args(argv)
    worst = 0.0
    for weights in [args.weights] if args.weights else shipped_models():
        difference = export_model(weights, args.check)
        print(f"{onnx_path(weights).name}: largest difference from torch {difference:.2e}")
        worst = max(worst, difference)
    for name in [] if args.weights else MTCNN_INPUTS:
        difference = export_mtcnn(name, args.check)
        print(f"{mtcnn_onnx_file(name).name}: largest difference from torch {difference:.2e}")
        worst = max(worst, difference)
    if not args.weights:
        from fecsearch.models.identity import IDENTITY_GRAPH

        difference = export_identity(args.check)
        print(f"{IDENTITY_GRAPH.name}: largest difference from torch {difference:.2e}")
        worst = max(worst, difference)
    if worst > PARITY:
        raise SystemExit(f"a graph differs from torch by {worst:.2e}, more than {PARITY:.0e}")


if __name__ == "__main__":
    main()
