"""`firstwords adapt`: fit the speech recogniser's acoustic model to the voices of one home (edge.asr_adapt).

From an enrolment (`firstwords enrol`: the speakers' readings of a script, whose prompts say what was said)
and/or recorded sessions of that home, heard with the device's recogniser, its own best hypotheses taken as
what was said (no transcript needed), it estimates a speaker adaptation, written beside the memory: every
later `run` and `replay` into that memory hears through it. An enrolment adapts better: the home's own speech
keeps the words the recogniser mishears misheard (edge.asr_enrol).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "fit speech recognition to a home's voices from an enrolment or recordings (written beside the memory)"
EXAMPLE = ("firstwords adapt --enrolment work/enrolment --bundle work/bundle --memory work/memory.db\n"
           "  firstwords adapt work/session --bundle work/bundle --memory work/memory.db\n"
           "  firstwords adapt recordings/ --bundle work/bundle --memory work/memory.db --minutes 60")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", nargs="?",
                        help="a session (folder, video with a .wav beside it, or a .wav) or a "
                             "folder of session folders recorded in the home the memory learns in (optional "
                             "with --enrolment)")
    parser.add_argument("--enrolment", type=Path,
                        help="an enrolment folder (firstwords enrol): the speakers' readings of a script, "
                             "its prompts taken as what was said (better than recordings alone)")
    parser.add_argument("--bundle", required=True, help="model bundle directory or .zip (its speech model)")
    parser.add_argument("--memory", required=True, type=Path,
                        help="the home's memory file: the adaptation is written beside it "
                             "(memory.db -> memory.speech.adapt) and used by every run and replay into it")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="minutes of speech to hear at most (default: 30; ~10 s of estimation, after "
                             "hearing at ~5x real time per core)")
    parser.add_argument("--config", default="laptop",
                        help="device config (its VAD): a name in device_configs/ or a .toml path "
                             "(default: laptop)")


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.asr_adapt import adapt_home, adaptation_path
    from firstwords.edge.asr_enrol import summary
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.errors import InputError
    from firstwords.edge.runtime import load_config
    from firstwords.edge.sessions import find_sessions, is_session_folder_of_folders

    if not args.minutes > 0:
        raise InputError(f"--minutes must be positive, got {args.minutes}")
    if args.session is None and args.enrolment is None:
        raise InputError("give a recording of the home (SESSION) and/or --enrolment FOLDER to adapt from")
    cfg = load_config(args.config)
    sessions = [] if args.session is None else (
        find_sessions(args.session) if is_session_folder_of_folders(args.session) else [args.session])
    out = adaptation_path(args.memory)
    tty = sys.stderr.isatty()
    last = [-1.0]

    def progress(total: float, budget: float, heard, start: float) -> None:
        done = min(1.0, total / budget)
        if not tty and done - last[0] < 0.1:
            return
        last[0] = done
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        line = f"[{bar}] {total / 60:5.1f} of {budget / 60:g} min of speech heard  last: {heard.text[:40]!r}"
        print(("\r" + line.ljust(110)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    bundle = load_bundle(args.bundle)
    try:
        if args.enrolment is not None:
            print(f"enrolment: {summary(args.enrolment)}", file=sys.stderr)
        if sessions:
            print(f"hearing {len(sessions)} session(s) for up to {args.minutes:g} min of speech ...",
                  file=sys.stderr)
        result = adapt_home(sessions, bundle, out, vad=cfg.audio.vad, max_minutes=args.minutes,
                            on_utterance=progress, enrolment=args.enrolment)
    finally:
        bundle.close()
    if tty:
        print(file=sys.stderr)
    print(f"speaker adaptation written: {out}\n  from {result['speech_minutes']:g} min of speech in "
          f"{result['utterances']} utterances: {result['enrolment']} enrolment readings and "
          f"{result['sessions']} session(s) ({result['left_out']} left "
          f"out: no words the dictionary knows); estimated in {result['seconds']:g} s\n"
          f"  every run and replay into {args.memory} now hears through it (delete the file to stop)")
    print(json.dumps({k: v for k, v in result.items() if k != "heard"}))
    return 0
