"""The ONNX Runtime path: the shipped graphs give torch's numbers, and an index needs no torch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from fecsearch.faces.images import find_images, load_image
from fecsearch.models.config import get_config, weights_path
from fecsearch.models.inference import OnnxNetwork, StaleGraph, graph_path, load_inference
from fecsearch.models.preprocess import prepare_face_arrays

# Every model whose weights ship with fecsearch, with each of its outputs.
SHIPPED = ["fecnet-lite-x2-pair-faceres-48d-v2", "fecnet-lite-x2-pair-faceres-48d", "fecnet-lite-x2-pair-32d", "affnet-lite-x2-cl-p", "affnet-lite-x2-cl-f",
           "fecnet-lite-16d", "affnet-lite-cl-p", "affnet-lite-cl-f", "affnet-faceres-cl-p", "affnet-faceres-cl-f"]


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("mirror", [False, True])
def test_every_shipped_graph_embeds_as_torch_does(name, mirror, ferplus_valid, ckplus):
    """Real faces (FER+ crops and CK+ faces) through both runtimes: the same vectors within 1e-4."""
    files = sorted(ferplus_valid.glob("*.png"))[:48] + find_images(ckplus)[0][::40][:16]
    faces = prepare_face_arrays([load_image(f) for f in files], get_config(name).preprocess)
    onnx = load_inference(name, runtime="onnx", mirror_average=mirror, device="cpu")
    torch_ = load_inference(name, runtime="torch", mirror_average=mirror, device="cpu")
    assert onnx.runtime == "onnx" and torch_.runtime == "torch"
    a, b = onnx.embed(faces), torch_.embed(faces)
    assert a.shape == b.shape == (len(files), get_config(name).embedding_size)
    assert np.abs(a - b).max() <= 1e-4
    assert np.abs(a).max() > 1e-2  # not two runtimes agreeing on nothing


def test_mtcnn_finds_the_same_faces_in_both_runtimes(photos):
    """MTCNN's three graphs against its torch networks, through the same cascade, on every test photo:
    the same faces, boxes and landmarks within a hundredth of a pixel."""
    from fecsearch.faces.detect import FaceDetector

    onnx, torch_ = FaceDetector(runtime="onnx"), FaceDetector(runtime="torch")
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    found = 0
    for path in find_images(photos)[0]:
        image = load_image(path)
        a, b = onnx.detect_one(image), torch_.detect_one(image)
        assert len(a) == len(b), path.name
        for fa, fb in zip(a, b):
            assert np.abs(np.subtract(fa.box, fb.box)).max() < 0.01, path.name
            assert np.abs(fa.landmarks - fb.landmarks).max() < 0.01, path.name
            assert abs(fa.probability - fb.probability) < 1e-4
        found += len(a)
    assert found >= 70


def test_a_graph_from_other_weights_is_refused(tmp_path):
    """A graph sits beside its weights and records their sha256: other weights under the same name
    are refused by --runtime onnx and, with auto, embedded by torch."""
    weights = tmp_path / "mine.safetensors"
    shutil.copy(weights_path(get_config("fecnet-lite-16d")), weights)
    with pytest.raises(StaleGraph, match="no exported graph"):
        load_inference("fecnet-lite-16d", weights, device="cpu", runtime="onnx")
    shutil.copy(graph_path(weights_path(get_config("affnet-lite-cl-p"))), graph_path(weights))
    with pytest.raises(StaleGraph, match="exported from other weights"):
        load_inference("fecnet-lite-16d", weights, device="cpu", runtime="onnx")
    assert load_inference("fecnet-lite-16d", weights, device="cpu").runtime == "torch"


def test_a_checkpoint_of_ones_own_can_be_exported(tmp_path):
    weights = tmp_path / "mine.safetensors"
    shutil.copy(weights_path(get_config("fecnet-lite-16d")), weights)
    subprocess.run([sys.executable, "-m", "fecsearch.models.onnx_export", "--weights", str(weights)], check=True,
                   capture_output=True)
    network = load_inference("fecnet-lite-16d", weights, device="cpu")
    assert isinstance(network, OnnxNetwork)
    faces = prepare_face_arrays([Image.new("L", (48, 48), 128), Image.new("L", (48, 48), 30)],
                                get_config("fecnet-lite-16d").preprocess)
    expected = load_inference("fecnet-lite-16d", device="cpu", runtime="torch").embed(faces)
    assert np.abs(network.embed(faces) - expected).max() <= 1e-4


def test_shipped_graphs_are_current():
    """Each shipped graph was exported from the weights beside it (re-export after retraining:
    `python -m fecsearch.models.onnx_export`)."""
    for name in SHIPPED:
        OnnxNetwork(get_config(name), weights_path(get_config(name)), "cpu")


@pytest.mark.parametrize("cores", [2, 3])
def test_embedding_lanes_give_one_sessions_vectors(cores, monkeypatch, ferplus_valid):
    """Bulk embedding on a CPU spreads batches over one single-threaded session per core; the vectors
    come back in order and equal those of one session (int8 and float graphs, 5 batches and a part)."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    config = get_config("fecnet-lite-16d")
    faces = prepare_face_arrays([load_image(f) for f in sorted(ferplus_valid.glob("*.png"))[:5 * 64 + 17]],
                                config.preprocess)
    for precision in ("int8", "fp32"):
        lanes = load_inference("fecnet-lite-16d", device="cpu", runtime="onnx", precision=precision)
        one = load_inference("fecnet-lite-16d", device="cpu", runtime="onnx", precision=precision, threads=2)
        np.testing.assert_allclose(lanes.embed(faces[:3]), one.embed(faces[:3]), atol=1e-6)
        assert len(lanes.sessions) == 1  # one batch: the other lanes are not opened (a query's cold start)
        vectors = lanes.embed(faces)
        assert vectors.shape == (len(faces), 16)
        assert (len(lanes.sessions), len(one.sessions)) == (cores, 1)
        np.testing.assert_allclose(vectors, one.embed(faces), atol=1e-6)


