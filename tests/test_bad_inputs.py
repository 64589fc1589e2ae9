"""Bad inputs, generated (hypothesis): device configs with every wrong type, damaged bundle manifests / models
/ zips, audio that is NaN, silent, clipped, wrongly shaped or at odd rates, frames of the wrong shape or
dtype, garbage handed to the memory. Each is rejected with a FirstwordsError subclass that says what is wrong,
or handled; nothing else escapes, and the memory learns on afterwards with its earlier entries intact.

Transcript parsers on arbitrary text and bytes: tests/test_transcripts.py
(test_parsers_raise_only_data_error); here only the file-loading path on arbitrary bytes.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import tomllib
import wave
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import BundleError, ConfigError, DataError, FirstwordsError, InputError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------ transcripts


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".srt", ".vtt", ".csv"]))
def test_transcript_files_of_arbitrary_bytes_raise_only_data_error(data, suffix):
    from firstwords.edge.transcripts import load_transcript

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"t{suffix}"
        p.write_bytes(data)
        try:
            out = load_transcript(p)
        except DataError as e:
            assert str(p.name) in str(e) or "line" in str(e) or str(e)
            return
        assert all(0 <= u.start <= u.end and u.text for u in out)


# ------------------------------------------------------------------------------------------ device configs

BASE_CONFIG = tomllib.loads((ROOT / "device_configs" / "laptop.toml").read_text())


def _config_fields():
    from firstwords.edge.config import _TABLES

    out = []
    for table, cls in _TABLES.items():
        for f in fields(cls):
            out.append((table, f.name, {"int": int, "float": float, "str": str}[f.type]))
    return out


CONFIG_FIELDS = _config_fields()
any_value = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=6),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["0", "1.5", "energy", "silero", "none", "dynamic", "qdq_u8s8", "pocketsphinx", ""]))


def _expected_ok(table: str, key: str, typ: type, v) -> bool | None:
    """True if a value is valid, False if it must be refused."""
    from firstwords.edge.config import _CHOICES, _RANGES, maximum

    top = maximum(table, key)
    if typ is int:
        return type(v) is int and 0 < v <= (top if top is not None else v)
    if typ is float:
        if (table, key) in _RANGES:
            low, high = _RANGES[(table, key)]
            return type(v) in (int, float) and math.isfinite(v) and low <= v <= high
        return type(v) in (int, float) and math.isfinite(v) and 0 < v <= (top if top is not None else v)
    if not isinstance(v, str):
        return False
    choices = _CHOICES.get((table, key))
    return v in choices if choices else True


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(CONFIG_FIELDS), value=any_value)
def test_every_config_key_with_every_wrong_type_is_a_config_error_naming_it(field, value):
    from firstwords.edge.config import parse_device_config

    table, key, typ = field
    data = json.loads(json.dumps(BASE_CONFIG))
    data[table][key] = value
    ok = _expected_ok(table, key, typ, value)
    try:
        cfg = parse_device_config(data, "dev.toml")
    except ConfigError as e:
        assert ok is not True, f"valid value refused: [{table}] {key} = {value!r}: {e}"
        assert f"[{table}] {key}" in str(e) and "dev.toml" in str(e)
        return
    assert ok is not False, f"bad value accepted: [{table}] {key} = {value!r}"
    got = getattr(getattr(cfg, table), key)
    assert got == value or (typ is float and got == float(value))


@FAST
@given(key=st.sampled_from(["name", "description", "camera", "model", "audio", "pairing", "memory",
                            "budget"]),
       value=any_value)
def test_top_level_keys_and_tables_of_wrong_type(key, value):
    from firstwords.edge.config import parse_device_config

    data = json.loads(json.dumps(BASE_CONFIG))
    data[key] = value
    valid = (isinstance(value, str) and value) if key in ("name", "description") else False
    try:
        parse_device_config(data, "dev.toml")
    except ConfigError as e:
        assert not valid and "dev.toml" in str(e)
        return
    assert valid


@FAST
@given(extra=st.text(min_size=1, max_size=10), table=st.sampled_from([None, "camera", "memory"]),
       drop=st.booleans())
def test_unknown_and_missing_keys_are_named(extra, table, drop):
    from firstwords.edge.config import parse_device_config

    data = json.loads(json.dumps(BASE_CONFIG))
    target = data if table is None else data[table]
    if drop:
        victim = min(target)
        del target[victim]
        with pytest.raises(ConfigError, match="missing key"):
            parse_device_config(data, "dev.toml")
    else:
        assume(extra not in target)
        target[extra] = 1
        with pytest.raises(ConfigError, match="unknown key"):
            parse_device_config(data, "dev.toml")


@FAST
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_config_file_of_arbitrary_bytes_is_a_config_error(data):
    from firstwords.edge.config import load_device_config

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.toml"
        p.write_bytes(data)
        with pytest.raises(ConfigError, match="x.toml"):
            load_device_config(p)


@pytest.mark.parametrize("table, key", [("camera", "fps"), ("pairing", "fps"), ("budget", "ram_mb")])
@pytest.mark.parametrize("text", ["inf", "+inf", "nan", "-inf"])
def test_infinite_numbers_are_refused(table, key, text, tmp_path):
    """Written as TOML (where `inf` / `nan` are valid floats), read through the real loader."""
    from firstwords.edge.config import load_device_config

    src = (ROOT / "device_configs" / "laptop.toml").read_text()
    data = tomllib.loads(src)
    assert isinstance(data[table][key], (int, float))
    lines, section, done = [], None, False
    for line in src.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip()
        if section == table and not done and stripped.split("=")[0].strip() == key:
            line, done = f"{key} = {text}", True
        lines.append(line)
    assert done
    p = tmp_path / "dev.toml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"dev.toml.*\[{table}\] {key}.*finite"):
        load_device_config(p)


# ------------------------------------------------------------------------------------------ bundles

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from firstwords.export.tiny_dual import make_bundle

    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("bad") / "bundle")


@pytest.fixture(scope="module")
def workdir(built, tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutated")


def _fresh_copy(built: Path, root: Path) -> Path:
    d = Path(tempfile.mkdtemp(dir=root))
    for p in built.iterdir():
        shutil.copyfile(p, d / p.name)
    return d


def _rehash(d: Path, name: str) -> None:
    from firstwords.edge.bundle import sha256_file

    m = json.loads((d / "manifest.json").read_text())
    m["files"][name] = {"sha256": sha256_file(d / name), "bytes": (d / name).stat().st_size}
    (d / "manifest.json").write_text(json.dumps(m))


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
              st.floats(allow_nan=False), st.text(max_size=10),
              st.sampled_from([-1, 0, 2**63, 10**30, "../image.onnx", "/etc/passwd", "..", "", "image.onnx",
                               "a/b.onnx", "C:\\x", "vocab.json", "0" * 64, 1.5, [3, 2, 1],
                               [0.5, 0.5, 0.5]])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
MANIFEST_PATHS = [("format",), ("format_version",), ("embedding_dim",), ("quantization",), ("opset",),
                  ("image",), ("image", "input_size"), ("image", "mean"), ("image", "std"), ("image", "file"),
                  ("image", "input"), ("image", "output"), ("utterance",), ("utterance", "file"),
                  ("utterance", "input"), ("tokenizer",), ("tokenizer", "max_tokens"),
                  ("tokenizer", "special_tokens"), ("tokenizer", "lowercase"), ("files",),
                  ("files", "image.onnx"), ("files", "image.onnx", "bytes"),
                  ("files", "image.onnx", "sha256"), ("files", "vocab.json"), ("parity",),
                  ("parity_skipped",)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(MANIFEST_PATHS), json_value), min_size=1, max_size=3),
       extra_file=st.one_of(st.none(), st.sampled_from(["../evil.onnx", "/abs.onnx", "sub/x.onnx", ".", "..",
                                                        "a\\b", ""]), st.text(max_size=10)))
def test_mutated_manifests_are_refused_with_bundle_error_or_still_consistent(built, workdir, edits,
                                                                             extra_file):
    from firstwords.edge.bundle import load_bundle

    d = _fresh_copy(built, workdir)
    try:
        m = json.loads((d / "manifest.json").read_text())
        for path, value in edits:
            node = m
            for k in path[:-1]:
                node = node.setdefault(k, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node[path[-1]] = value
        if extra_file is not None and isinstance(m.get("files"), dict):
            m["files"][extra_file] = {"sha256": "0" * 64, "bytes": 1}
        (d / "manifest.json").write_text(json.dumps(m))
        try:
            b = load_bundle(d)
        except BundleError as e:
            assert "manifest" in str(e) or ".onnx" in str(e) or "vocab" in str(e) or str(d) in str(e), str(e)
            return
        # accepted: then it is still a consistent bundle, every file inside the bundle folder
        assert b.image.path.parent == d and b.utterance.path.parent == d
        assert b.embedding_dim > 0 and b.image.input_size > 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


@FAST
@given(data=st.binary(max_size=200))
def test_manifest_of_arbitrary_bytes(built, workdir, data):
    from firstwords.edge.bundle import load_bundle

    d = _fresh_copy(built, workdir)
    try:
        (d / "manifest.json").write_bytes(data)
        with pytest.raises(BundleError, match="manifest.json"):
            load_bundle(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["image.onnx", "utterance.onnx", "vocab.json"]),
       cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       truncate=st.one_of(st.none(), st.integers(0, 10**6)))
def test_damaged_files_with_matching_checksums_are_refused_cleanly(built, workdir, name, cuts, truncate):
    """The checksum was recomputed, so the damage reaches the ONNX / vocabulary readers and onnxruntime:
    still only BundleError (the file named), and a model that loads still has the contract's shapes."""
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder

    d = _fresh_copy(built, workdir)
    try:
        data = bytearray((d / name).read_bytes())
        for pos, byte in cuts:
            data[pos % len(data)] = byte
        if truncate is not None:
            data = data[:truncate % (len(data) + 1)]
        (d / name).write_bytes(bytes(data))
        _rehash(d, name)
        try:
            enc = Encoder(load_bundle(d), threads=1)
        except BundleError as e:
            assert name in str(e) or "vocab" in str(e), str(e)
            return
        out = enc.encode_image([np.zeros((20, 20, 3), np.uint8)])
        assert out.shape == (1, enc.dim)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _corrupt_zip_load(built: Path, workdir: Path, flips, compression: int) -> None:
    from firstwords.edge.bundle import load_bundle

    z = Path(tempfile.mkstemp(suffix=".zip", dir=workdir)[1])
    try:
        with zipfile.ZipFile(z, "w", compression) as zf:
            for p in sorted(built.iterdir()):
                zf.write(p, p.name)
        data = bytearray(z.read_bytes())
        for pos, byte in flips:
            data[pos % len(data)] = byte
        z.write_bytes(bytes(data))
        try:
            b = load_bundle(z)
        except BundleError as e:
            assert z.name in str(e), str(e)  # names the file
            return
        b.close()
    finally:
        z.unlink(missing_ok=True)


