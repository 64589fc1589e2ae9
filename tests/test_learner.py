"""The learner loop with real parts: an ONNX bundle from our exporter, the SQLite memory, the energy VAD,
pocketsphinx. Only the hardware edge is faked: a camera and a microphone fed from memory IN REAL TIME through
the same adapters (ResilientCamera's reader, MicrophoneSource's PortAudio callback)."""

import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from firstwords.edge.capture import ResilientCamera
from firstwords.edge.encode import Encoder
from firstwords.edge.hear import SAMPLE_RATE, read_audio
from firstwords.edge.learner import Learner, LearnerOptions, StageLatencies
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.pair import Utterance
from firstwords.edge.vad import EnergyVAD
from firstwords.export.tiny_dual import DIM, make_bundle

from tests.fakes import FileFedMicrophone

pytest.importorskip("torch")  # the bundle is made by our torch exporter


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture
def encoder(bundle):
    return Encoder(bundle, threads=1)


def frame(i):
    f = np.zeros((48, 64, 3), np.uint8)
    f[..., i % 3] = 40 + (i * 37) % 200
    return f


class ListFrames:
    """A file-like frame source: (t, frame) at 10 fps, as fast as read."""

    def __init__(self, n, fps=10.0):
        self.items = [(i / fps, frame(i)) for i in range(n)]

    def __iter__(self):
        return iter(self.items)

    def close(self):
        pass


def test_stage_latencies_summary():
    lat = StageLatencies()
    for ms in (1, 2, 3, 4, 100):
        lat.record("vad", ms / 1000, audio_seconds=0.032)
    s = lat.summary()["vad"]
    assert s["calls"] == 5 and s["median_ms"] == pytest.approx(3.0)
    assert s["realtime_factor"] == pytest.approx(0.110 / 0.160, rel=1e-3)


def test_transcript_replay_learns_every_utterance_without_dropping(encoder, tmp_path):
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    utts = [Utterance(0.0, 0.6, "look a ball"), Utterance(2.0, 2.5, "the dog"),
            Utterance(4.0, 4.4, "a cat"), Utterance(9.0, 9.5, "ball")]
    learned = []
    lr = Learner(encoder, mem, ListFrames(100), transcript=utts,
                 options=LearnerOptions(realtime=False, frame_queue=4),
                 on_learned=lambda p, ws: learned.append((p.utterance.text, len(p.items))))
    rep = lr.run(install_signal_handlers=False)
    # CVCL windows at 5 fps: [0, 2) -> 10 frames, [2, 4) -> 10, [4, 9) -> 25, [9, 10) -> the 5 left
    assert learned == [("look a ball", 10), ("the dog", 10), ("a cat", 25), ("ball", 5)]
    assert rep.stats["frames_dropped"] == 0 and rep.stats["frames_encoded"] == 50
    assert rep.stats["utterances"] == 4 and dict(rep.top_words)["ball"] == 2
    for stage in ("frame_preprocess", "image_encode", "utterance_encode", "pairing", "memory_update"):
        assert rep.latency[stage]["calls"] > 0
    assert rep.media_seconds == pytest.approx(9.8)  # the last frame kept at 5 fps
    st = mem.stats()
    assert st["utterances_learned"] == 4 and st["words"] == 6
    mem.close()


@pytest.mark.parametrize("source_fps,fps,expected", [(5.0, 2.0, 20), (10.0, 3.0, 30), (10.0, 5.0, 50)])
def test_frames_are_thinned_on_a_fixed_grid(encoder, tmp_path, source_fps, fps, expected):
    # 10 s of frames: thinning must keep `fps` a second, not drift (t + period gave 5 -> 2 fps as 1.67 fps).
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    lr = Learner(encoder, mem, ListFrames(int(10 * source_fps), fps=source_fps),
                 transcript=[Utterance(0.0, 0.5, "ball")], options=LearnerOptions(realtime=False, fps=fps))
    rep = lr.run(install_signal_handlers=False)
    assert rep.stats["frames_captured"] == expected
    mem.close()


