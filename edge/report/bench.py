"""A large memory for the report's speed check: n_words words and n_episodes remembered moments written
through the memory's own store (one transaction), with Zipf-distributed words (a few frequent, most rare, as in
speech) and consistent counts, without running the learning rule 50,000 times."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from firstwords.edge.memory_store import Background, EpisodeRow, MemoryStore, WordRow


def synthetic_memory(path: str | Path, dim: int, n_words: int = 10_000, n_episodes: int = 50_000,
                     words_per_episode: int = 5, seed: int = 0, seconds_per_episode: float = 2.0) -> Path:
    """Write a new memory at `path` (which must not exist) and return its path."""
    p = Path(path)
    if p.exists():
        raise FileExistsError(f"{p} exists; synthetic_memory writes a new memory")
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, n_words + 1)
    zipf /= zipf.sum()
    centres = rng.normal(size=(n_words, dim)).astype(np.float32)
    picks = [rng.choice(n_words, size=words_per_episode, replace=False, p=zipf) for _ in range(n_episodes)]
    picks[:n_words // words_per_episode + 1] = [np.arange(i, min(i + words_per_episode, n_words))  # every word once
                                                for i in range(0, n_words, words_per_episode)]
    episodes, exposures = [], np.zeros(n_words, np.int64)
    first = np.full(n_words, np.inf)
    last = np.zeros(n_words)
    proto = np.zeros((n_words, dim), np.float32)
    for i, ws in enumerate(picks):
        t = i * seconds_per_episode
        emb = centres[ws[0]] + rng.normal(size=dim).astype(np.float32)
        emb /= np.linalg.norm(emb)
        exposures[ws] += 1
        first[ws] = np.minimum(first[ws], t)
        last[ws] = t
        proto[ws] += emb / len(ws)
        episodes.append(EpisodeRow(t, " ".join(f"w{j}" for j in ws), emb, emb * 4, emb, 4,
                                   {f"w{j}": 1.0 / len(ws) for j in ws}))
    words = [WordRow(f"w{j}", proto[j], exposures[j] / words_per_episode, exposures[j] / words_per_episode ** 2,
                     proto[j] * 4, float(exposures[j] * 4), int(exposures[j]), None, float(first[j]), float(last[j]),
                     n_episodes) for j in range(n_words)]
    total = np.sum([e.embedding for e in episodes], axis=0).astype(np.float32) * 4
    bg = Background(total, float(4 * n_episodes), n_episodes, -math.inf)
    store = MemoryStore(p, dim, synchronous="OFF")
    try:
        store.write_batch(words, episodes, bg, capacity_words=n_words, capacity_episodes=n_episodes, protect=set())
    finally:
        store.close()
    return p
