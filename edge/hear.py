"""Audio in at 16 kHz: the block type, the source interface, streaming resampling and audio files for replay
(the live microphone, behind the same interface, is edge.microphone).

Every source is an iterator of `AudioBlock`s — float32 mono samples at 16 kHz (`SAMPLE_RATE`) with the time in
seconds of the block's first sample — plus `close()`. Times are on the source's clock:
- `MicrophoneSource` (edge.microphone): `time.monotonic()` seconds (the clock camera capture should stamp
  frames with), taken at stream start and advanced by the sample count.
- `AudioFileSource`: seconds from the start of the file (the clock of a replayed video / transcript). NaN or
  Inf samples of a damaged float file are replaced by silence and counted (`nonfinite_samples`).
"""

from __future__ import annotations

import logging
import math
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from firstwords.edge.errors import DataError, InputError, MissingExtraError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz: what VAD and ASR expect
# Source rates we accept (Hz): telephone-grade to the highest studio rate. Outside this a file is broken or
# not audio, and the resampler's filter would be huge for no use.
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 4000, 384000


@dataclass(frozen=True)
class AudioBlock:
    """`samples`: float32 mono at 16 kHz, shape [n]; `t`: seconds of samples[0] on the source's clock."""

    t: float
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class AudioSource(Protocol):
    """What the learner loop consumes. Iterating blocks until the source ends (file) or `close()` (mic)."""

    def __iter__(self) -> Iterator[AudioBlock]: ...

    def close(self) -> None: ...


def check_audio(samples: np.ndarray, what: str = "audio") -> np.ndarray:
    """Validate a mono float block: 1-D (or [n, 1]) floating point, finite. Returns float32 [n]."""
    a = np.asarray(samples)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise InputError(f"{what}: expected mono samples of shape [n], got shape {a.shape}; mix channels "
                         "first "
                         "(samples.mean(axis=1))")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{what}: expected float samples in [-1, 1], got dtype {a.dtype}; convert int16 "
                         "with "
                         "samples.astype(np.float32) / 32768")
    a = a.astype(np.float32, copy=False)
    if a.size and not np.isfinite(a).all():
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise InputError(f"{what}: {bad} of {a.size} samples are NaN or Inf; the source is broken or the "
                         "buffer "
                         "uninitialised — drop this block or fix the capture")
    return a


# ----------------------------------------------------------------------------------------------- resampling

