"""FAISS index types: each finds the true neighbours, and the store's index switches type by size."""
import numpy as np
import pytest

import fecsearch.vectors.faiss_index as vi
import fecsearch.vectors.kinds as kinds
from fecsearch.store.database import FaceRecord, FaceStore


def unit(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_types_find_true_neighbours(kind):
    data, queries = unit(20000, 0), unit(50, 1)
    ids = np.arange(1000, 21000)
    truth = vi.build_faiss(data, ids, "flat").search(queries, 10)[1]
    found = vi.build_faiss(data, ids, kind).search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= (1.0 if kind == "flat" else 0.9)
    assert found.min() >= 1000  # ids are the faces' ids, not positions


def test_store_switches_to_approximate_index(tmp_path, monkeypatch):
    store = FaceStore(tmp_path / "idx")
    store.bind_model("test", 16, "l2", "0" * 64)
    vectors = unit(3000, 2)
    images = [{"path": f"/x/{i}.jpg", "size": 1, "mtime": 0.0, "sha256": "", "width": 1, "height": 1,
               "status": "ok", "error": None} for i in range(len(vectors))]
    faces = [[FaceRecord(0, 0, (0, 0, 1, 1), 1.0, None, v)] for v in vectors]
    store.write_batch(images, faces, "test", store.start_run("test", "/x", "test"))
    monkeypatch.setattr(kinds, "APPROXIMATE_FROM", 1000)
    index = vi.VectorIndex.open(store)
    assert index.kind == "ivf" and len(index) == 3000
    hits = index.search(vectors[5], 3)
    assert hits[0].face_id == 6 and hits[0].distance < 1e-3  # ids start at 1
    again = vi.VectorIndex.open(store)
    assert not again.rebuilt and again.kind == "ivf"


def add_images(store, names, vectors):
    images = [{"path": f"/x/{n}.jpg", "size": 1, "mtime": 0.0, "sha256": "", "width": 1, "height": 1,
               "status": "ok", "error": None} for n in names]
    faces = [[FaceRecord(0, 0, (0, 0, 1, 1), 1.0, None, v)] for v in vectors]
    store.write_batch(images, faces, "test", store.start_run("test", "/x", "test"))


def image_ids(store, names):
    rows = store.db.execute(f"select id from images where path in ({','.join('?' * len(names))})",
                            [f"/x/{n}.jpg" for n in names]).fetchall()
    return [r[0] for r in rows]


def same_answers(a, b, queries, k=10):
    for q in queries:
        ha, hb = a.search(q, k), b.search(q, k)
        assert [h.face_id for h in ha] == [h.face_id for h in hb]
        assert np.allclose([h.distance for h in ha], [h.distance for h in hb], atol=1e-5)


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_faiss_follows_additions_and_removals_without_rebuilding(tmp_path, distance):
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, distance, "0" * 64)
    add_images(store, range(500), unit(500, 3) * (2.0 if distance == "cosine" else 1.0))
    first = vi.VectorIndex.open(store)
    assert first.how == "rebuilt" and len(first) == 500
    add_images(store, range(500, 800), unit(300, 4))                   # new faces
    store.remove_images(image_ids(store, list(range(0, 100)) + [799]))  # gone, the newest face among them
    add_images(store, range(800, 810), unit(10, 5))                    # ids after a removal of the largest
    add_images(store, range(200, 220), unit(20, 6))                    # re-indexed images: replaced faces
    grown = vi.VectorIndex.open(store)
    assert grown.how == "updated" and len(grown) == store.face_count() == 709
    same_answers(grown, vi.VectorIndex.open(store, force_rebuild=True, save=False), unit(30, 7))
    assert vi.VectorIndex.open(store).how == "loaded"  # the update was saved