flip_lists = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)


@FAST
@given(flips=flip_lists)
def test_corrupted_stored_zip_bundles_raise_only_bundle_error(built, workdir, flips):
    _corrupt_zip_load(built, workdir, flips, zipfile.ZIP_STORED)


@FAST
@example(flips=[(40, 0)])  # the first member's deflate stream damaged: found by hypothesis
@given(flips=flip_lists)
def test_corrupted_deflated_zip_bundles_raise_only_bundle_error(built, workdir, flips):
    _corrupt_zip_load(built, workdir, flips, zipfile.ZIP_DEFLATED)


def test_zip_member_without_a_name_is_a_bundle_error(built, tmp_path):
    from firstwords.edge.bundle import load_bundle

    z = tmp_path / "noname.zip"  # hypothesis found one: a flipped bit in the central directory (IndexError)
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(built.iterdir()):
            zf.write(p, p.name)
        zf.writestr(zipfile.ZipInfo(""), b"x")
    with pytest.raises(BundleError, match="no name"):
        load_bundle(z)


def test_zip_with_too_many_members_or_a_lying_header_is_refused(built, tmp_path):
    from firstwords.edge.bundle import load_bundle

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for p in sorted(built.iterdir()):
            zf.write(p, p.name)
        for i in range(70):
            zf.writestr(f"pad{i}.txt", "x")
    with pytest.raises(BundleError, match="holds .* files"):
        load_bundle(many)
    # a stored member whose header claims fewer bytes than it holds: the reader must not trust the header
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(built.iterdir()):
            zf.write(p, p.name)
    data = bytearray(liar.read_bytes())
    real = (built / "image.onnx").stat().st_size
    fake = (real // 2).to_bytes(4, "little")
    # patch the uncompressed size in the central directory entry of image.onnx
    i = 0
    while True:
        i = data.find(b"PK\x01\x02", i)
        if i < 0:
            break
        n = int.from_bytes(data[i + 28:i + 30], "little")
        if data[i + 46:i + 46 + n] == b"image.onnx":
            data[i + 24:i + 28] = fake
        i += 4
    liar.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        load_bundle(liar)


# ------------------------------------------------------------------------------------------ audio

AUDIO_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8, np.bool_,
                                np.complex64])


