"""What the report shows about a memory, read in bulk: per-word facts, the vocabulary-growth curves, and the
best-matching remembered moments of a few words. SQL window functions and numpy do the per-word work, so a
memory of 10,000 words and 50,000 moments reads in seconds.

"Known" is a stated criterion, not a feeling: a word is known when its naming strength now is at least
`min_strength` and it was heard in at least `min_exposures` utterances; it counts as known from the utterance
of its `min_exposures`-th exposure (the memory keeps exposures, not a history of strengths)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import MemoryStoreError
from firstwords.edge.memory import AssociativeMemory


@dataclass(frozen=True)
class Criterion:
    min_strength: float = 0.2
    min_exposures: int = 3

    def describe(self) -> str:
        return (f"a word is <b>known</b> when its naming strength is at least {self.min_strength:g} and it was "
                f"heard in at least {self.min_exposures} utterances; it counts as known from its "
                f"{self.min_exposures}{_ordinal(self.min_exposures)} exposure")


def _ordinal(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@dataclass
class WordFacts:
    word: str
    exposures: int
    strength: float
    first_seen: float  # memory time (s)
    known_at: float | None  # memory time it became known (None: not known)
    known_utterance: int | None  # how many utterances had been heard by then


@dataclass
class Moment:
    episode_id: int
    t: float
    text: str
    score: float
    media: bytes | None


@dataclass
class MemoryReport:
    path: Path
    criterion: Criterion
    stats: dict
    words: list[WordFacts]  # all words, strongest first
    episode_times: np.ndarray  # every stored moment's time, oldest first
    t0: float  # the session's start in memory time (earliest moment or first word)
    heard_curve: tuple[np.ndarray, np.ndarray]  # (utterance index, words heard so far)
    known_curve: tuple[np.ndarray, np.ndarray]  # (utterance index, words known so far)
    media_kept: int  # moments with a kept thumbnail
    moments: dict[str, list[Moment]] = field(default_factory=dict)

    @property
    def known(self) -> list[WordFacts]:
        return [w for w in self.words if w.known_at is not None]

    def time_of(self, utterance_index: np.ndarray) -> np.ndarray:
        """Seconds since t0 at which the given (1-based) utterance index was heard."""
        if len(self.episode_times) == 0:
            return np.zeros(len(utterance_index))
        i = np.clip(np.asarray(utterance_index, np.int64) - 1, 0, len(self.episode_times) - 1)
        return self.episode_times[i] - self.t0


_FIRST_AND_NTH = """
SELECT word, MIN(CASE WHEN rn = 1 THEN pos END), MIN(CASE WHEN rn = ? THEN pos END)
FROM (SELECT w.word AS word, r.pos AS pos, ROW_NUMBER() OVER (PARTITION BY w.word ORDER BY r.pos) AS rn
      FROM episode_words w JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY t, id) AS pos FROM episodes) r
      ON r.id = w.episode_id)
WHERE rn = 1 OR rn = ?
GROUP BY word
"""


def _curve(positions: np.ndarray, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Utterance indices at which events happened -> a cumulative step curve (x, count) from 0 to `end`."""
    p = np.sort(positions[positions > 0])
    return (np.concatenate([[0], p, [max(end, p[-1] if len(p) else 0)]]).astype(np.float64),
            np.concatenate([np.arange(len(p) + 1), [len(p)]]).astype(np.float64))


def read_memory(mem: AssociativeMemory, criterion: Criterion) -> MemoryReport:
    """Everything but the moments, from an open memory."""
    db = sqlite3.connect(Path(mem.path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT word, exposures, first_seen FROM words").fetchall()
        times = np.array([r[0] for r in db.execute("SELECT t FROM episodes ORDER BY t, id")], np.float64)
        n = criterion.min_exposures
        first_nth = {w: (a, b) for w, a, b in db.execute(_FIRST_AND_NTH, (n, n))}
        media_kept = db.execute("SELECT COUNT(*) FROM episodes WHERE media IS NOT NULL").fetchone()[0]
    except sqlite3.Error as e:
        raise MemoryStoreError(f"{mem.path}: cannot read the memory's tables ({e}); it may be from an older "
                               "firstwords: replay the session into a new memory") from e
    finally:
        db.close()
    stats = mem.stats()
    strength = {w: mem.strength(w) for w, _, _ in rows}
    starts = ([float(times[0])] if len(times) else []) + ([min(float(r[2]) for r in rows)] if rows else [])
    t0 = min(starts) if starts else 0.0
    words = []
    for w, exposures, first_seen in rows:
        _first_pos, nth_pos = first_nth.get(w, (None, None))
        known = strength[w] >= criterion.min_strength and exposures >= n
        known_pos = None
        if known:
            # Its n-th exposure may be among evicted moments: then it was known before the oldest stored one.
            known_pos = int(nth_pos) if nth_pos is not None else 1
        known_at = float(times[known_pos - 1]) if known_pos is not None and len(times) else (
            float(first_seen) if known else None)
        words.append(WordFacts(w, int(exposures), strength[w], float(first_seen), known_at, known_pos))
    words.sort(key=lambda f: (-f.strength, -f.exposures, f.word))
    first_positions = np.array([v[0] for v in first_nth.values() if v[0] is not None], np.int64)
    known_positions = np.array([f.known_utterance for f in words if f.known_utterance is not None], np.int64)
    return MemoryReport(Path(mem.path), criterion, stats, words, times, t0, _curve(first_positions, len(times)),
                        _curve(known_positions, len(times)), int(media_kept))


def best_moments(mem: AssociativeMemory, report: MemoryReport, words: list[str], k: int = 3) -> None:
    """The k remembered moments that best match each word (where it was said), with kept media if any."""
    found = {w: mem.find(w, k=k, heard_only=True) for w in words}
    ids = sorted({e.id for eps in found.values() for e in eps})
    media: dict[int, bytes] = {}
    if ids and report.media_kept:
        db = sqlite3.connect(Path(mem.path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                q = f"SELECT id, media FROM episodes WHERE id IN ({','.join('?' * len(part))})"
                media.update({r[0]: r[1] for r in db.execute(q, part) if r[1] is not None})
        finally:
            db.close()
    report.moments = {w: [Moment(e.id, e.t, e.text, e.score, media.get(e.id)) for e in eps]
                      for w, eps in found.items()}
