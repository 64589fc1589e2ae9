"""A fake `sounddevice` with the real module's API as firstwords uses it (query_devices, query_hostapis,
check_input_settings, InputStream with a callback, PortAudioError) for tests: one 16 kHz mono input device.
The stream's thread calls the callback with blocks at the real pace.

FAKE_MIC_WAV=path: play this 16-bit mono wav first (then quiet noise); otherwise quiet noise only.
"""

from __future__ import annotations

import os
import threading
import time
import wave

import numpy as np

_DEVICE = {
    "name": "fake microphone",
    "index": 0,
    "hostapi": 0,
    "max_input_channels": 1,
    "max_output_channels": 0,
    "default_samplerate": 16000.0,
}


class PortAudioError(Exception):
    pass


def query_devices(device=None, kind=None):
    if kind is None and device is None:
        return [dict(_DEVICE)]
    if device not in (None, 0, "fake microphone"):
        raise ValueError(f"No input device matching {device!r}")
    return dict(_DEVICE)


def query_hostapis(index=None):
    return {"name": "fake"}


def check_input_settings(device=None, channels=None, dtype=None, samplerate=None, **kw) -> None:
    if samplerate not in (None, 16000):
        raise PortAudioError("Invalid sample rate")


def _wav() -> np.ndarray:
    path = os.environ.get("FAKE_MIC_WAV")
    if not path:
        return np.zeros(0, np.float32)
    with wave.open(path, "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return data.astype(np.float32) / 32768.0


class InputStream:
    def __init__(
        self, device=None, channels=1, samplerate=16000, dtype="float32", blocksize=512, callback=None, **kw
    ) -> None:
        self.samplerate, self.blocksize, self.callback = int(samplerate), int(blocksize), callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        audio = _wav()
        rng = np.random.default_rng(0)
        n, pos, nxt = self.blocksize, 0, time.monotonic()
        while not self._stop.is_set():
            nxt += n / self.samplerate
            time.sleep(max(0.0, nxt - time.monotonic()))
            block = audio[pos : pos + n]
            if len(block) < n:
                block = np.concatenate([block, rng.normal(0, 1e-4, n - len(block)).astype(np.float32)])
            pos += n
            self.callback(block.reshape(-1, 1), n, None, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
