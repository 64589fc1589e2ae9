"""SQLite storage of the associative memory (stdlib sqlite3): schema, opening with version and corruption checks,
one transaction per update batch, eviction, forgetting with real removal.

The database is the truth; `edge.memory` keeps a numpy copy in RAM for queries and only applies an update to
that copy after its transaction has committed, so a failed write (disk full, power cut) never leaves RAM and
disk disagreeing. WAL mode + synchronous=FULL: a committed update survives a power cut; a kill loses at most
the update in flight.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.errors import MemoryStoreError

log = logging.getLogger(__name__)

APP_ID = "firstwords-memory"
SCHEMA_VERSION = 1
# How a user starts fresh when the file is damaged; every error about a damaged file says this.
RESET_HINT = ("start fresh with `firstwords forget --reset --memory {path}` (the damaged file is kept aside as "
              "{name}.corrupt-<timestamp>, nothing is deleted)")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value);
CREATE TABLE words (
    word TEXT PRIMARY KEY,
    proto_sum BLOB NOT NULL,      -- float32 [D]: sum of credit-weighted frame embeddings
    weight REAL NOT NULL,         -- sum of credit (frames' worth)
    weight_sq REAL NOT NULL,      -- sum over utterances of (credit per utterance)^2, for the effective count
    cooc_sum BLOB NOT NULL,       -- float32 [D]: plain sum of every frame of the windows it was heard in
    cooc_count REAL NOT NULL,     -- number of those frames
    exposures INTEGER NOT NULL,   -- utterances in which the word was heard
    prior BLOB,                   -- float32 [D]: the encoder's utterance embedding, NULL if out of vocabulary
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_utt INTEGER NOT NULL     -- utterance counter at last exposure (recency for eviction, unit-free)
);
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,      -- float32 [D]: attention-weighted mean of the window's frame embeddings
    frame_sum BLOB NOT NULL,      -- float32 [D]: plain sum of the window's frame embeddings
    learned_mean BLOB NOT NULL,   -- float32 [D]: mean of what the words learned from (after explaining away)
    n_frames INTEGER NOT NULL,
    media BLOB                    -- raw media, only with keep_media
);
CREATE INDEX episodes_t ON episodes(t);
CREATE TABLE episode_words (
    word TEXT NOT NULL,
    episode_id INTEGER NOT NULL,
    credit REAL NOT NULL,         -- the credit this word took from the episode (undone by forget_since)
    PRIMARY KEY (word, episode_id)
) WITHOUT ROWID;
CREATE INDEX episode_words_ep ON episode_words(episode_id);
"""


@dataclass
class WordRow:
    word: str
    proto_sum: np.ndarray  # float32 [D]
    weight: float
    weight_sq: float
    cooc_sum: np.ndarray  # float32 [D]
    cooc_count: float
    exposures: int
    prior: np.ndarray | None
    first_seen: float
    last_seen: float
    last_utt: int


@dataclass
class EpisodeRow:
    t: float
    text: str
    embedding: np.ndarray  # float32 [D]
    frame_sum: np.ndarray  # float32 [D]
    learned_mean: np.ndarray  # float32 [D]
    n_frames: int
    credits: dict[str, float]  # word -> credit taken
    media: bytes | None = None


@dataclass
class Background:
    """Running mean of every frame embedding learned from: the contrast for diffuse (function) words."""

    total: np.ndarray  # float32 [D] sum of frame embeddings
    count: float
    utterances: int
    evicted_through: float  # latest time of an evicted episode (-inf if none): forget_since can't undo past it
    second: np.ndarray | None = None  # [D, D] sum of f f^T: the world's covariance, for whitening (None: unknown)


