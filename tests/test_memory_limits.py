"""What the memory learns from a word depends on the recogniser's confidence in it; the file stays under its
disk cap through a long run, evicting the oldest episodes and counting them."""

from __future__ import annotations

import numpy as np
import pytest
from firstwords.edge.config import MemoryConfig
from firstwords.edge.errors import ConfigError, InputError
from firstwords.edge.heard import HeardWord
from firstwords.edge.memory import AssociativeMemory
from firstwords.edge.memory_rule import LearningParams

D = 16


def _frames(rng, c: int, mu: np.ndarray, n: int = 4) -> np.ndarray:
    return (mu[c] + 0.4 * rng.normal(size=(n, D))).astype(np.float32)


def _stream(mem: AssociativeMemory, extra: dict[int, HeardWord] | None = None, n: int = 60) -> None:
    """The same moments into any memory; at moment i, the word extra[i] is heard as well."""
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(4, D))
    for i in range(n):
        words: list = ["the", f"thing{i % 4}"]
        if extra and i in extra:
            words.append(extra[i])
        mem.learn(words, _frames(rng, i % 4, mu), float(i), "moment")


def _state(mem: AssociativeMemory) -> dict:
    vecs = mem.word_vectors()
    return {w: (vecs[w], mem.strength(w), mem.exposures(w)) for w in vecs}


def test_a_word_below_the_threshold_teaches_nothing():
    params = LearningParams(min_word_confidence=0.3)
    low = {i: HeardWord("shoe", float(i), i + 0.5, 0.2) for i in range(0, 60, 5)}
    with AssociativeMemory(":memory:", D, learning=params) as plain, \
            AssociativeMemory(":memory:", D, learning=params) as heard:
        _stream(plain)
        _stream(heard, low)
        assert "shoe" not in heard.words()  # no memory word ...
        a, b = _state(plain), _state(heard)
        assert a.keys() == b.keys()
        for w in a:  # ... and no strength, vector or count changed
            np.testing.assert_array_equal(a[w][0], b[w][0])
            assert a[w][1:] == b[w][1:]
        # a moment whose every word is below the threshold is not learned at all
        rep = heard.learn([HeardWord("shoe", 0.0, 0.5, 0.1)], np.ones((2, D), np.float32), 99.0, "shoe")
        assert rep.episode_id == -1 and rep.skipped_words == ["shoe"]
        assert heard.stats()["episodes"] == 60 and heard.stats()["utterances_learned"] == 60


def test_a_word_learns_in_proportion_to_its_confidence():
    sure = {i: HeardWord("shoe", 0.0, 0.5, 1.0) for i in range(0, 60, 5)}
    unsure = {i: HeardWord("shoe", 0.0, 0.5, 0.4) for i in range(0, 60, 5)}
    as_text = dict.fromkeys(range(0, 60, 5), "shoe")
    with AssociativeMemory(":memory:", D) as a, AssociativeMemory(":memory:", D) as b, \
            AssociativeMemory(":memory:", D) as c:
        _stream(a, sure)
        _stream(b, unsure)
        _stream(c, as_text)  # a plain str is a word heard with confidence 1.0
        ra, rb, rc = (m._table.row("shoe") for m in (a, b, c))
        assert ra.weight == pytest.approx(rc.weight) and ra.cooc_count == pytest.approx(rc.cooc_count)
        assert rb.cooc_count == pytest.approx(0.4 * ra.cooc_count)
        assert 0.2 * ra.weight < rb.weight < 0.6 * ra.weight
        assert ra.exposures == rb.exposures == 12
        # forgetting undoes what an unsure word learned, by its confidence
        b.forget_since(30.0)
        assert b._table.row("shoe").cooc_count == pytest.approx(0.4 * 4 * 6, rel=1e-5)


def test_the_threshold_comes_from_the_device_config():
    cfg = MemoryConfig(capacity_words=100, capacity_episodes=100, max_disk_mb=8.0, min_word_confidence=0.5)
    with AssociativeMemory.from_config(":memory:", D, cfg) as mem:
        assert mem.params.min_word_confidence == 0.5
        heard = [HeardWord("ball", 0, 1, 0.49), HeardWord("cup", 0, 1, 0.5)]
        rep = mem.learn(heard, np.ones((2, D)), 0.0, "x")
        assert mem.words() == ["cup"] and rep.skipped_words == ["ball"]
    with pytest.raises(InputError, match="min_word_confidence"):
        LearningParams(min_word_confidence=1.5)


@pytest.mark.parametrize("value, ok", [(0.0, True), (1.0, True), (0.2, True), (-0.1, False), (1.01, False)])
def test_config_validates_min_word_confidence(value, ok):
    from firstwords.edge.config import load_device_config, parse_device_config, shipped_configs

    for path in shipped_configs():  # every shipped config sets both keys
        cfg = load_device_config(path)
        assert 0 < cfg.memory.min_word_confidence < 1 and cfg.memory.max_disk_mb > 0
    import tomllib

    data = tomllib.loads(shipped_configs()[0].read_text())
    data["memory"]["min_word_confidence"] = value
    if ok:
        assert parse_device_config(data).memory.min_word_confidence == value
    else:
        with pytest.raises(ConfigError, match=r"\[memory\] min_word_confidence must be within 0.0..1.0"):
            parse_device_config(data)


CAP_MB = 0.25
SLACK = 1.0  # the file, its WAL and its index together stay under the cap (see edge.memory_disk)


def test_the_file_stays_under_its_disk_cap_through_a_long_run(tmp_path):
    path = tmp_path / "mem.sqlite"
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, D))
    peak = 0
    with AssociativeMemory(path, D, max_disk_mb=CAP_MB, capacity_episodes=10**6) as mem:
        for i in range(1500):
            mem.learn(["the", f"thing{i % 6}", f"w{i % 40}"], _frames(rng, i % 6, mu), float(i),
                      f"moment {i} " + "la " * 30)
            if i % 25 == 0:
                peak = max(peak, mem.stats()["disk_bytes"])
        st = mem.stats()
        peak = max(peak, st["disk_bytes"])
        assert st["evicted_episodes"] > 500 and st["episodes"] + st["evicted_episodes"] == 1500
        assert max(mem.episode_times()) == 1499.0 and min(mem.episode_times()) == 1500 - st["episodes"]
        assert mem.exposures("thing0") == 250  # the words keep what the evicted episodes taught them
    assert peak <= SLACK * CAP_MB * 1024 * 1024, peak
    with AssociativeMemory(path, D, max_disk_mb=CAP_MB) as mem:  # the count is kept in the file
        assert mem.stats()["evicted_episodes"] == st["evicted_episodes"]
        mem.learn(["the", "thing1"], _frames(rng, 1, mu), 2000.0, "after reopening")  # learning goes on


def test_a_bad_disk_cap_is_a_clear_error():
    with pytest.raises(InputError, match="max_disk_mb must be a number greater than 0"):
        AssociativeMemory(":memory:", D, max_disk_mb=0)
