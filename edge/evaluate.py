"""CVCL's n-way forced-choice evaluation over embeddings, in numpy, in both of CVCL's directions.

One implementation judges torch checkpoints, ONNX bundles and the online memory alike. A trial holds n_way
images: one of the target category and n_way - 1 foils from other, distinct, random categories.
    direction "image" (CVCL's main test): the target word against the n_way images; correct when the target
                      image is the most similar to the word.
    direction "text"  (CVCL's eval_type text): the target image against the n_way categories' words; correct
                      when the target word is the most similar to the image.
Ties count as wrong. Whatever makes the embeddings (a torch model, an ONNX bundle, the memory's prototypes),
they arrive here as arrays: image rows and {word: vector}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from firstwords.edge.errors import InputError

DIRECTIONS = ("image", "text")


@dataclass(frozen=True)
class Trial:
    category: str
    image_indices: tuple[int, ...]  # indices into the image set; the target is at target_position
    target_position: int
    categories: tuple[str, ...] = ()  # the category of each image (the text direction's candidate words)


@dataclass
class EvalResult:
    n_way: int
    n_trials: int
    overall: float
    ci95: tuple[float, float]
    per_category: dict[str, float] = field(default_factory=dict)
    per_category_n: dict[str, int] = field(default_factory=dict)
    skipped_categories: list[str] = field(default_factory=list)
    direction: str = "image"

    @property
    def chance(self) -> float:
        return 1.0 / self.n_way

    def to_dict(self) -> dict:
        return {"direction": self.direction, "n_way": self.n_way, "n_trials": self.n_trials,
                "accuracy": round(self.overall, 4),
                "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)], "chance": round(self.chance, 4),
                "per_category": {k: round(v, 4) for k, v in sorted(self.per_category.items())},
                "skipped_categories": self.skipped_categories}

    def table(self) -> str:
        what = "word -> n images" if self.direction == "image" else "image -> n words"
        lines = [f"direction {self.direction} ({what})", f"{'category':<16} {'acc':>6} {'n':>5}"]
        for cat in sorted(self.per_category):
            lines.append(f"{cat:<16} {self.per_category[cat]:6.3f} {self.per_category_n[cat]:5d}")
        lo, hi = self.ci95
        lines.append(f"{'overall':<16} {self.overall:6.3f} {self.n_trials:5d}  "
                     f"95% CI [{lo:.3f}, {hi:.3f}]  chance {self.chance:.3f}  ({self.n_way}-way)")
        if self.skipped_categories:
            lines.append(f"skipped (no word embedding): {', '.join(self.skipped_categories)}"
                         + (" - with the trials that offer them" if self.direction == "text" else ""))
        return "\n".join(lines)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (sensible at small n and near 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def make_trials(labels: Sequence[str], n_way: int = 4, trials_per_category: int = 100,
                seed: int = 0) -> list[Trial]:
    """CVCL's trials: per category, `trials_per_category` draws of one target image and foils from
    n_way - 1 other distinct categories (one random image each). Deterministic for a seed."""
    if n_way < 2:
        raise InputError(f"n_way must be at least 2, got {n_way}")
    by_cat: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_cat.setdefault(lab, []).append(i)
    cats = sorted(by_cat)
    if len(cats) < n_way:
        raise InputError(f"{n_way}-way trials need at least {n_way} categories; the set has {len(cats)}: "
                         f"{', '.join(cats)}")
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    for cat in cats:
        others = [c for c in cats if c != cat]
        for _ in range(trials_per_category):
            target = int(rng.choice(by_cat[cat]))
            foil_cats = rng.choice(len(others), size=n_way - 1, replace=False)
            foils = [int(rng.choice(by_cat[others[j]])) for j in foil_cats]
            pos = int(rng.integers(n_way))
            images = foils[:pos] + [target] + foils[pos:]
            trials.append(Trial(cat, tuple(images), pos, tuple(labels[i] for i in images)))
    return trials


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _unique_best(sims: np.ndarray, target: int) -> bool:
    """The target scores highest, alone (a tie, e.g. with an all-zero vector, is not a lucky first pick)."""
    best = int(np.argmax(sims))
    return best == target and int(np.sum(sims == sims[best])) == 1


def score_trials(trials: Sequence[Trial], image_embeddings: np.ndarray,
                 word_embeddings: Mapping[str, np.ndarray], direction: str = "image",
                 labels: Sequence[str] | None = None) -> EvalResult:
    """Score trials in one direction. Categories without a word embedding are skipped and listed (never silently
    counted); in the text direction a trial offering such a word is skipped too. `labels` (category per image)
    stands in for trials made without `categories`."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if not trials:
        raise InputError("no trials to score")
    img = np.asarray(image_embeddings, dtype=np.float32)
    if img.ndim != 2:
        raise InputError(f"image embeddings must be [N, D], got shape {img.shape}")
    img = _unit(img)
    n_way = len(trials[0].image_indices)
    correct: dict[str, int] = {}
    count: dict[str, int] = {}
    skipped: set[str] = set()

    def vector(word: str) -> np.ndarray | None:
        vec = word_embeddings.get(word)
        if vec is None:
            skipped.add(word)
            return None
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.shape[0] != img.shape[1]:
            raise InputError(f"word embedding for {word!r} has dim {vec.shape[0]}, images have {img.shape[1]}")
        return vec

    for t in trials:
        if direction == "image":
            vec = vector(t.category)
            if vec is None:
                continue
            ok = _unique_best(img[list(t.image_indices)] @ vec, t.target_position)
        else:
            cats = t.categories or (tuple(labels[i] for i in t.image_indices) if labels is not None else ())
            if len(cats) != len(t.image_indices):
                raise InputError("text-direction trials need the category of every image: make them with "
                                 "make_trials or pass labels=")
            vecs = [vector(c) for c in cats]
            if any(v is None for v in vecs):
                continue
            ok = _unique_best(np.stack(vecs) @ img[t.image_indices[t.target_position]], t.target_position)
        correct[t.category] = correct.get(t.category, 0) + int(ok)
        count[t.category] = count.get(t.category, 0) + 1
    n = sum(count.values())
    k = sum(correct.values())
    return EvalResult(
        n_way=n_way, n_trials=n, overall=k / n if n else 0.0, ci95=wilson_interval(k, n),
        per_category={c: correct[c] / count[c] for c in count}, per_category_n=dict(count),
        skipped_categories=sorted(skipped), direction=direction)


