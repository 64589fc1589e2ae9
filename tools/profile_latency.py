#!/usr/bin/env python3
"""Latency per stage on this machine against a device config's budget (the same as `firstwords profile`).

    python tools/profile_latency.py --config device_configs/rpi4.toml --bundle work/bundle --session work/session

Stages: frame preprocessing, image encoding, VAD, speech recognition, utterance encoding, pairing, memory update
and memory query; each its median and p95 over --runs runs with the config's threads, beside the config's
budget, marked OVER when the median is over it (`p95 over` when only the tail is). Human table first; the LAST
line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One BLAS thread, as the runtime should run: the memory's matrix products are small, and OpenBLAS threads
# fighting onnxruntime's for the cores turn a 0.2 ms query into tens of ms (measured; see docs/PROFILING.md).
# Set before numpy is imported; an explicit OPENBLAS_NUM_THREADS in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from firstwords.edge.commands import profile
from firstwords.edge.errors import FirstwordsError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=f"example:\n  {profile.EXAMPLE.replace('firstwords profile', 'python tools/profile_latency.py')}")
    profile.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return profile.run(args)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
