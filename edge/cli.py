"""`firstwords` command line: a thin dispatcher over the library.

Each subcommand lives in its own module (edge/commands/*.py for the device side, export/commands/*.py for
the torch side) with HELP, EXAMPLE, add_arguments(parser) and run(args). Building the parser imports every
command module, so a command module imports heavy libraries (torch, OpenCV, onnxruntime) inside run(), never
at the top: `firstwords --help` never imports torch or opens hardware. Helpers that more than one command
needs live in library modules, not in a command module. (The package sets one BLAS thread before numpy
loads: see edge/__init__.py.)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from firstwords.edge.errors import FirstwordsError

# name -> module; the order is the order shown in --help (the data flow: train -> export -> run).
COMMANDS: dict[str, str] = {
    "demo": "firstwords.edge.commands.demo",
    "train": "firstwords.export.commands.train",
    "eval": "firstwords.export.commands.eval",
    "export": "firstwords.export.commands.export",
    "convert-cvcl": "firstwords.export.commands.convert_cvcl",
    "run": "firstwords.edge.commands.run",
    "replay": "firstwords.edge.commands.replay",
    "enrol": "firstwords.edge.commands.enrol",
    "adapt": "firstwords.edge.commands.adapt",
    "ask": "firstwords.edge.commands.ask",
    "forget": "firstwords.edge.commands.forget",
    "profile": "firstwords.edge.commands.profile",
    "doctor": "firstwords.edge.commands.doctor",
    "report": "firstwords.edge.commands.report",
    "status": "firstwords.edge.commands.status",
    "service": "firstwords.edge.commands.service",
}


def load_command(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firstwords",
        description="An on-device word learner: train CVCL-style dual encoders, export them to int8 ONNX "
                    "bundles, and run them on a small device that keeps learning words from what it sees and "
                    "hears.",
        epilog="Run 'firstwords COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = load_command(name)
        # help is %-formatted by argparse; description is not
        p = sub.add_parser(name, help=mod.HELP.replace("%", "%%"), description=mod.HELP,
                           epilog=f"example:\n  {mod.EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._module.run(args) or 0)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
