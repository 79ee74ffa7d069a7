"""An int8 graph beside a model's float graph: the same network, 1.5x faster on a CPU.

    python -m fecsearch.models.quantize --calibration ../shared/data/ferplus/train   # the shipped lite FECNets
    python -m fecsearch.models.quantize --calibration FACES --weights my-model.safetensors

ONNX Runtime's static quantisation of the exported float graph (`fecnet-lite-16d.onnx` ->
`fecnet-lite-16d.int8.onnx`): weights int8 per output channel, activations uint8 with ranges
calibrated on calibration_faces() face crops drawn with a fixed seed (the 99.999th percentile of each
activation, so that a few extreme pixels do not waste the range). Weights use 7 bits
(`reduce_range`): CPUs without VNNI multiply uint8 by int8 in pairs whose sums saturate at 16
bits, and 7-bit weights keep them from it (with all 8 bits, the int8 vectors were far from the
float ones on such a CPU).
The graph records the sha256 of the weights it came from, like the float one, and is written only
if its vectors stay within INT8_TOLERANCE of the float graph's on faces outside the calibration.

Measured (benchmarks/RESULTS.md, "int8 graphs"): 1.5x the float graph's faces/s, and the same
FER+ valid triplet accuracy, CK+48 precision and K-NN AUC within 0.2 points. Only FECNet models on
the lite trunks, and ensembles with lite members, are quantised (quantised()): it is where it was
measured, and where the network is most of indexing's time. A pretrained FaceRes trunk stays float
inside an int8 graph (float_parts()). Needs the `onnx` package (a dev dependency); running the graph needs only onnxruntime.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from fecsearch.faces.images import file_sha256, find_images, load_image
from fecsearch.models.config import LITE_WIDTHS, WEIGHTS_DIR, ModelConfig, member_configs, read_checkpoint_config

CALIBRATION_FACES = 1024
# ONNX Runtime's calibration holds every activation of every calibration face in memory: with a
# network on 112 px faces (FaceRes) 1024 faces took more than 24 GB, so such models calibrate on 256.
LARGE_INPUT_CALIBRATION_FACES = 256
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 64
CHECK_FACES = 512

# The largest distance allowed between an int8 unit vector and the float graph's, at the 99th
# percentile of the check faces (measured on FER+ crops: 0.012 at the median, 0.06 at most).
INT8_TOLERANCE = 0.06


def quantised(config: ModelConfig) -> bool:
    """Whether `quantize` gives a shipped model an int8 graph: FECNet embeddings on the lite trunks, and
    ensembles with lite members. (The lite classifier's 512-d penultimate layer moved 0.08 at the 99th
    percentile, over the tolerance; it is a baseline for studies, not what indexes are built with.)"""
    return config.family == "fecnet" and any(c.trunk in LITE_WIDTHS for c in member_configs(config))


def calibration_faces(config: ModelConfig) -> int:
    largest = max(c.preprocess.size for c in member_configs(config))
    return CALIBRATION_FACES if largest <= 64 else LARGE_INPUT_CALIBRATION_FACES


def float_parts(config: ModelConfig) -> list[str]:
    """Where in an exported graph the nodes that stay float are: a pretrained FaceRes trunk (its ReLU6
    maps and depthwise convolutions moved the vectors 0.32 at the 99th percentile in int8) and the
    input adapters in front of it (exact arithmetic on 8-bit pixels)."""
    if config.members == 1:
        return ["/trunk/"] if config.trunk == "faceres" else []
    return [part for i, c in enumerate(member_configs(config)) if c.trunk == "faceres"
            for part in (f"/members.{i}/trunk/", f"/inputs.{i}/")]


def int8_path(weights: Path) -> Path:
    """Where a weights file's int8 graph lives: beside it, as NAME.int8.onnx."""
    return Path(weights).with_suffix(".int8.onnx")


