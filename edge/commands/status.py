"""firstwords status: how the learner on this device is doing (from the status record beside the memory)."""

from __future__ import annotations

import argparse
import json

HELP = "show the learner's status: state, last frame and utterance, words today, drops, disk, last error"
EXAMPLE = "firstwords status --memory /home/pi/memory.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", required=True, help="the memory file the learner writes")
    parser.add_argument("--json", action="store_true", help="print the record as one JSON line")


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.status import describe_state, format_status, read_status

    record = read_status(args.memory)
    if args.json:
        record.pop("today_words", None)
        print(json.dumps({**record, "state_now": describe_state(record)}))
    else:
        print(format_status(record))
    return 0
