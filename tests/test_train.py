"""`train fecnet` on FER+ vote triplets and on label triplets (AFFNet-TL): runs, records, resumes."""
import json
from pathlib import Path

import pytest
from conftest import run_cli, small_ferplus
from safetensors import safe_open

TRUNK = Path(__file__).resolve().parents[1] / "fecsearch" / "weights" / "affnet-lite-cl.safetensors"


def metrics_of(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["metrics"])


@pytest.mark.parametrize("source", ["votes", "labels"])
def test_train_fecnet_on_ferplus(ferplus_valid, tmp_path, source):
    out = tmp_path / f"{source}.safetensors"
    small = small_ferplus(ferplus_valid, tmp_path, 400)  # what is checked needs no more faces than this
    args = ["train", "fecnet", "--train", small, "--valid", small, "--trunk", TRUNK, "--out", out,
            "--steps", 2, "--per-type", 2, "--triplets", source]
    run_cli(*args, "--epochs", 1)
    first = metrics_of(out)
    assert first["triplet_source"] == source and len(first["history"]) == 1
    # a second run with more epochs resumes from the saved state instead of starting again
    result = run_cli(*args, "--epochs", 2)
    history = metrics_of(out)["history"]
    assert len(history) == 2 and history[0] == first["history"][0]
    assert "loaded" in result.output and set(history[1]["valid_triplet_accuracy"]) >= {"overall"}


def test_train_fecnet_with_a_teacher_classifier(ferplus_valid, tmp_path):
    """--teacher: the classifier's predicted distributions (which agree with the raters' majority on
    most faces) rank a batch's triplets; a checkpoint that is not a classifier is refused."""
    import numpy as np

    from fecsearch.data.labels import read_ferplus
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.train.fecnet import teacher_distributions

    faces = read_ferplus(ferplus_valid)
    x = load_prepared(faces.paths[:300], get_config("affnet-lite-cl-f").preprocess)
    probs = teacher_distributions(TRUNK, x)
    assert probs.shape == (2, 300, 8) and np.allclose(probs.sum(-1).numpy(), 1, atol=1e-5)
    assert (probs[0].argmax(1).numpy() == faces.labels[:300]).mean() > 0.7
    assert (probs[0] - probs[1]).abs().sum(-1).mean() > 1e-3  # the mirror image is predicted on its own
    out = tmp_path / "distilled.safetensors"
    small = small_ferplus(ferplus_valid, tmp_path, 400)
    args = ["train", "fecnet", "--train", small, "--valid", small, "--trunk", TRUNK, "--out", out,
            "--steps", 2, "--per-type", 2, "--epochs", 1]
    result = run_cli(*args, "--teacher", TRUNK)
    assert "teacher's distributions" in result.output and metrics_of(out)["teacher"] == str(TRUNK)
    fecnet = TRUNK.with_name("fecnet-lite-16d.safetensors")
    refused = run_cli(*args[:-6], "--out", tmp_path / "no.safetensors", "--teacher", fecnet, ok=False)
    assert refused.exit_code != 0 and "not a classifier checkpoint" in refused.output


def test_train_affnet_fine_tunes_only_the_last_faceres_blocks(ferplus_valid, tmp_path):
    """--trunk-lr with --tune-blocks: the pretrained trunk's last blocks learn (above a feature cache
    of the rest), the blocks below stay the converted weights; either option alone is refused."""
    from safetensors.torch import load_file

    from fecsearch.models.trunks import load_faceres_weights

    small = small_ferplus(ferplus_valid, tmp_path)
    out = tmp_path / "tuned.safetensors"
    args = ["train", "affnet", "--model", "affnet-faceres-cl-p", "--train", small, "--valid", small, "--out", out,
            "--epochs", 1, "--batch-size", 16, "--soft-labels"]
    run_cli(*args, "--trunk-lr", 1e-3, "--tune-blocks", 2)
    assert metrics_of(out)["tune_blocks"] == 2
    tuned, original = load_file(str(out)), load_faceres_weights()
    # blocks 0..10 of the cut network: 9 and 10 learned, 8 and below did not
    prefix = "trunk.net.blocks."
    moved = {int(k[len(prefix):].split(".")[0]) for k, v in tuned.items() if k.startswith(prefix)
             and not torch_equal(v, original, k)}
    assert moved == {9, 10}
    refused = run_cli(*args, "--tune-blocks", 2, ok=False)
    assert refused.exit_code != 0 and "--trunk-lr and --tune-blocks go together" in refused.output