@st.composite
def audio_blocks(draw):
    dtype = draw(AUDIO_DTYPES)
    shape = draw(st.sampled_from([(0,), (1,), (511,), (512,), (1600,), (800, 1), (400, 2), (2, 3, 4), ()]))
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(width=16 if dtype == np.float16 else 32, allow_nan=True, allow_infinity=True)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), audio_blocks()), max_size=4))
def test_vad_takes_any_block_or_refuses_it_with_input_error_and_carries_on(blocks):
    from firstwords.edge.vad import EnergyVAD

    vad = EnergyVAD()
    t_next = 0.0
    for t, x in blocks:
        try:
            segs = vad.feed(t, x)
        except InputError as e:
            assert "VAD input" in str(e)
            continue
        for s in segs:
            assert s.end >= s.start and np.isfinite(s.audio).all()
        t_next = t + len(np.ravel(x)) / 16000
    # afterwards a clean stream still works: silence, a loud tone, silence -> one utterance
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    sig = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(16000, np.float32)])
    vad.flush()
    segs = vad.feed(t_next + 100.0, sig) + vad.flush()
    assert len(segs) == 1


@pytest.mark.parametrize("kind", ["nan", "inf", "silence", "clipped", "empty", "int16", "stereo"])
def test_named_audio_cases_into_both_vads(kind):
    from firstwords.edge.vad import make_vad

    n = 16000
    x = {"nan": np.full(n, np.nan, np.float32), "inf": np.full(n, np.inf, np.float32),
         "silence": np.zeros(n, np.float32),
         "clipped": np.sign(np.sin(np.arange(n) / 5)).astype(np.float32) * 4,
         "empty": np.zeros(0, np.float32), "int16": np.zeros(n, np.int16),
         "stereo": np.zeros((n, 2), np.float32)}[kind]
    names = ["energy"]
    try:
        make_vad("silero")
        names.append("silero")
    except FirstwordsError:
        pass
    for name in names:
        vad = make_vad(name)
        if kind in ("nan", "inf", "int16", "stereo"):
            with pytest.raises(InputError, match="VAD input"):
                vad.feed(0.0, x)
        else:
            segs = vad.feed(0.0, x) + vad.flush()
            assert kind == "clipped" or segs == []


