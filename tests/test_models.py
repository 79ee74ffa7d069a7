"""The model registry, the paper's architecture, and preprocessing shared by training and queries."""
import numpy as np
import pytest
import torch
from PIL import Image

from fecsearch.faces.align import FaceGeometry, align_face
from fecsearch.models import MissingWeights, create_model, get_config, list_models, prepare_face
from fecsearch.models.pipeline import FacePipeline
from fecsearch.models.preprocess import load_prepared
from fecsearch.models.trunks import FaceNetTrunk
from fecsearch.train.fecnet import triplet_loss


def test_paper_fecnet_architecture():
    model = create_model("fecnet-16d", random_init=True).eval()
    assert model.config.preprocess.size == 224 and model.config.preprocess.geometry.eye_distance == 55
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.trunk(x)
        out = model(x)
    assert features.shape == (2, 1792, 5, 5)  # cut after mixed_7a
    assert out.shape == (2, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    head = model.head.features
    assert head.reduce.out_channels == 512 and len(head.block) == 5 and head.block.out_channels == 512 + 5 * 64
    assert head.fc.out_features == 512 and head.dropout.p == 0.5
    assert any(isinstance(m, torch.nn.ReLU6) for m in head.block.modules())


def test_affnet_outputs():
    p = create_model("affnet-cl-p", random_init=True).eval()
    f = create_model("affnet-cl-f", random_init=True).eval()
    f.load_state_dict(p.state_dict())  # one network, two read-outs
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert p(x).shape == (2, 512) and f(x).shape == (2, 8)


def test_untrained_models_are_refused_with_a_reason(tmp_path):
    with pytest.raises(MissingWeights, match="fecnet-16d.*no trained weights"):
        create_model("fecnet-16d")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


def test_offline_pretrained_trunk_says_how_to_get_it(monkeypatch):
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(irv1, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(RuntimeError, match="pretrained FaceNet trunk.*could not be loaded.*internet"):
        FaceNetTrunk("vggface2")


def test_the_wide_lite_trunk_doubles_every_stage():
    """lite-x2: the lite trunk with twice the channels at every stage, 512 on the same 6x6 grid; the
    head takes what the trunk gives, and the embedding is the same 16-d unit vector."""
    small, wide = (create_model(n, random_init=True).eval() for n in ("fecnet-lite-16d", "fecnet-lite-x2-16d"))
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert small.trunk(x).shape == (2, 256, 6, 6) and wide.trunk(x).shape == (2, 512, 6, 6)
        assert torch.allclose(wide(x).norm(dim=1), torch.ones(2), atol=1e-5)
    convs = {n: [m.out_channels for m in net.trunk.modules() if isinstance(m, torch.nn.Conv2d)]
             for n, net in (("lite", small), ("x2", wide))}
    assert convs["x2"] == [2 * c for c in convs["lite"]] == [64, 128, 128, 256, 256, 512]
    assert wide.head.features.reduce.in_channels == 512


def test_registered_models():
    assert {"fecnet-16d", "affnet-cl-p", "affnet-cl-f", "fecnet-lite-16d", "affnet-lite-cl-p",
            "affnet-lite-cl-f"} <= set(list_models())
    assert get_config("fecnet-lite-16d").preprocess.channels == 1


def test_training_and_query_prepare_faces_identically(ferplus_valid):
    """A FER crop reaches the network as the same tensor whether it is trained on or queried."""
    model = create_model("fecnet-lite-16d", random_init=True).eval()
    paths = sorted(ferplus_valid.glob("*.png"))[:20]
    training = load_prepared(paths, model.config.preprocess)
    pipeline = FacePipeline(model.for_inference(), cropped=True, runtime="torch")
    found = pipeline.find_faces([Image.open(p) for p in paths])
    query = torch.stack([prepare_face(f[0].crop, model.config.preprocess) for f in found])
    assert torch.equal(training, query)
    assert np.allclose(pipeline.embed([f[0] for f in found]), model.embed(training), atol=2e-5)


@pytest.mark.parametrize("name", ["fecnet-lite-16d", "affnet-lite-cl-p", "fecnet-16d", "fecnet-lite-x2-pair-32d",
                                  "affnet-faceres-cl-p", "fecnet-lite-x2-pair-faceres-48d-v2"])
def test_inference_network_computes_the_same_embeddings(name, ferplus_valid):
    """Folded BatchNorms and channels-last layout change the speed, not the function."""
    trained = name != "fecnet-16d"
    model = create_model(name, random_init=not trained).eval()
    if not trained:  # give the BatchNorms something to fold: statistics a trained network would have
        generator = torch.Generator().manual_seed(0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
    size, channels = model.config.preprocess.size, model.config.preprocess.channels
    faces = load_prepared(sorted(ferplus_valid.glob("*.png"))[:70], model.config.preprocess) if trained \
        else torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    fast = model.for_inference()
    def batchnorms(net):
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())

    # those after a convolution are folded; the DenseNet block's pre-activation ones cannot be
    assert batchnorms(fast.network) < batchnorms(model), "no BatchNorm was folded"
    expected = model.embed(faces)
    assert np.allclose(fast.embed(faces), expected, atol=2e-5, rtol=1e-4)
    assert fast.embed(faces).shape == expected.shape == (len(faces), model.config.embedding_size)


def test_aligned_photo_crop_has_the_training_geometry():
    """An aligned crop comes out at the model's input size, so prepare_face only normalises it."""
    config = get_config("fecnet-lite-16d")
    geometry: FaceGeometry = config.preprocess.geometry
    image = Image.new("RGB", (300, 300), "gray")
    crop = align_face(image, (120, 140), (180, 140), geometry)
    assert crop.size == (config.preprocess.size, config.preprocess.size)
    tensor = prepare_face(crop, config.preprocess)
    assert tensor.shape == (1, 48, 48)


def test_triplet_loss_eq1():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    odd3 = torch.tensor([3])
    margin = torch.tensor([0.2])
    assert triplet_loss(e[0:1], e[1:2], e[2:3], odd3, margin).item() == 0  # well separated
    # Calling the first face the odd one is wrong: the loss is positive.
    assert triplet_loss(e[0:1], e[1:2], e[2:3], torch.tensor([1]), margin).item() > 0.5
    # By hand: similar pair (1,2), d12 = 0, d13 = d23 = 2 -> max(0, 0 - 2 + m) twice = 0
    a = torch.tensor([[1.0, 0.0]])
    assert triplet_loss(a, a, -a, odd3, torch.tensor([0.1])).item() == 0
    # Squared distances d12 = 4, d13 = d23 = 1: (4 - 1 + 0.1) + (4 - 1 + 0.1) = 6.2
    assert triplet_loss(a, -a, a * 0, odd3, torch.tensor([0.1])).item() == pytest.approx(6.2)
    # The margin per triplet type: one-class 0.1, two- and three-class 0.2.
    from fecsearch.data.triplets import MARGINS
    assert MARGINS == {"ONE_CLASS_TRIPLET": 0.1, "TWO_CLASS_TRIPLET": 0.2, "THREE_CLASS_TRIPLET": 0.2}
