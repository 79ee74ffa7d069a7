"""What every command shares: errors, JSON output, detector and device options."""
from __future__ import annotations

import json

import click

DEFAULT_INDEX = "indexes/default"


def fail(message: str) -> None:
    raise click.ClickException(message)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def detector_options(f):
    f = click.option("--min-face", default=20, show_default=True, help="Smallest face MTCNN looks for, in pixels of the detection canvas.")(f)
    f = click.option("--min-prob", default=0.9, show_default=True, help="Drop faces MTCNN is less sure of.")(f)
    f = click.option("--thresholds", default="0.6,0.7,0.7", show_default=True, help="MTCNN's three stage thresholds.")(f)
    f = click.option("--canvas", default=1024, show_default=True, help="Detection canvas size: larger finds smaller faces, slower.")(f)
    return f


def make_detector_config(min_face, min_prob, thresholds, canvas):
    from fecsearch.faces.detect import DetectorConfig

    try:
        th = tuple(float(v) for v in thresholds.split(","))
        assert len(th) == 3
    except Exception:
        fail(f"--thresholds takes three numbers separated by commas, not '{thresholds}'")
    return DetectorConfig(min_face_size=min_face, thresholds=th, min_probability=min_prob, canvas_size=canvas)


def device_option(f):
    return click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")(f)


def pick_device(device):
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


class IndexProblem(click.ClickException):
    exit_code = 2


class Commands(click.Group):
    """Every command: an index that cannot be used ends the run with one sentence and exit code 2."""

    def invoke(self, ctx):
        from fecsearch.store.database import IndexUnusable

        try:
            return super().invoke(ctx)
        except IndexUnusable as err:
            raise IndexProblem(str(err)) from None


def load(model_name, checkpoint, mirror: bool = True):
    from dataclasses import replace

    from fecsearch.models.registry import MissingWeights, create_model

    try:
        model = create_model(model_name, checkpoint=checkpoint)
    except (MissingWeights, KeyError) as err:
        fail(str(err).strip("'\""))
    model.config = replace(model.config, mirror_average=mirror)
    return model
