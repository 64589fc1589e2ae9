"""Faults a head-mounted device meets, injected into the real code: a camera pulled out mid-run, microphone
overflow storms, SIGKILL / power cut while writing (memory forgetting, bundle export, config files), a full
disk. Each time: a clear error or a counted, survived fault, and the previous state intact.

Covered elsewhere (see docs/RELIABILITY.md): SIGKILL during memory updates (tests/test_memory_crash.py: 4 trials
by default, 60 under `slow`), the memory's own disk-full / damaged-file cases (tests/test_memory.py), camera
back-off (tests/test_capture.py), dropping frames never audio (tests/test_learner.py).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fakes import FileFedMicrophone
from firstwords.edge.atomic import (
    WriteError,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


# ------------------------------------------------------------------------------------------ helpers

@contextmanager
def small_fs(path: Path, kb: int):
    """A real file system of `kb` KiB (tmpfs): writes beyond it fail with ENOSPC. Needs root on Linux."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real disk-full needs a small tmpfs, which needs root on Linux")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(path)], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of `folder` until about `leave_bytes` remain free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > leave_bytes:
        with open(folder / "ballast", "wb") as f:
            f.write(b"\0" * (free - leave_bytes))


def start_child(code: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=cwd)


def kill_child(proc: subprocess.Popen) -> str:
    """SIGKILL (a power cut for the process: nothing is flushed, no handler runs); returns its stdout."""
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    out = proc.stdout.read()
    proc.wait(timeout=30)
    proc.stderr.close()
    return out


