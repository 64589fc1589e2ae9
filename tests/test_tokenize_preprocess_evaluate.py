"""The shared pieces both sides rely on: CVCL tokenisation, numpy preprocessing, the n-way protocol."""

import numpy as np
import pytest
from firstwords.edge.errors import BundleError, InputError
from firstwords.edge.evaluate import make_trials, score_trials, wilson_interval
from firstwords.edge.preprocess import prepare_images, resize_bilinear
from firstwords.edge.tokenize import LEGACY_RULE, MAX_TOKENS, Vocab, build_vocab, tokens, words


def test_words_and_vocab_follow_cvcl_rules():
    assert tokens("Look at your SHOE!  where's the ball?") == ["look", "at", "your", "shoe", "!", "where", "'s",
                                                              "the", "ball", "?"]
    assert words("Look at your SHOE!  where's the ball?") == ["look", "at", "your", "shoe", "where", "'s", "the",
                                                             "ball"]
    # the first rule, kept for artefacts that do not name theirs
    assert words("Look at your SHOE!  where's the ball?", LEGACY_RULE) == ["look", "at", "your", "shoe", "where's",
                                                                          "the", "ball"]
    vocab = build_vocab(["the ball.", "the ball.", "the ball.", "a shoe", "a shoe"], min_freq=3)
    assert list(vocab) == ["<pad>", "<unk>", "<sos>", "<eos>", ".", "ball", "the"]  # shoe/a seen twice: dropped
    v = Vocab(vocab)
    assert v.encode("The ball, a SHOE.") == [2, 6, 5, 1, 1, 1, 4, 3]
    assert Vocab(vocab, rule=LEGACY_RULE).encode("The ball, a SHOE.") == [2, 6, 5, 1, 1, 3]
    with pytest.raises(BundleError, match="unknown tokenizer rule 'nltk'"):
        Vocab(vocab, rule="nltk")
    long = v.encode(" ".join(["ball"] * 40))
    assert len(long) == MAX_TOKENS and long[0] == 2 and long[-1] == 3
    batch = v.encode_batch(["ball", "the ball the"])
    assert batch.shape == (2, 5) and batch[0].tolist() == [2, 5, 3, 0, 0]


def test_vocab_rejects_non_cvcl_layout(tmp_path):
    with pytest.raises(BundleError, match="<pad> to 0"):
        Vocab({"<pad>": 1, "<unk>": 0, "<sos>": 2, "<eos>": 3})
    p = tmp_path / "vocab.json"
    p.write_text("[1, 2]")
    with pytest.raises(BundleError, match="vocab.json.*JSON object"):
        Vocab.from_file(p)


def test_resize_matches_pixel_centre_bilinear():
    frame = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    half = resize_bilinear(frame, 2)[:, :, 0]
    # Output pixel centres fall midway between input pairs: the mean of each 2x2 block.
    np.testing.assert_allclose(half, [[2.5, 4.5], [10.5, 12.5]])
    x = prepare_images([np.full((10, 20, 3), 255, np.uint8)], 8, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((4, 4, 4), np.uint8), "H x W x 3"),
    ([[1, 2]], "numpy array"),
])
def test_bad_frames_get_clear_errors(bad, msg):
    with pytest.raises(InputError, match=msg):
        prepare_images([bad], 8)


def test_trials_are_cvcl_shaped_and_deterministic():
    labels = [c for c in "abcdef" for _ in range(5)]
    t1 = make_trials(labels, n_way=4, trials_per_category=10, seed=3)
    assert t1 == make_trials(labels, n_way=4, trials_per_category=10, seed=3)
    assert t1 != make_trials(labels, n_way=4, trials_per_category=10, seed=4)
    assert len(t1) == 60
    for t in t1:
        cats = [labels[i] for i in t.image_indices]
        assert cats[t.target_position] == t.category
        assert len(set(cats)) == 4  # foils from distinct other categories
    with pytest.raises(InputError, match="at least 10 categories"):
        make_trials(labels, n_way=10)


def test_scoring_perfect_random_and_missing_words():
    rng = np.random.default_rng(0)
    cats = list("abcd")
    centres = {c: rng.normal(size=16) for c in cats}
    labels = [c for c in cats for _ in range(8)]
    imgs = np.stack([centres[c] + 0.05 * rng.normal(size=16) for c in labels])
    trials = make_trials(labels, n_way=4, trials_per_category=25, seed=0)
    perfect = score_trials(trials, imgs, centres)
    assert perfect.overall == 1.0 and perfect.chance == 0.25 and perfect.n_trials == 100
    shuffled = score_trials(trials, imgs, {c: centres[cats[(i + 1) % 4]] for i, c in enumerate(cats)})
    assert shuffled.overall == 0.0
    partial = score_trials(trials, imgs, {"a": centres["a"]})
    assert partial.skipped_categories == ["b", "c", "d"] and partial.n_trials == 25
    zero = score_trials(trials, imgs, {c: np.zeros(16) for c in cats})
    assert zero.overall == 0.0  # ties are not lucky guesses


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
    assert wilson_interval(0, 0) == (0.0, 1.0)
