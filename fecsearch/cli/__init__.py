"""The `fecsearch` command line: thin commands over the library, one module per part of the pipeline.

Each module defines its commands; this one gathers them under `fecsearch`. Command modules import
only click at load time, so `fecsearch --help` starts without torch.
"""
from __future__ import annotations

import click

from fecsearch.cli import apps, evaluation, index, people, query, serve, training
from fecsearch.cli.common import Commands


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fecsearch")
def main():
    """Find faces by facial expression.

    \b
    fecsearch index ./photos               embed every face of a folder
    fecsearch query face.jpg -k 10         the 10 faces whose expression is nearest
    fecsearch people                       who is in the pictures
    fecsearch moments v.mp4 --like f.jpg   when in a video a face looks like this
    fecsearch info                         what an index holds
    fecsearch models                       the models available
    """


for command in (index.index, query.query, query.moments, people.people, index.embed, index.info, index.models,
                apps.summarize_cmd, apps.classify_cmd, apps.label_cmd, apps.map_cmd, apps.bench, apps.votes,
                serve.serve, training.train, evaluation.evaluate, training.fec):
    main.add_command(command)
