"""The FaceRes trunk: the converted network reproduces the original graph, and it knows people."""
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from fecsearch.faces.images import load_image
from fecsearch.models import create_model, get_config, prepare_face
from fecsearch.models.build_faceres import extract
from fecsearch.models import mobilenet
from fecsearch.models.mobilenet import Float32OnCpu, MobileNetV1, SamePad, load_trunk_state
from fecsearch.models.preprocess import load_prepared
from fecsearch.models.trunks import FaceResTrunk, load_faceres_weights

REFERENCE = Path(__file__).parent / "data" / "faceres_reference.npz"


def full_network() -> MobileNetV1:
    return load_trunk_state(MobileNetV1(), load_faceres_weights()).eval()


def test_port_gives_the_original_graphs_descriptors(ckplus):
    """The torch network against descriptors computed by evaluating the npm package's graph with numpy
    (fecsearch.models.build_faceres writes them when it converts the weights)."""
    reference = np.load(REFERENCE)
    faces = [load_image(ckplus / f).convert("RGB").resize((224, 224), Image.BICUBIC) for f in reference["faces"]]
    x = torch.from_numpy(np.stack([np.asarray(f) for f in faces]).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        got = full_network().descriptor(x).numpy()
    assert got.shape == (len(faces), 1024)
    assert np.abs(got - reference["descriptors"]).max() < 1e-4
    # and the descriptor is not a constant: faces of different people differ
    assert np.abs(reference["descriptors"][0] - reference["descriptors"][1]).max() > 0.1


def test_descriptor_separates_ckplus_subjects(ckplus):
    """Same person vs different person on CK+48 (981 faces, 118 subjects), at the expression
    models' 112 px input: AUC at least 0.95 (0.97 measured; 0.996 at the graph's 224 px)."""
    paths = sorted(ckplus.glob("*/*.png"))
    subjects = np.array([p.name.split("_")[0] for p in paths])
    x = torch.from_numpy(np.stack([np.asarray(load_image(p).convert("RGB").resize((112, 112), Image.BICUBIC))
                                   for p in paths]).astype(np.float32)).permute(0, 3, 1, 2)
    net = full_network()
    with torch.inference_mode():
        d = torch.cat([net.descriptor(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    upper = np.triu_indices(len(d), 1)
    same = (subjects[:, None] == subjects[None, :])[upper]
    assert roc_auc_score(same, (d @ d.T)[upper]) >= 0.95


def test_tensorflow_same_padding():
    """A stride-2 3x3 conv on an even map pads one pixel at the bottom and right only, as TensorFlow does."""
    pad = SamePad(3, 2)
    assert pad(torch.zeros(1, 1, 8, 8)).shape == (1, 1, 9, 9)
    padded = pad(torch.ones(1, 1, 4, 4))
    assert padded[0, 0, :4, :4].eq(1).all() and padded[0, 0, 4].eq(0).all() and padded[0, 0, :, 4].eq(0).all()
    assert SamePad(3, 1)(torch.zeros(1, 1, 5, 5)).shape == (1, 1, 7, 7)


def test_strided_depthwise_layers_train_in_float32_under_bf16_autocast(monkeypatch):
    """Under bfloat16 autocast on a CPU (`train --bf16`), FaceRes's stride-2 depthwise units compute in
    float32, to the bit what float32 makes of their bfloat16 input; every other layer stays bfloat16,
    gradients reach the stem, and outside autocast (inference) the trunk is unchanged."""
    trunk = FaceResTrunk()
    units = [m for m in trunk.modules() if isinstance(m, Float32OnCpu)]
    # blocks 2, 4 and 6 of the first 11 stride by 2; the stem is a full conv, not a depthwise one
    assert len(units) == 3 and all(u[1].stride == (2, 2) and u[1].groups == u[1].in_channels > 1 for u in units)
    x = torch.rand(2, units[0][1].in_channels, 56, 56).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = units[0](x)
        after = trunk.net.blocks[1][1](inside)
    assert inside.dtype == torch.float32 and after.dtype == torch.bfloat16
    assert torch.equal(inside, units[0](x.float()))
    monkeypatch.setattr(mobilenet, "STRIDED_DEPTHWISE_IN_FLOAT32", False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert units[0](x).dtype == torch.bfloat16
    monkeypatch.setattr(mobilenet, "STRIDED_DEPTHWISE_IN_FLOAT32", True)
    faces = torch.rand(2, 3, 112, 112) * 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trunk(faces).float().square().mean().backward()
    assert trunk.net.stem[1].weight.grad is not None and trunk.net.stem[1].weight.grad.abs().sum() > 0
    with torch.inference_mode():
        plain = MobileNetV1(upto=11)
        plain.load_state_dict(trunk.net.state_dict())
        for unit in plain.modules():  # the same layers as plain nn.Sequential units
            if isinstance(unit, Float32OnCpu):
                unit.__class__ = torch.nn.Sequential
        assert torch.equal(trunk.eval()(faces), plain.eval()(faces))
    # torch.fx still traces the network whole, so inference folds its BatchNorms
    from fecsearch.models.network import InferenceNetwork

    assert isinstance(InferenceNetwork(create_model("fecnet-faceres-16d", random_init=True)).network,
                      torch.fx.GraphModule)


def test_expression_trunk_is_the_cut_network():
    """FaceResTrunk is the full network's first 11 blocks: 512 channels, 7x7 at 112 px."""
    trunk = FaceResTrunk().eval()
    x = torch.rand(2, 3, 112, 112) * 255
    with torch.inference_mode():
        cut = trunk(x)
        full = full_network()
        expected = full.blocks[:11](full.stem(x))
    assert cut.shape == (2, 512, 7, 7)
    assert torch.allclose(cut, expected)
    lower, upper = trunk.split(2)
    with torch.inference_mode():
        assert torch.allclose(upper(lower(x)), cut)


def test_build_refuses_a_tarball_with_another_checksum(tmp_path):
    fake = tmp_path / "human-models.tgz"
    with tarfile.open(fake, "w:gz") as tar:
        member = tmp_path / "faceres.json"
        member.write_text("{}")
        tar.add(member, "package/models/faceres.json")
    with pytest.raises(SystemExit, match="sha256 .* is not the pinned"):
        extract(fake, tmp_path)


def test_photo_faces_reach_the_faceres_models_like_their_training_crops(ferplus_valid):
    """FER crops (48 px, grey) and aligned photo faces go through one prepare_face to 112 px grey RGB."""
    config = get_config("fecnet-faceres-16d").preprocess
    assert config.size == 112 and config.geometry.size == 48 and not config.colour
    paths = sorted(ferplus_valid.glob("*.png"))[:4]
    training = load_prepared(paths, config).float()
    query = torch.stack([prepare_face(load_image(p), config) for p in paths])
    assert torch.allclose(training, query, atol=0.2)  # float16 storage: within 0.2 of 0..255
    assert training.shape == (4, 3, 112, 112)
    assert torch.equal(query[:, 0], query[:, 1]) and torch.equal(query[:, 1], query[:, 2])  # grey on all channels
    colour = Image.new("RGB", (48, 48), (200, 30, 30))
    tensor = prepare_face(colour, config)
    assert torch.equal(tensor[0], tensor[1])


def test_faceres_models_build_with_the_paper_head():
    model = create_model("fecnet-faceres-16d", random_init=True).eval()
    head = model.head.features
    assert head.reduce.in_channels == 512 and head.reduce.out_channels == 512
    assert len(head.block) == 5 and head.block.out_channels == 512 + 5 * 64
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 112, 112) * 255)
    assert out.shape == (2, 16) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
