"""Pairing an utterance with the frames of its window (CVCL), in pure numpy.

CVCL pairs each utterance with the frames from its start to the next utterance's start, sampled at 5 fps and
capped at 32 frames. Live, the next utterance may never come (silence), so a window is also closed once it
is full: `max_frames / fps` seconds after the start. Frames (or their embeddings) wait in a bounded ring
buffer of recent (t, item).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from firstwords.edge.heard import HeardWord
from firstwords.edge.tokenize import words as split_words

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedUtterance:
    """An utterance on the session's clock — a transcript's line or what the recogniser heard — with its
    words.

    `words`: as `HeardWord`s (time and confidence; a transcript's have confidence 1.0 and the utterance's
    times). Empty means "not split yet": `heard_words()` then splits `text` with the project's tokenizer."""

    start: float  # seconds (same clock as the frames)
    end: float
    text: str
    speaker: str | None = None
    video: str | None = None  # CVCL CSV's "Video Name" (None elsewhere)
    words: tuple[HeardWord, ...] = ()

    def heard_words(self) -> tuple[HeardWord, ...]:
        if self.words:
            return self.words
        return tuple(HeardWord(w, self.start, self.end, 1.0) for w in split_words(self.text))


Utterance = TimedUtterance  # the name older callers of edge.pair use


@dataclass
class Paired:
    utterance: TimedUtterance
    window: tuple[float, float]  # seconds [start, end)
    times: np.ndarray  # float64 [K] frame times
    items: list[Any]  # K frames or frame embeddings

    @property
    def empty(self) -> bool:
        return len(self.items) == 0

    def stacked(self) -> np.ndarray:
        """The items as one array [K, ...] (embeddings -> [K, D])."""
        return np.stack(self.items) if self.items else np.zeros((0,), dtype=np.float32)


def window_end(start: float, next_start: float | None, utterance_end: float, fps: float,
               max_frames: int) -> float:
    """End of an utterance's window: the next utterance's start (or this one's end if that is later or
    unknown), never more than max_frames / fps after the start."""
    end = utterance_end if next_start is None else max(next_start, utterance_end)
    return min(end, start + max_frames / fps)


def select_frames(times: np.ndarray, start: float, end: float, fps: float, max_frames: int) -> np.ndarray:
    """Indices of frames with start <= t < end, at most one per 1/fps slot (the first in each), capped.

    `times` must be sorted ascending. A window shorter than one frame period still takes the one frame
    inside it.
    """
    times = np.asarray(times, dtype=np.float64)
    lo, hi = np.searchsorted(times, start, "left"), np.searchsorted(times, end, "left")
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(lo, hi)
    slot = np.floor((times[lo:hi] - start) * fps + 1e-9).astype(np.int64)
    first_in_slot = np.concatenate([[True], slot[1:] != slot[:-1]])
    return idx[first_in_slot][:max_frames]