def label_tokens(vocab, words: Sequence[str], bare: bool = False) -> tuple[list[str], np.ndarray]:
    """Token ids [N, L] for the category words whose every token the vocabulary knows (the others are left
    out, so that score_trials lists them as skipped instead of scoring <unk>).

    bare=False: <sos> word <eos>, as an utterance is fed (our training; CVCL's tokenize()).
    bare=True:  the word's ids alone, as CVCL's eval.py feeds a label (its default, eval_include_sos_eos off).
    """
    known, seqs = [], []
    for w in words:
        toks = vocab.tokens(w)
        if toks and all(t in vocab for t in toks):
            ids = [vocab.ids[t] for t in toks]
            known.append(w)
            seqs.append(ids if bare else vocab.encode(w))
    out = np.zeros((len(seqs), max((len(q) for q in seqs), default=1)), dtype=np.int64)
    for i, q in enumerate(seqs):
        out[i, :len(q)] = q
    return known, out


def word_vectors(encode_tokens: Callable[[np.ndarray], np.ndarray], vocab, categories: Sequence[str],
                 bare: bool = False, word_for: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """{category: unit vector} through any utterance encoder (a torch model's, an ONNX session's).
    word_for names the word embedded for a category (CVCL evaluates category "cat" with the word "kitty")."""
    word_for = dict(word_for or {})
    spoken = {c: word_for.get(c, c) for c in categories}
    known, tokens = label_tokens(vocab, sorted(set(spoken.values())), bare)
    if not known:
        return {}
    emb = _unit(np.asarray(encode_tokens(tokens), dtype=np.float32))
    by_word = dict(zip(known, emb))
    return {c: by_word[w] for c, w in spoken.items() if w in by_word}
