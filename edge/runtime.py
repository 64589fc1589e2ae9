"""The device runtime assembled in one place: a device config + a bundle + a memory -> encoder, memory,
learner options and (for the audio path) VAD and recogniser. `run`, `replay`, tools/bench_replay.py,
tools/soak.py and the profiling tools all build theirs with `build_runtime`, so they measure and run the same
thing.

    with build_runtime("rpi4", "work/bundle", "work/memory.db", realtime=True) as rt:
        Learner(rt.encoder, rt.memory, frames, audio=mic, vad=rt.vad, recognizer=rt.recognizer,
                options=rt.options).run()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

from firstwords.edge.asr_pool import RecognizerPool, RecognizerSpec
from firstwords.edge.config import DeviceConfig
from firstwords.edge.learner_types import LearnerOptions

log = logging.getLogger(__name__)
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
    recognizer: Any = None  # edge.asr.Recognizer, or edge.asr_pool.RecognizerPool (audio path only)
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
                recognizer: str = "pocketsphinx", bundle: Any = None,
                asr_workers: int = 1, adaptation: str | Path | None = None) -> tuple[Any, Any]:
    """The audio path's VAD and recogniser. bias 'open' (default): open-vocabulary English with the bundle's
    speech language model (its training sentences interpolated with the general model: its words favoured,
    never forced); 'lm' / 'grammar' / 'keywords': searches closed over `vocabulary`, kept for comparison only
    (they put vocabulary words on any speech); 'none': the general English model alone.
    asr_workers > 1: a RecognizerPool of that many recognisers in worker processes (the learner keeps ~2 per
    worker in flight and hears them in order); close it when done. adaptation: pocketsphinx's speaker
    adaptation (edge.asr_adapt: a home's voices), or None."""
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.vad import make_vad

    vad = make_vad(vad_name, **({"threads": threads} if vad_name == "silero" else {}))
    if bias == "open":
        # what the recogniser reads of the bundle (its folder and manifest), picklable for worker processes
        ref = None if bundle is None else SimpleNamespace(path=Path(bundle.path), manifest=bundle.manifest)
        kwargs: dict[str, Any] = {"bias": "open", "bundle": ref}
    elif bias == "none":
        kwargs = {"bias": "none"}
    else:
        kwargs = {"vocabulary": list(vocabulary), "bias": bias}
    if adaptation is not None and recognizer == "pocketsphinx":
        kwargs["adaptation"] = str(adaptation)
    spec = RecognizerSpec(recognizer, kwargs)
    if asr_workers > 1:
        return vad, RecognizerPool(spec, workers=asr_workers)
    return vad, make_recognizer(spec.name, **spec.kwargs)


def home_adaptation(memory_path: str | Path | None) -> Path | None:
    """The speaker adaptation beside a memory file (edge.asr_adapt.adaptation_path), when there is one."""
    from firstwords.edge.asr_adapt import adaptation_path

    if memory_path is None or str(memory_path) == ":memory:":
        return None
    path = adaptation_path(memory_path)
    if not path.is_file():
        return None
    log.info("hearing through the home's speaker adaptation %s", path)
    return path


def adaptation_notice(memory_path: str | Path | None) -> str:
    """What run and replay say about hearing: through the home's speaker adaptation, or unadapted."""
    adapted = home_adaptation(memory_path)
    return (f"hearing through the home's speaker adaptation {adapted}" if adapted else
            "hearing unadapted (firstwords enrol, then adapt, fit recognition to the home's voices)")


def default_encode_workers(realtime: bool, threads: int) -> int:
    """Frame batches encoded at once: a full-speed replay, where throughput counts, encodes two (each on
    threads // 2 onnxruntime threads; on 2 cores two batches of 1 thread beat one of 2, and nothing waits
    between batches); live, one small batch at a time."""
    return 1 if realtime else min(2, max(1, threads))


def options_from_config(cfg: DeviceConfig, realtime: bool, encode_workers: int = 1) -> LearnerOptions:
    """LearnerOptions from a DeviceConfig's [pairing] table."""
    p = cfg.pairing
    return LearnerOptions(realtime=realtime, fps=p.fps, max_frames=p.max_frames, frame_queue=p.frame_queue,
                          encode_workers=encode_workers, max_backlog_s=cfg.audio.max_backlog_s)


def open_memory(path: str | Path, dim: int, cfg: DeviceConfig, keep_media: bool = False,
                capacity_words: int | None = None, capacity_episodes: int | None = None,
                synchronous: str = "FULL") -> Any:
    """The memory file with the config's [memory] table (capacities overridable).
    AssociativeMemory.from_config, where the memory has it, also applies the table's disk cap and
    confidence threshold. synchronous: SQLite's (edge.memory.AssociativeMemory)."""
    from firstwords.edge.memory import AssociativeMemory

    table = replace(cfg.memory, capacity_words=capacity_words or cfg.memory.capacity_words,
                    capacity_episodes=capacity_episodes or cfg.memory.capacity_episodes)
    from_config = getattr(AssociativeMemory, "from_config", None)
    if from_config is not None:
        return from_config(path, dim, table, keep_media=keep_media, synchronous=synchronous)
    return AssociativeMemory(path, dim, keep_media=keep_media, capacity_words=table.capacity_words,
                             capacity_episodes=table.capacity_episodes, synchronous=synchronous)


def build_runtime(config: DeviceConfig | str | Path, bundle: Any, memory: Any, *, realtime: bool = True,
                  speech: bool = False, threads: int | None = None, bias: str = "open",
                  keep_media: bool = False,
                  capacity_words: int | None = None, capacity_episodes: int | None = None,
                  vocabulary: Sequence[str] | None = None, asr_workers: int | None = None,
                  encode_workers: int | None = None, speaker_adaptation: str | Path | None = None,
                  **option_overrides: Any) -> Runtime:
    """Assemble the runtime.

    config: a DeviceConfig, a shipped name or a .toml path. bundle: a bundle path / Bundle, or a ready
    Encoder. memory: a memory file (opened, created if missing, with the config's capacities unless
    overridden), or a
    ready AssociativeMemory. speech: also build the VAD and recogniser of the config's [audio] table, biased
    (`bias`) towards `vocabulary` (default: the bundle's words). realtime: live / paced (frames dropped when
    behind) or full-speed replay (back-pressure). asr_workers: recognisers in worker processes (default: the
    config's [audio] asr_workers; 1 = in the learner's thread); the pool closes with the runtime.
    encode_workers: frame batches encoded at once (default: `default_encode_workers` for an Encoder built
    here, which then gets threads // encode_workers onnxruntime threads; 1 for a ready Encoder, whose threads
    its maker chose).
    speaker_adaptation: pocketsphinx's speaker adaptation file (edge.asr_adapt); default: the one beside the
    memory file (`firstwords adapt` writes it) when there is one.
    option_overrides: LearnerOptions fields (e.g. clock_origin).
    """
    from firstwords.edge.encode import Encoder
    from firstwords.edge.errors import InputError
    from firstwords.edge.memory import AssociativeMemory

    if bias not in BIASES:
        raise InputError(f"bias must be one of {BIASES}, got {bias!r}")
    cfg = load_config(config)
    owned: list[Any] = []
    threads = threads or cfg.model.threads
    if encode_workers is None:
        encode_workers = 1 if isinstance(bundle, Encoder) else default_encode_workers(realtime, threads)
    if encode_workers < 1:
        raise InputError(f"encode_workers must be at least 1, got {encode_workers}")
    encoder = bundle if isinstance(bundle, Encoder) else Encoder(bundle,
                                                                 threads=max(1, threads // encode_workers))
    if isinstance(bundle, (str, Path)):
        owned.append(encoder.bundle)  # a zipped bundle's extraction folder goes with the runtime
    try:
        if isinstance(memory, AssociativeMemory):
            mem = memory
        else:
            Path(memory).parent.mkdir(parents=True, exist_ok=True)
            # Live (and paced) every learned moment is on disk when its transaction commits (synchronous
            # FULL: a power cut loses at most the update in flight). A full-speed replay commits without
            # waiting for the disk (NORMAL: WAL order kept, so a power cut may lose the latest moments but
            # never leaves the file half-written; closing the memory syncs everything): its input is still on
            # disk, and each fsync cost 4 ms of an utterance's 6.
            mem = open_memory(memory, encoder.dim, cfg, keep_media, capacity_words, capacity_episodes,
                              synchronous="FULL" if realtime else "NORMAL")
            owned.append(mem)
        options = replace(options_from_config(cfg, realtime, encode_workers), keep_media=keep_media,
                          **option_overrides)
        vad = rec = None
        if speech:
            name = cfg.audio.recognizer if cfg.audio.recognizer != "transcript" else "pocketsphinx"
            words = bundle_vocabulary(encoder) if vocabulary is None else list(vocabulary)
            workers = cfg.audio.asr_workers if asr_workers is None else asr_workers
            if workers < 1:
                raise InputError(f"asr_workers must be at least 1, got {workers}")
            adaptation = speaker_adaptation
            if adaptation is None:
                adaptation = home_adaptation(getattr(mem, "path", None))
            vad, rec = make_speech(cfg.audio.vad, words, bias=bias, recognizer=name, bundle=encoder.bundle,
                                   asr_workers=workers, adaptation=adaptation)
            if isinstance(rec, RecognizerPool):
                owned.append(rec)
    except BaseException:
        for obj in reversed(owned):
            obj.close()
        raise
    return Runtime(cfg, encoder, mem, options, vad, rec, owned)
