"""Detection on real photos and the paper's alignment geometry."""
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fecsearch.faces.align import PAPER_GEOMETRY, FaceGeometry, align_face
from fecsearch.faces.detect import FaceDetector
from fecsearch.faces.images import load_image


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_couple_has_two_faces(detector, photos):
    faces = detector.detect([load_image(photos / "couple.jpg")])[0]
    assert len(faces) == 2
    for f in faces:
        assert f.probability > 0.99 and f.landmarks.shape == (5, 2)
        x1, y1, x2, y2 = f.box
        # the eyes lie inside the box, the left one left of the right one
        assert x1 < f.landmarks[0, 0] < f.landmarks[1, 0] < x2 and y1 < f.landmarks[0, 1] < y2


def test_selfie_finds_faces_cut_by_the_edge(detector, photos):
    # Seven people are visible; one shows less than half a face at the bottom-left corner.
    # The border MTCNN is given finds the three that touch the photo's edges.
    faces = detector.detect([load_image(photos / "selfie-many-people.jpg")])[0]
    assert len(faces) >= 6
    assert any(f.box[2] > 600 for f in faces)  # the face cut by the right edge


def test_detect_batches_of_different_sizes(detector, photos):
    images = [load_image(photos / n) for n in ("couple.jpg", "img1.jpg", "selfie-many-people.jpg")]
    batched = detector.detect(images)
    single = [detector.detect([im])[0] for im in images]
    assert [len(f) for f in batched] == [len(f) for f in single]


def test_pyramid_levels_side_by_side_find_the_same_faces(photos):
    """A query detects one photo on every core, its pyramid levels run at once; indexing runs them
    one after another (threads=1). Both give the same boxes and landmarks, to the bit."""
    from fecsearch.faces.images import find_images

    side_by_side, one_by_one = FaceDetector(), FaceDetector(threads=1)
    assert side_by_side.cascade.level_workers > 1 and one_by_one.cascade.level_workers == 1
    side_by_side.cascade.level_workers = 3  # more levels at once than this machine's cores, too
    for path in find_images(photos)[0][:12]:
        image = load_image(path)
        a, b = side_by_side.detect_one(image), one_by_one.detect_one(image)
        assert [f.box for f in a] == [f.box for f in b] and [f.probability for f in a] == [f.probability for f in b]
        assert all(np.array_equal(f.landmarks, g.landmarks) for f, g in zip(a, b))


def test_the_largest_face_is_found_without_the_finest_levels_as_indexing_finds_it(photos, monkeypatch):
    """A query by image (detect_largest) leaves out the pyramid levels that only find faces far smaller
    than its largest, yet gets the face indexing's full pyramid finds largest (detect_one, one level at
    a time), to the bit: on every test photo and on collages of them, where faces of many sizes sit side
    by side. Where the first guess leaves out too much, it widens, down to every level."""
    import sys
    from pathlib import Path

    from fecsearch.faces import mtcnn
    from fecsearch.faces.detect import largest_face
    from fecsearch.faces.images import find_images

    sys.path.insert(0, str(Path(__file__).parent / "helpers"))
    from collages import collage

    query, indexing = FaceDetector(), FaceDetector(threads=1)
    paths = find_images(photos)[0]
    images = [load_image(p) for p in paths] + [collage(paths, seed) for seed in range(12)]
    passes, widened, left_out, counted = [], 0, 0, 0
    detect = mtcnn.Pyramid.detect
    monkeypatch.setattr(mtcnn.Pyramid, "detect", lambda self, levels=None: passes.append(1) or detect(self, levels))
    for n, image in enumerate(images):
        faces = indexing.detect_one(image)
        expected = faces[largest_face(faces)]
        passes.clear()
        face, number, count = query.detect_largest(image)
        assert face.box == expected.box and face.probability == expected.probability, f"image {n}"
        assert np.array_equal(face.landmarks, expected.landmarks), f"image {n}"
        if count is None:  # levels were left out: the face is not numbered among faces not looked for
            left_out += 1
            assert number is None
        else:  # every level ran: numbered and counted as detect_one does
            counted += 1
            assert (number, count) == (largest_face(faces), len(faces))
        widened += len(passes) > 1
    assert left_out >= 60 and counted >= 1 and widened >= 1


