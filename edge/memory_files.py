"""The memory's files beside its database: the writer lock, setting a damaged file aside, reading the meta
table without opening the memory, and telling a read-only place from a damaged file.

One writer per memory: a writable open takes an exclusive flock on `<db>.lock` and writes its process id and
start time into it; a second writer is refused with a message naming them. The kernel drops a flock when its
holder exits or dies (SIGKILL, power cut), so a stale lock never blocks. Readers never take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from pathlib import Path

from firstwords.edge.errors import MemoryStoreError

# How a user starts fresh when the file is damaged; every error about a damaged file says this.
RESET_HINT = ("start fresh with `firstwords forget --reset --memory {path}` (the damaged file is kept aside "
              "as {name}.corrupt-<timestamp>, nothing is deleted)")


def sidecar_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


def read_only_reason(path: str | Path) -> str | None:
    """Why a memory at `path` cannot be written ("the folder X is read-only", ...), or None if it can."""
    path = Path(path)
    folder = path.parent
    probe = folder / f".{path.name}.probe-{os.getpid()}"
    try:  # a real write: os.access says yes to root on a read-only mount
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        return f"the folder {folder} is not writable by this user"
    except OSError as e:
        if e.errno == 30:  # EROFS
            return f"the folder {folder} is on a read-only file system"
        return None  # (disk full and the like are reported where they happen)
    for p in sidecar_files(path):
        if p.exists() and not os.access(p, os.W_OK):
            return f"{p} is read-only"
    return None


def damaged_error(path: str | Path, why: str) -> MemoryStoreError:
    return MemoryStoreError(f"the memory database {path} is damaged or not a database ({why}); "
                            + RESET_HINT.format(path=path, name=Path(path).name))


def explain_sqlite_error(e: sqlite3.Error, path: str, doing: str,
                         in_memory: bool = False) -> MemoryStoreError:
    """The user's message for an SQLite error met while `doing` ("writing to", ...) the memory at `path`: a
    full disk, a read-only place and a damaged file each say what they are and what to do."""
    code = getattr(e, "sqlite_errorcode", None)
    text = str(e).lower()
    if code == sqlite3.SQLITE_FULL or "full" in text or ("i/o error" in text and not in_memory
                                                         and _nearly_full(Path(path).parent)):
        return MemoryStoreError(f"the disk is full (or the database size limit was reached) while {doing} "
                                f"{path}; nothing of this update was saved and the previous state is intact; "
                                f"free some space or lower [memory] max_disk_mb / capacity_episodes")
    if "no such table" in text or "no such column" in text:
        return damaged_error(path, str(e))
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return MemoryStoreError(f"{path} is locked by another process while {doing}; stop the other "
                                f"firstwords process using this --memory file")
    if not in_memory and ("readonly" in text or "read-only" in text or "unable to open" in text):
        reason = read_only_reason(path)
        if reason or "readonly" in text:
            return read_only_error(path, reason or "the database file is read-only")
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
        return damaged_error(path, str(e))
    return MemoryStoreError(f"SQLite failed while {doing} the memory database {path} ({e}); the previous "
                            f"state is intact")


def _nearly_full(folder: Path) -> bool:
    """Less than 1 MiB free where the memory lives (a failed write there is a full disk, whatever SQLite
    says)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1024 * 1024


def read_only_error(path: str | Path, reason: str) -> MemoryStoreError:
    return MemoryStoreError(f"cannot write the memory {path}: {reason}. Nothing is wrong with the file: "
                            f"`firstwords ask --memory {path}` can still read it; to learn into it or "
                            f"forget, make the folder writable or copy the file to a writable place")


class WriterLock:
    """The exclusive writer lock of one memory file (see the module doc)."""

    def __init__(self, db_path: str | Path):
        self.path = lock_path(db_path)
        self._fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            reason = read_only_reason(db_path)
            if reason:
                raise read_only_error(db_path, reason) from e
            raise MemoryStoreError(f"cannot create the writer lock {self.path} ({e}); check the "
                                   f"folder") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(self.path, fd)
            os.close(fd)
            raise MemoryStoreError(f"the memory {db_path} is being written by another process ({holder}); "
                                   "one writer per memory: stop that process first, or use another "
                                   "--memory. Reading (`firstwords ask`) works meanwhile; `firstwords "
                                   f"forget` asks the running writer to forget") from None
        try:  # who holds it, for the message a second writer gets (the flock itself is the lock)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        except OSError:  # (a full disk: the memory's own writes will say so)
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def describe_holder(lock: Path, fd: int | None = None) -> str:
    """"process 1234, since 2026-11-30 08:12:03" from a lock file's contents ("an unknown process" if
    unreadable)."""
    try:
        raw = os.pread(fd, 4096, 0) if fd is not None else lock.read_bytes()[:4096]
        info = json.loads(raw.decode())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"process {int(info['pid'])}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


def writer_holder(db_path: str | Path) -> str | None:
    """The holder of the memory's writer lock ("process N, since ..."), or None when nobody writes it."""
    lock = lock_path(db_path)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(lock, fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


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
    holder = writer_holder(path)
    if holder:
        raise MemoryStoreError(f"the memory {path} is being written by {holder}; stop it before --reset")
    reason = read_only_reason(path) if any(p.exists() for p in sidecar_files(path)) else None
    if reason:
        raise MemoryStoreError(f"cannot move {path} aside: {reason}. Nothing was changed; make the folder "
                               f"writable (or copy the memory elsewhere) and run --reset again")
    moved = None
    for src in sidecar_files(path):
        if src.exists():
            dst = target.with_name(target.name + src.name[len(path.name):])
            src.rename(dst)
            moved = moved or (dst if src == path else None)
    return moved


def sqlite_uri(path: str | Path, **params: str) -> str:
    """An SQLite URI for a file path (any characters in it escaped) with query parameters such as mode=ro."""
    return Path(path).resolve().as_uri() + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def describe_meta(path: str | Path) -> dict:
    """The meta table of a memory file as a dict (for CLI messages); {} when unreadable."""
    for uri in (sqlite_uri(path, mode="ro"), sqlite_uri(path, immutable="1")):
        try:
            db = sqlite3.connect(uri, uri=True)
            try:
                return dict(db.execute("SELECT key, value FROM meta").fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            continue
    return {}
