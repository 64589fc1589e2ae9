"""Peak memory of the runtime, measured in a fresh process step by step (imports, bundle sessions, inference,
a filled memory, a replay), so that earlier allocations do not hide a later peak.

    probe = run_probe(ProbeSpec(bundle="work/bundle", threads=2, words=10_000))
    probe["peak_mb"], probe["steps"]          # VmHWM, and RSS after each step
    print(format_memory_table(probe, budget_mb=config.budget.ram_mb))
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.profile_stats import fill_memory, synthetic_frames

log = logging.getLogger(__name__)


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


@dataclass
class ProbeSpec:
    """What one fresh measuring process loads, step by step."""
    config: str = "laptop"  # device config (name or path) the replay's runtime is built from
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
    hear_seconds: float = 0.0  # then the device recogniser (the bundle's speech model) hears this much of
    # the session's soundtrack, in 3 s pieces: the audio path's peak, everything else still loaded


# ---------------------------------------------------------------------------------------------- a long replay

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
    """The transcript repeated every `period` seconds up to `seconds` (edge.pair.TimedUtterance objects)."""

    if period <= 0:
        raise InputError("the session's duration must be positive to loop it")
    out, offset = [], 0.0
    while offset < seconds:
        for u in utterances:
            if offset + u.start >= seconds:
                return out
            out.append(replace(u, start=offset + u.start, end=offset + u.end,
                               words=tuple(replace(w, start=offset + w.start,
                                                   end=offset + w.end) for w in u.words)))
        offset += period
    return out


def session_files(session: str | Path) -> tuple[Path, Path, float]:
    """(video, transcript, duration s) of a session folder written by tools/make_sample_session.py."""
    from firstwords.edge.replay import discover_session, session_duration

    s = discover_session(session)
    if s.transcript is None:
        raise DataError(f"{session}: the growth sweep replays the transcript path; this session has no "
                        "transcript")
    if s.frames is None or not s.frames.is_file():
        raise DataError(f"{session}: the sweep loops a video file; this session has frames in a folder")
    duration = session_duration(s)
    if not duration:
        raise DataError(f"{session}: cannot tell the session's duration")
    return s.frames, s.transcript, float(duration)


def replay_looped(runtime: Any, session: str | Path, minutes: float) -> Any:
    """Replay `minutes` of a session (looped if shorter) through the learner at full speed, transcript path,
    with an edge.runtime.Runtime's encoder, memory and options."""
    from firstwords.edge.learner import Learner
    from firstwords.edge.replay import load_utterances

    video, transcript, duration = session_files(session)
    seconds = minutes * 60.0
    utts = looped_utterances(load_utterances(transcript), duration, seconds)
    opts = replace(runtime.options, realtime=False, clock_origin=0.0)
    learner = Learner(runtime.encoder, runtime.memory, LoopedFrames(video, opts.fps, seconds),
                      transcript=utts, options=opts)
    return learner.run(install_signal_handlers=False)


def hear_soundtrack(spec: ProbeSpec, bundle: Any) -> dict[str, Any]:
    """The device config's recogniser (as the runtime builds it) hears the start of the session's
    soundtrack."""
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.hear import SAMPLE_RATE, AudioFileSource
    from firstwords.edge.replay import discover_session
    from firstwords.edge.runtime import make_speech

    s = discover_session(spec.session)
    if s.audio is None:
        raise DataError(f"{spec.session}: no soundtrack to hear (--hear-seconds needs one)")
    cfg = load_device_config(resolve_device_config(spec.config))
    _, rec = make_speech(cfg.audio.vad, [], bundle=bundle)
    heard = words = 0
    src = AudioFileSource(s.audio, speed=None, block=3 * SAMPLE_RATE)  # streamed, as a microphone delivers
    try:
        for block in src:
            words += len(rec.transcribe(block.samples).words)
            heard += len(block.samples)
            if heard >= spec.hear_seconds * SAMPLE_RATE:
                break
    finally:
        src.close()
    return {"seconds": round(heard / SAMPLE_RATE, 1), "words": words,
            "speech_model": getattr(rec, "lm_source", "?")}


# ------------------------------------------------------------------------------------------------ the probe

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
    from firstwords.edge.runtime import build_runtime

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
            rt = build_runtime(spec.config, enc, mem, realtime=False, fps=spec.fps,  # wall time to
                               max_frames=spec.max_frames, frame_queue=spec.frame_queue)  # other programs
            rep = replay_looped(rt, spec.session, spec.replay_minutes)
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
        if spec.hear_seconds and spec.session and spec.bundle:
            out["heard"] = hear_soundtrack(spec, b)
            mark(f"+ recogniser, {out['heard']['seconds']:g} s of speech heard")
        if mem is not None:
            mem.close()
    finally:
        tmp.cleanup()
    out["steps"] = steps
    out["peak_mb"] = max(s["hwm_mb"] for s in steps)
    return out


def run_probe(spec: ProbeSpec, timeout: float = 1800.0) -> dict[str, Any]:
    """probe_main in a fresh Python process (so earlier allocations do not hide this one's peak)."""
    cmd = [sys.executable, "-m", "firstwords.edge.memory_probe", "--probe", json.dumps(asdict(spec))]
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
        share = "OVER" if peak > budget_mb else f"ok ({peak / budget_mb:.0%})"
        verdict = f"  budget {budget_mb:g} MB: {share}"
    lines.append(f"{'peak (VmHWM)':<44} {peak:>8.1f}{verdict}")
    return "\n".join(lines)


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="internal: the fresh measuring process of edge.memory_probe")
    ap.add_argument("--probe", required=True, help="ProbeSpec as JSON")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = ProbeSpec(**json.loads(a.probe))
    print(json.dumps(probe_main(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
