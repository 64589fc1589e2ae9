"""Preprocessed image sets for export: held-out images for the parity gate, training frames for calibration.

Both go through the device's preprocessing (`edge.preprocess.prepare_images`) and are picked
deterministically (evenly spread over the set), so two exports of one checkpoint see the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from firstwords.edge.evaluate import Trial
from firstwords.edge.preprocess import prepare_images
from firstwords.export.data import load_cvcl_metadata, load_eval_set, load_frame


def spread(items: Sequence, k: int) -> list:
    """k items evenly spread over the sequence (deterministic: the same files every export)."""
    if k >= len(items):
        return list(items)
    idx = sorted({round(i * (len(items) - 1) / max(k - 1, 1)) for i in range(k)})
    return [items[i] for i in idx]


def load_images(paths: Sequence[Path], size: int, mean, std) -> np.ndarray:
    """Frame files -> normalised float32 [N, 3, size, size], as the device prepares them."""
    out = np.empty((len(paths), 3, size, size), np.float32)
    for i, p in enumerate(paths):
        out[i] = prepare_images([load_frame(p)], size, mean, std)[0]
    return out


def eval_images(eval_path: Path, k: int, size: int, mean, std
                ) -> tuple[np.ndarray, list[str], list[Trial] | None]:
    """(images, labels, trials) from an eval set; trials only when the file holds CVCL's fixed trials."""
    ev = load_eval_set(eval_path)
    if ev.trials is not None:
        return load_images(ev.frame_paths, size, mean, std), ev.labels, ev.trials
    # Keep every category: spread the k images over the set sorted by category.
    order = sorted(range(len(ev.labels)), key=lambda i: (ev.labels[i], str(ev.frame_paths[i])))
    pick = spread(order, k)
    images = load_images([ev.frame_paths[i] for i in pick], size, mean, std)
    return images, [ev.labels[i] for i in pick], None


def calibration_images(calib_path: Path, k: int, size: int, mean, std) -> np.ndarray:
    """k training frames, evenly spread over the metadata's distinct frame files."""
    report = load_cvcl_metadata(calib_path)
    frames = sorted({str(p) for r in report.records for p in r.frame_paths})
    return load_images([Path(p) for p in spread(frames, k)], size, mean, std)
