"""Ensemble models: FECNets trained apart, joined into one model that indexes, exports and loads as one."""
import numpy as np
import torch
from conftest import run_cli

from fecsearch.models import create_model, get_config
from fecsearch.models.checkpoints import save_checkpoint
from fecsearch.models.inference import load_inference
from fecsearch.models.preprocess import load_prepared

PAIR = "fecnet-lite-x2-pair-32d"
MEMBER = "fecnet-lite-x2-16d"


def member_checkpoints(tmp_path, seeds=(1, 2)):
    """Single FECNets of the pair's architecture with different random weights (and BatchNorm
    statistics a trained network would have), as `train fecnet` writes them."""
    paths = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = create_model(MEMBER, random_init=True)
        generator = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
        paths.append(tmp_path / f"member-{seed}.safetensors")
        save_checkpoint(model.eval(), paths[-1])
    return paths


def test_an_ensemble_embeds_with_its_members_unit_vectors(tmp_path, ferplus_valid):
    """Joined, each face's vector is the members' (each mirror-averaged on its own sphere) side by side
    over the square root of their number: a unit vector whose squared distances are the members' mean.
    Torch's eager network, its frozen copy and the exported graph give it alike."""
    members = member_checkpoints(tmp_path)
    pair = tmp_path / "pair.safetensors"
    out = run_cli("train", "ensemble", "--model", PAIR, "--member", members[0], "--member", members[1],
                  "--out", pair).output
    assert "member-1.safetensors, member-2.safetensors" in out
    faces = load_prepared(sorted(ferplus_valid.glob("*.png"))[:40], get_config(PAIR).preprocess).float()
    alone = [create_model(MEMBER, m).embed(faces) for m in members]
    model = create_model(PAIR, pair)
    joined = model.embed(faces)
    assert joined.shape == (40, 32)
    assert np.allclose(joined, np.concatenate(alone, 1) / np.sqrt(2), atol=1e-5)
    assert np.allclose(np.linalg.norm(joined, axis=1), 1, atol=1e-5)
    squared = ((joined[:, None] - joined[None]) ** 2).sum(-1)
    mean = sum(((a[:, None] - a[None]) ** 2).sum(-1) for a in alone) / 2
    assert np.allclose(squared, mean, atol=1e-4)
    assert not np.allclose(alone[0], alone[1], atol=0.1)  # two different networks, not one twice
    assert np.allclose(model.for_inference().embed(faces), joined, atol=2e-5)

    from fecsearch.models.onnx_export import main as export

    export(["--weights", str(pair)])
    onnx = load_inference(PAIR, pair, device="cpu", runtime="onnx")
    assert onnx.runtime == "onnx" and np.abs(onnx.embed(faces.numpy()) - joined).max() <= 1e-4


def test_joining_refuses_what_would_not_be_an_ensemble(tmp_path):
    members = member_checkpoints(tmp_path)
    out = tmp_path / "pair.safetensors"

    def refused(*args) -> str:
        result = run_cli("train", "ensemble", "--model", PAIR, *args, "--out", out, ok=False)
        assert result.exit_code != 0 and not out.exists()
        return result.output

    assert "the same checkpoint twice" in refused("--member", members[0], "--member", members[0])
    assert "got 1 in the --member checkpoints" in refused("--member", members[0])
    narrow = tmp_path / "narrow.safetensors"
    save_checkpoint(create_model("fecnet-lite-16d", random_init=True), narrow)
    assert "narrow.safetensors: a fecnet on the lite trunk" in refused("--member", members[0], "--member", narrow)
    result = run_cli("train", "ensemble", "--model", MEMBER, "--member", members[0], "--member", members[1],
                     "--out", out, ok=False)
    assert result.exit_code != 0 and "a single network" in result.output


def test_an_ensemble_is_trained_member_by_member(tmp_path, ferplus_train, ferplus_valid):
    result = run_cli("train", "fecnet", "--model", PAIR, "--train", ferplus_train, "--valid", ferplus_valid,
                     "--out", tmp_path / "x.safetensors", ok=False)
    assert result.exit_code != 0 and "train each as fecnet-lite-x2-16d" in result.output
    assert "fecsearch train ensemble" in result.output


MIXED = "fecnet-lite-x2-pair-faceres-48d"


def test_prepared_faces_become_faceres_faces_as_pillow_makes_them(ferplus_valid):
    """A lite model's prepared 48 px face, turned inside the network into a FaceRes model's (112 or 64 px,
    grey on three channels, 0..255), matches the FaceRes model's own preprocessing of the crop to within
    two grey levels, on one pixel in several hundred; other geometries or colour are refused."""
    from dataclasses import replace

    import pytest

    from fecsearch.faces.images import load_image
    from fecsearch.models.preprocess import prepare_face_arrays
    from fecsearch.models.resample import PreparedFaceAdapter

    crops = [load_image(p) for p in sorted(ferplus_valid.glob("*.png"))[:200]]
    lite = get_config(MEMBER).preprocess
    shared = torch.from_numpy(prepare_face_arrays(crops, lite))
    for name in ("fecnet-faceres-16d", "fecnet-faceres64-16d"):
        faceres = get_config(name).preprocess
        own = prepare_face_arrays(crops, faceres)
        made = PreparedFaceAdapter(lite, faceres)(shared).numpy()
        assert made.shape == own.shape == (200, 3, faceres.size, faceres.size)
        levels = np.abs(made - own) * 255 * faceres.std  # grey levels
        assert levels.max() <= 2 and (levels > 0).mean() < 0.005, (name, levels.max(), (levels > 0).mean())
    with pytest.raises(ValueError, match="different geometries"):
        PreparedFaceAdapter(lite, replace(faceres, geometry=get_config("fecnet-16d").preprocess.geometry))
    with pytest.raises(ValueError, match="colour"):
        PreparedFaceAdapter(lite, replace(faceres, colour=True))