def wait_line(proc: subprocess.Popen, want: str, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child ended before printing {want!r}: {proc.stderr.read()[-2000:]}")
        if line.strip() == want:
            return
    raise AssertionError(f"child did not print {want!r}")


# ------------------------------------------------------------------------------------------ atomic files

def test_atomic_write_replaces_whole_and_keeps_mode(tmp_path):
    p = tmp_path / "dev.toml"
    p.write_text("old = 1\n")
    p.chmod(0o600)
    atomic_write_text(p, "new = 2\n")
    assert p.read_text() == "new = 2\n" and (p.stat().st_mode & 0o777) == 0o600
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(q.name for q in tmp_path.iterdir()) == ["dev.toml", "x.json"]  # no temp files left


def test_atomic_write_failing_midway_leaves_old_file_and_no_debris(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text('{"v": 1}')
    with pytest.raises(RuntimeError, match="boom"), atomic_open(p, "w") as f:
        f.write('{"v": 2, "half')
        raise RuntimeError("boom")
    assert p.read_text() == '{"v": 1}'
    assert [q.name for q in tmp_path.iterdir()] == ["cfg.json"]
    with pytest.raises(TypeError):  # not serialisable: nothing written at all
        atomic_write_json(p, {"v": object()})
    assert p.read_text() == '{"v": 1}'


def test_atomic_write_on_a_full_disk_is_a_clear_error_and_old_file_intact(tmp_path):
    with small_fs(tmp_path / "fs", 64) as fs:
        p = fs / "device.toml"
        p.write_text("name = 'old'\n")
        fill(fs, 4096)
        with pytest.raises(WriteError, match=r"disk is full.*previous device\.toml is intact"):
            atomic_write_bytes_big(p)
        assert p.read_text() == "name = 'old'\n"
        assert not list(fs.glob(".device.toml.tmp-*"))
        assert isinstance(WriteError("x"), OSError)  # callers catching OSError keep working


def atomic_write_bytes_big(p: Path) -> None:
    from firstwords.edge.atomic import atomic_write_bytes

    atomic_write_bytes(p, b"x" * (1 << 20))


WRITER = r"""
import sys, time
from pathlib import Path
from firstwords.edge.atomic import atomic_open
path, mode, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = lambda i: (f"version = {i}\n" + "# padding\n" * 20000 + f"end = {i}\n")
i = int(path.read_text().split()[2]) if path.exists() else 0
print("ready", flush=True)
while True:
    i += 1
    text = body(i)
    half = len(text) // 2
    if mode == "atomic":
        with atomic_open(path, "w") as f:
            f.write(text[:half]); f.flush()
            if n: print("half", flush=True); time.sleep(60)
            f.write(text[half:])
    else:  # the naive way: truncate in place, write
        with open(path, "w") as f:
            f.write(text[:half]); f.flush()
            if n: print("half", flush=True); time.sleep(60)
            f.write(text[half:])
"""


def _whole(p: Path) -> int:
    """The version of a whole config file; AssertionError if torn."""
    lines = p.read_text().splitlines()
    assert lines and lines[0].startswith("version = ") and lines[-1] == lines[0].replace("version", "end"), \
        f"torn file: {len(lines)} lines"
    return int(lines[0].split()[2])


def test_kill_in_the_middle_of_a_write_old_file_intact_naive_write_torn(tmp_path):
    """Deterministic power cut with half the new data written: the atomic writer leaves the old file whole;
    the naive in-place write (the control, proving the check can fail) leaves it torn."""
    for mode, torn in (("atomic", False), ("naive", True)):
        p = tmp_path / f"{mode}.toml"
        p.write_text("version = 7\nend = 7\n")
        proc = start_child(WRITER, str(p), mode, "1")
        wait_line(proc, "half")
        kill_child(proc)
        if torn:
            with pytest.raises(AssertionError, match="torn"):
                _whole(p)
        else:
            assert _whole(p) == 7
            debris = list(tmp_path.glob(".atomic.toml.tmp-*"))
            assert len(debris) == 1  # the dead writer's temp file ...
            atomic_write_text(p, "version = 8\nend = 8\n")  # ... goes at the next write
            assert not list(tmp_path.glob(".atomic.toml.tmp-*")) and _whole(p) == 8


def _config_kill_trials(tmp_path: Path, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    p = tmp_path / "device.toml"
    p.write_text("version = 0\nend = 0\n")
    seen = set()
    for _ in range(trials):
        proc = start_child(WRITER, str(p), "atomic", "0")
        wait_line(proc, "ready")
        time.sleep(rng.uniform(0.0, 0.3))
        kill_child(proc)
        seen.add(_whole(p))  # whole, whichever version
        remove_stale_temps(p)
    assert len(seen) > 1  # the writer did get somewhere between kills


def test_power_cut_during_config_writes_random_moments(tmp_path):
    _config_kill_trials(tmp_path, 4, seed=1)


@pytest.mark.slow
def test_power_cut_during_config_writes_many_trials(tmp_path):
    _config_kill_trials(tmp_path, 50, seed=2)


# ------------------------------------------------------------------------------------------ bundle export

@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from firstwords.export.tiny_dual import make_bundle

    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("towers") / "bundle")


BUNDLE_WRITER = r"""
import sys, json, time
from pathlib import Path
import firstwords.export.bundle as eb
from firstwords.export.tiny_dual import VOCAB, manifest_fields
out, src, stall = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
if stall:  # stop while the new bundle sits complete in its temp folder, being validated
    def slow(p):
        print("validating", flush=True); time.sleep(60)
    eb.load_bundle = slow
print("ready", flush=True)
i = 0
while True:
    i += 1
    eb.write_bundle(out, src / "image.onnx", src / "utterance.onnx", VOCAB, manifest_fields(training_data=f"v{i}"))
    print("wrote", i, flush=True)
"""


def _load_after_crash(out: Path):
    """What a device does after a crash: load the bundle; if an export died mid-swap, the error says where the
    old one is and the next export puts it back."""
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.errors import BundleError

    try:
        return load_bundle(out)
    except BundleError as e:
        backups = sorted(out.parent.glob(f".{out.name}.old-*"))
        assert "interrupted export left the previous bundle" in str(e) and backups, str(e)
        return load_bundle(backups[-1])


def _bundle_kill_trials(towers: Path, tmp_path: Path, trials: int, seed: int) -> None:
    from firstwords.export.bundle import write_bundle
    from firstwords.export.tiny_dual import VOCAB, manifest_fields

    rng = random.Random(seed)
    out = tmp_path / "bundle"
    write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB, manifest_fields(training_data="v0"))
    versions = set()
    for _ in range(trials):
        proc = start_child(BUNDLE_WRITER, str(out), str(towers), "0", str(Path(__file__).parent))
        wait_line(proc, "wrote 1")  # one whole export done; the kill lands somewhere in the following ones
        time.sleep(rng.uniform(0.0, 0.3))
        kill_child(proc)
        b = _load_after_crash(out)  # every file matches its checksum: whole, old or new
        versions.add(b.training_data)
    assert "v0" not in versions  # each child's finished export was published
    write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB, manifest_fields(training_data="end"))
    from firstwords.edge.bundle import load_bundle

    assert load_bundle(out).training_data == "end"


