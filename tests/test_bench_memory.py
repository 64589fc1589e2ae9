"""tools/bench_memory.py: the figures line, the plot, and the ground-truth frame-choice curve (d)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_memory.py"), "--synthetic", *args,
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


def test_synthetic_run_prints_every_figure_and_a_plot(tmp_path):
    res, out = _run(tmp_path, "--seeds", "2", "--points", "2", "--trials", "10")
    n = len(res["checkpoints"])
    assert set(res["curves_mean"]) == {"encoder", "memory", "memory_reentrant", "ideal_frames"}
    assert all(len(c) == n for c in res["curves_mean"].values())
    assert res["auc_mean"]["memory"] > res["auc_mean"]["encoder"]  # the memory learns beyond its prior
    # every synthetic frame shows what its scene holds: ground-truth frame choice keeps every frame: (d) = (b)
    assert res["ideal_frames_minus_plain_auc"] == 0.0
    assert res["reentrance_minus_plain_auc_sd"] >= 0 and len(res["reentrance_minus_plain_auc_per_seed"]) == 2
    assert set(res["few_shot"]["memory"]) == {"1", "2", "5", "10"} and res["name_median_ms_10k"] > 0
    assert (tmp_path / "memory_learning_curve.png").stat().st_size > 10_000
    assert "(d) - (b)" in out


@pytest.mark.slow
def test_ideal_frames_curve_gains_when_windows_hold_other_things(tmp_path):
    """When the second half of naming windows turns to another object (the child looked away), (b) learns
    from it and (d) only from the frames that still show what is named: (d) gains."""
    res, _ = _run(tmp_path, "--look-away", "1.0", "--seeds", "1", "--points", "4", "--trials", "30")
    assert res["ideal_frames_minus_plain_auc"] > 0.01, res["ideal_frames_minus_plain_auc"]
    assert res["frames_on_target"]["uniform"] < 0.8  # the look-away did take frames off target
