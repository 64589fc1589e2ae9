"""SQLite storage of the associative memory (stdlib sqlite3): opening with version and corruption checks, one
transaction per update batch, eviction by capacity and by disk size.

The database is the truth; `edge.memory` keeps a numpy copy in RAM for queries and only applies an update to
that copy after its transaction has committed, so a failed write (disk full, power cut) never leaves RAM and
disk disagreeing. WAL mode + synchronous=FULL: a committed update survives a power cut; a kill loses at most
the update in flight. A writable open holds the memory's writer lock (edge.memory_files); a read-only open
(`read_only=True`) never writes, never locks, and works in a read-only folder.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import MemoryStoreError
from firstwords.edge.memory_disk import DiskCap
from firstwords.edge.memory_files import (
    WriterLock,
    damaged_error,
    explain_sqlite_error,
    read_only_reason,
    sidecar_files,
    sqlite_uri,
)
from firstwords.edge.memory_rule import Background, WordRow
from firstwords.edge.memory_schema import (
    APP_ID,
    REQUIRED_TABLES,
    SCHEMA_VERSION,
    create_schema,
    upgrade_schema,
)

log = logging.getLogger(__name__)

LEDGER_NS = "ledger:"  # meta keys of the ledger (AssociativeMemory.learn_batch(..., ledger=...))


@dataclass
class EpisodeRow:
    t: float
    text: str
    embedding: np.ndarray  # float32 [D]
    frame_sum: np.ndarray  # float32 [D]
    learned_mean: np.ndarray  # float32 [D]
    n_frames: int
    credits: dict[str, float]  # word -> credit taken
    confidence: dict[str, float] = field(default_factory=dict)  # word -> the recogniser's confidence (else 1)
    media: bytes | None = None


@dataclass
class BatchResult:
    episode_ids: list[int]
    evicted_words: list[str]
    evicted_episodes: int


def blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


class MemoryStore:
    """One SQLite file holding one memory. Thread-safe (one connection guarded by a lock)."""

    def __init__(self, path: str | Path, dim: int, *, synchronous: str = "FULL", read_only: bool = False,
                 max_disk_mb: float | None = None):
        self.path = str(path)
        self.dim = int(dim)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._in_memory = self.path == ":memory:"
        self._writer: WriterLock | None = None
        self.disk = DiskCap(max_disk_mb)
        p = Path(self.path)
        if not self._in_memory:
            if p.exists() and not p.is_file():
                raise MemoryStoreError(f"{p} is not a file; choose a file path for --memory")
            if not p.parent.exists():
                raise MemoryStoreError(f"the folder of {p} does not exist; create it or choose another "
                                       f"--memory path")
            if read_only and not p.is_file():
                raise MemoryStoreError(f"no memory database at {p}; check --memory")
            if not read_only:
                self._writer = WriterLock(p)  # refuses a second writer, naming the first
        try:
            self._db = self._connect(p)
        except sqlite3.Error as e:
            self._release()
            raise self._fail(e, "opening") from e
        try:
            self._open(synchronous)
        except sqlite3.DatabaseError as e:
            self.close(checkpoint=False)
            raise self._fail(e, "opening") from e
        except BaseException:
            self.close(checkpoint=False)
            raise

    def _connect(self, p: Path) -> sqlite3.Connection:
        kw = {"isolation_level": None, "check_same_thread": False, "timeout": 10.0}
        if not self.read_only or self._in_memory:
            return sqlite3.connect(self.path, **kw)
        db = sqlite3.connect(sqlite_uri(p, mode="ro"), uri=True, **kw)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            if not read_only_reason(p):
                raise
            # A WAL database in a read-only folder: SQLite cannot make its -shm there. Nobody can write here
            # either, so reading the file as it is is safe.
            return sqlite3.connect(sqlite_uri(p, immutable="1"), uri=True, **kw)

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    # ---------------------------------------------------------------- opening
    def damaged(self, why: str) -> MemoryStoreError:
        return damaged_error(self.path, why)

    def _open(self, synchronous: str) -> None:
        db = self._db
        # Reading the header first: a non-database file fails here, before anything is written to it.
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise MemoryStoreError(f"{self.path} is an SQLite database but not a firstwords memory (no meta "
                                   f"table); choose another --memory path (it was left untouched)")
        if not tables and self.read_only:
            raise MemoryStoreError(f"{self.path} is an empty file, not a firstwords memory; check --memory")
        if not self._in_memory and not self.read_only:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise MemoryStoreError(f"cannot switch {self.path} to WAL mode (got {mode}); is it on a "
                                       f"network file system?")
            self.disk.configure(db)
        if not self.read_only:
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: forgetting is real
        if not tables:
            self._create()
            return
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != APP_ID:
            raise MemoryStoreError(f"{self.path} is not a firstwords memory (app={meta.get('app')!r}); "
                                   f"choose another --memory path (it was left untouched)")
        try:
            version = int(meta.get("schema_version", "-1"))
            dim = int(meta.get("dim", "-1"))
        except ValueError as e:
            raise self.damaged(f"bad meta values {meta}") from e
        if version > SCHEMA_VERSION:
            raise MemoryStoreError(f"{self.path} was written by a newer firstwords (memory schema "
                                   f"v{version}; this one reads up to v{SCHEMA_VERSION}); upgrade firstwords "
                                   f"or use another --memory path")
        if version < 1:
            raise self.damaged(f"schema version {version}")
        if dim != self.dim:
            raise MemoryStoreError(f"{self.path} holds a memory of embedding dim {dim} but the bundle has "
                                   f"dim {self.dim}; a memory belongs to one model: use another --memory "
                                   f"path for this bundle")
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise self.damaged("integrity check: " + "; ".join(r[0] for r in check[:3]))
        missing = REQUIRED_TABLES - tables
        if missing:
            raise self.damaged(f"table {min(missing)} is missing")
        if version < SCHEMA_VERSION and not self.read_only:
            with self.transaction("upgrading"):
                upgrade_schema(db, version)

    def _create(self) -> None:
        with self.transaction("creating"):
            create_schema(self._db, self.dim)
            self.write_background(Background(np.zeros(self.dim, np.float32), 0.0, 0, -math.inf))

    # ---------------------------------------------------------------- errors and transactions
    def _fail(self, e: sqlite3.Error, doing: str) -> MemoryStoreError:
        return explain_sqlite_error(e, self.path, doing, self._in_memory)

    @contextmanager
    def transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the store's lock; any failure rolls back and raises a clear
        MemoryStoreError (the previous state intact)."""
        if self.read_only:
            raise MemoryStoreError(f"the memory {self.path} was opened read-only; open it for writing to "
                                   f"change it")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise self._fail(e, doing) from e
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as e:  # the transaction is gone anyway; SQLite rolls back on the next open
            log.warning("rollback of %s failed: %s", self.path, e)

    def query(self, sql: str, params: tuple = (), doing: str = "reading") -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise self._fail(e, doing) from e

    execute = query  # raw access for tools and tests (e.g. PRAGMA page_count)

    # ---------------------------------------------------------------- reading
    def vec(self, raw: bytes, what: str) -> np.ndarray:
        if not isinstance(raw, bytes) or len(raw) != 4 * self.dim:
            raise self.damaged(f"{what} has {len(raw) if isinstance(raw, bytes) else type(raw).__name__} "
                               f"bytes, expected {4 * self.dim}")
        out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise self.damaged(f"{what} holds NaN or Inf")
        return out

    def load_words(self) -> list[WordRow]:
        rows = self.query("SELECT word, proto_sum, weight, weight_sq, cooc_sum, cooc_count, exposures, "
                          "prior, first_seen, last_seen, last_utt FROM words")
        return [WordRow(w, self.vec(s, f"word {w!r}"), float(wt), float(wsq),
                        self.vec(cs, f"co-occurrence of {w!r}"), float(cc), int(n),
                        None if p is None else self.vec(p, f"prior of {w!r}"), float(f), float(last), int(lu))
                for w, s, wt, wsq, cs, cc, n, p, f, last, lu in rows]

    def load_background(self) -> Background:
        st = dict(self.query("SELECT key, value FROM state"))
        try:
            second = None
            if st.get("background_second") is not None:
                raw = st["background_second"]
                if not isinstance(raw, bytes) or len(raw) != 4 * self.dim * self.dim:
                    raise self.damaged("background covariance has the wrong size")
                second = np.frombuffer(raw, dtype="<f4").astype(np.float64).reshape(self.dim, self.dim)
                if not np.all(np.isfinite(second)):
                    raise self.damaged("background covariance holds NaN or Inf")
            return Background(self.vec(st["background_sum"], "background"), float(st["background_count"]),
                              int(st["utterances"]), float(st["evicted_through"]), second)
        except (KeyError, TypeError, ValueError) as e:
            raise self.damaged(f"state table incomplete ({e})") from e

    def counters(self) -> dict[str, int]:
        """Counts kept in the state table: evicted_episodes (oldest first: capacity or disk cap) and
        evicted_words."""
        st = dict(self.query("SELECT key, value FROM state WHERE key LIKE 'evicted_%'"))
        return {k: int(st.get(k) or 0) for k in ("evicted_episodes", "evicted_words")}

    def counts(self) -> tuple[int, int]:
        return tuple(self.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in ("words", "episodes"))

    def iter_episodes(self, chunk: int = 4096, word: str | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str], np.ndarray]]:
        """Episodes in chunks: (ids int64 [n], times [n], texts, embeddings float32 [n, D]) of a snapshot."""
        if word is None:
            rows = self.query("SELECT id, t, text, embedding FROM episodes ORDER BY id")
        else:
            rows = self.query("SELECT e.id, e.t, e.text, e.embedding FROM episodes e JOIN episode_words w ON "
                              "w.episode_id = e.id WHERE w.word = ? ORDER BY e.id", (word,))
        for i in range(0, len(rows), chunk):
            part = rows[i:i + chunk]
            yield (np.array([r[0] for r in part], dtype=np.int64),
                   np.array([r[1] for r in part], dtype=np.float64), [r[2] for r in part],
                   np.stack([self.vec(r[3], f"episode {r[0]}") for r in part]))

    def episode_words(self, episode_ids: list[int]) -> dict[int, list[str]]:
        return {i: [w for (w,) in self.query("SELECT word FROM episode_words WHERE episode_id = ?", (i,))]
                for i in episode_ids}

    def episode_times(self) -> list[float]:
        return [r[0] for r in self.query("SELECT t FROM episodes ORDER BY id")]

    def bytes_on_disk(self) -> int:
        if self._in_memory:
            return int(self.query("PRAGMA page_count")[0][0] * self.query("PRAGMA page_size")[0][0])
        return sum(p.stat().st_size for p in sidecar_files(Path(self.path)) if p.exists())

    # ---------------------------------------------------------------- writing
    def write_background(self, bg: Background) -> None:
        self._db.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", [
            ("background_sum", blob(bg.total)), ("background_count", float(bg.count)),
            ("utterances", int(bg.utterances)), ("evicted_through", float(bg.evicted_through))])
        if bg.second is not None:  # (float32: D*D*4 bytes, 16 KB at D = 64)
            self._db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
                             ("background_second", blob(bg.second.reshape(-1))))

    def _count(self, key: str, n: int) -> None:
        if n:
            self._db.execute("INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = COALESCE(value, 0) + excluded.value", (key, n))

    def write_batch(self, words: list[WordRow], episodes: list[EpisodeRow], background: Background,
                    capacity_words: int, capacity_episodes: int, protect: set[str],
                    ledger: Mapping[str, str] | None = None) -> BatchResult:
        """One transaction: upsert the words, add the episodes, store the background, evict beyond capacity
        and beyond the disk cap (never a word in `protect`, the words of this batch), write the ledger
        entries. All or nothing."""
        with self.transaction("writing to") as db:
            self._put_ledger(db, ledger)
            db.executemany(
                "INSERT INTO words(word, proto_sum, weight, weight_sq, cooc_sum, cooc_count, exposures, "
                "prior, first_seen, last_seen, last_utt) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(word) DO "
                "UPDATE SET proto_sum=excluded.proto_sum, weight=excluded.weight, "
                "weight_sq=excluded.weight_sq, cooc_sum=excluded.cooc_sum, cooc_count=excluded.cooc_count, "
                "exposures=excluded.exposures, prior=excluded.prior, first_seen=excluded.first_seen, "
                "last_seen=excluded.last_seen, last_utt=excluded.last_utt",
                [(r.word, blob(r.proto_sum), r.weight, r.weight_sq, blob(r.cooc_sum), r.cooc_count,
                  r.exposures, None if r.prior is None else blob(r.prior), r.first_seen, r.last_seen,
                  r.last_utt) for r in words])
            ids = []
            for ep in episodes:
                cur = db.execute("INSERT INTO episodes(t, text, embedding, frame_sum, learned_mean, "
                                 "n_frames, media) VALUES (?,?,?,?,?,?,?)",
                                 (ep.t, ep.text, blob(ep.embedding), blob(ep.frame_sum),
                                  blob(ep.learned_mean), ep.n_frames, ep.media))
                ids.append(int(cur.lastrowid))
                db.executemany("INSERT OR REPLACE INTO episode_words(word, episode_id, credit, confidence) "
                               "VALUES (?,?,?,?)", [(w, cur.lastrowid, float(c), ep.confidence.get(w, 1.0))
                                                    for w, c in ep.credits.items()])
            evicted_words = self._evict_words(capacity_words, background.utterances, protect)
            n_ep, latest = self._evict_oldest(db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
                                              - capacity_episodes)
            n_disk, latest_disk = self.disk.evict(db, self._evict_oldest)
            n_ep += n_disk
            if n_ep:
                background.evicted_through = max(background.evicted_through, latest, latest_disk)
            self.write_background(background)
            self._count("evicted_episodes", n_ep)
            self._count("evicted_words", len(evicted_words))
        if n_disk:
            self.disk.give_back(self._db, self._lock)
        return BatchResult(ids, evicted_words, n_ep)

    def write_ledger(self, ledger: Mapping[str, str]) -> None:
        with self.transaction("writing to") as db:
            self._put_ledger(db, ledger)

    @staticmethod
    def _put_ledger(db: sqlite3.Connection, ledger: Mapping[str, str] | None) -> None:
        # In the meta table, namespaced so that no entry can overwrite the memory's own keys.
        if ledger:
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           [(LEDGER_NS + k, str(v)) for k, v in ledger.items()])

    def read_ledger(self, prefix: str = "") -> dict[str, str]:
        head = LEDGER_NS + prefix
        rows = self._db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(head), head))
        return {k[len(LEDGER_NS):]: v for k, v in rows}

    def _evict_words(self, capacity: int, now_utt: int, protect: set[str]) -> list[str]:
        n = self._db.execute("SELECT COUNT(*) FROM words").fetchone()[0]
        if n <= capacity:
            return []
        # Down to 99 % of capacity at once, so that a full memory scans its words once per ~1 % of new words,
        # not at every new word. Weakest = least credit, discounted by how long ago (in utterances) it was
        # heard.
        excess = n - capacity + capacity // 100
        rows = self._db.execute(
            "SELECT word FROM words ORDER BY weight / (1.0 + (? - last_utt) / 1000.0) ASC, last_seen ASC "
            "LIMIT ?",
            (now_utt, excess + len(protect))).fetchall()
        victims = [w for (w,) in rows if w not in protect][:excess]
        self._db.executemany("DELETE FROM words WHERE word = ?", [(w,) for w in victims])
        return victims

    def _evict_oldest(self, excess: int) -> tuple[int, float]:
        if excess <= 0:
            return 0, -math.inf
        rows = self._db.execute("SELECT id, t FROM episodes ORDER BY t ASC, id ASC LIMIT ?",
                                (excess,)).fetchall()
        self.delete_episodes([r[0] for r in rows])
        return len(rows), max((r[1] for r in rows), default=-math.inf)

    def delete_episodes(self, ids: list[int]) -> None:
        self._db.executemany("DELETE FROM episode_words WHERE episode_id = ?", [(i,) for i in ids])
        self._db.executemany("DELETE FROM episodes WHERE id = ?", [(i,) for i in ids])

    def compact(self) -> None:
        """VACUUM and truncate the WAL: removed content is gone from the file, its space back to the OS."""
        with self._lock:
            try:
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # (an older file takes it on here)
                self._db.execute("VACUUM")
                if not self._in_memory:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                raise self._fail(e, "compacting") from e

    def close(self, checkpoint: bool = True) -> None:
        with self._lock:
            try:
                if checkpoint and not self._in_memory and not self.read_only:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                log.warning("checkpoint of %s on close failed: %s", self.path, e)
            self._db.close()
            self._release()


__all__ = ["APP_ID", "SCHEMA_VERSION", "Background", "BatchResult", "EpisodeRow", "MemoryStore", "WordRow",
           "blob"]