@pytest.mark.parametrize("name", ["fecnet-lite-16d", "fecnet-lite-x2-pair-32d", "fecnet-lite-x2-pair-faceres-48d",
                                  "fecnet-lite-x2-pair-faceres-48d-v2"])
def test_the_int8_graph_is_rebuilt_exactly_and_embeds_like_the_float_one(name, tmp_path, ferplus_train, ferplus_valid,
                                                                         ckplus):
    """`python -m fecsearch.models.quantize` rebuilds the shipped int8 graph byte for byte from the
    float graph and FER+ train; on faces it was not calibrated on, its vectors stay near the float
    graph's and it orders FER+ valid's vote triplets as well. A FaceRes trunk stays float in it."""
    import onnx
    from fecsearch.data.labels import read_ferplus
    from fecsearch.data.triplets import ferplus_vote_triplets
    from fecsearch.evaluation.metrics import triplet_accuracy
    from fecsearch.faces.images import file_sha256
    from fecsearch.models.quantize import INT8_TOLERANCE, int8_path

    config = get_config(name)
    weights = weights_path(config)
    for source in (weights, graph_path(weights)):
        shutil.copy(source, tmp_path / source.name)
    subprocess.run([sys.executable, "-m", "fecsearch.models.quantize", "--calibration", str(ferplus_train),
                    "--weights", str(tmp_path / weights.name)], check=True, capture_output=True)
    assert file_sha256(int8_path(tmp_path / weights.name)) == file_sha256(int8_path(weights))
    nodes = onnx.load(str(int8_path(weights))).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    dequantised = [n for n in convs if any("DequantizeLinear" in i for i in n.input)]
    faceres = [n for n in convs if "/trunk/net/" in n.name]  # FaceRes's MobileNet blocks
    assert dequantised and not set(map(id, faceres)) & set(map(id, dequantised))
    assert len(faceres) == (23 if config.member_models else 0)  # stem and 11 blocks of two, kept float

    int8 = load_inference(name, device="cpu", precision="int8")
    fp32 = load_inference(name, device="cpu", runtime="onnx")
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    files = sorted(ferplus_valid.glob("*.png"))[:256] + find_images(ckplus)[0][::20][:64]
    faces = prepare_face_arrays([load_image(f) for f in files], config.preprocess)
    moved = np.linalg.norm(int8.embed(faces) - fp32.embed(faces), axis=1)
    assert 1e-4 < np.median(moved) < 0.03 and np.percentile(moved, 99) <= INT8_TOLERANCE

    valid = read_ferplus(ferplus_valid)
    triplets = ferplus_vote_triplets(valid, 2000, seed=1)
    wanted = sorted({str(p) for t in triplets for p in t.faces})
    prepared = prepare_face_arrays([load_image(p) for p in wanted], config.preprocess)
    accuracy = {name: triplet_accuracy(dict(zip(wanted, network.embed(prepared))), triplets, ["l2"])["l2"]["overall"]
                for name, network in (("int8", int8), ("fp32", fp32))}
    assert accuracy["fp32"] > 0.7 and abs(accuracy["int8"] - accuracy["fp32"]) <= 0.01