def test_train_affnet_fine_tunes_the_whole_faceres_trunk(ferplus_valid, tmp_path):
    """--tune-blocks 11 (every block of the cut FaceRes): the stem and every block learn, on augmented
    faces with no feature cache, and the run says so in its metrics."""
    from safetensors.torch import load_file

    from fecsearch.models.trunks import FaceResTrunk, load_faceres_weights

    small = small_ferplus(ferplus_valid, tmp_path, faces=32)
    out = tmp_path / "whole.safetensors"
    result = run_cli("train", "affnet", "--model", "affnet-faceres-cl-p", "--train", small, "--valid", small,
                     "--out", out, "--epochs", 1, "--batch-size", 16, "--soft-labels", "--trunk-lr", 1e-3,
                     "--tune-blocks", FaceResTrunk.cut)
    assert metrics_of(out)["whole_trunk_tuned"] and "feature cache" not in result.output
    tuned, original = load_file(str(out)), load_faceres_weights()
    prefix = "trunk.net."
    moved = {"stem" if k.startswith(prefix + "stem") else int(k[len(prefix + "blocks."):].split(".")[0])
             for k, v in tuned.items() if k.startswith(prefix) and not torch_equal(v, original, k)}
    assert moved == {"stem", *range(FaceResTrunk.cut)}


def test_train_affnet_tunes_upper_faceres_blocks_without_a_cache(ferplus_valid, tmp_path):
    """--tune-blocks 8 --no-feature-cache: the 8 upper blocks learn on augmented faces (no cache is
    built), the stem and the 3 blocks below keep the converted weights to the bit; the run records
    that it had no cache."""
    from safetensors.torch import load_file

    from fecsearch.models.trunks import load_faceres_weights

    small = small_ferplus(ferplus_valid, tmp_path, faces=32)
    out = tmp_path / "upper.safetensors"
    result = run_cli("train", "affnet", "--model", "affnet-faceres-cl-p", "--train", small, "--valid", small,
                     "--out", out, "--epochs", 1, "--batch-size", 16, "--soft-labels", "--trunk-lr", 1e-3,
                     "--tune-blocks", 8, "--no-feature-cache", "--bf16")
    assert "feature cache" not in result.output
    metrics = metrics_of(out)
    assert metrics["tune_blocks"] == 8 and not metrics["feature_cache"] and not metrics["whole_trunk_tuned"]
    tuned, original = load_file(str(out)), load_faceres_weights()
    prefix = "trunk.net."
    moved = {"stem" if k.startswith(prefix + "stem") else int(k[len(prefix + "blocks."):].split(".")[0])
             for k, v in tuned.items() if k.startswith(prefix) and not torch_equal(v, original, k)}
    assert moved == set(range(3, 11))


def test_bf16_feature_cache_is_float32_cache_to_bf16_rounding(ferplus_valid):
    """cached_features(bf16=True): the same (views, faces, C, H, W) cache of a trained lite-x2-sized
    trunk, within bfloat16's rounding of the float32 cache, but not equal to it (autocast ran)."""
    import torch

    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.models.registry import create_model
    from fecsearch.train.common import cached_features

    config = get_config("fecnet-lite-16d")
    paths = sorted(ferplus_valid.glob("*.png"))[:64]
    faces = load_prepared(paths, config.preprocess)
    trunk = create_model("fecnet-lite-16d").trunk
    plain = cached_features(trunk, faces).float()
    fast = cached_features(trunk, faces, bf16=True).float()
    assert fast.shape == plain.shape == (2, 64, *plain.shape[2:])
    error = (fast - plain).abs().max() / plain.abs().max()
    assert 0 < error < 0.03, error
    assert torch.corrcoef(torch.stack([fast.flatten(), plain.flatten()]))[0, 1] > 0.999


