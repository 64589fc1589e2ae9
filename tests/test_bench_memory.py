"""tools/bench_memory.py: the figures line, the plot, and the ground-truth frame-choice curve (d)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import bench_memory as bm  # noqa: E402


def test_synthetic_run_prints_every_figure_and_a_plot(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_memory.py"), "--synthetic", "--seeds", "2",
                           "--points", "2", "--trials", "10", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    n = len(res["checkpoints"])
    assert set(res["curves_mean"]) == {"encoder", "memory", "memory_reentrant", "ideal_frames"}
    assert all(len(c) == n for c in res["curves_mean"].values())
    assert res["auc_mean"]["memory"] > res["auc_mean"]["encoder"]  # the memory learns beyond its prior
    # every synthetic frame shows what its scene holds: ground-truth frame choice keeps every frame, so (d) = (b)
    assert res["ideal_frames_minus_plain_auc"] == 0.0
    assert res["reentrance_minus_plain_auc_sd"] >= 0 and len(res["reentrance_minus_plain_auc_per_seed"]) == 2
    assert set(res["few_shot"]["memory"]) == {"1", "2", "5", "10"} and res["name_median_ms_10k"] > 0
    assert (tmp_path / "memory_learning_curve.png").stat().st_size > 10_000
    assert "(d) - (b)" in proc.stdout


def test_ideal_frames_curve_gains_when_windows_hold_other_things():
    data = bm.synthetic_data(minutes=15.0)
    rng = np.random.default_rng(1)
    cats = set(data.categories)
    # the second half of every naming window turns to another object (the child looked away): (b) learns from it,
    # (d) only from the frames that still show what is named
    other = {c: data.eval_emb[[i for i, lab in enumerate(data.eval_labels) if lab == c]] for c in cats}
    for i, u in enumerate(data.stream):
        named = cats.intersection(u.words)
        k = len(u.frame_embeddings)
        if not named or k < 4 or not (named & data.views[i][0]):
            continue
        away = sorted(cats - named - set(data.views[i][0]))[int(rng.integers(len(cats - named) - 1))]
        frames = u.frame_embeddings.copy()
        frames[k // 2:] = other[away][rng.integers(len(other[away]), size=k - k // 2)]
        data.stream[i] = bm.Utterance(u.words, frames, u.t, u.text)
        data.views[i] = data.views[i][:k // 2] + [frozenset([away])] * (k - k // 2)
    n = len(data.stream)
    checkpoints = [0, n // 8, n // 4, n // 2, n]
    res = bm.learning_curve(data, 0, checkpoints, 30)
    gain = bm.auc(checkpoints, res["curves"]["ideal_frames"]) - bm.auc(checkpoints, res["curves"]["memory"])
    assert gain > 0.01, gain
    assert res["on_target"]["uniform"] < 0.8  # the corruption did take frames off target
