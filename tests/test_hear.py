"""Audio sources and resampling: real files written and read back, a known sine through the resampler,
the microphone's callback/queue logic driven directly (hardware-free), device selection."""

from __future__ import annotations

import shutil
import subprocess
import time
import wave

import numpy as np
import pytest
from firstwords.edge.errors import DataError, InputError, MissingExtraError
from firstwords.edge.hear import (
    SAMPLE_RATE,
    AudioFileSource,
    Resampler,
    check_audio,
    read_audio,
    resample,
    write_wav,
)
from firstwords.edge.microphone import MicrophoneSource, resolve_device


def _sine(freq, rate, seconds, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_resample_known_sine(rate):
    x = _sine(440.0, rate, 0.5)
    y = resample(x, rate)
    assert len(y) == int(np.ceil(len(x) * SAMPLE_RATE / rate))
    ref = _sine(440.0, SAMPLE_RATE, len(y) / SAMPLE_RATE)[: len(y)]
    inner = slice(200, len(y) - 200)  # edges see the zero signal outside the clip
    assert np.max(np.abs(y[inner] - ref[inner])) < 5e-3


def test_resample_removes_frequencies_above_new_nyquist():
    x = _sine(12000.0, 48000, 0.5)  # would alias to 4 kHz at 16 kHz without the low-pass
    y = resample(x, 48000)
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 0.01 * np.sqrt(np.mean(x ** 2))


def test_streaming_resampler_equals_one_shot():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(44100 // 2)
    whole = resample(x, 44100)
    r, parts, i = Resampler(44100), [], 0
    while i < len(x):
        n = int(rng.integers(1, 900))
        parts.append(r.process(x[i:i + n]))
        i += n
    parts.append(r.flush())
    assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("rate,channels,width", [(16000, 1, 2), (44100, 2, 2), (22050, 1, 1), (48000, 2, 3)])
def test_wav_file_source_mixes_resamples_and_times(tmp_path, rate, channels, width):
    sig = _sine(300.0, rate, 1.0, amp=0.4)
    frames = np.stack([sig] * channels, axis=1)
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            w.writeframes(np.round(frames * 127 + 128).astype(np.uint8).tobytes())
        elif width == 2:
            w.writeframes(np.round(frames * 32767).astype("<i2").tobytes())
        else:
            v = np.round(frames * (2 ** 23 - 1)).astype("<i4").reshape(-1)
            w.writeframes(np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], 1).astype(np.uint8).tobytes())
    blocks = list(AudioFileSource(path, block=512))
    assert all(b.samples.dtype == np.float32 and b.samples.ndim == 1 for b in blocks)
    assert [b.t for b in blocks] == [i * 512 / SAMPLE_RATE for i in range(len(blocks))]
    y = np.concatenate([b.samples for b in blocks])
    assert abs(len(y) - SAMPLE_RATE) <= 1
    ref = _sine(300.0, SAMPLE_RATE, 1.0, amp=0.4)[: len(y)]
    tol = 0.02 if width == 1 else 5e-3
    assert np.max(np.abs(y[300:-300] - ref[300:-300])) < tol