def test_an_int8_graph_is_refused_when_missing_or_older_than_its_weights(tmp_path):
    from fecsearch.models.quantize import int8_path

    mine = tmp_path / "mine.safetensors"
    shutil.copy(weights_path(get_config("affnet-lite-cl-p")), mine)
    with pytest.raises(StaleGraph, match="has no int8 graph mine.int8.onnx"):
        load_inference("affnet-lite-cl-p", mine, device="cpu", precision="int8")
    shutil.copy(int8_path(weights_path(get_config("fecnet-lite-16d"))), int8_path(mine))  # another model's
    with pytest.raises(StaleGraph, match="then `python -m fecsearch.models.quantize --weights"):
        load_inference("affnet-lite-cl-p", mine, device="cpu", precision="int8")


def test_a_new_index_embeds_in_int8_and_keeps_its_precision(tmp_path, ferplus_valid):
    """auto: a new index of a model with an int8 graph is int8; queries, later runs and the info report
    follow what the index recorded; --precision fp32 makes a float index; an index from before int8
    graphs (no precision recorded) is float."""
    from conftest import copy_crops, run_cli

    import fecsearch
    from fecsearch.store.database import FaceStore

    crops = copy_crops(ferplus_valid, tmp_path / "crops", 40)
    first = sorted(crops.glob("*.png"))[3]
    copy = tmp_path / "copy.png"  # a file the index does not hold: embedded at query time
    shutil.copy(first, copy)
    for precision, option in (("int8", []), ("fp32", ["--precision", "fp32"])):
        run_cli("index", crops, "--cropped", "--index", tmp_path / precision, "--quiet", *option)
        index = fecsearch.open_index(tmp_path / precision)
        assert index.info()["precision"] == precision and index.model.precision == precision
        top = index.search_image(copy, k=1, cropped=True)[0]
        assert top.path == str(first) and top.distance < 1e-5
    stored = {p: fecsearch.open_index(tmp_path / p).query_face_id(4).vector for p in ("int8", "fp32")}
    assert 1e-4 < np.linalg.norm(stored["int8"] - stored["fp32"]) < 0.1
    # a later run asking for the other precision adds faces in the index's own
    more = copy_crops(ferplus_valid, tmp_path / "more", 45)
    run_cli("index", more, "--cropped", "--index", tmp_path / "fp32", "--quiet", "--precision", "int8")
    assert fecsearch.open_index(tmp_path / "fp32").info()["precision"] == "fp32"
    store = FaceStore(tmp_path / "fp32")
    store.db.execute("delete from meta where key = 'precision'")  # as written before int8 graphs
    store.close()
    assert fecsearch.open_index(tmp_path / "fp32").model.precision == "fp32"


def test_an_index_built_in_one_runtime_is_searched_in_the_other(tmp_path, ferplus_valid):
    """The runtime is not part of an index: faces indexed with torch are found by an ONNX query."""
    from conftest import copy_crops, run_cli

    import fecsearch

    crops = copy_crops(ferplus_valid, tmp_path / "crops", 40)
    run_cli("index", crops, "--cropped", "--index", tmp_path / "idx", "--quiet", "--runtime", "torch")
    index = fecsearch.open_index(tmp_path / "idx", runtime="onnx")
    first = sorted(crops.glob("*.png"))[3]
    results = index.search_image(first, k=1, cropped=True)
    assert index.model.runtime == "onnx"
    assert results[0].path == str(first) and results[0].distance < 1e-4


