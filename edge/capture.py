"""Live frame sources: a camera (OpenCV or picamera2). Files (a video, a folder of images) are in
edge.frame_files, behind the same interface.

Every source is an iterator of `(t_seconds, frame)` with `frame` uint8 RGB H x W x 3, plus `close()`.
Live cameras stamp frames with seconds since the source started (time.monotonic), the clock the microphone
uses too; file sources stamp frames with media time. Hardware is opened on first iteration, never at
import or construction time. OpenCV / picamera2 are imported only where used.

A live camera that disappears (open fails, read fails or raises) is retried with exponential back-off and
reported (logged, counted in `stats`) instead of ending the stream, so that the rest of the device (audio)
keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from firstwords.edge.errors import DeviceError, MissingExtraError

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
    unreadable: int = 0  # files' frames that could not be read or were too large: skipped
    first_unreadable: str = ""  # why the first of them was skipped

    def to_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise MissingExtraError("OpenCV is needed for cameras, video files and image folders; "
                                f"{CAMERA_HINT}") from e
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
            except Exception as e:  # noqa: BLE001  # a vanished device may fail to release: dropped anyway
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


def open_camera(device: str, width: int, height: int, fps: float, epoch: float | None = None) -> FrameSource:
    """The device config's camera: "picamera2", an OpenCV index ("0") or a device path."""
    if device == "picamera2":
        return PiCamera2Source(width, height, fps, epoch=epoch)
    return OpenCVCamera(device, width, height, fps, epoch=epoch)
