"""How the runtime's cost grows: sweeps of one variable (memory size, onnxruntime threads, input size, session
length) with the fitted growth exponent, a table and a log-log plot (matplotlib, imported lazily)."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.errors import DataError
from firstwords.edge.memory_probe import ProbeSpec, run_probe
from firstwords.edge.profile_stats import (
    fill_memory,
    fit_exponent,
    growth_verdict,
    machine_load,
    median_p95,
    memory_learn_call,
    synthetic_frames,
    time_interleaved,
)

log = logging.getLogger(__name__)


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
        return {"variable": self.variable, "unit": self.unit, "metric": self.metric,
                "metric_unit": self.metric_unit,
                "x": self.xs, "y": [round(y, 5) for y in self.ys],
                "exponent": None if e is None else round(e, 3),
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
            calls = [memory_learn_call(m, n, frames, seed) for m, n in zip(mems, sizes, strict=True)]
            step = iter(range(10**9))
            upd = time_interleaved([lambda c=c: c(next(step)) for c in calls], runs)
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
    calls = [lambda e=e, x=x: e.encode_image_array(x) for e, x in zip(encs, xs_in, strict=True)]
    secs = time_interleaved(calls, runs)
    ys = [median_p95(s)[0] * 1e3 for s in secs]
    extra = [{"size": size, "quantization": e.bundle.quantization, "p95_ms": round(median_p95(s)[1] * 1e3, 3)}
             for size, e, s in zip(sizes, encs, secs, strict=True)]
    # x = pixels (side squared): the convolutions' work is proportional to it, so linear is what to expect
    return Sweep("input pixels", "side^2", "image_encode", "ms/frame", [float(v * v) for v in sizes], ys,
                 extra, expect="linear in pixels")


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
        extra.append({"minutes": m, "cpu_s": rep["cpu_s"], "wall_s": rep["wall_s"],
                      "peak_mb": probe["peak_mb"],
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