def test_ivf_is_retrained_after_growing_several_fold(tmp_path, monkeypatch):
    monkeypatch.setattr(kinds, "APPROXIMATE_FROM", 1000)
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, "l2", "0" * 64)
    add_images(store, range(2000), unit(2000, 8))
    assert vi.VectorIndex.open(store).trained_on == 2000
    add_images(store, range(2000, 4000), unit(2000, 9))
    store.remove_images(image_ids(store, list(range(0, 4000, 7))))
    grown = vi.VectorIndex.open(store)
    assert (grown.how, grown.kind, grown.trained_on, len(grown)) == ("updated", "ivf", 2000, store.face_count())
    ids, vectors = store.embeddings()
    exact = vi.build_faiss(vectors, ids, "flat")
    queries = unit(50, 13)
    truth = exact.search(queries, 10)[1]
    found = [[h.face_id for h in grown.search(q, 10)] for q in queries]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.95
    add_images(store, range(4000, 9000), unit(5000, 10))  # past REBUILD_GROWTH x the training set
    retrained = vi.VectorIndex.open(store)
    assert (retrained.how, retrained.trained_on, len(retrained)) == ("rebuilt", store.face_count(), store.face_count())


def test_a_file_ahead_of_the_database_is_rebuilt(tmp_path):
    """A database restored from an older backup: the FAISS file reflects later changes."""
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, "l2", "0" * 64)
    add_images(store, range(50), unit(50, 11))
    store.db.execute("pragma wal_checkpoint(truncate)")
    backup = (tmp_path / "faces.db").read_bytes()
    store.close()
    store = FaceStore(tmp_path)
    add_images(store, range(50, 60), unit(10, 12))
    vi.VectorIndex.open(store)
    store.close()
    (tmp_path / "faces.db").write_bytes(backup)
    for extra in tmp_path.glob("faces.db-*"):
        extra.unlink()
    reopened = vi.VectorIndex.open(FaceStore(tmp_path))
    assert reopened.how == "rebuilt" and len(reopened) == 50


def test_large_collections_get_compressed_lists_that_still_follow_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(kinds, "APPROXIMATE_FROM", 500)
    monkeypatch.setattr(kinds, "COMPRESS_FROM", 1500)
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, "l2", "0" * 64)
    add_images(store, range(3000), unit(3000, 14))
    first = vi.VectorIndex.open(store)
    assert first.kind == "ivf-sq8" and first.how == "rebuilt"
    add_images(store, range(3000, 3500), unit(500, 15))
    store.remove_images(image_ids(store, list(range(0, 3500, 5))))
    grown = vi.VectorIndex.open(store)
    assert (grown.how, grown.kind, len(grown)) == ("updated", "ivf-sq8", store.face_count())
    ids, vectors = store.embeddings()
    queries = unit(50, 16)
    truth = vi.build_faiss(vectors, ids, "flat").search(queries, 10)[1]
    found = [[h.face_id for h in grown.search(q, 10)] for q in queries]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.9
    assert (tmp_path / "faces.faiss").stat().st_size < 3000 * 40  # about 24 bytes a face, not 72


