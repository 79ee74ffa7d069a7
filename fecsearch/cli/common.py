"""What every command shares: errors, JSON output, detector and device options."""
from __future__ import annotations

import json

import click

from fecsearch.evaluation import STUDY_MAX_N, STUDY_QUERIES, STUDY_SEED
from fecsearch.faces.detect import DetectorConfig
from fecsearch.models.config import DEFAULT_BASELINE, DEFAULT_MODEL
from fecsearch.store import DEFAULT_INDEX_DIR

DEFAULT_INDEX = str(DEFAULT_INDEX_DIR)


def fail(message: str) -> None:
    raise click.ClickException(message)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def detector_options(f):
    """MTCNN's settings, defaulting to DetectorConfig's."""
    d = DetectorConfig()
    f = click.option("--min-face", default=d.min_face_size, show_default=True,
                     help="Smallest face MTCNN looks for, in pixels of the detection canvas.")(f)
    f = click.option("--min-prob", default=d.min_probability, show_default=True,
                     help="Drop faces MTCNN is less sure of.")(f)
    f = click.option("--thresholds", default=",".join(str(v) for v in d.thresholds), show_default=True,
                     help="MTCNN's three stage thresholds.")(f)
    f = click.option("--canvas", default=d.canvas_size, show_default=True,
                     help="Detection canvas size: larger finds smaller faces, slower.")(f)
    return f


def study_options(what: str = ""):
    """The rank-difference study's parameters, shared by `bench rank-diff` and the rating page of
    `serve`: the same values give the same study, so votes cast in either place add up."""
    def decorate(f):
        f = click.option("--seed", default=STUDY_SEED, show_default=True, help=f"{what}Seed of the query draw.")(f)
        f = click.option("--max-n", default=STUDY_MAX_N, show_default=True, help=f"{what}Largest N.")(f)
        f = click.option("--queries", "n_queries", default=STUDY_QUERIES, show_default=True,
                         help=f"{what}Queries drawn from the folder.")(f)
        f = click.option("--b", "model_b", default=DEFAULT_BASELINE, show_default=True, help=f"{what}Embedding B.")(f)
        return click.option("--a", "model_a", default=DEFAULT_MODEL, show_default=True, help=f"{what}Embedding A.")(f)
    return decorate


def make_detector_config(min_face, min_prob, thresholds, canvas):
    try:
        th = tuple(float(v) for v in thresholds.split(","))
        assert len(th) == 3
    except Exception:
        fail(f"--thresholds takes three numbers separated by commas, not '{thresholds}'")
    return DetectorConfig(min_face_size=min_face, thresholds=th, min_probability=min_prob, canvas_size=canvas)


def device_option(f):
    """--device and --runtime: where and in what the networks run."""
    f = click.option("--runtime", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True,
                     help="onnx: ONNX Runtime, no torch needed; torch; auto: ONNX Runtime for every model that "
                          "has an exported graph (the shipped ones), torch for other checkpoints.")(f)
    return click.option("--device", default=None,
                        help="cpu, cuda or cuda:N. Default: cuda where ONNX Runtime has CUDA, else cpu; index and "
                             "embed also run the expression network on a GPU that only torch can use (detection "
                             "then stays on the CPU, where it was faster).")(f)


def load_network(model_name, checkpoint, device=None, runtime="auto", mirror=None, precision="fp32"):
    """A model ready to embed (models.inference.load_inference), or one sentence saying why not."""
    from fecsearch.models.config import MissingWeights
    from fecsearch.models.inference import load_inference
    from fecsearch.runtime.onnx import RuntimeUnavailable

    try:
        return load_inference(model_name, checkpoint, device, runtime, mirror_average=mirror, precision=precision)
    except (MissingWeights, KeyError, RuntimeUnavailable, ValueError) as err:
        fail(str(err).strip("'\""))


class IndexProblem(click.ClickException):
    exit_code = 2


# What the `torch` extra installs: training, evaluation and --runtime torch need it; indexing,
# queries and the server do not.
TORCH_EXTRA = ("torch", "torchvision", "facenet_pytorch")


class Commands(click.Group):
    """Every command: an index that cannot be used ends the run with one sentence and exit code 2;
    a model without weights here, or a command that needs torch where it is not installed, with one
    sentence and exit code 1."""

    def invoke(self, ctx):
        from fecsearch.models.config import MissingWeights
        from fecsearch.store.database import IndexUnusable

        try:
            return super().invoke(ctx)
        except IndexUnusable as err:
            raise IndexProblem(str(err)) from None
        except MissingWeights as err:
            raise click.ClickException(str(err)) from None
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] not in TORCH_EXTRA:
                raise
            command = ctx.invoked_subcommand or "this command"
            raise click.ClickException(f"`fecsearch {command}` needs {err.name}, which is not installed here: "
                                       f"pip install 'fecsearch[torch]' (indexing, queries and the server "
                                       f"run without it)") from None


def load(model_name, checkpoint, mirror: bool | None = None, precision: str = "fp32"):
    """A model for the evaluations: the torch model, or with precision int8 its int8 graph ready to
    embed (evaluation.metrics.embed_paths takes either); mirror None: as the model's indexes embed."""
    from dataclasses import replace

    from fecsearch.models.config import MissingWeights
    from fecsearch.models.registry import create_model
    from fecsearch.runtime.onnx import RuntimeUnavailable

    try:
        if precision == "int8":
            from fecsearch.models.inference import load_inference

            return load_inference(model_name, checkpoint, "cpu", "onnx", mirror_average=mirror, precision="int8")
        model = create_model(model_name, checkpoint=checkpoint)
    except (MissingWeights, KeyError, RuntimeUnavailable) as err:
        fail(str(err).strip("'\""))
    if mirror is not None:
        model.config = replace(model.config, mirror_average=mirror)
    return model
