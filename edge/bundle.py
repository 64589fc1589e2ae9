"""The model bundle reader and validator (the contract between export/ and edge/; see docs/CONTRACTS.md).

A bundle is a directory (or a .zip of one) holding image.onnx, utterance.onnx, vocab.json and manifest.json.
`load_bundle` refuses anything that does not match what the manifest promises: format name and version, the
size and sha256 of every file, and the ONNX graphs' input / output names, element types and shapes. Each
failure is a BundleError that names the file and says what to do.

The ONNX graph signature is read with a small protobuf walker (no `onnx` package on the device, and no
onnxruntime session is built just to validate); the big weight blobs are skipped, not parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import stat
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from firstwords.edge.errors import BundleError
from firstwords.edge.quantization import QUANTIZATION_FORMATS
from firstwords.edge.tokenize import LEGACY_RULE, MAX_TOKENS, SPECIAL_TOKENS, Vocab, rule_of

log = logging.getLogger(__name__)

FORMAT_NAME = "firstwords-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IMAGE_FILE, UTTERANCE_FILE, VOCAB_FILE = "image.onnx", "utterance.onnx", "vocab.json"
REQUIRED_FILES = (IMAGE_FILE, UTTERANCE_FILE, VOCAB_FILE)

# Zip extraction limits (against zip bombs): CVCL's fp32 ResNeXt-50 tower is ~100 MB.
MAX_MEMBER_BYTES = 1 << 30  # 1 GiB per file
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB in all
MAX_MEMBERS = 64
MAX_RATIO = 200  # uncompressed / compressed; ONNX weights barely compress, so a huge ratio is a bomb

REEXPORT = "re-export it with `firstwords export CHECKPOINT -o BUNDLE --config device_configs/<device>.toml`"

# ONNX TensorProto.DataType values we care about.
ONNX_FLOAT, ONNX_INT64 = 1, 7
_ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


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
    if src.is_dir():
        return _load_dir(src, src, None, check_checksums)
    if src.is_file():
        if not zipfile.is_zipfile(src):
            raise BundleError(f"{src}: not a bundle directory nor a .zip file; point at the folder that holds "
                              f"{MANIFEST}, or {REEXPORT}")
        tmp = Path(tempfile.mkdtemp(prefix="firstwords-bundle-"))
        try:
            _safe_extract(src, tmp)
            bundle = _load_dir(tmp, src, None, check_checksums)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # The extracted files live as long as the Bundle (or until close()).
        bundle._cleanup = weakref.finalize(bundle, shutil.rmtree, str(tmp), True)
        return bundle
    hint = ""
    backups = sorted(src.parent.glob(f".{src.name}.old-*")) if src.parent.is_dir() else []
    if backups:
        hint = f" (an interrupted export left the previous bundle at {backups[-1]}; rename it back to {src})"
    raise BundleError(f"{src}: no such bundle{hint}; {REEXPORT}")


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
    _check_graph(image.path, source, IMAGE_FILE if image.path.name == IMAGE_FILE else image.path.name,
                 image.input, ONNX_FLOAT, [None, 3, image.input_size, image.input_size], image.output, dim, extra)
    _check_graph(utterance.path, source, utterance.path.name, utterance.input, ONNX_INT64, [None, None],
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
    if not mpath.is_file():
        raise BundleError(f"{where}: missing — {source} is not a firstwords bundle (no {MANIFEST}); {REEXPORT}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{where}: not valid JSON ({e}); {REEXPORT}") from e
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: must hold a JSON object; {REEXPORT}")
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{where}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r} — this is "
                          f"not a firstwords bundle; {REEXPORT}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = type(version) is int and version > FORMAT_VERSION
        what = ("made by a newer firstwords: upgrade firstwords on this device (pip install -U firstwords), or "
                if newer else "")
        raise BundleError(f"{where}: unknown format_version {version!r} (this firstwords reads version "
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
    if not path.is_file():
        raise BundleError(f"{source}: {name} is missing; copy the whole bundle again or {REEXPORT}")
    size = path.stat().st_size
    if size != info["bytes"]:
        raise BundleError(f"{source}: {name} has {size} bytes but the manifest says {info['bytes']} — the file is "
                          f"truncated or was changed; copy the bundle again or {REEXPORT}")
    if check_checksum:
        digest = sha256_file(path)
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


# ---------------------------------------------------------------------------------------------------------
# Safe zip extraction


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged zip member can raise besides BadZipFile: zlib.error (deflate), lzma.LZMAError,
    OSError (bz2 and I/O), EOFError (truncated), NotImplementedError (unknown method), RuntimeError (encrypted),
    ValueError (e.g. a name flagged UTF-8 that is not)."""
    errors: list[type[BaseException]] = [zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
                                         RuntimeError, ValueError]
    try:
        import lzma  # optional in some Python builds
        errors.append(lzma.LZMAError)
    except ImportError:
        pass
    return tuple(errors)


_ZIP_ERRORS = _decompression_errors()


def _safe_extract(zpath: Path, dest: Path) -> None:
    """Extract only plain files with safe names (optionally under one top-level folder), within size limits."""
    try:
        zf = zipfile.ZipFile(zpath)
    except _ZIP_ERRORS as e:
        raise BundleError(f"{zpath}: cannot open the zip ({e}); copy it again or {REEXPORT}") from e
    with zf:
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
            if info.file_size > MAX_MEMBER_BYTES or info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096:
                raise BundleError(f"{zpath}: member {info.filename!r} would expand to {info.file_size} bytes from "
                                  f"{info.compress_size}; refusing a possible zip bomb")
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
                raise BundleError(f"{zpath}: member {info.filename!r} is corrupt ({type(e).__name__}: {e}); copy "
                                  f"the zip again or {REEXPORT}") from e


