"""`firstwords forget`: remove what the memory learned -- a word, everything since a time -- or start fresh."""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from pathlib import Path

HELP = "forget a word or everything since a time (real removal: the database is vacuumed), or --reset"
EXAMPLE = "firstwords forget --word ball --memory work/memory.sqlite"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--word", action="append", metavar="W",
                      help="a word to forget with every moment it was heard in (repeat for several)")
    what.add_argument("--since", metavar="T",
                      help="forget everything learned at or after T: seconds as the memory recorded them "
                           "(replay: seconds into the session; live: Unix time) or an ISO date-time such as "
                           "2026-05-09T14:30 (local time)")
    what.add_argument("--reset", action="store_true",
                      help="start fresh: move the memory file (damaged or not) aside as "
                           "<name>.corrupt-<timestamp>; nothing is deleted")
    parser.add_argument("--memory", required=True, type=Path, metavar="PATH", help="the memory database file")


def parse_time(text: str) -> float:
    from firstwords.edge.errors import InputError

    try:
        t = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text).timestamp()
        except ValueError as e:
            raise InputError(f"--since {text!r}: give seconds (e.g. 3600) or an ISO date-time (e.g. "
                             f"2026-05-09T14:30)") from e
    if not math.isfinite(t):
        raise InputError(f"--since {text!r} must be a finite time")
    return t


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.errors import MemoryStoreError
    from firstwords.edge.memory import AssociativeMemory, reset_memory

    path: Path = args.memory
    if args.reset:
        moved = reset_memory(path)
        if moved is None:
            print(f"no memory at {path}; nothing to reset")
        else:
            print(f"moved {path} aside to {moved}; the next run starts a fresh memory")
        return 0
    if not path.is_file():
        raise MemoryStoreError(f"no memory database at {path}; check --memory")
    with AssociativeMemory.open_existing(path) as mem:
        before = mem.stats()
        if args.word:
            for w in args.word:
                out = mem.forget_word(w.strip().lower())
                state = "forgotten" if out["known"] or out["episodes_removed"] else "was not in memory"
                print(f"{w}: {state}; {out['episodes_removed']} moments removed")
        else:
            out = mem.forget_since(parse_time(args.since))
            print(f"since {out['since']}: {out['episodes_removed']} moments and {out['words_removed']} words removed")
        after = mem.stats()
    print(f"memory now: {after['words']} words, {after['episodes']} moments, {after['bytes_on_disk']} bytes on "
          f"disk (was {before['words']} words, {before['episodes']} moments, {before['bytes_on_disk']} bytes)")
    return 0