class Resampler:
    """Streaming band-limited resampler (windowed sinc, polyphase for the rational ratio sr_out/sr_in).

    Zero delay: output sample n is the signal at time n / sr_out, so timestamps stay aligned. `process` may
    return fewer samples than the ratio suggests until `half_width` input samples of look-ahead have arrived;
    `flush` emits the rest (the signal is taken as zero after the end).

    Memory is bounded for any ratio: the kernel table has one row per phase (`up` of them) only while it holds
    at most MAX_TABLE values; past that (e.g. 383999 Hz -> 16 kHz has 16000 phases) it keeps MAX_TABLE values'
    worth of phases and interpolates linearly between the two nearest rows (error ~ 1/phases^2, as in Julius
    Smith's resample). The filter is at most 2 * MAX_WIDTH taps (fewer zero crossings for extreme
    down-sampling) and outputs are computed in chunks, so the working arrays stay small too.
    """

    MAX_TABLE = 1 << 18  # kernel values (2 MB of float64)
    MAX_WIDTH = 4096  # input samples each side of an output position
    _CHUNK = 1 << 18  # gathered input values per step of _emit (2 MB of float64)

    def __init__(self, sr_in: int, sr_out: int = SAMPLE_RATE, half_width: int = 16, rolloff: float = 0.94):
        number = (int, float, np.number)
        if (isinstance(sr_in, bool) or isinstance(sr_out, bool) or not isinstance(sr_in, number)
                or not isinstance(sr_out, number) or not (math.isfinite(sr_in) and math.isfinite(sr_out))
                or sr_in <= 0 or sr_out <= 0 or int(sr_in) != sr_in or int(sr_out) != sr_out):
            raise InputError(f"sample rates must be positive integers, got {sr_in} -> {sr_out}")
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g  # output n sits at input position n*down/up
        self.identity = self.up == self.down
        cutoff = min(1.0, self.up / self.down) * rolloff  # fraction of the input Nyquist kept
        # input samples each side of the output
        self.width = min(math.ceil(half_width / cutoff), self.MAX_WIDTH)
        taps = 2 * self.width
        # Phases: exact (one per output offset p/up) when the table fits, else a grid of `phases` rows plus
        # one (offset 1.0) to interpolate between.
        self.phases = self.up if self.up * taps <= self.MAX_TABLE else max(2, self.MAX_TABLE // taps - 1)
        self.exact = self.phases == self.up
        rows = self.phases if self.exact else self.phases + 1
        # Kernel table: row r is the offset r/phases of the output past input sample `centre`; taps at offsets
        # k - width + 1 for k in [0, 2*width): distance d = k - width + 1 - r/phases.
        k = np.arange(taps)
        phase = np.arange(rows)[:, None] / self.phases
        d = (k[None, :] - self.width + 1) - phase
        window = np.kaiser(2 * self.width + 1, 8.0)  # sampled window, evaluated by interpolation below
        win = np.interp(d, np.linspace(-self.width, self.width, 2 * self.width + 1), window, left=0, right=0)
        self.table = (cutoff * np.sinc(cutoff * d) * win).astype(np.float64)
        self.buf = np.zeros(self.width, dtype=np.float64)  # zero history before the first sample
        self.buf_start = -self.width  # absolute input index of buf[0]
        self.n_in = 0  # input samples received
        self.n_out = 0  # next output index

    def _available(self, final: bool) -> int:
        """Number of outputs computable now (each needs input up to index i + width)."""
        if final:
            total = -(-self.n_in * self.up // self.down)  # ceil(n_in * up / down)
            return max(0, total - self.n_out)
        last = self.n_in - 1 - self.width  # the highest centre index i with all its look-ahead in hand
        if last < 0:
            return 0
        # outputs n with floor(n*down/up) <= last  <=>  n <= ((last+1)*up - 1) // down
        return max(0, ((last + 1) * self.up - 1) // self.down + 1 - self.n_out)

    def _kernels(self, rem: np.ndarray) -> np.ndarray:
        """Kernel rows for outputs at fractional input offsets rem / up (rem: int64 in [0, up))."""
        if self.exact:
            return self.table[rem]
        # rem / up on the grid of `phases`: row q plus a fraction a of the way to row q + 1 (no extra
        # look-ahead: every row uses the same input samples)
        scaled = rem.astype(np.float64) * (self.phases / self.up)
        q = np.minimum(scaled.astype(np.int64), self.phases - 1)
        a = (scaled - q)[:, None]
        return (1.0 - a) * self.table[q] + a * self.table[q + 1]

    def _emit(self, count: int) -> np.ndarray:
        y = np.empty(count, dtype=np.float64)
        taps = np.arange(2 * self.width)[None, :]
        step = max(1, self._CHUNK // (2 * self.width))
        for s0 in range(0, count, step):
            n = self.n_out + np.arange(s0, min(count, s0 + step), dtype=np.int64)
            pos = n * self.down
            centre, rem = pos // self.up, pos % self.up
            idx = (centre - self.buf_start - self.width + 1)[:, None] + taps
            y[s0:s0 + len(n)] = np.einsum("ij,ij->i", self.buf[idx], self._kernels(rem))
        self.n_out += count
        # keep only the input still needed by the next output
        keep_from = (self.n_out * self.down) // self.up - self.width + 1 - self.buf_start
        if keep_from > 0:
            self.buf = self.buf[keep_from:]
            self.buf_start += keep_from
        return y.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self.identity:
            self.n_in += len(x)
            self.n_out += len(x)
            return x.astype(np.float32)
        self.buf = np.concatenate([self.buf, x])
        self.n_in += len(x)
        return self._emit(self._available(final=False))

    def flush(self) -> np.ndarray:
        if self.identity:
            return np.zeros(0, np.float32)
        count = self._available(final=True)
        self.buf = np.concatenate([self.buf, np.zeros(2 * self.width + 2)])
        return self._emit(count) if count else np.zeros(0, np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole signal (float [n]); len(out) == ceil(n * sr_out / sr_in)."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    r = Resampler(sr_in, sr_out)
    return np.concatenate([r.process(x), r.flush()])


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 1 else x.mean(axis=1)


# ----------------------------------------------------------------------------------------------- files

class _WavReader:
    """Integer PCM wav via the stdlib: 8-bit unsigned, 16/24/32-bit signed -> float32 [frames, channels]."""

    def __init__(self, path: Path):
        try:
            self.w = wave.open(str(path), "rb")  # noqa: SIM115 - kept open for streaming; close() closes it
        except (wave.Error, EOFError, OSError) as e:
            raise DataError(f"{path}: not a readable PCM wav file ({e}); convert it with "
                            f"`sox {path.name} -b 16 -e signed-integer out.wav` or ffmpeg") from e
        self.rate = self.w.getframerate()
        self.channels = self.w.getnchannels()
        self.width = self.w.getsampwidth()
        self.frames = self.w.getnframes()
        if self.width not in (1, 2, 3, 4) or self.channels < 1 or self.rate <= 0:
            self.w.close()
            raise DataError(f"{path}: unsupported wav layout ({self.width * 8}-bit, {self.channels} "
                            "channels, "
                            f"{self.rate} Hz); convert with sox to 16-bit PCM")

    def read(self, n: int) -> np.ndarray:
        raw = self.w.readframes(n)
        usable = len(raw) - len(raw) % (self.width * self.channels)
        raw = raw[:usable]
        if self.width == 1:
            a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif self.width == 2:
            a = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        elif self.width == 3:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            a = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
        else:
            a = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
        return a.reshape(-1, self.channels)

    def close(self) -> None:
        self.w.close()


class _SoundfileReader:
    """flac / float wav / anything libsndfile reads, when the `soundfile` package is installed."""

    def __init__(self, path: Path):
        try:
            import soundfile  # optional: only for flac and non-PCM wav
        except (ImportError, OSError) as e:
            raise MissingExtraError(
                f"{path}: reading {path.suffix or 'this'} audio needs the soundfile package (pip install "
                "soundfile); "
                f"or convert it to 16-bit wav: `sox {path.name} -b 16 out.wav` / `ffmpeg -i {path.name} "
                "out.wav`"
            ) from e
        try:
            self.f = soundfile.SoundFile(str(path))
        except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
            raise DataError(f"{path}: cannot decode audio ({e}); convert it to 16-bit wav with sox or "
                            "ffmpeg") from e
        self.rate, self.channels, self.frames = self.f.samplerate, self.f.channels, self.f.frames

    def read(self, n: int) -> np.ndarray:
        return self.f.read(n, dtype="float32", always_2d=True)

    def close(self) -> None:
        self.f.close()


def check_source_rate(rate, what: str) -> int:
    """A source's sample rate (Hz) must be an integer in [MIN_SOURCE_RATE, MAX_SOURCE_RATE]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not (
            MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE):
        raise DataError(f"{what}: sample rate {rate!r} Hz is outside the supported {MIN_SOURCE_RATE}.."
                        f"{MAX_SOURCE_RATE} Hz (the file is damaged or not ordinary audio); convert it with "
                        f"`sox IN -r {SAMPLE_RATE} -b 16 out.wav`")
    return int(rate)


def _open_audio(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    reader = None
    if path.suffix.lower() in (".wav", ".wave"):
        try:
            reader = _WavReader(path)
        except DataError:
            if not _has_soundfile():
                raise
        # float / extensible wav: libsndfile reads those when present
    if reader is None:
        reader = _SoundfileReader(path)
    try:
        check_source_rate(reader.rate, str(path))
    except DataError:
        reader.close()
        raise
    return reader


def _has_soundfile() -> bool:
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class AudioFileSource:
    """Replay a wav (stdlib) or flac (soundfile) file as 16 kHz mono blocks.

    speed: None -> as fast as the consumer takes them; 1.0 -> real time; 2.0 -> twice real time.
    block: samples per output block at 16 kHz (512 = 32 ms, the Silero VAD chunk).
    """

    def __init__(self, path: str | Path, speed: float | None = None, block: int = 512):
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise InputError(f"speed must be a positive number or None (as fast as possible), got {speed!r}")
        if block <= 0:
            raise InputError(f"block must be a positive number of samples, got {block}")
        self.path = Path(path)
        self.speed = speed
        self.block = int(block)
        self._reader = _open_audio(self.path)
        self.source_rate = self._reader.rate
        self.duration = self._reader.frames / self._reader.rate
        self.nonfinite_samples = 0  # NaN / Inf samples of the file, replaced by silence before resampling
        self._closed = False

    def __iter__(self) -> Iterator[AudioBlock]:
        reader = self._reader
        rs = Resampler(reader.rate, SAMPLE_RATE)
        in_block = max(1, round(self.block * reader.rate / SAMPLE_RATE))
        pending = np.zeros(0, np.float32)
        emitted = 0  # samples at 16 kHz already yielded
        t_wall0 = time.monotonic()
        done = False
        while not self._closed:
            if not done:
                chunk = reader.read(in_block)
                if len(chunk) == 0:
                    done = True
                    out = rs.flush()
                else:
                    mono = _to_mono(chunk)
                    bad = ~np.isfinite(mono)
                    # a damaged float file: silence in their place (counted), not NaN everywhere
                    if bad.any():
                        self.nonfinite_samples += int(np.count_nonzero(bad))
                        mono = np.where(bad, np.float32(0.0), mono)
                    out = rs.process(mono)
                pending = np.concatenate([pending, out]) if len(pending) else out
            while len(pending) >= self.block or (done and len(pending)):
                samples, pending = pending[: self.block], pending[self.block:]
                t = emitted / SAMPLE_RATE
                if self.speed is not None:
                    delay = t_wall0 + t / self.speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                emitted += len(samples)
                yield AudioBlock(t, np.ascontiguousarray(samples, dtype=np.float32))
            if done:
                break
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.close()


def read_audio(path: str | Path) -> np.ndarray:
    """Whole file as float32 mono 16 kHz (for tests, tools and short clips)."""
    src = AudioFileSource(path, speed=None, block=SAMPLE_RATE)
    try:
        parts = [b.samples for b in src]
    finally:
        src.close()
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono wav (clipped to [-1, 1])."""
    a = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes((np.round(a * 32767)).astype("<i2").tobytes())


# The live microphone lives in edge.microphone; these names are kept readable from here for its callers.
_MICROPHONE_NAMES = ("MicrophoneSource", "list_input_devices", "resolve_device", "_import_sounddevice",
                     "DEVICE_ENV", "SOUNDDEVICE_HINT")


def __getattr__(name: str):
    if name in _MICROPHONE_NAMES:
        from firstwords.edge import microphone

        return getattr(microphone, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
