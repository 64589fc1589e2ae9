"""Profiling: per-stage latency against a device's budget, peak memory in fresh processes, and how cost grows.

numpy + onnxruntime + stdlib only (matplotlib is imported lazily by `plot_growth`, for the PNG).

    report = profile_latency(config, "work/bundle", session="work/session")   # one StageResult per stage
    print(format_latency_table(report))

    probe = run_probe(ProbeSpec(bundle="work/bundle", threads=2, words=10_000))  # fresh subprocess
    probe["peak_mb"], probe["steps"]                                           # VmHWM, RSS after each step

Stages and their units (each compared with a key of the config's [budget] table):
  frame_preprocess   ms per frame (a camera-sized uint8 frame -> the model's normalised input)
  image_encode       ms per frame, batch 1 (the live encoder sees one or a few frames at a time)
  vad                ms per second of audio
  asr                real-time factor: seconds of compute per second of speech
  utterance_encode   ms per utterance (its in-vocabulary words, as the learner encodes them for priors)
  pairing            ms per utterance (closing its window over the frame ring)
  memory_update      ms per utterance (one SQLite transaction on a file, memory filled to --words)
  memory_query       ms per name() query (memory filled to --words)

Medians and 95th percentiles are over repeated runs after a warm-up; a stage is OVER when its median is over
the budget, and its p95 is flagged when only the tail is. No wall-clock figure is ever asserted in tests.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.config import DeviceConfig
from firstwords.edge.errors import DataError, InputError

log = logging.getLogger(__name__)

STAGES = ("frame_preprocess", "image_encode", "vad", "asr", "utterance_encode", "pairing", "memory_update",
          "memory_query")
# stage -> (budget key in [budget], unit, scale from the measured seconds-ratio to the unit)
BUDGET_KEYS: dict[str, tuple[str, str]] = {
    "frame_preprocess": ("frame_preprocess_ms", "ms/frame"),
    "image_encode": ("image_encode_ms", "ms/frame"),
    "vad": ("vad_ms", "ms/s audio"),
    "asr": ("asr_realtime_factor", "x realtime"),
    "utterance_encode": ("utterance_encode_ms", "ms/utt"),
    "pairing": ("pairing_ms", "ms/utt"),
    "memory_update": ("memory_update_ms", "ms/utt"),
    "memory_query": ("memory_query_ms", "ms/query"),
}
SAMPLE_RATE = 16000
DEFAULT_TEXTS = ("look at the ball", "where is the shoe", "can you find the dog", "that is a big red car",
                 "do you want your bottle", "oh you found the cat", "put the sock on", "here is the book")


# ------------------------------------------------------------------------------------------------ statistics

def median_p95(samples: Sequence[float]) -> tuple[float, float]:
    if len(samples) == 0:
        raise InputError("no samples to summarise")
    a = np.asarray(samples, dtype=np.float64)
    return float(np.median(a)), float(np.percentile(a, 95))


def time_calls(fn: Callable[[int], Any], runs: int, warmup: int = 2) -> list[float]:
    """Seconds per call of fn(i) for i in range(runs), after `warmup` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def machine_load() -> float | None:
    """1-minute load average (None where the OS does not tell)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x): cost ~ x^slope (1 = linear, 0 = constant, 2 = quadratic)."""
    x = np.log(np.asarray(xs, dtype=np.float64))
    y = np.log(np.maximum(np.asarray(ys, dtype=np.float64), 1e-12))
    if len(x) < 2 or np.ptp(x) == 0:
        raise InputError("fitting a growth exponent needs at least two different x values")
    return float(np.polyfit(x, y, 1)[0])


def growth_verdict(slope: float, tolerance: float = 0.25) -> str:
    """'sub-linear', 'linear' or 'SUPER-LINEAR' (a finding) for a log-log slope."""
    if slope > 1 + tolerance:
        return "SUPER-LINEAR"
    if slope < 1 - tolerance:
        return "sub-linear"
    return "linear"


@dataclass
class StageResult:
    stage: str
    unit: str
    median: float | None  # in `unit`; None when skipped
    p95: float | None
    runs: int
    budget: float | None
    note: str = ""

    @property
    def status(self) -> str:
        """'ok', 'OVER' (median over budget), 'p95 over' (only the tail) or 'skipped'."""
        if self.median is None:
            return "skipped"
        if self.budget is None:
            return "ok"
        if self.median > self.budget:
            return "OVER"
        if self.p95 is not None and self.p95 > self.budget:
            return "p95 over"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        for k in ("median", "p95"):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        return d


