"""Per-stage latency of the runtime against a device config's budget (units: edge.profile_stats).

    report = profile_latency(config, "work/bundle", session="work/session")   # one StageResult per stage
    print(format_latency_table(report))

Medians and 95th percentiles are over repeated runs after a warm-up. Peak memory is measured by
edge.memory_probe, growth by edge.growth.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.config import DeviceConfig
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.profile_stats import (
    STAGES,
    StageResult,
    fill_memory,
    machine_load,
    memory_learn_call,
    skipped,
    stage_result,
    synthetic_frames,
    time_calls,
)

log = logging.getLogger(__name__)

DEFAULT_TEXTS = ("look at the ball", "where is the shoe", "can you find the dog", "that is a big red car",
                 "do you want your bottle", "oh you found the cat", "put the sock on", "here is the book")


# ------------------------------------------------------------------------------------------------ speech

def speak(text: str, voice: str = "en-us", wpm: int = 165) -> np.ndarray:
    """espeak-ng speech as float32 mono 16 kHz (DataError if espeak-ng is missing or fails)."""
    from firstwords.edge.hear import resample

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("espeak-ng is not installed (sudo apt-get install espeak-ng), and no --session with "
                        "speech was given")
    proc = subprocess.run([exe, "-v", voice, "-s", str(wpm), "--stdout", text], capture_output=True,
                          check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise DataError(f"espeak-ng failed on {text!r}: {proc.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(proc.stdout)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    return resample(x, rate, SAMPLE_RATE)


@dataclass
class SpeechSample:
    audio: np.ndarray  # float32 mono 16 kHz
    utterances: list[tuple[float, float, str]]  # (start, end, text) in seconds
    source: str


def speech_sample(session: str | Path | None = None, texts: Sequence[str] = DEFAULT_TEXTS,
                  max_seconds: float = 120.0) -> SpeechSample | None:
    """Speech to profile VAD and ASR on: the first `max_seconds` of a session's soundtrack (with its
    transcript), else the texts spoken by espeak-ng with pauses between them; None when neither is
    available."""
    if session is not None:
        from firstwords.edge.hear import read_audio
        from firstwords.edge.transcripts import load_transcript

        p = Path(session)
        meta_path = p / "session.json" if p.is_dir() else None
        if meta_path is not None and meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            audio = p / meta["audio"] if meta.get("audio") else None
            transcript = p / meta["transcript"] if meta.get("transcript") else None
        else:
            audio = next(iter(sorted(p.glob("*.wav"))), None) if p.is_dir() else None
            transcript = next(iter(sorted(p.glob("*.srt"))), None) if p.is_dir() else None
        if audio is not None and audio.is_file():
            x = read_audio(audio)[: int(max_seconds * SAMPLE_RATE)]
            utts = []
            if transcript is not None and transcript.is_file():
                utts = [(u.start, u.end, u.text) for u in load_transcript(transcript) if u.end <= max_seconds]
            return SpeechSample(x, utts, str(audio))
        log.info("session %s has no soundtrack; speaking sample sentences instead", p)
    if shutil.which("espeak-ng") is None:
        return None
    parts, utts, t = [], [], 0.0
    gap = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    rng = np.random.default_rng(0)
    for text in texts:
        x = speak(text)
        parts += [gap + rng.normal(0, 0.002, len(gap)).astype(np.float32), 0.8 * x]
        t += len(gap) / SAMPLE_RATE
        utts.append((t, t + len(x) / SAMPLE_RATE, text))
        t += len(x) / SAMPLE_RATE
    parts.append(gap)
    return SpeechSample(np.concatenate(parts).astype(np.float32), utts, "espeak-ng")


def session_texts(session: str | Path | None, limit: int = 200) -> list[str]:
    """Utterance texts from a session's transcript (for utterance encoding), else a few sample sentences."""
    if session is not None:
        from firstwords.edge.transcripts import load_transcript

        p = Path(session)
        srt = sorted(p.glob("*.srt")) if p.is_dir() else ([p] if p.suffix in (".srt", ".vtt", ".csv") else [])
        if srt:
            texts = [u.text for u in load_transcript(srt[0])][:limit]
            if texts:
                return texts
    return list(DEFAULT_TEXTS)


