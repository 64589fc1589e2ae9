"""The memory's words in RAM: raw sums as growable numpy arrays, a name index, and the derived query arrays
(unit vector, strength, the name() matrix) re-derived lazily from the sums.

The query arrays are derived against a cached background mean g (and the world's whitener and covariance);
rows that change are re-derived at the next query, and everything when the memory has grown by ~10 % since
(g drifts ~1/n) or after forgetting."""

from __future__ import annotations

import numpy as np
from firstwords.edge.memory_rule import (
    TINY,
    Background,
    LearningParams,
    WordRow,
    WordSums,
    derive,
    whitener,
    world_covariance,
)


class WordTable:
    """Rows of every word in memory. Not thread-safe on its own: AssociativeMemory guards it with its lock."""

    _SUMS = ("proto_sum", "prior", "has_prior", "weight", "weight_sq", "cooc_sum", "cooc_count", "exposures",
             "first_seen", "last_seen", "last_utt")
    _DERIVED = ("vec", "strength", "name_mat", "name_bias", "spread")

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
        # derived, for queries: unit vector, strength, the name() matrix s * v with its bias -s * v.g, and the
        # world's standard deviation along the unit vector (the gate's scale)
        self.vec = np.zeros((cap, dim), np.float32)
        self.strength = np.zeros(cap, np.float32)
        self.name_mat = np.zeros((cap, dim), np.float32)
        self.name_bias = np.zeros(cap, np.float32)
        self.spread = np.ones(cap, np.float32)
        # what they are derived against, and which rows are stale
        self.g = np.zeros(dim, np.float32)
        self.whiten = np.eye(dim)
        self.sigma = np.eye(dim) / dim
        self.stale: set[str] = set()
        self.full_rebuild = True
        self._rebuilt_at = 0

    def __len__(self) -> int:
        return len(self.words)

    def _grow(self) -> None:
        for name in (*self._SUMS, *self._DERIVED):
            a = getattr(self, name)
            b = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
            b[: a.shape[0]] = a
            setattr(self, name, b)

    def row(self, word: str) -> WordRow | None:
        i = self.index.get(word)
        if i is None:
            return None
        return WordRow(word, self.proto_sum[i].copy(), float(self.weight[i]), float(self.weight_sq[i]),
                       self.cooc_sum[i].copy(), float(self.cooc_count[i]), int(self.exposures[i]),
                       self.prior[i].copy() if self.has_prior[i] else None, float(self.first_seen[i]),
                       float(self.last_seen[i]), int(self.last_utt[i]))

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
        self.stale.discard(word)
        i = self.index.pop(word, None)
        if i is None:
            return
        last = len(self.words) - 1
        if i != last:  # swap the last row into the hole
            moved = self.words[last]
            self.words[i] = moved
            self.index[moved] = i
            for name in (*self._SUMS, *self._DERIVED):
                a = getattr(self, name)
                a[i] = a[last]
        self.words.pop()

    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in (*self._SUMS, *self._DERIVED))

    def refresh(self, bg: Background, params: LearningParams) -> None:
        """Bring the derived arrays up to date with the committed sums and background."""
        n = len(self)
        moved = bg.utterances != self._rebuilt_at
        grown = bg.utterances - self._rebuilt_at >= max(16, self._rebuilt_at // 10)
        small = n * self.dim <= 65_536  # (~1k words at D = 64: re-deriving all is as cheap as a few rows)
        if self.full_rebuild or grown or (small and moved):
            self.g = bg.mean(self.dim)
            self.whiten = whitener(bg, self.dim, params)
            self.sigma = world_covariance(bg, self.dim)
            if n:
                self.rederive(slice(0, n), params)
            self._rebuilt_at = bg.utterances
            self.full_rebuild = False
            self.stale.clear()
        elif self.stale:
            rows = np.array(sorted(self.index[w] for w in self.stale if w in self.index), dtype=np.int64)
            if rows.size:
                self.rederive(rows, params)
            self.stale.clear()

    def rederive(self, rows: np.ndarray | slice, params: LearningParams) -> None:
        """Recompute the derived query arrays of some rows against the cached background, whitener and
        covariance."""
        g, whiten, sigma = self.g, self.whiten, self.sigma
        sums = WordSums(self.proto_sum[rows], self.weight[rows], self.weight_sq[rows], self.cooc_sum[rows],
                        self.cooc_count[rows], self.exposures[rows], self.prior[rows], self.has_prior[rows])
        v, s, _ = derive(sums, g, params, whiten)
        self.vec[rows] = v
        self.strength[rows] = s
        nm = s[:, None] * v
        self.name_mat[rows] = nm
        self.name_bias[rows] = -(nm @ g)
        self.spread[rows] = np.sqrt(np.maximum(np.sum((v @ sigma) * v, axis=1), TINY))

    def rival_evidence(self, frames: np.ndarray, heard: set[str], params: LearningParams) -> np.ndarray:
        """Per frame [K], the strongest evidence that it shows a word NOT heard: that word's score v_u.(f - g)
        in the world's standard deviations along v_u, weighed by how reliable a name it is (strength /
        select_ref), among the `competitors` strongest words. Needs refresh() first."""
        n = len(self)
        rows = np.arange(n)
        if n > params.competitors:  # only strong words can make strong claims (claim <= strength * |f - g|)
            rows = np.argpartition(-self.strength[:n], params.competitors)[: params.competitors]
        heard_rows = {self.index[w] for w in heard if w in self.index}
        rows = np.array([r for r in rows if r not in heard_rows], dtype=np.int64)
        if rows.size == 0:
            return np.full(frames.shape[0], -1e9, np.float32)
        z = (self.vec[rows] @ (frames - self.g).T) / self.spread[rows, None]  # [M, K]
        return (z * (self.strength[rows] / params.select_ref)[:, None]).max(axis=0)
