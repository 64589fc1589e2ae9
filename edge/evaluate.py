"""CVCL's n-way forced-choice evaluation over embeddings, in numpy.

One implementation judges torch checkpoints, ONNX bundles and the online memory alike: each trial shows a
target word with `n_way` images (one of the target's category, n_way - 1 foils from other, distinct, random
categories); it is correct when the target image has the highest cosine similarity with the word embedding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from firstwords.edge.errors import InputError


@dataclass(frozen=True)
class Trial:
    category: str
    image_indices: tuple[int, ...]  # indices into the image set; the target is at target_position
    target_position: int


@dataclass
class EvalResult:
    n_way: int
    n_trials: int
    overall: float
    ci95: tuple[float, float]
    per_category: dict[str, float] = field(default_factory=dict)
    per_category_n: dict[str, int] = field(default_factory=dict)
    skipped_categories: list[str] = field(default_factory=list)

    @property
    def chance(self) -> float:
        return 1.0 / self.n_way

    def to_dict(self) -> dict:
        return {"n_way": self.n_way, "n_trials": self.n_trials, "accuracy": round(self.overall, 4),
                "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)], "chance": round(self.chance, 4),
                "per_category": {k: round(v, 4) for k, v in sorted(self.per_category.items())},
                "skipped_categories": self.skipped_categories}

    def table(self) -> str:
        lines = [f"{'category':<16} {'acc':>6} {'n':>5}"]
        for cat in sorted(self.per_category):
            lines.append(f"{cat:<16} {self.per_category[cat]:6.3f} {self.per_category_n[cat]:5d}")
        lo, hi = self.ci95
        lines.append(f"{'overall':<16} {self.overall:6.3f} {self.n_trials:5d}  "
                     f"95% CI [{lo:.3f}, {hi:.3f}]  chance {self.chance:.3f}  ({self.n_way}-way)")
        if self.skipped_categories:
            lines.append(f"skipped (no word embedding): {', '.join(self.skipped_categories)}")
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
            trials.append(Trial(cat, tuple(images), pos))
    return trials


def score_trials(trials: Sequence[Trial], image_embeddings: np.ndarray,
                 word_embeddings: Mapping[str, np.ndarray]) -> EvalResult:
    """Score trials; categories without a word embedding are skipped and listed (never silently counted)."""
    if not trials:
        raise InputError("no trials to score")
    img = np.asarray(image_embeddings, dtype=np.float32)
    if img.ndim != 2:
        raise InputError(f"image embeddings must be [N, D], got shape {img.shape}")
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    n_way = len(trials[0].image_indices)
    correct: dict[str, int] = {}
    count: dict[str, int] = {}
    skipped: set[str] = set()
    for t in trials:
        vec = word_embeddings.get(t.category)
        if vec is None:
            skipped.add(t.category)
            continue
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.shape[0] != img.shape[1]:
            raise InputError(f"word embedding for {t.category!r} has dim {vec.shape[0]}, images have {img.shape[1]}")
        sims = img[list(t.image_indices)] @ vec
        # A tie (e.g. an all-zero word vector) counts as wrong, not as a lucky first pick.
        best = int(np.argmax(sims))
        ok = best == t.target_position and np.sum(sims == sims[best]) == 1
        correct[t.category] = correct.get(t.category, 0) + int(ok)
        count[t.category] = count.get(t.category, 0) + 1
    n = sum(count.values())
    k = sum(correct.values())
    return EvalResult(
        n_way=n_way, n_trials=n, overall=k / n if n else 0.0, ci95=wilson_interval(k, n),
        per_category={c: correct[c] / count[c] for c in count}, per_category_n=dict(count),
        skipped_categories=sorted(skipped))