def test_affine_augmentation_on_ferplus_faces(ferplus_valid, tmp_path):
    """`--augment affine`: with every range at zero a face comes back as itself or its mirror image;
    with the defaults each face is moved its own way, stays close to the face, the same for a seed;
    and `train affnet` records which augmentation it trained with."""
    import torch

    from fecsearch.data.labels import read_ferplus
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.train.common import augment_affine

    x = load_prepared(read_ferplus(ferplus_valid).paths[:64], get_config("affnet-lite-cl-p").preprocess).float()
    still = augment_affine(x, torch.Generator().manual_seed(1), 0, 0, 0, 0, 0)
    as_is = (still - x).abs().amax((1, 2, 3)) < 1e-4
    mirrored = (still - x.flip(3)).abs().amax((1, 2, 3)) < 1e-4
    assert bool((as_is | mirrored).all()) and 10 < int(mirrored.sum()) < 54

    moved = augment_affine(x, torch.Generator().manual_seed(2))
    assert torch.equal(moved, augment_affine(x, torch.Generator().manual_seed(2)))
    # Each moved face still looks most like the face it came from (or that face's mirror image)...
    def standardised(t):
        t = t.flatten(1) - t.flatten(1).mean(1, keepdim=True)
        return t / t.norm(dim=1, keepdim=True)

    corr = standardised(moved) @ torch.cat([standardised(x), standardised(x.flip(3))]).T
    source = corr.argmax(1) % len(x)
    assert float((source == torch.arange(len(x))).float().mean()) >= 0.95
    # ...but every one was moved, and brightness differs from face to face.
    assert float(corr.max(1).values.max()) < 0.999
    assert float((moved.mean((1, 2, 3)) - x.mean((1, 2, 3))).std()) > 0.05

    out = tmp_path / "affine.safetensors"
    run_cli("train", "affnet", "--train", small_ferplus(ferplus_valid, tmp_path), "--valid", tmp_path / "ferplus",
            "--out", out, "--epochs", 1, "--batch-size", 16, "--soft-labels", "--augment", "affine")
    assert metrics_of(out)["augmentation"] == "affine"


def test_feature_cache_with_augmented_views(ferplus_valid, tmp_path):
    """--augmented-views K: the cache holds each face, its mirror image (as without the option) and K
    moved views, each different, the same again for the same seed; `train fecnet` records it, and
    refuses it where there is no feature cache."""
    import torch

    from fecsearch.data.labels import read_ferplus
    from fecsearch.models import create_model
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.train.common import cached_features

    x = load_prepared(read_ferplus(ferplus_valid).paths[:40], get_config("fecnet-lite-16d").preprocess)
    trunk = create_model("fecnet-lite-16d").trunk
    plain = cached_features(trunk, x).float()
    views = cached_features(trunk, x, augmented_views=2, seed=3).float()
    assert views.shape == (4, *plain.shape[1:])
    assert torch.allclose(views[:2], plain, atol=1e-3)
    assert torch.equal(views, cached_features(trunk, x, augmented_views=2, seed=3).float())

    def apart(a, b):  # the median face's relative feature change
        return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).median())

    assert apart(views[2], plain[0]) > 0.05 and apart(views[3], views[2]) > 0.05
    # a moved face's features stay nearer its own than the next face's
    assert apart(views[2], plain[0]) < apart(plain[0].roll(1, 0), plain[0])

    out = tmp_path / "views.safetensors"
    args = ["train", "fecnet", "--train", small_ferplus(ferplus_valid, tmp_path, 120), "--valid", tmp_path / "ferplus",
            "--trunk", TRUNK, "--steps", 2, "--per-type", 2, "--epochs", 1, "--augmented-views", 2]
    run_cli(*args, "--out", out)
    assert metrics_of(out)["augmented_views"] == 2 and metrics_of(out)["augmentation"] == "affine"
    refused = run_cli(*args, "--out", tmp_path / "no.safetensors", "--trunk-lr", 1e-5, ok=False)
    assert refused.exit_code != 0 and "needs the feature cache" in refused.output


