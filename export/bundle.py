"""The model bundle writer (the reader and the format live in edge/bundle.py; see docs/CONTRACTS.md).

Writing is atomic: the files go to a temporary folder beside the target, are fsynced and validated with
`edge.bundle.load_bundle`, and only then replace the old bundle by rename. A power cut before the swap leaves
the old bundle untouched; one between the two renames of the swap leaves it at `.NAME.old-*`, which the next
`write_bundle` (and `load_bundle`'s error message) puts back. A path ending in .zip gets one zip file written
to a temporary name and renamed over the old one.

The temporary folder is `.NAME.tmp-<pid>-XXXX`: an export killed before the swap leaves it behind (a whole
bundle's size), so every write first removes those whose writer is no longer running (a concurrent live
export's folder is left alone). A full disk (or any other OS error) becomes a `BundleError` that says how much
room the bundle needs where, with the old bundle intact.

The output is deterministic: no timestamps; JSON with sorted keys; zip entries with a fixed date.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from firstwords.edge.atomic import pid_alive
from firstwords.edge.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGE_FILE,
    MANIFEST,
    UTTERANCE_FILE,
    VOCAB_FILE,
    load_bundle,
    sha256_file,
)
from firstwords.edge.errors import BundleError
from firstwords.edge.tokenize import Vocab, manifest_entry

log = logging.getLogger(__name__)

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# A temp folder older than this is debris even if its pid is alive again (pids get reused); an export takes
# minutes, not a day.
_STALE_AFTER_S = 24 * 3600


def firstwords_version() -> str:
    try:
        return metadata.version("firstwords")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def default_tokenizer() -> dict[str, Any]:
    return manifest_entry()


def vocab_json(vocab: Vocab | Mapping[str, int]) -> bytes:
    ids = vocab.ids if isinstance(vocab, Vocab) else dict(vocab)
    Vocab(dict(ids))  # validates CVCL's layout (specials at 0..3, no gaps)
    ordered = dict(sorted(ids.items(), key=lambda kv: kv[1]))
    return (json.dumps(ordered, indent=0, ensure_ascii=False) + "\n").encode("utf-8")


def build_manifest(files: Mapping[str, Path], manifest_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest: required fields filled in, caller's fields merged, checksums of `files` added."""
    fields = json.loads(json.dumps(dict(manifest_fields)))  # deep copy; also proves it is JSON-able
    for reserved in ("format", "format_version", "files"):
        fields.pop(reserved, None)
    if "embedding_dim" not in fields:
        raise ValueError("manifest_fields must give embedding_dim")
    image = {"file": IMAGE_FILE, "input": "image", "output": "embedding", **fields.pop("image", {})}
    for key in ("input_size", "mean", "std"):
        if key not in image:
            raise ValueError(f"manifest_fields['image'] must give {key}")
    sp = image.get("spatial")  # optional: the image graph's spatial output (export.spatial)
    if sp is not None and not (isinstance(sp, dict) and isinstance(sp.get("output"), str) and
                               isinstance(sp.get("grid"), list) and len(sp["grid"]) == 2):
        raise ValueError(f"manifest_fields['image']['spatial'] must be {{'output': name, 'grid': [h, w]}}, got {sp!r}")
    utterance = {"file": UTTERANCE_FILE, "input": "tokens", "output": "embedding", **fields.pop("utterance", {})}
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "image": image, "utterance": utterance,
        "tokenizer": {**default_tokenizer(), **fields.pop("tokenizer", {})},
        "quantization": "none", "parity": {}, "created_by": f"firstwords {firstwords_version()}",
        **fields,
    }
    manifest["files"] = {name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for name, p in sorted(files.items())}
    return manifest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_replaceable(path: Path) -> bool:
    """Only replace an empty folder or a previous bundle, never some unrelated folder full of files."""
    return not any(path.iterdir()) or (path / MANIFEST).is_file()


def _restore_interrupted(out: Path) -> None:
    backups = sorted(out.parent.glob(f".{out.name}.old-*"))
    if backups and not out.exists():
        log.warning("restoring %s from %s (a previous export was interrupted mid-swap)", out, backups[-1])
        os.rename(backups[-1], out)
        backups = backups[:-1]
    for b in backups:
        shutil.rmtree(b, ignore_errors=True) if b.is_dir() else b.unlink(missing_ok=True)


