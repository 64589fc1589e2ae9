"""firstwords report: one self-contained HTML page of what the device learned."""

from __future__ import annotations

import argparse

HELP = ("write one self-contained HTML report of what the device learned: vocabulary growth, the words, where "
        "each word is in the picture, how words and images line up, n-way accuracy, the run's facts")
EXAMPLE = ("firstwords report --memory work/memory.db --bundle work/bundle --eval-data work/corpus/eval.json "
           "--session work/session -o report.html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", required=True, help="the memory database (written by replay or run)")
    parser.add_argument("--bundle", required=True, help="the bundle the memory was learned with")
    parser.add_argument("--eval-data", help="CVCL-style eval metadata (e.g. work/corpus/eval.json): frames for "
                        "the localisation maps, the alignment map and the n-way accuracy")
    parser.add_argument("--session", help="the replayed session folder (its session.json gives length and fps)")
    parser.add_argument("--run-stats", help="a file holding the JSON line of `firstwords replay --json` (frames "
                        "dropped, audio overflows, real-time factor)")
    parser.add_argument("-o", "--out", default="report.html", help="the HTML file to write (default: report.html)")
    parser.add_argument("--min-strength", type=float, default=0.2,
                        help="'known' criterion: naming strength at least this (default: 0.2)")
    parser.add_argument("--min-exposures", type=int, default=3,
                        help="'known' criterion: heard in at least this many utterances (default: 3)")
    parser.add_argument("--max-words", type=int, default=200, help="rows of the word table (default: 200; the "
                        "total is stated)")
    parser.add_argument("--no-matplotlib", action="store_true",
                        help="draw the charts with the built-in SVG plotter even when matplotlib is installed")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its own)")


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.errors import InputError
    from firstwords.edge.report import Criterion, build_report

    if args.min_exposures < 1 or not args.min_strength >= 0:
        raise InputError("--min-exposures must be at least 1 and --min-strength at least 0")
    res = build_report(args.memory, args.bundle, args.out, eval_data=args.eval_data, session=args.session,
                       run_stats=args.run_stats, criterion=Criterion(args.min_strength, args.min_exposures),
                       max_words=args.max_words, use_matplotlib=False if args.no_matplotlib else None,
                       threads=args.threads)
    marked = [k for k, v in res.sections.items() if v != "ok"]
    print(f"report written to {res.path} ({res.words} words, {res.known} known; {res.seconds:.1f} s)"
          + (f"; sections with a marked note: {', '.join(marked)}" if marked else ""))
    return 0
