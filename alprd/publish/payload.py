"""The read payload (schema alprd.read/1, kept beside this file in schema/read-v1.schema.json)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

import cv2
import numpy as np

from alprd.recognition.base import PlateRead

SCHEMA = "alprd.read/1"


def uuid7(ms: int | None = None) -> str:
    """RFC 9562 UUIDv7: 48-bit Unix ms, then random bits. Sorts by time as text and as bytes."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))


def iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def read_payload(read: PlateRead, *, read_id: str, unit: str, camera: str, timestamp_ms: int,
                 frame_index: int, frame_shape: tuple[int, ...], models: dict[str, str],
                 crop: np.ndarray | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {
        "schema": SCHEMA,
        "read_id": read_id,
        "unit": unit,
        "camera": camera,
        "plate": read.text,
        "confidence": round(read.confidence, 4),
        "char_confidences": list(read.char_confidences),
        "detection_confidence": round(read.detection_confidence, 4),
        "timestamp": iso_ms(timestamp_ms),
        "timestamp_ms": timestamp_ms,
        "frame_index": frame_index,
        "box": list(read.box),
        "frame": {"width": int(frame_shape[1]), "height": int(frame_shape[0])},
        "models": models,
    }
    if crop is not None and crop.size:
        ok, enc = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            p["crop_jpeg"] = base64.b64encode(enc.tobytes()).decode("ascii")
    if extra:
        p.update(extra)
    return p


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
