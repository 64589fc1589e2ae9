"""Profiling's shared measuring tools: medians and 95th percentiles of timed calls, comparison with a device
config's [budget], growth exponents, and synthetic inputs (camera-sized frames, a memory filled with words).

Stages and their units (each compared with a key of the config's [budget] table):
  frame_preprocess   ms per frame (a camera-sized uint8 frame -> the model's normalised input)
  image_encode       ms per frame, batch 1 (the live encoder sees one or a few frames at a time)
  vad                ms per second of audio
  asr                real-time factor: seconds of compute per second of speech
  utterance_encode   ms per utterance (its in-vocabulary words, as the learner encodes them for priors)
  pairing            ms per utterance (closing its window over the frame ring)
  memory_update      ms per utterance (one SQLite transaction on a file, memory filled to --words)
  memory_query       ms per name() query (memory filled to --words)

A stage is OVER when its median is over the budget, and its p95 is flagged when only the tail is. No
wall-clock figure is ever asserted in tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.errors import InputError

STAGES = ("frame_preprocess", "image_encode", "vad", "asr", "utterance_encode", "pairing", "memory_update",
          "memory_query")
# stage -> (budget key in [budget], unit)
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


def time_interleaved(calls: Sequence[Callable[[], Any]], runs: int, warmup: int = 2) -> list[list[float]]:
    """Seconds per call for each of several alternatives, measured round-robin (a, b, c, a, b, c ...) so that
    a machine getting busier or quieter during the sweep affects every alternative alike."""
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


# ------------------------------------------------------------------------------------------------ budget

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


def fill_memory(mem: Any, n_words: int, seed: int = 0, words_per_utterance: int = 10,
                frames_per_utterance: int = 4, chunk: int = 200) -> None:
    """Teach an AssociativeMemory n_words distinct synthetic words (random unit frame embeddings)."""
    from firstwords.edge import memory as memory_module

    # one learning moment of edge.memory (named Moment where the memory module has that name)
    moment = getattr(memory_module, "Moment", None) or memory_module.Utterance

    rng = np.random.default_rng(seed)
    batch = []
    for i in range(0, n_words, words_per_utterance):
        ws = [f"w{j}" for j in range(i, min(i + words_per_utterance, n_words))]
        fr = rng.normal(size=(frames_per_utterance, mem.dim)).astype(np.float32)
        batch.append(moment(ws, fr, float(i), " ".join(ws)))
        if len(batch) == chunk:
            mem.learn_batch(batch)
            batch = []
    if batch:
        mem.learn_batch(batch)


def memory_learn_call(mem: Any, n_words: int, frames: int, seed: int = 0) -> Callable[[int], None]:
    """learn(i): one utterance into a memory filled by fill_memory with n_words words: four known words (one
    with an encoder prior) and, every fifth call, a new one — what profiling and the growth sweep time."""
    rng = np.random.default_rng(seed)
    known = max(n_words, 1)
    prior = rng.normal(size=mem.dim).astype(np.float32)

    def learn(i: int) -> None:
        ws = [f"w{int(j)}" for j in rng.integers(0, known, 4)] + ([f"new{i}"] if i % 5 == 0 else [])
        fr = rng.normal(size=(frames, mem.dim)).astype(np.float32)
        mem.learn(ws, fr, float(n_words + i), " ".join(ws), prior={ws[0]: prior})

    return learn


def resolve_bundle(path: str | None) -> str:
    """The bundle to profile: the given path, else ./work/bundle when it exists."""
    from firstwords.edge.errors import BundleError

    if path:
        return path
    if (Path("work/bundle") / "manifest.json").is_file():
        return "work/bundle"
    raise BundleError("no bundle given and no work/bundle here: pass --bundle DIR (make one with "
                      "`firstwords export CHECKPOINT -o work/bundle --config device_configs/<device>.toml`)")
