"""The online associative memory: words heard <-> what was seen, learned one utterance at a time.

Open vocabulary: every word heard gets a visual prototype in the bundle's joint embedding space (dim D).

Update rule (cross-situational, in the spirit of Fazly, Alishahi & Stevenson 2010 and Yu & Smith 2007). For an
utterance with words w_1..w_m and the frame embeddings f_1..f_K of its window (g: the running mean of every
frame seen, the background; v_w a word's unit vector, s_w its naming strength):
  * association   A[w, k] = max(0, s_w * v_w . (f_k - g)); clipped, so a (possibly wrong) hypothesis makes a
                  word claim frames but never refuse one that nobody claims -- no lock-in on a first impression
  * credit        each frame's unit of credit is shared among the words, softmax_w(beta * A[w, k]) mixed with a
                  uniform share that decays as the memory hears more: words that already explain a frame take
                  it, a new word is left what nobody explains (mutual exclusivity falls out of this)
  * re-entrance   the memory's state decides what in the window it learns from. Per frame, the strongest claim
                  of a word in memory that was NOT said (the dress in view while "shoe" is heard: the toy seen on
                  looking away, the scene's other object, or a displaced reference).
                  mode "gate" (default): that claim in the world's standard deviations along the word's direction,
                  z_u = v_u.(f - g) / sqrt(v_u' Sigma v_u), weighed by how reliable a name it is (s_u / 0.4); a
                  frame where it passes ~1.5 counts less (down to 0.1) for the words heard, as far as each has
                  evidence behind it (maturity: a word outside the vocabulary heard for the first time learns from
                  the whole window; an encoder prior alone gives half a say). Judged along the OTHER words'
                  directions only, and scale-free (earlier gates compared raw claims, which scale with strengths).
                  mode "explain": the rival's share of the frame (generalised least squares along its contrast)
                  is taken out before the words heard learn from it. mode "predict": each word heard learns
                  from the frames its learned direction predicts (relative to its own prototype), trusted as
                  far as it has evidence behind it. reentrance=False: frames as they are (same learner).
  * prototype     sum_w += sum_k omega[w, k] C[w, k] f_k; weight_w += its credit (frames' worth); the prototype
                  is the credit-weighted mean m_w = sum_w / weight_w; its contrast c_w = m_w - g, whitened by the
                  world's frame covariance (W c_w: Fisher's discriminant against everything seen, so that what
                  varies in every scene -- backgrounds, light -- stops masking what the word's frames share),
                  gives the direction.
Naming strength: how far the PLAIN co-occurrence mean of the word (every frame of every window it was heard in)
sits from the background, relative to the spread of the world (sigma^2 = 1 - |g|^2), ramped by the effective
number of utterances behind it. A function word ("the", "look", "you") is heard whatever is in view: its
co-occurrence mean is the background and its strength ~0 -- learned from diffuse co-occurrence, no stop list.
Debiased for rare words: a word heard in n windows sits ~sqrt(chance / n) sigma from the background by chance
alone (a window's frames are ~one draw of its scene), so s_learned = sqrt(max(|cc|^2 / sigma^2 - chance / n,
0)) x ramp: a word heard twice is no name yet, however alike its two scenes.
For an in-vocabulary word the encoder's utterance embedding p_w is the prior: v_w = normalise(a p_w +
(1 - a) c_w / |c_w|), a = n0 / (n0 + weight_w): the memory takes over the direction with the credit the word
takes. Its strength s_w = a' prior_strength + (1 - a') s_learned, a' = n0 / (n0 + frames heard with): the prior's
say in the strength fades with co-occurrence, not credit (a function word loses every frame's credit to the
object words, so a credit-faded prior kept it at prior_strength for ever), and prior_strength is small: an
encoder prior alone makes a weak name. Words outside the vocabulary start from scratch (a = a' = 0).

Queries: name(frame) = top-k of s_w v_w . (x - g), one matrix-vector product and an argpartition;
find(word) streams the episodes from disk; word_vectors() feeds edge.evaluate.score_trials.
Storage: edge.memory_store (SQLite, WAL, one transaction per learn / learn_batch call).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
from firstwords.edge.errors import InputError, MemoryStoreError
from firstwords.edge.memory_store import (
    RESET_HINT,
    Background,
    EpisodeRow,
    MemoryStore,
    WordRow,
    describe_meta,
    set_aside,
)

log = logging.getLogger(__name__)

MAX_FRAMES = 1024  # frames per utterance window
MAX_WORDS = 256  # words per utterance
MAX_WORD_CHARS = 100
MAX_TEXT_CHARS = 10_000
_TINY = 1e-12


@dataclass(frozen=True)
class LearningParams:
    credit_beta: float = 10.0  # sharpness of the credit softmax over an utterance's words
    uniform_start: float = 0.5  # uniform share of credit when the memory is new ...
    uniform_floor: float = 0.05  # ... decaying to this ...
    uniform_halflife: float = 200.0  # ... halfway after this many utterances
    prior_frames: float = 100.0  # n0: weight of the encoder's prior, in frames' worth of credit
    prior_strength: float = 0.1  # naming strength of a prior before any exposure (was 0.5: rare in-vocab words
    #                             such as 'up', 'did' outranked object words in name(); open-vocab top-1 0.50)
    confidence_utterances: float = 2.0  # strength ramp n/(n + this), n = effective utterances behind a word
    chance_windows: float = 1.0  # debiasing of the strength: the squared contrast a word heard in n windows shows
    #                              by chance alone is this * sigma^2 / n (one window's frames are ~one draw of
    #                              the scene: its mean varies ~0.94 sigma^2 around the background on the sample)
    debias: bool = True  # False: the strength as it was (raw contrast; prior faded by credit, not co-occurrence)
    # re-entrance: "gate" (default), "explain" (explain away) or "predict" (each word learns from the frames its
    # learned direction predicts). All three measured on the sample corpus: see docs/CONTRACTS.md, Memory.
    select_mode: str = "gate"
    predict_threshold: float = 0.5  # predict: a frame counts when the word predicts it at least this well,
    #                                 relative to the word's own prototype (1 = a typical frame of the word)
    predict_beta: float = 8.0  # predict: sharpness of that judgement
    predict_utterances: float = 10.0  # predict: trust in the judgement = n/(n + this), n = effective utterances
    predict_floor: float = 0.05  # predict: a frame judged irrelevant still counts this much (no lock-in)
    predict_window: bool = False  # predict: judge the window as a whole (mean rho) instead of frame by frame
    explain: float = 1.0  # explain: share of a rival word's projection taken out of a frame
    select_threshold: float = 1.5  # gate: a frame turns from the words heard when a word not said scores this many
    #                                world standard deviations along its direction (x its reliability) ...
    select_beta: float = 3.0  # gate: ... with this sharpness (per standard deviation)
    select_ref: float = 0.4  # gate: the naming strength of a fully reliable name (a word's claim is weighed by
    #                          strength / select_ref: a weak encoder's or a new word's names cut little)
    select_floor: float = 0.1  # gate: a mature word still learns this share from a frame claimed by another
    whiten: bool = True  # word directions whitened by the world's frame covariance (Fisher's discriminant)
    whiten_eps: float = 0.01  # ridge on the covariance, relative to its mean variance
    prior_maturity: float = 0.5  # how far an encoder prior alone may steer gate/explain selection
    competitors: int = 256  # gate/explain consult the strongest this many words for competing claims

    def __post_init__(self) -> None:
        if self.select_mode not in ("gate", "explain", "predict"):
            raise InputError(f"select_mode must be 'gate', 'explain' or 'predict', got {self.select_mode!r}")

    def uniform_share(self, utterances: int) -> float:
        h = self.uniform_halflife
        return self.uniform_floor + (self.uniform_start - self.uniform_floor) * h / (h + utterances)


@dataclass
class Utterance:
    """One learning event: the words heard, the frame embeddings of its window [K, D], its time and text."""

    words: Sequence[str]
    frame_embeddings: np.ndarray
    t: float
    text: str
    prior: Mapping[str, np.ndarray] | None = None
    media: bytes | None = None


@dataclass
class LearnReport:
    episode_id: int
    credit: dict[str, float]  # share of what was learned from this window that each word took; sums to 1
    frames_taken: dict[str, float]  # frames' worth each word learned from (re-entrance lowers it for a known
    #                                 word in a window the memory judges to be about something else)
    frame_weights: list[float]  # re-entrant relevance of each frame of the window (1: neutral; 0..2)
    new_words: list[str]
    evicted_words: list[str] = field(default_factory=list)
    frame_taken: dict[str, list[float]] = field(default_factory=dict)  # per word heard: frames' worth learned
    #                                                                    from each frame of the window


@dataclass(frozen=True)
class Episode:
    id: int
    t: float
    text: str
    score: float
    words: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- validation
def _check_vectors(x, dim: int, what: str, max_rows: int) -> np.ndarray:
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
        raise InputError(f"{what} contains NaN or Inf; the encoder output is broken (check the frames and the "
                         f"bundle) -- nothing was learned from it")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise InputError(f"{what} contains an all-zero vector; nothing was learned from it")
    return (arr / norms).astype(np.float32)


def _check_words(words) -> list[str]:
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise InputError(f"words must be a list of words (edge.tokenize.words(text)), got {type(words).__name__}")
    out: list[str] = []
    for w in words:
        if not isinstance(w, str) or not w or w != w.strip() or any(c.isspace() for c in w):
            raise InputError(f"each word must be a non-empty string without whitespace, got {w!r}; pass "
                             f"edge.tokenize.words(text)")
        if len(w) > MAX_WORD_CHARS:  # an ASR or transcript hiccup: skip that word, learn the rest
            log.warning("skipping a %d-character 'word' (max %d): %.30s...", len(w), MAX_WORD_CHARS, w)
            continue
        w = str(w)  # (numpy str_ -> str)
        if w not in out:
            out.append(w)
    if not out:
        raise InputError(f"an utterance needs at least one word (of at most {MAX_WORD_CHARS} characters); nothing "
                         f"was learned")
    if len(out) > MAX_WORDS:
        raise InputError(f"an utterance may hold at most {MAX_WORDS} distinct words, got {len(out)}")
    return out


def _check_utterance(u: Utterance, dim: int) -> tuple[list[str], np.ndarray, float, str, dict, bytes | None]:
    words = _check_words(u.words)
    frames = _check_vectors(u.frame_embeddings, dim, "frame_embeddings", MAX_FRAMES)
    try:
        t = float(u.t)
    except (TypeError, ValueError) as e:
        raise InputError(f"t must be a number (seconds), got {u.t!r}") from e
    if not math.isfinite(t):
        raise InputError(f"t must be finite, got {t}")
    if not isinstance(u.text, str):
        raise InputError(f"utterance_text must be a string, got {type(u.text).__name__}")
    text = u.text
    if len(text) > MAX_TEXT_CHARS:  # kept as a moment's label only: clip, do not lose the utterance
        log.warning("clipping an utterance text of %d characters to %d", len(text), MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
    prior: dict[str, np.ndarray] = {}
    if u.prior is not None:
        if not isinstance(u.prior, Mapping):
            raise InputError("prior must be a mapping word -> embedding vector")
        for w in words:
            if w in u.prior:
                prior[w] = _check_vectors(u.prior[w], dim, f"prior of {w!r}", 1)[0]
    if u.media is not None and not isinstance(u.media, (bytes, bytearray)):
        raise InputError("media must be bytes (e.g. an encoded JPEG) or None")
    return words, frames, t, text, prior, (bytes(u.media) if u.media is not None else None)


# ---------------------------------------------------------------------------------------------- maths
def world_covariance(bg: Background, dim: int) -> np.ndarray:
    """The covariance of every frame seen [D, D] (isotropic, the unit vectors' share, before two frames)."""
    if bg.second is None or bg.count < 2:
        return np.eye(dim) / dim
    g = bg.total / bg.count
    return bg.second / bg.count - np.outer(g, g)


def whitener(bg: Background, dim: int, params: LearningParams) -> np.ndarray:
    """W = (Sigma + eps I)^-1 for the world's frame covariance Sigma, shrunk towards a scaled identity while few
    frames are known. A word's direction W c_w is then Fisher's discriminant of its frames against the world:
    variation every scene has (backgrounds, lighting) stops masking what the word's frames have in common."""
    eye = np.eye(dim)
    if bg.second is None or bg.count < 2 or not params.whiten:
        return eye
    sigma = world_covariance(bg, dim)
    scale = max(float(np.trace(sigma)) / dim, 1e-9)
    shrink = dim / (dim + bg.count)  # towards the identity while frames are few
    sigma = (1.0 - shrink) * sigma + (shrink + params.whiten_eps) * scale * eye
    w = np.linalg.inv(sigma) * scale  # (scale-free)
    return (w + w.T) / 2.0


def derive(proto_sum: np.ndarray, weight: np.ndarray, weight_sq: np.ndarray, cooc_sum: np.ndarray,
           cooc_count: np.ndarray, exposures: np.ndarray, prior: np.ndarray, has_prior: np.ndarray, g: np.ndarray,
           params: LearningParams, whiten: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit word vectors v [n, D], naming strengths s [n] and maturities [n] (0..1, how much evidence is behind
    the word) from the raw sums (see the module doc)."""
    sigma = math.sqrt(max(1.0 - float(g @ g), 1e-6))
    learned = weight > _TINY
    # direction: the credited prototype's contrast with the background
    c = np.where(learned[:, None], proto_sum / np.maximum(weight, _TINY)[:, None] - g[None, :], 0.0)
    if whiten is not None:
        c = c @ whiten
    direction = c / np.maximum(np.linalg.norm(c, axis=1), _TINY)[:, None]
    # strength: how far the PLAIN co-occurrence mean (every frame of every window the word was heard in) sits
    # from the background. A word heard whatever is in view ("the") has its co-occurrence mean at the
    # background, however its credit was spent; a referring word ("ball") does not.
    cc = np.where((cooc_count > 0)[:, None], cooc_sum / np.maximum(cooc_count, _TINY)[:, None] - g[None, :], 0.0)
    n_eff = weight * weight / np.maximum(weight_sq, _TINY)  # effective number of utterances behind the word
    maturity = np.where(learned, n_eff / (n_eff + params.confidence_utterances), 0.0)
    a = np.where(has_prior, params.prior_frames / (params.prior_frames + weight), 0.0)
    v = a[:, None] * prior + (1.0 - a)[:, None] * direction
    v = v / np.maximum(np.linalg.norm(v, axis=1), _TINY)[:, None]
    if params.debias:
        # A word heard in few windows sits away from the background by chance alone: E|cc|^2 = |true|^2 +
        # chance * sigma^2 / n_windows. Take that out (a word heard twice is no name yet, however close its two
        # scenes). The prior's share of the strength fades with the frames the word was heard with, not with
        # the credit it took: a function word loses every frame's credit to the object words, so a
        # credit-faded prior would keep it at prior_strength for ever.
        z2 = np.sum(cc * cc, axis=1) / (sigma * sigma)
        n_win = np.maximum(exposures.astype(np.float64), 1.0)
        s_learned = np.sqrt(np.maximum(z2 - params.chance_windows / n_win, 0.0)) * maturity
        a_s = np.where(has_prior, params.prior_frames / (params.prior_frames + cooc_count), 0.0)
    else:
        s_learned = (np.linalg.norm(cc, axis=1) / sigma) * maturity
        a_s = a
    s = a_s * params.prior_strength + (1.0 - a_s) * s_learned
    maturity = np.maximum(maturity, a * params.prior_maturity)
    return v.astype(np.float32), s.astype(np.float32), maturity.astype(np.float32)


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class _WordTable:
    """The words in RAM: raw sums as growable numpy arrays, a name index, and a lazily derived query matrix."""

    def __init__(self, dim: int):
        self.dim = dim
        self.words: list[str] = []
        self.index: dict[str, int] = {}
        cap = 64
        self.proto_sum = np.zeros((cap, dim), np.float32)
        self.prior = np.zeros((cap, dim), np.float32)
        self.has_prior = np.zeros(cap, bool)
        self.weight = np.zeros(cap, np.float64)
        self.weight_sq = np.zeros(cap, np.float64)
        self.cooc_sum = np.zeros((cap, dim), np.float32)
        self.cooc_count = np.zeros(cap, np.float64)
        self.exposures = np.zeros(cap, np.int64)
        self.first_seen = np.zeros(cap, np.float64)
        self.last_seen = np.zeros(cap, np.float64)
        self.last_utt = np.zeros(cap, np.int64)
        # derived, for queries (kept aligned with the rows by _grow / remove): unit vector, strength, and the
        # name() matrix s * v with its bias -s * v.g
        self.vec = np.zeros((cap, dim), np.float32)
        self.strength = np.zeros(cap, np.float32)
        self.name_mat = np.zeros((cap, dim), np.float32)
        self.name_bias = np.zeros(cap, np.float32)
        self.contrast = np.zeros((cap, dim), np.float32)  # m_w - g, unwhitened (what the word adds to a frame)
        self.spread = np.ones(cap, np.float32)  # the world's standard deviation along the unit vector
        self._arrays = ["proto_sum", "prior", "has_prior", "weight", "weight_sq", "cooc_sum", "cooc_count",
                        "exposures", "first_seen", "last_seen", "last_utt", "vec", "strength", "name_mat",
                        "name_bias", "contrast", "spread"]

    def __len__(self) -> int:
        return len(self.words)

    def _grow(self) -> None:
        for name in self._arrays:
            a = getattr(self, name)
            b = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
            b[: a.shape[0]] = a
            setattr(self, name, b)

    def row(self, word: str) -> WordRow | None:
        i = self.index.get(word)
        if i is None:
            return None
        return WordRow(word, self.proto_sum[i].copy(), float(self.weight[i]), float(self.weight_sq[i]),
                       self.cooc_sum[i].copy(), float(self.cooc_count[i]), int(self.exposures[i]), self.prior[i].copy() if self.has_prior[i] else None,
                       float(self.first_seen[i]), float(self.last_seen[i]), int(self.last_utt[i]))

    def put(self, r: WordRow) -> None:
        i = self.index.get(r.word)
        if i is None:
            if len(self.words) == self.proto_sum.shape[0]:
                self._grow()
            i = len(self.words)
            self.words.append(r.word)
            self.index[r.word] = i
        self.proto_sum[i] = r.proto_sum
        self.weight[i], self.weight_sq[i], self.exposures[i] = r.weight, r.weight_sq, r.exposures
        self.cooc_sum[i], self.cooc_count[i] = r.cooc_sum, r.cooc_count
        self.has_prior[i] = r.prior is not None
        self.prior[i] = r.prior if r.prior is not None else 0.0
        self.first_seen[i], self.last_seen[i], self.last_utt[i] = r.first_seen, r.last_seen, r.last_utt

    def remove(self, word: str) -> None:
        i = self.index.pop(word, None)
        if i is None:
            return
        last = len(self.words) - 1
        if i != last:  # swap the last row into the hole
            moved = self.words[last]
            self.words[i] = moved
            self.index[moved] = i
            for name in self._arrays:
                a = getattr(self, name)
                a[i] = a[last]
        self.words.pop()

    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in self._arrays)

    def rederive(self, rows: np.ndarray | slice, g: np.ndarray, params: LearningParams,
                 whiten: np.ndarray | None, sigma: np.ndarray | None = None) -> None:
        """Recompute the derived query arrays of some rows against the background mean g (and the world's frame
        covariance sigma, for each word's spread)."""
        v, s, _ = derive(self.proto_sum[rows], self.weight[rows], self.weight_sq[rows], self.cooc_sum[rows],
                         self.cooc_count[rows], self.exposures[rows], self.prior[rows], self.has_prior[rows], g, params, whiten)
        self.vec[rows] = v
        self.strength[rows] = s
        nm = s[:, None] * v
        self.name_mat[rows] = nm
        self.name_bias[rows] = -(nm @ g)
        if sigma is not None:
            self.spread[rows] = np.sqrt(np.maximum(np.sum((v @ sigma) * v, axis=1), 1e-12))
        w = self.weight[rows]
        self.contrast[rows] = np.where((w > _TINY)[:, None], self.proto_sum[rows] / np.maximum(w, _TINY)[:, None]
                                       - g[None, :], 0.0)


# ---------------------------------------------------------------------------------------------- the memory
class AssociativeMemory:
    """Online, open-vocabulary word <-> vision memory stored in SQLite (see the module doc for the rule).

    path: a file (created if missing) or ':memory:'. fresh=True: if the file is damaged it is moved aside as
    `<name>.corrupt-<timestamp>` and a new memory started (logged); by default a damaged file is an error.
    """

    def __init__(self, path: str | Path, dim: int, *, capacity_words: int = 10_000,
                 capacity_episodes: int = 50_000, reentrance: bool = True, keep_media: bool = False,
                 learning: LearningParams | None = None, fresh: bool = False, synchronous: str = "FULL"):
        if not isinstance(dim, int) or dim < 1:
            raise InputError(f"dim must be a positive integer (the bundle's embedding dim), got {dim!r}")
        if capacity_words < 1 or capacity_episodes < 1:
            raise InputError(f"capacities must be at least 1, got words={capacity_words} "
                             f"episodes={capacity_episodes}; check the device config's [memory] table")
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise InputError(f"synchronous must be FULL, NORMAL or OFF, got {synchronous!r}")
        self.dim = dim
        self.capacity_words = int(capacity_words)
        self.capacity_episodes = int(capacity_episodes)
        self.reentrance = bool(reentrance)
        self.keep_media = bool(keep_media)
        self.params = learning if learning is not None else LearningParams()
        self._lock = threading.RLock()
        try:
            self._store = MemoryStore(path, dim, synchronous=synchronous)
        except MemoryStoreError as e:
            if not fresh or "damaged" not in str(e):
                raise
            moved = set_aside(path)
            log.warning("memory %s was damaged (%s); moved aside to %s and starting fresh", path, e, moved)
            self._store = MemoryStore(path, dim, synchronous=synchronous)
        self.path = self._store.path
        self._table = _WordTable(dim)
        for r in self._store.load_words():
            self._table.put(r)
        self._bg = self._store.load_background()
        # The query arrays are derived against a cached background mean g; rows that change are re-derived at
        # the next query, and everything is re-derived when the memory has grown by ~10 % since (g drifts ~1/n).
        self._stale_words: set[str] = set()
        self._full_rebuild = True
        self._g_cached = np.zeros(dim, np.float32)
        self._w_cached = np.eye(dim)
        self._sigma_cached = np.eye(dim) / dim
        self._rebuilt_at = 0
        self._closed = False
        if len(self._table) > self.capacity_words:
            log.warning("memory %s holds %d words, above capacity %d; the weakest go at the next update",
                        self.path, len(self._table), self.capacity_words)

    @classmethod
    def open_existing(cls, path: str | Path, **kwargs) -> AssociativeMemory:
        """Open a memory file whose dim is read from the file itself (for tools such as `firstwords forget`)."""
        p = Path(path)
        if not p.is_file():
            raise MemoryStoreError(f"no memory database at {p}; check the path")
        meta = describe_meta(p)
        try:
            dim = int(meta["dim"])
        except (KeyError, ValueError) as e:
            raise MemoryStoreError(f"{p} is damaged or not a firstwords memory (no dim in its meta table); "
                                   + RESET_HINT.format(path=p, name=p.name)) from e
        return cls(p, dim, **kwargs)

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._store.close()
                self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise MemoryStoreError("the memory is closed; open it again with AssociativeMemory(path, dim)")

    # ------------------------------------------------------------------ learning
    def _background_mean(self, bg: Background) -> np.ndarray:
        return (bg.total / bg.count).astype(np.float32) if bg.count > 0 else np.zeros(self.dim, np.float32)

    def learn(self, words: Sequence[str], frame_embeddings: np.ndarray, t: float, utterance_text: str,
              prior: Mapping[str, np.ndarray] | None = None, *, media: bytes | None = None) -> LearnReport:
        """Learn from one utterance (one transaction). Raises InputError for bad input (nothing learned) and
        MemoryStoreError when the database cannot be written (nothing learned, previous state intact)."""
        return self.learn_batch([Utterance(words, frame_embeddings, t, utterance_text, prior, media)])[0]

    def learn_batch(self, utterances: Sequence[Utterance]) -> list[LearnReport]:
        """Learn from several utterances, in order, in ONE transaction (all or nothing)."""
        checked = [_check_utterance(u, self.dim) for u in utterances]  # all validated before anything changes
        if not checked:
            return []
        with self._lock:
            self._check_open()
            staged: dict[str, WordRow] = {}
            bg = Background(self._bg.total.astype(np.float64), self._bg.count, self._bg.utterances,
                            self._bg.evicted_through,
                            np.zeros((self.dim, self.dim)) if self._bg.second is None else self._bg.second.copy())
            self._ensure_derived()  # the whitener and background of the committed state
            episodes: list[EpisodeRow] = []
            reports: list[LearnReport] = []
            for words, frames, t, text, prior, media in checked:
                ep, rep = self._learn_one(words, frames, t, text, prior, media, staged, bg)
                episodes.append(ep)
                reports.append(rep)
            bg.total = bg.total.astype(np.float32)
            result = self._store.write_batch(list(staged.values()), episodes, bg, self.capacity_words,
                                             self.capacity_episodes, protect=set(staged))
            # Committed: now (and only now) bring RAM in line.
            for r in staged.values():
                self._table.put(r)
            for w in result.evicted_words:
                self._table.remove(w)
                self._stale_words.discard(w)
            self._bg = bg
            self._stale_words.update(w for w in staged if w in self._table.index)
        for rep, eid in zip(reports, result.episode_ids, strict=True):
            rep.episode_id = eid
        if result.evicted_words:
            reports[-1].evicted_words = result.evicted_words
            log.info("memory full: evicted %d weakest words (%s ...)", len(result.evicted_words),
                     ", ".join(result.evicted_words[:5]))
        return reports

    def _learn_one(self, words: list[str], frames: np.ndarray, t: float, text: str, prior: dict,
                   media: bytes | None, staged: dict[str, WordRow], bg: Background) -> tuple[EpisodeRow, LearnReport]:
        p = self.params
        k = frames.shape[0]
        bg.total = bg.total + frames.sum(axis=0, dtype=np.float64)
        bg.second += frames.T.astype(np.float64) @ frames
        bg.count += k
        bg.utterances += 1
        g = (bg.total / bg.count).astype(np.float32)
        rows: list[WordRow] = []
        new_words = []
        for w in words:
            r = staged.get(w) or self._table.row(w)
            if r is None:
                r = WordRow(w, np.zeros(self.dim, np.float32), 0.0, 0.0, np.zeros(self.dim, np.float32), 0.0, 0,
                            prior.get(w), t, t, bg.utterances)
                new_words.append(w)
            elif r.prior is None and w in prior:
                r.prior = prior[w]
            rows.append(r)
        v, s, maturity = derive(
            np.stack([r.proto_sum for r in rows]), np.array([r.weight for r in rows]),
            np.array([r.weight_sq for r in rows]), np.stack([r.cooc_sum for r in rows]),
            np.array([r.cooc_count for r in rows]), np.array([r.exposures for r in rows]),
            np.stack([r.prior if r.prior is not None else np.zeros(self.dim, np.float32) for r in rows]),
            np.array([r.prior is not None for r in rows]), g, p, self._w_cached)
        # association, clipped at 0: a word may claim a frame, but a (possibly wrong) hypothesis never makes it
        # refuse a frame nobody else claims -- no lock-in on a first impression
        assoc = np.maximum(s[:, None] * (v @ (frames - g).T), 0.0)  # [m, K]
        explained = np.zeros_like(frames)  # [K, D] what the memory attributes to words not said
        lam = np.zeros(len(words), np.float32)  # [m] how far each word follows the memory's judgement
        omega = np.ones(k, np.float32)  # how much of each frame is learned from (reported; 1 = all)
        omega_w = np.ones((len(words), k), np.float32)  # per word: how much each frame counts
        if self.reentrance and p.select_mode == "predict":
            # The memory's current state chooses which frames each word heard learns from: those its learned
            # direction d predicts. rho = d.(f - g) / d.(m - g) is a frame's score relative to the word's own
            # prototype m (1: a typical frame of the word, ~0: the background, < 0: something else), so the
            # judgement needs no threshold per word. Windows where the word was said with its object out of
            # view ("where's the ball?" before it is found) or frames after the scene changed count less.
            # Trust in the judgement grows with the evidence behind the word (n_eff utterances): a new word
            # learns from the whole window, and a floor keeps every frame a little weight (no lock-in).
            # Measured on the sample corpus: it does pick the right frames (share of learning from frames that
            # show the named object 0.79 -> 0.86) yet lowers held-out accuracy: frames chosen by their score
            # along d are biased along d, errors included (truncation), which outweighs the cleaner frames.
            weight = np.array([r.weight for r in rows])
            n_eff = weight * weight / np.maximum(np.array([r.weight_sq for r in rows]), _TINY)
            proto = np.stack([r.proto_sum for r in rows]) / np.maximum(weight, _TINY)[:, None] - g[None, :]
            # judged by the LEARNED direction alone (whitened contrast), not the prior-mixed vector: an
            # encoder prior that is wrong must not decide which frames the word learns from
            d = proto @ self._w_cached
            ref = np.sum(d * proto, axis=1)  # [m] score of the word's own prototype
            ok = (weight > _TINY) & (ref > 1e-6)
            rho = (d @ (frames - g).T) / np.where(ok, ref, 1.0)[:, None]  # [m, K]
            rho = rho - p.predict_threshold
            if p.predict_window:
                rho = np.repeat(rho.mean(axis=1, keepdims=True), k, axis=1)
            rho = np.clip(rho, -10.0, 10.0)
            sel = p.predict_floor + (1.0 - p.predict_floor) / (1.0 + np.exp(-p.predict_beta * rho))
            lam = np.where(ok, n_eff / (n_eff + p.predict_utterances), 0.0).astype(np.float32)
            omega_w = ((1.0 - lam[:, None]) + lam[:, None] * sel).astype(np.float32)
            omega = omega_w.max(axis=0)  # a frame's relevance: to the word heard that predicts it best
            lam = np.zeros(len(words), np.float32)  # (nothing is explained away in this mode)
        elif self.reentrance and p.select_mode == "explain":
            # explain away: what the memory already attributes to a word NOT said (the dress in view while "shoe"
            # is heard: the other object of the scene, or a displaced reference; the strongest claim per frame
            # among the strongest words in memory) is taken out of the frame before the words heard learn from
            # it -- they learn from the unexplained (surprising) rest. A word follows this as far as it has
            # evidence behind it (lam = 0 for a new word, which learns from the frames as they are: no lock-in on
            # what the memory believes today).
            # frame ~ g + alpha * c_rival + noise (noise covariance: the world's): alpha by generalised least
            # squares, kept in [0, 1]; the rival's share alpha * c_rival is what is explained away
            other, rival = self._competitor_claims(frames, set(words))  # [K], [K, D]
            fc = frames - g
            w_rival = rival @ self._w_cached  # [K, D]
            alpha = np.sum(w_rival * fc, axis=1) / np.maximum(np.sum(w_rival * rival, axis=1), _TINY)
            alpha = np.clip(alpha, 0.0, 1.0) * (other > 0)  # [K]
            explained = p.explain * alpha[:, None] * rival
            proj = np.linalg.norm(explained, axis=1)
            lam = maturity
            omega = 1.0 - p.explain * proj ** 2 / np.maximum(np.sum(fc * fc, axis=1), _TINY)
        elif self.reentrance:
            # "gate": the memory's current state decides what in the window the words heard learn from. A frame
            # that a word NOT said clearly names (the dress in view while "shoe" is heard: the other toy seen on
            # looking away, the scene's other object, or all of a window where the thing named is absent) counts
            # less for the words heard, as far as each has evidence behind it (maturity); a word with none learns
            # from the whole window (no lock-in). The judgement looks along the OTHER words' directions, not the heard word's
            # own: choosing frames by how well they fit a word's own guess biases the word towards its guess
            # (measured: 'predict'). A window mostly about something else teaches the words heard less.
            rival = self._rival_evidence(frames, set(words))  # [K], world standard deviations
            cut = 1.0 / (1.0 + np.exp(-np.clip(p.select_beta * (rival - p.select_threshold), -30.0, 30.0)))
            omega = (1.0 - (1.0 - p.select_floor) * cut).astype(np.float32)
            omega_w = (1.0 - maturity[:, None]) + maturity[:, None] * omega[None, :]
        eps = p.uniform_share(bg.utterances)
        credit = (1.0 - eps) * _softmax(p.credit_beta * assoc, axis=0) + eps / len(words)
        taken = credit * omega_w  # [m, K] frames' worth each word takes
        contrib = taken @ frames - (taken * lam[:, None]) @ explained  # [m, D]
        per_word = taken.sum(axis=1)
        frame_sum = frames.sum(axis=0, dtype=np.float64).astype(np.float32)
        for i, r in enumerate(rows):
            u = float(per_word[i])
            r.proto_sum = (r.proto_sum + contrib[i]).astype(np.float32)
            r.weight += u
            r.weight_sq += u * u
            r.cooc_sum = (r.cooc_sum + frame_sum).astype(np.float32)
            r.cooc_count += k
            r.exposures += 1
            r.first_seen = min(r.first_seen, t)
            r.last_seen = max(r.last_seen, t)
            r.last_utt = bg.utterances
            staged[r.word] = r
        emb = (omega @ frames) / max(float(omega.sum()), _TINY)
        ep = EpisodeRow(t, text, emb.astype(np.float32), frame_sum,
                        (frames - float(lam.max(initial=0.0)) * explained).mean(axis=0).astype(np.float32), k,
                        {w: float(u) for w, u in zip(words, per_word)}, media if self.keep_media else None)
        total = float(per_word.sum())
        rep = LearnReport(-1, {w: float(u) / total for w, u in zip(words, per_word)},
                          {w: float(u) for w, u in zip(words, per_word)}, [float(x) for x in omega], new_words,
                          frame_taken={w: taken[i].tolist() for i, w in enumerate(words)})
        return ep, rep

    def _competitor_rows(self, heard: set[str]) -> np.ndarray:
        """The strongest `competitors` words in memory that were NOT heard in this utterance (committed state)."""
        self._ensure_derived()
        tb = self._table
        n = len(tb)
        rows = np.arange(n)
        if n > self.params.competitors:  # only strong words can make strong claims (claim <= strength * |f - g|)
            rows = np.argpartition(-tb.strength[:n], self.params.competitors)[: self.params.competitors]
        heard_rows = {tb.index[w] for w in heard if w in tb.index}
        return np.array([r for r in rows if r not in heard_rows], dtype=np.int64)

    def _rival_evidence(self, frames: np.ndarray, heard: set[str]) -> np.ndarray:
        """Per frame [K], the strongest evidence that it shows a word NOT heard: that word's score v_u.(f - g)
        in the world's standard deviations along v_u, weighed by how reliable a name it is (strength /
        select_ref). Scale-free: it compares with how frames vary, not with other words' strengths."""
        rows = self._competitor_rows(heard)
        if rows.size == 0:
            return np.full(frames.shape[0], -1e9, np.float32)
        tb = self._table
        z = (tb.vec[rows] @ (frames - self._g_cached).T) / tb.spread[rows, None]  # [M, K]
        return (z * (tb.strength[rows] / self.params.select_ref)[:, None]).max(axis=0)

    def _competitor_claims(self, frames: np.ndarray, heard: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per frame, the strongest (clipped at 0) claim of a word NOT heard in this utterance and that word's
        contrast m_u - g, what it adds to a frame ([K], [K, D]), from the committed state."""
        tb = self._table
        k = frames.shape[0]
        rows = self._competitor_rows(heard)
        if rows.size == 0:
            return np.zeros(k, np.float32), np.zeros((k, self.dim), np.float32)
        scores = tb.name_mat[rows] @ frames.T + tb.name_bias[rows, None]  # [M, K]
        best = np.argmax(scores, axis=0)
        return np.maximum(scores[best, np.arange(k)], 0.0), tb.contrast[rows[best]]

    # ------------------------------------------------------------------ queries
    def _ensure_derived(self) -> None:
        tb = self._table
        n = len(tb)
        moved = self._bg.utterances != self._rebuilt_at
        grown = self._bg.utterances - self._rebuilt_at >= max(16, self._rebuilt_at // 10)
        small = n * self.dim <= 65_536  # (~1k words at D = 64: re-deriving all is as cheap as a few rows)
        if self._full_rebuild or grown or (small and moved):
            self._g_cached = self._background_mean(self._bg)
            self._w_cached = whitener(self._bg, self.dim, self.params)
            self._sigma_cached = world_covariance(self._bg, self.dim)
            if n:
                tb.rederive(slice(0, n), self._g_cached, self.params, self._w_cached, self._sigma_cached)
            self._rebuilt_at = self._bg.utterances
            self._full_rebuild = False
            self._stale_words.clear()
        elif self._stale_words:
            rows = np.array(sorted(tb.index[w] for w in self._stale_words if w in tb.index), dtype=np.int64)
            if rows.size:
                tb.rederive(rows, self._g_cached, self.params, self._w_cached, self._sigma_cached)
            self._stale_words.clear()

    def name(self, frame_embedding: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """Top-k words for a frame embedding [D], best first, with scores (strength x contrast cosine)."""
        x = _check_vectors(frame_embedding, self.dim, "frame_embedding", 1)[0]
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        with self._lock:
            self._check_open()
            self._ensure_derived()
            tb = self._table
            n = len(tb)
            if n == 0:
                return []
            scores = tb.name_mat[:n] @ x + tb.name_bias[:n]
            words = tb.words
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(words[i], float(scores[i])) for i in top]

    def word_vectors(self, words: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Unit vectors of the words (all, or those asked for that the memory knows), for edge.evaluate."""
        with self._lock:
            self._check_open()
            self._ensure_derived()
            idx = self._table.index
            wanted = self._table.words if words is None else [w for w in words if w in idx]
            return {w: self._table.vec[idx[w]].copy() for w in wanted}

    def strength(self, word: str) -> float:
        """Naming strength of a word (0 for unknown words); low for diffuse words such as 'the'."""
        with self._lock:
            self._ensure_derived()
            i = self._table.index.get(word)
            return 0.0 if i is None else float(self._table.strength[i])

    def find(self, word: str, k: int = 5, *, heard_only: bool = False) -> list[Episode]:
        """The remembered moments that best match a word (cosine of its vector with each episode's attended
        frames, contrasted with the background), best first. heard_only: only moments where it was said."""
        if not isinstance(word, str) or not word:
            raise InputError(f"find needs a word, got {word!r}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        with self._lock:
            self._check_open()
            self._ensure_derived()
            i = self._table.index.get(word)
            if i is None:
                return []
            v = self._table.vec[i].copy()
            g = self._g_cached.copy()
        best: list[tuple[float, int, float, str]] = []
        for ids, ts, texts, emb in self._store.iter_episodes(word=word if heard_only else None):
            c = emb - g
            sc = (c @ v) / np.maximum(np.linalg.norm(c, axis=1), _TINY)
            top = np.argsort(-sc)[:k]
            best.extend((float(sc[j]), int(ids[j]), float(ts[j]), texts[j]) for j in top)
            best = sorted(best, key=lambda b: -b[0])[:k]
        words = self._store.episode_words(b[1] for b in best)
        return [Episode(eid, t, text, score, tuple(words[eid])) for score, eid, t, text in best]

    def stats(self) -> dict:
        with self._lock:
            self._check_open()
            n_words, n_eps = self._store.counts()
            tb = self._table
            n = len(tb)
            return {"path": self.path, "dim": self.dim, "words": n_words, "episodes": n_eps,
                    "utterances_learned": self._bg.utterances, "frames_learned": int(self._bg.count),
                    "capacity_words": self.capacity_words, "capacity_episodes": self.capacity_episodes,
                    "words_with_prior": int(tb.has_prior[:n].sum()), "reentrance": self.reentrance,
                    "keep_media": self.keep_media, "bytes_on_disk": self._store.bytes_on_disk(),
                    "ram_bytes": tb.nbytes()}

    def words(self) -> list[str]:
        with self._lock:
            return list(self._table.words)

    def exposures(self, word: str) -> int:
        with self._lock:
            i = self._table.index.get(word)
            return 0 if i is None else int(self._table.exposures[i])

    def episode_times(self) -> list[float]:
        """Times of every stored episode, oldest first (tests and tools)."""
        with self._lock:
            self._check_open()
            return self._store.episode_times()

    # ------------------------------------------------------------------ forgetting (privacy)
    def _undo_episodes(self, ids: list[int], drop: set[str], floor_time: float | None) -> None:
        """Remove episodes, subtract the credit they gave every other word (approximately: the word's credit times
        the mean of what was learned from the episode's frames), delete the words in `drop` and those left with no exposure; VACUUM."""
        rows: dict[str, WordRow] = {}
        for w, credit, emb, frame_sum, n_frames in self._store.credits_of_episodes(ids):
            if w in drop:
                continue
            r = rows.get(w) or self._table.row(w)
            if r is None:
                continue
            r.proto_sum = (r.proto_sum - credit * emb).astype(np.float32)
            r.weight -= credit
            r.weight_sq = max(r.weight_sq - credit * credit, 0.0)
            r.cooc_sum = (r.cooc_sum - frame_sum).astype(np.float32)
            r.cooc_count = max(r.cooc_count - n_frames, 0.0)
            r.exposures -= 1
            if floor_time is not None:
                r.last_seen = min(r.last_seen, floor_time)
            rows[w] = r
        gone = set(drop) | {w for w, r in rows.items() if r.exposures <= 0 or r.weight <= 1e-6}
        keep = [r for w, r in rows.items() if w not in gone]
        # the world's statistics forget those frames too (the covariance from each episode's mean: its frames
        # are near-duplicates of one scene)
        bg = Background(self._bg.total.astype(np.float64), self._bg.count, self._bg.utterances,
                        self._bg.evicted_through, None if self._bg.second is None else self._bg.second.copy())
        for frame_sum, n in self._store.episode_frames(ids):
            bg.total -= frame_sum
            bg.count = max(bg.count - n, 0.0)
            if bg.second is not None and n:
                bg.second -= np.outer(frame_sum, frame_sum) / n
        bg.total = bg.total.astype(np.float32)
        self._store.forget(sorted(gone), keep, ids, bg)
        self._bg = bg
        for w in gone:
            self._table.remove(w)
        for r in keep:
            self._table.put(r)
        self._full_rebuild = True

    def forget_word(self, word: str) -> dict:
        """Forget a word: its prototype, and every episode in which it was heard (with what those episodes
        taught other words). The file is vacuumed so the removed text is gone from disk."""
        if not isinstance(word, str) or not word:
            raise InputError(f"forget_word needs a word, got {word!r}")
        with self._lock:
            self._check_open()
            ids = [eid for eid, _ in self._store.episodes_of_word(word)]
            known = word in self._table.index
            self._undo_episodes(ids, {word}, None)
        log.info("forgot %r and %d episodes", word, len(ids))
        return {"word": word, "known": known, "episodes_removed": len(ids)}

    def forget_since(self, t: float) -> dict:
        """Forget everything learned at or after time t: those episodes, the words first heard since, and
        the credit the episodes gave older words. If episodes after t were already evicted (capacity), the
        words heard since t are removed entirely, since their share cannot be undone."""
        try:
            t = float(t)
        except (TypeError, ValueError) as e:
            raise InputError(f"forget_since needs a time in seconds, got {t!r}") from e
        if math.isnan(t):
            raise InputError("forget_since needs a time, got NaN")
        with self._lock:
            self._check_open()
            ids = [eid for eid, _ in self._store.episodes_since(t)]
            tb = self._table
            n = len(tb)
            drop = {tb.words[i] for i in range(n) if tb.first_seen[i] >= t}
            if self._bg.evicted_through >= t:
                drop |= {tb.words[i] for i in range(n) if tb.last_seen[i] >= t}
            self._undo_episodes(ids, drop, t)
        log.info("forgot since t=%s: %d episodes, %d words", t, len(ids), len(drop))
        return {"since": t, "episodes_removed": len(ids), "words_removed": len(drop)}


def reset_memory(path: str | Path) -> Path | None:
    """Start fresh: move the memory file (damaged or not) aside as `<name>.corrupt-<timestamp>`; never
    deletes. Returns where it went (None if there was no file)."""
    return set_aside(path)