# ------------------------------------------------------------------------------------------------ stages

def measure_memory(dim: int, n_words: int, runs: int, frames: int, db_dir: str | Path | None = None,
                   seed: int = 0, capacity_words: int | None = None,
                   capacity_episodes: int = 50_000) -> tuple[list[float], list[float]]:
    """(learn seconds per utterance, name() seconds per query) on a file memory holding n_words words."""
    from firstwords.edge.memory import AssociativeMemory

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="firstwords-profile-", dir=db_dir) as tmp:
        cap = max(capacity_words or n_words, n_words) + runs + 10
        with AssociativeMemory(Path(tmp) / "memory.sqlite", dim, capacity_words=cap,
                               capacity_episodes=capacity_episodes) as mem:
            fill_memory(mem, n_words, seed)
            learn = memory_learn_call(mem, n_words, frames, seed)
            updates = time_calls(learn, runs)
            queries_in = rng.normal(size=(runs + 2, dim)).astype(np.float32)
            queries = time_calls(lambda i: mem.name(queries_in[i], k=5), runs)
    return updates, queries


def measure_pairing(fps: float, max_frames: int, dim: int, runs: int) -> list[float]:
    """Seconds per closed window: a 60 s ring of frame embeddings, utterances every ~3 s."""
    from firstwords.edge.pair import Pairer, TimedUtterance

    pairer = Pairer(fps=fps, max_frames=max_frames, ring_seconds=60.0)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(64, dim)).astype(np.float32)
    period = 1.0 / fps
    t = 0.0
    while t < 60.0:  # fill the ring
        pairer.add_frame(t, emb[int(t * fps) % 64])
        t += period
    times = []
    for i in range(runs + 2):
        start = t
        pairer.add_utterance(TimedUtterance(start, start + 1.5, "look at the ball"))
        while t < start + 3.0:
            pairer.add_frame(t, emb[int(t * fps) % 64])
            t += period
        pairer.add_utterance(TimedUtterance(t, t + 1.5, "next"))  # ends the first one's window ...
        pairer.add_frame(t, emb[0])  # ... and a frame at its end completes it
        t += period
        t0 = time.perf_counter()
        ready = pairer.ready(utterances_until=t)
        dt = time.perf_counter() - t0
        if i >= 2 and ready:
            times.append(dt / len(ready))
        pairer.flush(now=t)
    return times


def measure_vad(kind: str, audio: np.ndarray, block_ms: int) -> list[float]:
    """ms of compute per second of audio, one value per block fed (the VAD's streaming interface)."""
    from firstwords.edge.vad import make_vad

    vad = make_vad(kind)
    block = max(1, int(SAMPLE_RATE * block_ms / 1000))
    out = []
    for i in range(0, len(audio) - block + 1, block):
        x = audio[i:i + block]
        t0 = time.perf_counter()
        vad.feed(i / SAMPLE_RATE, x)
        out.append((time.perf_counter() - t0) * 1000.0 / (block / SAMPLE_RATE))
    vad.flush()
    return out


def speech_segments(sample: SpeechSample, kind: str = "energy", limit: int = 20) -> list[np.ndarray]:
    """Utterance audio: the transcript's spans when known, else what the VAD finds."""
    if sample.utterances:
        segs = [sample.audio[int(max(0, s - 0.1) * SAMPLE_RATE):int((e + 0.1) * SAMPLE_RATE)]
                for s, e, _ in sample.utterances]
    else:
        from firstwords.edge.vad import make_vad

        segs = [s.audio for s in make_vad(kind).segment(sample.audio)]
    return [s for s in segs if len(s) >= SAMPLE_RATE // 4][:limit]


def measure_asr(recognizer: Any, segments: Sequence[np.ndarray]) -> list[float]:
    """Real-time factor per utterance: seconds of compute / seconds of speech."""
    if segments:
        recognizer.transcribe(segments[0])  # warm-up
    out = []
    for seg in segments:
        t0 = time.perf_counter()
        recognizer.transcribe(seg)
        out.append((time.perf_counter() - t0) / (len(seg) / SAMPLE_RATE))
    return out


def known_word_batches(texts: Sequence[str], knows: Callable[[str], bool]) -> list[list[str]]:
    """What the learner encodes per utterance: the sorted in-vocabulary words (utterances with none
    skipped)."""
    from firstwords.edge.tokenize import words as split_words

    out = []
    for t in texts:
        known = sorted({w for w in split_words(t) if knows(w)})
        if known:
            out.append(known)
    return out


@dataclass
class LatencyReport:
    device: str
    threads: int
    cpu_count: int
    bundle: str
    input_size: int
    quantization: str
    memory_words: int
    stages: list[StageResult]
    notes: list[str] = field(default_factory=list)

    @property
    def over(self) -> list[str]:
        return [s.stage for s in self.stages if s.status == "OVER"]

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "threads": self.threads, "cpu_count": self.cpu_count,
                "bundle": self.bundle, "input_size": self.input_size, "quantization": self.quantization,
                "memory_words": self.memory_words, "over_budget": self.over,
                "stages": {s.stage: s.to_dict() for s in self.stages}, "notes": self.notes}


