"""The learner loop: frames and speech in, an associative memory that keeps learning, live or in replay.

    capture thread ──► frame queue (bounded) ──► encoder thread ──┐
    audio thread (VAD) ──► speech queue ──► ASR thread ───────────┼──► events ──► pairing thread ──► memory
    (or a transcript thread giving timed utterances) ─────────────┘

- Live (`realtime=True`): when the encoder falls behind, the capture thread drops the OLDEST waiting frame
  (counted in `frames_dropped`); audio is never dropped by the loop (the speech queue is unbounded, the VAD is
  cheap), only the microphone's own bounded queue can overflow, and that is counted there (`audio_overflows`).
- Replay at full speed (`realtime=False`): queues apply back-pressure instead of dropping, so a replay learns
  from every frame and is limited only by the CPU.
- Stop (Ctrl-C, SIGTERM, `stop()`): sources are closed, pending utterances are paired with the frames at hand
  and written to memory, then `run()` returns; nothing already heard is lost (a transcript counts as heard up to
  the moment of the stop: all of it unpaced, up to the stop's media time paced).
- Odd input does not end a session: a frame the encoder refuses (RGBA, wrong dtype or shape, no finite time)
  is dropped and counted (`frames_rejected`); words longer than `max_word_chars` are dropped (`words_rejected`),
  an utterance text is clipped to MAX_TEXT_CHARS, and an utterance the memory still refuses (InputError) is
  skipped and counted (`utterances_rejected`). Each kind of problem is logged once (a warning), then counted.
  Other failures (a broken model, a full disk) still stop the run with the error in `stats.errors`.

Every stage's latency is recorded in `Learner.latency` (a `StageLatencies`) for the profiling tools.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from firstwords.edge.errors import InputError
from firstwords.edge.pair import Paired, Pairer, Utterance
from firstwords.edge.tokenize import words as split_words

log = logging.getLogger(__name__)

STAGES = ("frame_preprocess", "image_encode", "vad", "asr", "utterance_encode", "pairing", "memory_update")
MAX_TEXT_CHARS = 10_000  # an utterance's text kept with its episode (the memory refuses longer ones)


# ------------------------------------------------------------------------------------ interfaces we consume

class ImageTextEncoder(Protocol):
    dim: int

    def prepare(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...

    def encode_image_array(self, x: np.ndarray) -> np.ndarray: ...

    def encode_utterance(self, texts: Sequence[str]) -> np.ndarray: ...

    def knows(self, word: str) -> bool: ...


class WordMemory(Protocol):
    def learn(self, words: Sequence[str], frame_embeddings: np.ndarray, t: float, utterance_text: str,
              prior: Mapping[str, np.ndarray] | None = None) -> Any: ...


class Segmenter(Protocol):
    """edge.vad: feed(t, samples) -> segments with .start, .end, .audio; flush() at the end."""

    def feed(self, t: float, samples: np.ndarray) -> list[Any]: ...

    def flush(self) -> list[Any]: ...


class Recognizer(Protocol):
    """edge.asr: transcribe(audio float32 16 kHz) -> Transcript (with .text)."""

    def transcribe(self, audio: np.ndarray) -> Any: ...


# ------------------------------------------------------------------------------------ latency figures

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
                       "median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
                       "mean_ms": round(float(a.mean()), 3),
                       "ms_per_item": round(1000 * self._total_s[stage] / max(self._items[stage], 1), 3)}
                if self._audio_s.get(stage):
                    row["realtime_factor"] = round(self._total_s[stage] / self._audio_s[stage], 4)
                out[stage] = row
        return out

    def medians_ms(self) -> dict[str, float]:
        return {s: r["median_ms"] for s, r in self.summary().items()}


# ------------------------------------------------------------------------------------ options and figures

@dataclass
class LearnerOptions:
    realtime: bool = True  # live or paced replay: drop frames when behind; False: back-pressure, drop nothing
    fps: float = 5.0  # frames per second used for pairing (CVCL: 5); the capture thread thins to this
    max_frames: int = 32  # frames per utterance window at most (CVCL: 32)
    frame_queue: int = 16  # frames waiting for the encoder; full -> oldest dropped (live)
    encode_batch: int = 8  # frames per encoder call at most (whatever is waiting, live)
    grace: float = 2.0  # s: live, close a window this long after its end even if no frame came
    ring_seconds: float = 60.0  # s of frame embeddings kept for pairing
    vad_margin: float = 0.5  # s: a speech segment's padded start may precede the VAD's open-speech mark
    status_interval: float = 1.0  # s between status callbacks
    clock_origin: float | None = 0.0  # media time of the session start (files: 0); None = the first time seen
    min_word_chars: int = 1
    max_word_chars: int = 40  # longer "words" (an ASR / transcript hiccup) are dropped, not learned
    keep_media: bool = False  # keep a thumbnail of each utterance's middle frame with its memory episode
    media_size: int = 96  # px, longest side of that thumbnail


@dataclass
class LearnerStats:
    frames_captured: int = 0
    frames_encoded: int = 0
    frames_dropped: int = 0  # live only: dropped because the encoder was behind
    frames_rejected: int = 0  # frames the encoder refused (wrong shape / dtype / time): dropped, session goes on
    audio_blocks: int = 0
    audio_seconds: float = 0.0
    speech_segments: int = 0
    utterances: int = 0  # utterances with words, learned from
    empty_recognitions: int = 0  # speech the recogniser made nothing of
    utterances_without_frames: int = 0
    utterances_rejected: int = 0  # utterances the memory refused (InputError): skipped, session goes on
    words_heard: int = 0
    words_rejected: int = 0  # words longer than max_word_chars, dropped from their utterance
    words_learned: int = 0  # distinct words learned from in this run
    media_time: float = 0.0  # s: how far the audio / transcript clock has come (read; speech may still queue)
    paired_time: float = 0.0  # s: end of the latest utterance recognised and paired with frames (done with)
    errors: list[str] = field(default_factory=list)

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

    @property
    def realtime_factor(self) -> float:
        """Media seconds processed per wall second (> 1: faster than real time)."""
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _End:
    """Queue sentinel."""


_END = _End()


def thumbnail(frame: np.ndarray, size: int) -> np.ndarray:
    """A small copy of a frame (nearest-neighbour; longest side `size` px) for keep_media."""
    h, w = frame.shape[:2]
    scale = min(1.0, size / max(h, w))
    ys = (np.arange(max(1, int(h * scale))) / scale).astype(np.int64)
    xs = (np.arange(max(1, int(w * scale))) / scale).astype(np.int64)
    return np.ascontiguousarray(frame[ys][:, xs])


def encode_media(rgb: np.ndarray) -> bytes:
    """JPEG bytes (OpenCV) or, without OpenCV, a binary PPM: readable by any image viewer."""
    try:
        import cv2

        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            return buf.tobytes()
    except ImportError:
        pass
    h, w = rgb.shape[:2]
    return f"P6\n{w} {h}\n255\n".encode() + rgb.astype(np.uint8).tobytes()


def recognised_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    return str(getattr(result, "text", "") or "")


# ------------------------------------------------------------------------------------ the loop

class Learner:
    """Runs the loop over the given sources until they end or `stop()` is called.

    frames: iterable of (t, uint8 RGB frame) with `close()` (edge.capture); None = no camera (every utterance
        is then reported without frames).
    audio + vad + recognizer: speech from a microphone or file (edge.hear / edge.vad / edge.asr);
    or transcript: timed utterances (edge.pair.Utterance or anything with start, end, text) instead.
    audio_overflows: a callable giving the microphone queue's overflow count (for the status line).
    """

    def __init__(self, encoder: ImageTextEncoder, memory: WordMemory, frames: Iterable | None = None, *,
                 audio: Iterable | None = None, vad: Segmenter | None = None, recognizer: Recognizer | None = None,
                 transcript: Iterable | None = None, options: LearnerOptions | None = None,
                 on_status: Callable[[LearnerStats], None] | None = None,
                 on_learned: Callable[[Paired, list[str]], None] | None = None,
                 on_utterance: Callable[[Utterance], None] | None = None,
                 audio_overflows: Callable[[], int] | None = None, transcript_paced: float | None = None) -> None:
        if audio is not None and (vad is None or recognizer is None):
            raise ValueError("an audio source needs a vad and a recognizer")
        if audio is not None and transcript is not None:
            raise ValueError("give either audio or a transcript, not both")
        self.encoder, self.memory, self.frames = encoder, memory, frames
        self.audio, self.vad, self.recognizer, self.transcript = audio, vad, recognizer, transcript
        self.options = options if options is not None else LearnerOptions()
        self.on_status, self.on_learned, self.on_utterance = on_status, on_learned, on_utterance
        self._audio_overflows = audio_overflows
        self.transcript_paced = transcript_paced  # speed for a transcript in paced replay (None: at once)
        self.stats = LearnerStats()
        self.latency = StageLatencies()
        self.word_counts: dict[str, int] = {}
        o = self.options
        self.pairer = Pairer(fps=o.fps, max_frames=o.max_frames, ring_seconds=o.ring_seconds, grace=o.grace)
        self._stop = threading.Event()
        self._stop_wall = math.inf  # time.monotonic() when stop() was called
        self._frame_q: queue.Queue = queue.Queue(maxsize=o.frame_queue)
        # Speech segments waiting for the recogniser: unbounded live (audio is never dropped); bounded in a
        # full-speed replay so that the reader waits for the recogniser instead of filling RAM.
        self._speech_q: queue.Queue = queue.Queue(maxsize=0 if o.realtime else 64)
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._asr_pending: deque[float] = deque()  # starts of segments not yet recognised
        self._audio_clock = -math.inf  # end time of the last audio block fed to the VAD
        self._vad_open: float | None = None  # start of speech the VAD is still listening to
        self._utts_done = threading.Event()
        self._first_t: float | None = self.options.clock_origin
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()
        self._warned: set[str] = set()  # kinds of rejected input already logged

    # -- public --------------------------------------------------------------------------------------------
    @property
    def audio_overflows(self) -> int:
        return int(self._audio_overflows()) if self._audio_overflows else 0

    def stop(self) -> None:
        """Stop capturing; what was heard is still paired and learned before run() returns."""
        if self._stop.is_set():
            return
        self._stop_wall = time.monotonic()  # a paced transcript's utterances due before this were heard
        self._stop.set()
        for src in (self.frames, self.audio, self.transcript):
            close = getattr(src, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as e:  # noqa: BLE001  # a device failing to close must not block the flush
                    log.warning("closing %s failed: %s", type(src).__name__, e)

    def run(self, install_signal_handlers: bool = True) -> LearnerReport:
        """Run until the sources end or stop()/Ctrl-C/SIGTERM; returns figures. Call from one thread."""
        t0 = time.perf_counter()
        interrupted = False
        restore = self._install_signals() if install_signal_handlers else None
        try:
            self._start()
            try:
                while not self._done.wait(self.options.status_interval):
                    self._status()
            except KeyboardInterrupt:
                interrupted = True
                log.info("interrupted: flushing what was heard into memory")
                self.stop()
                self._done.wait()
        finally:
            self.stop()
            for th in self._threads:
                th.join(timeout=5.0)
            if restore is not None:
                restore()
        self._status()
        s = self.stats
        media = s.media_time - self._first_t if self._first_t is not None else 0.0
        top = sorted(self.word_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return LearnerReport(stats={**s.to_dict(), "audio_overflows": self.audio_overflows,
                                    "pairing": self.pairer.stats.to_dict()},
                             latency=self.latency.summary(), wall_seconds=time.perf_counter() - t0,
                             media_seconds=media, interrupted=interrupted, top_words=top)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        return lambda: signal.signal(signal.SIGTERM, old)

    def _reject(self, what: str, err: Exception) -> None:
        """Log a rejected input once per kind (its message with the numbers taken out); later ones are counted."""
        kind = what + ":" + re.sub(r"\d+(\.\d+)?", "N", str(err))
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s rejected and skipped: %s (further ones like it are only counted)", what, err)
        else:
            log.debug("%s rejected: %s", what, err)

    def _status(self) -> None:
        if self.on_status is not None:
            try:
                self.on_status(self.stats)
            except Exception as e:  # noqa: BLE001
                log.warning("status callback failed: %s", e)

    def _spawn(self, name: str, fn: Callable[[], None], daemon: bool = True) -> None:
        def guarded() -> None:
            try:
                fn()
            except Exception as e:  # a dying worker must not hang the loop: report, stop, flush
                log.exception("learner thread %s failed", name)
                self.stats.errors.append(f"{name}: {type(e).__name__}: {e}")
                self.stop()
                # Let the pairing thread finish: the failed producer's stream has ended.
                if name == "encoder":
                    self._events.put(("frames_end",))
                elif name in ("asr", "transcript"):
                    self._utts_done.set()
                    self._events.put(("utterances_end",))
                elif name == "pairing":
                    self._done.set()

        th = threading.Thread(target=guarded, name=f"learner-{name}", daemon=daemon)
        self._threads.append(th)
        th.start()

    def _start(self) -> None:
        self._spawn("pairing", self._pairing_loop, daemon=False)
        self._spawn("encoder", self._encoder_loop)
        self._spawn("capture", self._capture_loop)
        if self.audio is not None:
            self._spawn("asr", self._asr_loop)
            self._spawn("audio", self._audio_loop)
        else:
            self._spawn("transcript", self._transcript_loop)

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when stopping (replay back-pressure); True if put."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _put_end(self, q: queue.Queue) -> None:
        """The end marker always gets through the frame queue: live or stopping, room is made by dropping the
        oldest frame (counted); a full-speed replay waits for the encoder."""
        while True:
            try:
                q.put(_END, timeout=0.1)
                return
            except queue.Full:
                if not (self.options.realtime or self._stop.is_set()):
                    continue
                try:
                    item = q.get_nowait()
                    if not isinstance(item, _End):
                        self.stats.frames_dropped += 1
                except queue.Empty:
                    pass

    # -- capture -> frame queue ----------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        if self.frames is None:
            self._put_end(self._frame_q)
            return
        period = 1.0 / self.options.fps
        anchor: float | None = None  # time of the first frame: the grid of pairing slots starts there
        next_t = -math.inf
        try:
            for t, frame in self.frames:
                if self._stop.is_set():
                    break
                try:
                    t = float(t)
                    if not math.isfinite(t):
                        raise ValueError(t)
                except (TypeError, ValueError):
                    self.stats.frames_rejected += 1
                    self._reject("camera frame", InputError(f"a frame's time must be a finite number of seconds, "
                                                            f"got {type(t).__name__}"))
                    continue
                if t + 1e-6 < next_t:  # thin to the pairing fps
                    continue
                # Next slot on a fixed grid (not t + period, which drifts: 5 fps thinned to 2 fps gave 1.67 fps).
                if anchor is None:
                    anchor = t
                next_t = anchor + (math.floor((t - anchor) / period + 1e-6) + 1) * period
                self.stats.frames_captured += 1
                if not self.options.realtime:
                    self._wait_for_utterances(t)
                    if not self._put(self._frame_q, (t, frame)):
                        break
                    continue
                try:
                    self._frame_q.put_nowait((t, frame))
                except queue.Full:
                    # The encoder is behind: drop the oldest waiting frame, keep the freshest.
                    try:
                        self._frame_q.get_nowait()
                        self.stats.frames_dropped += 1
                    except queue.Empty:
                        pass
                    try:
                        self._frame_q.put_nowait((t, frame))
                    except queue.Full:
                        self.stats.frames_dropped += 1
        finally:
            self._put_end(self._frame_q)

    def _wait_for_utterances(self, t: float) -> None:
        """Full-speed replay: keep the frames within half the ring of the speech recogniser's progress, so
        that frames are not pushed out of the ring before the utterances they belong to are recognised."""
        ahead = self.options.ring_seconds / 2
        while (self.audio is not None and not self._utts_done.is_set() and not self._stop.is_set()
               and t > self._utterances_until() + ahead):
            self._utts_done.wait(0.05)

    # -- frame queue -> embeddings -------------------------------------------------------------------------
    def _encoder_loop(self) -> None:
        batch_max = max(1, self.options.encode_batch)
        ended = False
        while not ended:
            item = self._frame_q.get()
            if isinstance(item, _End):
                break
            batch = [item]
            while len(batch) < batch_max:
                try:
                    # Live: whatever is waiting. Full-speed replay: always full batches, so that a replay gives
                    # the same embeddings (and the same memory) run after run.
                    nxt = self._frame_q.get() if not self.options.realtime else self._frame_q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, _End):
                    ended = True
                    break
                batch.append(nxt)
            with self.latency.time("frame_preprocess", items=len(batch)):
                batch, x = self._prepare(batch)
            if not batch:
                continue
            times = [t for t, _ in batch]
            with self.latency.time("image_encode", items=len(batch)):
                emb = self.encoder.encode_image_array(x)
            self.stats.frames_encoded += len(batch)
            thumbs = ([thumbnail(f, self.options.media_size) for _, f in batch] if self.options.keep_media
                      else [None] * len(batch))
            self._events.put(("frames", times, emb, thumbs))
        self._events.put(("frames_end",))

    def _prepare(self, batch: list[tuple[float, Any]]) -> tuple[list[tuple[float, Any]], np.ndarray | None]:
        """Preprocess a batch; frames the encoder refuses are dropped and counted (one bad frame from the
        camera must not end the session). Returns the frames kept and their array."""
        try:
            return batch, self.encoder.prepare([f for _, f in batch])
        except InputError:
            pass
        kept, parts = [], []
        for item in batch:  # find the bad one(s): frame by frame
            try:
                parts.append(self.encoder.prepare([item[1]]))
                kept.append(item)
            except InputError as e:
                self.stats.frames_rejected += 1
                self._reject("camera frame", e)
        return kept, (np.concatenate(parts) if parts else None)

    # -- audio -> VAD -> speech queue -> ASR -> utterances -------------------------------------------------
    def _vad_open_start(self) -> float | None:
        """Start of the speech the VAD is still hearing (edge.vad's `open_start`), None in silence."""
        return getattr(self.vad, "open_start", None)

    def _audio_loop(self) -> None:
        assert self.vad is not None and self.audio is not None
        try:
            for block in self.audio:
                t, samples = (block.t, block.samples) if hasattr(block, "samples") else block
                dur = len(samples) / 16000.0
                with self.latency.time("vad", audio_seconds=dur):
                    segments = self.vad.feed(t, samples)
                self.stats.audio_blocks += 1
                self.stats.audio_seconds += dur
                self._enqueue_segments(segments)
                with self._lock:
                    self._audio_clock = t + dur
                    self._vad_open = self._vad_open_start()
                if self._stop.is_set():
                    break
        finally:
            self._enqueue_segments(self.vad.flush())
            with self._lock:
                self._vad_open = None
            self._put(self._speech_q, _END) or self._speech_q.put(_END)

    def _enqueue_segments(self, segments: list[Any]) -> None:
        for seg in segments:
            self.stats.speech_segments += 1
            with self._lock:
                self._asr_pending.append(seg.start)
            if not self._put(self._speech_q, seg):
                self._speech_q.put(seg)  # stopping: still recognise what was heard

    def _asr_loop(self) -> None:
        assert self.recognizer is not None
        while True:
            seg = self._speech_q.get()
            if isinstance(seg, _End):
                break
            dur = len(seg.audio) / 16000.0
            try:
                with self.latency.time("asr", audio_seconds=dur):
                    text = recognised_text(self.recognizer.transcribe(seg.audio))
            except Exception as e:  # noqa: BLE001  # one bad segment must not end the session
                log.warning("recogniser failed on speech at %.2f s: %s", seg.start, e)
                text = ""
            with self._lock:
                if self._asr_pending:
                    self._asr_pending.popleft()
            if text.strip():
                self._events.put(("utterance", Utterance(seg.start, seg.end, text.strip())))
            else:
                self.stats.empty_recognitions += 1
            self._events.put(("tick",))
        self._utts_done.set()
        self._events.put(("utterances_end",))

    def _utterances_until(self) -> float:
        """Every utterance starting before this time has reached the pairing thread (or is being recognised
        and will, in order)."""
        with self._lock:
            bounds = [self._audio_clock]
            if self._vad_open is not None:
                bounds.append(self._vad_open - self.options.vad_margin)
            if self._asr_pending:
                bounds.append(self._asr_pending[0] - self.options.vad_margin)
        return min(bounds)

    # -- transcript -> utterances --------------------------------------------------------------------------
    def _transcript_loop(self) -> None:
        """Deliver the transcript's utterances as they are heard. A stop (Ctrl-C, a failed worker) ends the
        transcript at the moment of the stop, not at whatever point this thread had reached: unpaced, the whole
        transcript is heard at once, so every utterance is still delivered (the pairing closes each window with
        the frames at hand); paced, the utterances whose end came before the stop are. Breaking on the stop
        flag instead made the result depend on thread timing: an encoder that failed before this thread had
        run learned nothing, although utterances had their frames encoded."""
        t_wall0 = time.monotonic()
        try:
            if self.transcript is not None:
                for u in self.transcript:
                    if self.transcript_paced:  # heard at its end
                        due = t_wall0 + u.end / self.transcript_paced
                        delay = due - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                        if self._stop.is_set() and due > self._stop_wall:
                            break  # not yet heard when the session stopped
                    utt = u if isinstance(u, Utterance) else Utterance(float(u.start), float(u.end), str(u.text),
                                                                       str(getattr(u, "speaker", "") or ""))
                    self._events.put(("utterance", utt))
                    with self._lock:
                        self._audio_clock = utt.start
        finally:
            self._utts_done.set()
            self._events.put(("utterances_end",))

    # -- events -> pairing -> memory -----------------------------------------------------------------------
    def _pairing_loop(self) -> None:
        frames_done = utts_done = False
        try:
            while not (frames_done and utts_done):
                try:
                    ev = self._events.get(timeout=0.2)
                except queue.Empty:
                    ev = ("tick",)
                kind = ev[0]
                if kind == "frames":
                    for t, e, th in zip(ev[1], ev[2], ev[3], strict=True):
                        self.pairer.add_frame(t, (e, th))
                    self._seen_time(ev[1][-1])
                elif kind == "utterance":
                    self.pairer.add_utterance(ev[1])
                    if self.on_utterance is not None:
                        self.on_utterance(ev[1])
                    self._seen_time(ev[1].end)
                elif kind == "frames_end":
                    frames_done = True
                elif kind == "utterances_end":
                    utts_done = True
                if self.audio is not None and self._audio_clock > -math.inf:
                    self._seen_time(self._audio_clock)
                if frames_done and utts_done:
                    break
                if self._stop.is_set() and frames_done:
                    continue  # draining: flush below once the recogniser has finished
                until = None if utts_done else self._utterances_until()
                t0 = time.perf_counter()
                if frames_done:  # no more frames will come: windows close on the utterance clock alone
                    ready = self.pairer.ready(now=math.inf if utts_done else until, utterances_until=until)
                else:
                    now = self._audio_clock if self.options.realtime else None
                    ready = self.pairer.ready(now=now, utterances_until=until)
                if ready:
                    self.latency.record("pairing", time.perf_counter() - t0, items=len(ready))
                for p in ready:
                    self._learn(p)
            for p in self.pairer.flush():
                self._learn(p)
            flush = getattr(self.memory, "flush", None)
            if flush is not None:
                flush()
        finally:
            self._done.set()

    def _seen_time(self, t: float) -> None:
        if self._first_t is None:
            self._first_t = t
        self.stats.media_time = max(self.stats.media_time, t)

    def _learn(self, p: Paired) -> None:
        u = p.utterance
        o = self.options
        self.stats.paired_time = max(self.stats.paired_time, u.end)
        ws = [w for w in split_words(u.text) if len(w) >= o.min_word_chars]
        long_words = sum(len(w) > o.max_word_chars for w in ws)
        if long_words:
            self.stats.words_rejected += long_words
            self._reject("word", InputError(f"a word of more than {o.max_word_chars} characters was dropped"))
            ws = [w for w in ws if len(w) <= o.max_word_chars]
        if not ws:
            return
        self.stats.words_heard += len(ws)
        if p.empty:
            self.stats.utterances_without_frames += 1
            return
        frames = np.stack([e for e, _ in p.items]).astype(np.float32, copy=False)
        kw = {}
        if self.options.keep_media:
            thumb = p.items[len(p.items) // 2][1]
            if thumb is not None:
                kw["media"] = encode_media(thumb)
        text = u.text if len(u.text) <= MAX_TEXT_CHARS else u.text[:MAX_TEXT_CHARS]
        try:
            known = sorted({w for w in ws if self.encoder.knows(w)})
            prior = None
            if known:
                with self.latency.time("utterance_encode", items=len(known)):
                    vecs = self.encoder.encode_utterance(known)
                prior = dict(zip(known, vecs, strict=True))
            with self.latency.time("memory_update"):
                self.memory.learn(ws, frames, u.start, text, prior=prior, **kw)
        except InputError as e:  # the memory refused this utterance (nothing learned): skip it, learn on
            self.stats.utterances_rejected += 1
            self._reject("utterance", e)
            return
        self.stats.utterances += 1
        for w in ws:
            if w not in self.word_counts:
                self.stats.words_learned += 1
            self.word_counts[w] = self.word_counts.get(w, 0) + 1
        if self.on_learned is not None:
            self.on_learned(p, ws)
