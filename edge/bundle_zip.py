"""Safe extraction of a zipped bundle: plain files with safe names only, within size limits (no zip bombs).

Used by edge.bundle.load_bundle for a bundle given as a .zip; every failure is a BundleError naming the zip.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from firstwords.edge.errors import REEXPORT, BundleError

# Zip extraction limits (against zip bombs): CVCL's fp32 ResNeXt-50 tower is ~100 MB.
MAX_MEMBER_BYTES = 1 << 30  # 1 GiB per file
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB in all
MAX_MEMBERS = 64
MAX_RATIO = 200  # uncompressed / compressed; ONNX weights barely compress, so a huge ratio is a bomb

def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged zip member can raise besides BadZipFile: zlib.error (deflate), lzma.LZMAError,
    OSError (bz2 and I/O), EOFError (truncated), NotImplementedError (unknown method), RuntimeError
    (encrypted), ValueError (e.g. a name flagged UTF-8 that is not)."""
    errors: list[type[BaseException]] = [zipfile.BadZipFile, zlib.error, OSError, EOFError,
                                         NotImplementedError,
                                         RuntimeError, ValueError]
    try:
        import lzma  # optional in some Python builds
        errors.append(lzma.LZMAError)
    except ImportError:
        pass
    return tuple(errors)


_ZIP_ERRORS = _decompression_errors()


def safe_extract(zpath: Path, dest: Path) -> None:
    """Extract only plain files with safe names (optionally under one top-level folder), within size
    limits."""
    try:
        zf = zipfile.ZipFile(zpath)
    except _ZIP_ERRORS as e:
        raise BundleError(f"{zpath}: cannot open the zip ({e}); copy it again or {REEXPORT}") from e
    with zf:
        if any(not i.filename for i in zf.infolist()):  # a damaged central directory (is_dir() would fail)
            raise BundleError(f"{zpath}: a member has no name; the zip is damaged — copy it again or "
                              f"{REEXPORT}")
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            raise BundleError(f"{zpath}: holds {len(infos)} files; a bundle has a handful — refusing it")
        names = []
        for info in infos:
            n = info.filename
            parts = PurePosixPath(n).parts
            mode = info.external_attr >> 16
            if (n.startswith("/") or "\\" in n or ".." in parts or (parts and ":" in parts[0])
                    or len(parts) > 2 or stat.S_ISLNK(mode)):
                raise BundleError(f"{zpath}: member {n!r} has an unsafe path (absolute, '..', link or nested "
                                  f"folders); refusing to extract it — {REEXPORT}")
            names.append(parts)
        prefixes = {p[0] for p in names if len(p) == 2}
        if len(prefixes) > 1 or (prefixes and any(len(p) == 1 for p in names)):
            raise BundleError(f"{zpath}: files must sit at the top of the zip or in one folder; {REEXPORT}")
        total = 0
        for info, parts in zip(infos, names, strict=True):
            if (info.file_size > MAX_MEMBER_BYTES
                    or info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096):
                raise BundleError(f"{zpath}: member {info.filename!r} would expand to {info.file_size} bytes "
                                  f"from {info.compress_size}; refusing a possible zip bomb")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise BundleError(f"{zpath}: expands to more than {MAX_TOTAL_BYTES} bytes; refusing it")
            target = dest / parts[-1]
            if target.exists():
                raise BundleError(f"{zpath}: {parts[-1]} appears twice; {REEXPORT}")
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        written += len(block)
                        if written > info.file_size:  # the header lied about the size
                            raise BundleError(f"{zpath}: member {info.filename!r} is larger than its header "
                                              "says; refusing a possible zip bomb")
                        out.write(block)
            except _ZIP_ERRORS as e:
                raise BundleError(f"{zpath}: member {info.filename!r} is corrupt ({type(e).__name__}: {e}); "
                                  f"copy the zip again or {REEXPORT}") from e
