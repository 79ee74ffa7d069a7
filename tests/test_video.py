"""Videos: faces indexed with their time, followed so that a held face is one result, damaged and
truncated files reported like bad photos. The test video (tests/helpers/make_video.py) shows known
faces at known times, and part of it is overwritten with garbage."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from fecsearch.faces.video import load_frame, sample_frames

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from make_video import DATA, SEGMENTS, frame_of, make_video  # noqa: E402

STEP = 0.5  # seconds between sampled frames at the default 2 frames a second


@pytest.fixture(scope="module")
def video_index(tmp_path_factory, photos, ferplus_valid):
    folder = tmp_path_factory.mktemp("videos")
    segments = make_video(folder / "clip.mp4")
    (folder / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    whole = folder / "whole.mp4"
    make_video(whole, SEGMENTS[:2], damage=False)
    (folder / "truncated.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    whole.unlink()
    index = folder / "idx"
    result = run_cli("index", folder, "--index", index, "--json")
    return folder, segments, index, result


def faces_of(index: Path, name: str) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(index / "faces.db")
    db.row_factory = sqlite3.Row
    rows = db.execute("select faces.*, images.path from faces join images on images.id = faces.image_id "
                      "where images.path like ? order by time", [f"%{name}"]).fetchall()
    return [dict(r) for r in rows]


def test_damaged_and_truncated_videos_are_reported_and_the_rest_indexed(video_index):
    folder, _, _, result = video_index
    summary = json.loads(result.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"garbage.mp4", "truncated.mp4"}
    assert all(reason.startswith(str(folder)) and "video" in reason for reason in skipped.values())
    assert summary["images_indexed"] == 1
    assert "damaged packets skipped" in result.stderr  # clip.mp4's overwritten stretch, named


def test_each_held_face_is_one_result_at_its_time(video_index):
    _, segments, index, _ = video_index
    faces = faces_of(index, "clip.mp4")
    assert all(f["time"] is not None and f["run_start"] <= f["time"] <= f["run_end"] for f in faces)
    held = [f for f in faces if f["time"] < segments[0]["end"]]
    # img1.jpg is on screen from 0 to 3 s: six sampled frames, one face kept
    assert len(held) == 1
    assert held[0]["run_start"] == 0 and held[0]["run_end"] >= segments[0]["end"] - 2 * STEP
    # no segment is left without a face, and none has more than one
    for segment in segments:
        inside = [f for f in faces if segment["start"] - STEP <= f["time"] < segment["end"]]
        assert 1 <= len(inside) <= 2, (segment, inside)
    assert len(faces) <= len(segments) + 1


def test_a_query_finds_each_face_at_its_time(video_index):
    _, segments, index, _ = video_index
    first = 0
    for segment in segments:
        cropped = ["--cropped"] if segment["kind"] == "face" else []
        data = json.loads(run_cli("query", DATA / segment["file"], *cropped, "-k", 2, "--index", index,
                                  "--json").stdout)
        times = [r["time"] for r in data["results"]]
        on_screen = [segment["start"] - STEP <= t <= segment["end"] + STEP for t in times]
        assert any(on_screen), (segment, data["results"])  # within one sampling step, in the top 2
        first += on_screen[0]
    assert first >= len(segments) - 1  # measured: 4 of 5 first (img47's smile is nearest img29's)


def test_moments_lists_when_an_expression_happens(video_index, tmp_path):
    folder, segments, index, _ = video_index
    data = json.loads(run_cli("moments", folder / "clip.mp4", "--like", DATA / segments[1]["file"], "--index",
                              index, "--json", "--sheet", tmp_path / "m.jpg").stdout)
    assert data["faces_in_video"] == len(faces_of(index, "clip.mp4"))
    best = data["moments"][0]
    assert segments[1]["start"] - STEP <= best["time"] <= segments[1]["end"] + STEP
    assert best["run"][0] <= best["time"] <= best["run"][1]
    assert (tmp_path / "m.jpg").stat().st_size > 0
    text = run_cli("moments", folder / "clip.mp4", "--like", DATA / segments[1]["file"], "--index", index).output
    assert "0:03" in text
    missing = run_cli("moments", DATA / "photos" / "img1.jpg", "--like", DATA / segments[1]["file"], "--index", index,
                      ok=False)
    assert missing.exit_code != 0 and "not in" in missing.output
    by_video = run_cli("query", folder / "clip.mp4", "--index", index, ok=False)
    assert by_video.exit_code != 0 and "a video, not a picture; `fecsearch moments" in by_video.output


def test_sheets_show_the_frame_of_the_face(video_index):
    """The thumbnail of a video's face is cut from its frame at its time: it matches the picture put
    there (up to compression)."""
    from fecsearch.query.sheets import face_thumbnail

    folder, segments, index, _ = video_index
    face = faces_of(index, "clip.mp4")[0]
    box = (face["x1"], face["y1"], face["x2"], face["y2"])
    thumb = np.asarray(face_thumbnail(str(folder / "clip.mp4"), box, time=face["time"]), np.float32)
    expected = frame_of(DATA / segments[0]["file"], segments[0]["kind"])
    frame = load_frame(folder / "clip.mp4", face["time"])
    assert frame.size == expected.size
    assert np.abs(np.asarray(frame, np.float32) - np.asarray(expected, np.float32)).mean() < 8
    assert thumb.shape == (128, 128, 3) and thumb.std() > 10


def test_frames_are_sampled_at_the_rate_asked(video_index):
    folder = video_index[0]
    times = [t for t, _ in sample_frames(folder / "clip.mp4", rate=1.0)]
    assert times[:3] == [0.0, 1.0, 2.0]
    # one frame for each second (the first at or after it), but for the damaged stretch
    seconds = [int(t + 1e-6) for t in times]
    assert seconds == sorted(set(seconds)) and len(seconds) >= 9 and times[-1] < 11


def test_video_faces_have_identities_and_people(video_index):
    _, _, index, _ = video_index
    data = json.loads(run_cli("people", "--index", index, "--json").stdout)
    assert data["identities"] is None  # described while indexing: nothing left to describe
    assert data["faces"] == len(faces_of(index, "clip.mp4"))