def _wav(path: Path, rate: int, width: int, channels: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(rng.integers(0, 256, frames * channels * width, dtype=np.uint8).tobytes())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 12345]),
       width=st.sampled_from([1, 2, 3, 4]), channels=st.sampled_from([1, 2, 3]),
       frames=st.integers(0, 5000))
def test_wav_files_at_any_common_rate_width_and_channels_give_clean_16k_blocks(rate, width, channels, frames):
    from firstwords.edge.hear import AudioFileSource

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.wav"
        _wav(p, rate, width, channels, frames)
        src = AudioFileSource(p)
        blocks = list(src)
    total = sum(len(b.samples) for b in blocks)
    assert total == math.ceil(frames * 16000 / rate) if rate != 16000 else total == frames
    for b in blocks:
        assert b.samples.dtype == np.float32 and np.isfinite(b.samples).all()
        # band-limited interpolation of full-scale noise overshoots
        assert np.abs(b.samples).max(initial=0) < 4
    assert [b.t for b in blocks] == sorted(b.t for b in blocks)


@FAST
@given(data=st.binary(max_size=300), header=st.booleans())
def test_audio_file_of_arbitrary_bytes_is_a_data_error(data, header):
    from firstwords.edge.hear import AudioFileSource

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.wav"
        p.write_bytes((b"RIFF\x24\x00\x00\x00WAVEfmt " if header else b"") + data)
        try:
            src = AudioFileSource(p)
            for b in src:
                assert np.isfinite(b.samples).all()
        except (DataError, FirstwordsError):
            pass


