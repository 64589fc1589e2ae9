"""Images for the report without any imaging library: PNG encoding (zlib), PPM reading, a colour map, and
data URIs, so that a device without matplotlib or Pillow still writes a report with pictures."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

# Viridis at 9 stops (perceptually uniform, readable in grey print); interpolated linearly.
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], np.float64)


def colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)), viridis."""
    x = np.clip(np.nan_to_num(np.asarray(x, np.float64)), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.floor(x).astype(np.int64).clip(0, len(_VIRIDIS) - 2)
    f = (x - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - f) + _VIRIDIS[lo + 1] * f + 0.5).astype(np.uint8)


def encode_png(img: np.ndarray) -> bytes:
    """uint8 H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) -> PNG bytes."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"encode_png takes H x W [x 1|3|4] uint8, got shape {a.shape}")
    h, w, c = a.shape
    colour_type = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))  # filter type 0 on every row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + \
        chunk(b"IEND", b"")


def read_ppm(data: bytes) -> np.ndarray:
    """A binary PPM (P6, 8 bit; what the learner keeps as media without OpenCV) -> uint8 H x W x 3."""
    parts: list[bytes] = []
    pos = 0
    while len(parts) < 4:  # magic, width, height, maxval; '#' comments skipped
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        if end == pos:
            raise ValueError("truncated PPM header")
        parts.append(data[pos:end])
        pos = end
    if parts[0] != b"P6" or int(parts[3]) != 255:
        raise ValueError("only 8-bit binary PPM (P6) is supported")
    w, h = int(parts[1]), int(parts[2])
    body = data[pos + 1:pos + 1 + w * h * 3]
    if len(body) != w * h * 3:
        raise ValueError("truncated PPM data")
    return np.frombuffer(body, np.uint8).reshape(h, w, 3)


def media_uri(data: bytes) -> str | None:
    """A data URI for a kept media blob (JPEG as is, PPM converted to PNG); None if unrecognised."""
    if data[:3] == b"\xff\xd8\xff":
        return data_uri(data, "image/jpeg")
    if data[:2] == b"P6":
        try:
            return data_uri(encode_png(read_ppm(data)), "image/png")
        except ValueError:
            return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data_uri(data, "image/png")
    return None


def data_uri(data: bytes | str, mime: str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """A small float map [gh, gw] -> [h, w], bilinear with cell centres aligned (as a map over a frame)."""
    gh, gw = x.shape
    ys = np.clip((np.arange(h) + 0.5) * gh / h - 0.5, 0, gh - 1)
    xs = np.clip((np.arange(w) + 0.5) * gw / w - 0.5, 0, gw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy
