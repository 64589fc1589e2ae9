"""firstwords eval — CVCL's n-way evaluation of a trained checkpoint on held-out images."""

from __future__ import annotations

import argparse

HELP = "evaluate a checkpoint with CVCL's n-way protocol (per-category and overall accuracy, 95% CI, chart)"
EXAMPLE = "firstwords eval work/ckpt --data work/corpus/eval.json --n-way 4 --plot work/eval_4way.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory, or a training run directory (best/, else last/)")
    parser.add_argument("--data", default="work/corpus/eval.json",
                        help="evaluation set: {\"data\": [{\"category\", \"frame_filename\"}]} or CVCL's "
                             "trial file (default: %(default)s)")
    parser.add_argument("--frames-root", help="folder the frame paths are relative to (default: the file's)")
    parser.add_argument("--n-way", type=int, default=4, help="images per trial, target included (CVCL: 4; "
                                                             "also 10, 22) (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=100, help="trials per category (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="trial generation seed (default: %(default)s)")
    parser.add_argument("--plot", help="write a per-category bar chart PNG here")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from firstwords.export import require_torch

    require_torch()
    from firstwords.export.evaluate import evaluate_checkpoint, plot_per_category

    result = evaluate_checkpoint(args.checkpoint, args.data, n_way=args.n_way, trials=args.trials,
                                 seed=args.seed, frames_root=args.frames_root, progress=not args.no_progress)
    print(result.table())
    figures = result.to_dict() | {"checkpoint": str(args.checkpoint), "data": str(args.data), "seed": args.seed}
    if args.plot:
        png = plot_per_category(result, args.plot, title=f"{Path(str(args.checkpoint)).name}: "
                                                         f"{result.n_way}-way, {result.n_trials} trials")
        print(f"chart: {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    return 0
