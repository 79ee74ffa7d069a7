"""The command line's help, listings and one-sentence errors."""
import subprocess
import sys

from conftest import run_cli


def test_help_has_examples():
    for command in (["index"], ["query"], ["embed"], ["info"], ["train", "fecnet"], ["eval", "triplets"]):
        out = run_cli(*command, "--help").output
        assert "Example" in out, command


def test_models_lists_the_registry():
    out = run_cli("models").output
    assert "fecnet-lite-16d" in out and "(default)" in out and "fecnet-16d" in out


def test_query_needs_image_or_id(tmp_path):
    result = run_cli("query", "--index", tmp_path, ok=False)
    assert result.exit_code == 2 and "give either an IMAGE or --id" in result.output


def test_index_of_missing_folder(tmp_path):
    result = run_cli("index", tmp_path / "nope", "--index", tmp_path / "idx", ok=False)
    assert result.exit_code != 0 and "no such file or folder" in result.output


def test_index_with_a_model_that_has_no_weights_here(few_photos, tmp_path):
    """A registered model whose weights are not shipped (the paper's FaceNet model needs a download):
    one sentence saying how to get them, for a plain index and for a sharded one."""
    for where in (["--index", tmp_path / "idx"], ["--shards", tmp_path / "shards"]):
        result = run_cli("index", few_photos, *where, "--model", "fecnet-16d", ok=False)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
        assert "model 'fecnet-16d' has no trained weights" in result.output and "--checkpoint" in result.output
        assert "Traceback" not in result.output


def loaded_modules(*args) -> set[str]:
    """The heavy modules a fresh `fecsearch ARGS` process imported (it must succeed)."""
    code = ("import sys\nfrom fecsearch.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "heavy = ('numpy', 'onnxruntime', 'pandas', 'torch', 'torchvision', 'facenet_pytorch', 'matplotlib', 'sklearn', 'fecsearch.train.common', "
            "'numpy.ma', 'PIL', 'PIL.ImageFont', 'sqlite_utils')\n"
            "print(' '.join(m for m in heavy if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    return set(done.stderr.strip().splitlines()[-1].split()) if done.stderr.strip() else set()


def test_commands_import_only_what_they_use(photos_index, photos, few_photos, tmp_path):
    """Start-up is most of a one-off query: --help loads not even numpy, query --id no torch, and a
    query by image runs in ONNX Runtime: no torch, torchvision, facenet-pytorch, plotting or training
    code (--runtime torch, on an index of float vectors, loads torch and still nothing else). A photo
    the index holds is answered from the index: no network at all. Nor do they load numpy's masked
    arrays or Pillow's fonts (90 and 40 ms of a cold command), which only a --sheet needs; a search
    by id loads no Pillow at all, and reading an index no sqlite-utils (only writes use it)."""
    new = tmp_path / "img6.jpg"
    new.write_bytes((photos / "img6.jpg").read_bytes())
    assert loaded_modules("--help") == set()
    assert loaded_modules("query", "--id", "1", "--index", photos_index, "--json") == {"numpy"}
    assert loaded_modules("query", photos / "img6.jpg", "--index", photos_index, "--json") == {"numpy", "PIL"}
    assert loaded_modules("query", new, "--index", photos_index, "--json") == {"numpy", "onnxruntime", "PIL"}
    # the default index holds int8 vectors, which only ONNX Runtime makes: torch is refused in a sentence
    refused = run_cli("query", new, "--index", photos_index, "--runtime", "torch", ok=False)
    assert refused.exit_code == 1 and "--runtime torch cannot make them" in refused.output
    run_cli("index", few_photos, "--index", tmp_path / "fp32", "--precision", "fp32", "--quiet")
    assert loaded_modules("query", new, "--index", tmp_path / "fp32", "--json", "--runtime", "torch") == {
        "numpy", "torch", "PIL"}
