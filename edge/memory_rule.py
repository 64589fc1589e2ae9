"""The memory's learning rule, pure numpy (no storage): from one moment's words and frames to new word sums.

Open vocabulary: every word heard gets a visual prototype in the bundle's joint embedding space (dim D).

Update rule (cross-situational, in the spirit of Fazly, Alishahi & Stevenson 2010 and Yu & Smith 2007). For a
moment with words w_1..w_m and the frame embeddings f_1..f_K of its window (g: the running mean of every frame
seen, the background; v_w a word's unit vector, s_w its naming strength):
  * association   A[w, k] = max(0, s_w * v_w . (f_k - g)); clipped, so a (possibly wrong) hypothesis makes a
                  word claim frames but never refuse one that nobody claims -- no lock-in on a first
                  impression
  * credit        each frame's unit of credit is shared among the words, softmax_w(beta * A[w, k]) mixed with
                  a uniform share that decays as the memory hears more: words that already explain a frame
                  take it, a new word is left what nobody explains (mutual exclusivity falls out of this)
  * re-entrance   the memory's state decides what in the window it learns from (the "gate"). Per frame, the
                  strongest claim of a word in memory that was NOT said (the dress in view while "shoe" is
                  heard: the toy seen on looking away, the scene's other object, or a displaced reference), in
                  the world's standard deviations along that word's direction, z_u = v_u.(f - g) / sqrt(v_u'
                  Sigma v_u), weighed by how reliable a name it is (s_u / select_ref). A frame where it passes
                  ~1.5 counts less (down to select_floor) for the words heard, as far as each has evidence
                  behind it (maturity: a word heard for the first time learns from the whole window; an
                  encoder prior alone gives half a say). The judgement looks along the OTHER words' directions
                  only: choosing frames by how well they fit a word's own guess would bias the word towards
                  its guess.
  * confidence    each word learns in proportion to the recogniser's confidence in it (1.0 for a transcript);
                  a word below LearningParams.min_word_confidence is not learned at all.
  * prototype     sum_w += sum_k omega[w, k] C[w, k] f_k; weight_w += its credit (frames' worth); the
                  prototype is the credit-weighted mean m_w = sum_w / weight_w; its contrast c_w = m_w - g,
                  whitened by the world's frame covariance (W c_w: Fisher's discriminant against everything
                  seen, so that what varies in every scene -- backgrounds, light -- stops masking what the
                  word's frames share), gives the direction.
Naming strength: how far the PLAIN co-occurrence mean of the word (every frame of every window it was heard
in) sits from the background, relative to the spread of the world (sigma^2 = 1 - |g|^2), ramped by the
effective number of utterances behind it. A function word ("the", "look", "you") is heard whatever is in view:
its co-occurrence mean is the background and its strength ~0 -- learned from diffuse co-occurrence, no stop
list. Debiased for rare words: a word heard in n windows sits ~sqrt(chance / n) sigma from the background by
chance alone (a window's frames are ~one draw of its scene), so s_learned = sqrt(max(|cc|^2 / sigma^2 - chance
/ n, 0)) x ramp: a word heard twice is no name yet, however alike its two scenes.
For an in-vocabulary word the encoder's utterance embedding p_w is the prior: v_w = normalise(a p_w + (1 - a)
c_w / |c_w|), a = n0 / (n0 + weight_w): the memory takes over the direction with the credit the word takes.
Its strength s_w = a' prior_strength + (1 - a') s_learned, a' = n0 / (n0 + frames heard with): the prior's say
in the strength fades with co-occurrence, not credit (a function word loses every frame's credit to the object
words, so a credit-faded prior would keep it at prior_strength for ever), and prior_strength is small: an
encoder prior alone makes a weak name. Words outside the vocabulary start from scratch (a = a' = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from firstwords.edge.errors import InputError

TINY = 1e-12


@dataclass(frozen=True)
class LearningParams:
    credit_beta: float = 10.0  # sharpness of the credit softmax over a moment's words
    uniform_start: float = 0.5  # uniform share of credit when the memory is new ...
    uniform_floor: float = 0.05  # ... decaying to this ...
    uniform_halflife: float = 200.0  # ... halfway after this many utterances
    prior_frames: float = 100.0  # n0: weight of the encoder's prior, in frames' worth of credit
    prior_strength: float = 0.1  # naming strength of a prior before any exposure: small, so that rare
    #                              in-vocabulary words ('up', 'did') never outrank learned object words
    confidence_utterances: float = 2.0  # strength ramp n/(n + this), n = effective utterances behind a word
    # debiasing of the strength: the squared contrast a word heard in n windows shows by chance alone is
    # this * sigma^2 / n (one window's frames are ~one draw of the scene: its mean varies ~0.94 sigma^2 around
    # the background on the sample)
    chance_windows: float = 1.0
    debias: bool = True  # False: the raw contrast, the prior faded by credit (what debiasing guards against)
    select_threshold: float = 1.5  # gate: a frame turns from the words heard when a word not said scores
    #                                this many world standard deviations along its direction (x reliability)
    select_beta: float = 3.0  # gate: the sharpness of that turn (per standard deviation)
    select_ref: float = 0.4  # gate: the naming strength of a fully reliable name (a word's claim is weighed
    #                          by strength / select_ref: a weak encoder's or a new word's names cut little)
    select_floor: float = 0.1  # gate: a mature word still learns this share from a frame claimed by another
    whiten: bool = True  # word directions whitened by the world's frame covariance (Fisher's discriminant)
    whiten_eps: float = 0.01  # ridge on the covariance, relative to its mean variance
    prior_maturity: float = 0.5  # how far an encoder prior alone may steer the gate
    competitors: int = 256  # the gate consults the strongest this many words for competing claims
    min_word_confidence: float = 0.0  # a word heard with less confidence than this is not learned at all

    def __post_init__(self) -> None:
        c = self.min_word_confidence
        if not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
            raise InputError(f"min_word_confidence must be a number within 0..1, got {c!r}; check the device "
                             f"config's [memory] min_word_confidence")

    def uniform_share(self, utterances: int) -> float:
        h = self.uniform_halflife
        return self.uniform_floor + (self.uniform_start - self.uniform_floor) * h / (h + utterances)


@dataclass
class WordRow:
    """One word's raw sums: everything the rule keeps about it (derived vectors are recomputed from these)."""

    word: str
    proto_sum: np.ndarray  # float32 [D]: sum of credit-weighted frame embeddings
    weight: float  # sum of credit (frames' worth)
    weight_sq: float  # sum over moments of (credit per moment)^2, for the effective count
    cooc_sum: np.ndarray  # float32 [D]: confidence-weighted sum of every frame of the windows it was heard in
    cooc_count: float  # confidence-weighted number of those frames
    exposures: int  # moments in which the word was learned
    prior: np.ndarray | None  # float32 [D]: the encoder's utterance embedding; None out of vocabulary
    first_seen: float
    last_seen: float
    last_utt: int  # utterance counter at the last exposure (recency for eviction, unit-free)


