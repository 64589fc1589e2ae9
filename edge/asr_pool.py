"""Speech recognition in parallel: several recognisers in worker processes, results back in time order.

One pocketsphinx decoder uses one core; a replay on a laptop (or a board with cores to spare) is paced by
it. `RecognizerPool` keeps N recognisers, one per worker process (a decoder holds the GIL while it decodes, so
threads would not help), and `OrderedRecognition` feeds it utterances in the order they were heard and hands
the transcripts back in that same order, so pairing and the memory see exactly what one decoder would have
given them: the memory learns the same words with the same strengths (tested).

A recogniser that adapts from utterance to utterance (pocketsphinx's cepstral mean) would hear differently
depending on which worker got which utterance. Such a recogniser has `advance_cmn(audio) -> state` and
`transcribe(audio, cmn=state)`: the pool keeps its front end here (the same acoustic model and features, no
language model: a few MB), fed every utterance's features in order (through a one-word search: about 2 % of
decoding), and each utterance goes to a worker with the state a single recogniser would have had at its
start.

    pool = RecognizerPool(RecognizerSpec("pocketsphinx", {"vocabulary": words}), workers=2)
    ordered = OrderedRecognition(pool)
    for seg in segments:
        for done in ordered.submit(seg, seg.audio):   # Recognized(item, transcript, error, seconds),
            ...                                       # in the order submitted
    for done in ordered.drain():
        ...
    pool.close()
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_RECOGNIZER: Any = None  # the worker process's own recogniser, built on its first utterance


@dataclass(frozen=True)
class RecognizerSpec:
    """How to build a recogniser in another process: `make_recognizer(name, **kwargs)` (picklable)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        from firstwords.edge.asr import make_recognizer

        return make_recognizer(self.name, **self.kwargs)

    def build_tracker(self) -> Any:
        """What follows the recogniser's adaptation in order (edge.asr.make_cmn_tracker)."""
        from firstwords.edge.asr import make_cmn_tracker

        return make_cmn_tracker(self.name, **self.kwargs)


def _transcribe(spec: RecognizerSpec, audio: np.ndarray, state: Any = None) -> tuple[Any, float]:
    """(transcript, seconds of compute) in a worker; `state`: the adaptation to start from (advance_cmn's)."""
    # Built here rather than in a pool initializer: an initializer's exception only breaks the pool, while an
    # exception here reaches the caller as what it is (e.g. pocketsphinx missing, a bad model path).
    global _RECOGNIZER
    if _RECOGNIZER is None:
        _RECOGNIZER = spec.build()
    t0 = time.perf_counter()
    if state is None:
        return _RECOGNIZER.transcribe(audio), time.perf_counter() - t0
    return _RECOGNIZER.transcribe(audio, cmn=state), time.perf_counter() - t0


def _start(spec: RecognizerSpec) -> bool:
    """Build the worker's recogniser; whether it adapts from utterance to utterance (has `advance_cmn`)."""
    global _RECOGNIZER
    if _RECOGNIZER is None:
        _RECOGNIZER = spec.build()
    return hasattr(_RECOGNIZER, "advance_cmn")


def recognise_in_order(recognizer: Any, audio: np.ndarray) -> Any:
    """One recogniser's transcript of the next utterance, exactly as a pool would give it (the same
    adaptation state handed on): what the learner runs with a single recogniser."""
    if hasattr(recognizer, "advance_cmn"):
        return recognizer.transcribe(audio, cmn=recognizer.advance_cmn(audio))
    return recognizer.transcribe(audio)


@dataclass
class Recognized:
    """One utterance back from the pool: its transcript, or the error its recogniser raised."""

    item: Any
    transcript: Any = None
    error: BaseException | None = None
    seconds: float = 0.0  # the worker's compute time for it


def default_workers() -> int:
    """One recogniser per core (at least one)."""
    return max(1, os.cpu_count() or 1)


class RecognizerPool:
    """N recognisers in worker processes ("spawn": safe beside the learner's threads). `submit(audio)` returns
    a Future of the Transcript. The workers build their recognisers in parallel at start."""

    def __init__(self, spec: RecognizerSpec, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.spec = spec
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        # Fail here, not on the first utterance, when the recogniser cannot be built (pocketsphinx missing).
        try:
            adapts = [f.result() for f in [self._pool.submit(_start, spec) for _ in range(self.workers)]]
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        # Here, the recogniser's adaptation followed in order (see the module doc), when it has one; one that
        # hears each utterance afresh (whisper) is not built here at all.
        self._tracker = spec.build_tracker() if any(adapts) else None

    def submit(self, audio: np.ndarray) -> Future:
        """Recognise `audio` (utterances must be submitted in the order they were heard)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        try:
            state = self._tracker.advance_cmn(audio) if self._tracker is not None else None
        except Exception as e:  # noqa: BLE001  # audio the recogniser refuses: this utterance's error alone
            failed: Future = Future()
            failed.set_exception(e)
            return failed
        return self._pool.submit(_transcribe, self.spec, audio, state)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> RecognizerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OrderedRecognition:
    """Keeps utterances in flight on a pool and returns their transcripts in submission order.

    `submit(item, audio)` queues one utterance and returns those that are done at the head of the line
    (possibly none) as `Recognized`; at most `max_in_flight` (default 2 per worker) wait, after which submit
    blocks on the oldest. `ready()` returns the head's finished ones without submitting; `drain()` waits for
    all. A recogniser's error comes back in its utterance's `Recognized.error`: the others go on."""

    def __init__(self, pool: RecognizerPool, max_in_flight: int | None = None) -> None:
        self.pool = pool
        self.max_in_flight = max_in_flight or 2 * pool.workers
        self._line: deque[tuple[Any, Future]] = deque()

    def __len__(self) -> int:
        return len(self._line)

    def submit(self, item: Any, audio: np.ndarray) -> list[Recognized]:
        self._line.append((item, self.pool.submit(audio)))
        done = self.ready()
        while len(self._line) >= self.max_in_flight:
            done.append(self._pop())
        return done

    def ready(self) -> list[Recognized]:
        done = []
        while self._line and self._line[0][1].done():
            done.append(self._pop())
        return done

    def drain(self) -> Iterator[Recognized]:
        while self._line:
            yield self._pop()

    def _pop(self) -> Recognized:
        item, fut = self._line.popleft()
        try:
            transcript, seconds = fut.result()
        except Exception as e:  # noqa: BLE001  # this utterance's failure, reported with it
            return Recognized(item, error=e)
        return Recognized(item, transcript, None, seconds)
