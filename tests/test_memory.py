"""The online associative memory: learning, queries, bounds, persistence, bad input, damaged files, disk full,
forgetting. Real SQLite files in tmp_path; synthetic embeddings (clusters per category + noise)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from firstwords.edge.errors import InputError, MemoryStoreError
from firstwords.edge.evaluate import make_trials, score_trials
from firstwords.edge.memory import AssociativeMemory, reset_memory
from firstwords.edge.memory_moment import Moment
from firstwords.edge.memory_rule import LearningParams
from firstwords.edge.memory_schema import SCHEMA_VERSION

D = 32
FUNCTION_WORDS = ["look", "at", "the", "you", "see", "a", "it's", "there"]


class World:
    """Categories as clusters on the sphere with a shared component (embedding spaces are anisotropic)."""

    def __init__(self, n_cat=8, seed=0, noise=0.8, shared=1.0):
        self.rng = np.random.default_rng(seed)
        common = self.rng.normal(size=D)
        mu = self.rng.normal(size=(n_cat, D))
        mu = mu / np.linalg.norm(mu, axis=1, keepdims=True) + shared * common / np.linalg.norm(common)
        self.mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
        self.noise = noise
        self.cats = [f"thing{i}" for i in range(n_cat)]

    def frames(self, c: int, n: int) -> np.ndarray:
        x = self.mu[c] + self.noise * self.rng.normal(size=(n, D)) / np.sqrt(D)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def utterance(self, c: int | None = None, k: int = 6, distractors: int = 2):
        c = int(self.rng.integers(len(self.cats))) if c is None else c
        fr = self.frames(c, k)
        for j in range(distractors):
            fr[j] = self.frames(int(self.rng.integers(len(self.cats))), 1)[0]
        words = list(self.rng.choice(FUNCTION_WORDS, 3, replace=False)) + [self.cats[c]]
        return [str(w) for w in words], fr


def teach(mem, world, n, t0=0.0, **kw):
    for i in range(n):
        words, fr = world.utterance(**kw)
        mem.learn(words, fr, t0 + i, " ".join(words))


def accuracy(mem, world, seed=1):
    labels = [c for c in world.cats for _ in range(10)]
    imgs = np.concatenate([world.frames(i, 10) for i in range(len(world.cats))])
    return score_trials(make_trials(labels, 4, 30, seed), imgs, mem.word_vectors()).overall


def test_learns_object_words_and_not_function_words():
    world = World()
    with AssociativeMemory(":memory:", D) as mem:
        teach(mem, world, 300)
        assert accuracy(mem, world) > 0.9
        top = [w for w, _ in mem.name(world.frames(2, 1)[0], k=3)]
        assert top[0] == "thing2"
        # Function words are heard in every utterance, yet their diffuse prototypes give them little strength.
        assert max(mem.strength(w) for w in FUNCTION_WORDS) < 0.3 * min(mem.strength(c) for c in world.cats)
        named = dict(mem.name(world.frames(5, 1)[0], k=len(mem.words())))
        assert max(named, key=named.get) == "thing5"
        # (a function word may outrank an unrelated object, which scores below zero, but never comes close)
        assert max(named[w] for w in FUNCTION_WORDS) < 0.25 * named["thing5"]


def test_in_vocab_prior_is_used_then_overtaken():
    world = World(seed=3)
    prior = {c: world.mu[i] for i, c in enumerate(world.cats)}
    with AssociativeMemory(":memory:", D) as mem:
        # One exposure with a prior: the word vector is mostly the encoder's
        words, fr = world.utterance(c=0)
        mem.learn(words, fr, 0.0, " ".join(words), prior=prior)
        v = mem.word_vectors(["thing0"])["thing0"]
        assert float(v @ world.mu[0]) > 0.8
        assert mem.stats()["words_with_prior"] == 1


def test_out_of_vocabulary_word_learned_from_scratch_with_mutual_exclusivity():
    world = World(seed=4, n_cat=8)

    def known_world():  # thing7 is never seen nor named
        mem = AssociativeMemory(":memory:", D)
        for i in range(200):
            words, fr = world.utterance(c=i % 7)
            mem.learn(words, fr, float(i), " ".join(words))
        return mem

    with known_world() as mem:
        rep = mem.learn(["look", "at", "the", "dax"], world.frames(7, 6), 1000.0, "look at the dax")
        assert rep.new_words == ["dax"] and "dax" not in mem.word_vectors(world.cats)
        assert int(np.argmax(world.mu @ mem.word_vectors(["dax"])["dax"])) == 7
    with known_world() as mem:
        # half the window shows a known thing, half the new one: the known word claims its frames, the new
        # word is left the rest (mutual exclusivity falls out of the credit rule)
        fr = np.concatenate([world.frames(2, 3), world.frames(7, 3)])
        rep = mem.learn(["look", "thing2", "blicket"], fr, 1000.0, "look thing2 blicket")
        assert rep.credit["thing2"] > rep.credit["blicket"]
        v = mem.word_vectors(["blicket"])["blicket"]
        assert float(v @ world.mu[7]) > float(v @ world.mu[2])


def _taught(seed: int, **kw) -> tuple[AssociativeMemory, World]:
    world = World(seed=seed)
    mem = AssociativeMemory(":memory:", D, **kw)
    teach(mem, world, 200)
    return mem, world


def test_reentrance_gate_discounts_windows_about_something_else():
    mem, world = _taught(5)
    with mem:
        on = mem.learn(["look", "thing1"], world.frames(1, 6), 500.0, "look thing1")
        off = mem.learn(["look", "thing1"], world.frames(4, 6), 501.0, "look thing1")
        assert max(off.frame_weights) < 1.0
        assert off.frames_taken["thing1"] < 0.7 * on.frames_taken["thing1"]


def test_persistence_round_trip(tmp_path):
    path = tmp_path / "mem.sqlite"
    world = World(seed=6)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 50)
        before = mem.word_vectors()
        q = world.frames(3, 1)[0]
        named = mem.name(q)
    with AssociativeMemory(path, D) as mem:
        after = mem.word_vectors()
        assert before.keys() == after.keys()
        for w in before:
            np.testing.assert_allclose(before[w], after[w], atol=1e-5)
        assert [w for w, _ in mem.name(q)] == [w for w, _ in named]
        assert mem.stats()["episodes"] == 50
        assert mem.stats()["bytes_on_disk"] > 0


def test_learn_batch_is_one_transaction(tmp_path):
    world = World(seed=7)
    with AssociativeMemory(tmp_path / "m.sqlite", D) as mem:
        batch = []
        for i in range(5):
            w, f = world.utterance()
            batch.append(Moment(w, f, float(i), " ".join(w)))
        batch.append(Moment(["ok"], np.full((2, D), np.nan, np.float32), 9.0, "bad"))
        with pytest.raises(InputError):
            mem.learn_batch(batch)
        assert mem.stats()["episodes"] == 0 and mem.words() == []
        reps = mem.learn_batch(batch[:5])
        assert len(reps) == 5 and len({r.episode_id for r in reps}) == 5
        assert mem.stats()["episodes"] == 5


@pytest.mark.parametrize("words, frames, why", [
    (["ball"], np.full((3, D), np.nan), "NaN"),
    (["ball"], np.full((3, D), np.inf), "NaN or Inf"),
    (["ball"], np.ones((3, D + 1)), "shape"),
    (["ball"], np.zeros((3, D)), "all-zero"),
    (["ball"], np.ones((0, D)), "1..1024"),
    ([], np.ones((3, D)), "at least one word"),
    ([""], np.ones((3, D)), "non-empty"),
    (["two words"], np.ones((3, D)), "whitespace"),
    ("ball", np.ones((3, D)), "list of words"),
    ([3], np.ones((3, D)), "non-empty string"),
    (["ball"], "frames", "float array"),
])
def test_bad_input_rejected_and_memory_untouched(tmp_path, words, frames, why):
    world = World(seed=8)
    with AssociativeMemory(tmp_path / "m.sqlite", D) as mem:
        teach(mem, world, 5)
        snap = mem.word_vectors()
        with pytest.raises(InputError, match=why):
            mem.learn(words, frames, 10.0, "x")
        assert mem.word_vectors().keys() == snap.keys()
        assert mem.stats()["episodes"] == 5
        for w in snap:
            np.testing.assert_array_equal(snap[w], mem.word_vectors([w])[w])


def test_overlong_word_skipped_and_long_text_clipped():
    with AssociativeMemory(":memory:", D) as mem:
        rep = mem.learn(["see", "z" * 150], np.ones((2, D), np.float32), 0.0, "see " + "z" * 20_000)
        assert mem.words() == ["see"] and list(rep.credit) == ["see"]
        assert len(mem.find("see")[0].text) == 10_000
        with pytest.raises(InputError, match="at least one word"):
            mem.learn(["z" * 150], np.ones((2, D), np.float32), 1.0, "z")


def test_bad_queries_and_time_and_prior(tmp_path):
    with AssociativeMemory(":memory:", D) as mem:
        ok = np.ones((2, D), np.float32)
        with pytest.raises(InputError, match="finite"):
            mem.learn(["a"], ok, float("inf"), "a")
        with pytest.raises(InputError, match="prior"):
            mem.learn(["a"], ok, 0.0, "a", prior={"a": np.ones(D + 2)})
        with pytest.raises(InputError):
            mem.name(np.full(D, np.nan))
        with pytest.raises(InputError):
            mem.name(np.ones(D - 1))
        assert mem.name(np.ones(D)) == []  # empty memory: no names, no crash
        assert mem.find("nothing") == []


def test_capacity_evicts_weakest_words_and_oldest_episodes(tmp_path):
    world = World(seed=9)
    with AssociativeMemory(tmp_path / "m.sqlite", D, capacity_words=10, capacity_episodes=20) as mem:
        teach(mem, world, 60)  # 8 categories + 8 function words = 16 > 10
        st = mem.stats()
        assert st["words"] == 10 and len(mem.words()) == 10
        assert st["episodes"] == 20
        assert min(mem.episode_times()) == 40.0  # the oldest went first
        # Heard-once words are the weakest; a newly heard word is never evicted by its own update.
        rep = mem.learn(["zorp"], world.frames(0, 3), 100.0, "zorp")
        assert "zorp" in mem.words() and "zorp" not in rep.evicted_words
    with AssociativeMemory(tmp_path / "m.sqlite", D, capacity_words=10, capacity_episodes=20) as mem:
        assert len(mem.words()) == 10  # RAM rebuilt from disk agrees


def test_find_returns_matching_moments():
    world = World(seed=10)
    with AssociativeMemory(":memory:", D) as mem:
        teach(mem, world, 100)
        eps = mem.find("thing3", k=5)
        assert len(eps) == 5 and eps[0].score >= eps[-1].score
        assert sum("thing3" in e.words for e in eps) >= 4
        heard = mem.find("thing3", k=3, heard_only=True)
        assert all("thing3" in e.words for e in heard)


def test_corrupted_file_clear_error_and_fresh_start_keeps_it(tmp_path):
    path = tmp_path / "mem.sqlite"
    world = World(seed=11)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 20)
    data = bytearray(path.read_bytes())
    data[:100] = b"\x13" * 100  # header smashed
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryStoreError, match="damaged.*forget --reset"):
        AssociativeMemory(path, D)
    assert path.read_bytes() == bytes(data)  # nothing overwritten
    with AssociativeMemory(path, D, fresh=True) as mem:
        assert mem.stats()["words"] == 0
    kept = list(tmp_path.glob("mem.sqlite.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(data)


def test_garbage_file_and_foreign_database_left_untouched(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(MemoryStoreError, match="damaged or not a database"):
        AssociativeMemory(junk, D)
    foreign = tmp_path / "other.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    with pytest.raises(MemoryStoreError, match="not a firstwords memory"):
        AssociativeMemory(foreign, D)
    # reset_memory moves a file aside, never deletes
    moved = reset_memory(junk)
    assert moved is not None and moved.exists() and not junk.exists()


def test_newer_schema_and_wrong_dim_are_clear_errors(tmp_path):
    path = tmp_path / "mem.sqlite"
    AssociativeMemory(path, D).close()
    with pytest.raises(MemoryStoreError, match="embedding dim 32.*dim 16"):
        AssociativeMemory(path, 16)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(MemoryStoreError, match="newer firstwords"):
        AssociativeMemory(path, D)


def test_disk_full_clear_error_previous_state_intact(tmp_path):
    path = tmp_path / "mem.sqlite"
    world = World(seed=12)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 10)
        before = mem.word_vectors()
        pages = mem._store.execute("PRAGMA page_count")[0][0]
        mem._store.execute(f"PRAGMA max_page_count={pages}")  # the "disk" is now full
        big = [Moment(*world.utterance(), t=100.0 + i, text="x" * 5000) for i in range(50)]
        big = [Moment(u.words, u.frame_embeddings, 100.0 + i, "x" * 5000) for i, u in enumerate(big)]
        with pytest.raises(MemoryStoreError, match="disk is full.*previous state is intact"):
            mem.learn_batch(big)
        after = mem.word_vectors()
        assert after.keys() == before.keys()
        for w in before:
            np.testing.assert_array_equal(before[w], after[w])
        assert mem.stats()["episodes"] == 10
        mem._store.execute("PRAGMA max_page_count=1073741823")
        mem.learn(*world.utterance(), 200.0, "after space was freed")
    with AssociativeMemory(path, D) as mem:
        assert mem.stats()["episodes"] == 11


def _file_bytes(path):
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_forget_word_is_real_removal(tmp_path):
    path = tmp_path / "mem.sqlite"
    world = World(seed=13)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 40)
        for i in range(3):
            mem.learn(["the", "secretname"], world.frames(1, 4), 100.0 + i, "the secretname again")
        assert b"secretname" in _file_bytes(path)
        n_the = mem.exposures("the")
        out = mem.forget_word("secretname")
        assert out["episodes_removed"] == 3
        assert "secretname" not in mem.words()
        assert mem.exposures("the") == n_the - 3  # what those episodes taught other words is undone too
        assert all("secretname" not in e.text for e in mem.find("the", k=100))
        assert b"secretname" not in _file_bytes(path)
    with AssociativeMemory(path, D) as mem:
        assert "secretname" not in mem.words()
        assert mem.stats()["episodes"] == 40


def test_forget_since_undoes_recent_learning(tmp_path):
    path = tmp_path / "mem.sqlite"
    world = World(seed=14)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 30)
        before = {w: mem.exposures(w) for w in mem.words()}
        vec_before = mem.word_vectors()
        for i in range(5):
            words = ["the", "thing0", "recentword"]
            mem.learn(words, world.frames(0, 4), 1000.0 + i, " ".join(words))
        out = mem.forget_since(1000.0)
        assert out["episodes_removed"] == 5 and "recentword" not in mem.words()
        assert {w: mem.exposures(w) for w in mem.words()} == before
        # prototypes are back (up to the approximation of the per-word share of an episode)
        v = mem.word_vectors(["thing0"])["thing0"]
        assert float(v @ vec_before["thing0"]) > 0.97
        assert max(mem.episode_times()) < 1000.0
    assert b"recentword" not in _file_bytes(path)


def test_learning_params_are_data():
    p = LearningParams()
    assert p.uniform_share(0) == pytest.approx(p.uniform_start)
    assert p.uniform_floor < p.uniform_share(10_000) < p.uniform_share(10)


def test_forget_command_word_since_and_reset(tmp_path, capsys):
    import argparse

    from firstwords.edge.commands import forget

    path = tmp_path / "mem.sqlite"
    world = World(seed=15)
    with AssociativeMemory(path, D) as mem:
        teach(mem, world, 20)
        mem.learn(["the", "privateword"], world.frames(0, 3), 50.0, "the privateword")

    def run(*argv):
        p = argparse.ArgumentParser()
        forget.add_arguments(p)
        return forget.run(p.parse_args(list(argv)))

    assert run("--word", "privateword", "--memory", str(path)) == 0
    assert b"privateword" not in _file_bytes(path)
    assert run("--since", "10", "--memory", str(path)) == 0
    with AssociativeMemory(path, D) as mem:
        assert max(mem.episode_times()) < 10.0
    with pytest.raises(InputError, match="ISO date-time"):
        run("--since", "yesterday", "--memory", str(path))
    assert run("--reset", "--memory", str(path)) == 0
    assert not path.exists() and len(list(tmp_path.glob("mem.sqlite.corrupt-*"))) == 1
    assert "moved" in capsys.readouterr().out


def test_property_arbitrary_input_never_corrupts(tmp_path):
    """Whatever arrives (any shape, NaN/Inf, odd words, times), learn() either learns or raises InputError,
    and the database still opens with exactly the committed state."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    path = tmp_path / "prop.sqlite"
    mem = AssociativeMemory(path, 4, synchronous="OFF")
    committed = {"n": 0}
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    shapes = st.sampled_from([(2, 4), (1, 4), (4,), (3, 5), (0, 4), (2, 3, 4), (1, 1)])
    word = st.one_of(st.text(max_size=8), st.integers(), st.none())

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(words=st.one_of(st.lists(word, max_size=4), st.text(max_size=5)),
           frames=shapes.flatmap(lambda s: arrays(np.float32, s, elements=floats)),
           t=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3)),
           text=st.one_of(st.text(max_size=10), st.integers()))
    def check(words, frames, t, text):
        try:
            mem.learn(words, frames, t, text)
        except InputError:
            return
        committed["n"] += 1

    check()
    # a few valid utterances too, so both paths ran
    for i in range(3):
        mem.learn(["ok", f"w{i}"], np.ones((2, 4), np.float32), float(i), "ok")
        committed["n"] += 1
    n_words = len(mem.words())
    mem.close()
    with AssociativeMemory(path, 4) as again:
        assert again.stats()["episodes"] == committed["n"]
        assert len(again.words()) == n_words
        for v in again.word_vectors().values():
            assert np.all(np.isfinite(v))


