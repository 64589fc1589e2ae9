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
  and written to memory, then `run()` returns; nothing already heard is lost (a transcript counts as heard up
  to the moment of the stop: all of it unpaced, up to the stop's media time paced).
- Odd input does not end a session: a frame the encoder refuses (RGBA, wrong dtype or shape, no finite time)
  is dropped and counted (`frames_rejected`); NaN / Inf audio samples are replaced by silence and counted
  (`nonfinite_samples`); long words and utterances the memory refuses are skipped and counted (edge.teach).
  Each kind of problem is logged once (a warning), then counted, and listed in the report's `warnings`.
- A stage thread that dies anyway (a broken model, a full disk, an undecodable video) stops the run: the
  error is one line in `stats.errors` (and `report.errors`), and what was heard until then is still learned.

`health()` gives a cheap, thread-safe snapshot for a watchdog; `on_tick(health)` is called about once a
second from `run()`. Every stage's latency is recorded in `Learner.latency` (edge.latency.StageLatencies).
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
from collections.abc import Callable, Iterable
from typing import Any

from firstwords.edge.asr import Recognizer
from firstwords.edge.latency import STAGES, StageLatencies
from firstwords.edge.learner_stages import SourceStages
from firstwords.edge.learner_types import (
    Event,
    FramesEncoded,
    Health,
    HealthClock,
    ImageTextEncoder,
    LearnerOptions,
    LearnerReport,
    LearnerStats,
    Segmenter,
    SpeechDone,
    StreamEnded,
    Tick,
    UtteranceHeard,
    WordMemory,
)
from firstwords.edge.pair import Paired, Pairer, TimedUtterance
from firstwords.edge.teach import Teacher

__all__ = ["STAGES", "Health", "Learner", "LearnerOptions", "LearnerReport", "LearnerStats", "StageLatencies"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ the loop

class Learner(SourceStages):
    """Runs the loop over the given sources until they end or `stop()` is called.

    frames: iterable of (t, uint8 RGB frame) with `close()` (edge.capture); None = no camera (every utterance
        is then reported without frames).
    audio + vad + recognizer: speech from a microphone or file (edge.hear / edge.vad / edge.asr);
    or transcript: timed utterances (edge.pair.TimedUtterance or anything with start, end, text) instead.
    audio_overflows: a callable giving the microphone queue's overflow count (for the status line).
    """

    def __init__(self, encoder: ImageTextEncoder, memory: WordMemory, frames: Iterable | None = None, *,
                 audio: Iterable | None = None, vad: Segmenter | None = None,
                 recognizer: Recognizer | None = None,
                 transcript: Iterable | None = None, options: LearnerOptions | None = None,
                 on_status: Callable[[LearnerStats], None] | None = None,
                 on_learned: Callable[[Paired, list[str]], None] | None = None,
                 on_utterance: Callable[[TimedUtterance], None] | None = None,
                 on_tick: Callable[[Health], None] | None = None,
                 audio_overflows: Callable[[], int] | None = None,
                 transcript_paced: float | None = None) -> None:
        if audio is not None and (vad is None or recognizer is None):
            raise ValueError("an audio source needs a vad and a recognizer")
        if audio is not None and transcript is not None:
            raise ValueError("give either audio or a transcript, not both")
        self.encoder, self.memory, self.frames = encoder, memory, frames
        self.audio, self.vad, self.recognizer, self.transcript = audio, vad, recognizer, transcript
        self.options = options if options is not None else LearnerOptions()
        self.on_status, self.on_utterance, self.on_tick = on_status, on_utterance, on_tick
        self._audio_overflows = audio_overflows
        self.transcript_paced = transcript_paced  # speed for a transcript in paced replay (None: at once)
        self.stats = LearnerStats()
        self.latency = StageLatencies()
        self.clock = HealthClock()
        self.teacher = Teacher(encoder, memory, self.options, self.stats, self.latency, self._reject,
                               on_learned)
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

    @property
    def word_counts(self) -> dict[str, int]:
        """How often each word was learned from in this run."""
        return self.teacher.word_counts

    def health(self) -> Health:
        """A snapshot for a watchdog: cheap, safe from any thread."""
        return self.clock.snapshot(self.stats, self.audio_overflows)

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
        if self.options.realtime and self.frames is not None:
            # The encoder's end marker from here too: a camera hung inside a read never lets the capture
            # thread send it, and the flush (and a SIGTERM's clean stop) would wait for it forever.
            self._put_end(self._frame_q)

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
        capture = getattr(self.frames, "stats", None)
        unreadable = int(getattr(capture, "unreadable", 0) or 0)
        s.nonfinite_samples += int(getattr(self.audio, "nonfinite_samples", 0) or 0)
        return LearnerReport(stats={**s.to_dict(), "frames_unreadable": unreadable,
                                    "audio_overflows": self.audio_overflows,
                                    "pairing": self.pairer.stats.to_dict()},
                             latency=self.latency.summary(), wall_seconds=time.perf_counter() - t0,
                             media_seconds=media, interrupted=interrupted, top_words=top,
                             warnings=self._warnings(unreadable, getattr(capture, "first_unreadable", "")))

    # -- plumbing ------------------------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        return lambda: signal.signal(signal.SIGTERM, old)

    def _reject(self, what: str, err: Exception) -> None:
        """Log a rejected input once per kind (its message with the numbers taken out); later ones are
        counted."""
        kind = what + ":" + re.sub(r"\d+(\.\d+)?", "N", str(err))
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s rejected and skipped: %s (further ones like it are only counted)", what, err)
        else:
            log.debug("%s rejected: %s", what, err)

    def _status(self) -> None:
        for callback, arg in ((self.on_status, self.stats), (self.on_tick, None)):
            if callback is None:
                continue
            try:
                callback(self.health() if arg is None else arg)
            except Exception as e:  # noqa: BLE001  # a display or watchdog hiccup must not end the session
                log.warning("%s callback failed: %s", "status" if arg is not None else "tick", e)

    def _warnings(self, frames_unreadable: int, first_unreadable: str = "") -> list[str]:
        """One line per kind of odd input that was skipped and counted (the run went on)."""
        s = self.stats
        first = f" (the first: {first_unreadable})" if first_unreadable else ""
        counts = ((frames_unreadable, f"unreadable frames were skipped{first}"),
                  (s.frames_rejected, "frames the encoder refused were skipped"),
                  (s.nonfinite_samples, "NaN or Inf audio samples were replaced by silence"),
                  (s.audio_blocks_rejected, "audio blocks the VAD refused were skipped"),
                  (s.utterances_rejected, "utterances the memory refused were skipped"),
                  (s.words_rejected, f"words over {self.options.max_word_chars} characters were dropped"),
                  (s.backlog_exceeded, f"times the speech waiting for recognition rose above "
                                       f"{self.options.max_backlog_s:g} s (at most "
                                       f"{s.speech_backlog_max_s:.0f} s; nothing was dropped)"))
        return [f"{n} {what}" for n, what in counts if n]

    def _spawn(self, name: str, fn: Callable[[], None], daemon: bool = True) -> None:
        def guarded() -> None:
            try:
                fn()
            except Exception as e:  # a dying worker must not hang the loop: report, stop, flush
                log.debug("learner thread %s failed", name, exc_info=True)
                line = " ".join(f"{name}: {type(e).__name__}: {e}".split())
                log.error("the %s stage failed, stopping: %s", name, line)
                self.stats.errors.append(line)
                self.clock.error(line)
                self.stop()
                # Let the pairing thread finish: the failed producer's stream has ended.
                if name == "encoder":
                    self._events.put(StreamEnded("frames"))
                elif name in ("asr", "transcript"):
                    self._utts_done.set()
                    self._events.put(StreamEnded("utterances"))
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

    # -- events -> pairing -> memory -----------------------------------------------------------------------
    def _pairing_loop(self) -> None:
        frames_done = utts_done = False
        try:
            while not (frames_done and utts_done):
                try:
                    ev: Event = self._events.get(timeout=0.2)
                except queue.Empty:
                    ev = Tick()
                if isinstance(ev, FramesEncoded):
                    for t, e, th in zip(ev.times, ev.embeddings, ev.thumbs, strict=True):
                        self.pairer.add_frame(t, (e, th))
                    self._seen_time(ev.times[-1])
                elif isinstance(ev, UtteranceHeard):
                    self.pairer.add_utterance(ev.utterance)
                    if ev.from_speech:
                        self._speech_done()
                    elif self.transcript is not None:
                        # A transcript's clock moves when its utterance reaches pairing, not when it is sent:
                        # a bound set by the sender could pass utterances still in the queue and close a
                        # window before its next utterance is known (seen under load: 32 frames, not 10).
                        with self._lock:
                            self._audio_clock = max(self._audio_clock, ev.utterance.start)
                    if self.on_utterance is not None:
                        self.on_utterance(ev.utterance)
                    self._seen_time(ev.utterance.end)
                elif isinstance(ev, SpeechDone):
                    self._speech_done()
                elif isinstance(ev, StreamEnded):
                    frames_done |= ev.stream == "frames"
                    utts_done |= ev.stream == "utterances"
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

    def _speech_done(self) -> None:
        """A recognised segment has reached pairing: the bound of utterances still to come moves on."""
        with self._lock:
            if self._asr_pending:
                self._asr_pending.popleft()

    def _seen_time(self, t: float) -> None:
        if self._first_t is None:
            self._first_t = t
        self.stats.media_time = max(self.stats.media_time, t)

    def _learn(self, p: Paired) -> None:
        self.teacher.learn(p)
        self.clock.beat()
