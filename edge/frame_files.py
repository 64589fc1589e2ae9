"""Frame sources from files, for replay: a video file, a folder of timestamped images, and pacing either as a
camera would deliver it. Same interface as the cameras of edge.capture: an iterator of `(t_seconds, frame)`
(uint8 RGB H x W x 3, stamped with media time) plus `close()`.

Odd files do not end a session: an image that cannot be read, or is above the pixel limit of edge.images,
is skipped and counted (`stats.unreadable`); a video whose frames are above that limit is refused before any
frame is decoded.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.capture import IMAGE_SUFFIXES, CaptureStats, FrameSource, import_cv2
from firstwords.edge.errors import DataError
from firstwords.edge.images import MAX_PIXELS, read_image

log = logging.getLogger(__name__)


def _resize_to(cv2: Any, rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


class VideoFileSource:
    """Frames of a video file, stamped with media time, thinned to at most `fps` (None = every frame)."""

    def __init__(self, path: str | Path, fps: float | None = None,
                 size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such video file")
        self.fps = fps
        self.size = size  # (width, height) to resize to, e.g. the device's camera size
        self.stats = CaptureStats()
        self._stop = threading.Event()

    def duration(self) -> float | None:
        """Seconds, from the container (None if unknown)."""
        cv2 = import_cv2()
        cap = cv2.VideoCapture(str(self.path))
        try:
            n, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        finally:
            cap.release()
        return n / fps if n > 0 and fps > 0 else None

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        cv2 = import_cv2()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataError(f"{self.path}: OpenCV cannot read this video; re-encode it (e.g. MJPG .avi or "
                            "mp4v .mp4) or extract frames into a folder")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > MAX_PIXELS:
            cap.release()
            raise DataError(f"{self.path}: frames of {w} x {h} pixels are above the limit of {MAX_PIXELS:,}; "
                            "scale the video down first (e.g. ffmpeg -i IN -vf scale=1280:-2 OUT.mp4)")
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        period = 1.0 / self.fps if self.fps else 0.0
        next_t = 0.0
        i = 0
        try:
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    break
                # Frame index / native fps is exact for constant-rate files; POS_MSEC is the fallback.
                t = i / native if native > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                i += 1
                if t + 1e-6 < next_t:
                    continue
                next_t = t + period
                self.stats.frames += 1
                yield t, _resize_to(cv2, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)
        finally:
            cap.release()

    def close(self) -> None:
        self._stop.set()


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)$")


def _read_sidecar(folder: Path) -> dict[str, float] | None:
    """timestamps.json ({"file": t, ...} or [{"file":..,"t":..}, ...]) or timestamps.csv (file,t)."""
    jpath, cpath = folder / "timestamps.json", folder / "timestamps.csv"
    try:
        if jpath.is_file():
            raw = json.loads(jpath.read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                return {str(k): float(v) for k, v in raw.items()}
            return {str(r["file"]): float(r["t"]) for r in raw}
        if cpath.is_file():
            with cpath.open(newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.reader(fh) if r]
            if rows and rows[0][:2] == ["file", "t"]:
                rows = rows[1:]
            return {r[0]: float(r[1]) for r in rows}
    except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError) as e:
        raise DataError(f"{folder}: cannot read the timestamps sidecar ({e}); expected timestamps.json as "
                        '{"frame.png": 1.25, ...} or timestamps.csv with rows file,t (seconds)') from e
    return None


class ImageFolderSource:
    """A folder of images with times: from a sidecar (timestamps.json / timestamps.csv, seconds), else from
    the names: a stem ending in a decimal number with a point ("t_12.40.png") is seconds; an integer
    ("000123.png") is a frame index at `index_fps`."""

    def __init__(self, folder: str | Path, fps: float | None = None, index_fps: float = 5.0,
                 size: tuple[int, int] | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: no such image folder")
        self.fps = fps
        self.size = size
        self.index_fps = index_fps
        self.stats = CaptureStats()
        self._stop = threading.Event()
        self.items = self._timeline()

    def _timeline(self) -> list[tuple[float, Path]]:
        side = _read_sidecar(self.folder)
        if side is not None:
            items = [(t, self.folder / name) for name, t in side.items()]
        else:
            items = []
            for p in self.folder.iterdir():
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                m = _NUMBER.search(p.stem)
                if m is None:
                    raise DataError(f"{p}: cannot tell this image's time; name frames by index "
                                    "(000123.png) or seconds (t_12.40.png), or add timestamps.json")
                num = m.group(1)
                items.append((float(num) if "." in num else int(num) / self.index_fps, p))
        if not items:
            raise DataError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        return sorted(items, key=lambda x: (x[0], x[1].name))

    def duration(self) -> float:
        return self.items[-1][0]

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        cv2 = import_cv2()
        period = 1.0 / self.fps if self.fps else 0.0
        next_t = -np.inf
        for t, p in self.items:
            if self._stop.is_set():
                break
            if t + 1e-6 < next_t:
                continue
            try:
                rgb = read_image(p)
            except DataError as e:  # one bad file must not end the session: skipped, counted, said once
                self.stats.unreadable += 1
                if self.stats.unreadable == 1:
                    self.stats.first_unreadable = str(e)
                (log.warning if self.stats.unreadable == 1 else log.info)("frame skipped: %s", e)
                continue
            next_t = t + period
            self.stats.frames += 1
            yield t, _resize_to(cv2, rgb, self.size)

    def close(self) -> None:
        self._stop.set()


class PacedSource:
    """Releases a file source's frames at their media time / speed (speed=1: as a camera would).
    Stamps stay media time, so they line up with a file-fed microphone started at the same moment."""

    def __init__(self, source: FrameSource, speed: float = 1.0, start: float | None = None) -> None:
        self.source = source
        self.speed = speed
        self.start = start  # time.monotonic() at media time 0; None = first iteration
        self.stats = getattr(source, "stats", CaptureStats())
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        start = self.start if self.start is not None else time.monotonic()
        for t, frame in self.source:
            delay = start + t / self.speed - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._stop.is_set():
                break
            yield t, frame

    def close(self) -> None:
        self._stop.set()
        self.source.close()


def open_frame_file_source(path: str | Path, fps: float | None = None,
                           size: tuple[int, int] | None = None) -> FrameSource:
    """A video file or an image folder."""
    p = Path(path)
    if p.is_dir():
        return ImageFolderSource(p, fps=fps, size=size)
    return VideoFileSource(p, fps=fps, size=size)