def profile_latency(config: DeviceConfig, bundle: Any, *, runs: int = 50, threads: int | None = None,
                    session: str | Path | None = None, memory_words: int | None = None,
                    stages: Sequence[str] = STAGES, db_dir: str | Path | None = None,
                    asr_segments: int = 12, speech: SpeechSample | None = None) -> LatencyReport:
    """Measure every stage with the config's settings (threads, camera size, VAD, recogniser, pairing,
    memory capacity) and compare it with the config's [budget]. bundle: a path or an edge.bundle.Bundle."""
    from firstwords.edge.bundle import Bundle, load_bundle
    from firstwords.edge.encode import Encoder

    if runs < 3:
        raise InputError(f"runs must be at least 3 for a median and a p95, got {runs}")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise InputError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    threads = threads or config.model.threads
    budget = config.budget
    cpus = os.cpu_count() or 1
    notes: list[str] = []
    if threads > cpus:
        notes.append(f"{threads} onnxruntime threads on {cpus} cores: oversubscribed, figures are "
                     "pessimistic; "
                     f"profile on the device itself")
    if b.image.input_size != config.model.input_size:
        notes.append(f"bundle input {b.image.input_size} px differs from the config's "
                     f"{config.model.input_size} px;"
                     f" re-export with --config {config.path or config.name}")
    if b.quantization != config.model.quantization:
        notes.append(f"bundle quantization {b.quantization} differs from the config's "
                     f"{config.model.quantization}")
    load = machine_load()
    if load is not None and load > 0.5 * cpus:
        notes.append(f"this machine is busy (load average {load:.1f} on {cpus} cores): figures are inflated; "
                     "stop other work and profile again")
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    if blas != "1":
        notes.append(f"numpy's BLAS may use every core (OPENBLAS_NUM_THREADS={blas or 'unset'}): the memory "
                     "stages' "
                     "small products then fight onnxruntime's threads; set OPENBLAS_NUM_THREADS=1")
    words = memory_words if memory_words is not None else config.memory.capacity_words
    enc = Encoder(b, threads=threads)
    results: list[StageResult] = []
    want = set(stages)

    frames = synthetic_frames(8, config.camera.width, config.camera.height)
    x = None
    if "frame_preprocess" in want:
        secs = time_calls(lambda i: enc.prepare([frames[i % len(frames)]]), runs)
        results.append(stage_result("frame_preprocess", [s * 1e3 for s in secs], budget,
                                    f"{config.camera.width}x{config.camera.height} -> {b.image.input_size} "
                                    "px"))
    if "image_encode" in want:
        x = enc.prepare(frames[:1])
        secs = time_calls(lambda i: enc.encode_image_array(x), runs)
        results.append(stage_result("image_encode", [s * 1e3 for s in secs], budget,
                                    f"batch 1, {threads} threads, {b.quantization}"))

    sample = speech
    if ("vad" in want or "asr" in want) and sample is None:
        try:
            sample = speech_sample(session)
        except DataError as e:
            notes.append(str(e))
    if "vad" in want:
        if sample is None:
            results.append(skipped("vad", budget, "no speech: give --session or install espeak-ng"))
        else:
            vals = measure_vad(config.audio.vad, sample.audio, config.audio.block_ms)
            results.append(stage_result("vad", vals, budget, f"{config.audio.vad}, {config.audio.block_ms} "
                                                             "ms "
                                        f"blocks, {len(sample.audio) / SAMPLE_RATE:.0f} s of "
                                        f"{Path(sample.source).name}"))
    if "asr" in want:
        results.append(_profile_asr(config, b, sample, asr_segments, budget))

    if "utterance_encode" in want:
        batches = known_word_batches(session_texts(session), enc.knows)
        if not batches:
            batches = [[w] for w in list(b.vocab.ids)[4:12]] or [["<unk>"]]
        secs = time_calls(lambda i: enc.encode_utterance(batches[i % len(batches)]), runs)
        mean_words = float(np.mean([len(q) for q in batches]))
        results.append(stage_result("utterance_encode", [s * 1e3 for s in secs], budget,
                                    f"{mean_words:.1f} known words per utterance"))
    if "pairing" in want:
        vals = measure_pairing(config.pairing.fps, config.pairing.max_frames, b.embedding_dim, runs)
        results.append(stage_result("pairing", [s * 1e3 for s in vals], budget,
                                    f"{config.pairing.fps:g} fps, 60 s ring"))
    if "memory_update" in want or "memory_query" in want:
        k = config.pairing.max_frames
        upd, qry = measure_memory(b.embedding_dim, words, runs, k, db_dir,
                                  capacity_episodes=config.memory.capacity_episodes)
        if "memory_update" in want:
            results.append(stage_result("memory_update", [s * 1e3 for s in upd], budget,
                                        f"{words} words, {k} frames, SQLite file"))
        if "memory_query" in want:
            results.append(stage_result("memory_query", [s * 1e3 for s in qry], budget,
                                        f"name(k=5) over {words} words"))
    order = {s: i for i, s in enumerate(STAGES)}
    results.sort(key=lambda r: order[r.stage])
    return LatencyReport(config.name, threads, cpus, str(b.source), b.image.input_size, b.quantization, words,
                         results, notes)


