"""Per-stage latency figures of the learner loop, kept for the status line, `replay`'s summary and
profiling."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

STAGES = ("frame_preprocess", "image_encode", "vad", "asr", "utterance_encode", "pairing", "memory_update")


class StageLatencies:
    """Per-stage durations (seconds), thread-safe, the last `keep` of each; optional seconds of audio per
    call for the audio stages so real-time factors can be given."""

    def __init__(self, keep: int = 20000) -> None:
        self._lock = threading.Lock()
        self._d: dict[str, deque[float]] = {}
        self._n: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._audio_s: dict[str, float] = {}
        self._total_s: dict[str, float] = {}
        self.keep = keep

    def record(self, stage: str, seconds: float, items: int = 1, audio_seconds: float = 0.0) -> None:
        with self._lock:
            self._d.setdefault(stage, deque(maxlen=self.keep)).append(seconds)
            self._n[stage] = self._n.get(stage, 0) + 1
            self._items[stage] = self._items.get(stage, 0) + items
            self._total_s[stage] = self._total_s.get(stage, 0.0) + seconds
            if audio_seconds:
                self._audio_s[stage] = self._audio_s.get(stage, 0.0) + audio_seconds

    @contextmanager
    def time(self, stage: str, items: int = 1, audio_seconds: float = 0.0) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, time.perf_counter() - t0, items, audio_seconds)

    def samples(self, stage: str) -> list[float]:
        with self._lock:
            return list(self._d.get(stage, ()))

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {calls, items, median_ms, p90_ms, mean_ms, ms_per_item[, realtime_factor]}}."""
        out = {}
        with self._lock:
            for stage, d in self._d.items():
                a = np.asarray(d, dtype=np.float64) * 1000
                row = {"calls": self._n[stage], "items": self._items[stage],
                       "median_ms": round(float(np.median(a)), 3),
                       "p90_ms": round(float(np.percentile(a, 90)), 3),
                       "mean_ms": round(float(a.mean()), 3),
                       "ms_per_item": round(1000 * self._total_s[stage] / max(self._items[stage], 1), 3)}
                if self._audio_s.get(stage):
                    row["realtime_factor"] = round(self._total_s[stage] / self._audio_s[stage], 4)
                out[stage] = row
        return out

    def medians_ms(self) -> dict[str, float]:
        return {s: r["median_ms"] for s, r in self.summary().items()}
