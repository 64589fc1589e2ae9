"""Reading one image file safely: the size comes from the file's header first, and an image above a pixel
limit is refused before anything is decoded (a 1.2 MB PNG can claim 20000 x 20000 pixels = 1.2 GB of RGB).

`read_image(path, max_pixels=MAX_PIXELS)` -> uint8 RGB H x W x 3 (OpenCV decodes). Used for frames from
image folders (edge.frame_files) and for `ask --image`; `encode_image_files(encoder, paths)` embeds many.
`image_size(path)` reads (width, height) from the header
of PNG, JPEG, BMP, PPM/PGM and WebP files, without decoding.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError

MAX_PIXELS = 25_000_000  # a 6000 x 4000 photo (72 MB decoded); camera frames are far smaller
FORMATS = "PNG, JPEG, BMP, PPM/PGM, WebP"
_HEADER_BYTES = 1 << 20  # how far into a JPEG the frame header is looked for (EXIF thumbnails come first)


def _png(f: BinaryIO) -> tuple[int, int]:
    f.seek(8)
    length, kind = struct.unpack(">I4s", f.read(8))
    if kind != b"IHDR" or length < 8:
        raise ValueError("no IHDR chunk")
    return struct.unpack(">II", f.read(8))


def _jpeg(f: BinaryIO) -> tuple[int, int]:
    f.seek(2)
    while f.tell() < _HEADER_BYTES:
        b = f.read(1)
        while b and b != b"\xff":  # skip to the next marker
            b = f.read(1)
        while b == b"\xff":  # fill bytes
            b = f.read(1)
        if not b:
            break
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: the frame header
            _precision, h, w = struct.unpack(">BHH", f.read(5))
            return w, h
        f.seek(length - 2, 1)
    raise ValueError("no JPEG frame header")


def _bmp(f: BinaryIO) -> tuple[int, int]:
    f.seek(14)
    (size,) = struct.unpack("<I", f.read(4))
    if size == 12:
        w, h = struct.unpack("<HH", f.read(4))
    else:
        w, h = struct.unpack("<ii", f.read(8))
    return abs(w), abs(h)


def _pnm(f: BinaryIO) -> tuple[int, int]:
    f.seek(2)
    fields: list[int] = []
    token = b""
    while len(fields) < 2 and f.tell() < 4096:
        c = f.read(1)
        if not c:
            break
        if c == b"#":  # a comment to the end of the line
            f.readline()
            c = b" "
        if c.isspace():
            if token:
                fields.append(int(token))
                token = b""
        else:
            token += c
    if len(fields) < 2:
        raise ValueError("no PNM size")
    return fields[0], fields[1]


def _webp(f: BinaryIO) -> tuple[int, int]:
    f.seek(12)
    kind = f.read(4)
    f.seek(20)
    data = f.read(10)
    if kind == b"VP8X":
        return 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if kind == b"VP8L":
        bits = int.from_bytes(data[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF
    raise ValueError("unknown WebP chunk")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header; DataError when missing, unreadable or not one of FORMATS."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such image file")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file; give an image file ({FORMATS})")
    try:
        with p.open("rb") as f:
            magic = f.read(16)
            if magic.startswith(b"\x89PNG\r\n\x1a\n"):
                w, h = _png(f)
            elif magic.startswith(b"\xff\xd8"):
                w, h = _jpeg(f)
            elif magic.startswith(b"BM"):
                w, h = _bmp(f)
            elif magic[:1] == b"P" and magic[1:2] in (b"2", b"3", b"5", b"6"):
                w, h = _pnm(f)
            elif magic.startswith(b"RIFF") and magic[8:12] == b"WEBP":
                w, h = _webp(f)
            else:
                raise ValueError("unknown format")
    except OSError as e:
        raise DataError(f"{p}: cannot read this image ({e})") from e
    except (ValueError, struct.error) as e:
        raise DataError(f"{p}: not a readable image ({e}); give a {FORMATS} file") from e
    if w <= 0 or h <= 0:
        raise DataError(f"{p}: not a readable image (its header says {w} x {h} pixels)")
    return int(w), int(h)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The image as uint8 RGB H x W x 3; refused (DataError) above `max_pixels`, before decoding."""
    p = Path(path)
    w, h = image_size(p)
    if w * h > max_pixels:
        raise DataError(f"{p}: {w} x {h} pixels is above the limit of {max_pixels:,} pixels; scale it down "
                        f"first (e.g. `convert {p.name} -resize 2000x2000 small.jpg`)")
    try:
        import cv2
    except ImportError as e:
        raise MissingExtraError("reading images needs OpenCV: pip install 'firstwords[camera]'") from e
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{p}: not a readable image (OpenCV cannot decode it; the file may be damaged)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def encode_image_files(encoder: Any, paths: Sequence[str | Path], batch: int = 64,
                       max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image embeddings [N, D] of image files (edge.encode.Encoder), read and encoded `batch` at a time so
    that RAM stays bounded however many files there are."""
    return np.concatenate([encoder.encode_image([read_image(p, max_pixels) for p in paths[i:i + batch]])
                           for i in range(0, len(paths), batch)])