def test_cascade_finds_what_facenet_pytorch_finds(detector, photos):
    """fecsearch's MTCNN driver (fecsearch/mtcnn.py) against facenet-pytorch's detect_face, same
    weights and thresholds, on the same canvases of every test photo. Faces either is sure of
    (p >= 0.95) must be found by the other; faces near the threshold may go either way, since the
    two resample the canvas differently."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    from fecsearch.faces.images import find_images
    from fecsearch.faces.mtcnn_nets import TorchMtcnn

    mtcnn, errors, confident = detector.cascade, [], 0  # the default: MTCNN's graphs in ONNX Runtime
    nets = TorchMtcnn("cpu").modules  # facenet-pytorch's detect_face runs torch modules
    for path in find_images(photos)[0]:
        image = load_image(path)
        board, placed = detector._letterbox(image)
        region = placed.region
        ours = mtcnn.detect(board, region)[0]
        with torch.inference_mode():
            theirs = detect_face(np.asarray(board)[None], 20, nets["pnet"], nets["rnet"], nets["onet"],
                                 [0.6, 0.7, 0.7], 0.709, "cpu")[0][0]
        # Only faces centred in the photo count, as FaceDetector keeps.
        def centred(boxes):
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            return boxes[(cx >= region[0]) & (cx < region[2]) & (cy >= region[1]) & (cy < region[3])]

        ours, theirs = centred(np.asarray(ours, float)), centred(np.asarray(theirs, float).reshape(-1, 5))
        for a, b in ((ours, theirs), (theirs, ours)):
            for box in a[a[:, 4] >= 0.95]:
                confident += 1
                width = box[2] - box[0]
                nearest = np.abs(b[:, :4] - box[:4]).max(1).min() / width if len(b) else np.inf
                assert nearest < 0.15, f"{path.name}: a face at {box[:4].round()} found by one detector only"
                errors.append(nearest)
    assert confident >= 2 * 70
    assert np.median(errors) < 0.03 and np.max(errors) < 0.1


def eye_image(left, right, size=(400, 300)):
    image = Image.new("RGB", size, "black")
    draw = ImageDraw.Draw(image)
    for x, y in (left, right):
        draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill="white")
    return image


def bright_centroids(crop):
    a = np.asarray(crop.convert("L"), float)
    ys, xs = np.nonzero(a > 0.3 * a.max())
    w = a[ys, xs]
    left = xs < a.shape[1] / 2

    def centre(m):
        return (xs[m] * w[m]).sum() / w[m].sum(), (ys[m] * w[m]).sum() / w[m].sum()

    return centre(left), centre(~left)


@pytest.mark.parametrize("roll", [0, 20, -35])
@pytest.mark.parametrize("geometry", [PAPER_GEOMETRY, PAPER_GEOMETRY.scaled(48),
                                      FaceGeometry(48, 17.75, 0.5, 0.39)])
def test_alignment_puts_eyes_where_the_geometry_says(roll, geometry):
    cx, cy, half = 200, 150, 40
    a = math.radians(roll)
    left = (cx - half * math.cos(a), cy - half * math.sin(a))
    right = (cx + half * math.cos(a), cy + half * math.sin(a))
    crop = align_face(eye_image(left, right), left, right, geometry)
    assert crop.size == (geometry.size, geometry.size)
    (lx, ly), (rx, ry) = bright_centroids(crop)
    tolerance = max(1.0, geometry.size / 100)
    assert abs(ly - ry) < tolerance  # roll undone
    assert abs((rx - lx) - geometry.eye_distance) < 2 * tolerance  # eye distance scaled
    assert abs((lx + rx) / 2 - geometry.eye_center_x * geometry.size) < tolerance
    assert abs((ly + ry) / 2 - geometry.eye_center_y * geometry.size) < tolerance


@pytest.mark.parametrize("eyes", [((420.0, 515.0), (640.0, 560.0)),  # a large face: blocks of 16 averaged
                                  ((30.0, 40.0), (250.0, 20.0)),  # at the photo's corner, half off it
                                  ((700.0, 1300.0), (760.0, 1310.0))])  # near the bottom edge, blocks of 4
def test_alignment_of_a_large_face_reads_only_the_pixels_around_it(eyes, monkeypatch):
    """Shrinking a large face averages blocks of only the part of the photo the crop reads: the same
    crop, to the pixel, as averaging the whole photo's blocks (photo of odd sizes, random pixels)."""
    from fecsearch.faces import align

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (1333, 1001, 3), dtype=np.uint8))
    geometry = PAPER_GEOMETRY.scaled(48)
    crop = np.asarray(align_face(photo, *eyes, geometry))
    monkeypatch.setattr(align, "_around_crop", lambda image, coeffs, size, factor: (image, (0, 0)))
    whole = np.asarray(align_face(photo, *eyes, geometry))
    assert crop.shape == (48, 48, 3)
    assert np.array_equal(crop, whole)