def without_torch(*args, site: Path) -> subprocess.CompletedProcess:
    """`fecsearch ARGS` in a Python whose packages are this one's without torch, torchvision and
    facenet-pytorch (and the CUDA libraries torch brings): an install without the torch extra."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)])
    code = "import sys\nfrom fecsearch.cli import main\nmain(sys.argv[1:])"
    return subprocess.run([sys.executable, "-S", "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=site)


@pytest.fixture(scope="module")
def torch_free_site(tmp_path_factory) -> Path:
    """A folder of links to every installed package but the torch extra's."""
    import sysconfig

    site = tmp_path_factory.mktemp("site-packages")
    # what `pip install fecsearch` leaves out: the torch extra, and the video extra (PyAV)
    left_out = ("torch", "torchvision", "facenet_pytorch", "facenet-pytorch", "nvidia", "triton", "fecsearch", "av")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().replace("-", "_").startswith(tuple(n.replace("-", "_") for n in left_out)):
            (site / entry.name).symlink_to(entry)
    assert subprocess.run([sys.executable, "-S", "-c", "import torch"], env={"PYTHONPATH": str(site)},
                          capture_output=True).returncode == 1
    return site


def test_index_query_and_summary_need_no_torch(few_photos, tmp_path, torch_free_site, ferplus_valid):
    sys.path.insert(0, str(Path(__file__).parent / "helpers"))
    from make_video import SEGMENTS, make_video

    def without(*args):
        return without_torch(*args, site=torch_free_site)

    make_video(few_photos / "clip.mp4", SEGMENTS[:1], damage=False)
    done = without("index", few_photos, "--index", tmp_path / "idx", "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    assert '"faces_added": 0' not in done.stdout
    # without the video extra, a video is skipped with the way to get it
    assert f"{few_photos / 'clip.mp4'}: videos need PyAV, which is not installed here: " \
           f"pip install 'fecsearch[video]'" in done.stdout
    new = tmp_path / "new.jpg"  # not in the index: detected, aligned and embedded again
    new.write_bytes(next(few_photos.glob("*.jpg")).read_bytes())
    done = without("query", new, "--index", tmp_path / "idx", "--json", "--other-people")
    assert done.returncode == 0, done.stderr
    assert '"rank": 1' in done.stdout and '"other_people": true' in done.stdout
    assert without("summarize", "--index", tmp_path / "idx").returncode == 0
    done = without("eval", "triplets", "--data", ferplus_valid)
    assert done.returncode == 1
    assert "`fecsearch eval` needs torch, which is not installed here: pip install 'fecsearch[torch]'" in done.stderr
    # the index holds int8 vectors (the default where the model has an int8 graph): torch cannot make them
    done = without("query", new, "--index", tmp_path / "idx", "--runtime", "torch")
    assert done.returncode == 1 and "int8 vectors come from ONNX Runtime's int8 graph" in done.stderr
    done = without("embed", new, "--out", tmp_path / "new.npz", "--runtime", "torch")
    assert done.returncode == 1 and "needs torch here (pip install 'fecsearch[torch]')" in done.stderr


def test_cuda_is_asked_of_onnx_runtime_only_where_it_has_it(monkeypatch):
    """Checked without a GPU: the providers a device name gives, and the sentence where CUDA is missing."""
    import onnxruntime

    from fecsearch.runtime.onnx import RuntimeUnavailable, providers

    assert providers("cpu") == providers(None) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeUnavailable, match="install onnxruntime-gpu, or use --runtime torch"):
        providers("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown device"):
        providers("tpu")