class FrameRing:
    """Bounded ring of (t, item), kept sorted by time (items normally arrive in order)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._t: deque[float] = deque(maxlen=capacity)
        self._items: deque[Any] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._t)

    def add(self, t: float, item: Any) -> None:
        if self._t and t < self._t[-1]:  # rare (a camera clock hiccup): insert in order
            ts, its = list(self._t), list(self._items)
            k = int(np.searchsorted(ts, t, "right"))
            ts.insert(k, t)
            its.insert(k, item)
            self._t, self._items = deque(ts, self.capacity), deque(its, self.capacity)
            return
        self._t.append(t)
        self._items.append(item)

    @property
    def latest(self) -> float:
        return self._t[-1] if self._t else -np.inf

    @property
    def oldest(self) -> float:
        return self._t[0] if self._t else np.inf

    def times(self) -> np.ndarray:
        return np.fromiter(self._t, dtype=np.float64, count=len(self._t))

    def take(self, idx: np.ndarray) -> list[Any]:
        items = self._items
        return [items[int(i)] for i in idx]

    def drop_before(self, t: float) -> None:
        while self._t and self._t[0] < t:
            self._t.popleft()
            self._items.popleft()


@dataclass
class PairingStats:
    utterances: int = 0
    paired: int = 0
    without_frames: int = 0  # windows that held no frame (camera gone, frames dropped, clock skew)
    frames_paired: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Pairer:
    """Collects utterances and closes each one's window once the frames up to its end have arrived.

    Feed frames with `add_frame(t, item)` and utterances (in start order) with `add_utterance(u)`;
    `ready(now)` returns the utterances whose windows are complete: the frame clock (latest frame) has passed
    the window end, or `now` (another clock, e.g. the audio's, in live mode) has passed it by `grace` seconds.
    `flush()` closes all pending windows with whatever frames there are.
    """
    fps: float = 5.0
    max_frames: int = 32
    ring_seconds: float = 60.0  # how much history the ring keeps at `fps`
    grace: float = 2.0
    stats: PairingStats = field(default_factory=PairingStats)

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.max_frames < 1:
            raise ValueError("fps must be > 0 and max_frames >= 1")
        self.ring = FrameRing(max(int(self.ring_seconds * self.fps) + 1, self.max_frames * 2))
        self._pending: deque[TimedUtterance] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_frame(self, t: float, item: Any) -> None:
        self.ring.add(t, item)

    def add_utterance(self, u: TimedUtterance) -> None:
        self.stats.utterances += 1
        self._pending.append(u)

    def _window(self, i: int) -> tuple[float, float]:
        u = self._pending[i]
        nxt = self._pending[i + 1].start if i + 1 < len(self._pending) else None
        end = window_end(u.start, nxt, u.end, self.fps, self.max_frames)
        if nxt is None:
            # Until the next utterance comes, the window may stretch to the cap.
            end = u.start + self.max_frames / self.fps
        return u.start, end

    def _close(self, i: int, end_override: float | None = None) -> Paired:
        u = self._pending[i]
        start, end = self._window(i)
        if end_override is not None:
            end = max(min(end, end_override), u.end)
        times = self.ring.times()
        idx = select_frames(times, start, end, self.fps, self.max_frames)
        p = Paired(u, (start, end), times[idx], self.ring.take(idx))
        if p.empty:
            self.stats.without_frames += 1
            log.info("utterance %r at %.2f-%.2f s: no frames in its window [%.2f, %.2f) (ring holds "
                     "%.2f-%.2f s)",
                     u.text, u.start, u.end, start, end, self.ring.oldest, self.ring.latest)
        else:
            self.stats.paired += 1
            self.stats.frames_paired += len(idx)
        return p

    def ready(self, now: float | None = None, utterances_until: float | None = None) -> list[Paired]:
        """Close the windows that are complete.

        `utterances_until`: every utterance starting before this time has been added (the transcript's or the
        speech recogniser's progress); until then the last pending window may still be cut short by a
        late-arriving next utterance, so it stays open. None = the caller knows no more will come earlier.
        `now`: another clock (live: the audio's) that closes a window `grace` s after its end even if no
        frame came (camera gone, frames dropped)."""
        out: list[Paired] = []
        while self._pending:
            _, end = self._window(0)
            if len(self._pending) == 1 and utterances_until is not None and utterances_until < end:
                break
            frames_in = self.ring.latest >= end or (now is not None and now >= end + self.grace)
            if not frames_in:
                break
            out.append(self._close(0))
            self._pending.popleft()
        return out

    def flush(self, now: float | None = None) -> list[Paired]:
        """Close every pending window (end of a session, Ctrl-C); a last utterance's window ends at `now`
        (the last frame time if not given) rather than waiting for frames that will not come."""
        end_at = (now if now is not None else self.ring.latest) + 1e-6  # inclusive of the last frame
        out = []
        while self._pending:
            out.append(self._close(0, end_override=end_at if len(self._pending) == 1 else None))
            self._pending.popleft()
        return out


def pair_offline(frame_times: Sequence[float], utterances: Sequence[TimedUtterance], fps: float = 5.0,
                 max_frames: int = 32) -> list[np.ndarray]:
    """For analysis and tests: the frame indices of every utterance's window (utterances sorted by start)."""
    times = np.asarray(frame_times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    out = []
    for i, u in enumerate(utterances):
        nxt = utterances[i + 1].start if i + 1 < len(utterances) else None
        end = window_end(u.start, nxt, u.end, fps, max_frames)
        out.append(order[select_frames(times[order], u.start, end, fps, max_frames)])
    return out
