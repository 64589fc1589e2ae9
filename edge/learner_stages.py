"""The source stages of the learner loop (edge.learner): capture -> frame queue -> encoder; audio -> VAD ->
speech queue -> recogniser; or a transcript. Each runs in its own thread and sends typed events
(edge.learner_types) to the pairing thread. `SourceStages` is a part of `Learner`: it works on the learner's
queues, options, figures and clock; read edge/learner.py first."""

from __future__ import annotations

import logging
import math
import queue
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from firstwords.edge.errors import InputError
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.heard import HeardWord
from firstwords.edge.learner_types import FramesEncoded, SpeechDone, StreamEnded, Tick, UtteranceHeard
from firstwords.edge.pair import TimedUtterance
from firstwords.edge.teach import thumbnail

log = logging.getLogger(__name__)


class _End:
    """Queue sentinel."""


_END = _End()


def recognised_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    return str(getattr(result, "text", "") or "")


def heard_words(result: Any, offset: float) -> tuple[HeardWord, ...]:
    """A recogniser result's words on the session's clock (their times are from the segment's start)."""
    return tuple(HeardWord(str(w.text), offset + float(w.start), offset + float(w.end),
                           min(1.0, max(0.0, float(w.confidence))))
                 for w in getattr(result, "words", ()) or ())


def finite_samples(samples: Any) -> tuple[Any, int]:
    """A float block with NaN / Inf samples replaced by silence, and how many there were (other blocks as
    given: the VAD says what is wrong with them)."""
    a = np.asarray(samples)
    if not np.issubdtype(a.dtype, np.floating):
        return samples, 0
    bad = ~np.isfinite(a)
    n = int(np.count_nonzero(bad))
    if n:
        a = np.where(bad, a.dtype.type(0.0), a)
    return a, n



