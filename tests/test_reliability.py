"""Faults found by trying to break fecsearch: kills while an index is created, damaged and foreign
databases, FAISS files from another model, two runs at once."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, copy_crops, run_cli
from PIL import Image

from fecsearch.models.config import DEFAULT_MODEL

HELPER = Path(__file__).parent / "helpers" / "store_first_run.py"


def need_strace() -> str:
    path = shutil.which("strace")
    if path is None:
        message = "strace is not installed (apt-get install strace; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def database_content(index: Path) -> dict:
    """What an index holds, without what differs between runs (run ids, times, the generation's value)."""
    db = sqlite3.connect(index / "faces.db")
    schema = sorted(r[0] for r in db.execute("select sql from sqlite_master where sql is not null"))
    meta = dict(db.execute("select key, value from meta where key != 'generation'"))
    generation = db.execute("select value from meta where key = 'generation'").fetchall()
    images = db.execute("select path, size, sha256, status, faces from images order by path").fetchall()
    faces = db.execute("select images.path, face_index, x1, y1, x2, y2, embedding from faces "
                       "join images on images.id = faces.image_id order by images.path, face_index").fetchall()
    db.close()
    return {"schema": schema, "meta": meta, "has_generation": len(generation) == 1, "images": images, "faces": faces}


def run_helper(index: Path, strace: str | None = None, kill_at: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(HELPER), str(index)]
    if kill_at is not None:
        command = [strace, "-f", "-qq", "-o", "/dev/null", "-P", str(index / "faces.db"), "-P",
                   str(index / "faces.db-wal"), "-e", "trace=pwrite64",
                   "-e", f"inject=pwrite64:signal=KILL:when={kill_at}"] + command
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_kill_at_any_write_of_a_first_run_leaves_an_index_the_next_run_completes(tmp_path):
    """Killed at each of the first run's database writes, then run again: every time the index
    ends identical to one built without interruption (tables, indexes, model settings, faces)."""
    strace = need_strace()
    clean = tmp_path / "clean"
    assert run_helper(clean).returncode == 0
    expected = database_content(clean)
    assert expected["has_generation"] and len(expected["faces"]) == 6
    assert any("idx_images_path" in sql for sql in expected["schema"])

    def kill_then_rerun(k: int) -> str | None:
        """None when the run made fewer than k writes (nothing to kill), else the rerun's verdict."""
        index = tmp_path / f"kill{k}"
        if run_helper(index, strace, kill_at=k).returncode == 0:
            return None
        rerun = run_helper(index)
        if rerun.returncode != 0:
            return f"killed at write {k}, the next run failed:\n{rerun.stderr}"
        content = database_content(index)
        shutil.rmtree(index)
        return "same" if content == expected else f"killed at write {k}: the index differs from a clean one"

    # Each write point is its own pair of processes in its own folder, so two run at once (the
    # suite's slowest test otherwise); the points are still judged in order, up to the first k
    # that the run never reached.
    writes, reached_end = 0, False
    with ThreadPoolExecutor(2) as pool:
        for first in range(1, 200, 2):
            for k, verdict in zip((first, first + 1), pool.map(kill_then_rerun, (first, first + 1))):
                if verdict is None:  # the run made fewer than k writes: every write point was tried
                    reached_end = True
                    break
                assert verdict == "same", verdict
                writes = k
            if reached_end:
                break
    assert reached_end, "the run was still being killed after 199 writes"
    assert writes >= 20, f"only {writes} writes were interrupted: the kill did not reach the database"
    print(f"killed at each of {writes} database writes; every rerun gave the clean index")


@pytest.fixture()
def built_index(few_photos, tmp_path) -> Path:
    index = tmp_path / "idx"
    run_cli("index", few_photos, "--index", index, "--quiet")
    return index


def fails_with_one_sentence(*args, expect: str):
    result = run_cli(*args, ok=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and expect in result.output, result.output
    return result


@pytest.mark.parametrize("damage", ["garbage header", "folder", "malformed"])
def test_a_damaged_database_gives_one_sentence_and_exit_code_2(built_index, few_photos, damage):
    db = built_index / "faces.db"
    for extra in built_index.glob("faces.db-*"):
        extra.unlink()
    if damage == "garbage header":
        db.write_bytes(b"this is not an SQLite file" + db.read_bytes()[26:])
    elif damage == "folder":
        db.unlink()
        db.mkdir()
    else:  # every page after the first overwritten: the schema says tables are where garbage is
        data = bytearray(db.read_bytes())
        data[4096:] = b"\xde\xad\xbe\xef" * ((len(data) - 4096) // 4)
        db.write_bytes(bytes(data))
    expect = "is a folder" if damage == "folder" else "damaged"
    fails_with_one_sentence("info", "--index", built_index, expect=expect)
    fails_with_one_sentence("query", few_photos / "couple.jpg", "--index", built_index, expect=expect)
    fails_with_one_sentence("index", few_photos, "--index", built_index, "--quiet", expect=expect)
    fails_with_one_sentence("serve", "--index", built_index, "--port", "0", expect=expect)


def test_an_undecodable_embedding_is_found_by_check_and_repaired_by_index(built_index, few_photos):
    db = sqlite3.connect(built_index / "faces.db")
    face_id, path = db.execute("select faces.id, images.path from faces join images on images.id = image_id "
                               "order by faces.id limit 1").fetchone()
    with db:
        db.execute("update faces set embedding = ? where id = ?", [b"1234567", face_id])
    db.close()
    (built_index / "faces.faiss").unlink()  # so that the vectors are read from the database again
    fails_with_one_sentence("query", few_photos / "couple.jpg", "--index", built_index, expect=f"face {face_id}")
    result = fails_with_one_sentence("info", "--check", "--index", built_index, expect="invalid embeddings")
    assert str(face_id) in result.output
    repaired = run_cli("index", few_photos, "--index", built_index, "--json")
    assert json.loads(repaired.stdout)["images_indexed"] == 1  # only the damaged face's image
    assert "embedding them again" in repaired.output
    assert "check" in json.loads(run_cli("info", "--check", "--index", built_index, "--json").output)
    run_cli("query", few_photos / "couple.jpg", "--index", built_index, "--json")


def test_info_refuses_a_foreign_database_and_leaves_it_alone(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    db = sqlite3.connect(folder / "faces.db")
    with db:
        db.execute("create table recipes (name text)")
        db.execute("insert into recipes values ('soup')")
    db.close()
    before = (folder / "faces.db").read_bytes()
    for command in (["info"], ["index", tmp_path, "--quiet"]):
        fails_with_one_sentence(*command, "--index", folder, expect="not a fecsearch index")
    assert (folder / "faces.db").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["faces.db", "faces.db.lock"]


def test_info_and_query_open_the_database_read_only(built_index, few_photos):
    db = built_index / "faces.db"
    run_cli("index", few_photos, "--index", built_index, "--quiet")  # checkpoints the WAL
    os.chmod(db, 0o444)
    try:
        before = db.read_bytes()
        run_cli("info", "--index", built_index)
        run_cli("query", few_photos / "couple.jpg", "--index", built_index, "--json")
        assert db.read_bytes() == before
    finally:
        os.chmod(db, 0o644)


def test_a_faiss_file_from_another_model_is_rebuilt(few_photos, tmp_path):
    """Same generation and face count, vectors of another model: the sidecar's model decides."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run_cli("index", few_photos, "--index", ours, "--quiet")
    run_cli("index", few_photos, "--index", theirs, "--quiet", "--model", "affnet-lite-cl-f")
    info = json.loads((theirs / "faces.faiss.json").read_text())
    assert info["faces"] == json.loads((ours / "faces.faiss.json").read_text())["faces"]
    assert info["model"]["model"] == "affnet-lite-cl-f"
    shutil.copy(theirs / "faces.faiss", ours / "faces.faiss")
    ours_info = json.loads((ours / "faces.faiss.json").read_text())
    (ours / "faces.faiss.json").write_text(json.dumps({**info, "generation": ours_info["generation"]}))
    results = json.loads(run_cli("query", few_photos / "couple.jpg", "--index", ours, "--json").output)["results"]
    assert results and results[0]["distance"] < 1e-3  # the query face finds itself: our vectors again
    assert json.loads((ours / "faces.faiss.json").read_text())["model"]["model"] == DEFAULT_MODEL


def test_two_runs_on_a_new_index_at_once(ferplus_valid, tmp_path):
    """Both finish cleanly; the second waits for the first and then finds nothing left to embed."""
    folder = copy_crops(ferplus_valid, tmp_path / "crops", 300)
    index = tmp_path / "idx"
    command = [sys.executable, "-m", "fecsearch", "index", str(folder), "--cropped", "--index", str(index), "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)]
    time.sleep(0.3)
    runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0 and "Traceback" not in err, err
    added = sorted(json.loads(out)["faces_added"] for out, _ in outputs)
    assert added == [0, 300]
    assert any("waiting" in err for _, err in outputs)


def test_photo_workers_pass_on_crops_not_decoded_photos(photos):
    """What waits in the queue for the writer is the aligned crops: a decoded photo is released."""
    from fecsearch.ingest.workers import IngestJob, find_faces_of

    path = photos / "couple.jpg"
    pipeline = IngestJob("fecnet-lite-16d", None, True, cropped=False).pipeline()  # the worker's step only
    decoded = find_faces_of(pipeline, (path, path.stat().st_size, path.stat().st_mtime))
    assert decoded.image is None and len(decoded.faces) == 2
    assert (decoded.width, decoded.height) == Image.open(path).size
    assert all(f.crop.size == (48, 48) for f in decoded.faces)


def test_pillow_warnings_name_the_file(tmp_path, caplog, monkeypatch):
    import warnings

    from fecsearch.faces import images
    from fecsearch.faces.images import decode_image

    # pytest records warnings with a hook of its own: put back the one fecsearch installs
    monkeypatch.setattr(warnings, "showwarning", images._show_warning_naming_the_file)

    def warn_like_pillow(image):  # Pillow warns so while it reads a photo's EXIF, which every decode does
        warnings.warn_explicit("Tag data larger than file", UserWarning, "TiffImagePlugin.py", 1,
                               module="PIL.TiffImagePlugin")
        return Image.Exif()

    monkeypatch.setattr(Image.Image, "getexif", warn_like_pillow)
    path = tmp_path / "odd.jpg"
    Image.new("RGB", (20, 20)).save(path)
    with caplog.at_level("WARNING", logger="fecsearch"):
        decode_image(path.read_bytes(), path)
        decode_image(path.read_bytes(), path)
    assert [r.getMessage() for r in caplog.records] == [f"{path}: Tag data larger than file"] * 2


def test_unreadable_entries_are_recorded_as_skipped(few_photos, tmp_path):
    """A dangling link, a link loop and a FIFO: the run's summary and `info` agree on what was skipped."""
    (few_photos / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (few_photos / "loop.jpg").symlink_to(few_photos / "loop.jpg")
    os.mkfifo(few_photos / "pipe.jpg")
    index = tmp_path / "idx"
    summary = json.loads(run_cli("index", few_photos, "--index", index, "--json").stdout)
    info = json.loads(run_cli("info", "--index", index, "--json", "--skipped").output)
    assert len(summary["skipped"]) == info["skipped"] == 3
    assert {Path(s["path"]).name for s in summary["skipped"]} == {"dangling.jpg", "loop.jpg", "pipe.jpg"}
    again = json.loads(run_cli("index", few_photos, "--index", index, "--json").stdout)
    assert again["images_indexed"] == 0 and json.loads(run_cli("info", "--index", index, "--json").output)["skipped"] == 3


def test_very_large_jpegs_are_decoded_reduced_with_boxes_in_original_pixels(photos, tmp_path):
    """A 7,200 px wide JPEG is decoded at 1/2 scale; its faces' boxes still match the original's pixels."""
    from fecsearch.faces.images import DECODE_LONG_SIDE, load_image, original_size
    from fecsearch.models import create_model
    from fecsearch.models.pipeline import FacePipeline

    source = Image.open(photos / "couple.jpg").convert("RGB")
    factor = 2 * DECODE_LONG_SIDE / max(source.size) * 1.2
    big = tmp_path / "big.jpg"
    source.resize((round(source.width * factor), round(source.height * factor)), Image.BICUBIC).save(big, quality=92)
    decoded = load_image(big)
    assert max(decoded.size) < 2 * DECODE_LONG_SIDE and max(decoded.size) >= DECODE_LONG_SIDE
    assert original_size(decoded) == Image.open(big).size
    pipeline = FacePipeline(create_model("fecnet-lite-16d"))
    small = [f.box for f in pipeline.find_faces([source])[0]]
    large = [f.box for f in pipeline.find_faces([decoded])[0]]
    assert len(small) == len(large) == 2
    for a, b in zip(sorted(small), sorted(large)):
        width = a[2] - a[0]
        assert all(abs(u * factor - v) < 0.05 * width * factor for u, v in zip(a, b))


def test_an_index_keeps_its_mirror_setting(few_photos, tmp_path):
    """Built with --no-mirror, an index stays so: later runs and queries embed as its faces were."""
    index = tmp_path / "idx"
    run_cli("index", few_photos, "--index", index, "--quiet", "--no-mirror")
    (few_photos / "img2.jpg").unlink()
    shutil.copy(few_photos / "img1.jpg", few_photos / "copy.jpg")
    run_cli("index", few_photos, "--index", index, "--quiet", "--mirror")  # asked for, but the index wins
    db = sqlite3.connect(index / "faces.db")
    assert db.execute("select value from meta where key = 'mirror_average'").fetchone()[0] == "0"
    copy, first = [np.frombuffer(r[0], np.float32) for r in db.execute(
        "select embedding from faces join images on images.id = image_id where path like '%img1.jpg' "
        "or path like '%copy.jpg' order by path")]
    assert np.allclose(first, copy, atol=1e-5)  # the same photo, embedded by two runs: the same plain vector
    mirrored = tmp_path / "mirrored"
    run_cli("index", few_photos / "copy.jpg", "--index", mirrored, "--quiet", "--mirror")
    other = np.frombuffer(sqlite3.connect(mirrored / "faces.db").execute("select embedding from faces").fetchone()[0],
                          np.float32)
    assert not np.allclose(other, copy, atol=1e-3)  # a mirror average is another vector
    results = json.loads(run_cli("query", few_photos / "copy.jpg", "--index", index, "--json").output)["results"]
    assert results[0]["distance"] < 1e-4


@pytest.mark.parametrize("model", ["fecnet-lite-16d", "fecnet-lite-x2-pair-faceres-48d-v2"])
def test_a_new_index_mirrors_as_its_model_chooses(model, few_photos, tmp_path):
    """Without --mirror or --no-mirror, a new index takes its model's choice: the three-network model
    embeds without the mirror image, the others with it."""
    from fecsearch.models.config import get_config

    index = tmp_path / "idx"
    run_cli("index", few_photos / "img1.jpg", "--index", index, "--quiet", "--model", model)
    stored = sqlite3.connect(index / "faces.db").execute("select value from meta where key = 'mirror_average'")
    assert stored.fetchone()[0] == str(int(get_config(model).mirror_average))
