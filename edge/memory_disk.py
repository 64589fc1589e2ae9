"""The disk cap of a memory ([memory] max_disk_mb): the SD card never fills.

The main file gets 3/4 of the cap less 96 KB, its write-ahead log 1/8 (checkpointed and truncated at that
size); the rest is for the WAL's index (-shm, 32 KB) and the update in flight, so the three files together
stay under the cap. When the pages in use pass the main file's share, the oldest episodes are evicted in the
same transaction as the update that passed it, down to 90 % of the share, and counted (state
`evicted_episodes`); the words stay (their learning is in their sums). Freed pages are reused by later
updates, and a few at a time are given back to the OS (incremental vacuum, bounded so that no update waits
long) once the file has incremental auto-vacuum, which the first `forget` (a VACUUM) gives it; a new file
starts without it, to take as few pages as it can on a nearly full card, and reuses its freed pages.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable

from firstwords.edge.errors import InputError

log = logging.getLogger(__name__)

MAIN_SHARE = 0.75  # of max_disk_mb for the database file itself
WAL_SHARE = 0.125  # for the write-ahead log
LOW_WATER = 0.9  # evict down to this share of the main file's budget (not one episode per update)
FIXED_BYTES = 96 * 1024  # the WAL index (-shm, 32 KB) and the pages one update writes beyond the WAL's share
VACUUM_PAGES = 256  # pages given back to the OS per update at most (1 MB at 4 KiB pages)


class DiskCap:
    def __init__(self, max_disk_mb: float | None):
        number = isinstance(max_disk_mb, (int, float)) and not isinstance(max_disk_mb, bool)
        if max_disk_mb is not None and (not number or not math.isfinite(max_disk_mb) or max_disk_mb <= 0):
            raise InputError("max_disk_mb must be a number greater than 0 (or None: no cap), got "
                             f"{max_disk_mb!r}; check the device config's [memory] max_disk_mb")
        self.max_bytes = None if max_disk_mb is None else int(max_disk_mb * 1024 * 1024)
        self._warned = False

    @property
    def budget(self) -> int:
        """Bytes the main file may use: its share of the cap less the fixed costs (index, one update)."""
        if not self.max_bytes:
            return 0
        return max(int(MAIN_SHARE * self.max_bytes) - FIXED_BYTES, self.max_bytes // 4)

    def configure(self, db: sqlite3.Connection) -> None:
        """Bound the write-ahead log of a writable connection to its share of the cap."""
        if not self.max_bytes:
            return
        page = db.execute("PRAGMA page_size").fetchone()[0]
        wal = int(WAL_SHARE * self.max_bytes)
        db.execute(f"PRAGMA journal_size_limit={wal}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(8, wal // page // 2)}")

    @staticmethod
    def _used(db: sqlite3.Connection) -> tuple[int, int, int]:
        """(bytes in use, pages in the file, page size) as this connection sees them (its transaction too)."""
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size, pages, size

    def evict(self, db: sqlite3.Connection,
              evict_oldest: Callable[[int], tuple[int, float]]) -> tuple[int, float]:
        """Inside the update's transaction: evict the oldest episodes until the pages in use are back under
        LOW_WATER of the budget. Returns (episodes evicted, latest time among them)."""
        if not self.max_bytes:
            return 0, -math.inf
        used = self._used(db)[0]
        if used <= self.budget:
            return 0, -math.inf
        target = LOW_WATER * self.budget
        total, latest = 0, -math.inf
        for _ in range(8):  # rows share pages: a few rounds, each sized by the share still over
            n = db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
            if used <= target or n == 0:
                break
            k, t = evict_oldest(max(1, math.ceil(n * (used - target) / used)))
            total, latest = total + k, max(latest, t)
            used = self._used(db)[0]
        if used > self.budget and not self._warned:
            self._warned = True
            log.warning("the memory's words alone take %d KB, more than [memory] max_disk_mb allows the file "
                        "(%d KB); lower capacity_words or raise max_disk_mb", used // 1024,
                        self.budget // 1024)
        return total, latest

    def give_back(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        """After a commit that evicted: return a bounded number of free pages to the OS when the file is over
        its budget (a no-op for a memory created without auto_vacuum)."""
        with lock:
            try:
                _, pages, size = self._used(db)
                over = pages - self.budget // size
                if over > 0:
                    db.execute(f"PRAGMA incremental_vacuum({min(over + 16, VACUUM_PAGES)})").fetchall()
            except sqlite3.Error as e:  # space is given back at a later update or by the next forget
                log.warning("giving free pages back to the OS failed: %s", e)
