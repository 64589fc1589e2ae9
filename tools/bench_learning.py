#!/usr/bin/env python3
"""Does `compact` learn words? Train it on the sample corpus, evaluate held-out instances 4-way (CVCL's
protocol), and run the shuffled-pairs control the same way.

    python tools/bench_learning.py                       # ~10 min per run on 2 cores, work/corpus
    python tools/bench_learning.py --minutes 3           # the demo's budget

Both runs share one backbone-feature cache (the frames are the same; only the pairing differs). The budget
of each run includes its share of feature extraction. Human-readable lines first; the LAST line is one JSON
object with acc_4way, shuffled_acc_4way, their 95 % intervals, seconds and steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "work" / "corpus",
                    help="sample corpus folder (built with tools/build_sample_corpus.py if missing)")
    ap.add_argument("--out", type=Path, default=REPO / "work" / "bench_learning",
                    help="runs go here (replaced)")
    ap.add_argument("--config", default="compact", help="model config (default: compact)")
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per run (default: 10)")
    ap.add_argument("--trials", type=int, default=100, help="trials per category (default: 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int,
                    help="torch threads (default: all cores for features, 1 for steps)")
    ap.add_argument("--no-shuffled", action="store_true", help="skip the shuffled-pairs control")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    if not (args.corpus / "train.json").is_file():
        print(f"building the sample corpus in {args.corpus} ...", flush=True)
        subprocess.run([sys.executable, "-m", "firstwords.export.sample_corpus", "--out", str(args.corpus),
                        "--no-progress"], check=True)

    import logging

    from firstwords.export.evaluate import evaluate_checkpoint
    from firstwords.export.train import TrainOptions, describe, train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    eval_json = args.corpus / "eval.json"
    runs = [("matched", False)] + ([] if args.no_shuffled else [("shuffled", True)])
    figures: dict = {"config": args.config, "minutes_budget": args.minutes, "corpus": str(args.corpus)}
    t_all = time.time()
    for name, shuffled in runs:
        out = args.out / name
        if out.exists():
            shutil.rmtree(out)
        print(f"\n== {name} pairs: training {args.config} for at most {args.minutes:g} min", flush=True)
        res = train(TrainOptions(data=args.corpus / "train.json", out=out, config=args.config, seed=args.seed,
                                 max_minutes=args.minutes, shuffled=shuffled, threads=args.threads,
                                 cache_dir=args.out / "feature_cache", progress=not args.no_progress))
        print(describe(res))
        ev = evaluate_checkpoint(out, eval_json, n_way=4, trials=args.trials, seed=args.seed)
        print(f"held-out instances, 4-way ({name} pairs):")
        print(ev.table())
        key = "" if name == "matched" else "shuffled_"
        figures.update({f"{key}acc_4way": round(ev.overall, 4), f"{key}ci95": [round(x, 4) for x in ev.ci95],
                        f"{key}seconds": res.seconds, f"{key}steps": res.steps, f"{key}epochs": res.epochs,
                        f"{key}stopped_by": res.stopped_by, f"{key}per_category":
                            {k: round(v, 3) for k, v in sorted(ev.per_category.items())}})
        figures["n_trials"] = ev.n_trials
        figures["chance"] = ev.chance
        figures["n_train_utterances"] = res.n_train
    figures["total_seconds"] = round(time.time() - t_all, 1)
    acc = figures["acc_4way"]
    print(f"\ncompact, held-out 4-way: {acc:.3f} (target >= 0.70: {'PASS' if acc >= 0.70 else 'FAIL'})")
    if "shuffled_acc_4way" in figures:
        sh = figures["shuffled_acc_4way"]
        verdict = "PASS" if abs(sh - 0.25) <= 0.05 else "FAIL"
        print(f"shuffled-pairs control: {sh:.3f} (target 0.25 +- 0.05: {verdict})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
