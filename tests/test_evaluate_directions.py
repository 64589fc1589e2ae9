"""edge.evaluate in CVCL's two directions: a word against n images, an image against n words."""

import numpy as np
import pytest
from firstwords.edge.errors import InputError
from firstwords.edge.evaluate import Trial, label_tokens, make_trials, score_trials, word_vectors
from firstwords.edge.tokenize import Vocab, build_vocab, words


def _world(seed=0):
    rng = np.random.default_rng(seed)
    cats = list("abcdef")
    centres = {c: rng.normal(size=16) for c in cats}
    labels = [c for c in cats for _ in range(6)]
    imgs = np.stack([centres[c] + 0.05 * rng.normal(size=16) for c in labels])
    return cats, centres, labels, imgs


def test_text_direction_perfect_shuffled_and_unknown_words():
    cats, centres, labels, imgs = _world()
    trials = make_trials(labels, n_way=4, trials_per_category=20, seed=0)
    assert all(t.categories == tuple(labels[i] for i in t.image_indices) for t in trials)
    perfect = score_trials(trials, imgs, centres, direction="text")
    assert perfect.overall == 1.0 and perfect.direction == "text" and perfect.n_trials == 120
    shuffled = score_trials(trials, imgs, {c: centres[cats[(i + 1) % 6]] for i, c in enumerate(cats)}, "text")
    assert shuffled.overall < 0.25  # the wrong word wins unless none of the offered words is the image's
    # Without word "a", image-direction trials of "a" are skipped; text-direction trials offering "a" are too.
    no_a = {c: v for c, v in centres.items() if c != "a"}
    img_dir, txt_dir = score_trials(trials, imgs, no_a, "image"), score_trials(trials, imgs, no_a, "text")
    assert img_dir.skipped_categories == txt_dir.skipped_categories == ["a"]
    assert img_dir.n_trials == 100
    assert txt_dir.n_trials == sum(1 for t in trials if "a" not in t.categories)
    assert "with the trials that offer them" in txt_dir.table()


def test_directions_differ_where_they_should():
    """Foil images that also show a little of "a" beat the target in word -> images; the target image still
    picks "a" among the words in image -> words."""
    e = np.eye(4)
    words = dict(zip("abcd", e))
    imgs = np.stack([e[0] + 0.9 * (e[1] + e[2] + e[3]), e[1] + 0.9 * e[0], e[2] + 0.9 * e[0], e[3] + 0.9 * e[0]])
    t = Trial("a", (0, 1, 2, 3), 0, ("a", "b", "c", "d"))
    assert score_trials([t], imgs, words, "image").overall == 0.0
    assert score_trials([t], imgs, words, "text").overall == 1.0


def test_text_trials_need_categories():
    _, centres, labels, imgs = _world()
    bare = [Trial("a", (0, 6, 12, 18), 0)]
    with pytest.raises(InputError, match="category of every image"):
        score_trials(bare, imgs, centres, "text")
    assert score_trials(bare, imgs, centres, "text", labels=labels).overall == 1.0
    with pytest.raises(InputError, match="direction must be one of"):
        score_trials(bare, imgs, centres, "sideways")


def test_label_tokens_bare_or_as_utterance_and_word_for():
    vocab = Vocab(build_vocab(["the kitty", "a ball", "teddy bear"] * 3))
    known, toks = label_tokens(vocab, ["kitty", "teddy bear", "giraffe"])
    assert known == ["kitty", "teddy bear"]  # giraffe unknown: left out, not <unk>
    assert toks[0].tolist()[:3] == [2, vocab.ids["kitty"], 3]
    known, toks = label_tokens(vocab, ["kitty"], bare=True)
    assert toks.tolist() == [[vocab.ids["kitty"]]]  # as CVCL's eval.py feeds a label

    def encode(tokens):  # a stand-in utterance tower: one-hot mean over non-pad ids
        out = np.zeros((len(tokens), len(vocab)), np.float32)
        for i, row in enumerate(tokens):
            for t in row[row != 0]:
                out[i, t] += 1
        return out

    vecs = word_vectors(encode, vocab, ["cat", "ball"], bare=True, word_for={"cat": "kitty"})
    assert set(vecs) == {"cat", "ball"} and vecs["cat"][vocab.ids["kitty"]] == pytest.approx(1.0)


def test_the_online_memory_is_scored_in_both_directions(tmp_path):
    """The memory's prototypes go through the same scorer: after learning from utterances naming what is in
    view, both directions are well above chance; before, there is nothing to score."""
    from firstwords.edge.memory import AssociativeMemory

    rng = np.random.default_rng(0)
    cats = [f"thing{i}" for i in range(6)]
    mu = rng.normal(size=(6, 32))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)

    def frames(c, n):
        x = mu[c] + 0.5 * rng.normal(size=(n, 32)) / np.sqrt(32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    labels = [c for c in cats for _ in range(8)]
    imgs = np.concatenate([frames(i, 8) for i in range(6)])
    trials = make_trials(labels, 4, 20, seed=1)
    with AssociativeMemory(tmp_path / "m.db", 32) as mem:
        assert score_trials(trials, imgs, mem.word_vectors(), "text").n_trials == 0
        for i in range(200):
            c = int(rng.integers(6))
            text = f"look at the {cats[c]}!"
            mem.learn(words(text), frames(c, 4), float(i), text)
        vecs = mem.word_vectors()
        assert "!" not in vecs  # punctuation is not a word the memory learns
        for d in ("image", "text"):
            assert score_trials(trials, imgs, vecs, d).overall > 0.8, d
