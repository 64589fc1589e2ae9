"""A fake `picamera2` with the real API's shape (Picamera2: create_video_configuration, configure, start,
capture_array, stop, close) for tests. Frames are synthetic RGB, delivered at the configured FrameRate.

FAKE_CAMERA_STALL_AFTER=N: after N frames capture_array blocks for good, as a hung camera driver does;
FAKE_CAMERA_STALL_FILE=path: the wall time of the stall is written there (so a test can time what follows).
"""

from __future__ import annotations

import os
import time

import numpy as np

__all__ = ["Picamera2"]


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        self.size = (640, 480)
        self.fps = 30.0
        self.started = False
        self.frames = 0
        self._next = 0.0
        stall = os.environ.get("FAKE_CAMERA_STALL_AFTER", "")
        self.stall_after = int(stall) if stall else None
        self._rng = np.random.default_rng(0)

    def create_video_configuration(
        self, main: dict | None = None, controls: dict | None = None, **kw
    ) -> dict:
        return {"main": dict(main or {}), "controls": dict(controls or {})}

    def configure(self, config: dict) -> None:
        self.size = tuple(config["main"].get("size", self.size))
        self.fps = float(config["controls"].get("FrameRate", self.fps))

    def start(self) -> None:
        self.started = True
        self._next = time.monotonic()

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera must be started before capture_array")
        if self.stall_after is not None and self.frames >= self.stall_after:
            path = os.environ.get("FAKE_CAMERA_STALL_FILE")
            if path:
                with open(path, "w") as f:
                    f.write(repr(time.time()))
            while True:  # a hung driver: the call never returns
                time.sleep(3600)
        self._next += 1.0 / self.fps
        time.sleep(max(0.0, self._next - time.monotonic()))
        self.frames += 1
        w, h = self.size
        # libcamera's "BGR888" as numpy sees it: H x W x 3 in R, G, B order; a fourth (padding) channel is
        # what XBGR8888 would add, so give one to exercise the adapter's slicing.
        frame = np.empty((h, w, 4), np.uint8)
        frame[:] = self._rng.integers(0, 256, size=(1, 1, 4), dtype=np.uint8)
        return frame

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