ODD_RATE = r"""
import resource, sys, wave
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a Pi's 1 GB
from firstwords.edge.errors import DataError
from firstwords.edge.hear import AudioFileSource
p = sys.argv[1]
with wave.open(p, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(1_000_003); w.writeframes(bytes(2000))
try:
    list(AudioFileSource(p))
    print("accepted")
except DataError as e:
    print("DataError", e)
"""


def test_absurd_sample_rate_is_refused(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", ODD_RATE, str(tmp_path / "odd.wav")], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          check=False)
    assert proc.stdout.startswith("DataError") and "rate" in proc.stdout, (proc.stdout + proc.stderr)[-500:]


# ------------------------------------------------------------------------------------------ images

IMG_DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.float32, np.float64, np.bool_])


@st.composite
def frames_arrays(draw):
    dtype = draw(IMG_DTYPES) if draw(st.booleans()) else np.uint8
    ndim = draw(st.integers(1, 5))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=ndim, max_size=ndim)))
    if draw(st.booleans()) and ndim >= 3:
        shape = (*shape[:-1], 3)
    return draw(hnp.arrays(dtype, shape))


def _valid_frame(f) -> bool:
    return (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim in (2, 3) and f.shape[0] >= 1
            and f.shape[1] >= 1 and (f.ndim == 2 or f.shape[2] == 3))


@pytest.fixture(scope="module")
def encoder(built):
    from firstwords.edge.encode import Encoder

    return Encoder(built, threads=1)


def _expected_count(x) -> int | None:
    """How many embeddings encode_image must return, or None if it must raise InputError."""
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            items = list(x)
        elif x.ndim == 3:
            items = [x]
        else:  # 1-D, 2-D (rows would be taken as frames), 5-D
            return None
    else:
        items = x
    return len(items) if items and all(_valid_frame(f) for f in items) else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.one_of(frames_arrays(), st.lists(frames_arrays(), min_size=0, max_size=3)))
def test_frames_of_any_shape_or_dtype_encode_or_raise_input_error(encoder, x):
    want = _expected_count(x)
    try:
        out = encoder.encode_image(x)
    except InputError as e:
        assert want is None, f"valid frames refused: {e}"
        assert "frame" in str(e)
        return
    except Exception as e:
        shape = getattr(x, "shape", None) or [getattr(f, "shape", None) for f in x]
        raise AssertionError(f"{type(e).__name__} escaped for frames of shape {shape}: {e}") from e
    assert want is not None, f"invalid frames accepted: {getattr(x, 'shape', None)}"
    assert out.shape == (want, encoder.dim) and np.isfinite(out).all()


@pytest.mark.parametrize("x", [None, 5, 2.5, np.array(3, np.uint8), "frame.jpg", b"\xff\xd8"],
                         ids=["None", "int", "float", "0-d", "str", "bytes"])
def test_non_sequences_of_frames_are_input_errors(encoder, x):
    from firstwords.edge.preprocess import prepare_images

    with pytest.raises(InputError, match="frames must be"):
        encoder.encode_image(x)
    with pytest.raises(InputError, match="frames must be"):
        prepare_images(x, 32)


def test_frames_from_a_generator_are_taken(encoder):
    frames = (np.full((10, 12, 3), v, np.uint8) for v in (0, 128))
    assert encoder.encode_image(frames).shape == (2, encoder.dim)


# ------------------------------------------------------------------------------------------ the memory

word_like = st.one_of(st.text(max_size=12),
                      st.sampled_from(["ball", "the", " ball", "two words", "", "x" * 150]),
                      st.integers(), st.none(), st.binary(max_size=4))
garbage_frames = st.one_of(
    hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.integers(15, 17)),
               elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    st.sampled_from(["frames", None, [[1.0] * 16], np.zeros((2, 16), np.float32),
                     np.ones((3, 16), np.float64)]))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attempts=st.lists(st.tuples(st.one_of(st.lists(word_like, max_size=4), word_like), garbage_frames,
                                   st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                             st.text(max_size=3)),
                                   st.one_of(st.text(max_size=20), st.integers(), st.just("y" * 10_001))),
                         min_size=1, max_size=6))
