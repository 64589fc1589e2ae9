"""The last step of the learner loop: an utterance paired with its frames -> the words to learn -> the memory.

Words are the utterance's `HeardWord`s: the recogniser's (with its confidence) or, for a transcript, its text
through the project's tokenizer at confidence 1.0. The memory is given their texts (its confidence threshold
applies once edge.memory takes HeardWords: then pass `heard` instead of `ws` below). Words longer than
`max_word_chars` (an ASR / transcript hiccup) are dropped and counted; an utterance the memory refuses
(InputError) is skipped and counted. The words the bundle knows get the encoder's own embedding as the
memory's prior.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from firstwords.edge.errors import InputError
from firstwords.edge.heard import HeardWord
from firstwords.edge.latency import StageLatencies
from firstwords.edge.learner_types import ImageTextEncoder, LearnerOptions, LearnerStats, WordMemory
from firstwords.edge.pair import Paired, TimedUtterance

MAX_TEXT_CHARS = 10_000  # an utterance's text kept with its episode (the memory refuses longer ones)


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


class Teacher:
    """Teaches the memory from paired utterances; keeps the run's word counts in `word_counts`.

    reject(what, error): how the loop logs a skipped input once per kind (then only counts it).
    on_learned(paired, words): called after each utterance learned from.
    """

    def __init__(self, encoder: ImageTextEncoder, memory: WordMemory, options: LearnerOptions,
                 stats: LearnerStats, latency: StageLatencies, reject: Callable[[str, Exception], None],
                 on_learned: Callable[[Paired, list[str]], None] | None = None) -> None:
        self.encoder, self.memory, self.options = encoder, memory, options
        self.stats, self.latency, self.reject, self.on_learned = stats, latency, reject, on_learned
        self.word_counts: dict[str, int] = {}

    def words(self, u: TimedUtterance) -> list[HeardWord]:
        """The utterance's words (the recogniser's, or its text's through the tokenizer at confidence 1.0),
        without those longer than max_word_chars (counted)."""
        o = self.options
        ws = [w for w in u.heard_words() if len(w.text) >= o.min_word_chars]
        long_words = sum(len(w.text) > o.max_word_chars for w in ws)
        if long_words:
            self.stats.words_rejected += long_words
            self.reject("word", InputError(f"a word of more than {o.max_word_chars} characters was dropped"))
            ws = [w for w in ws if len(w.text) <= o.max_word_chars]
        return ws

    def learn(self, p: Paired) -> bool:
        """True when the memory learned from this utterance."""
        u = p.utterance
        self.stats.paired_time = max(self.stats.paired_time, u.end)
        heard = self.words(u)
        ws = [w.text for w in heard]
        if not ws:
            return False
        self.stats.words_heard += len(ws)
        if p.empty:
            self.stats.utterances_without_frames += 1
            return False
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
                self.memory.learn(heard, frames, u.start, text, prior=prior, **kw)
        except InputError as e:  # the memory refused this utterance (nothing learned): skip it, learn on
            self.stats.utterances_rejected += 1
            self.reject("utterance", e)
            return False
        self.stats.utterances += 1
        for w in ws:
            if w not in self.word_counts:
                self.stats.words_learned += 1
            self.word_counts[w] = self.word_counts.get(w, 0) + 1
        if self.on_learned is not None:
            self.on_learned(p, ws)
        return True
