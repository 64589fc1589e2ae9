"""Figures of how fast a replay goes, for tools/bench_replay.py: frame preparation against the image tower,
and a folder of sessions built from one session (symlinked copies under names in time order)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def camera_frame(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A uint8 RGB frame of a camera's size with smooth content (gradients and noise, as a scene has)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def prep_over_tower(encoder: Any, frame: np.ndarray, repeats: int = 50) -> dict[str, float]:
    """Per frame, batch 1, on the encoder's threads: median ms of `encoder.prepare` (resize + normalise of
    `frame`) and of `encoder.encode_image_array` (the image tower), and their ratio."""
    x = encoder.prepare([frame])
    encoder.encode_image_array(x)  # warm-up
    prep, tower = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = encoder.prepare([frame])
        t1 = time.perf_counter()
        encoder.encode_image_array(x)
        t2 = time.perf_counter()
        prep.append(t1 - t0)
        tower.append(t2 - t1)
    p, t = 1000 * float(np.median(prep)), 1000 * float(np.median(tower))
    return {"prep_ms_per_frame": round(p, 3), "tower_ms_per_frame": round(t, 3),
            "prep_over_tower": round(p / t, 3) if t > 0 else float("inf")}


def folder_of_copies(session: str | Path, root: str | Path, copies: int = 3) -> Path:
    """`root` holding `copies` session folders that are the same recording: each a folder of symlinks to the
    session's files, its session.json given a start time an hour after the previous one's (so the folder's
    time order is day1, day2, ...)."""
    src, root = Path(session).resolve(), Path(root)
    meta = json.loads((src / "session.json").read_text(encoding="utf-8"))
    for i in range(copies):
        d = root / f"day{i + 1}"
        d.mkdir(parents=True, exist_ok=True)
        for p in src.iterdir():
            if p.name != "session.json" and not (d / p.name).exists():
                os.symlink(p, d / p.name)
        (d / "session.json").write_text(json.dumps({**meta, "start_time": 3600.0 * i}), encoding="utf-8")
    return root