def test_utterance_without_frames_is_reported(encoder, tmp_path):
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    utts = [Utterance(0.1, 0.5, "ball"), Utterance(30, 31, "dog")]
    lr = Learner(encoder, mem, ListFrames(10), transcript=utts,
                 options=LearnerOptions(realtime=False))
    rep = lr.run(install_signal_handlers=False)
    assert rep.stats["utterances"] == 1 and rep.stats["utterances_without_frames"] == 1
    assert rep.stats["pairing"]["without_frames"] == 1
    mem.close()


# ------------------------------------------------------------------ live loop, fake hardware in real time

class PacedReader:
    """Hardware edge: a camera delivering `fps` frames a second, in real time."""

    def __init__(self, fps, n):
        self.period, self.n, self.i = 1.0 / fps, n, 0
        self.next = time.monotonic()

    def read(self):
        if self.i >= self.n:
            time.sleep(self.period)
            return None  # the camera stops delivering (the loop retries; the test stops it)
        self.next += self.period
        time.sleep(max(0.0, self.next - time.monotonic()))
        self.i += 1
        return frame(self.i)

    def release(self):
        pass


class SlowEncoder(Encoder):
    """The real encoder, deliberately slowed down: a device whose CPU cannot keep up with the camera."""

    delay = 0.5

    def encode_image_array(self, x):
        time.sleep(self.delay * len(x))
        return super().encode_image_array(x)


def speech(tmp_path):
    if shutil.which("espeak-ng") is None:
        # No speech synthesiser: tone bursts still exercise capture, VAD and the recogniser.
        t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
        burst = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
        return [burst, burst], False
    parts = []
    for i, text in enumerate(("look at the ball", "a dog")):
        p = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(p), text], check=True)
        parts.append(read_audio(p))
    return parts, True