def _diffuse_and_rare_stream(mem, learning_seed=0):
    """Every word in the encoder's vocabulary with an UNINFORMATIVE prior (a random direction): 'the' heard
    with every category, each object word with its own, and 'hungry' twice -- both times in category 3's
    scenes."""
    world = World(seed=11, n_cat=6)
    rng = np.random.default_rng(learning_seed)
    vocab = ["the", "hungry"] + world.cats
    vecs = rng.normal(size=(len(vocab), D))
    prior = {w: (v / np.linalg.norm(v)).astype(np.float32) for w, v in zip(vocab, vecs)}
    rare_at = {40, 90}
    for i in range(150):
        c = 3 if i in rare_at else i % len(world.cats)
        words = ["the", world.cats[c]] + (["hungry"] if i in rare_at else [])
        _, fr = world.utterance(c=c)
        mem.learn(words, fr, float(i), " ".join(words), prior=prior)
    return world


def test_diffuse_and_rare_words_are_not_strong_names():
    """Naming strength is evidence that a word picks out what is in view: a word heard whatever is in view
    ('the') and a word heard only twice ('hungry', however alike its two scenes) are weak names; the object
    word of a category is named first for its frames (the demo named a dress 'did, going, dress')."""
    with AssociativeMemory(":memory:", D) as mem:
        world = _diffuse_and_rare_stream(mem)
        objects = min(mem.strength(c) for c in world.cats)
        assert mem.strength("the") < 0.3 * objects
        assert mem.strength("hungry") < 0.5 * objects
        for c in range(len(world.cats)):
            tops = [mem.name(f, k=1)[0][0] for f in world.frames(c, 10)]
            assert max(set(tops), key=tops.count) == world.cats[c]
            assert "the" not in tops and "hungry" not in tops