def prepared(paths: list[Path], config: ModelConfig) -> np.ndarray:
    from fecsearch.models.preprocess import prepare_face_arrays

    return prepare_face_arrays([load_image(p) for p in paths], config.preprocess)


def calibration_and_check(folder: Path, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """calibration_faces() faces drawn with a fixed seed for calibration, and CHECK_FACES others."""
    files = find_images(folder)[0]
    count = calibration_faces(config)
    if len(files) < count + CHECK_FACES:
        raise SystemExit(f"{folder}: {len(files)} face images; calibration needs at least {count + CHECK_FACES}")
    drawn = random.Random(CALIBRATION_SEED).sample(files, count + CHECK_FACES)
    return prepared(drawn[:count], config), prepared(drawn[count:], config)


def embed_both(graph: Path, faces: np.ndarray) -> np.ndarray:
    """The graph's embedding (unit vectors) of every face."""
    from fecsearch.runtime.onnx import session

    s = session(graph)
    name = s.get_outputs()[0].name
    return np.concatenate([s.run([name], {"image": faces[i:i + 256]})[0] for i in range(0, len(faces), 256)])


def quantise(weights: Path, calibration: Path) -> dict:
    """Write `weights`' int8 graph from its float graph; returns how far its vectors are from the float ones."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fecsearch.models.inference import graph_path

    config = read_checkpoint_config(weights)
    if config.family != "fecnet":
        raise SystemExit(f"{weights.name}: a {config.family} model; only FECNet embeddings are quantised")
    source = graph_path(weights)
    source_meta = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    if source_meta.get("weights_sha256") != file_sha256(weights):
        raise SystemExit(f"{source} is older than {weights.name}: run `python -m fecsearch.models.onnx_export` first")
    faces, check = calibration_and_check(calibration, config)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(faces[i:i + CALIBRATION_BATCH] for i in range(0, len(faces), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    out = int8_path(weights)
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "float.onnx"
        quant_pre_process(str(source), str(ready))
        written = Path(tmp) / "int8.onnx"
        parts = float_parts(config)
        kept_float = [n.name for n in onnx.load(str(ready)).graph.node if any(p in n.name for p in parts)]
        quantize_static(str(ready), str(written), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile, nodes_to_exclude=kept_float)
        graph = onnx.load(str(written))
        del graph.metadata_props[:]
        metadata = {**source_meta, "precision": "int8",
                    "calibration": f"{len(faces)} faces of {Path(calibration).name}, seed {CALIBRATION_SEED}"}
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(written))
        moved = np.linalg.norm(embed_both(written, check) - embed_both(source, check), axis=1)
        report = {"graph": out.name, "median": float(np.median(moved)), "p99": float(np.percentile(moved, 99)),
                  "max": float(moved.max())}
        if report["p99"] > INT8_TOLERANCE:
            raise SystemExit(f"{out.name}: int8 vectors move {report['p99']:.3f} from the float graph's at the 99th "
                             f"percentile, more than {INT8_TOLERANCE}; not written")
        tmp_out = out.with_suffix(".onnx.tmp")
        written.replace(tmp_out)
        tmp_out.replace(out)
    return report


def quantised_models() -> list[Path]:
    from fecsearch.models.onnx_export import shipped_models

    return [w for w in shipped_models()
            if quantised(read_checkpoint_config(w))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=Path, required=True, help="a folder of face crops (e.g. FER+ train)")
    parser.add_argument("--weights", type=Path, help=f"this checkpoint only (default: the shipped FECNet models on "
                                                     f"the lite trunks and ensembles with lite members in {WEIGHTS_DIR})")
    args = parser.parse_args(argv)
    for weights in [args.weights] if args.weights else quantised_models():
        r = quantise(weights, args.calibration)
        print(f"{r['graph']}: vectors move {r['median']:.4f} from the float graph's at the median, "
              f"{r['p99']:.4f} at the 99th percentile, {r['max']:.4f} at most")


if __name__ == "__main__":
    main()