def stage_result(stage: str, values: Sequence[float], budget_cfg: Any, note: str = "") -> StageResult:
    """values already in the stage's unit."""
    key, unit = BUDGET_KEYS[stage]
    budget = float(getattr(budget_cfg, key)) if budget_cfg is not None else None
    med, p95 = median_p95(values)
    return StageResult(stage, unit, med, p95, len(values), budget, note)


def skipped(stage: str, budget_cfg: Any, why: str) -> StageResult:
    key, unit = BUDGET_KEYS[stage]
    budget = float(getattr(budget_cfg, key)) if budget_cfg is not None else None
    return StageResult(stage, unit, None, None, 0, budget, why)


# ------------------------------------------------------------------------------------------------ inputs

def synthetic_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Camera-sized uint8 RGB frames with some structure (the cost of resizing does not depend on content)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        f = np.repeat(np.repeat(base, 8, 0), 8, 1)[:height, :width]
        out.append(np.ascontiguousarray(f))
    return out


def speak(text: str, voice: str = "en-us", wpm: int = 165) -> np.ndarray:
    """espeak-ng speech as float32 mono 16 kHz (DataError if espeak-ng is missing or fails)."""
    from firstwords.edge.hear import resample

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("espeak-ng is not installed (sudo apt-get install espeak-ng), and no --session with "
                        "speech was given")
    proc = subprocess.run([exe, "-v", voice, "-s", str(wpm), "--stdout", text], capture_output=True, check=False)
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
    transcript), else the texts spoken by espeak-ng with pauses between them; None when neither is available."""
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


def fill_memory(mem: Any, n_words: int, seed: int = 0, words_per_utterance: int = 10,
                frames_per_utterance: int = 4, chunk: int = 200) -> None:
    """Teach an AssociativeMemory n_words distinct synthetic words (random unit frame embeddings)."""
    from firstwords.edge.memory import Utterance as MemUtterance

    rng = np.random.default_rng(seed)
    batch = []
    for i in range(0, n_words, words_per_utterance):
        ws = [f"w{j}" for j in range(i, min(i + words_per_utterance, n_words))]
        fr = rng.normal(size=(frames_per_utterance, mem.dim)).astype(np.float32)
        batch.append(MemUtterance(ws, fr, float(i), " ".join(ws)))
        if len(batch) == chunk:
            mem.learn_batch(batch)
            batch = []
    if batch:
        mem.learn_batch(batch)


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
            known = max(n_words, 1)
            prior_vec = rng.normal(size=dim).astype(np.float32)

            def learn(i: int) -> None:
                # four known words (one with an encoder prior) and, every fifth utterance, a new one
                ws = [f"w{int(j)}" for j in rng.integers(0, known, 4)]
                if i % 5 == 0:
                    ws.append(f"new{i}")
                fr = rng.normal(size=(frames, dim)).astype(np.float32)
                mem.learn(ws, fr, float(n_words + i), " ".join(ws), prior={ws[0]: prior_vec})

            updates = time_calls(learn, runs)
            queries_in = rng.normal(size=(runs + 2, dim)).astype(np.float32)
            queries = time_calls(lambda i: mem.name(queries_in[i], k=5), runs)
    return updates, queries


def measure_pairing(fps: float, max_frames: int, dim: int, runs: int) -> list[float]:
    """Seconds per closed window: a 60 s ring of frame embeddings, utterances every ~3 s."""
    from firstwords.edge.pair import Pairer, Utterance

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
        pairer.add_utterance(Utterance(start, start + 1.5, "look at the ball"))
        while t < start + 3.0:
            pairer.add_frame(t, emb[int(t * fps) % 64])
            t += period
        pairer.add_utterance(Utterance(t, t + 1.5, "next"))  # ends the first one's window ...
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
    """What the learner encodes per utterance: the sorted in-vocabulary words (utterances with none skipped)."""
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
        notes.append(f"{threads} onnxruntime threads on {cpus} cores: oversubscribed, figures are pessimistic; "
                     f"profile on the device itself")
    if b.image.input_size != config.model.input_size:
        notes.append(f"bundle input {b.image.input_size} px differs from the config's {config.model.input_size} px;"
                     f" re-export with --config {config.path or config.name}")
    if b.quantization != config.model.quantization:
        notes.append(f"bundle quantization {b.quantization} differs from the config's {config.model.quantization}")
    load = machine_load()
    if load is not None and load > 0.5 * cpus:
        notes.append(f"this machine is busy (load average {load:.1f} on {cpus} cores): figures are inflated; "
                     "stop other work and profile again")
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    if blas != "1":
        notes.append(f"numpy's BLAS may use every core (OPENBLAS_NUM_THREADS={blas or 'unset'}): the memory stages' "
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
                                    f"{config.camera.width}x{config.camera.height} -> {b.image.input_size} px"))
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
            results.append(stage_result("vad", vals, budget, f"{config.audio.vad}, {config.audio.block_ms} ms "
                                        f"blocks, {len(sample.audio) / SAMPLE_RATE:.0f} s of {Path(sample.source).name}"))
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


def _profile_asr(config: DeviceConfig, b: Any, sample: SpeechSample | None, limit: int, budget: Any) -> StageResult:
    if config.audio.recognizer == "transcript":
        return skipped("asr", budget, "the config's recognizer is 'transcript' (no speech recognition)")
    if sample is None:
        return skipped("asr", budget, "no speech: give --session or install espeak-ng")
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.errors import MissingExtraError

    try:
        rec = make_recognizer(config.audio.recognizer, vocabulary=[w for w in b.vocab.ids if not w.startswith("<")])
    except MissingExtraError as e:
        return skipped("asr", budget, str(e))
    segs = speech_segments(sample, config.audio.vad, limit)
    if not segs:
        return skipped("asr", budget, "no speech found in the sample")
    vals = measure_asr(rec, segs)
    secs = sum(len(s) for s in segs) / SAMPLE_RATE
    return stage_result("asr", vals, budget, f"{config.audio.recognizer}, {len(segs)} utterances, {secs:.0f} s "
                        "of speech, biased to the bundle's vocabulary")


def format_latency_table(report: LatencyReport) -> str:
    lines = [(f"latency on this machine vs the '{report.device}' budget ({report.threads} threads, "
              f"{report.cpu_count} cores; bundle {report.bundle}: {report.input_size} px, {report.quantization})"),
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


# ------------------------------------------------------------------------------------------------ memory probe

def read_status_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process in MB from /proc/self/status; ru_maxrss elsewhere."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0]) / 1024.0
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb = peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
        out = {"VmRSS": peak_mb, "VmHWM": peak_mb}
    return out


@dataclass
class OrtMemoryOptions:
    """onnxruntime memory settings tried side by side (defaults = onnxruntime's)."""
    arena: bool = True  # SessionOptions.enable_cpu_mem_arena
    mem_pattern: bool = True  # SessionOptions.enable_mem_pattern
    prepacking: bool = True  # False: session config "session.disable_prepacking" = "1"

    @property
    def label(self) -> str:
        off = [n for n, v in (("arena", self.arena), ("mem_pattern", self.mem_pattern),
                              ("prepacking", self.prepacking)) if not v]
        return "default" if not off else "no " + " + no ".join(off)


def memory_options_tuner(ort_opts: OrtMemoryOptions) -> Callable[[Any], None]:
    """A `tune` hook for edge.encode.make_session / Encoder that applies onnxruntime's memory options."""

    def tune(opts: Any) -> None:
        opts.enable_cpu_mem_arena = ort_opts.arena
        opts.enable_mem_pattern = ort_opts.mem_pattern
        if not ort_opts.prepacking:
            opts.add_session_config_entry("session.disable_prepacking", "1")

    return tune


def tuned_session(path: str | Path, threads: int | None, ort_opts: OrtMemoryOptions):
    """edge.encode.make_session's settings plus the memory options."""
    from firstwords.edge.encode import make_session

    return make_session(path, threads, tune=memory_options_tuner(ort_opts))


@dataclass
class ProbeSpec:
    """What one fresh measuring process loads, step by step."""
    bundle: str | None = None
    threads: int = 2
    words: int = 0  # memory filled to this many words (0: no memory)
    session: str | None = None  # replay this session (transcript path) for replay_minutes
    replay_minutes: float = 0.0
    fps: float = 5.0
    max_frames: int = 32
    frame_queue: int = 8
    capacity_episodes: int = 50_000
    ort: dict[str, bool] = field(default_factory=dict)  # OrtMemoryOptions fields
    db_dir: str | None = None
    encode_batch: int = 8


def looped_frames(video: Path, fps: float, seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """A session's video played again and again, time running on, until `seconds` of media."""
    from firstwords.edge.frame_files import VideoFileSource

    offset = 0.0
    while offset < seconds:
        last = None
        src = VideoFileSource(video, fps=fps)
        for t, frame in src:
            if offset + t >= seconds:
                return
            last = t
            yield offset + t, frame
        if last is None:
            raise DataError(f"{video}: no frames")
        offset += last + 1.0 / fps


class LoopedFrames:
    """Iterable frame source with close() (what edge.learner expects) over looped_frames."""

    def __init__(self, video: Path, fps: float, seconds: float) -> None:
        self.video, self.fps, self.seconds = video, fps, seconds
        self._closed = False

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for item in looped_frames(self.video, self.fps, self.seconds):
            if self._closed:
                return
            yield item

    def close(self) -> None:
        self._closed = True


def looped_utterances(utterances: Sequence[Any], period: float, seconds: float) -> list[Any]:
    """The transcript repeated every `period` seconds up to `seconds` (edge.pair.Utterance objects)."""
    from firstwords.edge.pair import Utterance

    if period <= 0:
        raise InputError("the session's duration must be positive to loop it")
    out, offset = [], 0.0
    while offset < seconds:
        for u in utterances:
            if offset + u.start >= seconds:
                return out
            out.append(Utterance(offset + u.start, offset + u.end, u.text, getattr(u, "speaker", "") or ""))
        offset += period
    return out


def session_files(session: str | Path) -> tuple[Path, Path, float]:
    """(video, transcript, duration s) of a session folder written by tools/make_sample_session.py."""
    from firstwords.edge.replay import discover_session, session_duration

    s = discover_session(session)
    if s.transcript is None:
        raise DataError(f"{session}: the growth sweep replays the transcript path; this session has no transcript")
    if s.frames is None or not s.frames.is_file():
        raise DataError(f"{session}: the sweep loops a video file; this session has frames in a folder")
    duration = session_duration(s)
    if not duration:
        raise DataError(f"{session}: cannot tell the session's duration")
    return s.frames, s.transcript, float(duration)


def replay_looped(encoder: Any, memory: Any, session: str | Path, minutes: float, *, fps: float = 5.0,
                  max_frames: int = 32, frame_queue: int = 8) -> Any:
    """Replay `minutes` of a session (looped if shorter) through the learner at full speed, transcript path."""
    from firstwords.edge.learner import Learner, LearnerOptions
    from firstwords.edge.replay import load_utterances

    video, transcript, duration = session_files(session)
    seconds = minutes * 60.0
    utts = looped_utterances(load_utterances(transcript), duration, seconds)
    opts = LearnerOptions(realtime=False, fps=fps, max_frames=max_frames, frame_queue=frame_queue,
                          clock_origin=0.0)
    learner = Learner(encoder, memory, LoopedFrames(video, fps, seconds), transcript=utts, options=opts)
    return learner.run(install_signal_handlers=False)


def probe_main(spec: ProbeSpec) -> dict[str, Any]:
    """Run in a fresh process: load step by step, recording RSS after each step and the peak (VmHWM)."""
    steps: list[dict[str, Any]] = []

    def mark(name: str, **extra: Any) -> None:
        st = read_status_mb()
        steps.append({"step": name, "rss_mb": round(st.get("VmRSS", 0.0), 1),
                      "hwm_mb": round(st.get("VmHWM", 0.0), 1), **extra})

    mark("python + numpy")
    import onnxruntime  # noqa: F401  (its own import cost is part of the runtime's baseline)
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder
    from firstwords.edge.memory import AssociativeMemory

    mark("+ onnxruntime and edge imported")
    out: dict[str, Any] = {"spec": asdict(spec)}
    enc = None
    if spec.bundle:
        b = load_bundle(spec.bundle)
        ort_opts = OrtMemoryOptions(**spec.ort)
        enc = Encoder(b, threads=spec.threads, tune_session=memory_options_tuner(ort_opts))
        out["ort"] = ort_opts.label
        mark("+ both ONNX sessions loaded")
        frames = synthetic_frames(spec.encode_batch, 320, 240)
        enc.encode_image(frames[:1])
        enc.encode_image(frames)
        enc.encode_utterance(["look at the ball", "where is the shoe"])
        mark(f"+ inference (batch 1 and {spec.encode_batch})")
    tmp = tempfile.TemporaryDirectory(prefix="firstwords-probe-", dir=spec.db_dir)
    try:
        dim = enc.dim if enc is not None else 64
        mem = None
        if spec.words or spec.replay_minutes:
            mem = AssociativeMemory(Path(tmp.name) / "memory.sqlite", dim,
                                    capacity_words=max(spec.words, 1) + 10_000,
                                    capacity_episodes=spec.capacity_episodes, synchronous="NORMAL")
        if spec.words and mem is not None:
            fill_memory(mem, spec.words)
            mem.name(np.ones(dim, np.float32))  # builds the query matrix
            st = mem.stats()
            mark(f"+ memory with {spec.words} words", matrix_mb=round(st["ram_bytes"] / 2**20, 2),
                 db_mb=round(st["bytes_on_disk"] / 2**20, 2))
        if spec.replay_minutes and spec.session and enc is not None and mem is not None:
            cpu0 = time.process_time()  # CPU seconds of every thread of this process: less sensitive than
            rep = replay_looped(enc, mem, spec.session, spec.replay_minutes, fps=spec.fps,  # wall time to
                                max_frames=spec.max_frames, frame_queue=spec.frame_queue)  # other programs
            cpu_s = time.process_time() - cpu0
            st = mem.stats()
            out["replay"] = {"wall_s": round(rep.wall_seconds, 3), "cpu_s": round(cpu_s, 3),
                             "media_s": round(rep.media_seconds, 2),
                             "realtime_factor": round(rep.realtime_factor, 2),
                             "frames_encoded": rep.stats.get("frames_encoded"),
                             "utterances": rep.stats.get("utterances"), "words": st["words"],
                             "episodes": st["episodes"], "db_mb": round(st["bytes_on_disk"] / 2**20, 2),
                             "errors": rep.stats.get("errors", []),
                             "latency_median_ms": {k: v["median_ms"] for k, v in rep.latency.items()},
                             "latency_ms_per_item": {k: v["ms_per_item"] for k, v in rep.latency.items()}}
            mark(f"+ replay of {spec.replay_minutes:g} min")
        if mem is not None:
            mem.close()
    finally:
        tmp.cleanup()
    out["steps"] = steps
    out["peak_mb"] = max(s["hwm_mb"] for s in steps)
    return out


def run_probe(spec: ProbeSpec, timeout: float = 1800.0) -> dict[str, Any]:
    """probe_main in a fresh Python process (so earlier allocations do not hide this one's peak)."""
    cmd = [sys.executable, "-m", "firstwords.edge.profiling", "--probe", json.dumps(asdict(spec))]
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=os.getcwd(),
                          check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataError("the measuring process failed: " + " | ".join(tail))
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise DataError(f"the measuring process printed no result ({proc.stdout[-300:]!r})") from e


def breakdown(probe: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(step, RSS after it in MB, its increment in MB) from a probe's steps."""
    out, prev = [], 0.0
    for s in probe["steps"]:
        out.append((s["step"], s["rss_mb"], s["rss_mb"] - prev))
        prev = s["rss_mb"]
    return out


def format_memory_table(probe: dict[str, Any], budget_mb: float | None = None) -> str:
    """RSS after each step, its increment, and the peak against the budget."""
    lines = [f"{'step':<44} {'RSS MB':>8} {'+MB':>8}  detail"]
    for s, (name, rss, inc) in zip(probe["steps"], breakdown(probe), strict=True):
        detail = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("step", "rss_mb", "hwm_mb"))
        lines.append(f"{name:<44} {rss:>8.1f} {inc:>+8.1f}  {detail}")
    peak = probe["peak_mb"]
    verdict = ""
    if budget_mb is not None:
        verdict = f"  budget {budget_mb:g} MB: " + ("OVER" if peak > budget_mb else f"ok ({peak / budget_mb:.0%})")
    lines.append(f"{'peak (VmHWM)':<44} {peak:>8.1f}{verdict}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ growth

@dataclass
class Sweep:
    variable: str  # what was varied
    unit: str  # its unit
    metric: str  # what was measured
    metric_unit: str
    xs: list[float]
    ys: list[float]
    extra: list[dict[str, Any]] = field(default_factory=list)
    expect: str = "at most linear"

    @property
    def exponent(self) -> float | None:
        pts = [(x, y) for x, y in zip(self.xs, self.ys, strict=True) if y > 0]
        if len(pts) < 2 or len({x for x, _ in pts}) < 2:
            return None
        return fit_exponent([p[0] for p in pts], [p[1] for p in pts])

    @property
    def verdict(self) -> str | None:
        """growth_verdict of the exponent; for threads, the best speed-up over one thread instead."""
        if self.variable == "threads" and len(self.ys) > 1 and min(self.ys) > 0:
            best = int(np.argmin(self.ys))
            return f"speed-up {self.ys[0] / self.ys[best]:.2f}x at {self.xs[best]:g} threads"
        e = self.exponent
        return None if e is None else growth_verdict(e)

    def to_dict(self) -> dict[str, Any]:
        e = self.exponent
        return {"variable": self.variable, "unit": self.unit, "metric": self.metric, "metric_unit": self.metric_unit,
                "x": self.xs, "y": [round(y, 5) for y in self.ys], "exponent": None if e is None else round(e, 3),
                "verdict": self.verdict, "extra": self.extra}


def sweep_memory_size(dim: int, sizes: Sequence[int], runs: int, frames: int = 16,
                      db_dir: str | Path | None = None, seed: int = 0) -> tuple[Sweep, Sweep]:
    """memory_update and memory_query medians against the number of words held: one SQLite-file memory per
    size, all open at once, measured interleaved."""
    from firstwords.edge.memory import AssociativeMemory

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="firstwords-profile-", dir=db_dir) as tmp:
        mems = []
        try:
            for n in sizes:
                mem = AssociativeMemory(Path(tmp) / f"memory-{n}.sqlite", dim, capacity_words=n + runs + 10)
                mems.append(mem)
                fill_memory(mem, n, seed)
                log.info("memory of %d words filled", n)
            step = iter(range(10**9))
            prior = rng.normal(size=dim).astype(np.float32)

            def learner(mem: Any, n: int) -> Callable[[], Any]:
                def learn() -> None:
                    i = next(step)
                    ws = [f"w{int(j)}" for j in rng.integers(0, n, 4)] + ([f"new{i}"] if i % 5 == 0 else [])
                    mem.learn(ws, rng.normal(size=(frames, dim)).astype(np.float32), float(n + i), " ".join(ws),
                              prior={ws[0]: prior})
                return learn

            upd = time_interleaved([learner(m, n) for m, n in zip(mems, sizes, strict=True)], runs)
            q = rng.normal(size=dim).astype(np.float32)
            qry = time_interleaved([lambda m=m: m.name(q, k=5) for m in mems], runs)
        finally:
            for m in mems:
                m.close()
    upd_y = [median_p95(t)[0] * 1e3 for t in upd]
    qry_y = [median_p95(t)[0] * 1e3 for t in qry]
    for n, u, qq in zip(sizes, upd_y, qry_y, strict=True):
        log.info("memory %d words: update %.3f ms, query %.3f ms", n, u, qq)
    xs = [float(n) for n in sizes]
    return (Sweep("memory size", "words", "memory_update", "ms/utt", xs, upd_y),
            Sweep("memory size", "words", "memory_query", "ms/query", xs, qry_y))


def time_interleaved(calls: Sequence[Callable[[], Any]], runs: int, warmup: int = 2) -> list[list[float]]:
    """Seconds per call for each of several alternatives, measured round-robin (a, b, c, a, b, c ...) so that a
    machine getting busier or quieter during the sweep affects every alternative alike."""
    for _ in range(warmup):
        for fn in calls:
            fn()
    out: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for k, fn in enumerate(calls):
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def sweep_threads(bundle: Any, threads: Sequence[int], runs: int) -> Sweep:
    """image_encode median (batch 1) against onnxruntime's intra-op threads, measured interleaved."""
    from firstwords.edge.bundle import Bundle, load_bundle
    from firstwords.edge.encode import Encoder

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    encs = [Encoder(b, threads=n) for n in threads]
    x = encs[0].prepare(synthetic_frames(1, 320, 240))
    secs = time_interleaved([lambda e=e: e.encode_image_array(x) for e in encs], runs)
    ys = [median_p95(s)[0] * 1e3 for s in secs]
    extra = [{"p95_ms": round(median_p95(s)[1] * 1e3, 3)} for s in secs]
    return Sweep("threads", "threads", "image_encode", "ms/frame", [float(n) for n in threads], ys, extra,
                 expect="falls with threads up to the core count")


def sweep_input_size(bundles: dict[int, Any], threads: int, runs: int) -> Sweep:
    """image_encode median (batch 1) against the input's pixel count (one bundle per input size), measured
    interleaved; cost should follow the pixel count (exponent ~1)."""
    from firstwords.edge.encode import Encoder

    sizes = sorted(bundles)
    encs = [Encoder(bundles[size], threads=threads) for size in sizes]
    xs_in = [e.prepare(synthetic_frames(1, 320, 240)) for e in encs]
    secs = time_interleaved([lambda e=e, x=x: e.encode_image_array(x) for e, x in zip(encs, xs_in, strict=True)],
                            runs)
    ys = [median_p95(s)[0] * 1e3 for s in secs]
    extra = [{"size": size, "quantization": e.bundle.quantization, "p95_ms": round(median_p95(s)[1] * 1e3, 3)}
             for size, e, s in zip(sizes, encs, secs, strict=True)]
    # x = pixels (side squared): the convolutions' work is proportional to it, so linear is what to expect
    return Sweep("input pixels", "side^2", "image_encode", "ms/frame", [float(v * v) for v in sizes], ys, extra,
                 expect="linear in pixels")


def sweep_session_length(spec: ProbeSpec, minutes: Sequence[float]) -> Sweep:
    """CPU time of a full-speed replay (fresh process each) against the session's length. CPU seconds (all
    threads) rather than wall seconds: on a shared machine the wall time follows the other programs' load."""
    xs, ys, extra = [], [], []
    for m in minutes:
        spec_m = ProbeSpec(**{**asdict(spec), "replay_minutes": float(m), "words": 0})
        probe = run_probe(spec_m)
        rep = probe.get("replay")
        if rep is None:
            raise DataError("the replay did not run; give a session with a video and a transcript")
        per_item = rep.get("latency_ms_per_item", {})
        xs.append(float(m))
        ys.append(float(rep["cpu_s"]))
        extra.append({"minutes": m, "cpu_s": rep["cpu_s"], "wall_s": rep["wall_s"], "peak_mb": probe["peak_mb"],
                      "frames_encoded": rep["frames_encoded"], "utterances": rep["utterances"],
                      "episodes": rep["episodes"], "db_mb": rep["db_mb"],
                      "cpu_s_per_media_min": round(rep["cpu_s"] / m, 3),
                      "image_encode_ms_per_frame": per_item.get("image_encode"),
                      "memory_update_ms": per_item.get("memory_update"),
                      "load": round(machine_load() or 0.0, 1)})
        log.info("replay %g min: %.2f s CPU, %.2f s wall, peak %.0f MB", m, rep["cpu_s"], rep["wall_s"],
                 probe["peak_mb"])
    return Sweep("session length", "min", "replay CPU time", "s", xs, ys, extra, expect="linear")


def format_sweeps(sweeps: Sequence[Sweep]) -> str:
    lines = []
    for s in sweeps:
        e = s.exponent
        verdict = "-" if e is None else f"exponent {e:.2f} ({s.verdict}; expected {s.expect})"
        lines.append(f"{s.metric} vs {s.variable}: {verdict}")
        lines.append(f"  {s.variable + ' (' + s.unit + ')':>22}  {s.metric_unit:>10}  extra")
        for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=True)):
            ex = s.extra[i] if i < len(s.extra) else {}
            ex_s = ", ".join(f"{k}={v}" for k, v in ex.items() if k != "minutes")
            lines.append(f"  {x:>22g}  {y:>10.3f}  {ex_s}")
    return "\n".join(lines)


def plot_growth(sweeps: Sequence[Sweep], out_png: str | Path) -> Path | None:
    """One log-log panel per sweep; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; no plot (pip install matplotlib)")
        return None
    n = len(sweeps)
    if n == 0:
        return None
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, s in zip(axes.flat, sweeps, strict=False):
        ax.plot(s.xs, s.ys, "o-")
        if s.variable != "threads":
            ax.set_xscale("log")
            ax.set_yscale("log")
        e = s.exponent
        ax.set_title(f"{s.metric}" + ("" if e is None else f"  (slope {e:.2f})"), fontsize=9)
        ax.set_xlabel(f"{s.variable} ({s.unit})")
        ax.set_ylabel(s.metric_unit)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="internal: the fresh measuring process of edge.profiling")
    ap.add_argument("--probe", required=True, help="ProbeSpec as JSON")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = ProbeSpec(**json.loads(a.probe))
    print(json.dumps(probe_main(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())

