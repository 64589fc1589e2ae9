"""firstwords doctor — filled by the profiling issue (#7); for now it says so."""

from __future__ import annotations

import argparse

from edge.errors import FirstwordsError

HELP = "check this machine against a device config and say what to fix"
EXAMPLE = "firstwords doctor --config device_configs/rpi4.toml --bundle work/bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="device config TOML (device_configs/*.toml)")
    parser.add_argument("--bundle", help="model bundle directory or .zip")


def run(args: argparse.Namespace) -> int:
    raise FirstwordsError("'firstwords doctor' is not implemented yet (issue #7)")
