"""Arguments of `firstwords train` and `python -m firstwords.export.train`.

argparse only: importable without torch (the CLI builds every command's parser for --help)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="compact", help="model config: a name (compact, compact_lstm, "
                   "compact_transformer, compact_scratch, cvcl) or a JSON file (default: compact)")
    p.add_argument("--data", type=Path, required=True, help="training metadata JSON (CVCL's format)")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="run directory (checkpoints, metrics, curves)")
    p.add_argument("--val-data", type=Path, help="validation metadata (default: val.json beside --data)")
    p.add_argument("--eval-data", type=Path, help="held-out n-way set tracked while training "
                   "(default: eval.json beside --data)")
    p.add_argument("--frames-root", type=Path, help="folder the frame paths are relative to "
                   "(default: the metadata file's folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="epochs (default: the config's)")
    p.add_argument("--steps", type=int, help="stop after this many optimiser steps in all")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget, feature caching included "
                   "(e.g. 3 for a demo)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the config's)")
    p.add_argument("--lr", type=float, help="learning rate for every trainable part (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue the run in -o from its last checkpoint")
    p.add_argument("--shuffled", action="store_true", help="CVCL's shuffled-pairs control")
    p.add_argument("--single-frame", action="store_true", help="CVCL's ablation: first frame of each window")
    p.add_argument("--cache-dir", type=Path, help="where backbone features are cached "
                   "(default: feature_cache beside -o)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (image mode)")
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_argv(a: argparse.Namespace) -> list[str]:
    """The parsed options back as command-line arguments (to relaunch under torchrun)."""
    out = ["--config", str(a.config), "--data", str(a.data), "-o", str(a.out), "--seed", str(a.seed),
           "--workers", str(a.workers)]
    for flag, value in [("--val-data", a.val_data), ("--eval-data", a.eval_data),
                        ("--frames-root", a.frames_root),
                        ("--epochs", a.epochs), ("--steps", a.steps), ("--max-minutes", a.max_minutes),
                        ("--batch-size", a.batch_size), ("--lr", a.lr), ("--cache-dir", a.cache_dir),
                        ("--threads", a.threads)]:
        if value is not None:
            out += [flag, str(value)]
    for flag, on in [("--resume", a.resume), ("--shuffled", a.shuffled), ("--single-frame", a.single_frame),
                     ("--no-progress", a.no_progress)]:
        if on:
            out.append(flag)
    return out
