"""Device configs: one TOML file per device (device_configs/*.toml), read into dataclasses.

Every key is required and typed; an unknown key, a missing key, a wrong type or a value out of range is a
ConfigError naming the file, the key and what is allowed.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from firstwords.edge.errors import ConfigError
from firstwords.edge.quantization import QUANTIZATION_FORMATS

VAD_KINDS = ("energy", "silero")
RECOGNIZERS = ("pocketsphinx", "transcript")


@dataclass(frozen=True)
class CameraConfig:
    device: str  # OpenCV index ("0") or path ("/dev/video0"), or "picamera2"
    width: int  # px, capture resolution (a low-res stream; the model resizes anyway)
    height: int  # px
    fps: float  # frames per second captured


@dataclass(frozen=True)
class ModelConfig:
    input_size: int  # px, square model input
    quantization: str  # one of QUANTIZATION_FORMATS
    threads: int  # onnxruntime intra-op threads


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int  # Hz at the device; resampled to 16 kHz for VAD / ASR
    device: str  # sounddevice name or index; "" = system default (env FIRSTWORDS_AUDIO_DEVICE overrides)
    block_ms: int  # ms per captured block
    queue_blocks: int  # bounded audio queue length, in blocks
    vad: str  # one of VAD_KINDS
    recognizer: str  # one of RECOGNIZERS
    speech_lm_ngrams: int  # bigrams + trigrams of the general English model kept in the bundle's speech LM
    speech_lm_words: int  # words of the general English model kept in it (the most probable)


@dataclass(frozen=True)
class PairingConfig:
    fps: float  # frames per second kept for pairing (CVCL: 5)
    max_frames: int  # frames per utterance window at most (CVCL: 32)
    frame_queue: int  # bounded queue of frames waiting for the encoder; full -> frames dropped


@dataclass(frozen=True)
class MemoryConfig:
    capacity_words: int
    capacity_episodes: int
    max_disk_mb: float  # the memory file's cap on disk (oldest episodes evicted first; edge.memory_disk)
    min_word_confidence: float  # 0..1: words heard with less confidence teach nothing (transcripts: 1.0)


@dataclass(frozen=True)
class BudgetConfig:
    ram_mb: float  # peak resident memory of the runtime process
    frame_preprocess_ms: float  # per frame
    image_encode_ms: float  # per frame, batch 1
    utterance_encode_ms: float  # per utterance
    vad_ms: float  # per second of audio
    asr_realtime_factor: float  # seconds of compute per second of speech
    pairing_ms: float  # per utterance
    memory_update_ms: float  # per utterance
    memory_query_ms: float  # per name() query


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    description: str
    camera: CameraConfig
    model: ModelConfig
    audio: AudioConfig
    pairing: PairingConfig
    memory: MemoryConfig
    budget: BudgetConfig
    path: Path | None = None


_TABLES: dict[str, type] = {
    "camera": CameraConfig, "model": ModelConfig, "audio": AudioConfig, "pairing": PairingConfig,
    "memory": MemoryConfig, "budget": BudgetConfig,
}
_CHOICES = {("model", "quantization"): QUANTIZATION_FORMATS, ("audio", "vad"): VAD_KINDS,
            ("audio", "recognizer"): RECOGNIZERS}
THREADS_PER_CORE_MAX = 4  # onnxruntime threads beyond a few per core only fight each other


def max_threads() -> int:
    """The most onnxruntime threads a config (or --threads) may ask for on this machine: 4x its cores, and at least
    16 so that a config written for a bigger device still loads here (doctor warns about more threads than cores).
    Beyond that a typo (threads = 100000) would start thousands of OS threads and hang the machine."""
    return max(16, THREADS_PER_CORE_MAX * (os.cpu_count() or 1))


# Upper bounds of numbers whose size the runtime allocates or starts threads for; generous for any device.
_MAXIMA: dict[tuple[str, str], tuple[float, str]] = {
    ("camera", "width"): (16384, "pixels"), ("camera", "height"): (16384, "pixels"),
    ("model", "input_size"): (4096, "pixels"), ("audio", "sample_rate"): (384000, "Hz"),
}


def maximum(table: str, key: str) -> float | None:
    """The largest value allowed for [table] key, or None when only > 0 is asked."""
    if (table, key) == ("model", "threads"):
        return max_threads()
    bound = _MAXIMA.get((table, key))
    return None if bound is None else bound[0]


# Numbers must be > 0, except these, which must lie within [low, high].
_RANGES = {("memory", "min_word_confidence"): (0.0, 1.0)}
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def _check_value(where: str, table: str, key: str, value: Any, typ: type) -> Any:
    # TOML gives int for 5 and float for 5.0; a float field accepts both, an int field only int (not bool).
    if typ is float and type(value) in (int, float):
        value = float(value)
    elif type(value) is not typ:
        raise ConfigError(f"{where}: [{table}] {key} must be {_TYPE_NAMES[typ]}, got {type(value).__name__} "
                          f"{value!r}")
    if typ is float and not math.isfinite(value):  # TOML allows inf and nan; `nan > 0` alone misses inf
        raise ConfigError(f"{where}: [{table}] {key} must be a finite number greater than 0, got {value!r}")
    bounds = _RANGES.get((table, key))
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{where}: [{table}] {key} must be within {bounds[0]}..{bounds[1]}, got {value!r}")
    if typ in (int, float) and not bounds and not value > 0:
        raise ConfigError(f"{where}: [{table}] {key} must be greater than 0, got {value!r}")
    top = maximum(table, key)
    if top is not None and value > top:
        why = (f"at most {top} here ({THREADS_PER_CORE_MAX}x this machine's {os.cpu_count() or 1} cores, or 16); "
               f"threads beyond the cores only slow onnxruntime down — use {os.cpu_count() or 1} or fewer"
               if key == "threads" else f"at most {top:g} {_MAXIMA[(table, key)][1]}")
        raise ConfigError(f"{where}: [{table}] {key} = {value!r} is too large; {why}")
    choices = _CHOICES.get((table, key))
    if choices and value not in choices:
        raise ConfigError(f"{where}: [{table}] {key} = {value!r} is not allowed; use one of: {', '.join(choices)}")
    return value


def _build(cls: type, table: str, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{table}] must be a table")
    expected = {f.name: f.type for f in fields(cls)}
    types = {"int": int, "float": float, "str": str}
    unknown = sorted(set(raw) - set(expected))
    if unknown:
        raise ConfigError(f"{where}: unknown key [{table}] {unknown[0]}; allowed keys in [{table}]: "
                          f"{', '.join(expected)}")
    missing = [k for k in expected if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing key [{table}] {missing[0]}; [{table}] needs: {', '.join(expected)}")
    return cls(**{k: _check_value(where, table, k, raw[k], types[t]) for k, t in expected.items()})


def parse_device_config(data: dict[str, Any], where: str = "<config>") -> DeviceConfig:
    allowed = ["name", "description", *_TABLES]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed top-level keys: {', '.join(allowed)}")
    missing = [k for k in allowed if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}; a device config needs: {', '.join(allowed)}")
    for key in ("name", "description"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string")
    tables = {t: _build(cls, t, data[t], where) for t, cls in _TABLES.items()}
    return DeviceConfig(name=data["name"], description=data["description"], **tables)


def load_device_config(path: str | Path) -> DeviceConfig:
    """Read and validate a device config TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such device config; the shipped ones are in device_configs/ "
                          f"({', '.join(p.name for p in shipped_configs())})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the device config ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax at the position shown") from e
    cfg = parse_device_config(data, str(path))
    return DeviceConfig(**{**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, "path": path})


def config_dir() -> Path:
    """device_configs/ of the source checkout (the package is installed editable from it)."""
    return Path(__file__).resolve().parent.parent / "device_configs"


def shipped_configs() -> list[Path]:
    return sorted(config_dir().glob("*.toml"))


def resolve_device_config(name_or_path: str | Path) -> Path:
    """Accept a path, or a bare device name such as 'rpi4' meaning device_configs/rpi4.toml."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    return config_dir() / f"{name_or_path}.toml"