@dataclass
class BatchResult:
    episode_ids: list[int]
    evicted_words: list[str]
    evicted_episodes: int


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def sidecar_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def set_aside(path: str | Path) -> Path | None:
    """Move a memory database (and its -wal/-shm) aside as `<name>.corrupt-<timestamp>`; never deletes.
    Returns the new path of the main file, or None if there was nothing to move."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():  # never overwrite an earlier set-aside copy
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    moved = None
    for src in sidecar_files(path):
        if src.exists():
            dst = target.with_name(target.name + src.name[len(path.name):])
            src.rename(dst)
            moved = moved or (dst if src == path else None)
    return moved


class MemoryStore:
    """One SQLite file holding one memory. Thread-safe (one connection guarded by a lock)."""

    def __init__(self, path: str | Path, dim: int, *, synchronous: str = "FULL"):
        self.path = str(path)
        self.dim = int(dim)
        self._lock = threading.RLock()
        self._in_memory = self.path == ":memory:"
        if not self._in_memory:
            p = Path(self.path)
            if p.exists() and not p.is_file():
                raise MemoryStoreError(f"{p} is not a file; choose a file path for --memory")
            if not p.parent.exists():
                raise MemoryStoreError(f"the folder of {p} does not exist; create it or choose another --memory path")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as e:
            raise MemoryStoreError(f"cannot open the memory database {self.path}: {e}") from e
        try:
            self._open(synchronous)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise self._damaged(str(e)) from e
        except MemoryStoreError:
            self._db.close()
            raise

    # ---------------------------------------------------------------- opening
    def _damaged(self, why: str) -> MemoryStoreError:
        name = Path(self.path).name
        return MemoryStoreError(f"the memory database {self.path} is damaged or not a database ({why}); "
                                + RESET_HINT.format(path=self.path, name=name))

    def _open(self, synchronous: str) -> None:
        db = self._db
        # Reading the header first: a non-database file fails here, before anything is written to it.
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise MemoryStoreError(f"{self.path} is an SQLite database but not a firstwords memory (no meta "
                                   f"table); choose another --memory path (it was left untouched)")
        if not self._in_memory:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise MemoryStoreError(f"cannot switch {self.path} to WAL mode (got {mode}); is it on a "
                                       f"network or read-only file system?")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: forgetting is real
        db.execute("PRAGMA foreign_keys=OFF")
        if not tables:
            self._create()
            return
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != APP_ID:
            raise MemoryStoreError(f"{self.path} is not a firstwords memory (app={meta.get('app')!r}); choose "
                                   f"another --memory path (it was left untouched)")
        try:
            version = int(meta.get("schema_version", "-1"))
            dim = int(meta.get("dim", "-1"))
        except ValueError as e:
            raise self._damaged(f"bad meta values {meta}") from e
        if version > SCHEMA_VERSION:
            raise MemoryStoreError(f"{self.path} was written by a newer firstwords (memory schema v{version}; "
                                   f"this one reads up to v{SCHEMA_VERSION}); upgrade firstwords or use "
                                   f"another --memory path")
        if version < 1:
            raise self._damaged(f"schema version {version}")
        if dim != self.dim:
            raise MemoryStoreError(f"{self.path} holds a memory of embedding dim {dim} but the bundle has dim "
                                   f"{self.dim}; a memory belongs to one model: use another --memory path "
                                   f"for this bundle")
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise self._damaged("integrity check: " + "; ".join(r[0] for r in check[:3]))

    def _create(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # statements one by one: executescript() would commit in the middle of our transaction
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                ("app", APP_ID), ("schema_version", str(SCHEMA_VERSION)), ("dim", str(self.dim)),
                ("created_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))])
            self._write_background(Background(np.zeros(self.dim, np.float32), 0.0, 0, -math.inf))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- reading
    def _vec(self, blob: bytes, what: str) -> np.ndarray:
        if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
            raise self._damaged(f"{what} has {len(blob) if isinstance(blob, bytes) else type(blob).__name__} "
                                f"bytes, expected {4 * self.dim}")
        vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(vec)):
            raise self._damaged(f"{what} holds NaN or Inf")
        return vec

    def load_words(self) -> list[WordRow]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT word, proto_sum, weight, weight_sq, cooc_sum, cooc_count, exposures, "
                                        "prior, first_seen, last_seen, last_utt FROM words").fetchall()
            except sqlite3.DatabaseError as e:
                raise self._damaged(str(e)) from e
        out = []
        for w, s, wt, wsq, cs, cc, n, p, f, last, lu in rows:
            out.append(WordRow(w, self._vec(s, f"word {w!r}"), float(wt), float(wsq),
                               self._vec(cs, f"co-occurrence of {w!r}"), float(cc), int(n),
                               None if p is None else self._vec(p, f"prior of {w!r}"), float(f), float(last),
                               int(lu)))
        return out

    def load_background(self) -> Background:
        with self._lock:
            try:
                st = dict(self._db.execute("SELECT key, value FROM state").fetchall())
            except sqlite3.DatabaseError as e:
                raise self._damaged(str(e)) from e
        try:
            second = None
            if st.get("background_second") is not None:
                blob = st["background_second"]
                if not isinstance(blob, bytes) or len(blob) != 4 * self.dim * self.dim:
                    raise self._damaged("background covariance has the wrong size")
                second = np.frombuffer(blob, dtype="<f4").astype(np.float64).reshape(self.dim, self.dim)
                if not np.all(np.isfinite(second)):
                    raise self._damaged("background covariance holds NaN or Inf")
            return Background(self._vec(st["background_sum"], "background"), float(st["background_count"]),
                              int(st["utterances"]), float(st["evicted_through"]), second)
        except (KeyError, TypeError, ValueError) as e:
            raise self._damaged(f"state table incomplete ({e})") from e

    def counts(self) -> tuple[int, int]:
        with self._lock:
            nw = self._db.execute("SELECT COUNT(*) FROM words").fetchone()[0]
            ne = self._db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
        return nw, ne

    def iter_episodes(self, chunk: int = 4096, word: str | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str], np.ndarray]]:
        """Episodes in chunks: (ids int64 [n], times [n], texts, embeddings float32 [n, D]). Streams from disk
        so that 50k episodes never sit in RAM at once."""
        with self._lock:
            if word is None:
                cur = self._db.execute("SELECT id, t, text, embedding FROM episodes ORDER BY id")
            else:
                cur = self._db.execute("SELECT e.id, e.t, e.text, e.embedding FROM episodes e JOIN episode_words "
                                       "w ON w.episode_id = e.id WHERE w.word = ? ORDER BY e.id", (word,))
            rows = cur.fetchall()  # under the lock; a chunked view of a snapshot
        for i in range(0, len(rows), chunk):
            part = rows[i:i + chunk]
            ids = np.array([r[0] for r in part], dtype=np.int64)
            ts = np.array([r[1] for r in part], dtype=np.float64)
            texts = [r[2] for r in part]
            emb = np.stack([self._vec(r[3], f"episode {r[0]}") for r in part])
            yield ids, ts, texts, emb

    def episode_words(self, episode_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list(episode_ids)
        out: dict[int, list[str]] = {i: [] for i in ids}
        with self._lock:
            for i in ids:
                for (w,) in self._db.execute("SELECT word FROM episode_words WHERE episode_id = ?", (i,)):
                    out[i].append(w)
        return out

    def episode_times(self) -> list[float]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT t FROM episodes ORDER BY id")]

    def bytes_on_disk(self) -> int:
        if self._in_memory:
            with self._lock:
                pages = self._db.execute("PRAGMA page_count").fetchone()[0]
                size = self._db.execute("PRAGMA page_size").fetchone()[0]
            return int(pages * size)
        return sum(p.stat().st_size for p in sidecar_files(Path(self.path)) if p.exists())

    # ---------------------------------------------------------------- writing
    def _write_background(self, bg: Background) -> None:
        self._db.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", [
            ("background_sum", _blob(bg.total)), ("background_count", float(bg.count)),
            ("utterances", int(bg.utterances)), ("evicted_through", float(bg.evicted_through))])
        if bg.second is not None:  # (float32: D*D*4 bytes, 16 KB at D = 64)
            self._db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
                             ("background_second", _blob(bg.second.reshape(-1))))

    def _fail(self, e: sqlite3.Error, doing: str) -> MemoryStoreError:
        code = getattr(e, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "full" in str(e).lower():
            return MemoryStoreError(f"the disk is full (or the database size limit was reached) while {doing} "
                                    f"{self.path}; nothing of this update was saved and the previous state is "
                                    f"intact; free some space or lower [memory] capacity_episodes")
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e).lower():
            return MemoryStoreError(f"{self.path} is locked by another process while {doing}; stop the other "
                                    f"firstwords process using this --memory file")
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            return self._damaged(str(e))
        return MemoryStoreError(f"cannot write the memory database {self.path} while {doing} ({e}); the "
                                f"previous state is intact")

    def write_batch(self, words: list[WordRow], episodes: list[EpisodeRow], background: Background,
                    capacity_words: int, capacity_episodes: int, protect: set[str]) -> BatchResult:
        """One transaction: upsert the words, add the episodes, store the background, evict beyond capacity
        (never a word in `protect`, the words of this batch). All or nothing."""
        db = self._db
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO words(word, proto_sum, weight, weight_sq, cooc_sum, cooc_count, exposures, prior, "
                    "first_seen, last_seen, last_utt) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(word) DO UPDATE SET "
                    "proto_sum=excluded.proto_sum, weight=excluded.weight, weight_sq=excluded.weight_sq, "
                    "cooc_sum=excluded.cooc_sum, cooc_count=excluded.cooc_count, exposures=excluded.exposures, prior=excluded.prior, first_seen=excluded.first_seen, "
                    "last_seen=excluded.last_seen, last_utt=excluded.last_utt",
                    [(r.word, _blob(r.proto_sum), r.weight, r.weight_sq, _blob(r.cooc_sum), r.cooc_count, r.exposures,
                      None if r.prior is None else _blob(r.prior), r.first_seen, r.last_seen, r.last_utt)
                     for r in words])
                ids = []
                for ep in episodes:
                    cur = db.execute("INSERT INTO episodes(t, text, embedding, frame_sum, learned_mean, n_frames, "
                                     "media) VALUES (?,?,?,?,?,?,?)",
                                     (ep.t, ep.text, _blob(ep.embedding), _blob(ep.frame_sum),
                                      _blob(ep.learned_mean), ep.n_frames, ep.media))
                    ids.append(int(cur.lastrowid))
                    db.executemany("INSERT OR REPLACE INTO episode_words(word, episode_id, credit) VALUES (?,?,?)",
                                   [(w, cur.lastrowid, float(c)) for w, c in ep.credits.items()])
                evicted_words = self._evict_words(capacity_words, background.utterances, protect)
                n_ep, latest = self._evict_episodes(capacity_episodes)
                if n_ep:
                    background.evicted_through = max(background.evicted_through, latest)
                self._write_background(background)
                db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise self._fail(e, "writing to") from e
            except BaseException:
                self._rollback()
                raise
        return BatchResult(ids, evicted_words, n_ep)

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as e:  # the transaction is gone anyway; SQLite rolls back on the next open
            log.warning("rollback of %s failed: %s", self.path, e)

    def _evict_words(self, capacity: int, now_utt: int, protect: set[str]) -> list[str]:
        n = self._db.execute("SELECT COUNT(*) FROM words").fetchone()[0]
        if n <= capacity:
            return []
        # Down to 99 % of capacity at once, so that a full memory scans its words once per ~1 % of new words,
        # not at every new word. Weakest = least credit, discounted by how long ago (in utterances) it was heard.
        excess = n - capacity + capacity // 100
        rows = self._db.execute(
            "SELECT word FROM words ORDER BY weight / (1.0 + (? - last_utt) / 1000.0) ASC, last_seen ASC LIMIT ?",
            (now_utt, excess + len(protect))).fetchall()
        victims = [w for (w,) in rows if w not in protect][:excess]
        self._db.executemany("DELETE FROM words WHERE word = ?", [(w,) for w in victims])
        return victims

    def _evict_episodes(self, capacity: int) -> tuple[int, float]:
        n = self._db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
        excess = n - capacity
        if excess <= 0:
            return 0, -math.inf
        rows = self._db.execute("SELECT id, t FROM episodes ORDER BY t ASC, id ASC LIMIT ?", (excess,)).fetchall()
        self._delete_episodes([r[0] for r in rows])
        return len(rows), max(r[1] for r in rows)

    def _delete_episodes(self, ids: list[int]) -> None:
        self._db.executemany("DELETE FROM episode_words WHERE episode_id = ?", [(i,) for i in ids])
        self._db.executemany("DELETE FROM episodes WHERE id = ?", [(i,) for i in ids])

    def forget(self, delete_words: list[str], update_words: list[WordRow], episode_ids: list[int],
               background: Background) -> None:
        """Remove words and episodes in one transaction, then VACUUM and truncate the WAL so the removed
        content is gone from the file (secure_delete zeroes freed pages too)."""
        db = self._db
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM words WHERE word = ?", [(w,) for w in delete_words])
                db.executemany("DELETE FROM episode_words WHERE word = ?", [(w,) for w in delete_words])
                for r in update_words:
                    db.execute("UPDATE words SET proto_sum=?, weight=?, weight_sq=?, cooc_sum=?, cooc_count=?, "
                               "exposures=?, last_seen=? WHERE word=?",
                               (_blob(r.proto_sum), r.weight, r.weight_sq, _blob(r.cooc_sum), r.cooc_count,
                                r.exposures, r.last_seen, r.word))
                self._delete_episodes(episode_ids)
                self._write_background(background)
                db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise self._fail(e, "forgetting in") from e
            self.compact()

    def compact(self) -> None:
        with self._lock:
            try:
                self._db.execute("VACUUM")
                if not self._in_memory:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                raise self._fail(e, "compacting") from e

    def episodes_of_word(self, word: str) -> list[tuple[int, float]]:
        with self._lock:
            return self._db.execute("SELECT episode_id, credit FROM episode_words WHERE word = ?",
                                    (word,)).fetchall()

    def episodes_since(self, t: float) -> list[tuple[int, float]]:
        with self._lock:
            return self._db.execute("SELECT id, t FROM episodes WHERE t >= ?", (t,)).fetchall()

    def credits_of_episodes(self, ids: list[int]) -> list[tuple[str, float, np.ndarray, np.ndarray, int]]:
        """(word, credit, learned mean, frame sum, frame count) for every word link of the given episodes."""
        out = []
        with self._lock:
            for i in ids:
                rows = self._db.execute("SELECT w.word, w.credit, e.learned_mean, e.frame_sum, e.n_frames FROM "
                                        "episode_words w JOIN episodes e ON e.id = w.episode_id "
                                        "WHERE w.episode_id = ?", (i,)).fetchall()
                out.extend((w, float(c), self._vec(emb, f"episode {i}"), self._vec(fs, f"episode {i}"), int(n))
                           for w, c, emb, fs, n in rows)
        return out

    def episode_frames(self, ids: list[int]) -> list[tuple[np.ndarray, int]]:
        """(frame sum, frame count) of each given episode that exists."""
        out = []
        with self._lock:
            for i in ids:
                row = self._db.execute("SELECT frame_sum, n_frames FROM episodes WHERE id = ?", (i,)).fetchone()
                if row is not None:
                    out.append((self._vec(row[0], f"episode {i}"), int(row[1])))
        return out

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Raw read access for tools and tests (e.g. PRAGMA page_count)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            try:
                if not self._in_memory:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                log.warning("checkpoint of %s on close failed: %s", self.path, e)
            self._db.close()


def describe_meta(path: str | Path) -> dict:
    """The meta table of a memory file as a dict (for CLI messages); {} when unreadable."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}


__all__ = [
    "SCHEMA_VERSION",
    "Background",
    "BatchResult",
    "EpisodeRow",
    "MemoryStore",
    "WordRow",
    "describe_meta",
    "set_aside",
]
