"""SIGKILL in the middle of memory updates, at random moments: the database must open and hold every update
the child process reported as committed. A handful of trials in the default run, >= 50 under `slow`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from firstwords.edge.memory import AssociativeMemory

D = 16
ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys
import numpy as np
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.memory_moment import Moment
path, start = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(start)
mem = AssociativeMemory(path, 16, capacity_words=40, capacity_episodes=10**6)
i = start
print("ready", flush=True)
while True:
    # alternate single updates and batches (several utterances in one transaction)
    n = 1 if i % 3 else 4
    batch = []
    for j in range(n):
        words = ["the", f"w{(i + j) % 60}", f"u{i + j}"]
        batch.append(Moment(words, rng.normal(size=(5, 16)).astype(np.float32), float(i + j),
                               f"utterance {i + j}"))
    mem.learn_batch(batch)
    print("committed", i, n, flush=True)   # only after the transaction has committed
    i += n
"""


def _trial(path: Path, start: int, rng: random.Random) -> tuple[set[int], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    err = path.with_name("child.stderr")
    with open(err, "w") as errf:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(start)], stdout=subprocess.PIPE,
                                stderr=errf, text=True, env=env, cwd=str(ROOT))
    try:
        assert proc.stdout.readline().strip() == "ready", err.read_text()
        time.sleep(rng.uniform(0.0, 0.25))  # a random moment in the middle of updates
        proc.send_signal(signal.SIGKILL)
        # read through the same buffered reader as readline() (communicate() would skip what it buffered)
        out = proc.stdout.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    committed: set[int] = set()
    last = start
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "committed":
            i, n = int(parts[1]), int(parts[2])
            committed.update(range(i, i + n))
            last = i + n
    return committed, last


def _run(trials: int, tmp_path: Path, seed: int) -> None:
    path = tmp_path / "crash.sqlite"
    rng = random.Random(seed)
    start = 0
    expected: set[int] = set()
    total_committed = 0
    for _ in range(trials):
        committed, last = _trial(path, start, rng)
        expected |= committed
        total_committed += len(committed)
        with AssociativeMemory(path, D, capacity_words=40, capacity_episodes=10**6) as mem:  # opens cleanly
            times = {int(t) for t in mem.episode_times()}
            missing = expected - times
            assert not missing, f"committed updates lost after SIGKILL: {sorted(missing)[:10]}"
            # every episode on disk is whole: either committed and reported, or the one in flight
            assert times - expected <= set(range(last, last + 4))
            assert mem.stats()["words"] <= 40
            expected = times  # an in-flight update that did commit before the kill is part of history now
            start = max(times, default=-1) + 1
    assert total_committed > 0


def test_sigkill_during_updates_keeps_every_commit(tmp_path):
    _run(4, tmp_path, seed=1)


@pytest.mark.slow
def test_sigkill_during_updates_keeps_every_commit_many_trials(tmp_path):
    _run(60, tmp_path, seed=2)