def test_live_loop_drops_frames_never_audio(bundle, tmp_path):
    from firstwords.edge.asr import PocketSphinxRecognizer

    parts, spoken = speech(tmp_path)
    gap = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([gap, parts[0], gap, parts[1], gap])
    block_ms = 32
    mic = FileFedMicrophone(audio, block_ms=block_ms, queue_blocks=64)
    # monotonic clock
    cam = ResilientCamera(lambda: PacedReader(fps=10, n=1000), fps=10, name="fake", epoch=0.0)
    enc = SlowEncoder(bundle, threads=1)
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    rec = PocketSphinxRecognizer(vocabulary=["look", "at", "the", "ball", "a", "dog", "cat", "shoe"])
    heard = []
    lr = Learner(enc, mem, cam, audio=mic, vad=EnergyVAD(), recognizer=rec,
                 audio_overflows=lambda: mic.overflows,
                 options=LearnerOptions(realtime=True, fps=5, frame_queue=2, encode_batch=1, grace=0.5,
                                        clock_origin=None, status_interval=0.1), on_utterance=heard.append)
    threading.Thread(target=lambda: (mic.finished.wait(10), time.sleep(0.3), lr.stop()), daemon=True).start()
    rep = lr.run(install_signal_handlers=False)
    s = rep.stats
    n_blocks = -(-len(audio) // int(SAMPLE_RATE * block_ms / 1000))
    # no audio lost: every block the "sound card" produced was queued, read, and fed to the VAD
    assert mic.fed_blocks == n_blocks and mic.overflows == 0 and s["audio_overflows"] == 0
    assert mic.blocks_captured == n_blocks
    assert s["audio_blocks"] >= n_blocks - 1  # the resampler-free path yields one AudioBlock per block
    h = lr.health()
    assert h.audio_in == s["audio_blocks"] and h.frames_in == s["frames_captured"] and h.last_frame_at
    assert s["audio_seconds"] == pytest.approx(len(audio) / SAMPLE_RATE, abs=block_ms / 1000)
    assert s["speech_segments"] == 2
    # the encoder (0.5 s / frame) cannot keep up with 5 fps: frames were dropped, and all are accounted for
    assert s["frames_dropped"] > 0
    assert s["frames_captured"] == s["frames_encoded"] + s["frames_dropped"]
    if spoken:
        assert s["utterances"] >= 1 and mem.stats()["utterances_learned"] == s["utterances"]
    # the recogniser's words travel as HeardWords on the session's clock, inside their utterance
    assert heard or not spoken
    for u in heard:
        assert u.words and [w.text for w in u.words] == u.text.split()
        assert all(u.start - 0.01 <= w.start < w.end <= u.end + 0.01 and 0 <= w.confidence <= 1
                   for w in u.words)
    mem.close()


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, whatever this process inherited: a shell starts background jobs with
    SIGINT ignored, and Python then never installs its handler (the test then failed when CI ran in the
    background)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_flushes_what_was_heard_and_exits_cleanly(encoder, tmp_path, python_sigint):
    """SIGINT in the middle of a paced session: run() returns, the memory holds every utterance heard."""
    path = tmp_path / "m.db"
    mem = AssociativeMemory(path, DIM)

    class Paced(ListFrames):
        def __iter__(self):
            t0 = time.monotonic()
            for t, f in self.items:
                time.sleep(max(0.0, t0 + t - time.monotonic()))
                yield t, f

    utts = [Utterance(0.0, 0.3, "ball"), Utterance(0.5, 0.8, "the dog"), Utterance(20.0, 20.5, "never said")]
    lr = Learner(encoder, mem, Paced(400), transcript=utts, transcript_paced=1.0,
                 options=LearnerOptions(realtime=True, status_interval=0.05))
    threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    rep = lr.run()
    assert rep.interrupted
    assert rep.stats["utterances"] == 2 and rep.wall_seconds < 10
    mem.close()
    again = AssociativeMemory(path, DIM)
    assert again.stats()["utterances_learned"] == 2 and set(again.words()) == {"ball", "the", "dog"}
    again.close()


class ClosableFrames(ListFrames):
    """ListFrames that notes when the learner closes it (which stop() does)."""

    def __init__(self, n):
        super().__init__(n)
        self.closed = threading.Event()

    def close(self):
        self.closed.set()


class LateTranscript:
    """Timed utterances whose reader is slow to start: nothing is read until the learner has stopped (its
    frame source closed). Makes the worst thread interleaving happen every time."""

    def __init__(self, utts, stopped):
        self.utts, self.stopped = utts, stopped

    def __iter__(self):
        assert self.stopped.wait(30), "the learner never stopped"
        return iter(self.utts)


@pytest.mark.parametrize("late_transcript", [False, True])
def test_a_failing_encoder_ends_the_run_with_the_error_and_keeps_what_was_learned(
        bundle, tmp_path, late_transcript):
    class BrokenEncoder(Encoder):
        calls = 0

        def encode_image_array(self, x):
            BrokenEncoder.calls += 1
            if BrokenEncoder.calls > 3:
                raise RuntimeError("onnxruntime: out of memory")
            return super().encode_image_array(x)

    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    utts = [Utterance(float(i), i + 0.5, "ball") for i in range(10)]
    frames = ClosableFrames(100)
    learned = []
    # late_transcript: the encoder fails (and the learner stops) before the transcript thread has delivered
    # anything; what is learned must not depend on that (it once did: nothing at all was learned).
    lr = Learner(BrokenEncoder(bundle, threads=1), mem, frames,
                 transcript=LateTranscript(utts, frames.closed) if late_transcript else utts,
                 options=LearnerOptions(realtime=False, encode_batch=2, frame_queue=2),
                 on_learned=lambda p, ws: learned.append((p.utterance.start, len(p.items))))
    rep = lr.run(install_signal_handlers=False)
    errors = rep.stats["errors"]
    assert errors and "encoder" in errors[0] and "out of memory" in errors[0]
    # 3 batches of 2 frames at 5 fps were encoded: t = 0.0 .. 1.0. Utterance 0's window [0, 1) is covered and
    # learned from its 5 frames; utterance 1's [1, 2) from the one frame at hand; the rest had no frames.
    assert rep.stats["frames_encoded"] == 6
    assert learned == [(0.0, 5), (1.0, 1)]
    assert rep.stats["utterances"] == 2 and rep.stats["utterances_without_frames"] == 8
    assert mem.stats()["utterances_learned"] == 2
    mem.close()


def test_run_command_without_a_microphone_fails_clearly_before_starting(bundle, tmp_path):
    """No sound card here: `firstwords run` stops at once with a FirstwordsError saying what to do (a device
    error listing the inputs, or the install hint when PortAudio is missing), and leaves no memory behind."""
    import argparse

    from firstwords.edge.commands import run as run_cmd
    from firstwords.edge.errors import DeviceError, MissingExtraError

    p = argparse.ArgumentParser()
    run_cmd.add_arguments(p)
    args = p.parse_args(["--config", "laptop", "--bundle", str(bundle), "--memory", str(tmp_path / "m.db"),
                         "--audio-device", "no-such-microphone-xyz", "--seconds", "1"])
    with pytest.raises((DeviceError, MissingExtraError), match="audio|PortAudio|sounddevice"):
        run_cmd.run(args)
    assert not (tmp_path / "m.db").exists()


# ------------------------------------------------------------------ health for the service's watchdog

def test_health_snapshots_advance_and_on_tick_is_called(encoder, tmp_path):
    """health(): wall-clock stamps, counters and a progress counter that grows while stages work; on_tick gets
    the same snapshot about once per status interval from run()'s own thread."""
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    utts = [Utterance(float(i), i + 0.5, "look a ball") for i in range(8)]
    ticks, polled = [], []
    lr = Learner(encoder, mem, PacedFrames(60, fps=5), transcript=utts,
                 options=LearnerOptions(realtime=False, status_interval=0.05), on_tick=ticks.append)
    before = lr.health()
    assert before.progress == 0 and before.last_frame_at is None and before.last_utterance_at is None
    assert before.last_error is None and before.frames_in == 0
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [polled.append(lr.health()) or time.sleep(0.01)
                                              for _ in iter(lambda: stop.is_set(), True)])
    poller.start()
    t0 = time.time()
    rep = lr.run(install_signal_handlers=False)
    stop.set()
    poller.join()
    h = lr.health()
    assert len(ticks) >= 3 and all(type(t) is type(h) for t in ticks)
    progress = [t.progress for t in ticks] + [h.progress]
    assert progress == sorted(progress) and progress[-1] > progress[0]
    assert [p.progress for p in polled] == sorted(p.progress for p in polled)
    assert t0 - 1 <= h.started <= h.last_frame_at <= time.time()
    assert h.last_utterance_at is not None and h.last_error is None
    assert h.frames_in == rep.stats["frames_captured"] == 60 and h.frames_dropped == 0 and h.audio_in == 0
    assert h.utterances_learned == rep.stats["utterances"] == 8 and h.words_learned == 3
    mem.close()


