"""firstwords profile — latency per stage (and, with --memory, peak RAM) against a device config's budget.

The same as `python tools/profile_latency.py`: a thin layer over edge.profiling. Human table first, then one
JSON line with the figures.
"""

from __future__ import annotations

import argparse

HELP = "measure latency per stage (median, p95) against the device config's budget; --memory adds peak RAM"
EXAMPLE = ("firstwords profile --config device_configs/rpi4.toml --bundle work/bundle --session work/session "
           "--runs 50")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="device config: a TOML path or a name (laptop, rpi4, rpi5, rpi-zero-2w)")
    parser.add_argument("--bundle", help="model bundle directory or .zip (default: work/bundle if present)")
    parser.add_argument("--session", help="a session folder (tools/make_sample_session.py) whose speech and "
                                          "transcript feed the VAD, ASR and utterance stages (default: "
                                          "sentences spoken by espeak-ng)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per stage (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: the config's)")
    parser.add_argument("--words", type=int, help="words in the memory for the memory stages "
                                                  "(default: the config's capacity_words)")
    parser.add_argument("--stages", help="comma-separated subset of: frame_preprocess, image_encode, vad, "
                                         "asr, "
                                         "utterance_encode, pairing, memory_update, memory_query")
    parser.add_argument("--db-dir", help="folder for the temporary memory database (default: the system temp "
                                         "folder; point it at the device's SD card to include its cost)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the runtime's peak RSS in a fresh process (as "
                             "tools/profile_memory.py)")


def run(args: argparse.Namespace) -> int:
    import json

    from firstwords.edge import memory_probe, profiling
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.profile_stats import resolve_bundle

    cfg = load_device_config(resolve_device_config(args.config))
    bundle = resolve_bundle(args.bundle)
    stages = (tuple(s.strip() for s in args.stages.split(",") if s.strip()) if args.stages
              else profiling.STAGES)
    report = profiling.profile_latency(cfg, bundle, runs=args.runs, threads=args.threads,
                                       session=args.session,
                                       memory_words=args.words, stages=stages, db_dir=args.db_dir)
    print(profiling.format_latency_table(report))
    figures = report.to_dict()
    if args.memory:
        spec = memory_probe.ProbeSpec(bundle=bundle, threads=report.threads, words=report.memory_words,
                                   capacity_episodes=cfg.memory.capacity_episodes, db_dir=args.db_dir)
        probe = memory_probe.run_probe(spec)
        print()
        print(memory_probe.format_memory_table(probe, cfg.budget.ram_mb))
        figures["memory"] = {"peak_mb": probe["peak_mb"], "budget_mb": cfg.budget.ram_mb,
                             "over": probe["peak_mb"] > cfg.budget.ram_mb, "steps": probe["steps"]}
    print(json.dumps(figures))
    return 0