@dataclass
class Background:
    """Statistics of every frame learned from: the background mean g and the world's covariance."""

    total: np.ndarray  # [D] sum of frame embeddings
    count: float
    utterances: int
    evicted_through: float  # latest time of an evicted episode (-inf if none): forget_since can't undo it
    second: np.ndarray | None = None  # [D, D] sum of f f^T (None: unknown)

    def copy(self) -> Background:
        return Background(self.total.astype(np.float64), self.count, self.utterances, self.evicted_through,
                          None if self.second is None else self.second.copy())

    def mean(self, dim: int) -> np.ndarray:
        return (self.total / self.count).astype(np.float32) if self.count > 0 else np.zeros(dim, np.float32)

    def add(self, frames: np.ndarray) -> None:
        self.total = self.total + frames.sum(axis=0, dtype=np.float64)
        if self.second is None:
            self.second = np.zeros((frames.shape[1], frames.shape[1]))
        self.second = self.second + frames.T.astype(np.float64) @ frames
        self.count += frames.shape[0]
        self.utterances += 1


@dataclass
class WordSums:
    """The raw sums of n words as arrays: what derive() turns into vectors, strengths and maturities."""

    proto_sum: np.ndarray  # [n, D]
    weight: np.ndarray  # [n]
    weight_sq: np.ndarray
    cooc_sum: np.ndarray  # [n, D]
    cooc_count: np.ndarray
    exposures: np.ndarray
    prior: np.ndarray  # [n, D], zeros where has_prior is False
    has_prior: np.ndarray  # [n] bool

    @classmethod
    def of_rows(cls, rows: list[WordRow], dim: int) -> WordSums:
        return cls(np.stack([r.proto_sum for r in rows]), np.array([r.weight for r in rows]),
                   np.array([r.weight_sq for r in rows]), np.stack([r.cooc_sum for r in rows]),
                   np.array([r.cooc_count for r in rows]), np.array([r.exposures for r in rows]),
                   np.stack([r.prior if r.prior is not None else np.zeros(dim, np.float32) for r in rows]),
                   np.array([r.prior is not None for r in rows]))


