"""What the memory learns from and what it answers: a Moment (words heard + the frames of their window +
time), the report of learning it, a remembered Episode; and the checks every input passes before anything
changes."""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from firstwords.edge.errors import InputError
from firstwords.edge.heard import HeardWord
from firstwords.edge.tokenize import words as words_of

log = logging.getLogger(__name__)

MAX_FRAMES = 1024  # frames per window
MAX_WORDS = 256  # distinct words per moment
MAX_WORD_CHARS = 100
MAX_TEXT_CHARS = 10_000


@dataclass
class Moment:
    """One learning event: the words heard (str, confidence 1.0, or HeardWord with the recogniser's
    confidence), the frame embeddings of their window [K, D], the time and the text as heard."""

    words: Sequence[str | HeardWord]
    frame_embeddings: np.ndarray
    t: float
    text: str
    prior: Mapping[str, np.ndarray] | None = None  # in-vocabulary word -> the encoder's utterance embedding
    media: bytes | None = None  # e.g. an encoded JPEG, stored only with keep_media


@dataclass
class LearnReport:
    episode_id: int  # -1 when nothing was learned (every word below the confidence threshold)
    credit: dict[str, float]  # share of what was learned from this window that each word took; sums to 1
    frames_taken: dict[str, float]  # frames' worth each word learned from (re-entrance lowers it for a known
    #                                 word in a window the memory judges to be about something else)
    frame_weights: list[float]  # re-entrant relevance of each frame of the window (1: neutral; 0..1)
    new_words: list[str]
    evicted_words: list[str] = field(default_factory=list)
    frame_taken: dict[str, list[float]] = field(default_factory=dict)  # per word heard: frames' worth learned
    #                                                                    from each frame of the window
    skipped_words: list[str] = field(default_factory=list)  # heard below the confidence threshold: unlearned


@dataclass(frozen=True)
class Episode:
    id: int
    t: float
    text: str
    score: float
    words: tuple[str, ...]


@dataclass
class CheckedMoment:
    words: list[str]  # distinct, normalised, at or above the confidence threshold
    confidence: np.ndarray  # [m] float32
    skipped: list[str]
    frames: np.ndarray  # [K, D] unit vectors
    t: float
    text: str
    prior: dict[str, np.ndarray]
    media: bytes | None


def normalise_word(word: str) -> str:
    """The key a word is stored under: Unicode NFC (a word typed with combining accents finds the word
    heard)."""
    return unicodedata.normalize("NFC", word)


def word_as_learned(text: str) -> str:
    """The memory's key for a word as a user typed it ("Ball!", "ñandú"): tokenised as learning tokenises what
    it hears, then normalised. InputError unless that gives exactly one word."""
    found = words_of(normalise_word(text)) if isinstance(text, str) else []
    if not found:
        raise InputError(f"give a word, e.g. --word ball (got {text!r}, which holds no word)")
    if len(found) != 1:
        raise InputError(f"{text!r} is {len(found)} words as the memory learns them ({', '.join(found)}); "
                         f"give one word at a time, e.g. --word {found[0]}")
    return normalise_word(found[0])


def check_vectors(x, dim: int, what: str, max_rows: int) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} must be a float array of shape [K, {dim}]: {e}") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{what} must have shape [K, {dim}] (the bundle's embedding dim), got {arr.shape}; "
                         f"did the memory and the encoder come from different bundles?")
    if not 1 <= arr.shape[0] <= max_rows:
        raise InputError(f"{what} must hold 1..{max_rows} vectors, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or Inf; the encoder output is broken (check the frames and "
                         f"the bundle) -- nothing was learned from it")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise InputError(f"{what} contains an all-zero vector; nothing was learned from it")
    return (arr / norms).astype(np.float32)


def check_words(words, min_confidence: float = 0.0) -> tuple[list[str], list[float], list[str]]:
    """(words to learn, their confidences, words skipped below min_confidence). Duplicates keep their highest
    confidence. InputError when nothing usable was heard at all."""
    if isinstance(words, (str, HeardWord)) or not isinstance(words, Sequence):
        raise InputError(f"words must be a list of words (edge.tokenize.words(text)) or HeardWords, got "
                         f"{type(words).__name__}")
    conf: dict[str, float] = {}
    for item in words:
        w, c = (item.text, float(item.confidence)) if isinstance(item, HeardWord) else (item, 1.0)
        if not isinstance(w, str) or not w or w != w.strip() or any(ch.isspace() for ch in w):
            raise InputError(f"each word must be a non-empty string without whitespace, got {w!r}; pass "
                             f"edge.tokenize.words(text)")
        if len(w) > MAX_WORD_CHARS:  # an ASR or transcript hiccup: skip that word, learn the rest
            log.warning("skipping a %d-character 'word' (max %d): %.30s...", len(w), MAX_WORD_CHARS, w)
            continue
        w = normalise_word(str(w))  # (numpy str_ -> str)
        conf[w] = max(conf.get(w, 0.0), c)
    if not conf:
        raise InputError(f"a moment needs at least one word (of at most {MAX_WORD_CHARS} characters); "
                         f"nothing was learned")
    if len(conf) > MAX_WORDS:
        raise InputError(f"a moment may hold at most {MAX_WORDS} distinct words, got {len(conf)}")
    kept = [w for w, c in conf.items() if c >= min_confidence and c > 0.0]
    return kept, [conf[w] for w in kept], [w for w in conf if w not in kept]


def check_moment(m: Moment, dim: int, min_confidence: float) -> CheckedMoment:
    words, conf, skipped = check_words(m.words, min_confidence)
    frames = check_vectors(m.frame_embeddings, dim, "frame_embeddings", MAX_FRAMES)
    try:
        t = float(m.t)
    except (TypeError, ValueError) as e:
        raise InputError(f"t must be a number (seconds), got {m.t!r}") from e
    if not math.isfinite(t):
        raise InputError(f"t must be finite, got {t}")
    if not isinstance(m.text, str):
        raise InputError(f"utterance_text must be a string, got {type(m.text).__name__}")
    text = m.text
    if len(text) > MAX_TEXT_CHARS:  # kept as a moment's label only: clip, do not lose the moment
        log.warning("clipping an utterance text of %d characters to %d", len(text), MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
    prior: dict[str, np.ndarray] = {}
    if m.prior is not None:
        if not isinstance(m.prior, Mapping):
            raise InputError("prior must be a mapping word -> embedding vector")
        normalised = {normalise_word(k) if isinstance(k, str) else k: v for k, v in m.prior.items()}
        for w in words:
            if w in normalised:
                prior[w] = check_vectors(normalised[w], dim, f"prior of {w!r}", 1)[0]
    if m.media is not None and not isinstance(m.media, (bytes, bytearray)):
        raise InputError("media must be bytes (e.g. an encoded JPEG) or None")
    return CheckedMoment(words, np.array(conf, np.float32), skipped, frames, t, text, prior,
                         bytes(m.media) if m.media is not None else None)
