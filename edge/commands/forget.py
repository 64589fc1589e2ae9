"""`firstwords forget`: remove what the memory learned -- a word, everything since a time -- or start fresh.

While another process writes the memory (a running `run` or `replay`), forget asks that writer to forget and
waits for it: the writer holds the words in RAM, so only it can make sure nothing forgotten comes back.
"""

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
                      help="a word to forget with every moment it was heard in (repeat for several); written "
                           "as you like (\"Ball\", \"ball!\"): it is normalised as learning normalises words")
    what.add_argument("--since", metavar="T",
                      help="forget everything learned at or after T: seconds as the memory recorded them "
                           "(replay: seconds into the session; live: Unix time) or an ISO date-time such as "
                           "2026-05-09T14:30 (local time)")
    what.add_argument("--reset", action="store_true",
                      help="start fresh: move the memory file (damaged or not) aside as "
                           "<name>.corrupt-<timestamp>; nothing is deleted")
    parser.add_argument("--memory", required=True, type=Path, metavar="PATH", help="the memory database file")
    parser.add_argument("--wait", type=float, default=60.0, metavar="S",
                        help="while another process writes the memory: how long to wait for it to apply the "
                             "forget (default: 60 s; it applies it later in any case)")


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


def _say(typed: str, out: dict) -> str:
    if "since" in out:
        return (f"since {out['since']}: {out['episodes_removed']} moments and {out['words_removed']} words "
                f"removed")
    as_typed = "" if typed == out["word"] else f" (as {out['word']!r})"
    if not out["known"] and not out["episodes_removed"]:
        return f"{typed}{as_typed}: was not in memory; nothing removed"
    return f"{typed}{as_typed}: forgotten; the word and {out['episodes_removed']} moments removed"


def _ask_writer(path: Path, holder: str, jobs: list[tuple[str, str, str]], wait: float) -> int:
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.memory_files import writer_holder
    from firstwords.edge.memory_forget import request_forget, wait_for_request

    print(f"{path} is being written by {holder}; asking it to forget and waiting up to {wait:g} s")
    ids = [request_forget(path, kind, value) for _, kind, value in jobs]
    for (typed, _, _), rid in zip(jobs, ids, strict=True):
        out = wait_for_request(path, rid, wait)
        if out is None and writer_holder(path) is None:  # the writer stopped: a writable open applies it
            AssociativeMemory.open_existing(path).close()
            out = wait_for_request(path, rid, 0.0)
        if out is None:
            print(f"{typed}: asked; the writer has not applied it yet. It will before its next update or "
                  f"when it stops, and nothing forgotten comes back; run forget again later to see what was "
                  f"removed")
        else:
            print(_say(typed, out))
    return 0


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.errors import MemoryStoreError
    from firstwords.edge.memory import AssociativeMemory, reset_memory
    from firstwords.edge.memory_files import writer_holder
    from firstwords.edge.memory_moment import word_as_learned

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
    jobs = ([(w, "word", word_as_learned(w)) for w in args.word] if args.word
            else [(args.since, "since", repr(parse_time(args.since)))])  # all checked before anything changes
    holder = writer_holder(path)
    if holder is not None:
        return _ask_writer(path, holder, jobs, args.wait)
    with AssociativeMemory.open_existing(path) as mem:
        before = mem.stats()
        for typed, kind, value in jobs:
            out = mem.forget_word(value) if kind == "word" else mem.forget_since(float(value))
            print(_say(typed, out))
        after = mem.stats()
    print(f"memory now: {after['words']} words, {after['episodes']} moments, {after['bytes_on_disk']} bytes "
          f"on disk (was {before['words']} words, {before['episodes']} moments, {before['bytes_on_disk']} "
          f"bytes)")
    return 0
