#!/usr/bin/env python3
"""How cost grows: sweep one variable at a time and fit the growth exponent (log-log slope).

    python tools/profile_growth.py --config device_configs/laptop.toml --bundle work/bundle \
        --session work/session --checkpoint work/ckpt [--quick] [--out work/profile]

Sweeps (each alone, everything else at the config's setting):
  session length  1, 10, 60 min of full-speed replay (the sample session looped; transcript path), each in a
                  fresh process: CPU time (all threads; wall time beside it), peak RSS, database size
                                                                          -> expected linear (exponent ~1)
  memory size     100, 1k, 10k words: memory_update and memory_query medians -> expected at most linear
  input size      96..224 px: image_encode median against the pixel count (side^2), one bundle per size
                  exported from --checkpoint with the config's quantization (cached under --out/bundles)
                                                                          -> expected linear (exponent ~1)
  threads         1..4 onnxruntime threads: image_encode median            -> falls up to the core count
A growth exponent above 1.25 where at most linear is expected is printed as a FINDING. Table first, a PNG plot
in --out, and the LAST line is one JSON object with the figures. --quick: small sizes for a test run.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import firstwords.edge  # noqa: F401  (first: the package sets numpy's BLAS to one thread before numpy loads)
from firstwords.edge import growth, memory_probe, profile_stats
from firstwords.edge.bundle import load_bundle
from firstwords.edge.config import load_device_config, resolve_device_config
from firstwords.edge.errors import DataError, FirstwordsError
from firstwords.edge.profile_stats import resolve_bundle

EXPORT_SNIPPET = ("import sys; from firstwords.edge.cli import main; sys.exit(main(['export', "
                  "*sys.argv[1:]]))")



def numbers(text: str, kind=float) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def size_bundles(checkpoint: str, sizes: list[int], cfg, out: Path, corpus: Path | None) -> dict[int, Path]:
    """One bundle per input size, exported from the checkpoint (cached: an existing bundle is reused)."""
    bundles = {}
    for size in sizes:
        dest = out / "bundles" / f"{cfg.model.quantization}-{size}"
        if not (dest / "manifest.json").is_file():
            cmd = [sys.executable, "-c", EXPORT_SNIPPET, checkpoint, "-o", str(dest), "--config",
                   str(cfg.path),
                   "--input-size", str(size), "--skip-parity", "--calib-frames", "32", "--threads", "2"]
            if corpus is not None:
                cmd += ["--eval-data", str(corpus / "eval.json"), "--calib-data", str(corpus / "train.json")]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise DataError(f"exporting {checkpoint} at {size} px failed: "
                                + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:]))
            print(f"  exported {size} px bundle in {time.perf_counter() - t0:.0f} s -> {dest}", flush=True)
        bundles[size] = dest
    return bundles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  python tools/profile_growth.py --config "
                                        "device_configs/laptop.toml "
                                        "--bundle work/bundle --session work/session --checkpoint work/ckpt")
    ap.add_argument("--config", required=True, help="device config: TOML path or name")
    ap.add_argument("--bundle", help="model bundle (default: work/bundle if present)")
    ap.add_argument("--session", help="session folder to replay (tools/make_sample_session.py); without it "
                                      "the "
                                      "session-length sweep is skipped")
    ap.add_argument("--checkpoint", help="trained checkpoint to export at each input size; without it the "
                                         "input-size sweep is skipped")
    ap.add_argument("--corpus", default="work/corpus", help="corpus whose frames calibrate int8 exports "
                                                            "(default: %(default)s)")
    ap.add_argument("--out", default="work/profile", help="folder for the plot, JSON and exported bundles")
    ap.add_argument("--minutes", type=numbers, help="session lengths in minutes (default 1,10,60; quick "
                                                    "0.25,0.5,1)")
    ap.add_argument("--words", type=lambda t: numbers(t, int), help="memory sizes (default 100,1000,10000)")
    ap.add_argument("--sizes", type=lambda t: numbers(t, int), help="input sizes px (default "
                                                                    "96,128,160,192,224)")
    ap.add_argument("--threads", type=lambda t: numbers(t, int), help="thread counts (default 1,2,3,4)")
    ap.add_argument("--runs", type=int, help="timed runs per point (default 30; quick 8)")
    ap.add_argument("--skip", default="", help="comma-separated sweeps to skip: length, memory, size, "
                                               "threads")
    ap.add_argument("--quick", action="store_true", help="small sweeps (tests, a first look)")
    args = ap.parse_args(argv)
    progress = logging.getLogger("firstwords.edge.growth")  # one line per measured point
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("  %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
    try:
        figures = run(args)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    return 0


def run(args: argparse.Namespace) -> dict:
    cfg = load_device_config(resolve_device_config(args.config))
    bundle = resolve_bundle(args.bundle)
    b = load_bundle(bundle)
    quick = args.quick
    minutes = args.minutes or ([0.25, 0.5, 1.0] if quick else [1.0, 10.0, 60.0])
    words = args.words or ([100, 300, 1000] if quick else [100, 1000, 10_000])
    sizes = args.sizes or ([96, 128] if quick else [96, 128, 160, 192, 224])
    threads = args.threads or ([1, 2] if quick else [1, 2, 3, 4])
    runs = args.runs or (8 if quick else 30)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps: list[growth.Sweep] = []
    notes: list[str] = []
    t_all = time.perf_counter()

    if "length" not in skip and args.session:
        print(f"session length: replaying {args.session} looped to {minutes} min (fresh process each) ...",
              flush=True)
        spec = memory_probe.ProbeSpec(bundle=bundle, threads=cfg.model.threads, session=args.session,
                                      fps=cfg.pairing.fps,
                                   max_frames=cfg.pairing.max_frames, frame_queue=cfg.pairing.frame_queue,
                                   capacity_episodes=cfg.memory.capacity_episodes)
        sweeps.append(growth.sweep_session_length(spec, minutes))
    elif "length" not in skip:
        notes.append("session-length sweep skipped: give --session (tools/make_sample_session.py writes one)")
    if "memory" not in skip:
        print(f"memory size: {words} words ...", flush=True)
        sweeps.extend(growth.sweep_memory_size(b.embedding_dim, words, runs, frames=16))
    if "size" not in skip and args.checkpoint:
        print(f"input size: {sizes} px (exporting from {args.checkpoint}) ...", flush=True)
        corpus = Path(args.corpus) if (Path(args.corpus) / "train.json").is_file() else None
        bundles = size_bundles(args.checkpoint, sizes, cfg, out, corpus)
        sweeps.append(growth.sweep_input_size(bundles, cfg.model.threads, runs))
    elif "size" not in skip:
        notes.append("input-size sweep skipped: give --checkpoint to export the model at each size")
    if "threads" not in skip:
        print(f"threads: {threads} ...", flush=True)
        sweeps.append(growth.sweep_threads(b, threads, runs))

    print()
    print(growth.format_sweeps(sweeps))
    findings = []
    for s in sweeps:
        e = s.exponent
        if e is None:
            continue
        if s.variable != "threads" and profile_stats.growth_verdict(e) == "SUPER-LINEAR":
            findings.append(f"{s.metric} grows super-linearly with {s.variable} (exponent {e:.2f})")
    for n in notes:
        print(f"note: {n}")
    print("FINDING: " + "; ".join(findings) if findings else "no super-linear growth found")
    png = growth.plot_growth(sweeps, out / "growth.png")
    if png is not None:
        print(f"plot: {png}")
    figures = {"device": cfg.name, "bundle": bundle, "quick": quick, "sweeps": [s.to_dict() for s in sweeps],
               "findings": findings, "notes": notes, "plot": str(png) if png else None,
               "seconds": round(time.perf_counter() - t_all, 1)}
    (out / "growth.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return figures


if __name__ == "__main__":
    sys.exit(main())