def _profile_asr(config: DeviceConfig, b: Any, sample: SpeechSample | None, limit: int,
                 budget: Any) -> StageResult:
    if config.audio.recognizer == "transcript":
        return skipped("asr", budget, "the config's recognizer is 'transcript' (no speech recognition)")
    if sample is None:
        return skipped("asr", budget, "no speech: give --session or install espeak-ng")
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.errors import MissingExtraError

    try:
        rec = make_recognizer(config.audio.recognizer,
                              vocabulary=[w for w in b.vocab.ids if not w.startswith("<")])
    except MissingExtraError as e:
        return skipped("asr", budget, str(e))
    segs = speech_segments(sample, config.audio.vad, limit)
    if not segs:
        return skipped("asr", budget, "no speech found in the sample")
    vals = measure_asr(rec, segs)
    secs = sum(len(s) for s in segs) / SAMPLE_RATE
    return stage_result("asr", vals, budget, f"{config.audio.recognizer}, {len(segs)} utterances, {secs:.0f} "
                                             "s "
                        "of speech, biased to the bundle's vocabulary")


def format_latency_table(report: LatencyReport) -> str:
    lines = [(f"latency on this machine vs the '{report.device}' budget ({report.threads} threads, "
              f"{report.cpu_count} cores; bundle {report.bundle}: {report.input_size} px, "
              f"{report.quantization})"),
             f"{'stage':<17} {'median':>9} {'p95':>9} {'budget':>9}  {'unit':<11} {'status':<9} runs  note"]
    for s in report.stages:
        def f(v: float | None) -> str:
            return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")
        lines.append(f"{s.stage:<17} {f(s.median):>9} {f(s.p95):>9} {f(s.budget):>9}  {s.unit:<11} "
                     f"{s.status:<9} {s.runs:>4}  {s.note}")
    for n in report.notes:
        lines.append(f"note: {n}")
    lines.append("over budget: " + (", ".join(report.over) if report.over else "nothing"))
    return "\n".join(lines)