def test_paper_geometry_is_55px_in_224():
    assert (PAPER_GEOMETRY.size, PAPER_GEOMETRY.eye_distance) == (224, 55)
    assert PAPER_GEOMETRY.scaled(112).eye_distance == pytest.approx(27.5)


def test_own_mtcnn_networks_match_facenet_pytorchs():
    """fecsearch's MTCNN networks, box arithmetic and NMS give facenet-pytorch's and torchvision's
    numbers: queries run them without importing either package."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    from facenet_pytorch.models.utils.detect_face import bbreg, rerec
    from torchvision.ops import nms as torchvision_nms

    from fecsearch.faces import mtcnn as boxes_in_numpy
    from fecsearch.faces import mtcnn_nets as own

    g = torch.Generator().manual_seed(0)
    for ours, theirs, size in ((own.PNet, PNet, 37), (own.RNet, RNet, 24), (own.ONet, ONet, 48)):
        x = torch.rand(5, 3, size, size, generator=g) * 2 - 1
        with torch.no_grad():
            for a, b in zip(ours().load_pretrained()(x), theirs().eval()(x)):
                assert torch.allclose(a, b, atol=1e-5)
    boxes = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([boxes, boxes + 10 + torch.rand(300, 2, generator=g) * 60, torch.rand(300, 1, generator=g)], 1)
    reg = torch.randn(300, 4, generator=g) * 0.1
    b, r = boxes.numpy(), reg.numpy()
    assert np.allclose(boxes_in_numpy.apply_correction(b, r), bbreg(boxes.clone(), reg).numpy(), atol=1e-4)
    assert np.allclose(boxes_in_numpy.to_square(b), rerec(boxes.clone()).numpy(), atol=1e-4)
    for threshold in (0.5, 0.7):
        assert boxes_in_numpy.nms(b[:, :4], b[:, 4], threshold).tolist() == \
            torchvision_nms(boxes[:, :4], boxes[:, 4], threshold).tolist()


def test_nms_compares_all_pairs_at_once_as_it_does_box_by_box(monkeypatch):
    """The two ways nms runs (every pair at once up to NMS_MATRIX_LIMIT boxes, else box by box)
    keep the same boxes in the same order, ties in score included."""
    from fecsearch.faces import mtcnn

    rng = np.random.default_rng(0)
    cases = []
    for n in (0, 1, 2, 37, 250, 600):
        corner = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(8, 80, (n, 2))], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        cases += [(boxes, scores), (boxes, np.round(scores, 1))]
    at_once = [[mtcnn.nms(b, s, t).tolist() for t in (0.5, 0.7)] for b, s in cases]
    monkeypatch.setattr(mtcnn, "NMS_MATRIX_LIMIT", 0)
    assert at_once == [[mtcnn.nms(b, s, t).tolist() for t in (0.5, 0.7)] for b, s in cases]
    assert sum(len(k) for pair in at_once for k in pair) > 500  # boxes were kept, and suppressed
