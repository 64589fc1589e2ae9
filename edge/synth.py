"""Text to speech with the Debian speech synthesisers: test and sample speech as float32 mono 16 kHz.

One function, `speak(text, voice)`, for every caller (sample session, benchmarks, profiling, tests). A voice is
"ENGINE:NAME":
- espeak-ng (package espeak-ng):             "espeak:en-us", "espeak:en-us+f2", "espeak:en-us+f3", ...
- flite (package flite):                      "flite:slt", "flite:awb", "flite:rms", "flite:kal16"
- festival's HTS voice (festival, festvox-us-slt-hts): "festival:cmu_us_slt_arctic_hts"

`rate` stretches the speaking time (1.3 = 30 % slower) and `pitch` shifts the voice's pitch in semitones:
child-directed speech is slower and higher than speech between adults. Festival's HTS voice takes neither
(it speaks as it speaks). The speech is trimmed to its loud part plus `margin` seconds each side. A missing
engine or a failing one raises DataError saying which package to install.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError
from firstwords.edge.hear import SAMPLE_RATE, resample

ENGINES = {"espeak": ("espeak-ng", "espeak-ng"), "flite": ("flite", "flite"),
           "festival": ("text2wave", "festival festvox-us-slt-hts")}
# Six voices of three engines, as tools/bench_hearing.py and the sample session use them
DEFAULT_VOICES = ("espeak:en-us", "espeak:en-us+f3", "flite:awb", "flite:rms", "flite:slt",
                  "festival:cmu_us_slt_arctic_hts")
_TIMEOUT_S = 60
NOISE_DB = -48.0  # room noise, dBFS RMS: a quiet room with a fridge and a street outside


def parse_voice(voice: str) -> tuple[str, str]:
    engine, _, name = voice.partition(":")
    if engine not in ENGINES or not name:
        raise DataError(f"unknown voice {voice!r}: write ENGINE:NAME with ENGINE one of {sorted(ENGINES)}, "
                        "e.g. 'espeak:en-us+f2', 'flite:slt', 'festival:cmu_us_slt_arctic_hts'")
    return engine, name


def voice_available(voice: str) -> bool:
    engine, name = parse_voice(voice)
    if shutil.which(ENGINES[engine][0]) is None:
        return False
    if engine == "festival":
        return any(Path(d).is_dir() for d in (f"/usr/share/festival/voices/us/{name}",
                                              f"/usr/share/festival/voices/english/{name}"))
    return True


def available_voices(voices=DEFAULT_VOICES) -> list[str]:
    return [v for v in voices if voice_available(v)]


def _run(cmd: list[str], text: str | None, engine: str, output: Path | None = None) -> bytes:
    exe, package = ENGINES[engine]
    if shutil.which(exe) is None:
        raise DataError(f"{exe} is not installed: sudo apt-get install {package}")
    try:
        proc = subprocess.run(cmd, input=text.encode() if text is not None else None, capture_output=True,
                              check=False, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise DataError(f"{exe} took more than {_TIMEOUT_S} s; is it hanging on its audio device?") from e
    if proc.returncode != 0 or not (proc.stdout or (output is not None and output.is_file())):
        raise DataError(f"{exe} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc.stdout


def _wav(data: bytes, engine: str) -> np.ndarray:
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise DataError(f"{engine} wrote something that is not a wav file ({e})") from e
    if width != 2:
        raise DataError(f"{engine} produced {width * 8}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return resample(x, rate, SAMPLE_RATE)


def speak(text: str, voice: str = "espeak:en-us+f2", rate: float = 1.0, pitch: float = 0.0,
          margin: float = 0.0) -> np.ndarray:
    """`text` spoken by `voice` as float32 mono 16 kHz, trimmed to the speech (+ margin s of its own edges)."""
    if not text.strip():
        raise DataError("nothing to speak: the text is empty")
    if not 0.3 <= rate <= 3.0:
        raise DataError(f"rate must be within 0.3..3.0 (a stretch of the speaking time), got {rate}")
    engine, name = parse_voice(voice)
    if engine == "espeak":
        wpm = round(165 / rate)
        data = _run(["espeak-ng", "-v", name, "-s", str(wpm), "-p", str(int(np.clip(50 + 4 * pitch, 0, 99))),
                     "--stdout", text], None, engine)
    elif engine == "flite":
        f0 = {"awb": 110.0, "rms": 100.0, "kal16": 100.0, "kal": 100.0}.get(name, 170.0) * 2 ** (pitch / 12)
        data = _run(["flite", "-voice", name, "--setf", f"duration_stretch={rate:.3f}", "--setf",
                     f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", "/dev/stdout"], None, engine)
    else:  # text2wave seeks in its output to finish the header: a real file, not a pipe
        with tempfile.TemporaryDirectory(prefix="firstwords-tts-") as tmp:
            out = Path(tmp) / "speech.wav"
            _run(["text2wave", "-eval", f"(voice_{name})", "-o", str(out)], text, engine, output=out)
            data = out.read_bytes()
    x = _wav(data, engine)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    if not len(loud):
        return x[:0]
    pad = int(margin * SAMPLE_RATE)
    return np.ascontiguousarray(x[max(0, loud[0] - pad):loud[-1] + 1 + pad])


def room_noise(n: int, rng: np.random.Generator, level_db: float = NOISE_DB) -> np.ndarray:
    """Low-pass coloured noise (a room's hum and rumble rather than white hiss) at level_db RMS, float32."""
    white = rng.standard_normal(n + 64).astype(np.float32)
    kernel = np.hanning(33).astype(np.float32)
    x = np.convolve(white, kernel / kernel.sum(), mode="same")[:n] + 0.15 * white[:n]
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-9) * 10 ** (level_db / 20)).astype(np.float32)
