"""Forgetting: undoing what episodes taught, and forget requests that a running writer obeys.

A memory has one writer (edge.memory_files). When `firstwords forget` finds another process writing the
memory, it must not change the file behind that writer's back: the writer keeps the words in RAM and would
write a forgotten word back at its next update. Instead, forget records a request in the database
(`forget_requests`) and waits; the writer applies pending requests to its RAM and to the file before every
update, when it opens and when it closes, and marks each applied with what it removed, in the same
transaction. A request made while nobody writes is applied by the next writable open; nothing forgotten comes
back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
from firstwords.edge.errors import MemoryStoreError
from firstwords.edge.memory_files import read_only_error, read_only_reason, sqlite_uri, writer_holder
from firstwords.edge.memory_rule import Background, WordRow
from firstwords.edge.memory_schema import FORGET_REQUESTS
from firstwords.edge.memory_store import MemoryStore, blob
from firstwords.edge.memory_table import WordTable


def undo_episodes(store: MemoryStore, table: WordTable, bg: Background, ids: list[int], drop: set[str],
                  floor_time: float | None) -> tuple[list[str], list[WordRow], Background]:
    """What the memory looks like without the episodes `ids` and the words in `drop`: (words to delete, word
    rows to update, the background). The credit the episodes gave other words is subtracted approximately (the
    word's credit times the mean of the episode's frames); words left with no exposure go too."""
    rows: dict[str, WordRow] = {}
    for i in ids:
        for w, credit, conf, mean, frame_sum, n in store.query(
                "SELECT w.word, w.credit, w.confidence, e.learned_mean, e.frame_sum, e.n_frames FROM "
                "episode_words w JOIN episodes e ON e.id = w.episode_id WHERE w.episode_id = ?", (i,),
                "forgetting in"):
            r = None if w in drop else (rows.get(w) or table.row(w))
            if r is None:
                continue
            credit, conf = float(credit), float(conf)
            r.proto_sum = (r.proto_sum - credit * store.vec(mean, f"episode {i}")).astype(np.float32)
            r.weight -= credit
            r.weight_sq = max(r.weight_sq - credit * credit, 0.0)
            r.cooc_sum = (r.cooc_sum - conf * store.vec(frame_sum, f"episode {i}")).astype(np.float32)
            r.cooc_count = max(r.cooc_count - conf * int(n), 0.0)
            r.exposures -= 1
            if floor_time is not None:
                r.last_seen = min(r.last_seen, floor_time)
            rows[w] = r
    gone = sorted(set(drop) | {w for w, r in rows.items() if r.exposures <= 0 or r.weight <= 1e-6})
    keep = [r for w, r in rows.items() if w not in gone]
    # the world's statistics forget those frames too (the covariance from each episode's mean: its frames are
    # near-duplicates of one scene)
    new = bg.copy()
    for i in ids:
        for frame_sum, n in store.query("SELECT frame_sum, n_frames FROM episodes WHERE id = ?", (i,)):
            fs = store.vec(frame_sum, f"episode {i}").astype(np.float64)
            new.total = new.total - fs
            new.count = max(new.count - int(n), 0.0)
            if new.second is not None and n:
                new.second = new.second - np.outer(fs, fs) / int(n)
    new.total = new.total.astype(np.float32)
    return gone, keep, new


def write_forget(store: MemoryStore, gone: list[str], keep: list[WordRow], ids: list[int], bg: Background,
                 request: tuple[int, dict] | None = None) -> None:
    """Remove words and episodes in one transaction (marking the forget request applied, if any), then
    VACUUM and truncate the WAL so the removed content is gone from the file (secure_delete zeroes freed
    pages too)."""
    with store.transaction("forgetting in") as db:
        db.executemany("DELETE FROM words WHERE word = ?", [(w,) for w in gone])
        db.executemany("DELETE FROM episode_words WHERE word = ?", [(w,) for w in gone])
        for r in keep:
            db.execute("UPDATE words SET proto_sum=?, weight=?, weight_sq=?, cooc_sum=?, cooc_count=?, "
                       "exposures=?, last_seen=? WHERE word=?",
                       (blob(r.proto_sum), r.weight, r.weight_sq, blob(r.cooc_sum), r.cooc_count, r.exposures,
                        r.last_seen, r.word))
        store.delete_episodes(ids)
        store.write_background(bg)
        if request is not None:
            db.execute("UPDATE forget_requests SET applied_at = ?, result = ? WHERE id = ?",
                       (time.time(), json.dumps(request[1]), request[0]))
    store.compact()


def pending_requests(store: MemoryStore) -> list[tuple[int, str, str]]:
    """(id, kind, value) of the forget requests not applied yet, oldest first."""
    if not store.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'forget_requests'"):
        return []
    return store.query("SELECT id, kind, value FROM forget_requests WHERE applied_at IS NULL ORDER BY id")


def request_forget(path: str | Path, kind: str, value: str) -> int:
    """Record a forget request for the process writing the memory; returns its id."""
    if kind not in ("word", "since"):
        raise ValueError(kind)
    try:
        db = sqlite3.connect(str(path), timeout=30.0)
        try:
            db.execute(FORGET_REQUESTS)
            with db:
                cur = db.execute("INSERT INTO forget_requests(kind, value, requested_at) VALUES (?, ?, ?)",
                                 (kind, value, time.time()))
            return int(cur.lastrowid)
        finally:
            db.close()
    except sqlite3.Error as e:
        reason = read_only_reason(path)
        if reason:
            raise read_only_error(path, reason) from e
        raise MemoryStoreError(f"cannot ask the process writing {path} to forget ({e}); stop it and run "
                               f"`firstwords forget` again") from e


def wait_for_request(path: str | Path, request_id: int, timeout: float) -> dict | None:
    """What the writer removed for a request, once applied; None if it was not applied within `timeout` s
    while a writer still holds the memory. When the writer has gone, the caller opens the memory itself (a
    writable open applies pending requests)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True, timeout=10.0)
            try:
                row = db.execute("SELECT result FROM forget_requests WHERE id = ? AND applied_at IS NOT NULL",
                                 (request_id,)).fetchone()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise MemoryStoreError(f"cannot read the forget request's state in {path} ({e})") from e
        if row is not None:
            return json.loads(row[0])
        if writer_holder(path) is None or time.monotonic() > deadline:
            return None
        time.sleep(0.2)
