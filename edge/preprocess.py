"""Frame preprocessing in numpy, identical for torch evaluation and the ONNX runtime.

A frame is uint8 RGB H x W x 3. It is resized whole (no crop) to size x size with bilinear interpolation
(pixel centres aligned, as OpenCV's INTER_LINEAR and torch's align_corners=False), scaled to [0, 1] and
normalised per channel.

With OpenCV installed (the `camera` extra) the resize is cv2.resize on the uint8 frame: ~0.3 ms for a
640 x 480 camera frame against several ms in numpy, so preparing a frame costs a fraction of encoding it.
OpenCV rounds its fixed-point result to uint8 (under one grey level from the exact interpolation, 0.25 on
average); numpy computes it exactly. The export-time parity gate runs this same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:  # optional (the camera extra); numpy does the same interpolation without it
    import cv2
except ImportError:  # pragma: no cover - depends on the install
    cv2 = None
from firstwords.edge.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Validate one frame: uint8, H x W x 3 (a 2-D grey frame is expanded to RGB)."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"a frame must be uint8 RGB, got dtype {frame.dtype}; convert with "
                         "np.clip(x * 255, 0, 255).astype(np.uint8) if it holds floats in [0, 1]")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"a frame must be H x W x 3 RGB, got shape {frame.shape}")
    return frame


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Source coordinate of each output pixel centre; clamp at the borders.
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (x - lo).astype(np.float32)


def _resize(frame: np.ndarray, size: int, use_cv2: bool | None = None) -> np.ndarray:
    """uint8 H x W x 3 -> size x size x 3 in [0, 255]: uint8 from OpenCV, float32 from numpy."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    if cv2 is not None and use_cv2 is not False:
        return cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
    y0, y1, wy = _axis_weights(h, size)
    x0, x1, wx = _axis_weights(w, size)
    # Gather the two source rows of each output row while still uint8 (size rows, not the whole frame), then
    # interpolate in float32.
    top, bottom = frame[y0].astype(np.float32), frame[y1].astype(np.float32)
    rows = top + (bottom - top) * wy[:, None, None]
    left, right = rows[:, x0], rows[:, x1]
    return left + (right - left) * wx[None, :, None]


def resize_bilinear(frame: np.ndarray, size: int, use_cv2: bool | None = None) -> np.ndarray:
    """uint8 H x W x 3 -> float32 size x size x 3 in [0, 255]. use_cv2: None = when installed."""
    return _resize(frame, size, use_cv2).astype(np.float32, copy=False)


def prepare_images(frames: Sequence[np.ndarray] | np.ndarray, size: int,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Frames -> float32 [N, 3, size, size], normalised. frames: a list of uint8 H x W x 3 (or H x W grey)
    frames, one H x W x 3 frame, or an [N, H, W, 3] array; anything else is an InputError."""
    what = ("frames must be a list of uint8 H x W x 3 frames, one such frame or an [N, H, W, 3] array; got "
            "{}")
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = [frames]
        elif frames.ndim != 4:  # 0-d has no len(); 1-D / 2-D arrays are not frames (put a grey one in a list)
            raise InputError(what.format(f"an array of shape {frames.shape}"))
    elif isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
        raise InputError(what.format(type(frames).__name__))
    elif not isinstance(frames, Sequence):
        frames = list(frames)  # e.g. a generator or deque
    if len(frames) == 0:
        raise InputError("no frames given")
    # (x / 255 - mean) / std as one multiply-add per pixel
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(3, 1, 1)
    offset = (-np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
    out = np.empty((len(frames), 3, size, size), dtype=np.float32)
    for i, f in enumerate(frames):
        img = _resize(check_frame(f), size).transpose(2, 0, 1)  # uint8 or float32; cast by the multiply
        np.multiply(img, scale, out=out[i])
        out[i] += offset
    return out
