#!/usr/bin/env python3
"""Latency per stage on this machine against a device config's budget (the same as `firstwords profile`).

    python tools/profile_latency.py --config device_configs/rpi4.toml --bundle work/bundle --session
    work/session

Stages: frame preprocessing, image encoding, VAD, speech recognition, utterance encoding, pairing, memory
update and memory query; each its median and p95 over --runs runs with the config's threads, beside the
config's budget, marked OVER when the median is over it (`p95 over` when only the tail is). Human table first;
the LAST line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import sys

import firstwords.edge  # noqa: F401  (first: the package sets numpy's BLAS to one thread before numpy loads)
from firstwords.edge.commands import profile
from firstwords.edge.errors import FirstwordsError

EXAMPLE = profile.EXAMPLE.replace("firstwords profile", "python tools/profile_latency.py")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  " + EXAMPLE)
    profile.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return profile.run(args)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