def test_memory_refuses_garbage_without_damage_and_learns_on(attempts):
    from firstwords.edge.memory import AssociativeMemory

    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, 16)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.sqlite"
        learned = 1
        with AssociativeMemory(path, 16) as mem:
            mem.learn(["apple", "the"], good, 0.0, "the apple")
            for words, frames, t, text in attempts:
                before = (mem.stats()["episodes"], {w: v.copy() for w, v in mem.word_vectors().items()})
                try:
                    mem.learn(words, frames, t, text)
                    learned += 1
                except InputError as e:
                    assert str(e)
                    assert mem.stats()["episodes"] == before[0]
                    after = mem.word_vectors()
                    assert after.keys() == before[1].keys()
                    for w, v in before[1].items():
                        np.testing.assert_array_equal(v, after[w])
            mem.learn(["banana"], good, 99.0, "banana")  # learns on
            learned += 1
        with AssociativeMemory(path, 16) as mem:  # reopens: quick_check ok, nothing lost
            assert mem.stats()["episodes"] == learned
            assert {"apple", "the", "banana"} <= set(mem.words())


# ------------------------------------------------------------------------------------------ through the loop

def run_or_hang(learner, timeout: float = 30.0):
    """learner.run() in a thread; AssertionError if it has not returned after `timeout` s (then the stuck
    pairing thread, which is not a daemon, is released so that the test process can still exit)."""
    import threading

    box = {}
    th = threading.Thread(target=lambda: box.setdefault("rep", learner.run(install_signal_handlers=False)),
                          daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        learner.stop()
        learner._events.put(("frames_end",))  # cleanup only: unblock the pairing thread of a hung loop
        learner._events.put(("utterances_end",))
        th.join(10)
        raise AssertionError(f"the learner loop hung: run() had not returned after {timeout:.0f} s "
                             f"(errors: {learner.stats.errors})")
    return box["rep"]


@pytest.mark.parametrize("bad", ["rgba", "float", "grey-3d", "none", "nan-time"])
def test_one_bad_frame_does_not_end_the_session(encoder, tmp_path, bad):
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.pair import Utterance

    good = np.full((24, 24, 3), 90, np.uint8)
    odd = {"rgba": np.zeros((24, 24, 4), np.uint8), "float": np.zeros((24, 24, 3), np.float32),
           "grey-3d": np.zeros((24, 24, 1), np.uint8), "none": None, "nan-time": good}[bad]
    frames = [(i / 5, good) for i in range(60)]
    frames[7] = (math.nan, odd) if bad == "nan-time" else (7 / 5, odd)
    frames[33] = (math.nan, odd) if bad == "nan-time" else (33 / 5, odd)  # a second one: counted, logged once
    utts = [Utterance(float(i), i + 0.5, "look a ball") for i in range(0, 12, 2)]
    with AssociativeMemory(tmp_path / "m.sqlite", encoder.dim) as mem:
        lr = Learner(encoder, mem, frames, transcript=utts, options=LearnerOptions(realtime=False))
        rep = run_or_hang(lr)
    assert rep.stats["errors"] == [] and rep.stats["utterances"] == len(utts)
    assert rep.stats["frames_rejected"] == 2 and rep.stats["frames_encoded"] == 58
    assert len(lr._warned) == 1  # one kind of problem, logged once


def test_one_odd_utterance_does_not_end_the_session(encoder, tmp_path):
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.pair import Utterance

    frames = [(i / 5, np.full((24, 24, 3), 40 * (i % 5), np.uint8)) for i in range(80)]
    utts = [Utterance(float(i), i + 0.5, "look a ball") for i in range(0, 16, 2)]
    # an ASR / transcript hiccup: the long "word" is dropped
    utts[2] = Utterance(4.0, 4.5, "see " + "z" * 150)
    utts[3] = Utterance(6.0, 6.5, "ball " * 2500)  # 12,500 characters: the text is clipped
    # more distinct words than the memory takes
    utts[4] = Utterance(8.0, 8.5, " ".join(f"w{i}" for i in range(300)))
    with AssociativeMemory(tmp_path / "m.sqlite", encoder.dim) as mem:
        rep = run_or_hang(Learner(encoder, mem, frames, transcript=utts,
                                  options=LearnerOptions(realtime=False)))
        texts = [e.text for e in mem.find("ball", k=20)]
    s = rep.stats
    assert s["errors"] == [] and s["utterances"] == len(utts) - 1
    assert s["words_rejected"] == 1 and s["utterances_rejected"] == 1
    assert any(len(t) == 10_000 for t in texts)  # the long text was kept, clipped