def test_int8_is_chosen_on_a_cpu_only(monkeypatch):
    """Checked without a GPU: auto gives int8 where ONNX Runtime runs the model on the CPU and the
    model has an int8 graph, fp32 on CUDA, with torch, or without the graph; asked for, it is kept."""
    import onnxruntime

    from fecsearch.models.inference import choose_precision

    lite = weights_path(get_config("fecnet-lite-16d"))
    classifier = weights_path(get_config("affnet-lite-cl-p"))  # no int8 graph
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_precision("auto", lite) == choose_precision("auto", lite, "onnx", "cpu") == "int8"
    assert choose_precision("auto", lite, "torch") == choose_precision("auto", classifier) == "fp32"
    assert choose_precision("fp32", lite) == "fp32" and choose_precision("int8", classifier) == "int8"
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_precision("auto", lite) == choose_precision("auto", lite, "auto", "cuda:0") == "fp32"
    assert choose_precision("auto", lite, "auto", "cpu") == "int8"
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("int4", lite)


def test_an_index_run_finds_a_gpu_that_only_torch_can_use(monkeypatch):
    """Checked without a GPU: with no --device, an index run embeds on CUDA through torch where torch
    sees a GPU and ONNX Runtime has no CUDA provider, and leaves every other case as it was."""
    import onnxruntime
    import torch

    from fecsearch.models import inference
    from fecsearch.models.inference import indexing_device

    if not torch.cuda.is_available():
        assert indexing_device(None) is None  # this machine: nothing changes
    monkeypatch.setattr(inference, "nvidia_driver_seen", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert indexing_device(None) == indexing_device(None, "torch", "fp32") == "cuda"
    assert indexing_device("cpu") == "cpu" and indexing_device("cuda:1") == "cuda:1"
    assert indexing_device(None, runtime="onnx") is None  # ONNX Runtime asked for: its CPU provider
    assert indexing_device(None, precision="int8") is None  # an int8 index: its int8 graph, in ONNX Runtime
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert indexing_device(None) is None  # load_inference takes ONNX Runtime's CUDA provider itself
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert indexing_device(None) is None


def test_a_network_moved_to_a_gpu_leaves_detection_where_it_was(monkeypatch, photos, tmp_path):
    """The indexer's wiring when a GPU is found for the network alone, checked without one: the
    network is asked for on CUDA (here the CPU in torch stands in for it), MTCNN stays in ONNX
    Runtime on the CPU, and the faces are still found."""
    from fecsearch.ingest import indexer as indexer_module
    from fecsearch.models import inference as inference_module
    from fecsearch.store.database import FaceStore

    asked = []

    def stand_in(name, checkpoint, device, runtime, **options):
        asked.append((device, runtime))
        return load_inference(name, checkpoint, "cpu" if device == "cuda" else device, "torch", **options)

    monkeypatch.setattr(inference_module, "indexing_device", lambda device, runtime, precision: device or "cuda")
    monkeypatch.setattr(indexer_module, "load_inference", stand_in)
    store = FaceStore(tmp_path / "idx")
    try:
        indexer = indexer_module.Indexer.for_folder(store, "fecnet-lite-16d", progress=False)
        assert asked == [("cuda", "auto")] and indexer.network.runtime == "torch"
        assert indexer.pipeline.detector.runtime == "onnx" and indexer.pipeline.detector.device in (None, "cpu")
        # Ray's detection actors build their pipelines from the job: ONNX Runtime there too
        assert indexer.job.runtime == "auto"
        folder = tmp_path / "photos"
        folder.mkdir()
        shutil.copy(photos / "couple.jpg", folder)
        summary = indexer.run(folder)
        assert summary.faces_added == 2
    finally:
        store.close()


def test_cuda_asked_of_a_machine_without_one_is_one_sentence(tmp_path, ferplus_valid):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    folder = tmp_path / "faces"
    folder.mkdir()
    for face in sorted(ferplus_valid.glob("*.png"))[:3]:
        shutil.copy(face, folder)
    done = subprocess.run([sys.executable, "-m", "fecsearch", "index", folder, "--cropped", "--index", tmp_path / "idx",
                           "--device", "cuda", "--runtime", "torch"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("--device cuda: torch sees no CUDA GPU here "
                                        f"(torch {torch.__version__}); use --device cpu")
    assert "Traceback" not in done.stderr
