#!/usr/bin/env python3
"""Peak resident memory of the runtime process, broken down, with onnxruntime's memory options side by side.

    python tools/profile_memory.py --config device_configs/rpi-zero-2w.toml --bundle work/bundle \
        --session work/session [--words 10000] [--replay-minutes 1]

Each measurement runs in a fresh Python process that loads the runtime step by step and records its resident
set (VmRSS) after each step and its peak (VmHWM, /proc/self/status; ru_maxrss where there is no /proc):
Python + numpy, + onnxruntime imported, + both ONNX sessions, + inference, + the memory filled to --words
words (its in-RAM matrix and the SQLite file), + a full-speed replay of the session. Then the sessions alone
under onnxruntime's memory options: the CPU memory arena off (enable_cpu_mem_arena=False), memory patterns off
(enable_mem_pattern=False), weight pre-packing off (session.disable_prepacking=1), and all three.
Human tables first; the LAST line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import firstwords.edge  # noqa: F401  (first: the package sets numpy's BLAS to one thread before numpy loads)
from firstwords.edge import memory_probe
from firstwords.edge.config import load_device_config, resolve_device_config
from firstwords.edge.errors import FirstwordsError
from firstwords.edge.profile_stats import resolve_bundle

VARIANTS = (
    memory_probe.OrtMemoryOptions(),
    memory_probe.OrtMemoryOptions(arena=False),
    memory_probe.OrtMemoryOptions(mem_pattern=False),
    memory_probe.OrtMemoryOptions(prepacking=False),
    memory_probe.OrtMemoryOptions(arena=False, mem_pattern=False, prepacking=False),
)


def measure(args: argparse.Namespace) -> dict:
    cfg = load_device_config(resolve_device_config(args.config))
    bundle = resolve_bundle(args.bundle)
    threads = args.threads or cfg.model.threads
    words = args.words if args.words is not None else cfg.memory.capacity_words
    base = memory_probe.ProbeSpec(config=args.config, bundle=bundle, threads=threads, words=words,
                                  fps=cfg.pairing.fps, max_frames=cfg.pairing.max_frames,
                                  frame_queue=cfg.pairing.frame_queue,
                                  capacity_episodes=cfg.memory.capacity_episodes, db_dir=args.db_dir)
    figures: dict = {"device": cfg.name, "bundle": bundle, "threads": threads, "words": words,
                     "budget_mb": cfg.budget.ram_mb}

    full = memory_probe.ProbeSpec(**{**dataclasses.asdict(base), "session": args.session,
                                  "replay_minutes": args.replay_minutes if args.session else 0.0,
                                  "hear_seconds": args.hear_seconds if args.session else 0.0})
    probe = memory_probe.run_probe(full)
    what = f"{words} words" + (f", {args.replay_minutes:g} min replay of "
                               f"{args.session}" if args.session else "")
    print(f"runtime process on this machine ({threads} threads, bundle {bundle}, {what}):")
    print(memory_probe.format_memory_table(probe, cfg.budget.ram_mb))
    if not args.session:
        print("note: no --session given, so no replay ran; the peak is the loaded runtime's")
    steps = {s["step"]: s for s in probe["steps"]}
    bd = memory_probe.breakdown(probe)
    parts = {"python_baseline_mb": bd[0][1], "onnxruntime_import_mb": round(bd[1][2], 1),
             "sessions_mb": round(bd[2][2], 1) if len(bd) > 2 else None,
             "inference_mb": round(bd[3][2], 1) if len(bd) > 3 else None}
    mem_step = next((s for name, s in steps.items() if name.startswith("+ memory")), None)
    if mem_step is not None:
        parts["memory_mb"] = round(mem_step["rss_mb"] - bd[3][1], 1)
        parts["memory_matrix_mb"] = mem_step.get("matrix_mb")
    figures.update({"peak_mb": probe["peak_mb"], "over_budget": probe["peak_mb"] > cfg.budget.ram_mb,
                    "breakdown": parts, "steps": probe["steps"], "replay": probe.get("replay")})

    if not args.no_variants:
        print("\nonnxruntime memory options (both sessions + inference, no memory, fresh process each):")
        print(f"{'options':<46} {'sessions +MB':>12} {'inference +MB':>14} {'peak MB':>8} {'vs default':>10}")
        rows = []
        default_peak = None
        for v in VARIANTS:
            spec = memory_probe.ProbeSpec(bundle=bundle, threads=threads, words=0, db_dir=args.db_dir,
                                       ort=dataclasses.asdict(v))
            p = memory_probe.run_probe(spec)
            b = memory_probe.breakdown(p)
            row = {"options": v.label, "sessions_mb": round(b[2][2], 1), "inference_mb": round(b[3][2], 1),
                   "peak_mb": p["peak_mb"]}
            default_peak = default_peak if default_peak is not None else p["peak_mb"]
            row["peak_vs_default"] = round(p["peak_mb"] / default_peak, 3)
            rows.append(row)
            print(f"{v.label:<46} {row['sessions_mb']:>12.1f} {row['inference_mb']:>14.1f} "
                  f"{row['peak_mb']:>8.1f} "
                  f"{row['peak_vs_default']:>10.3f}")
        best = min(rows, key=lambda r: r["peak_mb"])
        print(f"lowest peak: {best['options']} ({best['peak_mb']:.1f} MB, "
              f"{default_peak - best['peak_mb']:+.1f} MB saved vs default)")
        figures["ort_options"] = rows
    verdict = "OVER" if figures["over_budget"] else "within"
    print(f"\npeak RSS {figures['peak_mb']:.1f} MB: {verdict} the '{cfg.name}' budget of "
          f"{cfg.budget.ram_mb:g} MB")
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  python tools/profile_memory.py --config device_configs/"
                                        "rpi-zero-2w.toml --bundle work/bundle --session work/session "
                                        "--words 10000")
    ap.add_argument("--config", required=True, help="device config: TOML path or name")
    ap.add_argument("--bundle", help="model bundle (default: work/bundle if present)")
    ap.add_argument("--session", help="session folder to replay while measuring (transcript path, full "
                                      "speed)")
    ap.add_argument("--replay-minutes", type=float, default=1.0,
                    help="minutes of the session to replay (looped if shorter; default: %(default)s)")
    ap.add_argument("--hear-seconds", type=float, default=60.0,
                    help="then the device's recogniser hears this much of the session's soundtrack, all else "
                         "else still loaded: the audio path's peak (default: %(default)s; 0: skip)")
    ap.add_argument("--words", type=int, help="words in the memory (default: the config's capacity_words)")
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: the config's)")
    ap.add_argument("--db-dir", help="folder for the temporary memory database (default: system temp)")
    ap.add_argument("--no-variants", action="store_true", help="skip the onnxruntime memory options")
    ap.add_argument("--json-out", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    try:
        figures = measure(args)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
