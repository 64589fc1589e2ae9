"""What the learner loop is given and gives back: its options, its running figures, its report, a health
snapshot for the service's watchdog, and the typed events its stage threads send to the pairing thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from firstwords.edge.pair import TimedUtterance

# ------------------------------------------------------------------------------------ interfaces we consume


class ImageTextEncoder(Protocol):
    """edge.encode.Encoder."""

    dim: int

    def prepare(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...

    def encode_image_array(self, x: np.ndarray) -> np.ndarray: ...

    def encode_utterance(self, texts: Sequence[str]) -> np.ndarray: ...

    def knows(self, word: str) -> bool: ...


class WordMemory(Protocol):
    """edge.memory.AssociativeMemory."""

    def learn(self, words: Sequence[str], frame_embeddings: np.ndarray, t: float, utterance_text: str,
              prior: Mapping[str, np.ndarray] | None = None) -> Any: ...


class Segmenter(Protocol):
    """edge.vad: feed(t, samples) -> segments with .start, .end, .audio; flush() at the end."""

    def feed(self, t: float, samples: np.ndarray) -> list[Any]: ...

    def flush(self) -> list[Any]: ...


# ------------------------------------------------------------------------------------ options and figures

@dataclass
class LearnerOptions:
    realtime: bool = True  # live or paced replay: drop frames when behind; False: back-pressure, drop nothing
    fps: float = 5.0  # frames per second used for pairing (CVCL: 5); the capture thread thins to this
    max_frames: int = 32  # frames per utterance window at most (CVCL: 32)
    frame_queue: int = 16  # frames waiting for the encoder; full -> oldest dropped (live)
    encode_batch: int = 8  # frames per encoder call at most (whatever is waiting, live)
    encode_workers: int = 1  # batches encoded at once (a full-speed replay: one per core, in encoding order)
    grace: float = 2.0  # s: live, close a window this long after its end even if no frame came
    ring_seconds: float = 60.0  # s of frame embeddings kept for pairing
    vad_margin: float = 0.5  # s: a speech segment's padded start may precede the VAD's open-speech mark
    status_interval: float = 1.0  # s between status callbacks (and health ticks)
    clock_origin: float | None = 0.0  # media time of the session start (files: 0); None = the first time seen
    min_word_chars: int = 1
    max_word_chars: int = 40  # longer "words" (an ASR / transcript hiccup) are dropped, not learned
    keep_media: bool = False  # keep a thumbnail of each utterance's middle frame with its memory episode
    media_size: int = 96  # px, longest side of that thumbnail
    # s of speech waiting for recognition above which a live run warns (once) and counts; audio is never
    # dropped for it, the bound only says the recogniser cannot keep up (config [audio] max_backlog_s)
    max_backlog_s: float = 30.0


@dataclass
class LearnerStats:
    frames_captured: int = 0
    frames_encoded: int = 0
    frames_dropped: int = 0  # live only: dropped because the encoder was behind
    # frames the encoder refused (wrong shape / dtype / time): dropped, session goes on
    frames_rejected: int = 0
    audio_blocks: int = 0
    audio_seconds: float = 0.0
    audio_blocks_rejected: int = 0  # blocks the VAD refused (wrong shape / dtype): skipped, session goes on
    nonfinite_samples: int = 0  # NaN / Inf audio samples replaced by silence before the VAD
    speech_segments: int = 0
    utterances: int = 0  # utterances with words, learned from
    empty_recognitions: int = 0  # speech the recogniser made nothing of
    speech_backlog_s: float = 0.0  # s of speech segmented by the VAD and not yet recognised (now)
    speech_backlog_max_s: float = 0.0  # the largest that backlog was in this run
    backlog_exceeded: int = 0  # live: times the backlog rose above LearnerOptions.max_backlog_s
    utterances_without_frames: int = 0
    utterances_rejected: int = 0  # utterances the memory refused (InputError): skipped, session goes on
    words_heard: int = 0
    words_rejected: int = 0  # words longer than max_word_chars, dropped from their utterance
    words_learned: int = 0  # distinct words learned from in this run
    media_time: float = 0.0  # s: how far the audio / transcript clock has come (read; speech may still queue)
    paired_time: float = 0.0  # s: end of the latest utterance recognised and paired with frames (done with)
    errors: list[str] = field(default_factory=list)  # fatal: a stage thread died; the run stopped early

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class LearnerReport:
    stats: dict[str, Any]
    latency: dict[str, dict[str, float]]
    wall_seconds: float
    media_seconds: float
    interrupted: bool
    top_words: list[tuple[str, int]]
    warnings: list[str] = field(default_factory=list)  # odd input skipped and counted; the run went on

    @property
    def errors(self) -> list[str]:
        """Fatal errors: a stage thread died and the run stopped early (one line each)."""
        return list(self.stats.get("errors", ()))

    @property
    def realtime_factor(self) -> float:
        """Media seconds processed per wall second (> 1: faster than real time)."""
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class Health:
    """A snapshot of the running learner, for a watchdog (edge systemd notify) and `status`. Times are wall
    clock (time.time()), None when it never happened; `progress` grows whenever any stage does work."""

    started: float
    last_frame_at: float | None
    last_utterance_at: float | None
    frames_in: int  # frames captured (after thinning to the pairing fps)
    audio_in: int  # audio blocks fed to the VAD
    frames_dropped: int
    utterances_learned: int
    words_learned: int
    audio_overflows: int
    last_error: str | None
    progress: int
    speech_backlog_s: float = 0.0  # s of speech waiting for recognition


class HealthClock:
    """The thread-safe counters behind `Health`: every stage calls `beat()` when it has done work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.progress = 0
        self.last_frame_at: float | None = None
        self.last_utterance_at: float | None = None
        self.last_error: str | None = None

    def beat(self, frame: bool = False, utterance: bool = False) -> None:
        now = time.time() if (frame or utterance) else 0.0
        with self._lock:
            self.progress += 1
            if frame:
                self.last_frame_at = now
            if utterance:
                self.last_utterance_at = now

    def error(self, line: str) -> None:
        with self._lock:
            self.last_error = line

    def snapshot(self, stats: LearnerStats, audio_overflows: int) -> Health:
        with self._lock:
            return Health(self.started, self.last_frame_at, self.last_utterance_at, stats.frames_captured,
                          stats.audio_blocks, stats.frames_dropped, stats.utterances, stats.words_learned,
                          audio_overflows, self.last_error, self.progress, stats.speech_backlog_s)


# ------------------------------------------------------------------------------- events to the pairing thread

@dataclass(frozen=True)
class FramesEncoded:
    times: list[float]
    embeddings: np.ndarray  # [K, D]
    thumbs: list[np.ndarray | None]  # keep_media thumbnails (None each when off)


@dataclass(frozen=True)
class UtteranceHeard:
    utterance: TimedUtterance
    from_speech: bool = False  # recognised from a speech segment (its pending mark is cleared on arrival)


@dataclass(frozen=True)
class SpeechDone:
    """A speech segment recognised as nothing. Its pending mark, like an utterance's, is cleared by the
    pairing thread when the event arrives, so that no window closes on a bound that passed an utterance
    still on its way."""


@dataclass(frozen=True)
class StreamEnded:
    stream: str  # "frames" or "utterances"


@dataclass(frozen=True)
class Tick:
    """Nothing new; time has passed (live windows may close)."""


Event = FramesEncoded | UtteranceHeard | SpeechDone | StreamEnded | Tick
