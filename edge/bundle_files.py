"""Reading a bundle's files safely: each must be a regular file (a FIFO, a device such as /dev/zero or a folder in
its place is named as such and never opened), small JSON files are size-capped before they are read, and an
OSError (a folder this user may not read, ...) becomes a BundleError that says what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from firstwords.edge.errors import REEXPORT, BundleError


def file_kind(mode: int) -> str:
    """What a stat mode says a path is, in words: 'a folder', 'a FIFO (named pipe)', ..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def os_error(path: Path, e: OSError) -> BundleError:
    """A clear BundleError for an OSError met while opening a bundle's file or folder `path`."""
    if isinstance(e, PermissionError):
        return BundleError(f"{path}: permission denied — this user ({_user()}) may not read the bundle; make it "
                           f"readable (e.g. chmod -R a+rX on the bundle folder, and a+x on the folders above it) or "
                           f"run firstwords as the user who owns it")
    return BundleError(f"{path}: cannot read it ({e.strerror or e}); copy the bundle again or {REEXPORT}")


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return "the current user"


def regular_file(path: Path, source: Path, name: str) -> os.stat_result:
    """stat() a bundle file (following links): missing, unreadable and not-a-regular-file each said as such."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BundleError(f"{source}: {name} is missing; copy the whole bundle again or {REEXPORT}") from None
    except OSError as e:
        raise os_error(path, e) from e
    if not stat.S_ISREG(st.st_mode):
        link = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise BundleError(f"{source}: {name} is not a regular file: it is {file_kind(st.st_mode)}{link}; replace "
                          f"it with the bundle's own {name} (copy the whole bundle again) or {REEXPORT}")
    return st


def read_small_file(path: Path, source: Path, name: str, limit: int) -> bytes:
    """The bytes of a small bundle file (manifest, vocabulary), refused unread when it is not a regular file or is
    larger than `limit`. Opened non-blocking, so a FIFO swapped in after the check cannot hang the reader."""
    st = regular_file(path, source, name)
    if st.st_size > limit:
        raise BundleError(f"{source}: {name} is {st.st_size / 2**20:.1f} MB; a real one is a few KB (at most "
                          f"{limit / 2**20:g} MB is read) — not reading it; copy the bundle again or {REEXPORT}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise os_error(path, e) from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped between stat() and open()
            raise BundleError(f"{source}: {name} is not a regular file; copy the whole bundle again or {REEXPORT}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{source}: {name} grew past {limit / 2**20:g} MB while being read; not reading it")
    return data
