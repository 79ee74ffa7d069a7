"""The Python API for programs: open an index, search by image, by face id or by vector, iterate faces."""
import sqlite3

import numpy as np
import pytest
from conftest import copy_crops, run_cli

import fecsearch
from fecsearch.models.config import DEFAULT_MODEL, get_config
from fecsearch.store.database import SCHEMA_VERSION, FaceRecord, FaceStore, IndexUnusable


@pytest.fixture(scope="module")
def crops_index(tmp_path_factory, ferplus_valid):
    root = tmp_path_factory.mktemp("api")
    crops = copy_crops(ferplus_valid, root / "crops", 80)
    run_cli("index", crops, "--cropped", "--index", root / "idx", "--quiet")
    return crops, root / "idx"


def test_search_by_image_face_and_vector_agree(crops_index):
    crops, index_dir = crops_index
    index = fecsearch.open_index(index_dir, device="cpu")
    faces = list(index.faces())
    assert len(faces) == 80 and [f.face_id for f in faces] == sorted(f.face_id for f in faces)
    first = faces[0]
    assert first.embedding.shape == (index.model.config.embedding_size,)
    by_vector = index.search_vector(first.embedding, k=5)
    by_id = index.search_face(first.face_id, k=5)
    by_image = index.search_image(first.path, k=5, cropped=True)
    assert by_vector[0].face_id == first.face_id and by_vector[0].distance == pytest.approx(0, abs=1e-5)
    assert [r.face_id for r in by_id] == [r.face_id for r in by_vector]
    # the image is embedded again: the same face, the same neighbours
    assert [r.face_id for r in by_image] == [r.face_id for r in by_vector]
    assert [r.rank for r in by_vector] == [1, 2, 3, 4, 5]
    assert all(a.distance <= b.distance for a, b in zip(by_vector, by_vector[1:]))
    info = index.info()
    assert info["faces"] == 80 and info["searchable_faces"] == 80 and info["model"] == index.model_name


def test_search_vector_of_another_size_is_refused(crops_index):
    index = fecsearch.open_index(crops_index[1], device="cpu")
    size = get_config(DEFAULT_MODEL).embedding_size  # the index was built with the default model
    with pytest.raises(ValueError, match=f"{size}-d vectors"):
        index.search_vector(np.ones(8, np.float32))


# What indexes written by older fecsearch versions lack: schema 1 had no face generations and no
# log of removed faces; before schema 1 there were no labels, image sizes or version either.
OLDER = {
    1: "drop table removed_faces; drop index idx_faces_generation; alter table faces drop column generation; "
       "update meta set value = '1' where key = 'schema_version';",
    0: "drop table removed_faces; drop index idx_faces_generation; alter table faces drop column generation; "
       "drop table labels; "
       "alter table images drop column width; alter table images drop column height; "
       "delete from meta where key = 'schema_version';",
}


@pytest.mark.parametrize("version", [0, 1])
def test_an_older_index_is_migrated_by_its_next_write(tmp_path, version):
    from fecsearch.vectors.faiss_index import VectorIndex

    store = FaceStore(tmp_path)
    store.bind_model("m", 4, "l2", "sum")
    run = store.start_run("index", str(tmp_path), "m")
    image = {"path": "/a.jpg", "size": 1, "mtime": 1.0, "sha256": "x", "width": 10, "height": 10, "status": "ok",
             "error": None}
    store.write_batch([image], [[FaceRecord(0, 0, (1, 2, 3, 4), 0.99, None, np.ones(4, np.float32))]], "m", run)
    store.close()
    db = sqlite3.connect(tmp_path / "faces.db")
    db.executescript(OLDER[version])
    db.commit()
    db.close()
    with pytest.raises(IndexUnusable, match=f"older fecsearch .schema {version}.*fecsearch index"):
        FaceStore(tmp_path, readonly=True)
    store = FaceStore(tmp_path)  # a writing run migrates
    assert {"width", "height"} <= {c.name for c in store.db["images"].columns}
    assert "generation" in {c.name for c in store.db["faces"].columns}
    # faces from before the migration are searchable, and later changes reach FAISS incrementally
    assert len(VectorIndex.open(store)) == 1
    store.write_batch([dict(image, path="/b.jpg")], [[FaceRecord(0, 0, (1, 2, 3, 4), 0.9, None,
                                                                 np.zeros(4, np.float32))]], "m", run)
    store.remove_images([1])
    updated = VectorIndex.open(store)
    assert updated.how == "updated" and [h.face_id for h in updated.search(np.zeros(4), 5)] == [2]
    store.close()
    store = FaceStore(tmp_path, readonly=True)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.labels() == {} and store.counts()["faces"] == 1


def test_a_newer_index_is_refused_and_left_as_it_is(tmp_path):
    FaceStore(tmp_path).set_meta("schema_version", SCHEMA_VERSION + 1)
    before = (tmp_path / "faces.db").read_bytes()
    for readonly in (True, False):
        with pytest.raises(IndexUnusable, match="newer fecsearch"):
            FaceStore(tmp_path, readonly=readonly)
    assert (tmp_path / "faces.db").read_bytes() == before


def test_an_indexed_photo_is_answered_by_its_stored_faces(photos_index, photos, tmp_path):
    """Querying with a file the index holds unchanged reads its faces from the index (no detection);
    a copy of it, which the index does not hold, is detected again and finds the same face first."""
    index = fecsearch.open_index(photos_index, device="cpu")
    name = "selfie-many-people.jpg"
    stored = index.query_image(photos / name)
    assert stored.face_id is not None and stored.faces_found > 1
    assert index.search(stored.vector, 1)[0].face_id == stored.face_id
    assert index.search(stored.vector, 1)[0].distance == pytest.approx(0, abs=1e-6)
    assert index._model is None  # answered without loading the model
    for number in range(stored.faces_found):
        assert index.query_image(photos / name, face=number).face_number == number
    copy = tmp_path / name
    copy.write_bytes((photos / name).read_bytes())
    detected = index.query_image(copy)
    # the largest face, found without looking for the five smaller ones: same face, uncounted
    assert detected.face_id is None and detected.faces_found is None and detected.face_number is None
    assert detected.face.box == pytest.approx(stored.face.box, abs=1e-3)
    np.testing.assert_allclose(detected.vector, stored.vector, atol=1e-4)
    # asked for by number, every face is detected and counted
    numbered = index.query_image(copy, face=stored.face_number)
    assert numbered.face_number == stored.face_number and numbered.faces_found == stored.faces_found
    np.testing.assert_allclose(numbered.vector, stored.vector, atol=1e-4)
    with pytest.raises(LookupError, match="has .* face"):
        index.query_image(photos / name, face=stored.faces_found)


def test_a_file_changed_since_it_was_indexed_is_detected_again(few_photos, tmp_path):
    run_cli("index", few_photos, "--index", tmp_path / "idx", "--quiet")
    index = fecsearch.open_index(tmp_path / "idx", device="cpu")
    photo = few_photos / "couple.jpg"
    assert index.query_image(photo).face_id is not None
    from PIL import Image
    Image.open(photo).transpose(Image.FLIP_LEFT_RIGHT).save(photo)  # same path, new content
    again = index.query_image(photo)
    assert again.face_id is None
    assert index.query_image(photo, face=0).faces_found == 2
