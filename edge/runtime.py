"""The device runtime assembled in one place: a device config + a bundle + a memory -> encoder, memory,
learner options and (for the audio path) VAD and recogniser. `run`, `replay`, tools/bench_replay.py,
tools/soak.py and the profiling tools all build theirs with `build_runtime`, so they measure and run the same
thing.

    with build_runtime("rpi4", "work/bundle", "work/memory.db", realtime=True) as rt:
        Learner(rt.encoder, rt.memory, frames, audio=mic, vad=rt.vad, recognizer=rt.recognizer,
                options=rt.options).run()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

from firstwords.edge.config import DeviceConfig
from firstwords.edge.learner_types import LearnerOptions

BIASES = ("open", "lm", "grammar", "keywords", "none")  # "open": the device's (edge.asr); others: comparison


@dataclass
class Runtime:
    """What a learner needs. `close()` (or leaving the `with` block) closes the memory it opened and a zipped
    bundle's extraction folder; objects passed in ready-made are left to their owner."""

    config: DeviceConfig
    encoder: Any  # edge.encode.Encoder
    memory: Any  # edge.memory.AssociativeMemory
    options: LearnerOptions
    vad: Any = None  # edge.vad segmenter (audio path only)
    recognizer: Any = None  # edge.asr.Recognizer (audio path only)
    _owned: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_config(config: DeviceConfig | str | Path) -> DeviceConfig:
    """A DeviceConfig as given, or loaded from a shipped name ('rpi4') or a .toml path."""
    if isinstance(config, DeviceConfig):
        return config
    from firstwords.edge.config import load_device_config, resolve_device_config

    return load_device_config(resolve_device_config(config))


def bundle_vocabulary(encoder: Any) -> list[str]:
    """The encoder's words (CVCL specials left out): what speech recognition is biased towards."""
    vocab = getattr(encoder, "vocab", None)
    ids = getattr(vocab, "ids", {}) or {}
    return sorted(w for w in ids if not (w.startswith("<") and w.endswith(">")))


def make_speech(vad_name: str, vocabulary: Sequence[str], bias: str = "open", threads: int = 1,
                recognizer: str = "pocketsphinx", bundle: Any = None) -> tuple[Any, Any]:
    """The audio path's VAD and recogniser. bias 'open' (default): open-vocabulary English with the bundle's
    speech language model (its training sentences interpolated with the general model: its words favoured,
    never forced); 'lm' / 'grammar' / 'keywords': searches closed over `vocabulary`, kept for comparison only
    (they put vocabulary words on any speech); 'none': the general English model alone."""
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.vad import make_vad

    vad = make_vad(vad_name, **({"threads": threads} if vad_name == "silero" else {}))
    if bias == "open":
        return vad, make_recognizer(recognizer, bias="open", bundle=bundle)
    if bias == "none":
        return vad, make_recognizer(recognizer, bias="none")
    return vad, make_recognizer(recognizer, vocabulary=list(vocabulary), bias=bias)


def options_from_config(cfg: DeviceConfig, realtime: bool) -> LearnerOptions:
    """LearnerOptions from a DeviceConfig's [pairing] table."""
    p = cfg.pairing
    return LearnerOptions(realtime=realtime, fps=p.fps, max_frames=p.max_frames, frame_queue=p.frame_queue)


def open_memory(path: str | Path, dim: int, cfg: DeviceConfig, keep_media: bool = False,
                capacity_words: int | None = None, capacity_episodes: int | None = None) -> Any:
    """The memory file with the config's [memory] table (capacities overridable).
    AssociativeMemory.from_config, where the memory has it, also applies the table's disk cap and
    confidence threshold."""
    from firstwords.edge.memory import AssociativeMemory

    table = replace(cfg.memory, capacity_words=capacity_words or cfg.memory.capacity_words,
                    capacity_episodes=capacity_episodes or cfg.memory.capacity_episodes)
    from_config = getattr(AssociativeMemory, "from_config", None)
    if from_config is not None:
        return from_config(path, dim, table, keep_media=keep_media)
    return AssociativeMemory(path, dim, keep_media=keep_media, capacity_words=table.capacity_words,
                             capacity_episodes=table.capacity_episodes)


def build_runtime(config: DeviceConfig | str | Path, bundle: Any, memory: Any, *, realtime: bool = True,
                  speech: bool = False, threads: int | None = None, bias: str = "open",
                  keep_media: bool = False,
                  capacity_words: int | None = None, capacity_episodes: int | None = None,
                  vocabulary: Sequence[str] | None = None, **option_overrides: Any) -> Runtime:
    """Assemble the runtime.

    config: a DeviceConfig, a shipped name or a .toml path. bundle: a bundle path / Bundle, or a ready
    Encoder. memory: a memory file (opened, created if missing, with the config's capacities unless
    overridden), or a
    ready AssociativeMemory. speech: also build the VAD and recogniser of the config's [audio] table, biased
    (`bias`) towards `vocabulary` (default: the bundle's words). realtime: live / paced (frames dropped when
    behind) or full-speed replay (back-pressure). option_overrides: LearnerOptions fields (e.g. clock_origin).
    """
    from firstwords.edge.encode import Encoder
    from firstwords.edge.errors import InputError
    from firstwords.edge.memory import AssociativeMemory

    if bias not in BIASES:
        raise InputError(f"bias must be one of {BIASES}, got {bias!r}")
    cfg = load_config(config)
    owned: list[Any] = []
    encoder = bundle if isinstance(bundle, Encoder) else Encoder(bundle, threads=threads or cfg.model.threads)
    if isinstance(bundle, (str, Path)):
        owned.append(encoder.bundle)  # a zipped bundle's extraction folder goes with the runtime
    try:
        if isinstance(memory, AssociativeMemory):
            mem = memory
        else:
            Path(memory).parent.mkdir(parents=True, exist_ok=True)
            mem = open_memory(memory, encoder.dim, cfg, keep_media, capacity_words, capacity_episodes)
            owned.append(mem)
        options = replace(options_from_config(cfg, realtime), keep_media=keep_media, **option_overrides)
        vad = rec = None
        if speech:
            name = cfg.audio.recognizer if cfg.audio.recognizer != "transcript" else "pocketsphinx"
            words = bundle_vocabulary(encoder) if vocabulary is None else list(vocabulary)
            vad, rec = make_speech(cfg.audio.vad, words, bias=bias, recognizer=name, bundle=encoder.bundle)
    except BaseException:
        for obj in reversed(owned):
            obj.close()
        raise
    return Runtime(cfg, encoder, mem, options, vad, rec, owned)
