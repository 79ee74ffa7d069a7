"""Indexing on Ray (a local Ray with two CPUs) and Parquet shards: the thread engine's faces and
vectors, a killed worker loses and duplicates nothing, shards resume and merge idempotently."""
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from conftest import run_cli

from fecsearch.ingest.indexer import Indexer
from fecsearch.store.database import FaceStore


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def index_with(engine, folder: Path, index: Path, cropped: bool = False) -> dict:
    store = FaceStore(index)
    try:
        summary = Indexer.for_folder(store, cropped=cropped, progress=False, report=lambda m: None,
                                     engine=engine, device="cpu").run(folder)
        assert not summary.skipped
        return faces_of(store)
    finally:
        store.close()


def faces_of(store: FaceStore) -> dict:
    """(path, face number) -> (box, vector) for every face of an index."""
    return {(row["path"], row["face_index"]): (np.array([row["x1"], row["y1"], row["x2"], row["y2"]]),
                                                np.frombuffer(row["embedding"], np.float32))
            for row in store.iter_faces()}


def assert_same_faces(a: dict, b: dict):
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert np.abs(a[key][0] - b[key][0]).max() < 1e-3, key
        assert np.abs(a[key][1] - b[key][1]).max() <= 1e-5, key


def ray_engine():
    from fecsearch.ingest.ray_engine import RayEngine

    return RayEngine()


def test_ray_indexes_photos_as_the_thread_engine_does(local_ray, photos, tmp_path):
    threads = index_with(None, photos, tmp_path / "threads")
    on_ray = index_with(ray_engine(), photos, tmp_path / "ray")
    assert_same_faces(threads, on_ray)
    assert len(on_ray) >= 70


def test_ray_indexes_crops_as_the_thread_engine_does(local_ray, ferplus_valid, tmp_path):
    threads = index_with(None, ferplus_valid, tmp_path / "threads", cropped=True)
    on_ray = index_with(ray_engine(), ferplus_valid, tmp_path / "ray", cropped=True)
    assert_same_faces(threads, on_ray)
    assert len(on_ray) == len(list(ferplus_valid.glob("*.png")))


def detection_workers() -> list[int]:
    """Process ids of Ray's face-finding actors (Ray names its worker processes after them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"FindFaces" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(local_ray, photos, tmp_path):
    expected = index_with(None, photos, tmp_path / "threads")
    killed = []

    before = set(detection_workers())  # the earlier tests' actors, which may still be exiting
    finished = threading.Event()

    def kill_a_worker():
        while not finished.is_set() and not killed:
            for pid in set(detection_workers()) - before:
                time.sleep(1.5)  # let it take a batch
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        on_ray = index_with(ray_engine(), photos, tmp_path / "ray")
    finally:
        finished.set()
        killer.join()
    assert killed, "no detection worker was found to kill while the run went on"
    assert_same_faces(expected, on_ray)
    store = FaceStore(tmp_path / "ray", readonly=True)
    assert store.face_count() == len(expected)
    store.close()


def test_shards_resume_and_merge_into_the_same_index(local_ray, photos, tmp_path):
    import json

    shards = tmp_path / "shards"
    first = json.loads(run_cli("index", photos, "--shards", shards, "--engine", "ray", "--json", "--chunk-size", "8")
                       .stdout)
    assert first["images"] == 64 and first["shards_written"] == 8 and first["faces"] >= 70
    (shards / "shard-half-written.parquet.tmp").write_bytes(b"a crashed worker's")
    again = json.loads(run_cli("index", photos, "--shards", shards, "--json").stdout)
    assert again["shards_written"] == 0 and again["images_skipped_done"] == 64
    assert not list(shards.glob("*.tmp"))
    merged = json.loads(run_cli("index", "--from-shards", shards, "--index", tmp_path / "idx", "--json").stdout)
    assert merged["faces"] == first["faces"] == merged["faces_total"]
    twice = json.loads(run_cli("index", "--from-shards", shards, "--index", tmp_path / "idx", "--json").stdout)
    assert twice["faces"] == 0 and twice["images_skipped_done"] == 64 and twice["faces_total"] == first["faces"]
    expected = index_with(None, photos, tmp_path / "threads")
    store = FaceStore(tmp_path / "idx", readonly=True)
    assert_same_faces(expected, faces_of(store))
    assert store.embedding_precision == "int8"  # the shards' (the default on a CPU), as the thread engine's
    store.close()
    # vectors of another precision do not join the folder
    refused = run_cli("index", photos, "--shards", shards, "--precision", "fp32", ok=False)
    assert refused.exit_code == 1 and "holds int8 vectors, not fp32" in refused.output
    query = json.loads(run_cli("query", photos / "couple.jpg", "--index", tmp_path / "idx", "--json", "-k", "1").stdout)
    assert query["results"][0]["path"] == str(photos / "couple.jpg") and query["results"][0]["distance"] < 1e-4


def test_shards_of_another_model_are_refused(tmp_path, photos):
    from fecsearch.ingest.shards import ShardModel, write_shard

    shards = tmp_path / "shards"
    write_shard(shards, {"path": ["x.jpg"], "size": [1], "mtime": [1.0], "sha256": ["0"], "width": [1],
                         "height": [1], "error": [None], "faces": ["[]"], "vectors": [b""]},
                ShardModel("affnet-lite-cl-p", "0" * 64, True, 512, "cosine"))
    result = run_cli("index", photos, "--shards", shards, ok=False)
    assert result.exit_code == 1 and "holds faces of model 'affnet-lite-cl-p'" in result.output


def test_on_a_cluster_with_gpus_each_embedding_actor_takes_one():
    """Checked without a GPU: the plan the engine makes from a cluster's resources."""
    from fecsearch.ingest.ray_engine import RayEngine

    class Cluster:
        def __init__(self, resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    plan = RayEngine().plan(Cluster({"CPU": 64.0, "GPU": 4.0}))
    assert plan == {"detect": 64, "embed": {"concurrency": 4, "num_gpus": 1, "threads": None}}
    plan = RayEngine().plan(Cluster({"CPU": 2.0}))
    assert plan == {"detect": 1, "embed": {"concurrency": 1, "num_cpus": 1, "threads": 1}}
