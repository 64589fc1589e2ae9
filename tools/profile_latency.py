#!/usr/bin/env python3
"""Latency per stage on this machine against a device config's budget: `firstwords profile`, as a script.

    python tools/profile_latency.py --config rpi4 --bundle work/bundle --session work/session

Stages: frame preprocessing, image encoding, VAD, speech recognition, utterance encoding, pairing, memory
update and memory query; each its median and p95 over --runs runs with the config's threads, beside the
config's budget, marked OVER when the median is over it (`p95 over` when only the tail is). Human table first;
the LAST line is one JSON object with the figures. `--help` lists the options (those of `firstwords profile`).
"""

from __future__ import annotations

import sys

from firstwords.edge.cli import main

if __name__ == "__main__":
    sys.exit(main(["profile", *sys.argv[1:]]))
