"""Fakes at the hardware edge, shared by the tests: the same interfaces as the real devices."""

from __future__ import annotations

import threading
import time

import numpy as np
from firstwords.edge.hear import SAMPLE_RATE, MicrophoneSource


class FileFedMicrophone(MicrophoneSource):
    """Hardware edge: instead of PortAudio, a thread calls the real callback with blocks of a recording, at
    the pace a sound card would (block_ms per block)."""

    def __init__(self, audio: np.ndarray, **kw):
        super().__init__(**kw)
        self.audio = audio
        self.fed_blocks = 0
        self.finished = threading.Event()

    def start(self):
        if self._stream is not None:
            return
        self.rate = SAMPLE_RATE
        self.t0 = time.monotonic()
        self._stream = threading.Thread(target=self._feed, daemon=True)
        self._stream.start()

    def _feed(self):
        n = int(SAMPLE_RATE * self.block_ms / 1000)
        nxt = self.t0
        for i in range(0, len(self.audio), n):
            if self._closed:
                break
            nxt += n / SAMPLE_RATE
            time.sleep(max(0.0, nxt - time.monotonic()))
            block = self.audio[i:i + n].reshape(-1, 1)
            self._callback(block, len(block), None, None)
            self.fed_blocks += 1
        self.finished.set()

    def close(self):
        self._closed = True