class SourceStages:
    """Capture, encoder, audio, recogniser and transcript threads of `Learner` (mixed into it)."""

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
                    self._reject("camera frame", InputError("a frame's time must be a finite number of "
                                                            "seconds, "
                                                            f"got {type(t).__name__}"))
                    continue
                if t + 1e-6 < next_t:  # thin to the pairing fps
                    continue
                # Next slot on a fixed grid (not t + period, which drifts: 5 fps thinned to 2 fps gave 1.67
                # fps).
                if anchor is None:
                    anchor = t
                next_t = anchor + (math.floor((t - anchor) / period + 1e-6) + 1) * period
                self.stats.frames_captured += 1
                self.clock.beat(frame=True)
                if not self.options.realtime:
                    self._wait_for_utterances(t)
                    # Full speed, nothing is dropped later: the frame is prepared here, while the encoder
                    # thread runs the tower on earlier ones.
                    with self.latency.time("frame_preprocess", items=1):
                        kept, x = self._prepare([(t, frame)])
                    if kept and not self._put(self._frame_q, (t, frame, x)):
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
        """Batches of frames -> embeddings, sent to pairing in frame order. encode_workers > 1: that many
        batches are encoded at once in worker threads (a full-speed replay keeps every core on the tower with
        no wait between batches); their results are still sent in order."""
        workers = max(1, self.options.encode_workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="learner-encode") if workers > 1 else None
        inflight: deque[Future] = deque()
        ended = False
        try:
            while not ended:
                batch, ended = self._next_batch()
                if batch:
                    if pool is None:
                        self._send_encoded(*self._encode(batch))
                        continue
                    inflight.append(pool.submit(self._encode, batch))
                while inflight and (len(inflight) >= workers or ended or inflight[0].done()):
                    self._send_encoded(*inflight.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._events.put(StreamEnded("frames"))

    def _next_batch(self) -> tuple[list[tuple], bool]:
        """Up to encode_batch waiting frames, and whether the stream has ended."""
        batch: list[tuple] = []
        while len(batch) < max(1, self.options.encode_batch):
            try:  # live: whatever is waiting; full speed: always full batches (the same ones run after run)
                item = self._frame_q.get_nowait() if self.options.realtime and batch else self._frame_q.get()
            except queue.Empty:
                break
            if isinstance(item, _End):
                return batch, True
            batch.append(item)
        return batch, False

    def _encode(self, batch: list[tuple]) -> tuple[list[tuple[float, Any]], np.ndarray | None]:
        """Prepare (unless the capture thread did) and encode one batch: (the frames kept, embeddings)."""
        if len(batch[0]) == 3:  # prepared by the capture thread (full-speed replay)
            x = np.concatenate([p for _, _, p in batch])
            batch = [(t, f) for t, f, _ in batch]
        else:
            with self.latency.time("frame_preprocess", items=len(batch)):
                batch, x = self._prepare(batch)
        if not batch:
            return batch, None
        with self.latency.time("image_encode", items=len(batch)):
            return batch, self.encoder.encode_image_array(x)

    def _send_encoded(self, batch: list[tuple[float, Any]], emb: np.ndarray | None) -> None:
        if not batch:
            return
        self.stats.frames_encoded += len(batch)
        thumbs = ([thumbnail(f, self.options.media_size) for _, f in batch] if self.options.keep_media
                  else [None] * len(batch))
        self._events.put(FramesEncoded([t for t, _ in batch], emb, thumbs))
        self.clock.beat()

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
                samples, bad = finite_samples(samples)
                if bad:  # a broken buffer or file: silence in its place, counted; the session goes on
                    self.stats.nonfinite_samples += bad
                    self._reject("audio block", InputError(f"{bad} NaN or Inf samples were replaced by "
                                                           "silence"))
                dur = len(samples) / SAMPLE_RATE
                try:
                    with self.latency.time("vad", audio_seconds=dur):
                        segments = self.vad.feed(t, samples)
                except InputError as e:  # a block the VAD refuses (shape, dtype, time): skipped, counted
                    self.stats.audio_blocks_rejected += 1
                    self._reject("audio block", e)
                    continue
                self.stats.audio_blocks += 1
                self.stats.audio_seconds += dur
                self._enqueue_segments(segments)
                self.clock.beat()
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
            self._backlog(len(seg.audio) / SAMPLE_RATE)
            if not self._put(self._speech_q, seg):
                self._speech_q.put(seg)  # stopping: still recognise what was heard

    def _backlog(self, seconds: float) -> None:
        """Add (or, recognised, take away) seconds of speech waiting for recognition. Live, a backlog above
        `max_backlog_s` is logged once and counted each time it rises above: the recogniser cannot keep up
        (audio is kept all the same; the backlog drains when the talk pauses)."""
        s = self.stats
        with self._lock:
            was = s.speech_backlog_s
            s.speech_backlog_s = max(0.0, was + seconds)
            s.speech_backlog_max_s = max(s.speech_backlog_max_s, s.speech_backlog_s)
            limit = self.options.max_backlog_s
            crossed = self.options.realtime and was <= limit < s.speech_backlog_s
            if crossed:
                s.backlog_exceeded += 1
        if crossed and s.backlog_exceeded == 1:
            log.warning("%.0f s of speech wait for recognition (over [audio] max_backlog_s = %g): the "
                        "recogniser cannot keep up; nothing is dropped, but words reach the memory "
                        "late. More [audio] asr_workers or a lighter recogniser help",
                        s.speech_backlog_s, limit)

    def _asr_loop(self) -> None:
        """Speech segments -> transcripts, in the order heard: one recogniser in this thread, or a pool of
        them in worker processes (edge.asr_pool) with up to 2 per worker in flight."""
        assert self.recognizer is not None
        from firstwords.edge.asr_pool import OrderedRecognition, RecognizerPool, recognise_in_order

        if isinstance(self.recognizer, RecognizerPool):
            self._asr_pool_loop(OrderedRecognition(self.recognizer))
        else:
            while True:
                seg = self._speech_q.get()
                if isinstance(seg, _End):
                    break
                try:
                    with self.latency.time("asr", audio_seconds=len(seg.audio) / SAMPLE_RATE):
                        result = recognise_in_order(self.recognizer, seg.audio)
                except Exception as e:  # noqa: BLE001  # one bad segment must not end the session
                    result = e
                self._heard(seg, result)
        self._utts_done.set()
        self._events.put(StreamEnded("utterances"))

    def _asr_pool_loop(self, ordered: Any) -> None:
        while True:
            try:  # with utterances in flight, look again soon: a finished one is emitted promptly
                seg = self._speech_q.get(timeout=0.02 if len(ordered) else None)
            except queue.Empty:
                done = ordered.ready()
            else:
                if isinstance(seg, _End):
                    break
                done = ordered.submit(seg, seg.audio)
            for r in done:
                self._pool_heard(r)
        for r in ordered.drain():
            self._pool_heard(r)

    def _pool_heard(self, r: Any) -> None:
        self.latency.record("asr", r.seconds, audio_seconds=len(r.item.audio) / SAMPLE_RATE)
        self._heard(r.item, r.error if r.error is not None else r.transcript)

    def _heard(self, seg: Any, result: Any) -> None:
        """One segment's recognition (a transcript, or the exception its recogniser raised) to the pairing
        thread."""
        if isinstance(result, Exception):
            log.warning("recogniser failed on speech at %.2f s: %s", seg.start, result)
            result = None
        text = recognised_text(result)
        words = heard_words(result, seg.start)
        self._backlog(-len(seg.audio) / SAMPLE_RATE)
        if text.strip():
            self._events.put(UtteranceHeard(TimedUtterance(seg.start, seg.end, text.strip(), words=words),
                                            from_speech=True))
            self.clock.beat(utterance=True)
        else:
            self.stats.empty_recognitions += 1
            self._events.put(SpeechDone())
            self.clock.beat()
        self._events.put(Tick())

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
        transcript at the moment of the stop, not at whatever point this thread had reached: unpaced, the
        whole transcript is heard at once, so every utterance is still delivered (the pairing closes each
        window with the frames at hand); paced, the utterances whose end came before the stop are. Breaking on
        the stop flag instead made the result depend on thread timing: an encoder that failed before this
        thread had run learned nothing, although utterances had their frames encoded."""
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
                    utt = u if isinstance(u, TimedUtterance) else TimedUtterance(
                        float(u.start), float(u.end), str(u.text), getattr(u, "speaker", None) or None)
                    self._events.put(UtteranceHeard(utt))  # the pairing thread moves the clock on arrival
                    self.clock.beat(utterance=True)
        finally:
            self._utts_done.set()
            self._events.put(StreamEnded("utterances"))

