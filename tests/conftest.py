import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def need_data(*parts: str) -> Path:
    """A folder of ../shared/data: missing fails under CI (it must be there) and skips elsewhere."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        message = f"test data missing: {path} (../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def photos() -> Path:
    return need_data("photos")


@pytest.fixture(scope="session")
def ferplus_valid() -> Path:
    return need_data("ferplus", "valid")


@pytest.fixture(scope="session")
def ferplus_train() -> Path:
    return need_data("ferplus", "train")


@pytest.fixture(scope="session")
def ckplus() -> Path:
    return need_data("ckplus48")


def run_cli(*args, ok: bool = True):
    from fecsearch.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="session")
def photos_index(tmp_path_factory, photos) -> Path:
    """The whole photos folder indexed once with the default model."""
    index = tmp_path_factory.mktemp("photos-index") / "idx"
    run_cli("index", photos, "--index", index, "--quiet")
    return index


@pytest.fixture
def few_photos(tmp_path, photos) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("couple.jpg", "img1.jpg", "img2.jpg"):
        shutil.copy(photos / name, folder / name)
    return folder