def test_health_names_the_error_of_a_stage_that_died(bundle, tmp_path):
    class BrokenEncoder(Encoder):
        def encode_image_array(self, x):
            raise RuntimeError("onnxruntime: out of memory")

    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    lr = Learner(BrokenEncoder(bundle, threads=1), mem, ListFrames(20),
                 transcript=[Utterance(0.0, 0.5, "ball")],
                 options=LearnerOptions(realtime=False))
    rep = lr.run(install_signal_handlers=False)
    assert rep.errors == [lr.health().last_error] and "out of memory" in rep.errors[0]
    assert "\n" not in rep.errors[0]
    mem.close()


class PacedFrames(ListFrames):
    """Frames at `fps`, each after 1/fps s of wall time: a run long enough to be ticked."""

    def __iter__(self):
        for t, f in self.items:
            time.sleep(1 / 40)
            yield t, f


def test_odd_audio_blocks_do_not_kill_the_audio_stage(encoder, tmp_path):
    """NaN samples are replaced by silence and counted; blocks the VAD refuses (int16, stereo) are skipped and
    counted; the blocks after them are still heard (before: the first such block ended the audio thread)."""
    pytest.importorskip("pocketsphinx")
    from firstwords.edge.asr import PocketSphinxRecognizer
    from firstwords.edge.hear import AudioBlock

    n = 512
    quiet = np.zeros(n, np.float32)
    nan = quiet.copy()
    nan[10:110] = np.nan
    blocks = [AudioBlock(0.0, quiet), AudioBlock(n / SAMPLE_RATE, nan),
              AudioBlock(2 * n / SAMPLE_RATE, np.zeros(n, np.int16)),
              AudioBlock(3 * n / SAMPLE_RATE, np.zeros((n, 2), np.float32))]
    blocks += [AudioBlock(i * n / SAMPLE_RATE, quiet) for i in range(4, 40)]
    mem = AssociativeMemory(tmp_path / "m.db", DIM)
    lr = Learner(encoder, mem, ListFrames(10), audio=blocks, vad=EnergyVAD(),
                 recognizer=PocketSphinxRecognizer(vocabulary=["ball"]),
                 options=LearnerOptions(realtime=False))
    rep = lr.run(install_signal_handlers=False)
    s = rep.stats
    assert s["errors"] == []
    assert s["nonfinite_samples"] == 100 and s["audio_blocks_rejected"] == 2 and s["audio_blocks"] == 38
    assert any("NaN" in w for w in rep.warnings) and any("VAD refused" in w for w in rep.warnings)
    mem.close()


