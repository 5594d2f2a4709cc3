"""Still images (`alprd read`, an images camera) read as hostile input: the size the file's header
claims is checked before anything is decoded.

A 30000x30000 PNG of zeros is under 1 MB on disk and 2.7 GB once decoded, so decoding first and
looking later is not an option. The header is parsed here (PNG IHDR, JPEG SOFn, BMP, WebP, TIFF),
and anything over MAX_IMAGE_PIXELS, or in a format this cannot measure, is refused in one line."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from alprd.errors import UserError

# OpenCV's own cap (OPENCV_IO_MAX_IMAGE_PIXELS) defaults to 2^30 pixels, which the 30000x30000
# bomb is under, and whether a change to it is seen depends on when OpenCV first read it.
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: above any camera still the unit reads (8K UHD is 33 MP)
MAX_IMAGE_BYTES = 256 << 20
_FORMATS = "JPEG, PNG, BMP, WebP or TIFF"


class ImageRefused(UserError):
    """A still image that is not read: unreadable, unknown format, or too many pixels."""


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            h, w = struct.unpack_from(">HH", data, i + 5)
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    end = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack_from(end + "H", data, ifd)
    dims: dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, typ = struct.unpack_from(end + "HH", data, at)
        if tag in (256, 257) and typ in (3, 4):
            dims[tag] = struct.unpack_from(end + ("H" if typ == 3 else "I"), data, at + 8)[0]
    return (dims[256], dims[257]) if len(dims) == 2 else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header, or None when the format is not one of the
    measured ones or the header is broken."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)  # type: ignore[return-value]
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            (dib,) = struct.unpack_from("<I", data, 14)
            if dib == 12:
                return struct.unpack_from("<HH", data, 18)  # type: ignore[return-value]
            w, h = struct.unpack_from("<ii", data, 18)
            return abs(w), abs(h)  # a negative height is a top-down bitmap
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                (bits,) = struct.unpack_from("<I", data, 21)
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            return None
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:  # header cut short
        return None
    return None


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise ImageRefused(f"{path}: cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRefused(f"{path}: not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageRefused(f"{path}: {st.st_size} bytes is over the {MAX_IMAGE_BYTES >> 20} MiB image limit")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise ImageRefused(f"{path}: over the {MAX_IMAGE_BYTES >> 20} MiB image limit")
        return data
    except OSError as e:
        raise ImageRefused(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def load_still(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A still image decoded as BGR, after its header's size was checked; ImageRefused otherwise."""
    p = Path(path)
    data = _read(p)
    size = image_size(data)
    if size is None:
        raise ImageRefused(f"{p} is not a readable image (expected {_FORMATS} with a readable header)")
    w, h = size
    if w < 1 or h < 1:
        raise ImageRefused(f"{p} is not a readable image (its header says {w}x{h} pixels)")
    if w * h > max_pixels:
        raise ImageRefused(f"{p}: {w}x{h} pixels ({w * h / 1e6:.0f} MP) is over the {max_pixels / 1e6:.0f} MP "
                           "image limit; not decoded")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV 5 raises where 4 returned None
        img = None
    if img is None:
        raise ImageRefused(f"{p} is not a readable image (corrupt or truncated)")
    return img