def test_power_cut_during_bundle_export_random_moments(towers, tmp_path):
    _bundle_kill_trials(towers, tmp_path, 3, seed=3)


@pytest.mark.slow
def test_power_cut_during_bundle_export_many_trials(towers, tmp_path):
    _bundle_kill_trials(towers, tmp_path, 50, seed=4)


def test_power_cut_before_the_swap_keeps_the_old_bundle(towers, tmp_path):
    from firstwords.edge.bundle import load_bundle
    from firstwords.export.bundle import write_bundle
    from firstwords.export.tiny_dual import VOCAB, manifest_fields

    out = tmp_path / "bundle"
    write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB, manifest_fields(training_data="old"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = start_child(BUNDLE_WRITER, str(out), str(towers), "1", str(Path(__file__).parent))
    wait_line(proc, "validating")
    kill_child(proc)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert load_bundle(out).training_data == "old"


def test_debris_of_a_killed_export_is_cleaned_by_the_next_export(towers, tmp_path):
    from firstwords.export.bundle import write_bundle
    from firstwords.export.tiny_dual import VOCAB, manifest_fields

    out = tmp_path / "bundle"
    proc = start_child(BUNDLE_WRITER, str(out), str(towers), "1", str(Path(__file__).parent))
    wait_line(proc, "validating")
    kill_child(proc)
    assert list(tmp_path.glob(".bundle.tmp-*"))  # the dead export's folder
    # a live concurrent export's folder (this process's pid) and another program's folder are left alone
    live = tmp_path / f".bundle.tmp-{os.getpid()}-live"
    other = tmp_path / ".bundle.tmp-notapid"
    live.mkdir()
    other.mkdir()
    write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB, manifest_fields())
    assert sorted(tmp_path.glob(".bundle.tmp-*")) == sorted([live, other])


def _export_on_full_disk(towers: Path, tmp_path: Path, precheck: bool = True):
    """precheck=False hides the free space from the writer, so that the write itself runs into ENOSPC."""
    import firstwords.export.bundle as eb
    from firstwords.export.bundle import write_bundle
    from firstwords.export.tiny_dual import VOCAB, manifest_fields

    fs_cm = small_fs(tmp_path / "fs", 128)
    fs = fs_cm.__enter__()
    real_free = getattr(eb, "_free_bytes", None)
    try:
        out = fs / "bundle"
        write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB,
                     manifest_fields(training_data="old"))
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        fill(fs, 6000)  # room for part of a new bundle, not all of it
        if not precheck and real_free is not None:
            eb._free_bytes = lambda folder: None
        try:
            write_bundle(out, towers / "image.onnx", towers / "utterance.onnx", VOCAB,
                         manifest_fields(training_data="new"))
            err = None
        except Exception as e:  # noqa: BLE001 - the test inspects what came out
            err = e
    except BaseException:
        fs_cm.__exit__(None, None, None)  # never leave the tmpfs mounted
        raise
    finally:
        if real_free is not None:
            eb._free_bytes = real_free
    return fs_cm, fs, out, before, err


