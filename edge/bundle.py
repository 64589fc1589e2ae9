"""The model bundle reader and validator (the contract between export/ and edge/; see docs/CONTRACTS.md).

A bundle is a directory (or a .zip of one) holding image.onnx, utterance.onnx, vocab.json and manifest.json.
`load_bundle` refuses anything that does not match what the manifest promises: format name and version, the
size and sha256 of every file, and the ONNX graphs' input / output names, element types and shapes. Each
failure is a BundleError that names the file and says what to do. Every file must be a regular file (a FIFO,
a device such as /dev/zero or a folder in its place is named as such, never read), and the small JSON files are
size-capped before they are parsed. The graphs are read by edge.onnx_graph, zips extracted by edge.bundle_zip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from firstwords.edge.bundle_files import file_kind, os_error, read_small_file, regular_file
from firstwords.edge.bundle_zip import safe_extract
from firstwords.edge.errors import REEXPORT, BundleError
from firstwords.edge.onnx_graph import (  # noqa: F401  (read_graph_signature: part of this module's API)
    ONNX_FLOAT,
    ONNX_INT64,
    check_graph,
    read_graph_signature,
)
from firstwords.edge.quantization import QUANTIZATION_FORMATS
from firstwords.edge.tokenize import LEGACY_RULE, MAX_TOKENS, SPECIAL_TOKENS, Vocab, rule_of

log = logging.getLogger(__name__)

FORMAT_NAME = "firstwords-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IMAGE_FILE, UTTERANCE_FILE, VOCAB_FILE = "image.onnx", "utterance.onnx", "vocab.json"
REQUIRED_FILES = (IMAGE_FILE, UTTERANCE_FILE, VOCAB_FILE)

# The JSON files are read whole into Python objects (~2x their size in RAM and more): a manifest is a few KB, a
# vocabulary ~50 KB for CVCL's 2.3k words, so these caps are far above any real bundle and far below harm.
MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB
MAX_VOCAB_BYTES = 16 << 20  # 16 MiB (~700k words)


# ---------------------------------------------------------------------------------------------------------
# Manifest dataclasses


@dataclass(frozen=True)
class ImageSpec:
    path: Path
    input: str
    output: str
    input_size: int  # px, square
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class UtteranceSpec:
    path: Path
    input: str
    output: str


@dataclass(frozen=True)
class TokenizerSpec:
    rule: str  # edge.tokenize's rule version; a manifest without one gets the old rule (with a warning)
    lowercase: bool
    strip_punctuation: bool
    max_tokens: int
    add_sos_eos: bool


@dataclass
class Bundle:
    """A validated bundle. `path` is the directory holding the files (a temporary one for a .zip)."""

    path: Path
    source: Path  # what the user gave (directory or .zip)
    manifest: dict[str, Any]
    embedding_dim: int
    image: ImageSpec
    utterance: UtteranceSpec
    tokenizer: TokenizerSpec
    vocab: Vocab
    quantization: str
    opset: int | None
    parity: dict[str, Any] = field(default_factory=dict)
    _cleanup: Any = field(default=None, repr=False)

    @property
    def model_config(self) -> str:
        return str(self.manifest.get("model_config", ""))

    def read_verified(self, path: Path) -> bytes:
        """One of the bundle's files, checked against the manifest's size and sha256 as it is read: what runs is
        what was hashed, even if the file was swapped after load_bundle()."""
        name = Path(path).name
        info = self.manifest["files"].get(name)
        if info is None:
            raise BundleError(f"{self.source}: {name} is not listed in the manifest; {REEXPORT}")
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise BundleError(f"{self.source}: cannot read {name} ({e}); copy the bundle again or {REEXPORT}") from e
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != info["bytes"] or digest != info["sha256"].lower():
            raise BundleError(f"{self.source}: {name} fails its sha256 check (got {digest[:16]}…, manifest says "
                              f"{info['sha256'][:16]}…) — it changed after the bundle was loaded; copy the bundle "
                              f"again or {REEXPORT}")
        return data

    @property
    def training_data(self) -> str:
        return str(self.manifest.get("training_data", ""))

    def file_bytes(self) -> dict[str, int]:
        return {name: int(info["bytes"]) for name, info in self.manifest["files"].items()}

    def close(self) -> None:
        """Remove the temporary extraction directory of a zipped bundle (no-op for a directory bundle)."""
        if self._cleanup is not None:
            self._cleanup()


# ---------------------------------------------------------------------------------------------------------
# Loading


def load_bundle(path: str | Path, check_checksums: bool = True) -> Bundle:
    """Open and validate a bundle directory or .zip. Raises BundleError naming the offending file."""
    src = Path(path)
    try:
        st = src.stat()
    except FileNotFoundError:
        hint = ""
        backups = sorted(src.parent.glob(f".{src.name}.old-*")) if src.parent.is_dir() else []
        if backups:
            hint = f" (an interrupted export left the previous bundle at {backups[-1]}; rename it back to {src})"
        raise BundleError(f"{src}: no such bundle{hint}; {REEXPORT}") from None
    except OSError as e:
        raise os_error(src, e) from e
    if stat.S_ISDIR(st.st_mode):
        return _load_dir(src, src, None, check_checksums)
    if not stat.S_ISREG(st.st_mode) or not _is_zip(src):
        raise BundleError(f"{src}: not a bundle directory nor a .zip file ({file_kind(st.st_mode)}); point at the "
                          f"folder that holds {MANIFEST}, or {REEXPORT}")
    tmp = Path(tempfile.mkdtemp(prefix="firstwords-bundle-"))
    try:
        safe_extract(src, tmp)
        bundle = _load_dir(tmp, src, None, check_checksums)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The extracted files live as long as the Bundle (or until close()).
    bundle._cleanup = weakref.finalize(bundle, shutil.rmtree, str(tmp), True)
    return bundle


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError as e:
        raise os_error(path, e) from e


def _load_dir(root: Path, source: Path, cleanup: Any, check_checksums: bool) -> Bundle:
    manifest = _read_manifest(root, source)
    where = source / MANIFEST if source.is_dir() else f"{source}:{MANIFEST}"

    def bad(msg: str) -> BundleError:
        return BundleError(f"{where}: {msg}; {REEXPORT}")

    dim = manifest.get("embedding_dim")
    if type(dim) is not int or dim <= 0:
        raise bad(f"embedding_dim must be a positive integer, got {dim!r}")
    quant = manifest.get("quantization", "none")
    if quant not in QUANTIZATION_FORMATS:
        raise bad(f"quantization {quant!r} is unknown; allowed: {', '.join(QUANTIZATION_FORMATS)}")
    opset = manifest.get("opset")
    if opset is not None and type(opset) is not int:
        raise bad(f"opset must be an integer, got {opset!r}")

    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise bad("'files' must map each file name to {\"sha256\": ..., \"bytes\": ...}")
    for name in REQUIRED_FILES:
        if name not in files:
            raise bad(f"'files' does not list {name}")
    for name, info in files.items():
        _check_plain_name(name, where)
        if (not isinstance(info, dict) or not isinstance(info.get("sha256"), str)
                or type(info.get("bytes")) is not int):
            raise bad(f"files[{name!r}] must be {{\"sha256\": hex string, \"bytes\": integer}}")
        _check_file(root / name, source, name, info, check_checksums)

    image_m, utt_m, tok_m = (_table(manifest, k, bad) for k in ("image", "utterance", "tokenizer"))
    image = ImageSpec(
        path=root / _member(image_m, "file", IMAGE_FILE, files, bad),
        input=_str(image_m, "input", "image", bad), output=_str(image_m, "output", "embedding", bad),
        input_size=_posint(image_m, "input_size", bad),
        mean=_triple(image_m, "mean", bad), std=_triple(image_m, "std", bad))
    if any(s <= 0 for s in image.std):
        raise bad(f"image.std must be positive, got {list(image.std)}")
    utterance = UtteranceSpec(
        path=root / _member(utt_m, "file", UTTERANCE_FILE, files, bad),
        input=_str(utt_m, "input", "tokens", bad), output=_str(utt_m, "output", "embedding", bad))
    try:
        rule = rule_of(tok_m.get("rule"), f"bundle {source}")
    except BundleError as e:
        raise bad(f"tokenizer.rule: {e}") from e
    tokenizer = TokenizerSpec(
        rule=rule, lowercase=bool(tok_m.get("lowercase", True)),
        strip_punctuation=bool(tok_m.get("strip_punctuation", rule == LEGACY_RULE)),
        max_tokens=_posint(tok_m, "max_tokens", bad, default=MAX_TOKENS),
        add_sos_eos=bool(tok_m.get("add_sos_eos", True)))
    specials = tok_m.get("special_tokens", SPECIAL_TOKENS)
    if specials != SPECIAL_TOKENS:
        raise bad(f"tokenizer.special_tokens must be {SPECIAL_TOKENS} (CVCL's layout), got {specials!r}")
    if not (tokenizer.lowercase and tokenizer.add_sos_eos) or tokenizer.strip_punctuation != (rule == LEGACY_RULE):
        raise bad(f"tokenizer {tok_m!r} is not a tokenisation this firstwords implements (rule {rule}: lowercase, "
                  f"<sos>/<eos>, strip_punctuation {str(rule == LEGACY_RULE).lower()})")

    vocab = Vocab.from_file(root / VOCAB_FILE, max_tokens=tokenizer.max_tokens, rule=rule)

    spatial = image_m.get("spatial")  # optional second output for localisation maps (edge.report.maps)
    extra = (spatial["output"],) if isinstance(spatial, dict) and isinstance(spatial.get("output"), str) else ()
    check_graph(image.path, source, IMAGE_FILE if image.path.name == IMAGE_FILE else image.path.name,
                image.input, ONNX_FLOAT, [None, 3, image.input_size, image.input_size], image.output, dim, extra)
    check_graph(utterance.path, source, utterance.path.name, utterance.input, ONNX_INT64, [None, None],
                 utterance.output, dim)

    parity = manifest.get("parity", {})
    if not isinstance(parity, dict):
        raise bad("parity must be an object")
    if manifest.get("parity_skipped"):
        log.warning("bundle %s was exported with the parity gate SKIPPED: its accuracy was not checked", source)
    return Bundle(path=root, source=source, manifest=manifest, embedding_dim=dim, image=image,
                  utterance=utterance, tokenizer=tokenizer, vocab=vocab, quantization=quant, opset=opset,
                  parity=parity, _cleanup=cleanup)


def _read_manifest(root: Path, source: Path) -> dict[str, Any]:
    mpath = root / MANIFEST
    where = source / MANIFEST if source.is_dir() else f"{source}:{MANIFEST}"
    if not os.path.lexists(mpath):
        try:
            os.listdir(root)  # a folder we may not list shows up here as a missing manifest
        except OSError as e:
            raise os_error(root, e) from e
        raise BundleError(f"{where}: missing — {source} is not a firstwords bundle (no {MANIFEST}); {REEXPORT}")
    data = read_small_file(mpath, source, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"{where}: not valid JSON ({e}); {REEXPORT}") from e
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: must hold a JSON object; {REEXPORT}")
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{where}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r} — this is "
                          f"not a firstwords bundle; {REEXPORT}")
    version = manifest.get("format_version")
    if type(version) is not int:
        raise BundleError(f"{where}: format_version must be an integer (this firstwords reads {FORMAT_VERSION}), "
                          f"got {type(version).__name__} {version!r}; write \"format_version\": {FORMAT_VERSION} "
                          f"without quotes if the bundle was edited by hand, or {REEXPORT}")
    if version != FORMAT_VERSION:
        what = ("made by a newer firstwords: upgrade firstwords on this device (pip install -U firstwords), or "
                if version > FORMAT_VERSION else "")
        raise BundleError(f"{where}: unknown format_version {version} (this firstwords reads version "
                          f"{FORMAT_VERSION}); {what}{REEXPORT}")
    return manifest


def _table(manifest: dict, key: str, bad) -> dict:
    t = manifest.get(key)
    if not isinstance(t, dict):
        raise bad(f"'{key}' must be an object")
    return t


def _str(t: dict, key: str, default: str, bad) -> str:
    v = t.get(key, default)
    if not isinstance(v, str) or not v:
        raise bad(f"'{key}' must be a non-empty string, got {v!r}")
    return v


def _posint(t: dict, key: str, bad, default: int | None = None) -> int:
    v = t.get(key, default)
    if type(v) is not int or v <= 0:
        raise bad(f"'{key}' must be a positive integer, got {v!r}")
    return v


def _triple(t: dict, key: str, bad) -> tuple[float, float, float]:
    v = t.get(key)
    if not (isinstance(v, list) and len(v) == 3 and all(type(x) in (int, float) for x in v)):
        raise bad(f"'{key}' must be a list of 3 numbers (one per RGB channel), got {v!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _member(t: dict, key: str, default: str, files: dict, bad) -> str:
    name = _str(t, key, default, bad)
    if name not in files:
        raise bad(f"{key} {name!r} is not listed under 'files' (so its checksum cannot be checked)")
    return name


def _check_plain_name(name: str, where: Any) -> None:
    p = PurePosixPath(name)
    if not name or name != p.name or name in (".", "..") or "\\" in name:
        raise BundleError(f"{where}: file name {name!r} must be a plain file name inside the bundle (no folders, "
                          f"no '..'); {REEXPORT}")


def _check_file(path: Path, source: Path, name: str, info: dict, check_checksum: bool) -> None:
    size = regular_file(path, source, name).st_size
    if size != info["bytes"]:
        raise BundleError(f"{source}: {name} has {size} bytes but the manifest says {info['bytes']} — the file is "
                          f"truncated or was changed; copy the bundle again or {REEXPORT}")
    if name == VOCAB_FILE and size > MAX_VOCAB_BYTES:
        raise BundleError(f"{source}: {name} is {size / 2**20:.1f} MB; a vocabulary is well under "
                          f"{MAX_VOCAB_BYTES / 2**20:g} MB — not reading it; {REEXPORT}")
    if check_checksum:
        try:
            digest = sha256_file(path)
        except OSError as e:
            raise os_error(path, e) from e
        if digest != info["sha256"].lower():
            raise BundleError(f"{source}: {name} fails its sha256 check (got {digest[:16]}…, manifest says "
                              f"{info['sha256'][:16]}…) — the file is corrupt or was altered; copy the bundle "
                              f"again or {REEXPORT}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
