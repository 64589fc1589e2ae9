"""The training curves from metrics.jsonl: loss (train and validation) and held-out accuracy by step."""

from __future__ import annotations

import json
from pathlib import Path


def plot_curves(metrics_file: Path, out_png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    tr = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    ev = [(r["step"], r["eval_acc"]) for r in rows if r.get("eval_acc") is not None]
    fig, ax = plt.subplots(1, 2 if ev else 1, figsize=(10 if ev else 6, 3.6), dpi=110, squeeze=False)
    a = ax[0][0]
    if tr:
        a.plot(*zip(*tr), label="train", lw=1)
    if va:
        a.plot(*zip(*va), label="val", marker="o", ms=3)
    a.set_xlabel("step")
    a.set_ylabel("InfoNCE loss")
    a.legend()
    if ev:
        b = ax[0][1]
        b.plot(*zip(*ev), marker="o", ms=3, color="#DD8452")
        b.axhline(0.25, ls="--", color="k", lw=1, label="chance")
        b.set_ylim(0, 1)
        b.set_xlabel("step")
        b.set_ylabel("held-out 4-way accuracy")
        b.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
