"""On a GPU (FECSEARCH_TEST_GPU=1 on a machine where torch sees one): index embeds there by itself,
with the CPU's vectors, and photos are still found by MTCNN on the CPU; a classifier trains there
and its run resumes on the CPU. Elsewhere these skip: the choice of device is checked without a GPU
in tests/test_onnx.py."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import copy_crops

from fecsearch.faces.images import load_image
from fecsearch.models.inference import load_inference
from fecsearch.models.preprocess import prepare_face_arrays

pytestmark = pytest.mark.skipif(os.environ.get("FECSEARCH_TEST_GPU") != "1" or not torch.cuda.is_available(),
                                reason="needs a CUDA GPU and FECSEARCH_TEST_GPU=1")


def test_index_embeds_crops_on_the_gpu_as_the_cpu_does(tmp_path, ferplus_valid):
    from fecsearch.ingest.indexer import Indexer
    from fecsearch.store.database import FaceStore

    folder = copy_crops(ferplus_valid, tmp_path / "faces", 300)
    store = FaceStore(tmp_path / "idx")
    try:
        indexer = Indexer.for_folder(store, cropped=True, progress=False)
        assert str(indexer.network.device).startswith("cuda") and indexer.network.precision == "fp32"
        assert indexer.run(folder).faces_added == 300
        stored = {str(r["path"]): np.frombuffer(r["embedding"], np.float32) for r in store.db.query(
            "select images.path as path, faces.embedding as embedding from faces join images on "
            "faces.image_id = images.id")}
    finally:
        store.close()
    paths = sorted(folder.glob("*.png"))
    cpu = load_inference(indexer.model_name, device="cpu", runtime="torch")
    expected = cpu.embed(prepare_face_arrays([load_image(p) for p in paths], cpu.config.preprocess))
    got = np.stack([stored[str(p)] for p in paths])
    assert np.abs(got - expected).max() < 1e-3
    assert np.abs(got).max() > 1e-2


def test_photos_on_a_gpu_are_detected_on_the_cpu(tmp_path, few_photos):
    from fecsearch.ingest.indexer import Indexer
    from fecsearch.store.database import FaceStore

    store = FaceStore(tmp_path / "idx")
    try:
        indexer = Indexer.for_folder(store, progress=False)
        assert str(indexer.network.device).startswith("cuda")
        assert indexer.pipeline.detector.runtime == "onnx" and indexer.pipeline.detector.device in (None, "cpu")
        assert indexer.run(few_photos).faces_added >= 4  # couple.jpg's two, and one in each of the others
    finally:
        store.close()


def test_a_classifier_trains_on_the_gpu_and_resumes_on_the_cpu(tmp_path, ferplus_valid):
    """One epoch on the GPU in bfloat16, then the same run asked for two epochs on the CPU: it
    resumes from the GPU's state (epoch 1 is not run again) and the weights load anywhere."""
    from safetensors import safe_open

    from fecsearch.models.registry import create_model
    from fecsearch.train.classifier import train_classifier

    folder = copy_crops(ferplus_valid, tmp_path / "faces", 400)
    names = {p.name for p in folder.glob("*.png")}
    rows = [line for line in (ferplus_valid / "label.csv").read_text().splitlines() if line.split(",")[0] in names]
    (folder / "label.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "cl.safetensors"
    first = train_classifier(folder, folder, out, "affnet-lite-cl-p", epochs=1, bf16=True, device="cuda", log=print)
    assert first["device"] == "cuda" and len(first["history"]) == 1
    second = train_classifier(folder, folder, out, "affnet-lite-cl-p", epochs=2, device="cpu", log=print)
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["metrics"])["device"] == "cpu"
    vectors = create_model("affnet-lite-cl-p", checkpoint=out).for_inference().embed(
        prepare_face_arrays([load_image(p) for p in sorted(folder.glob("*.png"))[:8]], get_preprocess()))
    assert np.isfinite(vectors).all() and np.abs(vectors).max() > 0


def get_preprocess():
    from fecsearch.models.config import get_config

    return get_config("affnet-lite-cl-p").preprocess


def test_a_fecnet_head_trains_on_the_gpu_and_resumes_on_the_cpu(tmp_path, ferplus_valid):
    """The head on the shipped classifier's trunk, mined vote triplets (the step that reads the
    votes on the device too): one epoch on the GPU, the second on the CPU from the GPU's state."""
    from conftest import ROOT

    from fecsearch.train.fecnet import train_fecnet

    trunk = ROOT / "fecsearch" / "weights" / "affnet-lite-cl.safetensors"
    out = tmp_path / "fecnet.safetensors"
    args = dict(steps_per_epoch=3, triplets_per_type=4, triplet_source="mined", log=print)
    first = train_fecnet(ferplus_valid, ferplus_valid, trunk, out, epochs=1, device="cuda", **args)
    assert first["device"] == "cuda" and len(first["history"]) == 1
    second = train_fecnet(ferplus_valid, ferplus_valid, trunk, out, epochs=2, device="cpu", **args)
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]
    assert second["history"][1]["valid_triplet_accuracy"]["overall"] > 0.4
