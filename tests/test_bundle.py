"""The bundle writer and reader: a valid bundle loads; every kind of damage is refused naming the file."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from firstwords.edge.bundle import FORMAT_VERSION, load_bundle, read_graph_signature
from firstwords.edge.errors import BundleError

pytest.importorskip("torch")
from firstwords.export.tiny_dual import DIM, SIZE, VOCAB, make_bundle, manifest_fields, tiny_model


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture
def bundle_dir(built, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(built, dst)
    return dst


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m))


def test_valid_bundle_loads_with_contract_fields(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.embedding_dim == DIM
    assert b.image.input_size == SIZE and b.image.input == "image" and b.image.output == "embedding"
    assert b.utterance.input == "tokens"
    assert b.vocab.ids == VOCAB
    assert b.quantization == "none"
    m = _manifest(bundle_dir)
    assert m["format"] == "firstwords-bundle" and m["format_version"] == FORMAT_VERSION
    assert set(m["files"]) == {"image.onnx", "utterance.onnx", "vocab.json"}
    assert m["tokenizer"]["special_tokens"] == {"<pad>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 3}
    sig = read_graph_signature(bundle_dir / "image.onnx")
    assert sig.inputs["image"].shape == ("batch", 3, SIZE, SIZE)
    assert sig.outputs["embedding"].shape == ("batch", DIM)


def test_missing_file_is_named(bundle_dir):
    (bundle_dir / "utterance.onnx").unlink()
    with pytest.raises(BundleError, match=r"utterance\.onnx is missing.*firstwords export"):
        load_bundle(bundle_dir)


def test_truncated_onnx_is_named(bundle_dir):
    p = bundle_dir / "image.onnx"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"image\.onnx has \d+ bytes but the manifest says"):
        load_bundle(bundle_dir)


def test_altered_onnx_fails_checksum(bundle_dir):
    p = bundle_dir / "image.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped in the weights
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"image\.onnx fails its sha256 check"):
        load_bundle(bundle_dir)


def test_unknown_format_version(bundle_dir):
    m = _manifest(bundle_dir)
    m["format_version"] = FORMAT_VERSION + 1
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=r"manifest\.json: unknown format_version 2.*newer firstwords"):
        load_bundle(bundle_dir)


def test_not_a_firstwords_bundle(bundle_dir):
    m = _manifest(bundle_dir)
    m["format"] = "something-else"
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match="not a firstwords bundle"):
        load_bundle(bundle_dir)


def test_bad_manifest_json(bundle_dir):
    (bundle_dir / "manifest.json").write_text('{"format": "firstwords-bundle",')
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        load_bundle(bundle_dir)


def test_missing_manifest(bundle_dir):
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(bundle_dir)


def test_wrong_embedding_dim_is_a_shape_error(bundle_dir):
    m = _manifest(bundle_dir)
    m["embedding_dim"] = DIM * 2
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=rf"image\.onnx: output 'embedding' has shape \[batch, {DIM}\], "
                                          rf"expected \[N, {DIM * 2}\]"):
        load_bundle(bundle_dir)


def test_wrong_input_size_is_a_shape_error(bundle_dir):
    m = _manifest(bundle_dir)
    m["image"]["input_size"] = SIZE * 2
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=r"image\.onnx: input 'image' has shape .*expected \[N, 3, 64, 64\]"):
        load_bundle(bundle_dir)


def test_towers_swapped_is_refused(bundle_dir):
    """An image graph where the utterance graph should be: wrong input name / type, named by file."""
    shutil.copyfile(bundle_dir / "image.onnx", bundle_dir / "utterance.onnx")
    m = _manifest(bundle_dir)
    m["files"]["utterance.onnx"] = m["files"]["image.onnx"]
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=r"utterance\.onnx: expected one input named 'tokens'"):
        load_bundle(bundle_dir)


def test_writer_refuses_a_bundle_edge_would_refuse(bundle_dir, tmp_path):
    from firstwords.export.bundle import write_bundle

    with pytest.raises(BundleError, match=r"utterance\.onnx: expected one input named 'tokens'"):
        write_bundle(tmp_path / "bad", bundle_dir / "image.onnx", bundle_dir / "image.onnx", VOCAB,
                     manifest_fields())
    assert not (tmp_path / "bad").exists()
    assert not list(tmp_path.glob(".bad.tmp-*"))  # no debris


def test_manifest_path_traversal_refused(bundle_dir):
    m = _manifest(bundle_dir)
    m["files"]["../evil.onnx"] = {"sha256": "0" * 64, "bytes": 1}
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match="plain file name"):
        load_bundle(bundle_dir)


def test_zip_bundle_round_trip(built, tmp_path):
    from firstwords.export.bundle import write_bundle

    b = load_bundle(built)
    z = write_bundle(tmp_path / "bundle.zip", b.image.path, b.utterance.path, b.vocab, manifest_fields())
    zb = load_bundle(z)
    try:
        assert zb.embedding_dim == DIM and zb.path != z and zb.path.is_dir()
        assert (zb.path / "image.onnx").read_bytes() == (built / "image.onnx").read_bytes()
    finally:
        zb.close()
    assert not zb.path.exists()


def test_zip_of_a_folder_loads(built, tmp_path):
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(built.iterdir()):
            zf.write(p, f"mybundle/{p.name}")
    zb = load_bundle(z)
    assert zb.embedding_dim == DIM
    zb.close()


@pytest.mark.parametrize("evil", ["../image.onnx", "/etc/image.onnx", "a/b/image.onnx", "..\\image.onnx"])
def test_zip_path_traversal_refused(built, tmp_path, evil):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(built.iterdir()):
            zf.writestr(zipfile.ZipInfo(p.name if p.name != "image.onnx" else evil), p.read_bytes())
    with pytest.raises(BundleError, match="unsafe path"):
        load_bundle(z)
    assert not (tmp_path.parent / "image.onnx").exists()


def test_zip_bomb_refused(built, tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(built.iterdir()):
            zf.write(p, p.name)
        zf.writestr("padding.bin", b"\0" * (20 << 20))  # 20 MB of zeros compresses ~1000:1
    with pytest.raises(BundleError, match="zip bomb"):
        load_bundle(z)


def test_not_a_bundle_path(tmp_path):
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nope")
    f = tmp_path / "x.txt"
    f.write_text("hello")
    with pytest.raises(BundleError, match="not a bundle directory nor a .zip"):
        load_bundle(f)


def test_atomic_replace_keeps_old_bundle_on_failure(built, tmp_path):
    """A failed export (here: invalid towers) leaves the previous bundle in place, byte for byte."""
    from firstwords.export.bundle import write_bundle

    out = tmp_path / "bundle"
    shutil.copytree(built, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(BundleError):
        write_bundle(out, built / "image.onnx", built / "image.onnx", VOCAB, manifest_fields())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_bundle(out)


def test_replace_existing_bundle_and_recover_interrupted_swap(built, tmp_path):
    from firstwords.export.bundle import write_bundle

    out = tmp_path / "bundle"
    shutil.copytree(built, out)
    # Simulate a power cut between the two renames of a swap: the old bundle sits at .bundle.old-*.
    out.rename(tmp_path / ".bundle.old-123")
    with pytest.raises(BundleError, match=r"interrupted export left the previous bundle at .*\.bundle\.old-123"):
        load_bundle(out)
    write_bundle(out, built / "image.onnx", built / "utterance.onnx", VOCAB, manifest_fields(training_data="v2"))
    assert load_bundle(out).training_data == "v2"
    assert not list(tmp_path.glob(".bundle.*"))


def test_writer_refuses_to_replace_unrelated_folder(built, tmp_path):
    from firstwords.export.bundle import write_bundle

    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(BundleError, match="not a firstwords bundle; refusing to replace"):
        write_bundle(out, built / "image.onnx", built / "utterance.onnx", VOCAB, manifest_fields())
    assert (out / "holiday.jpg").exists()


def test_same_model_gives_byte_identical_bundle(tmp_path):
    a = make_bundle(tmp_path / "a", seed=3)
    b = make_bundle(tmp_path / "b", seed=3)
    for name in ("image.onnx", "utterance.onnx", "vocab.json", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = make_bundle(tmp_path / "c", seed=4)
    assert (a / "image.onnx").read_bytes() != (c / "image.onnx").read_bytes()


def test_tiny_model_is_what_tests_assume():
    import torch

    m = tiny_model()
    e = m.encode_image(torch.zeros(1, 3, SIZE, SIZE))
    assert e.shape == (1, DIM)


# ------------------------------------------------------------------ files that are not what they claim (#14)

def _load_within(d: Path, seconds: float = 20.0):
    """load_bundle(d) in a thread: its error (or bundle), and whether it returned within `seconds` (a FIFO read
    would block forever)."""
    import threading

    box: dict = {}

    def go():
        try:
            box["result"] = load_bundle(d)
        except BaseException as e:  # noqa: BLE001  (handed to the test)
            box["result"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    return box.get("result"), not t.is_alive()


@pytest.mark.parametrize("kind", ["dev-zero-link", "fifo", "folder"])
@pytest.mark.parametrize("name", ["vocab.json", "manifest.json", "image.onnx"])
def test_a_bundle_file_that_is_not_a_regular_file_is_named_as_such_without_blocking(bundle_dir, name, kind):
    import os

    target = bundle_dir / name
    target.unlink()
    if kind == "dev-zero-link":
        target.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    err, returned = _load_within(bundle_dir)
    assert returned, f"load_bundle blocked on {name} as a {kind}"
    assert isinstance(err, BundleError), err
    what = {"dev-zero-link": "a character device (a link to /dev/zero)", "fifo": "a FIFO", "folder": "a folder"}
    assert f"{name} is not a regular file: it is {what[kind]}" in str(err), str(err)
    assert "missing" not in str(err)


def test_a_bundle_path_that_is_a_fifo_is_named_as_such(tmp_path):
    import os

    os.mkfifo(tmp_path / "bundle")
    err, returned = _load_within(tmp_path / "bundle")
    assert returned and isinstance(err, BundleError) and "a FIFO" in str(err), err


def test_a_huge_manifest_is_refused_before_it_is_parsed(bundle_dir):
    """A 300 MB manifest (an unknown key padded out) was parsed with 657 MB RSS; now its size is checked first."""
    import subprocess
    import sys

    text = json.dumps(_manifest(bundle_dir))
    with (bundle_dir / "manifest.json").open("w") as f:  # valid JSON, written in pieces
        f.write(text[:-1] + ', "padding": "')
        for _ in range(300):
            f.write("x" * (1 << 20))
        f.write('"}')
    code = ("import sys\nfrom firstwords.edge.bundle import load_bundle\nfrom firstwords.edge.errors import "
            "BundleError\ntry:\n    load_bundle(sys.argv[1])\nexcept BundleError as e:\n    print(e)\n"
            "print(next(int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code, str(bundle_dir)], capture_output=True, text=True, timeout=120,
                         check=True).stdout.splitlines()
    assert "manifest.json is 300.0 MB" in out[0] and "not reading it" in out[0], out
    assert int(out[-1]) < 150, f"peak RSS {out[-1]} MB: the manifest was read"


def test_a_huge_vocabulary_is_refused_before_it_is_read(bundle_dir):
    from firstwords.edge.bundle import MAX_VOCAB_BYTES

    vocab = bundle_dir / "vocab.json"
    with vocab.open("r+b") as f:  # sparse: no disk used, and the size the manifest promises
        f.truncate(MAX_VOCAB_BYTES + 1)
    m = _manifest(bundle_dir)
    m["files"]["vocab.json"]["bytes"] = MAX_VOCAB_BYTES + 1
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=r"vocab\.json is 16\.0 MB.*not reading it"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("version", ["1", 1.0, None, [1], True])
def test_format_version_of_another_type_says_it_must_be_an_integer(bundle_dir, version):
    m = _manifest(bundle_dir)
    m["format_version"] = version
    _write_manifest(bundle_dir, m)
    with pytest.raises(BundleError, match=r"format_version must be an integer \(this firstwords reads 1\), got "):
        load_bundle(bundle_dir)


def test_a_bundle_this_user_may_not_read_is_a_clear_error(bundle_dir):
    """chmod 000 on the bundle folder used to give a raw PermissionError. Root reads anything, so as root the load
    runs without the capabilities that let it (setpriv drops CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH)."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom firstwords.edge.bundle import load_bundle\nfrom firstwords.edge.errors import "
            "BundleError\ntry:\n    load_bundle(sys.argv[1])\nexcept BundleError as e:\n    print('BundleError:', e)\n")
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): root reads any folder")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    bundle_dir.chmod(0)
    try:
        out = subprocess.run([*prefix, sys.executable, "-c", code, str(bundle_dir)], capture_output=True, text=True,
                             timeout=120, check=False)
    finally:
        bundle_dir.chmod(0o755)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.startswith("BundleError:") and "permission denied" in out.stdout, out.stdout
    assert "chmod" in out.stdout


def test_a_bundle_whose_towers_output_nan_is_refused_at_load(tmp_path):
    """Such a bundle used to load, learn nothing and let replay exit 0 with one warning."""
    import torch
    from firstwords.edge.encode import Encoder
    from firstwords.export.bundle import write_bundle
    from firstwords.export.onnx_export import export_towers

    for tower, weights in (("image", "proj.bias"), ("utterance", "emb.weight")):
        model = tiny_model(0)
        with torch.no_grad():
            dict(model.named_parameters())[weights].fill_(float("nan"))
        towers = export_towers(model, tmp_path / f"onnx-{tower}", SIZE)
        out = write_bundle(tmp_path / f"nan-{tower}", towers.image, towers.utterance, VOCAB,
                           manifest_fields(opset=towers.opset))
        load_bundle(out)  # the files are whole and as the manifest says ...
        with pytest.raises(BundleError, match=rf"{tower}\.onnx: the {tower} tower outputs non-finite values"):
            Encoder(out, threads=1)  # ... but it cannot be run