def test_file_source_paces_in_real_time(tmp_path):
    path = tmp_path / "q.wav"
    write_wav(path, np.zeros(SAMPLE_RATE // 4, np.float32))  # 0.25 s
    t0 = time.monotonic()
    n = len(list(AudioFileSource(path, speed=1.0)))
    paced = time.monotonic() - t0
    assert n == 8
    # the last block starts at 0.224 s, so pacing cannot finish sooner (a lower bound: no flaky upper bound)
    assert paced >= 0.2


def test_file_source_errors(tmp_path):
    with pytest.raises(DataError, match="no such audio file"):
        AudioFileSource(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00not a wav at all")
    with pytest.raises((DataError, MissingExtraError), match="convert"):
        AudioFileSource(tmp_path / "junk.wav")
    with pytest.raises(InputError):
        AudioFileSource(tmp_path / "junk.wav", speed=0)


def test_flac_without_soundfile_says_what_to_do(tmp_path):
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("soundfile is installed here: flac is readable, nothing to explain")
    (tmp_path / "a.flac").write_bytes(b"fLaC\x00")
    with pytest.raises(MissingExtraError, match="soundfile.*sox|sox"):
        AudioFileSource(tmp_path / "a.flac")


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (Debian package sox)")
def test_float_wav_from_sox_needs_soundfile_or_conversion(tmp_path):
    src = tmp_path / "in.wav"
    write_wav(src, _sine(200, SAMPLE_RATE, 0.2))
    out = tmp_path / "float.wav"
    subprocess.run(["sox", str(src), "-e", "floating-point", "-b", "32", str(out)], check=True)
    try:
        y = read_audio(out)
    except (DataError, MissingExtraError) as e:
        assert "sox" in str(e) or "soundfile" in str(e)
    else:
        assert abs(len(y) - 3200) <= 1


def test_check_audio_rejects_bad_blocks():
    assert check_audio(np.zeros((10, 1), np.float64)).shape == (10,)
    with pytest.raises(InputError, match="NaN or Inf"):
        check_audio(np.array([0.0, np.nan, np.inf], np.float32))
    with pytest.raises(InputError, match="int16"):
        check_audio(np.zeros(10, np.int16))
    with pytest.raises(InputError, match="mono"):
        check_audio(np.zeros((10, 2), np.float32))
    assert check_audio(np.zeros(0, np.float32)).shape == (0,)


def test_device_from_flag_then_environment(monkeypatch):
    monkeypatch.setenv("FIRSTWORDS_AUDIO_DEVICE", "3")
    assert resolve_device(None) == 3
    assert resolve_device("USB mic") == "USB mic"
    assert resolve_device(1) == 1
    monkeypatch.delenv("FIRSTWORDS_AUDIO_DEVICE")
    assert resolve_device(None) is None


class _Status:
    def __init__(self, overflow):
        self.input_overflow = overflow

    def __bool__(self):
        return self.input_overflow


def test_microphone_callback_never_blocks_and_counts_drops():
    """The PortAudio-thread half of MicrophoneSource, driven directly (no hardware): a full queue drops and
    counts; the consumer half resamples 48 kHz to 16 kHz and stamps time by sample count, gaps included."""
    mic = MicrophoneSource(queue_blocks=4)
    mic.rate, mic.t0 = 48000, 100.0
    block = _sine(440, 48000, 0.032).astype(np.float32)[:, None]
    t0 = time.monotonic()
    for i in range(10):
        mic._callback(block, len(block), None, _Status(i == 0))
    assert time.monotonic() - t0 < 1.0  # returned at once although the queue filled after 4 blocks
    assert mic.overflows == 6 and mic.input_overflows == 1 and mic.blocks_captured == 4
    mic._stream = object()  # pretend started: iterate the queued blocks
    it = iter(mic)
    got = [next(it) for _ in range(3)]
    assert got[0].t == pytest.approx(100.0)
    assert all(b.samples.dtype == np.float32 for b in got)
    mic._stream = None
    mic.close()


def test_resampler_rejects_bad_rates():
    for a, b in ((0, 16000), (-8000, 16000), (16000, 0), (44100.5, 16000)):
        with pytest.raises(InputError, match="sample rates"):
            Resampler(a, b)


@pytest.mark.parametrize("rate", [383999, 1_000_003, 96001, 4001])
def test_resampler_table_is_bounded_and_still_accurate_at_any_ratio(rate):
    """Rates whose ratio to 16 kHz has a huge numerator (383999 -> 16000 has 16000 phases) get a bounded
    kernel table with interpolated phases: still a clean sine out, exact length."""
    r = Resampler(rate)
    assert r.table.size <= Resampler.MAX_TABLE and not r.exact
    x = _sine(440.0, rate, 0.3)
    y = resample(x, rate)
    assert len(y) == int(np.ceil(len(x) * SAMPLE_RATE / rate))
    ref = _sine(440.0, SAMPLE_RATE, len(y) / SAMPLE_RATE)[: len(y)]
    inner = slice(300, len(y) - 300)
    assert np.max(np.abs(y[inner] - ref[inner])) < 5e-3


def test_interpolated_phases_match_the_exact_table():
    """The bounded (interpolated) kernel gives nearly what the exact polyphase table gives, streaming
    included."""

    class SmallTable(Resampler):
        MAX_TABLE = 2000  # 44100 -> 16000 needs 160 phases x 36 taps: forces interpolation

    rng = np.random.default_rng(1)
    x = rng.standard_normal(22050)
    exact = resample(x, 44100)
    r = SmallTable(44100)
    assert not r.exact and r.table.size <= 2000
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 900))
        parts.append(r.process(x[i:i + n]))
        i += n
    parts.append(r.flush())
    approx = np.concatenate(parts)
    assert len(approx) == len(exact)
    assert np.max(np.abs(approx - exact)) < 2e-3 * np.max(np.abs(exact))


def test_resampler_for_an_absurd_ratio_stays_small():
    r = Resampler(999_999_937, SAMPLE_RATE)  # a prime: no common factor
    assert r.table.size <= Resampler.MAX_TABLE and r.width <= Resampler.MAX_WIDTH
    y = np.concatenate([r.process(np.ones(300_000)), r.flush()])
    assert len(y) == int(np.ceil(300_000 * SAMPLE_RATE / 999_999_937)) and np.isfinite(y).all()


@pytest.mark.parametrize("rate", [1000, 3999, 384001, 1_000_003])
def test_audio_file_at_an_unsupported_rate_is_a_data_error(tmp_path, rate):
    path = tmp_path / "odd.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(200))
    with pytest.raises(DataError, match="sample rate"):
        AudioFileSource(path)
    with pytest.raises(InputError, match="device_rate"):
        MicrophoneSource(device_rate=rate)
