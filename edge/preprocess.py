"""Frame preprocessing in numpy, identical for torch evaluation and the ONNX runtime.

A frame is uint8 RGB H x W x 3. It is resized whole (no crop) to size x size with bilinear interpolation
(pixel centres aligned, as OpenCV's INTER_LINEAR and torch's align_corners=False), scaled to [0, 1] and
normalised per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def resize_bilinear(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 H x W x 3 -> float32 size x size x 3 in [0, 255]."""
    h, w = frame.shape[:2]
    img = frame.astype(np.float32)
    if (h, w) == (size, size):
        return img
    y0, y1, wy = _axis_weights(h, size)
    x0, x1, wx = _axis_weights(w, size)
    rows = img[y0] * (1 - wy)[:, None, None] + img[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def prepare_images(frames: Sequence[np.ndarray] | np.ndarray, size: int,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Frames -> float32 [N, 3, size, size], normalised. frames: a list of uint8 H x W x 3 (or H x W grey) frames,
    one H x W x 3 frame, or an [N, H, W, 3] array; anything else is an InputError."""
    what = ("frames must be a list of uint8 H x W x 3 frames, one such frame or an [N, H, W, 3] array; got "
            "{}")
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = [frames]
        elif frames.ndim != 4:  # 0-d has no len(); 1-D / 2-D rows are not frames (wrap a grey frame in a list)
            raise InputError(what.format(f"an array of shape {frames.shape}"))
    elif isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
        raise InputError(what.format(type(frames).__name__))
    elif not isinstance(frames, Sequence):
        frames = list(frames)  # e.g. a generator or deque
    if len(frames) == 0:
        raise InputError("no frames given")
    mean_a = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
    std_a = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
    out = np.empty((len(frames), 3, size, size), dtype=np.float32)
    for i, f in enumerate(frames):
        img = resize_bilinear(check_frame(f), size) / 255.0
        out[i] = ((img - mean_a) / std_a).transpose(2, 0, 1)
    return out
