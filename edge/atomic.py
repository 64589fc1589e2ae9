"""Atomic file replacement: a reader (or a power cut) sees the old file or the new one, never half of one.

    atomic_write_text("device_configs/mine.toml", text)
    atomic_write_json(path, obj)
    with atomic_open(path, "wb") as f:      # stream a large file
        f.write(...)

How: the data goes to a temporary file in the SAME folder (`.NAME.tmp-XXXX`, so the rename stays on one
file system), is flushed and fsynced, then `os.replace` swaps it in (atomic on POSIX) and the folder is
fsynced so the rename itself survives a power cut. On any error the temporary file is removed and the old file
is untouched; a full disk becomes a `WriteError` that says so. A power cut can leave a `.NAME.tmp-*` file
behind (never the target), named with the writer's process id: every write first deletes those whose writer is
no longer running (`remove_stale_temps`), so debris does not pile up and a concurrent writer's file is left
alone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from firstwords.edge.errors import FirstwordsError

log = logging.getLogger(__name__)

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class WriteError(FirstwordsError, OSError):
    """A file could not be written; the previous version (if any) is intact. Also an OSError, so callers that
    already catch OSError keep working."""


def temp_prefix(path: str | Path) -> str:
    return f".{Path(path).name}.tmp-"


def pid_alive(pid: int) -> bool:
    """Is process `pid` running (this process counts)? Tells a dead writer's temp files from a live one's."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # 0 / negatives address process groups, not a writer
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no such pid can exist
        return False
    except OSError:  # exists but not ours (EPERM)
        return True
    return True


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder so that a rename inside it is durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows; nothing more we can do
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems refuse fsync on folders; the data itself was fsynced
        log.debug("fsync of folder %s failed: %s", folder, e)
    finally:
        os.close(fd)


def remove_stale_temps(path: str | Path, *, all_writers: bool = False) -> list[Path]:
    """Delete temporary files interrupted atomic writes of `path` left beside it: those of writers no longer
    running (all of them with all_writers=True). Returns what went."""
    p = Path(path)
    gone = []
    prefix = temp_prefix(p)
    if p.parent.is_dir():
        for stale in p.parent.glob(prefix + "*"):
            pid_text = stale.name[len(prefix):].split("-", 1)[0]
            if not all_writers and pid_text.isdigit() and pid_alive(int(pid_text)):
                continue
            try:
                stale.unlink()
                gone.append(stale)
            except OSError as e:  # e.g. a folder of that name: not ours, leave it
                log.debug("cannot remove stale temp %s: %s", stale, e)
    return gone


def _error(path: Path, e: OSError) -> WriteError:
    if e.errno in _NO_SPACE:
        msg = (f"cannot write {path}: the disk is full ({e.strerror}); the previous {path.name} is intact — "
               "free some space and try again")
    else:
        msg = f"cannot write {path} ({e}); the previous {path.name} is intact"
    err = WriteError(msg)
    err.errno = e.errno
    return err


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, encoding: str | None = None,
                file_mode: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it replaces `path` atomically, on an error it is
    removed and `path` is left as it was. mode: "wb" or "w" (text; encoding defaults to utf-8).
    file_mode: permission bits of the new file (default: those of the file it replaces, else 0o644)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    if file_mode is None:
        try:
            file_mode = path.stat().st_mode & 0o7777
        except OSError:
            file_mode = 0o644
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{temp_prefix(path)}{os.getpid()}-", dir=folder)
    except OSError as e:
        raise _error(path, e) from e
    tmp = Path(tmp_name)
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _error(path, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: str | Path, data: bytes, *, file_mode: int | None = None) -> Path:
    with atomic_open(path, "wb", file_mode=file_mode) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8",
                      file_mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode(encoding), file_mode=file_mode)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = True,
                      file_mode: int | None = None) -> Path:
    """JSON (UTF-8, trailing newline); the object is serialised before anything is written."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text, file_mode=file_mode)
