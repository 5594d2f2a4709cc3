"""Unit tests: pre/post-processing, the read payload, the store-and-forward spool, OCR decoding."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from alprd.errors import ModelError
from alprd.geometry import iou, resize_box
from alprd.publish.payload import SCHEMA, encode, iso_ms, read_payload, uuid7
from alprd.publish.spool import Spool
from alprd.recognition.base import ALPHABET, PAD, PlateRead, PlateText
from alprd.recognition.manifest import ModelEntry, default_models_dir, load_entry, sha256_of
from alprd.recognition.preprocess import (
    CROP_PAD_X,
    CROP_PAD_Y,
    crop_plate,
    decode_centers,
    letterbox,
    ocr_input,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "alprd" / "publish" / "schema" / "read-v1.schema.json"


# --- letterbox --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "h", "in_w", "in_h", "scale", "px", "py"),
    [
        (1280, 720, 640, 384, 0.5, 0, 12),  # downscale, pad top and bottom
        (200, 100, 640, 640, 3.2, 0, 160),  # upscale, wide frame in a square
        (100, 400, 640, 640, 1.6, 240, 0),  # tall frame: pad left and right
        (640, 384, 640, 384, 1.0, 0, 0),  # exact fit: no padding
    ],
)
def test_letterbox_scale_and_padding(w, h, in_w, in_h, scale, px, py):
    frame = np.full((h, w, 3), (10, 200, 30), np.uint8)
    blob, s, gx, gy = letterbox(frame, in_w, in_h)
    assert blob.shape == (1, 3, in_h, in_w) and blob.dtype == np.float32
    assert s == pytest.approx(scale) and (gx, gy) == (px, py)
    nw, nh = round(w * scale), round(h * scale)
    img = blob[0].transpose(1, 2, 0)
    # The picture sits centred; everything around it is the grey 114 padding.
    assert np.all(img[gy:gy + nh, gx:gx + nw] == (10, 200, 30))
    pad = np.ones((in_h, in_w), bool)
    pad[gy:gy + nh, gx:gx + nw] = False
    assert np.all(img[pad] == 114)
    # Channels stay BGR, range 0..255.
    assert blob[0, 1].max() == 200


@pytest.mark.parametrize(("w", "h", "in_w", "in_h"), [(1280, 720, 640, 384), (640, 480, 320, 256), (300, 900, 640, 640)])
def test_box_through_letterbox_and_back(w, h, in_w, in_h):
    """Draw a box in a frame, find it in the letterboxed input, map it back as the detector does."""
    box = (int(w * 0.31), int(h * 0.52), int(w * 0.58), int(h * 0.71))
    frame = np.zeros((h, w, 3), np.uint8)
    frame[box[1]:box[3], box[0]:box[2]] = 255
    blob, scale, px, py = letterbox(frame, in_w, in_h)
    ys, xs = np.nonzero(blob[0, 0] > 127)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    # Forward mapping agrees with where the box actually landed.
    assert abs(x1 - (box[0] * scale + px)) <= 1 and abs(y2 - (box[3] * scale + py)) <= 1
    back = (round((x1 - px) / scale), round((y1 - py) / scale), round((x2 - px) / scale), round((y2 - py) / scale))
    tol = max(1.0, 1.0 / scale) + 0.5  # one input pixel is 1/scale frame pixels
    assert all(abs(a - b) <= tol for a, b in zip(back, box)), (back, box)


def test_letterbox_exact_round_trip_of_coordinates():
    frame = np.zeros((720, 1280, 3), np.uint8)
    _, scale, px, py = letterbox(frame, 640, 384)
    for x, y in [(0, 0), (1279, 719), (517.25, 300.5)]:
        ix, iy = x * scale + px, y * scale + py
        assert ((ix - px) / scale, (iy - py) / scale) == pytest.approx((x, y))


# --- decode_centers -------------------------------------------------------------------------------


def _heads(hw=(40, 40)):
    h, w = hw
    return np.zeros((h, w), np.float32), np.zeros((2, h, w), np.float32), np.zeros((2, h, w), np.float32)


def _peak(heat, size, offset, y, x, score, bw, bh, ox=0.5, oy=0.5):
    heat[y, x] = score
    size[:, y, x] = np.log(bw), np.log(bh)
    offset[:, y, x] = ox, oy


def test_decode_centers_two_plates_and_nms():
    heat, size, offset = _heads()
    _peak(heat, size, offset, 10, 20, 0.9, 40, 12)  # centre (82, 42)
    heat[11, 20] = 0.85  # a shoulder of the first peak: not a local maximum
    _peak(heat, size, offset, 10, 22, 0.8, 40, 12)  # a duplicate 8 px away: IoU 0.67, suppressed
    _peak(heat, size, offset, 30, 5, 0.7, 24, 8, ox=0.25, oy=0.75)  # centre (21, 123)
    _peak(heat, size, offset, 25, 30, 0.2, 30, 10)  # under the threshold
    out = decode_centers(heat, size, offset, stride=4, threshold=0.35)
    assert len(out) == 2
    (a, b) = out
    assert a[:4] == pytest.approx((62, 36, 102, 48), abs=1e-3) and a[4] == pytest.approx(0.9)
    assert b[:4] == pytest.approx((9, 119, 33, 127), abs=1e-3) and b[4] == pytest.approx(0.7)
    # Without NMS the duplicate would be there: it is a local maximum above the threshold.
    assert heat[10, 22] >= 0.35 and heat[10, 22] == cv2.dilate(heat, np.ones((3, 3), np.uint8))[10, 22]


def test_decode_centers_keeps_overlapping_distinct_plates_and_orders_by_score():
    heat, size, offset = _heads()
    _peak(heat, size, offset, 10, 10, 0.6, 20, 8)
    _peak(heat, size, offset, 10, 16, 0.95, 20, 8)  # 24 px away, no overlap
    out = decode_centers(heat, size, offset, stride=4, threshold=0.5)
    assert [round(o[4], 2) for o in out] == [0.95, 0.6]


def test_decode_centers_empty_and_max_det():
    heat, size, offset = _heads()
    assert decode_centers(heat, size, offset, 4, 0.35) == []
    for i in range(5):
        _peak(heat, size, offset, 5 + 6 * i, 5, 0.5 + i * 0.05, 16, 8)
    out = decode_centers(heat, size, offset, 4, 0.35, max_det=3)
    assert len(out) == 3 and out[0][4] == pytest.approx(0.7)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


# --- crop_plate ---------------------------------------------------------------------------------


def test_nms_keeps_the_best_of_overlapping_boxes():
    from alprd.recognition.preprocess import nms

    boxes = [(0, 0, 10, 10, 0.5), (1, 0, 11, 10, 0.9), (50, 50, 60, 60, 0.3)]
    assert nms(boxes, 0.5) == [boxes[1], boxes[2]]


def test_crop_plate_adds_padding_inside_the_frame():
    frame = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    box = (50, 40, 150, 65)
    crop = crop_plate(frame, box)
    px, py = round(100 * CROP_PAD_X), round(25 * CROP_PAD_Y)
    assert crop.shape == (25 + 2 * py, 100 + 2 * px, 3)
    assert np.array_equal(crop, frame[40 - py:65 + py, 50 - px:150 + px])


@pytest.mark.parametrize(
    ("box", "expect"),
    [
        ((190, 90, 260, 120), (186, 86, 200, 100)),  # past the right and bottom edges
        ((0, 0, 50, 20), (0, 0, 53, 22)),  # at the top-left corner
        ((-30, -10, 20, 10), (0, 0, 23, 12)),  # partly outside
        ((0, 0, 200, 100), (0, 0, 200, 100)),  # the whole frame
    ],
)
def test_crop_plate_clamps_to_the_frame(box, expect):
    frame = np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    crop = crop_plate(frame, box)
    xa, ya, xb, yb = expect
    assert crop.shape == (yb - ya, xb - xa, 3)
    assert np.array_equal(crop, frame[ya:yb, xa:xb])


# --- ocr_input ----------------------------------------------------------------------------------


def test_resize_box_grows_and_shrinks_each_side_by_a_share_of_the_box():
    assert resize_box((100, 50, 200, 90), 0.08, 0.10) == (92, 46, 208, 94)
    assert resize_box((100, 50, 200, 90), -0.08, -0.10) == (108, 54, 192, 86)
    # Shrinking a tiny box may not turn it inside out: that side is kept as it was.
    assert resize_box((10, 10, 14, 12), -0.4, -0.4) == (10, 10, 14, 12)
    # Growing past the frame is left to crop_plate, which clips: (-10, -4, 60, 24) padded by 4 and 3 px.
    grown = resize_box((0, 0, 50, 20), 0.2, 0.2)
    assert grown == (-10, -4, 60, 24)
    assert crop_plate(np.zeros((100, 100, 3), np.uint8), grown).shape[:2] == (27, 64)


def test_second_look_reads_vote_by_their_summed_confidence():
    from alprd.recognition.recognizer import _agreed_read

    def read(text: str, conf: float) -> PlateText:
        return PlateText(text, conf, (conf,) * len(text))

    # A tighter box cut the last character off and read the rest a little more surely than the
    # others; two boxes that saw the whole plate outvote it, and the surer of the two is returned.
    whole, cut, whole_again = read("ABC1234", 0.86), read("ABC123", 0.93), read("ABC1234", 0.90)
    assert _agreed_read([whole, cut, whole_again]) is whole_again
    # With no two reads agreeing, the surest one wins; on equal totals, the first (the detector's box).
    assert _agreed_read([read("ABC1234", 0.80), read("ABC123", 0.93), read("ABD1234", 0.70)]).text == "ABC123"
    assert _agreed_read([read("XY12", 0.9), read("XY13", 0.9)]).text == "XY12"
    assert _agreed_read([read("", 0.0)]).text == ""


def test_ocr_input_shape_dtype_and_grey():
    blue = np.zeros((30, 90, 3), np.uint8)
    blue[..., 0] = 255
    red = np.zeros((200, 400, 3), np.uint8)
    red[..., 2] = 255
    grey = np.full((16, 50), 77, np.uint8)  # already single-channel
    out = ocr_input([blue, red, grey], 64, 128)
    assert out.shape == (3, 1, 64, 128) and out.dtype == np.float32
    # OpenCV's BGR->grey weights: 0.114 B, 0.587 G, 0.299 R; no normalisation (the model does it).
    assert np.allclose(out[0], 29, atol=1)
    assert np.allclose(out[1], 76, atol=1)
    assert np.allclose(out[2], 77)
    assert out.min() >= 0 and out.max() <= 255
    assert ocr_input([], 64, 128).shape == (0, 1, 64, 128)


def test_ocr_input_keeps_layout():
    crop = np.zeros((32, 64, 3), np.uint8)
    crop[:, 32:] = 255  # right half white
    out = ocr_input([crop], 64, 128)[0, 0]
    assert out[:, :60].max() == 0 and out[:, 68:].min() == 255


# --- uuid7 and the read payload -------------------------------------------------------------------


def test_uuid7_version_variant_and_timestamp():
    ms = 1_700_000_000_123
    u = uuid.UUID(uuid7(ms))
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert u.int >> 80 == ms
    before = int(time.time() * 1000)
    now = uuid.UUID(uuid7())
    after = int(time.time() * 1000)
    assert before <= now.int >> 80 <= after


def test_uuid7_increases_with_time_and_is_unique():
    t = 1_700_000_000_000
    ids = [uuid7(t + i) for i in range(0, 2000, 7)]
    assert all(a < b for a, b in zip(ids, ids[1:]))  # as text
    raw = [uuid.UUID(i).bytes for i in ids]
    assert all(a < b for a, b in zip(raw, raw[1:]))  # as bytes
    same_ms = {uuid7(t) for _ in range(5000)}
    assert len(same_ms) == 5000
    # A later millisecond sorts after every id of an earlier one, whatever the random bits.
    assert max(same_ms) < min(uuid7(t + 1) for _ in range(200))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _payload(**kw):
    read = PlateRead("AB12CDE", 0.8123456, (0.99, 0.95, 0.9, 0.8123, 0.97, 0.98, 0.99), (10, 20, 110, 45), 0.8765432)
    args = dict(read_id=uuid7(1_700_000_000_123), unit="pole-017", camera="northbound", timestamp_ms=1_700_000_000_123,
                frame_index=42, frame_shape=(720, 1280, 3), models={"detector": "plate_detector@0.0.1", "ocr": "plate_ocr@0.0.1"})
    args.update(kw)
    return read_payload(read, **args)


def test_read_payload_validates_against_schema(validator):
    p = _payload()
    validator.validate(p)
    assert p["schema"] == SCHEMA == "alprd.read/1"
    assert p["plate"] == "AB12CDE" and p["confidence"] == 0.8123 and p["detection_confidence"] == 0.8765
    assert p["timestamp"] == "2023-11-14T22:13:20.123Z" and p["timestamp_ms"] == 1_700_000_000_123
    assert p["frame"] == {"width": 1280, "height": 720}
    assert p["box"] == [10, 20, 110, 45]
    assert "crop_jpeg" not in p
    # What goes on the wire is compact JSON of the same.
    wire = encode(p)
    assert json.loads(wire) == p and b" " not in wire


def test_schema_rejects_bad_payloads(validator):
    for broken in ({"plate": "ab-12"}, {"read_id": str(uuid.uuid4())}, {"confidence": 1.5}, {"box": [1, 2, 3]},
                   {"schema": "alprd.read/2"}):
        p = {**_payload(), **broken}
        assert not validator.is_valid(p), broken
    p = _payload()
    del p["models"]
    assert not validator.is_valid(p)


def test_read_payload_includes_crop_only_when_given(validator):
    crop = np.zeros((24, 96, 3), np.uint8)
    cv2.putText(crop, "AB12", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    p = _payload(crop=crop)
    validator.validate(p)
    jpg = base64.b64decode(p["crop_jpeg"], validate=True)
    assert jpg[:2] == b"\xff\xd8"
    back = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == crop.shape
    assert "crop_jpeg" not in _payload(crop=None)
    assert "crop_jpeg" not in _payload(crop=np.zeros((0, 0, 3), np.uint8))


def test_read_payload_extra_fields(validator):
    p = _payload(extra={"site": "A7"})
    validator.validate(p)  # unknown fields are allowed
    assert p["site"] == "A7"


def test_iso_ms():
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_007) == "2023-11-14T22:13:20.007Z"
    assert iso_ms(1_700_000_000_999) == "2023-11-14T22:13:20.999Z"


# --- the spool ------------------------------------------------------------------------------------


def _put(sp: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        sp.put("alprd/u/cam/read", f"payload-{i}".encode(), f"r{i}", 1000 + i)


def test_spool_put_pending_ack_order(tmp_path):
    sp = Spool(tmp_path / "spool.db")
    _put(sp, 5)
    assert sp.depth() == 5
    msgs = sp.pending(10)
    assert [m.read_id for m in msgs] == ["r0", "r1", "r2", "r3", "r4"]
    assert [m.seq for m in msgs] == sorted(m.seq for m in msgs)
    assert msgs[0].topic == "alprd/u/cam/read" and msgs[0].payload == b"payload-0" and msgs[0].created_ms == 1000
    assert [m.read_id for m in sp.pending(2)] == ["r0", "r1"]
    sp.ack(msgs[2].seq)
    sp.ack(msgs[0].seq)
    assert [m.read_id for m in sp.pending(10)] == ["r1", "r3", "r4"]
    assert sp.depth() == 3
    sp.ack(msgs[0].seq)  # acking twice (a duplicate PUBACK) changes nothing
    assert sp.depth() == 3
    sp.close()


def test_spool_pending_excludes_in_flight(tmp_path):
    sp = Spool(tmp_path / "spool.db")
    _put(sp, 6)
    seqs = [m.seq for m in sp.pending(10)]
    inflight = {seqs[0], seqs[1], seqs[3]}
    assert [m.seq for m in sp.pending(10, exclude=inflight)] == [seqs[2], seqs[4], seqs[5]]
    # The limit counts messages returned, not the ones skipped.
    assert [m.seq for m in sp.pending(2, exclude=inflight)] == [seqs[2], seqs[4]]
    assert sp.pending(10, exclude=set(seqs)) == []
    sp.close()


def test_spool_survives_close_and_reopen(tmp_path):
    path = tmp_path / "state" / "spool.db"  # the folder is created
    sp = Spool(path)
    _put(sp, 4)
    sp.ack(sp.pending(1)[0].seq)
    sp.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sp = Spool(path)
    assert sp.depth() == 3
    assert [m.read_id for m in sp.pending(10)] == ["r1", "r2", "r3"]
    _put(sp, 1, start=4)
    assert [m.read_id for m in sp.pending(10)] == ["r1", "r2", "r3", "r4"]  # new rows after the old ones
    sp.close()


def test_spool_binary_payload_round_trip(tmp_path):
    sp = Spool(tmp_path / "spool.db")
    blob = bytes(range(256)) * 10
    sp.put("t", blob, "rid", 1)
    assert sp.pending(1)[0].payload == blob
    sp.close()


def test_spool_full_drops_oldest_and_counts(tmp_path):
    path = tmp_path / "spool.db"
    sp = Spool(path, max_rows=5)
    _put(sp, 8)
    assert sp.depth() == 5
    assert [m.read_id for m in sp.pending(10)] == ["r3", "r4", "r5", "r6", "r7"]
    assert sp.counter("dropped_spool_full") == 3
    assert sp.counter("no_such_counter") == 0
    sp.close()
    sp = Spool(path, max_rows=5)
    assert sp.counter("dropped_spool_full") == 3  # survives a restart
    _put(sp, 1, start=8)
    assert sp.counter("dropped_spool_full") == 4
    assert [m.read_id for m in sp.pending(10)] == ["r4", "r5", "r6", "r7", "r8"]
    sp.close()
    # Reopened with a smaller cap, the next put trims down to it at once.
    sp = Spool(path, max_rows=3)
    _put(sp, 1, start=9)
    assert sp.depth() == 3
    assert [m.read_id for m in sp.pending(10)] == ["r7", "r8", "r9"]
    assert sp.counter("dropped_spool_full") == 7
    sp.close()


def test_spool_concurrent_puts(tmp_path):
    sp = Spool(tmp_path / "spool.db")

    def worker(k: int) -> None:
        for i in range(50):
            sp.put("t", b"x", f"w{k}-{i}", i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    msgs = sp.pending(1000)
    assert sp.depth() == len(msgs) == 200
    assert len({m.seq for m in msgs}) == 200
    for k in range(4):  # each writer's messages stay in its own order
        mine = [int(m.read_id.split("-")[1]) for m in msgs if m.read_id.startswith(f"w{k}-")]
        assert mine == list(range(50))
    sp.close()


# --- OnnxPlateOCR decoding ------------------------------------------------------------------------

SLOTS = 10
CHARS = ALPHABET + PAD


def _probs(slots: list[tuple[str, float]]) -> np.ndarray:
    """[SLOTS, classes] rows that each sum to 1 with the given character at the given probability."""
    p = np.zeros((SLOTS, len(CHARS)), np.float32)
    for i, (ch, conf) in enumerate(slots):
        p[i] = (1 - conf) / (len(CHARS) - 1)
        p[i, CHARS.index(ch)] = conf
    return p


# A white crop reads "AB12C" with pads between; a black crop reads nothing.
WHITE = _probs([("A", 0.9), ("B", 0.8), ("_", 0.95), ("1", 0.7), ("2", 0.99), ("_", 0.9), ("_", 0.9), ("C", 0.6),
                ("_", 0.9), ("_", 0.99)])
BLACK = _probs([("_", 0.97)] * SLOTS)


# Columns of a CTC reader: repeats of a character collapse unless a blank separates them.
CTC_COLUMNS = _probs([("A", 0.6), ("A", 0.9), ("_", 0.9), ("A", 0.8), ("B", 0.5), ("B", 0.7), ("_", 0.9),
                      ("1", 0.95), ("1", 0.9), ("C", 0.6)])


def _tiny_ocr_model(path: Path, white: np.ndarray = WHITE) -> None:
    """An ONNX model with the shipped reader's interface [N,1,64,128] -> [N,10,37] whose output is
    WHITE * w + BLACK * (1 - w), w the crop's mean brightness / 255: fixed, known probabilities."""
    from onnx import TensorProto, checker, helper, numpy_helper, save

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Div", ["m", "c255"], ["w"]),
        helper.make_node("Sub", ["one", "w"], ["v"]),
        helper.make_node("Mul", ["w", "white"], ["a"]),
        helper.make_node("Mul", ["v", "black"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["probs"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(255, np.float32), "c255"),
        numpy_helper.from_array(np.array(1, np.float32), "one"),
        numpy_helper.from_array(white[None, None], "white"),
        numpy_helper.from_array(BLACK[None, None], "black"),
        numpy_helper.from_array(np.array([-1, SLOTS, len(CHARS)], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_ocr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 64, 128])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", SLOTS, len(CHARS)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, str(path))


@pytest.fixture(scope="module")
def tiny_ocr_dir(tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="building the test model needs the onnx package (pip install onnx)")
    d = tmp_path_factory.mktemp("tiny_models")
    _tiny_ocr_model(d / "tiny_ocr.onnx")
    _tiny_ocr_model(d / "tiny_ctc.onnx", CTC_COLUMNS)
    manifest = {"format": 1, "models": [{
        "name": "tiny_ocr", "version": "9.9.9", "task": "ocr", "file": "tiny_ocr.onnx",
        "sha256": sha256_of(d / "tiny_ocr.onnx"), "input": {"height": 64, "width": 128},
        "alphabet": ALPHABET, "pad": PAD}, {
        "name": "tiny_ctc", "version": "9.9.9", "task": "ocr", "file": "tiny_ctc.onnx",
        "sha256": sha256_of(d / "tiny_ctc.onnx"), "input": {"height": 64, "width": 128},
        "alphabet": ALPHABET, "pad": PAD, "decoder": "ctc"}]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_ocr_decoding_of_known_probabilities(tiny_ocr_dir):
    from alprd.recognition.onnx_models import OnnxPlateOCR

    ocr = OnnxPlateOCR(load_entry(tiny_ocr_dir, "tiny_ocr", "ocr"))
    assert (ocr.name, ocr.version, ocr.height, ocr.width) == ("tiny_ocr", "9.9.9", 64, 128)
    white = np.full((40, 160, 3), 255, np.uint8)
    black = np.zeros((20, 60, 3), np.uint8)
    out = ocr.read([white, black, white])
    assert len(out) == 3 and all(isinstance(t, PlateText) for t in out)
    w, b, w2 = out
    # Pads removed, characters in slot order, each with its own probability.
    assert w.text == "AB12C"
    assert w.char_confidences == pytest.approx((0.9, 0.8, 0.7, 0.99, 0.6), abs=1e-4)
    # The plate is as trustworthy as its weakest character.
    assert w.confidence == pytest.approx(0.6, abs=1e-5)
    # All pads: nothing read, zero confidence.
    assert (b.text, b.confidence, b.char_confidences) == ("", 0.0, ())
    assert w2 == w  # batch order is kept
    assert ocr.read([]) == []


def test_ctc_decoding_collapses_repeats_between_blanks(tiny_ocr_dir):
    from alprd.recognition.onnx_models import OnnxPlateOCR

    ctc = OnnxPlateOCR(load_entry(tiny_ocr_dir, "tiny_ctc", "ocr"))
    white = np.full((40, 160, 3), 255, np.uint8)
    (t,) = ctc.read([white])
    # A A _ A B B _ 1 1 C: repeated columns are one character, a blank splits a real double letter.
    assert t.text == "AAB1C"
    # Each character is as sure as its best column; the plate as its weakest character.
    assert t.char_confidences == pytest.approx((0.9, 0.8, 0.7, 0.95, 0.6), abs=1e-4)
    assert t.confidence == pytest.approx(0.6, abs=1e-5)
    # The same columns read as fixed slots keep every column's character: the decoder matters.
    entry = load_entry(tiny_ocr_dir, "tiny_ctc", "ocr")
    slots = OnnxPlateOCR(ModelEntry(entry.name, entry.version, "ocr", entry.path, entry.sha256, entry.input,
                                    alphabet=ALPHABET, pad=PAD, decoder="slots"))
    assert slots.read([white])[0].text == "AAABB11C"
    with pytest.raises(ModelError, match="unknown decoder 'beam'"):
        OnnxPlateOCR(ModelEntry(entry.name, entry.version, "ocr", entry.path, entry.sha256, entry.input,
                                alphabet=ALPHABET, pad=PAD, decoder="beam"))


def test_ocr_requires_an_alphabet(tiny_ocr_dir):
    from alprd.recognition.onnx_models import OnnxPlateOCR

    entry = load_entry(tiny_ocr_dir, "tiny_ocr", "ocr")
    bare = ModelEntry(entry.name, entry.version, "ocr", entry.path, entry.sha256, entry.input, alphabet="")
    with pytest.raises(ModelError, match="no alphabet"):
        OnnxPlateOCR(bare)


def test_ocr_model_of_the_wrong_task(tiny_ocr_dir):
    with pytest.raises(ModelError, match="is a ocr model, not a detector"):
        load_entry(tiny_ocr_dir, "tiny_ocr", "detector")


def test_shipped_ocr_model_decodes_consistently():
    """The real reader on synthetic crops: well-formed results, the same alone as in a batch."""
    from alprd.recognition.onnx_models import OnnxPlateOCR

    models = default_models_dir()
    entry = load_entry(models, "plate_ocr", "ocr")
    ocr = OnnxPlateOCR(entry)
    crops = []
    for text in ("AB123", "7XYZ42"):
        crop = np.full((60, 200, 3), 235, np.uint8)
        cv2.rectangle(crop, (2, 2), (197, 57), (20, 20, 20), 2)
        cv2.putText(crop, text, (12, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (15, 15, 15), 3)
        crops.append(crop)
    batch = ocr.read(crops)
    assert len(batch) == 2
    for crop, t in zip(crops, batch):
        assert set(t.text) <= set(entry.alphabet)
        assert len(t.text) == len(t.char_confidences) <= 10
        assert all(0.0 <= c <= 1.0 for c in t.char_confidences)
        assert t.confidence == pytest.approx(min(t.char_confidences) if t.text else 0.0, abs=1e-4)
        alone = ocr.read([crop])[0]
        assert alone.text == t.text
        assert alone.char_confidences == pytest.approx(t.char_confidences, abs=1e-3)