class UnevenEncoder(Encoder):
    """The real encoder, each batch delayed by a different amount, so that with two batches encoded at once
    a later batch often finishes before an earlier one."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = 0

    def encode_image_array(self, x):
        self.calls += 1
        time.sleep((0.03, 0.0, 0.015)[self.calls % 3])
        return super().encode_image_array(x)


def test_batches_encoded_at_once_reach_pairing_in_frame_order(bundle, tmp_path):
    """encode_workers=2 (a full-speed replay): whichever batch finishes first, the frames reach pairing in
    order, and the memory is the one a single worker builds. (Out of order, a window would close on a later
    frame before the earlier ones had come.)"""
    utts = [Utterance(i * 0.9, i * 0.9 + 0.4, ("look at the ball", "a red cup", "the dog")[i % 3])
            for i in range(20)]
    state = []
    for workers, enc in ((1, Encoder(bundle, threads=1)), (2, UnevenEncoder(bundle, threads=1))):
        seen = []
        with AssociativeMemory(tmp_path / f"m{workers}.db", DIM) as mem:
            lr = Learner(enc, mem, ListFrames(200), transcript=utts,
                         options=LearnerOptions(realtime=False, fps=10.0, encode_batch=4,
                                                encode_workers=workers),
                         on_learned=lambda p, ws, seen=seen: seen.append(p.times.tolist()))
            rep = lr.run(install_signal_handlers=False)
            words = sorted(mem.words())
            state.append((words, [mem.exposures(w) for w in words], mem.word_vectors(words), seen))
        assert rep.stats["errors"] == [] and rep.stats["frames_encoded"] == 200
    (w1, n1, v1, seen1), (w2, n2, v2, seen2) = state
    assert enc.calls == 50 and seen2 == seen1 and w2 == w1 and n2 == n1
    for w in w1:
        np.testing.assert_array_equal(v2[w], v1[w])
