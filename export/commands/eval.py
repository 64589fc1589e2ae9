"""firstwords eval — CVCL's n-way evaluation of a checkpoint or a bundle, in both of CVCL's directions."""

from __future__ import annotations

import argparse

HELP = ("evaluate a checkpoint or bundle with CVCL's n-way protocol, both directions (word -> images, "
        "image -> words): per-category and overall accuracy, 95% CI, chart")
EXAMPLE = ("firstwords eval work/ckpt --data work/corpus/eval.json --n-way 4 --plot work/eval_4way.png\n"
           "  firstwords eval work/cvcl_bundle --data labeled_s/eval_test.json --word-for cat=kitty "
           "--direction both")


def _mapping(text: str) -> tuple[str, str]:
    cat, sep, word = text.partition("=")
    if not sep or not cat.strip() or not word.strip():
        raise argparse.ArgumentTypeError(f"expected CATEGORY=WORD (e.g. cat=kitty), got {text!r}")
    return cat.strip(), word.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="model",
                        help="checkpoint directory, a training run directory (last/, else best/), or a bundle "
                             "(directory or .zip, e.g. from convert-cvcl)")
    parser.add_argument("--data", default="work/corpus/eval.json",
                        help="evaluation set: {\"data\": [{\"category\", \"frame_filename\"}]}, CVCL's trial file "
                             "(eval_test.json ...), or a folder of category folders for CVCL's object-category "
                             "evaluation (default: %(default)s)")
    parser.add_argument("--direction", choices=("image", "text", "both"), default="both",
                        help="image: a word against n images (CVCL's main test); text: an image against n words "
                             "(default: %(default)s)")
    parser.add_argument("--frames-root", help="folder the frame paths are relative to (default: the file's)")
    parser.add_argument("--n-way", type=int, default=4, help="images per trial, target included (CVCL: 4; "
                                                             "also 10, 22) (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=100, help="trials per category (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="trial generation seed (default: %(default)s)")
    parser.add_argument("--word-for", type=_mapping, action="append", default=[], metavar="CATEGORY=WORD",
                        help="embed WORD for CATEGORY (CVCL's --use_kitty_label is --word-for cat=kitty); "
                             "repeatable")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--bare-labels", dest="bare_labels", action="store_const", const=True, default=None,
                        help="embed a category word alone, as CVCL's eval.py (default for converted CVCL bundles)")
    labels.add_argument("--sos-eos-labels", dest="bare_labels", action="store_const", const=False,
                        help="embed a category word as <sos> word <eos>, as utterances (default otherwise)")
    parser.add_argument("--write-trials", help="with a folder as --data: save the generated trials here (JSON)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads for a bundle")
    parser.add_argument("--plot", help="write a per-category bar chart PNG here")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from firstwords.export import require_torch

    require_torch()
    from firstwords.export.evaluate import evaluate, plot_per_category

    directions = ("image", "text") if args.direction == "both" else (args.direction,)
    results = evaluate(args.checkpoint, args.data, directions=directions, n_way=args.n_way, trials=args.trials,
                       seed=args.seed, frames_root=args.frames_root, progress=not args.no_progress,
                       bare_labels=args.bare_labels, word_for=dict(args.word_for), threads=args.threads,
                       write_trials=args.write_trials)
    for r in results.values():
        print(r.table())
        print()
    first = next(iter(results.values()))
    figures = {"model": str(args.checkpoint), "data": str(args.data), "seed": args.seed, "n_way": first.n_way,
               "directions": list(results), **{d: r.to_dict() for d, r in results.items()}}
    if args.plot:
        png = plot_per_category(list(results.values()), args.plot,
                                title=f"{Path(str(args.checkpoint)).name}: {first.n_way}-way")
        print(f"chart: {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    return 0
