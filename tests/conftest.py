import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# The suite runs on the CPU wherever it runs, so that a machine with a GPU checks what CI checks
# (index picks a GPU by itself, and its vectors differ from the CPU's in the fifth decimal).
# FECSEARCH_TEST_GPU=1 leaves the GPU visible for tests/test_gpu.py, which needs one.
if os.environ.get("FECSEARCH_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def need_data(*parts: str) -> Path:
    """A folder of ../shared/data: missing fails under CI (it must be there) and skips elsewhere."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        message = f"test data missing: {path} (../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def copy_crops(source: Path, folder: Path, count: int, link: bool = False) -> Path:
    """The first `count` FER crops of `source` in a new folder (symbolic links with link=True)."""
    folder.mkdir()
    for path in sorted(source.glob("*.png"))[:count]:
        if link:
            os.symlink(path, folder / path.name)
        else:
            shutil.copy(path, folder / path.name)
    return folder


def small_ferplus(ferplus_valid: Path, tmp_path: Path, faces: int = 48) -> Path:
    """A FER+ folder (tmp_path/ferplus) of the valid split's first faces, with their votes: for tests of
    what a command does, which need no more faces than this."""
    small = tmp_path / "ferplus"
    small.mkdir()
    rows = (ferplus_valid / "label.csv").read_text().splitlines()[:faces]
    (small / "label.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        shutil.copy(ferplus_valid / row.split(",")[0], small)
    return small


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


# --- fecsearch serve ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """The ASGI app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def rating_faces(tmp_path_factory, ferplus_valid) -> Path:
    """A small folder of FER+ crops for a rating study with few questions."""
    folder = tmp_path_factory.mktemp("rating") / "faces"
    folder.mkdir()
    for p in sorted(ferplus_valid.glob("*.png"))[:40]:
        shutil.copy(p, folder / p.name)
    return folder


STUDY = dict(model_a="fecnet-lite-16d", model_b="affnet-lite-cl-p", n_queries=2, max_n=3, seed=0)


@pytest.fixture(scope="session")
def server(photos_index, rating_faces, tmp_path_factory):
    from fecsearch.evaluation.rankdiff import plan_study
    from fecsearch.serve.app import create_app
    from fecsearch.serve.library import Library
    from fecsearch.serve.rating import Rating

    votes = tmp_path_factory.mktemp("votes") / "votes.db"
    rating = Rating(plan_study(rating_faces, **STUDY), votes)
    running = RunningServer(create_app(Library(photos_index, inference_slots=2), rating, max_upload_bytes=2 * 1024 * 1024))
    running.votes = votes
    running.rating = rating
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