# ---------------------------------------------------------------------------------------------------------
# ONNX graph signature, read straight from the protobuf


@dataclass(frozen=True)
class TensorSig:
    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None  # int = fixed, str = symbolic, None = unknown; None = no shape


@dataclass(frozen=True)
class GraphSig:
    inputs: dict[str, TensorSig]
    outputs: dict[str, TensorSig]
    opset: int | None


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview):
    """Yield (field_number, wire_type, value) with value an int or a memoryview for length-delimited fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = None, pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > end:
            raise ValueError("truncated field")
        yield num, wt, val


def _value_info(buf: memoryview) -> TensorSig:
    name, elem, shape = "", 0, None
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:  # ValueInfoProto.name
            name = bytes(val).decode("utf-8", "replace")
        elif num == 2 and wt == 2:  # ValueInfoProto.type -> TypeProto
            for tn, twt, tval in _fields(val):
                if tn == 1 and twt == 2:  # TypeProto.tensor_type
                    for n2, w2, v2 in _fields(tval):
                        if n2 == 1 and w2 == 0:  # elem_type
                            elem = v2
                        elif n2 == 2 and w2 == 2:  # shape -> TensorShapeProto
                            dims: list[int | str | None] = []
                            for dn, dwt, dval in _fields(v2):
                                if dn == 1 and dwt == 2:  # dim
                                    d: int | str | None = None
                                    for n3, w3, v3 in _fields(dval):
                                        if n3 == 1 and w3 == 0:
                                            d = v3
                                        elif n3 == 2 and w3 == 2:
                                            d = bytes(v3).decode("utf-8", "replace")
                                    dims.append(d)
                            shape = tuple(dims)
    return TensorSig(name, elem, shape)


def read_graph_signature(path: str | Path) -> GraphSig:
    """Graph inputs / outputs (names, element types, shapes) and the default-domain opset of an ONNX file."""
    data = memoryview(Path(path).read_bytes())
    inputs: dict[str, TensorSig] = {}
    outputs: dict[str, TensorSig] = {}
    initializers: set[str] = set()
    opset = None
    for num, wt, val in _fields(data):
        if num == 8 and wt == 2:  # ModelProto.opset_import
            domain, version = "", None
            for n2, w2, v2 in _fields(val):
                if n2 == 1 and w2 == 2:
                    domain = bytes(v2).decode()
                elif n2 == 2 and w2 == 0:
                    version = v2
            if domain in ("", "ai.onnx"):
                opset = version
        elif num == 7 and wt == 2:  # ModelProto.graph
            for gn, gwt, gval in _fields(val):
                if gn == 11 and gwt == 2:
                    sig = _value_info(gval)
                    inputs[sig.name] = sig
                elif gn == 12 and gwt == 2:
                    sig = _value_info(gval)
                    outputs[sig.name] = sig
                elif gn == 5 and gwt == 2:  # initializer: only its name (field 8), to drop it from inputs
                    for tn, twt, tval in _fields(gval):
                        if tn == 8 and twt == 2:
                            initializers.add(bytes(tval).decode("utf-8", "replace"))
    for name in initializers:
        inputs.pop(name, None)
    return GraphSig(inputs, outputs, opset)


def _fmt_shape(shape) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check_graph(path: Path, source: Path, name: str, in_name: str, in_type: int, in_shape: list,
                 out_name: str, dim: int, extra_outputs: tuple[str, ...] = ()) -> None:
    """Input `in_name` of `in_type` with shape in_shape (None = any/dynamic), output `out_name` [N, dim] float,
    besides the optional outputs the manifest names in `extra_outputs`."""
    try:
        sig = read_graph_signature(path)
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise BundleError(f"{source}: {name} is not a readable ONNX model ({e}); {REEXPORT}") from e
    if not sig.outputs and not sig.inputs:
        raise BundleError(f"{source}: {name} holds no ONNX graph; {REEXPORT}")

    def wrong(msg: str) -> BundleError:
        return BundleError(f"{source}: {name}: {msg}; the bundle does not match this firstwords' contract — "
                           f"{REEXPORT}")

    if list(sig.inputs) != [in_name]:
        raise wrong(f"expected one input named {in_name!r}, found {list(sig.inputs)}")
    if [o for o in sig.outputs if o not in extra_outputs] != [out_name]:
        raise wrong(f"expected one output named {out_name!r}, found {list(sig.outputs)}")
    inp, out = sig.inputs[in_name], sig.outputs[out_name]
    if inp.elem_type != in_type:
        raise wrong(f"input {in_name!r} is {_ELEM_NAMES.get(inp.elem_type, inp.elem_type)}, expected "
                    f"{_ELEM_NAMES[in_type]}")
    if out.elem_type != ONNX_FLOAT:
        raise wrong(f"output {out_name!r} is {_ELEM_NAMES.get(out.elem_type, out.elem_type)}, expected float32")
    expect_in = "[" + ", ".join("N" if d is None else str(d) for d in in_shape) + "]"
    if inp.shape is None or len(inp.shape) != len(in_shape) or any(
            e is not None and isinstance(d, int) and d != e for d, e in zip(inp.shape, in_shape, strict=True)):
        raise wrong(f"input {in_name!r} has shape {_fmt_shape(inp.shape)}, expected {expect_in}")
    if isinstance(inp.shape[0], int) and inp.shape[0] != 0:
        raise wrong(f"input {in_name!r} has a fixed batch size {inp.shape[0]}; export it with a dynamic batch axis")
    if out.shape is None or len(out.shape) != 2 or (isinstance(out.shape[1], int) and out.shape[1] != dim):
        raise wrong(f"output {out_name!r} has shape {_fmt_shape(out.shape)}, expected [N, {dim}] "
                    "(embedding_dim in the manifest)")