def torch_equal(value, original: dict, key: str) -> bool:
    """Whether a trunk tensor of a checkpoint equals the converted FaceRes weights' tensor."""
    import torch

    from fecsearch.models.mobilenet import MobileNetV1, load_trunk_state

    if not hasattr(torch_equal, "net"):
        torch_equal.net = load_trunk_state(MobileNetV1(upto=11), original).state_dict()
    return torch.equal(value, torch_equal.net[key[len("trunk.net."):]])



def test_train_fecnet_with_a_vote_readout_or_a_warm_head(ferplus_valid, tmp_path):
    """At a learning rate too small to move any weight:
    --vote-readout W: the cross-entropy of the votes read from each embedding joins the loss (the same
    batches give a larger loss, by at least W x the votes' own entropy);
    --warm-head: the head's FeatureHead starts from the classifier's in --trunk, without it it is new."""
    from safetensors.torch import load_file

    small = small_ferplus(ferplus_valid, tmp_path, 400)  # what is checked needs no more faces than this
    args = ["train", "fecnet", "--train", small, "--valid", small, "--trunk", TRUNK,
            "--steps", 2, "--per-type", 2, "--epochs", 1, "--lr", 1e-12]
    run_cli(*args, "--out", tmp_path / "plain.safetensors")
    run_cli(*args, "--out", tmp_path / "readout.safetensors", "--vote-readout", 0.5)
    run_cli(*args, "--out", tmp_path / "warm.safetensors", "--warm-head")
    plain, readout = metrics_of(tmp_path / "plain.safetensors"), metrics_of(tmp_path / "readout.safetensors")
    assert plain["vote_readout"] == 0 and readout["vote_readout"] == 0.5
    assert readout["history"][0]["train_loss"] > plain["history"][0]["train_loss"] + 0.25

    classifier = load_file(str(TRUNK))
    warm, cold = load_file(str(tmp_path / "warm.safetensors")), load_file(str(tmp_path / "plain.safetensors"))
    for key in ("head.features.reduce.weight", "head.features.fc.weight"):
        assert (warm[key] - classifier[key]).abs().max() < 1e-6
        assert (cold[key] - classifier[key]).abs().max() > 1e-2
    assert metrics_of(tmp_path / "warm.safetensors")["warm_head"] is True and plain["warm_head"] is False
    refused = run_cli(*args[:6], "--out", tmp_path / "no.safetensors", "--warm-head", ok=False)
    assert refused.exit_code != 0 and "--warm-head needs --trunk" in refused.output


