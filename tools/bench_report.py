"""How long `firstwords report` takes on a large memory (10,000 words, 50,000 remembered moments by default).

The memory is written through the memory's own store (edge.report.bench.synthetic_memory) with the bundle's
embedding dim; then the report is built from it, timed. Human table first; the last line is one JSON object:
{"words", "episodes", "build_memory_seconds", "report_seconds", "report_bytes", "under_a_minute"}.

    python tools/bench_report.py --bundle work/bundle [--eval-data work/corpus/eval.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from firstwords.edge.bundle import load_bundle
from firstwords.edge.report import build_report
from firstwords.edge.report.bench import synthetic_memory


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="a bundle (its embedding dim sets the memory's)")
    ap.add_argument("--eval-data", help="eval metadata for the sections that need frames (optional)")
    ap.add_argument("--words", type=int, default=10_000)
    ap.add_argument("--episodes", type=int, default=50_000)
    ap.add_argument("--out", help="keep the report here (default: a temporary folder)")
    args = ap.parse_args(argv)
    bundle = load_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="firstwords-bench-report-") as tmp:
        t0 = time.monotonic()
        mem = synthetic_memory(Path(tmp) / "memory.db", bundle.embedding_dim, args.words, args.episodes)
        built = time.monotonic() - t0
        out = Path(args.out) if args.out else Path(tmp) / "report.html"
        res = build_report(mem, bundle, out, eval_data=args.eval_data)
        size = out.stat().st_size
    figures = {"words": res.words, "episodes": args.episodes, "build_memory_seconds": round(built, 2),
               "report_seconds": round(res.seconds, 2), "report_bytes": size, "under_a_minute": res.seconds < 60}
    print(f"{'memory':<28} {res.words} words, {args.episodes} moments (written in {built:.1f} s)")
    print(f"{'report':<28} {res.seconds:.1f} s, {size:,} bytes, {res.known} words known")
    print(json.dumps(figures))
    return 0 if res.seconds < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
