"""A lite trunk of other widths, trained and measured without adding it to fecsearch's models.

The lite trunks fecsearch knows are listed in LITE_WIDTHS (fecsearch/models/config.py). This
registers one more for the length of the run, as `fecnet-NAME-16d` and `affnet-NAME-cl-p`, then runs
the wide trunk's recipe ("A trunk twice as wide" in benchmarks/RESULTS.md): the trunk with soft
labels in bfloat16, the FECNet head on it, FER+ valid vote triplets, CK+48 precision@5, K-NN AUC,
and the photos' hand-graded smiles (benchmarks/photo_smiles.py) with the selfie query of
tests/test_applications.py.

    uv run python benchmarks/wider_trunk.py --name lite-x3 --widths 96,192,384,768 --out-dir runs/
    uv run python benchmarks/wider_trunk.py --name lite-x3 --widths 96,192,384,768 --out-dir runs/ --from eval

--from eval measures checkpoints already in --out-dir (NAME-trunk.safetensors, NAME-16d.safetensors).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from fecsearch.cli import main as cli
from fecsearch.models import config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photo_smiles  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SELFIE_SMILES = {"img50.jpg", "img1.jpg", "img15.jpg", "img25.jpg", "img23.jpg", "img38.jpg"}


def register(name: str, widths: tuple[int, ...]) -> tuple[str, str]:
    config.LITE_WIDTHS[name] = widths
    fecnet, classifier = (c for c in config.lite_models(name) if c.output in ("embedding", "penultimate"))
    for c in (fecnet, classifier):
        config._MODELS[c.name] = replace(c, weights=None)  # nothing shipped: every step names its checkpoint
    return fecnet.name, classifier.name


def run(*args) -> str:
    started = time.perf_counter()
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if args[0] == "train":  # its log: a line an epoch
        print(result.output, file=sys.stderr)
    print(f"{' '.join(map(str, args[:2]))}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if result.exit_code:
        raise SystemExit(result.output)
    return result.output


def measure(fecnet: str, checkpoint: Path) -> dict:
    def model(*args):
        return json.loads(run(*args, "--model", fecnet, "--checkpoint", checkpoint, "--json"))["models"][fecnet]

    triplets = model("eval", "triplets", "--data", DATA / "ferplus" / "valid")["l2"]
    ck = model("eval", "retrieval", "--data", DATA / "ckplus48")
    knn = model("eval", "knn", "--labelled", DATA / "ferplus" / "train", "--test", DATA / "ferplus" / "valid")
    index = Path(tempfile.mkdtemp()) / "idx"
    run("index", DATA / "photos", "--index", index, "--model", fecnet, "--checkpoint", checkpoint, "--quiet")
    smiles = photo_smiles.score(*photo_smiles.graded_vectors(index, photo_smiles.read_grades()))
    query = json.loads(run("query", DATA / "photos" / "selfie-many-people.jpg", "--index", index, "-k", 6, "--json"))
    found = {r["path"].rsplit("/", 1)[-1] for r in query["results"][1:]}
    return {"triplets": triplets["overall"], "one_class": triplets["ONE_CLASS_TRIPLET"],
            "ckplus_precision_at_5": ck["precision_at_top"], "knn_mean_auc": knn["mean_auc"],
            "photo_grade_gap": smiles["grade_gap"], "selfie_broad_smiles_in_top_5": len(found & SELFIE_SMILES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the trunk's name, e.g. lite-x3")
    parser.add_argument("--widths", required=True, help="channels of the stages and of the 6x6 output, e.g. "
                                                        "96,192,384,768 (lite: 32,64,128,256)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="the trunk's seed (the head's stays 0, as in the recipe)")
    parser.add_argument("--from", dest="start", choices=["trunk", "head", "eval"], default="trunk")
    args = parser.parse_args()
    fecnet, classifier = register(args.name, tuple(int(w) for w in args.widths.split(",")))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    trunk, head = args.out_dir / f"{args.name}-trunk.safetensors", args.out_dir / f"{args.name}-16d.safetensors"
    ferplus = ["--train", DATA / "ferplus" / "train", "--valid", DATA / "ferplus" / "valid"]
    if args.start == "trunk":
        run("train", "affnet", "--model", classifier, *ferplus, "--soft-labels", "--epochs", 10, "--bf16",
            "--seed", args.seed, "--out", trunk)
    if args.start in ("trunk", "head"):
        run("train", "fecnet", "--model", fecnet, *ferplus, "--trunk", trunk, "--out", head, "--epochs", 6,
            "--steps", 300)
    print(json.dumps({"model": fecnet, "widths": args.widths, **measure(fecnet, head)}, indent=2))


if __name__ == "__main__":
    main()