@pytest.mark.parametrize("precheck", [True, False], ids=["refused-up-front", "enospc-mid-write"])
def test_bundle_export_on_a_full_disk_keeps_the_old_bundle(towers, tmp_path, precheck):
    from firstwords.edge.bundle import load_bundle

    fs_cm, fs, out, before, err = _export_on_full_disk(towers, tmp_path, precheck)
    try:
        assert err is not None, "the export should have run out of space"
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert load_bundle(out).training_data == "old"
        assert not list(fs.glob(".bundle.tmp-*"))  # the partial copy was removed
    finally:
        fs_cm.__exit__(None, None, None)


@pytest.mark.parametrize("precheck", [True, False], ids=["refused-up-front", "enospc-mid-write"])
def test_bundle_export_on_a_full_disk_is_a_clear_error(towers, tmp_path, precheck):
    from firstwords.edge.errors import BundleError

    fs_cm, _, out, _, err = _export_on_full_disk(towers, tmp_path, precheck)
    fs_cm.__exit__(None, None, None)
    assert isinstance(err, BundleError), repr(err)
    msg = str(err)
    assert "disk is full" in msg and str(out) in msg and "previous bundle is intact" in msg, msg
    assert "MB" in msg  # says how much room it needs


# ------------------------------------------------------------------------------------------ memory: full disk

