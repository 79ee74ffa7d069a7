"""On a GPU (FECSEARCH_TEST_GPU=1 on a machine where torch sees one): index embeds there by itself,
with the CPU's vectors, and photos are still found by MTCNN on the CPU. Elsewhere these skip: the
choice of device is checked without a GPU in tests/test_onnx.py."""
import os

import numpy as np
import pytest
import torch
from conftest import copy_crops

from fecsearch.faces.images import load_image
from fecsearch.ingest.indexer import Indexer
from fecsearch.models.inference import load_inference
from fecsearch.models.preprocess import prepare_face_arrays
from fecsearch.store.database import FaceStore

pytestmark = pytest.mark.skipif(os.environ.get("FECSEARCH_TEST_GPU") != "1" or not torch.cuda.is_available(),
                                reason="needs a CUDA GPU and FECSEARCH_TEST_GPU=1")


def test_index_embeds_crops_on_the_gpu_as_the_cpu_does(tmp_path, ferplus_valid):
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
    store = FaceStore(tmp_path / "idx")
    try:
        indexer = Indexer.for_folder(store, progress=False)
        assert str(indexer.network.device).startswith("cuda")
        assert indexer.pipeline.detector.runtime == "onnx" and indexer.pipeline.detector.device in (None, "cpu")
        assert indexer.run(few_photos).faces_added >= 4  # couple.jpg's two, and one in each of the others
    finally:
        store.close()
