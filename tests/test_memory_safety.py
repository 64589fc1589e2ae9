"""One writer per memory, forget obeyed by a running writer, and the messages a user meets: real processes,
real SQLite files, read-only mounts and a full tmpfs (those two skip where mounting is not allowed)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import MemoryStoreError
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.tokenize import words as words_of

D = 16

# A writer in its own process: phase 1 learns 30 moments (every third names "sandal"), prints "ready", then
# keeps learning moments without "sandal" until the file <path>.go appears, then learns `again` moments with
# "sandal" ("phase3") and closes.
WRITER = r"""
import sys, time
from pathlib import Path
import numpy as np
from firstwords.edge.memory import AssociativeMemory
path, again = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
fr = lambda: rng.normal(size=(4, 16)).astype(np.float32)
with AssociativeMemory(path, 16) as mem:
    for i in range(30):
        ws = ["the", f"thing{i % 5}"] + (["sandal"] if i % 3 == 0 else [])
        mem.learn(ws, fr(), float(i), " ".join(ws))
    print("ready", flush=True)
    i = 30
    while not Path(path + ".go").exists() and i < 3000:
        mem.learn(["the", f"thing{i % 5}"], fr(), float(i), "the thing")
        i += 1
        time.sleep(0.02)
    for j in range(again):
        mem.learn(["a", "sandal"], fr(), float(i + j), "phase3 a sandal")