def test_mixup_blends_faces_and_their_votes(ferplus_valid, tmp_path):
    """`train affnet --mixup A`: a batch is blended with itself in another order by one weight, inputs
    and targets alike; targets stay distributions (majority labels become one-hot first); the same
    generator seed gives the same blend; the run records it; a negative value is refused."""
    import torch

    from fecsearch.data.labels import read_ferplus
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.train.common import mixed

    faces = read_ferplus(ferplus_valid)
    x = load_prepared(faces.paths[:32], get_config("affnet-lite-cl-p").preprocess).float()
    votes = torch.from_numpy(faces.votes[:32])
    blend, target = mixed(x, votes, 0.4, torch.Generator().manual_seed(3))
    again, _ = mixed(x, votes, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(blend, again)
    torch.testing.assert_close(target.sum(1), torch.ones(32, dtype=target.dtype))
    # Each blended face is w * one face + (1 - w) * another, and its target the same blend of their votes.
    flat, ones = x.flatten(1), blend.flatten(1)
    for n in range(32):
        w, j = None, None
        for k in range(32):
            # solve blend = w x_n + (1 - w) x_k for w by least squares; the right k fits exactly
            d = flat[n] - flat[k]
            if float(d.norm()) < 1e-6:
                continue
            w_k = float(((ones[n] - flat[k]) @ d) / (d @ d))
            if float((w_k * flat[n] + (1 - w_k) * flat[k] - ones[n]).abs().max()) < 1e-4:
                w, j = w_k, k
                break
        assert w is not None, f"face {n} is not a blend of two faces of the batch"
        torch.testing.assert_close(target[n], (w * votes[n] + (1 - w) * votes[j]).to(target.dtype), atol=1e-4, rtol=0)
    labels = torch.from_numpy(faces.labels[:32])
    _, hard = mixed(x, labels, 0.4, torch.Generator().manual_seed(3))
    assert hard.shape == (32, 8) and bool(((hard > 0).sum(1) <= 2).all())

    out = tmp_path / "mixup.safetensors"
    small = small_ferplus(ferplus_valid, tmp_path)
    run_cli("train", "affnet", "--train", small, "--valid", small, "--out", out, "--epochs", 1,
            "--batch-size", 16, "--soft-labels", "--mixup", 0.4)
    assert metrics_of(out)["mixup"] == 0.4
    result = run_cli("train", "affnet", "--train", small, "--valid", small,
                     "--out", tmp_path / "no.safetensors", "--mixup", -1, ok=False)
    assert result.exit_code != 0 and "--mixup must be 0 (off) or more, not -1.0" in result.output


def test_head_gradient_keeps_the_maps_channels_last_layout():
    """Under `--bf16` the head's maps are channels-last; pooling's backward would hand BatchNorm a
    gradient in the default layout (a slow path). channels_last_gradient returns the same gradient,
    value for value, in channels-last layout, and leaves maps in the default layout alone."""
    import torch
    import torch.nn.functional as F

    from fecsearch.models.heads import channels_last_gradient

    maps = torch.rand(3, 8, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    weights = torch.rand(3, 8)
    grads = []
    for wrap in (False, True):
        below = maps * 2  # the norm's output: what receives the gradient
        below.register_hook(grads.append)
        x = channels_last_gradient(below) if wrap else below
        assert torch.equal(x, below)
        (F.adaptive_avg_pool2d(x, 1).flatten(1) * weights).sum().backward()
    assert not grads[0].is_contiguous(memory_format=torch.channels_last)
    assert grads[1].is_contiguous(memory_format=torch.channels_last) and torch.equal(grads[0], grads[1])
    plain = torch.rand(3, 8, 5, 5, requires_grad=True)
    assert channels_last_gradient(plain) is plain


def test_legacy_bf16_trains_as_the_code_without_the_layout_fixes(ferplus_valid, tmp_path, monkeypatch):
    """`--bf16 --legacy-bf16` gives, to the bit, the weights of bfloat16 training with the layout fixes
    taken out of the code (how the weights shipped before them were trained); without it the fixes
    run and the weights differ; the run records which, and the switches are restored afterwards."""
    import torch
    from safetensors.torch import load_file

    from fecsearch.models import heads, mobilenet

    small = small_ferplus(ferplus_valid, tmp_path, 48)
    args = ["--model", "affnet-lite-x2-cl-p", "--epochs", 1, "--batch-size", 16, "--soft-labels", "--bf16"]

    def train(name, *extra):
        out = tmp_path / f"{name}.safetensors"
        run_cli("train", "affnet", "--train", small, "--valid", small, "--out", out, *args, *extra)
        return metrics_of(out), load_file(str(out))

    (legacy_run, legacy), (fixed_run, fixed) = train("legacy", "--legacy-bf16"), train("fixed")
    assert legacy_run["legacy_bf16"] is True and fixed_run["legacy_bf16"] is False
    assert mobilenet.STRIDED_DEPTHWISE_IN_FLOAT32 and heads.CHANNELS_LAST_GRADIENT
    with monkeypatch.context() as patch:
        patch.setattr(heads, "channels_last_gradient", lambda x: x)
        patch.setattr(mobilenet.Float32OnCpu, "forward", torch.nn.Sequential.forward)
        _, without = train("without")
    assert all(torch.equal(legacy[k], without[k]) for k in legacy)
    assert any(not torch.equal(legacy[k], fixed[k]) for k in legacy)


@pytest.mark.parametrize("command", ["affnet", "fecnet"])
def test_bf16_training_computes_the_same_loss_and_keeps_float32_weights(ferplus_valid, tmp_path, command):
    """`train affnet --bf16` and `train fecnet --bf16`: forward passes in bfloat16 give the float32
    run's loss to within rounding, the weights differ from the float32 run's by that rounding only
    (so autocast did run), they are stored as float32, and the run records it."""
    import torch
    from safetensors.torch import load_file

    small = small_ferplus(ferplus_valid, tmp_path, 400 if command == "fecnet" else 48)
    args = {"affnet": ["--epochs", 1, "--batch-size", 16, "--soft-labels"],
            "fecnet": ["--trunk", TRUNK, "--epochs", 1, "--steps", 4, "--per-type", 4]}[command]
    runs = {}
    for bf16 in (False, True):
        out = tmp_path / f"bf16-{bf16}.safetensors"
        run_cli("train", command, "--train", small, "--valid", small, "--out", out, *args,
                *(["--bf16"] if bf16 else []))
        runs[bf16] = (metrics_of(out), load_file(str(out)))
    (plain, plain_weights), (fast, fast_weights) = runs[False], runs[True]
    assert plain["bf16"] is False and fast["bf16"] is True
    loss, fast_loss = plain["history"][0]["train_loss"], fast["history"][0]["train_loss"]
    assert abs(fast_loss - loss) < 0.02 * loss, (loss, fast_loss)
    assert set(plain_weights) == set(fast_weights)
    assert all(t.dtype == torch.float32 for t in fast_weights.values() if t.is_floating_point())
    assert any(not (plain_weights[k] == fast_weights[k]).all() for k in plain_weights)


def test_train_fecnet_bf16_cache_trains_as_the_float32_cache_does(ferplus_valid, tmp_path):
    """`train fecnet --bf16 --bf16-cache`: the run records its bfloat16 cache, its loss is the float32
    cache's to within rounding, and its weights are not the same bits (the cache did change)."""
    from safetensors.torch import load_file

    small = small_ferplus(ferplus_valid, tmp_path, 400)
    runs = {}
    for cache in ([], ["--bf16-cache"]):
        out = tmp_path / f"cache{len(cache)}.safetensors"
        run_cli("train", "fecnet", "--train", small, "--valid", small, "--out", out, "--trunk", TRUNK, "--epochs", 1,
                "--steps", 4, "--per-type", 4, "--bf16", *cache)
        runs[bool(cache)] = (metrics_of(out), load_file(str(out)))
    (plain, plain_weights), (fast, fast_weights) = runs[False], runs[True]
    assert plain["bf16_cache"] is False and fast["bf16_cache"] is True
    loss, fast_loss = plain["history"][0]["train_loss"], fast["history"][0]["train_loss"]
    assert abs(fast_loss - loss) < 0.02 * loss, (loss, fast_loss)
    assert any(not plain_weights[k].equal(fast_weights[k]) for k in plain_weights)


def test_train_fecnet_distils_an_ensemble_of_fecnets(ferplus_valid, tmp_path):
    """--distil: the ensemble's distances between a batch's faces become targets. The ensemble's
    vectors are unit vectors of 16 x checkpoints, each checkpoint's part its mirror-averaged embedding;
    two checkpoints that disagree (the shipped model and a head that has not learnt) give a distance
    loss above zero, so at a learning rate too small to move any weight the distilled run's loss
    exceeds the plain run's; a classifier is refused before any training work."""
    import torch

    from fecsearch.data.labels import read_labelled
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.models.registry import create_model
    from fecsearch.train.fecnet import distance_match_loss, ensemble_vectors

    shipped = TRUNK.parent / "fecnet-lite-16d.safetensors"
    small = small_ferplus(ferplus_valid, tmp_path, 400)  # what is checked needs no more faces than this
    args = ["train", "fecnet", "--train", small, "--valid", small, "--trunk", TRUNK,
            "--steps", 2, "--per-type", 2, "--epochs", 1, "--lr", 1e-12]
    plain = tmp_path / "plain.safetensors"
    run_cli(*args, "--out", plain)
    distilled = run_cli(*args, "--out", tmp_path / "distilled.safetensors", "--distil", shipped, "--distil", plain,
                        "--distil-weight", 2)
    assert "vectors to distil: (" in distilled.output
    metrics = metrics_of(tmp_path / "distilled.safetensors")
    assert metrics["distil"] == [str(shipped), str(plain)] and metrics["distil_weight"] == 2
    assert metrics["history"][0]["train_loss"] > metrics_of(plain)["history"][0]["train_loss"] + 1e-3

    faces = load_prepared(read_labelled(ferplus_valid).paths[:40], get_config("fecnet-lite-16d").preprocess).float()
    vectors = ensemble_vectors([shipped, plain], faces)
    assert vectors.shape == (40, 32) and torch.allclose(vectors.norm(dim=1), torch.ones(40), atol=1e-5)
    alone = create_model("fecnet-lite-16d", shipped).eval()
    with torch.no_grad():
        expected = torch.nn.functional.normalize(alone(faces) + alone(faces.flip(3)), dim=1)
    assert torch.allclose(vectors[:, :16] * 2 ** 0.5, expected, atol=1e-5)
    assert distance_match_loss(vectors[:, :16], vectors[:, 16:]) > 1e-3
    assert distance_match_loss(vectors, vectors) < 1e-8

    refused = run_cli(*args, "--out", tmp_path / "no.safetensors", "--distil", TRUNK, ok=False)
    assert refused.exit_code != 0 and "not a FECNet checkpoint" in refused.output
    assert "loaded" not in refused.output  # refused before the faces were read


def test_train_on_a_gpu_this_machine_lacks_is_one_sentence(ferplus_valid, tmp_path):
    """Checked without a GPU (the suite hides one: conftest.py); tests/test_gpu.py trains on one."""
    import torch

    assert not torch.cuda.is_available()
    result = run_cli("train", "affnet", "--train", ferplus_valid, "--valid", ferplus_valid, "--out",
                     tmp_path / "cl.safetensors", "--device", "cuda", ok=False)
    assert result.exit_code == 1
    assert result.output.strip().endswith(f"--device cuda: torch sees no CUDA GPU here (torch {torch.__version__}); "
                                          f"use --device cpu")
    assert not (tmp_path / "cl.safetensors").exists()


@pytest.mark.parametrize("family", ["fecnet", "affnet"])
def test_validating_less_often_leaves_the_weights_as_they_were(family, ferplus_valid, tmp_path):
    """--valid-every 0 measures the validation set after the last epoch only, and trains the same
    tensors, bit for bit, as measuring it after every epoch: it saves time, never changes a model."""
    from safetensors.torch import load_file

    small = small_ferplus(ferplus_valid, tmp_path, 200)
    args = (["train", "fecnet", "--trunk", TRUNK, "--steps", 3, "--per-type", 2] if family == "fecnet"
            else ["train", "affnet", "--batch-size", 32, "--soft-labels"])
    key = "valid_triplet_accuracy" if family == "fecnet" else "valid_accuracy"
    runs = {}
    for every in (1, 0):
        out = tmp_path / f"every{every}.safetensors"
        run_cli(*args, "--train", small, "--valid", small, "--epochs", 3, "--valid-every", every, "--out", out)
        runs[every] = (load_file(str(out)), [key in epoch for epoch in metrics_of(out)["history"]])
    (each, measured_each), (last, measured_last) = runs[1], runs[0]
    assert measured_each == [True, True, True] and measured_last == [False, False, True]
    assert each.keys() == last.keys() and all(each[k].equal(last[k]) for k in each)
