"""`fecsearch train ...` and `fecsearch fec ...`: training, and the FEC dataset it can train on."""
from __future__ import annotations

from pathlib import Path

import click

from fecsearch.cli.common import echo_json, fail


def training_device(device: str | None) -> str:
    """The device asked for (checked), else CUDA where torch sees a GPU, else the CPU."""
    from fecsearch.models.registry import checked_device
    from fecsearch.runtime.onnx import RuntimeUnavailable

    if device is not None and device != "cpu" and not device.startswith("cuda"):
        fail(f"--device {device}: cpu, cuda or cuda:N")
    try:
        return checked_device(device)
    except RuntimeUnavailable as err:
        fail(str(err))


@click.group()
def train():
    """Train the paper's models (AFFNet-CL baseline, FECNet embedding)."""


def valid_every_option(f):
    """--valid-every, for both trainers: how often an epoch ends with a measurement on --valid."""
    return click.option("--valid-every", default=1, show_default=True,
                        help="Measure --valid after every Nth epoch and after the last; 0: after the last only. "
                             "The weights do not depend on it (each epoch reseeds its own generator); it saves "
                             "time.")(f)


@train.command("affnet")
@click.option("--train", "train_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="FER+ folder with label.csv, or a folder per class (CK+48, AffectNet).")
@click.option("--valid", "valid_dir", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint to write (.safetensors).")
@click.option("--model", "model_name", default="affnet-lite-cl-p", show_default=True)
@click.option("--epochs", default=15, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--soft-labels", is_flag=True, help="Fit FER+ vote distributions instead of majority labels.")
@click.option("--trunk-lr", default=0.0, show_default=True,
              help="A pretrained trunk (faceres): fine-tune its last --tune-blocks blocks at this learning rate.")
@click.option("--tune-blocks", default=0, show_default=True,
              help="With --trunk-lr: how many of the pretrained trunk's last blocks learn (above a feature cache); "
                   "all of them (faceres: 11) trains the whole trunk on augmented faces, without a cache.")
@click.option("--augment", "augmentation", type=click.Choice(["shift", "affine"]), default="shift", show_default=True,
              help="shift: flips and 3-pixel shifts; affine: flips, rotation, zoom, shift, contrast, brightness.")
@click.option("--mixup", default=0.0, show_default=True,
              help="Blend each batch with itself shuffled, inputs and targets alike, by a weight drawn from "
                   "Beta(MIXUP, MIXUP); 0 turns it off.")
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="With --tune-blocks below all of them: cache the frozen blocks' output once (flips only), or "
                   "run them at every step on augmented faces without gradients (FaceRes, --tune-blocks 8: 0.63x "
                   "the time of tuning all 11).")
@click.option("--bf16", is_flag=True,
              help="Forward passes in bfloat16 (weights stay float32): 2.3x to 3.2x faster on a CPU with AMX.")
@click.option("--legacy-bf16", is_flag=True,
              help="With --bf16: every layer in bfloat16, as before 2026-12-07, without the layout fixes that "
                   "make steps 0.72x to 0.96x as long (benchmarks/bench_train_steps.py); it repeats weights "
                   "trained then bit for bit.")
@valid_every_option
@click.option("--device", default=None,
              help="cpu, cuda or cuda:N (default: cuda where torch sees a GPU, else cpu). The model cards' times "
                   "and numbers were measured on a CPU; a GPU trains a similar model, not the same bits.")
def train_affnet(train_dir, valid_dir, out, model_name, epochs, batch_size, lr, seed, soft_labels, trunk_lr,
                 tune_blocks, augmentation, mixup, feature_cache, bf16, legacy_bf16, valid_every, device):
    """AFFNet-CL: trunk, head and an 8-way emotion classifier trained end to end.

    Resumes from OUT's .state.pt if a previous run was interrupted.

    \b
    Examples:
      fecsearch train affnet --train ../shared/data/ferplus/train --valid ../shared/data/ferplus/valid \\
          --out fecsearch/weights/affnet-lite-cl.safetensors
      fecsearch train affnet --model affnet-lite-x2-cl-p --soft-labels --epochs 10 --bf16 \\
          --train ../shared/data/ferplus/train --valid ../shared/data/ferplus/valid --out trunk-x2.safetensors
      fecsearch train affnet --model affnet-faceres-cl-p --soft-labels --trunk-lr 1e-4 --tune-blocks 5 \\
          --train ../shared/data/ferplus/train --valid ../shared/data/ferplus/valid --out faceres-votes.safetensors
    """
    from fecsearch.train.classifier import train_classifier

    try:
        train_classifier(train_dir, valid_dir, out, model_name, epochs, batch_size, lr, seed, soft_labels,
                         trunk_lr, tune_blocks, augmentation, mixup=mixup, bf16=bf16, legacy_bf16=legacy_bf16,
                         valid_every=valid_every,
                         feature_cache=feature_cache, device=training_device(device), log=click.echo)
    except ValueError as err:
        fail(str(err))
    click.echo(f"wrote {out}")


@train.command("fecnet")
@click.option("--train", "train_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="FER+ folder with label.csv (vote triplets are drawn from it), or a `fec download` "
                   "folder (its human triplets, faces aligned by their landmarks).")
@click.option("--valid", "valid_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="FER+ folder (6,000 vote triplets, seed 2019) or a `fec download` folder.")
@click.option("--trunk", "trunk_checkpoint", type=click.Path(exists=True, path_type=Path),
              help="Checkpoint whose trunk is frozen under the new head (e.g. the AFFNet-CL one); "
                   "not needed for a pretrained trunk (the faceres models).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="fecnet-lite-16d", show_default=True)
@click.option("--epochs", default=20, show_default=True)
@click.option("--steps", "steps_per_epoch", default=300, show_default=True, help="Batches per epoch.")
@click.option("--per-type", "triplets_per_type", default=30, show_default=True,
              help="Triplets of each type in a batch (the paper: 30).")
@click.option("--lr", default=5e-4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="Run the frozen trunk once per face instead of at every step.")
@click.option("--triplets", "triplet_source", type=click.Choice(["votes", "mined", "labels"]),
              default="votes", show_default=True,
              help="votes: FER+ vote triplets (FECNet); mined: those plus every triplet the batch's vote "
                   "distributions rank, margins growing with the vote gap; labels: label triplets (AFFNet-TL).")
@click.option("--trunk-lr", default=0.0, show_default=True,
              help="Above 0: fine-tune the trunk too at this learning rate (no feature cache).")
@click.option("--tune-blocks", default=0, show_default=True,
              help="With --trunk-lr: fine-tune only the trunk's last N blocks, above a feature cache (faceres).")
@click.option("--agreement", type=click.Choice(["strong", "all"]), default="strong", show_default=True,
              help="FEC: keep the triplets at least 2/3 of the raters agree on (the paper's default), or all.")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A classifier checkpoint (`train affnet --soft-labels`): every triplet its predicted vote "
                   "distributions rank among a batch's faces is added to the loss (distillation).")
@click.option("--augmented-views", default=0, show_default=True,
              help="Cache this many moved views of every face besides it and its mirror image; each step "
                   "reads each face in one of them, drawn at random.")
@click.option("--augment", "augmentation", type=click.Choice(["shift", "affine"]), default="affine",
              show_default=True, help="How --augmented-views moves the faces.")
@click.option("--vote-readout", default=0.0, show_default=True,
              help="Above 0: a linear layer reads each face's vote distribution from its embedding, and "
                   "its cross-entropy, times this weight, joins the loss.")
@click.option("--warm-head", is_flag=True,
              help="Start the head's 1x1 conv, DenseNet block and FC 512 from the classifier in --trunk "
                   "(the same layers AFFNet-CL has) instead of from random weights.")
@click.option("--distil", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="FECNet checkpoints (repeat it): their ensemble's distances between every pair of a batch's "
                   "faces become targets for the new model's (benchmarks/ensemble_heads.py measures the ensemble).")
@click.option("--distil-weight", default=1.0, show_default=True,
              help="With --distil: the weight of the mean squared distance difference in the loss.")
@click.option("--bf16", is_flag=True,
              help="Forward passes in bfloat16 (weights, loss and optimiser stay float32): for the paper's "
                   "wide head on a pretrained trunk's maps, much faster on a CPU with AMX.")
@click.option("--bf16-cache", is_flag=True,
              help="Compute the frozen trunk's feature cache in bfloat16 too: 3.4x faster for a lite-x2 trunk on a "
                   "CPU with AMX; the cache then differs from a float32 one by bfloat16's rounding.")
@click.option("--legacy-bf16", is_flag=True,
              help="With --bf16: every layer in bfloat16, as before 2026-12-07, without the layout fixes that "
                   "make steps 0.72x to 0.96x as long (benchmarks/bench_train_steps.py); it repeats weights "
                   "trained then bit for bit.")
@valid_every_option
@click.option("--device", default=None,
              help="cpu, cuda or cuda:N (default: cuda where torch sees a GPU, else cpu). The model cards' times "
                   "and numbers were measured on a CPU; a GPU trains a similar model, not the same bits.")
def train_fecnet(train_dir, valid_dir, trunk_checkpoint, out, model_name, epochs, steps_per_epoch,
                 triplets_per_type, lr, seed, feature_cache, triplet_source, trunk_lr, agreement, tune_blocks, teacher,
                 augmented_views, augmentation, vote_readout, warm_head, distil, distil_weight, bf16, bf16_cache,
                 legacy_bf16, valid_every, device):
    """FECNet: the embedding head on a frozen trunk, triplet loss of eq. (1) on FER+ vote triplets.

    \b
    Examples:
      fecsearch train fecnet --train ../shared/data/ferplus/train --valid ../shared/data/ferplus/valid \\
          --trunk fecsearch/weights/affnet-lite-cl.safetensors --out fecsearch/weights/fecnet-lite-16d.safetensors
      fecsearch train fecnet --model fecnet-lite-x2-16d --train ../shared/data/ferplus/train \\
          --valid ../shared/data/ferplus/valid --trunk trunk-x2.safetensors --out fecnet-lite-x2-16d.safetensors
      fecsearch train fecnet --train data/fec-train --valid data/fec-test \\
          --trunk fecsearch/weights/affnet-lite-cl.safetensors --out fecnet-lite-fec.safetensors
      fecsearch train fecnet --model fecnet-faceres-16d --train ../shared/data/ferplus/train \\
          --valid ../shared/data/ferplus/valid --trunk-lr 1e-4 --tune-blocks 2 --out fecnet-faceres-16d.safetensors
    """
    from fecsearch.train.fecnet import train_fecnet as run

    try:
        run(train_dir, valid_dir, trunk_checkpoint, out, model_name, epochs, steps_per_epoch, triplets_per_type, lr,
            seed, feature_cache, triplet_source, trunk_lr, agreement, tune_blocks, teacher=teacher,
            augmented_views=augmented_views, augmentation=augmentation, vote_readout=vote_readout,
            warm_head=warm_head, distil=distil, distil_weight=distil_weight, bf16=bf16, bf16_cache=bf16_cache,
            legacy_bf16=legacy_bf16, valid_every=valid_every, device=training_device(device), log=click.echo)
    except ValueError as err:
        fail(str(err))
    click.echo(f"wrote {out}")


@train.command("ensemble")
@click.option("--model", "model_name", default="fecnet-lite-x2-pair-32d", show_default=True,
              help="The ensemble model whose weights to write.")
@click.option("--member", "members", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A trained FECNet checkpoint (repeat it, one per member).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint to write (.safetensors).")
def train_ensemble(model_name, members, out):
    """Join FECNets trained apart into one ensemble model (trains nothing).

    Each face's vector is the members' unit vectors concatenated and divided by the square root of
    their number, so its squared distances are the mean of the members'.

    \b
    Example:
      fecsearch train ensemble --model fecnet-lite-x2-pair-32d --member fecnet-lite-x2-s0.safetensors \\
          --member fecnet-lite-x2-s1.safetensors --out fecsearch/weights/fecnet-lite-x2-pair-32d.safetensors
    """
    from fecsearch.train.ensemble import join_members

    try:
        record = join_members(model_name, list(members), out)
    except ValueError as err:
        fail(str(err))
    click.echo(f"wrote {out} from {', '.join(m['file'] for m in record['members'])}")


@train.command("split")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the members' checkpoints (WEIGHTS' name + .member<i>.safetensors).")
def train_split(weights, out_dir):
    """Write each network of an ensemble checkpoint as a checkpoint of its own (the reverse of `train ensemble`).

    The files measure a member alone (`eval ... --model fecnet-faceres-16d --checkpoint FILE`), give it a
    new head on the same frozen trunk (`train fecnet --trunk FILE`), or join back into the same weights.

    \b
    Example:
      fecsearch train split fecsearch/weights/fecnet-lite-x2-pair-faceres-48d-v2.safetensors --out members/
    """
    from fecsearch.train.ensemble import split_members

    try:
        written = split_members(weights, out_dir)
    except ValueError as err:
        fail(str(err))
    for path in written:
        click.echo(f"wrote {path}")


@click.group()
def fec():
    """Google's FEC dataset (facial expression comparison triplets)."""


@fec.command("download")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--workers", default=16, show_default=True, help="Parallel downloads.")
@click.option("--retries", default=3, show_default=True, help="Retries of timeouts and server errors.")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds per request.")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="Find each face's landmarks with MTCNN (faces.jsonl), so training aligns FEC faces as "
                   "queries are aligned; without, training uses the boxes resized.")
@click.option("--json", "as_json", is_flag=True)
def fec_download(csv_path, out, workers, retries, timeout, landmarks, as_json):
    """Fetch FEC's photos (each once), crop every face by its box (with a margin), find its landmarks,
    write faces.jsonl, triplets.jsonl and a manifest.

    Dead links (many Flickr photos are gone) are listed in OUT/dead_links.json. Run it again to
    resume: what is on disk is kept.

    \b
    Example:
      fecsearch fec download faceexp-comparison-data-train-public.csv --out data/fec-train
    """
    from fecsearch.data.fec import download_fec

    report = download_fec(csv_path, out, workers, retries, timeout, progress=not as_json, landmarks=landmarks)
    if as_json:
        echo_json(report.to_dict())
        return
    d = report.to_dict()
    click.echo(f"{d['rows']} rows, {d['photos']} photos: {d['photos_fetched']} fetched, {d['photos_cached']} already "
               f"here, {d['dead_links']} dead (see {out / 'dead_links.json'}); {d['faces']} faces "
               f"({d['aligned']} with landmarks); "
               f"{d['triplets']} complete triplets ({d['strong_triplets']} strong) in {out / 'triplets.jsonl'}")
