"""The online associative memory: words heard <-> what was seen, learned one moment at a time.

`AssociativeMemory` ties together the learning rule (edge.memory_rule, pure numpy), the words in RAM
(edge.memory_table) and their SQLite store (edge.memory_store; one transaction per learn / learn_batch call,
the file is the truth and RAM follows it only after a commit). One writer per memory (edge.memory_files);
forgetting obeyed by a running writer (edge.memory_forget); a disk cap (edge.memory_disk).

Queries: name(frame) = top-k of s_w v_w . (x - g), one matrix-vector product and an argpartition;
find(word) streams the episodes from disk; word_vectors() feeds edge.evaluate.score_trials.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
from firstwords.edge.errors import InputError, MemoryStoreError
from firstwords.edge.heard import HeardWord
from firstwords.edge.memory_files import RESET_HINT, describe_meta, set_aside
from firstwords.edge.memory_forget import pending_requests, undo_episodes, write_forget
from firstwords.edge.memory_moment import (
    CheckedMoment,
    Episode,
    LearnReport,
    Moment,
    check_moment,
    check_vectors,
    normalise_word,
)
from firstwords.edge.memory_rule import TINY, LearningParams, WordRow, learn_moment
from firstwords.edge.memory_store import EpisodeRow, MemoryStore
from firstwords.edge.memory_table import WordTable

log = logging.getLogger(__name__)


class AssociativeMemory:
    """Online, open-vocabulary word <-> vision memory stored in SQLite (see edge.memory_rule for the rule).

    path: a file (created if missing) or ':memory:'. fresh=True: if the file is damaged it is moved aside as
    `<name>.corrupt-<timestamp>` and a new memory started (logged); by default a damaged file is an error.
    read_only=True: queries only; never locks, never writes (works in a read-only folder, beside a writer).
    max_disk_mb: the file's cap (edge.memory_disk); None: no cap.
    """

    def __init__(self, path: str | Path, dim: int, *, capacity_words: int = 10_000,
                 capacity_episodes: int = 50_000, reentrance: bool = True, keep_media: bool = False,
                 learning: LearningParams | None = None, fresh: bool = False, synchronous: str = "FULL",
                 read_only: bool = False, max_disk_mb: float | None = None):
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
        self.read_only = bool(read_only)
        self.params = learning if learning is not None else LearningParams()
        self._lock = threading.RLock()
        opts = {"synchronous": synchronous, "read_only": self.read_only, "max_disk_mb": max_disk_mb}
        try:
            self._store = MemoryStore(path, dim, **opts)
        except MemoryStoreError as e:
            if not fresh or self.read_only or "damaged" not in str(e):
                raise
            moved = set_aside(path)
            log.warning("memory %s was damaged (%s); moved aside to %s and starting fresh", path, e, moved)
            self._store = MemoryStore(path, dim, **opts)
        self.path = self._store.path
        self._table = WordTable(dim)
        self._closed = False
        try:
            for r in self._store.load_words():
                self._table.put(r)
            self._bg = self._store.load_background()
            if not self.read_only:
                self.apply_forget_requests()
        except BaseException:
            self._store.close(checkpoint=False)  # (and its writer lock)
            raise
        if len(self._table) > self.capacity_words:
            log.warning("memory %s holds %d words, above capacity %d; the weakest go at the next update",
                        self.path, len(self._table), self.capacity_words)

    @classmethod
    def from_config(cls, path: str | Path, dim: int, memory: Any, **kwargs) -> AssociativeMemory:
        """A memory with a device config's [memory] table (edge.config.MemoryConfig): capacities, disk cap
        and the confidence threshold. kwargs pass on (keep_media, reentrance, ...)."""
        learning = replace(kwargs.pop("learning", None) or LearningParams(),
                           min_word_confidence=memory.min_word_confidence)
        return cls(path, dim, capacity_words=memory.capacity_words,
                   capacity_episodes=memory.capacity_episodes, max_disk_mb=memory.max_disk_mb,
                   learning=learning, **kwargs)

    @classmethod
    def open_existing(cls, path: str | Path, **kwargs) -> AssociativeMemory:
        """Open a memory file whose dim is read from the file itself (ask, forget, tools)."""
        p = Path(path)
        if not p.is_file():
            raise MemoryStoreError(f"no memory database at {p}; make one with `firstwords replay` or "
                                   f"`firstwords run`, or check --memory")
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
            if self._closed:
                return
            try:
                if not self.read_only:
                    self.apply_forget_requests()
            finally:
                self._store.close()
                self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise MemoryStoreError("the memory is closed; open it again with AssociativeMemory(path, dim)")

    # ------------------------------------------------------------------ learning
    def learn(self, words: Sequence[str | HeardWord], frame_embeddings: np.ndarray, t: float,
              utterance_text: str, prior: Mapping[str, np.ndarray] | None = None, *,
              media: bytes | None = None) -> LearnReport:
        """Learn from one moment (one transaction). Words are str (confidence 1.0) or HeardWord. Raises
        InputError for bad input (nothing learned) and MemoryStoreError when the database cannot be written
        (nothing learned, previous state intact)."""
        return self.learn_batch([Moment(words, frame_embeddings, t, utterance_text, prior, media)])[0]

    def learn_batch(self, moments: Sequence[Moment], *, ledger: Mapping[str, str] | None = None
                    ) -> list[LearnReport]:
        """Learn from several moments, in order, in ONE transaction (all or nothing). `ledger`: entries
        written in that same transaction (e.g. which recorded session these moments are), read back with
        `ledger()`: a batch and its ledger entries are in the memory together or not at all."""
        # every moment checked before anything changes
        checked = [check_moment(m, self.dim, self.params.min_word_confidence) for m in moments]
        if not checked and not ledger:
            return []
        with self._lock:
            self._check_open()
            if self.read_only:
                raise MemoryStoreError(f"the memory {self.path} was opened read-only; nothing was learned")
            self.apply_forget_requests()
            staged: dict[str, WordRow] = {}
            bg = self._bg.copy()
            self._table.refresh(self._bg, self.params)  # the whitener and background of the committed state
            episodes: list[EpisodeRow] = []
            reports: list[LearnReport] = []
            learned: list[LearnReport] = []  # the reports of moments that became episodes
            for m in checked:
                if not m.words:  # every word below the confidence threshold: nothing at all is learned
                    reports.append(LearnReport(-1, {}, {}, [], [], skipped_words=m.skipped))
                    continue
                ep, rep = self._learn_one(m, staged, bg)
                episodes.append(ep)
                reports.append(rep)
                learned.append(rep)
            if not episodes:
                if ledger:
                    self._store.write_ledger(ledger)
                return reports
            bg.total = bg.total.astype(np.float32)
            result = self._store.write_batch(list(staged.values()), episodes, bg, self.capacity_words,
                                             self.capacity_episodes, protect=set(staged), ledger=ledger)
            # Committed: now (and only now) bring RAM in line.
            for r in staged.values():
                self._table.put(r)
            for w in result.evicted_words:
                self._table.remove(w)
            self._bg = bg
            self._table.stale.update(w for w in staged if w in self._table.index)
        for rep, eid in zip(learned, result.episode_ids, strict=True):
            rep.episode_id = eid
        if result.evicted_words:
            learned[-1].evicted_words = result.evicted_words
            log.info("memory full: evicted %d weakest words (%s ...)", len(result.evicted_words),
                     ", ".join(result.evicted_words[:5]))
        return reports

    def ledger(self, prefix: str = "") -> dict[str, str]:
        """The ledger entries (written with learn_batch) whose key starts with `prefix`."""
        with self._lock:
            self._check_open()
            return self._store.read_ledger(prefix)

    def _learn_one(self, m: CheckedMoment, staged: dict[str, WordRow], bg) -> tuple[EpisodeRow, LearnReport]:
        frames = m.frames
        rival = self._table.rival_evidence(frames, set(m.words), self.params) \
            if self.reentrance else None  # judged by the committed state
        bg.add(frames)
        rows: list[WordRow] = []
        new_words = []
        for w in m.words:
            r = staged.get(w) or self._table.row(w)
            if r is None:
                zero = np.zeros(self.dim, np.float32)
                r = WordRow(w, zero, 0.0, 0.0, zero.copy(), 0.0, 0, m.prior.get(w), m.t, m.t, bg.utterances)
                new_words.append(w)
            elif r.prior is None and w in m.prior:
                r.prior = m.prior[w]
            rows.append(r)
            staged[w] = r
        taken, omega = learn_moment(rows, m.confidence, frames, m.t, bg, self._table.whiten, rival,
                                    self.params)
        per_word = {w: float(u) for w, u in zip(m.words, taken.sum(axis=1))}
        ep = EpisodeRow(m.t, m.text, ((omega @ frames) / max(float(omega.sum()), TINY)).astype(np.float32),
                        frames.sum(axis=0, dtype=np.float64).astype(np.float32), frames.mean(axis=0),
                        len(frames), per_word, {w: float(c) for w, c in zip(m.words, m.confidence)},
                        m.media if self.keep_media else None)
        total = max(sum(per_word.values()), TINY)
        rep = LearnReport(-1, {w: u / total for w, u in per_word.items()}, dict(per_word),
                          [float(x) for x in omega], new_words, skipped_words=m.skipped,
                          frame_taken={w: taken[i].tolist() for i, w in enumerate(m.words)})
        return ep, rep

    # ------------------------------------------------------------------ queries
    def name(self, frame_embedding: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """Top-k words for a frame embedding [D], best first, with scores (strength x contrast cosine)."""
        x = check_vectors(frame_embedding, self.dim, "frame_embedding", 1)[0]
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        with self._lock:
            self._check_open()
            self._table.refresh(self._bg, self.params)
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
            self._table.refresh(self._bg, self.params)
            idx = self._table.index
            wanted = self._table.words if words is None else [w for w in words if w in idx]
            return {w: self._table.vec[idx[w]].copy() for w in wanted}

    def strength(self, word: str) -> float:
        """Naming strength of a word (0 for unknown words); low for diffuse words such as 'the'."""
        with self._lock:
            self._table.refresh(self._bg, self.params)
            i = self._table.index.get(normalise_word(word))
            return 0.0 if i is None else float(self._table.strength[i])

    def find(self, word: str, k: int = 5, *, heard_only: bool = False) -> list[Episode]:
        """The remembered moments that best match a word (cosine of its vector with each episode's attended
        frames, contrasted with the background), best first. heard_only: only moments where it was said."""
        if not isinstance(word, str) or not word:
            raise InputError(f"find needs a word, got {word!r}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        word = normalise_word(word)
        with self._lock:
            self._check_open()
            self._table.refresh(self._bg, self.params)
            i = self._table.index.get(word)
            if i is None:
                return []
            v = self._table.vec[i].copy()
            g = self._table.g.copy()
        best: list[tuple[float, int, float, str]] = []
        for ids, ts, texts, emb in self._store.iter_episodes(word=word if heard_only else None):
            c = emb - g
            sc = (c @ v) / np.maximum(np.linalg.norm(c, axis=1), TINY)
            top = np.argsort(-sc)[:k]
            best.extend((float(sc[j]), int(ids[j]), float(ts[j]), texts[j]) for j in top)
            best = sorted(best, key=lambda b: -b[0])[:k]
        words = self._store.episode_words([b[1] for b in best])
        return [Episode(eid, t, text, score, tuple(words[eid])) for score, eid, t, text in best]

    def stats(self) -> dict:
        """Counts and sizes, for status records and tools. disk_bytes: the file with its WAL and index;
        evicted_episodes / evicted_words: how many the capacities and the disk cap removed, ever."""
        with self._lock:
            self._check_open()
            n_words, n_eps = self._store.counts()
            n = len(self._table)
            disk = self._store.bytes_on_disk()
            return {"path": self.path, "dim": self.dim, "words": n_words, "episodes": n_eps,
                    "utterances_learned": self._bg.utterances, "frames_learned": int(self._bg.count),
                    "capacity_words": self.capacity_words, "capacity_episodes": self.capacity_episodes,
                    "words_with_prior": int(self._table.has_prior[:n].sum()), "reentrance": self.reentrance,
                    "keep_media": self.keep_media, "bytes_on_disk": disk, "disk_bytes": disk,
                    "max_disk_bytes": self._store.disk.max_bytes, **self._store.counters(),
                    "min_word_confidence": self.params.min_word_confidence, "ram_bytes": self._table.nbytes()}

    def words(self) -> list[str]:
        with self._lock:
            return list(self._table.words)

    def exposures(self, word: str) -> int:
        with self._lock:
            i = self._table.index.get(normalise_word(word))
            return 0 if i is None else int(self._table.exposures[i])

    def episode_times(self) -> list[float]:
        """Times of every stored episode, oldest first (tests and tools)."""
        with self._lock:
            self._check_open()
            return self._store.episode_times()

    # ------------------------------------------------------------------ forgetting (privacy)
    def _forget(self, ids: list[int], drop: set[str], floor_time: float | None, result: dict,
                request_id: int | None) -> dict:
        gone, keep, bg = undo_episodes(self._store, self._table, self._bg, ids, drop, floor_time)
        write_forget(self._store, gone, keep, ids, bg, None if request_id is None else (request_id, result))
        self._bg = bg
        for w in gone:
            self._table.remove(w)
        for r in keep:
            self._table.put(r)
        self._table.full_rebuild = True
        return result

    def forget_word(self, word: str, *, _request: int | None = None) -> dict:
        """Forget a word: its prototype, and every episode in which it was heard (with what those episodes
        taught other words). The file is vacuumed so the removed text is gone from disk."""
        if not isinstance(word, str) or not word.strip():
            raise InputError(f"which word should be forgotten? got {word!r}; give a word, e.g. --word ball")
        word = normalise_word(word)
        with self._lock:
            self._check_open()
            ids = [eid for (eid,) in self._store.query("SELECT episode_id FROM episode_words WHERE word = ?",
                                                        (word,))]
            result = {"word": word, "known": word in self._table.index, "episodes_removed": len(ids)}
            self._forget(ids, {word}, None, result, _request)
        log.info("forgot %r and %d episodes", word, len(ids))
        return result

    def forget_since(self, t: float, *, _request: int | None = None) -> dict:
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
            ids = [eid for (eid,) in self._store.query("SELECT id FROM episodes WHERE t >= ?", (t,))]
            tb = self._table
            n = len(tb)
            drop = {tb.words[i] for i in range(n) if tb.first_seen[i] >= t}
            if self._bg.evicted_through >= t:
                drop |= {tb.words[i] for i in range(n) if tb.last_seen[i] >= t}
            result = {"since": t, "episodes_removed": len(ids), "words_removed": len(drop)}
            self._forget(ids, drop, t, result, _request)
        log.info("forgot since t=%s: %d episodes, %d words", t, len(ids), len(drop))
        return result

    def apply_forget_requests(self) -> int:
        """Apply the forget requests other processes recorded (edge.memory_forget); returns how many. Called
        before every update and on open and close; a runtime idle for long may call it from its tick."""
        with self._lock:
            self._check_open()
            pending = pending_requests(self._store)
            for rid, kind, value in pending:
                if kind == "word":
                    self.forget_word(value, _request=rid)
                else:
                    self.forget_since(float(value), _request=rid)
            return len(pending)


def reset_memory(path: str | Path) -> Path | None:
    """Start fresh: move the memory file (damaged or not) aside as `<name>.corrupt-<timestamp>`; never
    deletes. Returns where it went (None if there was no file). Refused while a process writes it."""
    return set_aside(path)


__all__ = ["AssociativeMemory", "Episode", "LearnReport", "LearningParams", "Moment", "reset_memory"]