def test_replay_into_memory_on_a_full_disk_stops_clearly_and_keeps_what_was_committed(towers, tmp_path):
    """The real learner loop writes into a memory on a disk that fills up: run() returns (no hang), the error
    says the disk is full, and every utterance reported learned is in the database, which opens cleanly."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.pair import Utterance

    enc = Encoder(towers, threads=1)
    rng = np.random.default_rng(0)
    frames = [(i / 5, rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for i in range(600)]
    utts = [Utterance(i * 1.0, i * 1.0 + 0.5, f"look at the ball number {i} " + "la " * 300) for i in range(120)]
    with small_fs(tmp_path / "fs", 256) as fs:
        path = fs / "memory.sqlite"
        mem = AssociativeMemory(path, enc.dim)
        lr = Learner(enc, mem, frames, transcript=utts, options=LearnerOptions(realtime=False))
        rep = lr.run(install_signal_handlers=False)
        mem.close()
        errors = rep.stats["errors"]
        assert errors and "disk is full" in errors[0] and "previous state is intact" in errors[0], errors
        assert 0 < rep.stats["utterances"] < len(utts)
        kept = tmp_path / "kept"
        kept.mkdir()
        for p in fs.glob("memory.sqlite*"):
            shutil.copy(p, kept / p.name)
    with AssociativeMemory(kept / "memory.sqlite", enc.dim) as again:  # opens: quick_check passes
        assert again.stats()["utterances_learned"] == rep.stats["utterances"]
        assert again.stats()["episodes"] == rep.stats["utterances"]
        again.learn(["ball"], enc.encode_image([frames[0][1]]), 9999.0, "ball")  # and keeps learning


# ------------------------------------------------------------------------------------------ SIGKILL mid-forget

FORGETTER = r"""
import sys
from firstwords.edge.memory import AssociativeMemory
path, word = sys.argv[1], sys.argv[2]
mem = AssociativeMemory(path, 16)
print("ready", flush=True)
out = mem.forget_word(word)
print("done", out["episodes_removed"], flush=True)
"""


def _teach(path: Path, n: int, seed: int) -> None:
    from firstwords.edge.memory import AssociativeMemory, Moment

    rng = np.random.default_rng(seed)
    with AssociativeMemory(path, 16) as mem:
        batch = []
        for i in range(n):
            words = ["the", f"thing{i % 7}"] + (["secretword"] if i % 5 == 0 else [])
            batch.append(Moment(words, rng.normal(size=(6, 16)).astype(np.float32), float(i),
                                " ".join(words) + f" number {i}"))
        mem.learn_batch(batch)


def _forget_kill_trials(tmp_path: Path, trials: int, seed: int) -> None:
    from firstwords.edge.memory import AssociativeMemory

    rng = random.Random(seed)
    src = tmp_path / "src.sqlite"
    _teach(src, 400, seed)
    outcomes = {"done": 0, "not done": 0}
    for k in range(trials):
        path = tmp_path / f"m{k}.sqlite"
        for p in src.parent.glob(src.name + "*"):
            shutil.copy(p, path.parent / p.name.replace(src.name, path.name))
        proc = start_child(FORGETTER, str(path), "secretword")
        wait_line(proc, "ready")
        time.sleep(rng.uniform(0.0, 0.15))
        out = kill_child(proc)
        reported_done = "done" in out
        with AssociativeMemory(path, 16) as mem:  # opens cleanly (quick_check)
            n_ep = len(mem.find("secretword", k=1000, heard_only=True)) if "secretword" in mem.words() else 0
            total = mem.stats()["episodes"]
            gone = "secretword" not in mem.words()
        # all or nothing: either forgotten with all 80 of its moments, or untouched
        assert (gone and n_ep == 0 and total == 320) or (not gone and n_ep == 80 and total == 400), \
            (gone, n_ep, total)
        if reported_done:
            assert gone
        outcomes["done" if gone else "not done"] += 1
    assert outcomes["done"] + outcomes["not done"] == trials


def test_sigkill_during_forget_is_all_or_nothing(tmp_path):
    _forget_kill_trials(tmp_path, 4, seed=5)


@pytest.mark.slow
def test_sigkill_during_forget_is_all_or_nothing_many_trials(tmp_path):
    _forget_kill_trials(tmp_path, 50, seed=6)


# ------------------------------------------------------------------------------------------ live: camera, mic

SAMPLE_RATE = 16000
BLOCK_MS = 32


def speech_clips(tmp_path: Path) -> list[np.ndarray]:
    from firstwords.edge.hear import read_audio

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is needed to speak the test phrases")
    out = []
    for i, text in enumerate(("look at the ball", "a big dog")):
        p = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(p), text], check=True, capture_output=True)
        out.append(read_audio(p))
    return out


class PullableCamera:
    """Hardware edge: a USB camera at `fps` that is pulled out at `pull_at` s and plugged back at `back_at` s
    (None: never): reads then raise as V4L2 does, and opening fails while it is out."""

    def __init__(self, fps: float, pull_at: float, back_at: float | None):
        self.period, self.pull_at, self.back_at = 1.0 / fps, pull_at, back_at
        self.t0 = time.monotonic()
        self.opens = 0

    def plugged(self) -> bool:
        t = time.monotonic() - self.t0
        return t < self.pull_at or (self.back_at is not None and t >= self.back_at)

    def open(self):
        self.opens += 1
        if not self.plugged():
            raise OSError("cannot open /dev/video0: No such device")
        cam = self

        class Reader:
            def read(self):
                time.sleep(cam.period)
                if not cam.plugged():
                    raise OSError("VIDIOC_DQBUF: No such device")
                f = np.zeros((24, 32, 3), np.uint8)
                f[..., int(time.monotonic() * 10) % 3] = 200
                return f

            def release(self):
                pass

        return Reader()


def _recognizer():
    pytest.importorskip("pocketsphinx")
    from firstwords.edge.asr import PocketSphinxRecognizer

    return PocketSphinxRecognizer(vocabulary=["look", "at", "the", "ball", "a", "big", "dog"])


@pytest.mark.parametrize("back_at", [2.0, pytest.param(None, marks=pytest.mark.slow)],
                         ids=["replugged", "gone-for-good"])
def test_camera_pulled_mid_run_is_retried_and_audio_carries_on(towers, tmp_path, back_at):
    from firstwords.edge.capture import Backoff, ResilientCamera
    from firstwords.edge.encode import Encoder
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.vad import EnergyVAD

    clips = speech_clips(tmp_path)
    gap = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([gap, clips[0], gap, gap, clips[1], gap])
    mic = FileFedMicrophone(audio, block_ms=BLOCK_MS, queue_blocks=64)
    hw = PullableCamera(fps=10, pull_at=0.6, back_at=back_at)
    cam = ResilientCamera(hw.open, fps=10, name="usb", epoch=0.0, backoff=Backoff(first=0.05, maximum=0.2))
    mem = AssociativeMemory(tmp_path / "m.sqlite", 16)
    lr = Learner(Encoder(towers, threads=1), mem, cam, audio=mic, vad=EnergyVAD(), recognizer=_recognizer(),
                 audio_overflows=lambda: mic.overflows,
                 options=LearnerOptions(realtime=True, fps=5, grace=0.5, clock_origin=None, status_interval=0.1))
    threading.Thread(target=lambda: (mic.finished.wait(30), time.sleep(0.5), lr.stop()), daemon=True).start()
    rep = lr.run(install_signal_handlers=False)
    s = rep.stats
    n_blocks = -(-len(audio) // (SAMPLE_RATE * BLOCK_MS // 1000))
    assert s["errors"] == []
    # the camera fault was seen, counted and retried ...
    assert cam.stats.read_failures >= 1 and cam.stats.open_failures >= 1 and hw.opens >= 3
    if back_at is not None:
        assert cam.stats.reconnects >= 1
        assert s["frames_captured"] > 5 * 0.6 + 2  # frames again after the replug
    else:
        assert cam.stats.reconnects == 0
    # ... while every block of audio was heard and both phrases were cut and recognised
    assert mic.fed_blocks == n_blocks and mic.overflows == 0 and s["audio_blocks"] >= n_blocks - 1
    assert s["speech_segments"] == 2
    assert s["utterances"] + s["utterances_without_frames"] + s["empty_recognitions"] >= 2
    assert mem.stats()["utterances_learned"] == s["utterances"]
    mem.close()


def test_microphone_overflow_storms_are_counted_and_the_loop_carries_on(towers, tmp_path):
    """The consumer stalls three times (a CPU hog) while the sound card keeps delivering in real time: the
    bounded queue overflows, the dropped blocks are counted, time stamps jump instead of drifting, and the
    speech after the storms is still cut at the right time and recognised."""
    from firstwords.edge.encode import Encoder
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.vad import EnergyVAD

    clips = speech_clips(tmp_path)
    lead, storm_gap = np.zeros(int(0.5 * SAMPLE_RATE), np.float32), np.zeros(int(3.0 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([lead, clips[0], storm_gap, clips[1], lead])
    phrase2_at = (len(lead) + len(clips[0]) + len(storm_gap)) / SAMPLE_RATE
    segments = []

    class StallingVAD(EnergyVAD):
        """The real VAD, with the consumer thread stalled 0.5 s three times in the silence between phrases."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def feed(self, t, samples):
            self.calls += 1
            if self.calls in (75, 90, 105):
                time.sleep(0.5)
            out = super().feed(t, samples)
            segments.extend(out)
            return out

    mic = FileFedMicrophone(audio, block_ms=BLOCK_MS, queue_blocks=6)
    mem = AssociativeMemory(tmp_path / "m.sqlite", 16)
    lr = Learner(Encoder(towers, threads=1), mem, None, audio=mic, vad=StallingVAD(), recognizer=_recognizer(),
                 audio_overflows=lambda: mic.overflows,
                 options=LearnerOptions(realtime=True, grace=0.5, clock_origin=None, status_interval=0.1))
    threading.Thread(target=lambda: (mic.finished.wait(30), time.sleep(0.5), lr.stop()), daemon=True).start()
    rep = lr.run(install_signal_handlers=False)
    s = rep.stats
    assert s["errors"] == []
    assert mic.overflows > 0, "the stalls should have overflowed the 6-block queue"
    assert s["audio_overflows"] == mic.overflows  # reported in the loop's figures
    assert mic.blocks_captured + mic.overflows == mic.fed_blocks  # every block is either queued or counted as dropped
    assert len(segments) == 2 and s["speech_segments"] == 2
    # after the storms the second phrase is stamped where it really was (dropped blocks = a jump, no drift)
    assert abs((segments[1].start - mic.t0) - phrase2_at) < 0.3, segments[1].start - mic.t0
    assert s["audio_seconds"] < len(audio) / SAMPLE_RATE  # the dropped blocks were not heard ...
    assert s["utterances_without_frames"] + s["empty_recognitions"] + s["utterances"] >= 2  # ... the rest was
    mem.close()