print("done", flush=True)
"""


def _env() -> dict:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1")


def _start_writer(path: Path, again: int = 0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(again)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    line = proc.stdout.readline().strip()
    assert line == "ready", proc.stderr.read()
    return proc


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firstwords.edge.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, env=_env(), check=False)


def _teach(path: Path, texts: list[str], dim: int = D) -> None:
    rng = np.random.default_rng(1)
    with AssociativeMemory(path, dim) as mem:
        for i, text in enumerate(texts):
            mem.learn(words_of(text), rng.normal(size=(3, dim)).astype(np.float32), float(i), text)


def test_a_second_writer_is_refused_naming_the_first_and_readers_are_not(tmp_path):
    path = tmp_path / "mem.sqlite"
    writer = _start_writer(path)
    try:
        code = ("import sys\nfrom firstwords.edge.memory import AssociativeMemory\n"
                "AssociativeMemory(sys.argv[1], 16)")
        second = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                timeout=60, env=_env(), check=False)
        assert second.returncode != 0
        assert f"being written by another process (process {writer.pid}, since 20" in second.stderr
        with AssociativeMemory(path, D, read_only=True) as reader:  # readers are never refused
            assert reader.exposures("sandal") == 10
        asked = _cli("ask", "--memory", str(path), "--word", "thing1")
        assert asked.returncode == 0 and "heard" in asked.stdout, asked.stderr
        Path(str(path) + ".go").touch()
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
    with AssociativeMemory(path, D) as mem:  # the first writer's data is whole; its lock went with it
        n = mem.stats()["episodes"]
        assert n >= 30 and len(mem.episode_times()) == n and mem.exposures("sandal") == 10


def test_a_killed_writers_lock_is_free(tmp_path):
    path = tmp_path / "mem.sqlite"
    writer = _start_writer(path)
    writer.kill()
    writer.wait(timeout=30)
    with AssociativeMemory(path, D) as mem:
        assert mem.exposures("sandal") == 10


def test_forget_during_a_live_run_sticks(tmp_path):
    path = tmp_path / "mem.sqlite"
    writer = _start_writer(path, again=3)
    try:
        out = _cli("forget", "--word", "Sandal!", "--memory", str(path), "--wait", "60")
        assert out.returncode == 0, out.stderr
        assert "being written by" in out.stdout and "forgotten; the word and 10 moments removed" in out.stdout
        assert writer.poll() is None  # applied by the live writer, not after it stopped
        with AssociativeMemory(path, D, read_only=True) as reader:
            assert reader.exposures("sandal") == 0 and reader.find("sandal", heard_only=True) == []
        Path(str(path) + ".go").touch()  # the writer now hears "sandal" three more times, then stops
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
    with AssociativeMemory(path, D) as mem:
        assert mem.exposures("sandal") == 3  # only what was heard after the forget; nothing came back
        texts = [e.text for e in mem.find("sandal", k=50, heard_only=True)]
        assert sorted(texts) == ["phase3 a sandal"] * 3


def test_a_request_left_by_a_writer_that_stopped_is_applied_by_the_next_open(tmp_path):
    from firstwords.edge.memory_forget import request_forget

    path = tmp_path / "mem.sqlite"
    _teach(path, ["the ball", "a ball", "the cup"])
    request_forget(path, "word", "ball")  # as if a writer had held the memory and stopped before applying it
    with AssociativeMemory(path, D) as mem:
        assert mem.exposures("ball") == 0 and mem.exposures("cup") == 1


def test_forget_normalises_what_the_user_typed_and_says_what_it_removed(tmp_path):
    path = tmp_path / "mem.sqlite"
    _teach(path, ["Look, a ñandú!", "the zyxquux! is here", "Ball? BALL.", "the cup"])
    out = _cli("forget", "--memory", str(path), "--word", "ñandú", "--word", "zyxquux!", "--word", "Ball")
    assert out.returncode == 0, out.stderr
    assert "ñandú: forgotten; the word and 1 moments removed" in out.stdout
    assert "zyxquux! (as 'zyxquux'): forgotten; the word and 1 moments removed" in out.stdout
    assert "Ball (as 'ball'): forgotten" in out.stdout
    decomposed = "n\u0303andu\u0301"  # the same word typed with combining accents
    _teach(tmp_path / "m2.sqlite", ["un ñandú"])
    out = _cli("forget", "--memory", str(tmp_path / "m2.sqlite"), "--word", decomposed)
    assert "forgotten; the word and 1 moments removed" in out.stdout, out.stdout
    with AssociativeMemory(path, D) as mem:
        assert {"ñandú", "zyxquux", "ball"}.isdisjoint(mem.words()) and "cup" in mem.words()


@pytest.mark.parametrize("typed, says", [("", "give a word"), ("!!", "give a word"),
                                         ("teddy bear", "2 words as the memory learns them")])
def test_forget_of_no_word_or_two_is_a_clear_error(tmp_path, typed, says):
    path = tmp_path / "mem.sqlite"
    _teach(path, ["the ball"])
    out = _cli("forget", "--memory", str(path), "--word", typed)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr
    assert "forget_word" not in out.stderr


def test_a_dropped_table_is_a_clear_error_for_ask_and_forget(tmp_path):
    path = tmp_path / "mem.sqlite"
    _teach(path, ["the ball", "a cup"])
    db = sqlite3.connect(path)
    db.execute("DROP TABLE episode_words")
    db.commit()
    db.close()
    for argv in (["ask", "--word", "ball"], ["forget", "--word", "ball"]):
        out = _cli(*argv, "--memory", str(path))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "damaged" in out.stderr and "episode_words" in out.stderr and "forget --reset" in out.stderr


def test_ask_of_a_missing_image_says_it_is_missing(tmp_path):
    path = tmp_path / "mem.sqlite"
    _teach(path, ["the ball"])
    out = _cli("ask", "--memory", str(path), "--image", str(tmp_path / "nope.jpg"), "--bundle", str(tmp_path))
    assert out.returncode == 2 and "no such image file" in out.stderr and "Traceback" not in out.stderr


@contextmanager
def _read_only(folder: Path):
    """The folder, read-only: a read-only bind mount as root (chmod does not stop root), else chmod."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    ro = folder.with_name(folder.name + "-ro")
    ro.mkdir()
    bound = subprocess.run(["mount", "--bind", str(folder), str(ro)], capture_output=True, check=False)
    if bound.returncode != 0:
        pytest.skip("cannot bind-mount here to make a read-only folder")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True, capture_output=True)
        yield ro
    finally:
        if subprocess.run(["umount", str(ro)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True, check=False)


def test_a_healthy_memory_in_a_read_only_folder_is_called_read_only_not_damaged(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _teach(folder / "mem.sqlite", ["the ball", "a cup"])
    with _read_only(folder) as ro:
        with pytest.raises(MemoryStoreError, match="read-only.*Nothing is wrong with the file") as e:
            AssociativeMemory(ro / "mem.sqlite", D)
        assert "damaged" not in str(e.value) and "--reset" not in str(e.value)
        with AssociativeMemory.open_existing(ro / "mem.sqlite", read_only=True) as mem:  # reading works
            assert mem.exposures("ball") == 1
        out = _cli("forget", "--reset", "--memory", str(ro / "mem.sqlite"))
        assert out.returncode == 2 and "read-only" in out.stderr and "Traceback" not in out.stderr
        assert "Nothing was changed" in out.stderr
        out = _cli("ask", "--memory", str(ro / "mem.sqlite"), "--word", "ball")
        assert out.returncode == 0 and "heard 1 times" in out.stdout, out.stderr


def test_a_new_memory_on_a_full_disk_says_disk_full(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        (disk / "filler").write_bytes(b"\0" * (52 * 1024))  # a nearly full disk
        with pytest.raises(MemoryStoreError, match="disk is full") as e:
            AssociativeMemory(disk / "mem.sqlite", D)
        assert "damaged" not in str(e.value) and "rollback" not in str(e.value)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, check=False)


def test_learning_in_a_read_only_open_is_a_clear_error(tmp_path):
    path = tmp_path / "mem.sqlite"
    _teach(path, ["the ball"])
    with AssociativeMemory(path, D, read_only=True) as mem, \
            pytest.raises(MemoryStoreError, match="read-only; nothing was learned"):
        mem.learn(["ball"], np.ones((2, D), np.float32), 5.0, "ball")
    # a reader beside a writer in the same process is fine too
    with AssociativeMemory(path, D) as writer, AssociativeMemory(path, D, read_only=True) as reader:
        writer.learn(["ball"], np.ones((2, D), np.float32), 5.0, "ball")
        assert reader.stats()["episodes"] == 2


def test_a_path_with_odd_characters_opens_for_reading_and_writing(tmp_path):
    folder = tmp_path / "my #1 memories? 100%"
    folder.mkdir()
    path = folder / "mém ?.sqlite"
    _teach(path, ["the ball"])
    with AssociativeMemory.open_existing(path, read_only=True) as mem:
        assert mem.exposures("ball") == 1
    with AssociativeMemory.open_existing(path) as mem:
        assert mem.forget_word("ball")["episodes_removed"] == 1


def test_a_batch_and_its_ledger_entries_are_written_together(tmp_path):
    """The ledger (which recorded session a batch is) commits with the batch, or neither does."""
    import numpy as np
    from firstwords.edge.errors import InputError
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.memory_moment import Moment

    frames = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with AssociativeMemory(tmp_path / "m.db", 8) as mem:
        mem.learn_batch([Moment(["ball"], frames, 1.0, "ball")], ledger={"session:day1": "{}"})
        mem.learn_batch([], ledger={"session:day2": "{}"})  # a session that taught nothing is still recorded
        bad = Moment(["dog"], np.full((3, 8), np.nan, np.float32), 2.0, "dog")
        try:
            mem.learn_batch([Moment(["cat"], frames, 2.0, "cat"), bad], ledger={"session:day3": "{}"})
        except InputError:
            pass
        assert mem.ledger("session:") == {"session:day1": "{}", "session:day2": "{}"}
        assert sorted(mem.words()) == ["ball"]
    with AssociativeMemory.open_existing(tmp_path / "m.db") as mem:  # and it survives reopening
        assert set(mem.ledger()) == {"session:day1", "session:day2"}