def test_an_ensemble_of_mixed_trunks_embeds_as_its_members_do(tmp_path, ferplus_valid):
    """The pair's file and a FaceRes FECNet joined: each face's vector is the three networks' unit vectors
    side by side over the square root of 3, the FaceRes part as that network embeds the face through its
    own preprocessing; eager, frozen and ONNX alike. A FaceRes network of another input size is refused."""
    members = member_checkpoints(tmp_path)
    pair = tmp_path / "pair.safetensors"
    run_cli("train", "ensemble", "--model", PAIR, "--member", members[0], "--member", members[1], "--out", pair)
    torch.manual_seed(3)
    faceres = tmp_path / "faceres.safetensors"
    save_checkpoint(create_model("fecnet-faceres-16d", random_init=True).eval(), faceres)
    mixed = tmp_path / "mixed.safetensors"
    run_cli("train", "ensemble", "--model", MIXED, "--member", pair, "--member", faceres, "--out", mixed)

    paths = sorted(ferplus_valid.glob("*.png"))[:40]
    faces = load_prepared(paths, get_config(MIXED).preprocess).float()
    alone = [create_model(MEMBER, m).embed(faces) for m in members]
    alone.append(create_model("fecnet-faceres-16d", faceres).embed(
        load_prepared(paths, get_config("fecnet-faceres-16d").preprocess).float()))
    model = create_model(MIXED, mixed)
    joined = model.embed(faces)
    assert joined.shape == (40, 48) and np.allclose(np.linalg.norm(joined, axis=1), 1, atol=1e-5)
    assert np.abs(joined - np.concatenate(alone, 1) / np.sqrt(3)).max() < 2e-3
    assert np.allclose(model.for_inference().embed(faces), joined, atol=2e-5)

    from fecsearch.models.onnx_export import main as export

    export(["--weights", str(mixed)])
    onnx = load_inference(MIXED, mixed, device="cpu", runtime="onnx")
    assert np.abs(onnx.embed(faces.numpy()) - joined).max() <= 1e-4

    wrong = tmp_path / "faceres64.safetensors"
    save_checkpoint(create_model("fecnet-faceres64-16d", random_init=True).eval(), wrong)
    refused = run_cli("train", "ensemble", "--model", MIXED, "--member", pair, "--member", wrong,
                      "--out", tmp_path / "no.safetensors", ok=False)
    assert refused.exit_code != 0 and "faceres64.safetensors: its head or preprocessing differs" in refused.output


def test_the_default_splits_into_its_networks_and_joins_back(tmp_path, ferplus_valid):
    """`train split` writes each network of the shipped default as a checkpoint of its own: each embeds a
    face as its part of the default's vector (scaled back to a unit vector), and `train ensemble`
    joins the three back into the same tensors."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from fecsearch.models.config import DEFAULT_MODEL, weights_path

    shipped = weights_path(get_config(DEFAULT_MODEL))
    out = run_cli("train", "split", shipped, "--out", tmp_path / "members").output
    members = sorted((tmp_path / "members").glob("*.safetensors"))
    assert [m.name for m in members] == [f"{shipped.stem}.member{i}.safetensors" for i in range(3)]
    assert all(str(m) in out for m in members)
    names = get_config(DEFAULT_MODEL).member_models
    paths = sorted(ferplus_valid.glob("*.png"))[:24]
    joined = create_model(DEFAULT_MODEL).embed(load_prepared(paths, get_config(DEFAULT_MODEL).preprocess).float())
    for part, name, member in zip(np.split(joined, 3, axis=1), names, members):
        alone = create_model(name, member)
        alone.config = replace(alone.config, mirror_average=False)  # the default embeds each face once
        mine = alone.embed(load_prepared(paths, alone.config.preprocess).float())  # as `eval --checkpoint` does
        assert np.allclose(mine, part * np.sqrt(3), atol=1e-4), np.abs(mine - part * np.sqrt(3)).max()
    # the members as `train ensemble` takes them: the pair first, then FaceRes's network
    pair, again = tmp_path / "pair.safetensors", tmp_path / "again.safetensors"
    run_cli("train", "ensemble", "--model", PAIR, "--member", members[0], "--member", members[1], "--out", pair)
    run_cli("train", "ensemble", "--model", DEFAULT_MODEL, "--member", pair, "--member", members[2], "--out", again)
    original, rejoined = load_file(str(shipped)), load_file(str(again))
    assert original.keys() == rejoined.keys()
    assert all(torch.equal(original[k], rejoined[k]) for k in original)
    # one network is not an ensemble
    result = run_cli("train", "split", members[2], "--out", tmp_path / "again", ok=False)
    assert result.exit_code != 0 and "holds one network" in result.output
