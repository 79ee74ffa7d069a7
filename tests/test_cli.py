"""The command line's help, listings and one-sentence errors."""
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