def test_ivf_lists_built_in_shards_merge_on_disk_and_search_mapped(tmp_path):
    """Shards of one trained index, merged into lists on disk: the same answers as one index in
    memory holding every vector, also after the folder is moved."""
    import shutil

    import faiss

    from fecsearch.vectors.ondisk import merge_shards, open_mapped, trained_ivf, write_shard

    rng = np.random.default_rng(0)
    x = rng.standard_normal((30_000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + len(x), dtype=np.int64)
    trained = trained_ivf(x[:5000], "ivf-sq8", 64)
    shards = [write_shard(trained, x[i:i + 10_000], ids[i:i + 10_000], tmp_path / f"s{i}.faiss")
              for i in range(0, len(x), 10_000)]
    merge_shards(trained, shards, tmp_path / "merged")
    whole = faiss.clone_index(trained)
    whole.add_with_ids(x, ids)
    shutil.move(tmp_path / "merged", tmp_path / "moved")
    mapped = open_mapped(tmp_path / "moved" / "index.faiss", nprobe=8)
    faiss.extract_index_ivf(whole).nprobe = 8
    queries = x[:50] + 0.01
    assert mapped.ntotal == len(x)
    assert np.array_equal(mapped.search(queries, 10)[1], whole.search(queries, 10)[1])
    assert (tmp_path / "moved" / "lists.ivfdata").stat().st_size >= len(x) * (16 + 8)


def recall_at_10(index, store, queries):
    ids, vectors = store.embeddings()
    truth = vi.build_faiss(vectors, ids, "flat").search(queries, 10)[1]
    found = [[h.face_id for h in index.search(q, 10)] for q in queries]
    return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_lists_on_disk_follow_changes_beside_them_then_are_built_again(tmp_path, monkeypatch, distance):
    """An index whose lists live on disk: built from the database in shards, never edited; what
    changes after is searched beside them (removed faces never come back, added ones are found)
    until the changes pass DELTA_LIMIT, when the lists are built again with the same training."""
    import fecsearch.vectors.ondisk as ondisk

    monkeypatch.setattr(ondisk, "SHARD_ROWS", 700)  # several shards, merged
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, distance, "0" * 64)
    store.set_meta("index_type", "ivf-sq8-disk")
    add_images(store, range(3000), unit(3000, 20))
    first = vi.VectorIndex.open(store)
    folder = first.index.folder
    assert folder.parent == tmp_path and folder.name.startswith(f"faces.ivf-{store.generation}-")
    assert (first.kind, first.how, len(first)) == ("ivf-sq8-disk", "rebuilt", 3000)
    assert (folder / "lists.ivfdata").stat().st_size >= 3000 * 24 and not (tmp_path / "faces.faiss").exists()
    assert recall_at_10(first, store, unit(40, 21)) >= 0.95

    new_vectors = unit(400, 22)
    add_images(store, range(3000, 3400), new_vectors)
    gone = image_ids(store, list(range(0, 3400, 9)))
    gone_faces = {r[0] for r in store.db.execute(
        f"select id from faces where image_id in ({','.join('?' * len(gone))})", gone)}
    store.remove_images(gone)
    grown = vi.VectorIndex.open(store)
    assert (grown.kind, grown.how, len(grown)) == ("ivf-sq8-disk", "updated", store.face_count())
    assert folder.exists() and grown.index.folder == folder  # the lists were not touched
    assert recall_at_10(grown, store, unit(40, 23)) >= 0.95
    for i in (1, 50, 399):  # a face added since is its own nearest, unless it was removed again
        hit = grown.search(new_vectors[i], 1)[0]
        assert hit.distance < 1e-3 or (3000 + i) % 9 == 0
    returned = {h.face_id for q in unit(200, 24) for h in grown.search(q, 10)}
    assert not returned & gone_faces
    exclude = [h.face_id for h in grown.search(new_vectors[1], 3)]
    assert not set(exclude) & {h.face_id for h in grown.search(new_vectors[1], 10, exclude=exclude)}

    monkeypatch.setattr(vi, "DELTA_LIMIT", 100)
    reader = vi.VectorIndex.open(store, save=False)  # a server never writes: it keeps the changes beside
    assert reader.how == "updated" and reader.index.folder == folder
    rebuilt = vi.VectorIndex.open(store)
    assert (rebuilt.how, rebuilt.trained_on, len(rebuilt)) == ("rebuilt", 3000, store.face_count())
    assert not folder.exists() and rebuilt.index.folder.name.startswith(f"faces.ivf-{store.generation}-")
    assert rebuilt.index.changes == 0 and recall_at_10(rebuilt, store, unit(40, 25)) >= 0.95
    assert vi.VectorIndex.open(store).how == "loaded"
    again = vi.VectorIndex.open(store, force_rebuild=True)  # --rebuild-index, nothing changed
    assert again.index.folder != rebuilt.index.folder and len(list(tmp_path.glob("faces.ivf-*"))) == 1
    assert vi.VectorIndex.open(store).how == "loaded"

    store.set_meta("index_type", "auto")  # asked back to the default: a flat index, lists removed
    flat = vi.VectorIndex.open(store)
    assert (flat.kind, flat.how) == ("flat", "rebuilt") and not list(tmp_path.glob("faces.ivf-*"))


def test_lists_on_disk_are_trained_again_after_growing_several_fold(tmp_path):
    store = FaceStore(tmp_path)
    store.bind_model("test", 16, "l2", "0" * 64)
    store.set_meta("index_type", "ivf-sq8-disk")
    add_images(store, range(1200), unit(1200, 26))
    assert vi.VectorIndex.open(store).trained_on == 1200
    add_images(store, range(1200, 6000), unit(4800, 27))
    retrained = vi.VectorIndex.open(store)
    assert (retrained.how, retrained.trained_on, len(retrained)) == ("rebuilt", 6000, 6000)
    assert len(list(tmp_path.glob("faces.ivf-*"))) == 1
