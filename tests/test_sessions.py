"""Many sessions into one memory: worker processes and Ray give the memory a sequential replay gives, and an
interrupted folder replay resumes without applying any session twice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.replay import discover_session, replay
from firstwords.edge.runtime import build_runtime
from firstwords.edge.sessions import find_sessions, replay_folder

pytestmark = pytest.mark.usefixtures("sample")


@pytest.fixture(scope="module")
def folder(sample, tmp_path_factory):
    """Three short transcript sessions of the sample corpus, named so that their order is known."""
    root = tmp_path_factory.mktemp("sessions")
    for i, minutes in enumerate((0.4, 0.25, 0.5)):
        subprocess.run([sys.executable, "-m", "firstwords.export.sample_session", "--corpus",
                        str(sample.corpus), "--out", str(root / f"day{i + 1}"), "--max-minutes", str(minutes),
                        "--no-speech"],
                       check=True, capture_output=True, timeout=300)
    return root


def _sequential(folder, bundle, path):
    with build_runtime("laptop", bundle, path, realtime=False) as rt:
        for s in find_sessions(folder):
            replay(discover_session(s), rt.encoder, rt.memory, words_from="transcript", options=rt.options,
                   install_signal_handlers=False)
        return _state(rt.memory)


def _state(mem) -> dict:
    words = sorted(mem.words())
    return {"words": words, "exposures": [mem.exposures(w) for w in words],
            "strength": np.array([mem.strength(w) for w in words]),
            "vectors": mem.word_vectors(words), "episodes": len(mem.episode_times())}


def _folder(folder, bundle, path, **kw):
    with build_runtime("laptop", bundle, path, realtime=False) as rt:
        report = replay_folder(folder, "laptop", bundle, rt.memory, words_from="transcript", **kw)
        return report, _state(rt.memory)


def _same(a, b, vector_atol=1e-5):
    assert a["words"] == b["words"] and a["exposures"] == b["exposures"] and a["episodes"] == b["episodes"]
    np.testing.assert_allclose(a["strength"], b["strength"], rtol=1e-5, atol=1e-6)
    for w in a["words"]:
        np.testing.assert_allclose(a["vectors"][w], b["vectors"][w], rtol=1e-4, atol=vector_atol)


# A memory closed and opened again goes on from its float32 rows on disk, where one left open goes on from the
# same values in RAM: ~2e-5 apart in a unit vector after a few dozen more moments.
REOPENED_ATOL = 1e-4


@pytest.fixture(scope="module")
def sequential(folder, sample, tmp_path_factory):
    return _sequential(folder, sample.bundle, tmp_path_factory.mktemp("seq") / "memory.db")


def test_two_worker_processes_build_the_sequential_memory(folder, sample, sequential, tmp_path):
    report, state = _folder(folder, sample.bundle, tmp_path / "memory.db", workers=2)
    assert report.applied == ["day1", "day2", "day3"] and not report.skipped
    assert sequential["episodes"] > 10
    _same(state, sequential)


def test_an_interrupted_folder_replay_resumes_without_applying_a_session_twice(folder, sample, sequential,
                                                                                  tmp_path):
    path = tmp_path / "memory.db"

    def stop_after_first(digest):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _folder(folder, sample.bundle, path, workers=2, on_applied=stop_after_first)
    report, state = _folder(folder, sample.bundle, path, workers=2)
    assert report.skipped == ["day1"] and report.applied == ["day2", "day3"]
    _same(state, sequential, REOPENED_ATOL)
    again, state2 = _folder(folder, sample.bundle, path, workers=1)
    assert again.applied == [] and again.skipped == ["day1", "day2", "day3"]
    _same(state2, sequential, REOPENED_ATOL)


def test_a_local_ray_instance_builds_the_sequential_memory(folder, sample, sequential, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional 'scale' extra")
    report, state = _folder(folder, sample.bundle, tmp_path / "memory.db", workers=2, ray_address="local")
    assert report.applied == ["day1", "day2", "day3"]
    _same(state, sequential)


def test_an_empty_folder_is_a_clear_error(tmp_path):
    from firstwords.edge.errors import DataError

    with AssociativeMemory(tmp_path / "m.db", 16) as mem, pytest.raises(DataError,
                                                                         match="no session folders"):
        replay_folder(tmp_path, "laptop", "unused", mem)


def test_firstwords_replay_of_a_folder_through_the_cli(folder, sample, sequential, tmp_path, capsys):
    from firstwords.edge.cli import main

    path = tmp_path / "memory.db"
    argv = ["replay", str(folder), "--bundle", str(sample.bundle), "--memory", str(path), "--workers", "2",
            "--words-from", "transcript", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "replaying 3 sessions" in err and "] day3:" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["applied"] == ["day1", "day2", "day3"] and summary["skipped"] == []
    assert "media hours per wall hour" in out
    with AssociativeMemory(path, _state_dim(sample)) as mem:
        _same(_state(mem), sequential, REOPENED_ATOL)
    assert main(argv) == 0  # again: nothing applied twice
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["applied"] == [] and summary["skipped"] == ["day1", "day2", "day3"]


def test_an_unknown_recognizer_stops_a_folder_replay_before_any_session(folder, sample, tmp_path, capsys):
    from firstwords.edge.cli import main

    path = tmp_path / "memory.db"
    argv = ["replay", str(folder), "--bundle", str(sample.bundle), "--memory", str(path), "--workers", "2",
            "--recognizer", "wisper"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "unknown recognizer 'wisper'" in err and "replaying 3 sessions" not in err
    assert not path.exists()


def _state_dim(sample) -> int:
    from firstwords.edge.bundle import load_bundle

    return load_bundle(sample.bundle).embedding_dim


def test_a_session_cut_short_goes_on_from_its_last_moment(folder, sample, sequential, tmp_path, monkeypatch):
    """Interrupted in the middle of a session: its moments in the memory stay, the rest follow on resume, none
    twice."""
    path = tmp_path / "memory.db"
    plain = AssociativeMemory.learn_batch
    calls = [0]

    def dies_on_the_20th(self, moments, ledger=None):
        calls[0] += 1
        if calls[0] == 20:
            raise KeyboardInterrupt
        return plain(self, moments, ledger=ledger)

    monkeypatch.setattr(AssociativeMemory, "learn_batch", dies_on_the_20th)
    with pytest.raises(KeyboardInterrupt):
        _folder(folder, sample.bundle, path, workers=1)
    monkeypatch.setattr(AssociativeMemory, "learn_batch", plain)
    with AssociativeMemory(path, _state_dim(sample)) as mem:
        assert len(mem.episode_times()) == 19
    report, state = _folder(folder, sample.bundle, path, workers=2)
    assert report.applied[-1] == "day3" and report.moments == sequential["episodes"] - 19
    _same(state, sequential, REOPENED_ATOL)
