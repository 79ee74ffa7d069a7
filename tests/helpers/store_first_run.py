"""A first indexing run's database writes, without the model: what `fecsearch index` writes, in
the same order (create, bind the model, start a run, chunks, finish), with embeddings made from
the file names. Run it, kill it at any write, run it again: tests/test_reliability.py."""
import hashlib
import sys

import numpy as np

from fecsearch.store.database import FaceRecord, FaceStore

IMAGES = [f"/album/face{i}.png" for i in range(6)]


def embedding(path: str) -> np.ndarray:
    seed = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(16).astype(np.float32)


def main(index_dir: str) -> None:
    store = FaceStore(index_dir)
    store.bind_model("fecnet-lite-16d", 16, "l2", "0" * 64)
    run_id = store.start_run("index", "/album", "fecnet-lite-16d")
    known = store.known_images("/album")
    todo = [p for p in IMAGES if p not in known]
    for start in range(0, len(todo), 2):
        chunk = todo[start:start + 2]
        images = [{"path": p, "size": 100, "mtime": 1.0, "sha256": p, "width": 48, "height": 48, "status": "ok",
                   "error": None} for p in chunk]
        faces = [[FaceRecord(0, 0, (0.0, 0.0, 48.0, 48.0), 1.0, None, embedding(p))] for p in chunk]
        store.write_batch(images, faces, "fecnet-lite-16d", run_id)
    store.finish_run(run_id, "done", images_added=len(todo))


if __name__ == "__main__":
    main(sys.argv[1])
