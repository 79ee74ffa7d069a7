"""The engine end to end on real photos: index, query, incremental runs, bad files, recovery."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, copy_crops, run_cli

from fecsearch.models.config import DEFAULT_MODEL


def faces_table(index: Path) -> list[tuple]:
    """(path, face index, rounded box) of every face, in order."""
    return [row[:3] for row in _faces(index)]


def _faces(index: Path) -> list[tuple]:
    with sqlite3.connect(index / "faces.db") as db:
        rows = db.execute("select images.path, face_index, x1, y1, x2, y2, embedding from faces "
                          "join images on images.id = faces.image_id order by images.path, face_index").fetchall()
    return [(p, i, tuple(round(v, 2) for v in (x1, y1, x2, y2)), np.frombuffer(e, np.float32))
            for p, i, x1, y1, x2, y2, e in rows]


def assert_same_faces(index: Path, other: Path) -> None:
    """Two indexes hold the same faces: same images, boxes and embeddings. Embeddings are compared to
    1e-5, not bit for bit: a face embedded in a batch of another size differs in the last bits."""
    a, b = _faces(index), _faces(other)
    assert [row[:3] for row in a] == [row[:3] for row in b]
    for row, other_row in zip(a, b):
        np.testing.assert_allclose(row[3], other_row[3], atol=1e-5, err_msg=row[0])


def test_query_finds_the_same_face_first(photos_index, photos, tmp_path):
    result = run_cli("query", photos / "couple.jpg", "--index", photos_index, "-k", "5", "--json",
                     "--sheet", tmp_path / "sheet.jpg")
    data = json.loads(result.output)
    assert data["query"]["faces_found"] == 2
    first = data["results"][0]
    assert first["path"] == str(photos / "couple.jpg")
    assert first["distance"] < 1e-3
    assert first["box"] == pytest.approx(data["query"]["box"], abs=0.5)
    distances = [r["distance"] for r in data["results"]]
    assert distances == sorted(distances) and len(distances) == 5
    assert [r["rank"] for r in data["results"]] == [1, 2, 3, 4, 5]
    assert (tmp_path / "sheet.jpg").stat().st_size > 1000


def test_every_face_of_a_group_photo_finds_itself(photos_index, photos):
    faces = json.loads(run_cli("info", "--index", photos_index, "--json").output)["faces"]
    assert faces >= 64  # every photo has at least one face, some several
    for n in range(6):
        data = json.loads(run_cli("query", photos / "selfie-many-people.jpg", "--face", n, "--index",
                                  photos_index, "-k", "1", "--json").output)
        hit = data["results"][0]
        assert hit["path"].endswith("selfie-many-people.jpg") and hit["distance"] < 1e-3
        assert hit["box"] == pytest.approx(data["query"]["box"], abs=0.5)


def test_query_by_face_id_and_text_output(photos_index):
    data = json.loads(run_cli("query", "--id", 3, "--index", photos_index, "-k", 3, "--json").output)
    assert data["results"][0]["face_id"] == 3 and data["results"][0]["distance"] < 1e-6
    text = run_cli("query", "--id", 3, "--index", photos_index, "-k", 3).output
    assert "rank" in text and len(text.strip().splitlines()) == 5
    missing = run_cli("query", "--id", 999999, "--index", photos_index, ok=False)
    assert missing.exit_code != 0 and "face 999999 is not in" in missing.output


def test_second_run_embeds_nothing(photos_index, photos):
    data = json.loads(run_cli("index", photos, "--index", photos_index, "--json").output)
    assert data["images_indexed"] == 0 and data["faces_added"] == 0 and data["images_unchanged"] == 64


def test_incremental_add_change_delete(few_photos, tmp_path, photos):
    index = tmp_path / "idx"
    first = json.loads(run_cli("index", few_photos, "--index", index, "--json").output)
    assert first["images_indexed"] == 3 and first["faces_added"] == 4  # couple.jpg has two
    shutil.copy(photos / "img3.jpg", few_photos / "new.jpg")
    (few_photos / "img1.jpg").unlink()
    shutil.copy(photos / "img5.jpg", few_photos / "img2.jpg")  # same name, other picture
    os.utime(few_photos / "couple.jpg", (1, 1))  # touched, not changed
    second = json.loads(run_cli("index", few_photos, "--index", index, "--json").output)
    assert (second["images_indexed"], second["images_removed"], second["images_unchanged"]) == (2, 1, 1)
    assert second["faces_total"] == 4
    fresh = tmp_path / "fresh"
    run_cli("index", few_photos, "--index", fresh, "--quiet")
    assert_same_faces(index, fresh)


def test_bad_files_are_reported_and_the_rest_indexed(few_photos, tmp_path, monkeypatch, photos):
    from test_images import huge_png_header

    (few_photos / "zero.jpg").write_bytes(b"")
    data = (photos / "img4.jpg").read_bytes()
    (few_photos / "truncated.jpg").write_bytes(data[: len(data) // 4])
    (few_photos / "text.jpg").write_text("not a picture")
    (few_photos / "huge.png").write_bytes(huge_png_header(30000, 30000))
    locked = few_photos / "locked.jpg"
    shutil.copy(photos / "img6.jpg", locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the read fail as it would for a user
        import fecsearch.faces.images as images

        real = Path.read_bytes
        monkeypatch.setattr(images.Path, "read_bytes", lambda self: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied")) if self.name == "locked.jpg" else real(self))
    os.symlink(few_photos, few_photos / "loop")
    result = run_cli("index", few_photos, "--index", tmp_path / "idx")
    out = result.output
    expected = {"zero.jpg": "file is empty", "truncated.jpg": "cannot be decoded", "text.jpg": "not a recognised image",
                "huge.png": "decompression bomb", "locked.jpg": "permission denied", "loop": "loop"}
    for name, reason in expected.items():
        lines = [line for line in out.splitlines() if name in line and reason in line]
        assert lines, f"no message naming {name} with '{reason}' in:\n{out}"
    assert "3 indexed" in out and "6 skipped" in out and "4 faces added" in out


def test_broken_faiss_file_is_rebuilt_from_sqlite(few_photos, tmp_path):
    index = tmp_path / "idx"
    run_cli("index", few_photos, "--index", index, "--quiet")
    before = json.loads(run_cli("query", few_photos / "couple.jpg", "--index", index, "--json").output)["results"]
    (index / "faces.faiss").write_bytes(b"garbage" * 10)
    info = json.loads(run_cli("info", "--index", index, "--json").output)
    assert info["faiss_rebuilt"] and info["faces"] == 4
    (index / "faces.faiss").unlink()
    after = json.loads(run_cli("query", few_photos / "couple.jpg", "--index", index, "--json").output)["results"]
    assert [r["face_id"] for r in after] == [r["face_id"] for r in before]
    assert json.loads(run_cli("info", "--index", index, "--json").output)["faiss_rebuilt"] is False


def test_index_refuses_another_model(few_photos, tmp_path):
    index = tmp_path / "idx"
    run_cli("index", few_photos, "--index", index, "--quiet")
    result = run_cli("index", few_photos, "--index", index, "--model", "affnet-lite-cl-p", ok=False)
    assert result.exit_code != 0 and f"was built with model '{DEFAULT_MODEL}'" in result.output


@pytest.mark.parametrize("former", ["fecnet-lite-16d", "fecnet-lite-x2-pair-32d", "fecnet-lite-x2-pair-faceres-48d"])
def test_an_index_of_a_former_default_keeps_its_model(former, few_photos, tmp_path):
    """An index built with a former default (fecnet-lite-16d until the pair, the pair until the three
    networks, their first training until the -v2 weights): runs without --model add to it with its own model, queries search it with that model,
    and info says which it holds."""
    index = tmp_path / "idx"
    run_cli("index", few_photos, "--index", index, "--model", former, "--quiet")
    (few_photos / "again.jpg").write_bytes((few_photos / "couple.jpg").read_bytes())
    added = json.loads(run_cli("index", few_photos, "--index", index, "--json").output)
    assert added["faces_added"] == 2
    info = json.loads(run_cli("info", "--index", index, "--json").output)
    assert info["model"] == former and info["faces"] == 6
    results = json.loads(run_cli("query", few_photos / "couple.jpg", "--index", index, "--json").output)["results"]
    assert results[0]["distance"] < 1e-3 and len(results) == 6


def test_embed_writes_npz(few_photos, tmp_path):
    out = tmp_path / "e.npz"
    run_cli("embed", few_photos, "--out", out)
    data = np.load(out)
    # the default model: three 16-d networks side by side
    assert data["embeddings"].shape == (4, 48) and data["embeddings"].dtype == np.float32
    assert list(data["paths"]).count(str(few_photos / "couple.jpg")) == 2
    assert data["boxes"].shape == (4, 4)
    assert np.allclose(np.linalg.norm(data["embeddings"], axis=1), 1, atol=1e-4)
    # --precision int8 gives an int8 index's vectors: near the float ones, not equal to them
    run_cli("embed", few_photos, "--out", tmp_path / "int8.npz", "--precision", "int8")
    int8 = np.load(tmp_path / "int8.npz")
    assert str(int8["precision"]) == "int8" and list(int8["paths"]) == list(data["paths"])
    assert 1e-4 < np.abs(int8["embeddings"] - data["embeddings"]).max() and \
        np.linalg.norm(int8["embeddings"] - data["embeddings"], axis=1).max() < 0.1


def test_missing_index_is_one_sentence(tmp_path):
    result = run_cli("info", "--index", tmp_path / "nothing", ok=False)
    assert result.exit_code != 0 and "no fecsearch index here" in result.output


def index_process(folder, index) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fecsearch.cli", "index", str(folder), "--index", str(index),
                             "--cropped", "--chunk-size", "100", "--quiet"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def committed_faces(index: Path) -> int:
    try:
        with sqlite3.connect(index / "faces.db", timeout=30) as db:
            return db.execute("select count(*) from faces").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_index(tmp_path, ferplus_valid):
    folder = copy_crops(ferplus_valid, tmp_path / "faces", 900, link=True)
    reference = tmp_path / "reference"
    run_cli("index", folder, "--index", reference, "--cropped", "--chunk-size", "100", "--quiet")
    index = tmp_path / "killed"
    # Kill with SIGKILL at several points: during start-up, then each run after it has committed
    # some work of its own (100 and then 200 more faces than the runs before it left).
    left_behind = []
    for more in (None, 100, 200):
        proc = index_process(folder, index)
        target = None if more is None else committed_faces(index) + more
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if target is None or committed_faces(index) >= target:
                break
            time.sleep(0.02)
        if more is None:
            time.sleep(0.5)  # still importing: a run of 900 crops takes about 2 s in all
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_behind.append(committed_faces(index))
    # each kill left a partial index, and each later kill came after its run committed work
    assert left_behind[-1] < 900 and left_behind[1] >= 100 and left_behind[2] >= left_behind[1] + 200
    run_cli("index", folder, "--index", index, "--cropped", "--quiet")
    assert_same_faces(index, reference)
    assert len(faces_table(index)) == 900
    with sqlite3.connect(index / "faces.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        statuses = [s for (s,) in db.execute("select status from runs order by id")]
    assert statuses.count("interrupted") >= 2 and statuses[-1] == "done"


def test_one_query_answers_several_images_and_folders(photos_index, photos, tmp_path):
    """Scripts pay the start-up once: each image is answered as it would be alone; a bad one is
    named and skipped."""
    folder = tmp_path / "queries"
    folder.mkdir()
    shutil.copy(photos / "img6.jpg", folder / "a.jpg")
    (folder / "broken.jpg").write_text("not a picture")
    result = run_cli("query", photos / "couple.jpg", folder, "--index", photos_index, "-k", 3, "--json",
                     "--sheet", tmp_path / "sheet.jpg")
    answers = json.loads(result.stdout)
    assert [Path(a["query"]["source"]).name for a in answers] == ["couple.jpg", "a.jpg"]
    for a in answers:
        alone = json.loads(run_cli("query", a["query"]["source"], "--index", photos_index, "-k", 3, "--json").stdout)
        assert a["results"] == alone["results"]
    assert "broken.jpg" in result.stderr and "2 of 3 images answered; 1 skipped" in result.stderr
    assert (tmp_path / "sheet-1.jpg").exists() and (tmp_path / "sheet-2.jpg").exists()


def test_index_keeps_lists_on_disk_when_asked_and_answers_like_an_exact_index(tmp_path, ferplus_valid):
    """`index --index-type ivf-sq8-disk`: lists built on disk, kept by later runs (which add beside
    them), and queries find what an exact index of the same faces finds."""
    folder = copy_crops(ferplus_valid, tmp_path / "faces", 1500, link=True)
    later = sorted(folder.glob("*.png"))[1200:]
    for path in later:
        path.rename(tmp_path / path.name)
    disk, exact = tmp_path / "disk", tmp_path / "exact"
    first = json.loads(run_cli("index", folder, "--index", disk, "--cropped", "--index-type", "ivf-sq8-disk",
                               "--quiet", "--json").stdout)
    assert (first["index_type"], first["index_update"], first["faces_total"]) == ("ivf-sq8-disk", "rebuilt", 1200)
    for path in later:
        (tmp_path / path.name).rename(path)
    second = json.loads(run_cli("index", folder, "--index", disk, "--cropped", "--quiet", "--json").stdout)
    assert (second["index_type"], second["index_update"], second["faces_total"]) == ("ivf-sq8-disk", "updated", 1500)
    assert len(list(disk.glob("faces.ivf-*/lists.ivfdata"))) == 1 and not (disk / "faces.faiss").exists()
    run_cli("index", folder, "--index", exact, "--cropped", "--quiet")
    info = json.loads(run_cli("info", "--index", disk, "--json").stdout)
    assert info["index_type"] == "ivf-sq8-disk" and info["searchable_faces"] == 1500
    overlap = []
    for face_id in (1, 700, 1300, 1499):  # faces in the lists and faces added beside them
        a = json.loads(run_cli("query", "--id", face_id, "--index", disk, "-k", 10, "--json").stdout)
        b = json.loads(run_cli("query", "--id", face_id, "--index", exact, "-k", 10, "--json").stdout)
        paths = [[r["path"] for r in answer["results"]] for answer in (a, b)]
        overlap.append(len(set(paths[0]) & set(paths[1])) / 10)
    assert np.mean(overlap) >= 0.9
    # in a process of its own: nothing FAISS prints when it maps the lists reaches --json's stdout
    alone = subprocess.run([sys.executable, "-m", "fecsearch", "query", "--id", "3", "--index", str(disk), "--json"],
                           capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(alone.stdout)["results"]