def _temp_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove the `.NAME.tmp-<pid>-*` folders of exports of `out` that were killed before their swap: those
    whose writer is no longer running, or that are older than a day. Returns what went."""
    out = Path(out)
    prefix = _temp_prefix(out)
    gone = []
    if not out.parent.is_dir():
        return gone
    for stale in out.parent.glob(prefix + "*"):
        pid_text = stale.name[len(prefix):].split("-", 1)[0]
        try:
            age = time.time() - stale.lstat().st_mtime
        except OSError:  # gone meanwhile
            continue
        live = pid_text.isdigit() and pid_alive(int(pid_text))
        if not pid_text.isdigit() and age < _STALE_AFTER_S:
            live = True  # no pid in the name (another program's, or an old writer's): only remove when old
        if live and age < _STALE_AFTER_S:
            continue
        log.info("removing %s (left by an export that was killed before it finished)", stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        gone.append(stale)
    return gone


def _bytes_needed(paths: list[Path], as_zip: bool) -> int:
    """Room a new bundle needs beside the old one: its files (+ the vocabulary and manifest, a few KB), twice
    for a zip (the folder is validated, then zipped next to it)."""
    total = sum(p.stat().st_size for p in paths) + 64 * 1024
    return 2 * total if as_zip else total


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def _write_error(out: Path, e: OSError, needed: int | None) -> BundleError:
    kept = "the previous bundle is intact" if out.exists() else "nothing was written"
    if e.errno in _NO_SPACE:
        free = _free_bytes(out.parent)
        room = f"; it needs about {needed / 1e6:.1f} MB in {out.parent}" if needed else f" in {out.parent}"
        have = f" ({free / 1e6:.1f} MB free)" if free is not None else ""
        return BundleError(f"cannot write bundle {out}: the disk is full{room}{have}; {kept} — free some space "
                           "(or choose another output folder) and export again")
    return BundleError(f"cannot write bundle {out} ({e}); {kept} — check the output folder and export again")


def write_bundle(out_dir: str | Path, image_onnx_path: str | Path, utterance_onnx_path: str | Path,
                 vocab: Vocab | Mapping[str, int], manifest_fields: Mapping[str, Any],
                 extra_files: Mapping[str, str | Path] | None = None) -> Path:
    """Write a validated bundle at `out_dir` (a folder, or a .zip file if the name ends in .zip).

    manifest_fields: embedding_dim, image {input_size, mean, std}, quantization, opset, model_config,
    training_data, parity, ... (see docs/CONTRACTS.md); format, version and checksums are filled in here.
    extra_files: more files by their name in the bundle (e.g. the speech LM, "speech_lm.bin"), checksummed
    like the others. Returns the bundle's path. Raises BundleError (the old bundle intact) when it cannot be
    written.
    """
    extra = {str(k): Path(v) for k, v in (extra_files or {}).items()}
    out = Path(out_dir)
    as_zip = out.suffix.lower() == ".zip"
    needed = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not as_zip:
            _restore_interrupted(out)
            if out.exists() and (not out.is_dir() or not _is_replaceable(out)):
                raise BundleError(f"{out}: exists and is not a firstwords bundle; refusing to replace it — "
                                  "choose another output path or remove it")
        for p in (image_onnx_path, utterance_onnx_path, *extra.values()):
            if not Path(p).is_file():
                raise BundleError(f"{p}: the file to bundle does not exist")
        remove_stale_temps(out)
        needed = _bytes_needed([Path(image_onnx_path), Path(utterance_onnx_path), *extra.values()], as_zip)
        free = _free_bytes(out.parent)
        if free is not None and free < needed:  # refuse before writing half a bundle
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _write(out, Path(image_onnx_path), Path(utterance_onnx_path), vocab, manifest_fields, as_zip, extra)
    except OSError as e:
        raise _write_error(out, e, needed) from e
    log.info("wrote bundle %s", out)
    return out


def _write(out: Path, image_onnx_path: Path, utterance_onnx_path: Path, vocab: Vocab | Mapping[str, int],
           manifest_fields: Mapping[str, Any], as_zip: bool, extra: Mapping[str, Path]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(out)}{os.getpid()}-", dir=out.parent))
    try:
        shutil.copyfile(image_onnx_path, tmp / IMAGE_FILE)
        shutil.copyfile(utterance_onnx_path, tmp / UTTERANCE_FILE)
        (tmp / VOCAB_FILE).write_bytes(vocab_json(vocab))
        for name, src in extra.items():
            shutil.copyfile(src, tmp / name)
        files = {n: tmp / n for n in (IMAGE_FILE, UTTERANCE_FILE, VOCAB_FILE, *extra)}
        if isinstance(vocab, Vocab):  # the manifest names the rule the vocabulary was counted with
            tok = {**manifest_fields.get("tokenizer", {}), **manifest_entry(vocab.rule, vocab.max_tokens)}
            manifest_fields = {**manifest_fields, "tokenizer": tok}
        manifest = build_manifest(files, manifest_fields)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            _fsync(p)
        _fsync(tmp)
        check = load_bundle(tmp)  # refuse to publish a bundle edge would refuse
        check.close()

        if as_zip:
            tmp_zip = tmp / (out.name + ".partial")
            with zipfile.ZipFile(tmp_zip, "w") as zf:
                for name in sorted([MANIFEST, *files]):
                    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                    info.compress_type = zipfile.ZIP_STORED if name.endswith(".onnx") else zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, (tmp / name).read_bytes())
            _fsync(tmp_zip)
            os.replace(tmp_zip, out)
        else:
            backup = None
            if out.exists():
                backup = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, backup)
            try:
                os.rename(tmp, out)
            except OSError:
                if backup is not None:  # put the old bundle back before reporting
                    os.rename(backup, out)
                raise
            tmp = None  # now the bundle
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        _fsync(out.parent)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