# ------------------------------------------------------------------------------------------ checkpoints

def test_checkpoint_survives_two_crashes_in_a_row(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import firstwords.export.checkpoint as ckpt
    from firstwords.edge.tokenize import Vocab
    from firstwords.export.config import load_model_config
    from firstwords.export.model import build_model
    from firstwords.export.tiny_dual import VOCAB

    torch.set_num_threads(1)
    model = build_model(load_model_config("compact_lstm"), len(VOCAB), load_pretrained=False)
    vocab = Vocab(dict(VOCAB))
    path = tmp_path / "last"
    ckpt.save_checkpoint(path, model, vocab)
    # crash 1, between the two renames of the next save: the checkpoint sits at last.old only
    path.rename(tmp_path / "last.old")
    assert ckpt.resolve_checkpoint(path).name == "last.old"
    # crash 2: the next save dies just before renaming its finished .tmp into place
    real_replace = os.replace

    def crash(src, dst):
        if Path(src).name == "last.tmp":
            raise KeyboardInterrupt("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, model, vocab)
    monkeypatch.undo()
    found = ckpt.resolve_checkpoint(path)  # some whole checkpoint must still be found
    assert (found / "model.pt").is_file() and (found / "meta.json").is_file()
    loaded, _, _, _ = ckpt.load_checkpoint(path)  # and it loads (falls back to last.old)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # the next save completes: the checkpoint is back at `last`, the old copy removed
    ckpt.save_checkpoint(path, model, vocab)
    assert ckpt.resolve_checkpoint(path) == path and not (tmp_path / "last.old").exists()
    assert not (tmp_path / "last.tmp").exists()


# ------------------------------------------------------------------------------------------ soak (smoke run)

@pytest.mark.slow
def test_soak_tool_smoke_run(sample, tmp_path):  # noqa: F811
    proc = subprocess.run([sys.executable, "tools/soak.py", "--seconds", "20", "--workdir", str(tmp_path),
                           "--session", str(sample.session), "--bundle", str(sample.bundle)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fig["errors"] == 0 and fig["iterations"] >= 3
    assert fig["within_capacity"] and fig["fds_flat"] and fig["threads_flat"] and fig["db_flat"]


def test_replay_command_on_a_full_disk_exits_non_zero_with_one_line(sample, tmp_path, capsys):
    """`firstwords replay` into a memory whose disk fills up mid-session: exit 1 and one `error:` line saying
    the disk is full (before: exit 0 with the error only in the summary)."""
    import argparse

    from firstwords.edge.commands import replay as replay_cmd

    with small_fs(tmp_path / "fs", 512) as fs:
        fill(fs, 96 * 1024)
        p = argparse.ArgumentParser()
        replay_cmd.add_arguments(p)
        rc = replay_cmd.run(p.parse_args([str(sample.session), "--bundle", str(sample.bundle), "--memory",
                                          str(fs / "m.db"), "--words-from", "transcript", "-q"]))
        err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 1 and len(lines) == 1 and "disk is full" in lines[0], err