def test_raw_strength_would_name_rare_and_diffuse_words():
    """The same stream with the undebiased strength (and a prior strength that held as long as credit was
    low): the rare word is as strong a name as an object word -- what the test above guards against."""
    with AssociativeMemory(":memory:", D, learning=LearningParams(debias=False, prior_strength=0.5)) as mem:
        world = _diffuse_and_rare_stream(mem)
        objects = min(mem.strength(c) for c in world.cats)
        assert mem.strength("hungry") > 0.5 * objects


def test_reentrance_gate_judges_frames_by_the_words_not_said():
    """The gate looks along the other words' directions, in the world's standard deviations: frames a known
    word not said clearly shows count less for the word heard; frames nobody else names keep their full
    weight; a word heard for the first time learns from the whole window; and a rival with a weak name cuts
    little."""
    mem, world = _taught(5)
    with mem:
        fr = np.concatenate([world.frames(1, 3), world.frames(4, 3)])  # the child looks from thing1 to thing4
        rep = mem.learn(["look", "thing1"], fr, 500.0, "look thing1")
        w = np.array(rep.frame_weights)
        assert w[:3].min() > 0.9 and w[3:].max() < 0.5
        taken = np.array(rep.frame_taken["thing1"])
        assert taken[3:].sum() < 0.4 * taken[:3].sum()
        new = mem.learn(["look", "wug"], fr, 501.0, "look wug")  # a new word: no judgement yet, no lock-in
        assert np.ptp(new.frame_taken["wug"]) < 0.5 * max(new.frame_taken["wug"])
    # the same window, but thing4 was only heard a few times: its name is too weak to take frames away
    world = World(seed=5)
    with AssociativeMemory(":memory:", D) as mem:
        for i in range(200):  # every thing but thing4 named
            words, fr = world.utterance(c=[0, 1, 2, 3, 5, 6, 7][i % 7])
            mem.learn(words, fr, float(i), " ".join(words))
        for i in range(2):
            words, f4 = world.utterance(c=4)
            mem.learn(words, f4, 300.0 + i, " ".join(words))
        assert mem.strength("thing4") < 0.5 * mem.strength("thing1")
        rep = mem.learn(["look", "thing1"], np.concatenate([world.frames(1, 3), world.frames(4, 3)]), 500.0,
                        "look thing1")
        assert min(rep.frame_weights[3:]) > 0.5
