"""Frame sources: a camera (OpenCV or picamera2), a video file, a folder of timestamped images.

Every source is an iterator of `(t_seconds, frame)` with `frame` uint8 RGB H x W x 3, plus `close()`.
Live cameras stamp frames with seconds since the source started (time.monotonic), the clock the microphone
uses too; file sources stamp frames with media time. Hardware is opened on first iteration, never at
import or construction time. OpenCV / picamera2 are imported only where used.

A live camera that disappears (open fails, read fails or raises) is retried with exponential back-off and
reported (logged, counted in `stats`) instead of ending the stream, so that the rest of the device (audio)
keeps running.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from firstwords.edge.errors import DataError, DeviceError, MissingExtraError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
CAMERA_HINT = "pip install 'firstwords[camera]'"


@runtime_checkable
class FrameSource(Protocol):
    """Iterator of (t_seconds, uint8 RGB H x W x 3 frame); `close()` releases the device or file."""

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]: ...

    def close(self) -> None: ...


@dataclass
class CaptureStats:
    frames: int = 0  # frames delivered
    read_failures: int = 0  # reads that failed or raised
    open_failures: int = 0  # (re)opens that failed
    reconnects: int = 0  # successful reopenings after a failure

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise MissingExtraError(f"OpenCV is needed for cameras, video files and image folders; {CAMERA_HINT}") from e
    return cv2


@dataclass
class Backoff:
    """Retry delays for a vanished camera: first, first*factor, ... up to `maximum` seconds."""
    first: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0
    _next: float = field(default=0.0, init=False, repr=False)

    def next_delay(self) -> float:
        self._next = self.first if self._next == 0.0 else min(self._next * self.factor, self.maximum)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


class _Reader(Protocol):
    """What a live camera adapter opens: read() -> RGB frame or None on failure; release()."""

    def read(self) -> np.ndarray | None: ...

    def release(self) -> None: ...


class ResilientCamera:
    """A live camera behind an `open_reader` callable; survives the device vanishing.

    Frames are thinned to at most `fps` (a camera that delivers faster is read but not passed on) and stamped
    with seconds since `epoch` (time.monotonic(); share it with the microphone so both use one clock).
    """

    def __init__(self, open_reader: Callable[[], _Reader], fps: float, name: str,
                 backoff: Backoff | None = None, epoch: float | None = None,
                 max_consecutive_failures: int | None = None) -> None:
        self._open_reader = open_reader
        self.fps = fps
        self.name = name
        self.backoff = backoff if backoff is not None else Backoff()
        self.epoch = epoch
        self.stats = CaptureStats()
        # None = retry forever (live device); a number = give up with DeviceError (tests, tools).
        self.max_consecutive_failures = max_consecutive_failures
        self._stop = threading.Event()
        self._reader: _Reader | None = None

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _fail(self, what: str, failures: int) -> None:
        delay = self.backoff.next_delay()
        log.warning("camera %s: %s (%d in a row); retrying in %.1f s", self.name, what, failures, delay)
        if self.max_consecutive_failures is not None and failures >= self.max_consecutive_failures:
            raise DeviceError(f"camera {self.name}: {what} {failures} times in a row; check that it is "
                              "connected and not used by another program")
        self._wait(delay)

    def _release(self) -> None:
        if self._reader is not None:
            try:
                self._reader.release()
            except Exception as e:  # noqa: BLE001  # a vanished device may fail to release; we are dropping it anyway
                log.debug("camera %s: release failed: %s", self.name, e)
            self._reader = None

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        epoch = self.epoch if self.epoch is not None else time.monotonic()
        period = 1.0 / self.fps
        next_t = 0.0
        failures = 0
        had_failure = False
        try:
            while not self._stop.is_set():
                if self._reader is None:
                    try:
                        self._reader = self._open_reader()
                    except (DeviceError, OSError, RuntimeError) as e:
                        self.stats.open_failures += 1
                        failures += 1
                        had_failure = True
                        self._fail(f"cannot open ({e})", failures)
                        continue
                    if had_failure:
                        self.stats.reconnects += 1
                        had_failure = False
                        log.warning("camera %s: reconnected", self.name)
                try:
                    frame = self._reader.read()
                except Exception as e:  # noqa: BLE001  # drivers raise all sorts when a USB camera is pulled
                    log.debug("camera %s: read raised %r", self.name, e)
                    frame = None
                if frame is None:
                    self.stats.read_failures += 1
                    failures += 1
                    had_failure = True
                    self._release()
                    self._fail("read failed", failures)
                    continue
                failures = 0
                self.backoff.reset()
                t = time.monotonic() - epoch
                if t + 1e-3 < next_t:  # faster than the configured fps: skip
                    continue
                next_t = max(next_t + period, t)
                self.stats.frames += 1
                yield t, frame
        finally:
            self._release()

    def close(self) -> None:
        self._stop.set()


class _OpenCVReader:
    def __init__(self, cv2: Any, device: int | str, width: int, height: int, fps: float) -> None:
        self.cv2 = cv2
        self.cap = cv2.VideoCapture(device)
        if not self.cap.isOpened():
            self.cap.release()
            raise DeviceError(f"OpenCV cannot open camera {device!r}")
        # Configure once: a low-resolution stream (the model resizes to its input anyway).
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.cap.set(cv2.CAP_PROP_FPS, fps)
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the freshest frame, not a backlog
        self.size = (width, height)

    def read(self) -> np.ndarray | None:
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        if (bgr.shape[1], bgr.shape[0]) != self.size:  # drivers may ignore the requested size
            bgr = self.cv2.resize(bgr, self.size, interpolation=self.cv2.INTER_AREA)
        return self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)

    def release(self) -> None:
        self.cap.release()


def parse_camera_device(device: str | int) -> int | str:
    """"0" -> 0 (an OpenCV index); "/dev/video0" or a URL stays a string."""
    if isinstance(device, int):
        return device
    return int(device) if device.strip().isdigit() else device


class OpenCVCamera(ResilientCamera):
    """A USB / V4L2 camera through OpenCV: index ("0") or device path ("/dev/video0")."""

    def __init__(self, device: int | str, width: int, height: int, fps: float, *,
                 backoff: Backoff | None = None, epoch: float | None = None,
                 max_consecutive_failures: int | None = None) -> None:
        cv2 = import_cv2()
        dev = parse_camera_device(device)
        super().__init__(lambda: _OpenCVReader(cv2, dev, width, height, fps), fps, str(device),
                         backoff=backoff, epoch=epoch, max_consecutive_failures=max_consecutive_failures)


class _PiCamera2Reader:
    def __init__(self, width: int, height: int, fps: float) -> None:
        from picamera2 import Picamera2  # imported only on a Pi with the camera stack

        self.cam = Picamera2()
        # libcamera's "BGR888" is laid out R, G, B in memory, i.e. RGB for numpy.
        cfg = self.cam.create_video_configuration(main={"size": (width, height), "format": "BGR888"},
                                                  controls={"FrameRate": float(fps)})
        self.cam.configure(cfg)
        self.cam.start()

    def read(self) -> np.ndarray | None:
        arr = self.cam.capture_array("main")
        return None if arr is None else np.ascontiguousarray(arr[:, :, :3])

    def release(self) -> None:
        self.cam.stop()
        self.cam.close()


def picamera2_available() -> bool:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        return False
    return True


class PiCamera2Source(ResilientCamera):
    """The Raspberry Pi camera module through picamera2 (configured once, low-resolution main stream)."""

    def __init__(self, width: int, height: int, fps: float, *, backoff: Backoff | None = None,
                 epoch: float | None = None) -> None:
        if not picamera2_available():
            raise MissingExtraError("picamera2 is not installed; on Raspberry Pi OS: sudo apt install "
                                    "python3-picamera2 (or use an OpenCV camera: --camera 0)")
        super().__init__(lambda: _PiCamera2Reader(width, height, fps), fps, "picamera2", backoff=backoff,
                         epoch=epoch)


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
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{p}: not a readable image")
            next_t = t + period
            self.stats.frames += 1
            yield t, _resize_to(cv2, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)

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


def open_camera(device: str, width: int, height: int, fps: float, epoch: float | None = None) -> FrameSource:
    """The device config's camera: "picamera2", an OpenCV index ("0") or a device path."""
    if device == "picamera2":
        return PiCamera2Source(width, height, fps, epoch=epoch)
    return OpenCVCamera(device, width, height, fps, epoch=epoch)


def open_frame_file_source(path: str | Path, fps: float | None = None,
                           size: tuple[int, int] | None = None) -> FrameSource:
    """A video file or an image folder."""
    p = Path(path)
    if p.is_dir():
        return ImageFolderSource(p, fps=fps, size=size)
    return VideoFileSource(p, fps=fps, size=size)