def world_covariance(bg: Background, dim: int) -> np.ndarray:
    """The covariance of every frame seen [D, D] (isotropic, the unit vectors' share, before two frames)."""
    if bg.second is None or bg.count < 2:
        return np.eye(dim) / dim
    g = bg.total / bg.count
    return bg.second / bg.count - np.outer(g, g)


def whitener(bg: Background, dim: int, params: LearningParams) -> np.ndarray:
    """W = (Sigma + eps I)^-1 for the world's frame covariance Sigma, shrunk towards a scaled identity while
    few frames are known. A word's direction W c_w is then Fisher's discriminant of its frames against the
    world: variation every scene has (backgrounds, lighting) stops masking what the word's frames share."""
    eye = np.eye(dim)
    if bg.second is None or bg.count < 2 or not params.whiten:
        return eye
    sigma = world_covariance(bg, dim)
    scale = max(float(np.trace(sigma)) / dim, 1e-9)
    shrink = dim / (dim + bg.count)  # towards the identity while frames are few
    sigma = (1.0 - shrink) * sigma + (shrink + params.whiten_eps) * scale * eye
    w = np.linalg.inv(sigma) * scale  # (scale-free)
    return (w + w.T) / 2.0


def derive(sums: WordSums, g: np.ndarray, params: LearningParams,
           whiten: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit word vectors v [n, D], naming strengths s [n] and maturities [n] (0..1, how much evidence is
    behind the word) from the raw sums (see the module doc)."""
    sigma = math.sqrt(max(1.0 - float(g @ g), 1e-6))
    weight = sums.weight
    learned = weight > TINY
    # direction: the credited prototype's contrast with the background
    c = np.where(learned[:, None], sums.proto_sum / np.maximum(weight, TINY)[:, None] - g[None, :], 0.0)
    if whiten is not None:
        c = c @ whiten
    direction = c / np.maximum(np.linalg.norm(c, axis=1), TINY)[:, None]
    # strength: how far the PLAIN co-occurrence mean (every frame of every window the word was heard in) sits
    # from the background. A word heard whatever is in view ("the") has its co-occurrence mean at the
    # background, however its credit was spent; a referring word ("ball") does not.
    cc = np.where((sums.cooc_count > 0)[:, None],
                  sums.cooc_sum / np.maximum(sums.cooc_count, TINY)[:, None] - g[None, :], 0.0)
    n_eff = weight * weight / np.maximum(sums.weight_sq, TINY)  # effective number of utterances behind it
    maturity = np.where(learned, n_eff / (n_eff + params.confidence_utterances), 0.0)
    a = np.where(sums.has_prior, params.prior_frames / (params.prior_frames + weight), 0.0)
    v = a[:, None] * sums.prior + (1.0 - a)[:, None] * direction
    v = v / np.maximum(np.linalg.norm(v, axis=1), TINY)[:, None]
    if params.debias:
        # A word heard in few windows sits away from the background by chance alone: E|cc|^2 = |true|^2 +
        # chance * sigma^2 / n_windows. Take that out. The prior's share of the strength fades with the frames
        # the word was heard with, not with the credit it took (see the module doc).
        z2 = np.sum(cc * cc, axis=1) / (sigma * sigma)
        n_win = np.maximum(sums.exposures.astype(np.float64), 1.0)
        s_learned = np.sqrt(np.maximum(z2 - params.chance_windows / n_win, 0.0)) * maturity
        a_s = np.where(sums.has_prior, params.prior_frames / (params.prior_frames + sums.cooc_count), 0.0)
    else:
        s_learned = (np.linalg.norm(cc, axis=1) / sigma) * maturity
        a_s = a
    s = a_s * params.prior_strength + (1.0 - a_s) * s_learned
    maturity = np.maximum(maturity, a * params.prior_maturity)
    return v.astype(np.float32), s.astype(np.float32), maturity.astype(np.float32)


def softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def gate(rival: np.ndarray, params: LearningParams) -> np.ndarray:
    """How much each frame counts [K] (1: fully; select_floor: claimed by a word not said), from the strongest
    rival evidence per frame in reliability-weighted world standard deviations."""
    cut = 1.0 / (1.0 + np.exp(-np.clip(params.select_beta * (rival - params.select_threshold), -30.0, 30.0)))
    return (1.0 - (1.0 - params.select_floor) * cut).astype(np.float32)


def learn_moment(rows: list[WordRow], confidence: np.ndarray, frames: np.ndarray, t: float, bg: Background,
                 whiten: np.ndarray, rival: np.ndarray | None, params: LearningParams
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Apply one moment to the rows of its words (updated in place). `bg` already includes the moment's
    frames; `rival` is the per-frame evidence of words not said (None: re-entrance off, every frame counts
    alike). Returns (taken [m, K]: frames' worth each word learned from each frame, omega [K]: each frame's
    weight)."""
    k = frames.shape[0]
    g = bg.mean(frames.shape[1])
    v, s, maturity = derive(WordSums.of_rows(rows, frames.shape[1]), g, params, whiten)
    assoc = np.maximum(s[:, None] * (v @ (frames - g).T), 0.0)  # [m, K]
    omega = np.ones(k, np.float32)
    omega_w = np.ones((len(rows), k), np.float32)
    if rival is not None:
        omega = gate(rival, params)
        omega_w = (1.0 - maturity[:, None]) + maturity[:, None] * omega[None, :]
    eps = params.uniform_share(bg.utterances)
    credit = (1.0 - eps) * softmax(params.credit_beta * assoc, axis=0) + eps / len(rows)
    taken = credit * omega_w * confidence[:, None]  # [m, K] frames' worth each word takes
    contrib = taken @ frames  # [m, D]
    per_word = taken.sum(axis=1)
    frame_sum = frames.sum(axis=0, dtype=np.float64).astype(np.float32)
    for i, r in enumerate(rows):
        u = float(per_word[i])
        c = float(confidence[i])
        r.proto_sum = (r.proto_sum + contrib[i]).astype(np.float32)
        r.weight += u
        r.weight_sq += u * u
        r.cooc_sum = (r.cooc_sum + c * frame_sum).astype(np.float32)
        r.cooc_count += c * k
        r.exposures += 1
        r.first_seen = min(r.first_seen, t)
        r.last_seen = max(r.last_seen, t)
        r.last_utt = bg.utterances
    return taken, omega


__all__ = ["Background", "LearningParams", "WordRow", "WordSums", "derive", "gate", "learn_moment", "softmax",
           "whitener", "world_covariance"]
