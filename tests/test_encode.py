"""The device Encoder: real onnxruntime sessions over a real bundle, compared with the torch model."""

from __future__ import annotations

import numpy as np
import pytest
from firstwords.edge.encode import Encoder
from firstwords.edge.errors import InputError
from firstwords.edge.preprocess import prepare_images

torch = pytest.importorskip("torch")
from firstwords.export.tiny_dual import DIM, SIZE, make_bundle, tiny_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("enc") / "bundle", seed=1)


@pytest.fixture(scope="module")
def enc(bundle):
    return Encoder(bundle, threads=1)


def _frames(n, h=48, w=64, seed=0):
    return [np.random.default_rng(seed + i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)]


def test_encode_image_matches_torch(enc):
    frames = _frames(5)
    got = enc.encode_image(frames)
    assert got.shape == (5, DIM) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    x = prepare_images(frames, SIZE)
    with torch.no_grad():
        want = tiny_model(seed=1).encode_image(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_encode_image_accepts_array_and_single_frame(enc):
    frames = _frames(3)
    a = enc.encode_image(np.stack(frames))
    b = enc.encode_image(frames)
    np.testing.assert_allclose(a, b, atol=1e-6)
    one = enc.encode_image(frames[0])
    np.testing.assert_allclose(one[0], b[0], atol=1e-6)


def test_batches_larger_than_max_batch(bundle):
    small = Encoder(bundle, threads=1, max_batch=2)
    frames = _frames(5, seed=7)
    np.testing.assert_allclose(small.encode_image(frames), Encoder(bundle).encode_image(frames), atol=1e-5)


def test_encode_utterance_matches_torch_with_padding_masked(enc):
    texts = ["Look at the BALL!", "dog", "a cat and a shoe and a dog"]
    got = enc.encode_utterance(texts)
    assert got.shape == (3, DIM)
    tokens = enc.vocab.encode_batch(texts)
    assert (tokens == 0).any()  # padding present, so masking is exercised
    with torch.no_grad():
        want = tiny_model(seed=1).encode_utterance(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # a padded row equals the same utterance encoded alone (pads are masked inside the graph)
    np.testing.assert_allclose(got[1], enc.encode_utterance(["dog"])[0], atol=1e-6)


def test_word_embedding_and_vocab(enc):
    np.testing.assert_allclose(enc.word_embedding("ball"), enc.encode_utterance(["ball"])[0])
    assert enc.knows("ball") and enc.knows("Ball") and not enc.knows("giraffe")
    # unknown words encode as <unk>: all unknown words give the same vector
    np.testing.assert_allclose(enc.word_embedding("giraffe"), enc.word_embedding("zebra"))


@pytest.mark.parametrize("bad",
                         [[np.zeros((8, 8, 3), np.float32)], [np.zeros((8, 8, 4), np.uint8)], [], "frame"])
def test_bad_frames_raise_input_error(enc, bad):
    with pytest.raises(InputError):
        enc.encode_image(bad)


@pytest.mark.parametrize("bad", ["just a string", [], [1, 2], [None]])
def test_bad_texts_raise_input_error(enc, bad):
    with pytest.raises(InputError):
        enc.encode_utterance(bad)


def test_bad_arrays_raise_input_error(enc):
    with pytest.raises(InputError, match=r"\[N, 3, 32, 32\]"):
        enc.encode_image_array(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="token ids must lie"):
        enc.encode_tokens(np.array([[2, 999, 3]]))
    with pytest.raises(InputError):
        enc.word_embedding("  ")


def test_bad_threads(bundle):
    with pytest.raises(InputError, match="threads"):
        Encoder(bundle, threads=0)


def test_threads_beyond_the_machine_are_refused_before_any_thread_starts(bundle):
    """threads = 100000 (a typo, or --threads) used to start ~1000 OS threads and hang the machine."""
    import os
    import time

    from firstwords.edge.config import max_threads

    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"threads = 100000 is too many: at most \d+ on this machine"):
        Encoder(bundle, threads=100000)
    assert time.monotonic() - t0 < 5
    assert Encoder(bundle, threads=min(max_threads(), 2 * (os.cpu_count() or 1))).dim == DIM


@pytest.mark.parametrize("shape", [(60000, 60000, 3), (1, 20000, 20000, 3)])
def test_huge_frames_are_refused_before_preprocessing(enc, shape):
    """`ask --image` of a 20000 x 20000 PNG took 6 GB and 26 s in preprocessing. The frame here costs no
    memory (a broadcast view); the encoder must refuse it by its size, before any float copy is made."""
    import time

    from firstwords.edge.encode import MAX_FRAME_PIXELS

    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), shape)
    t0 = time.monotonic()
    for call in (enc.prepare, enc.encode_image,
                 lambda f: enc.encode_image([_frames(1)[0], f[0] if f.ndim == 4 else f])):
        with pytest.raises(InputError, match=r"a frame of \d+ x \d+ pixels is larger than the 25,000,000 "
                                             r"pixels"):
            call(huge)
    assert time.monotonic() - t0 < 2
    side = int(MAX_FRAME_PIXELS ** 0.5)
    ok = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (side // 8, side // 8, 3))
    assert enc.encode_image(ok).shape == (1, DIM)


def test_batches_encoded_at_once_from_two_threads_give_the_same_embeddings(enc):
    """A full-speed replay encodes two batches at once on one session; every frame's embedding is the one a
    batch of its own gives (the memory it learns must not change)."""
    from concurrent.futures import ThreadPoolExecutor

    frames = _frames(24, seed=3)
    alone = np.concatenate([enc.encode_image([f]) for f in frames])
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(enc.encode_image, [frames[i:i + 5] for i in range(0, 24, 5)]))
    np.testing.assert_array_equal(np.concatenate(parts), alone)


def test_idle_onnxruntime_threads_do_not_spin(enc):
    """A spinning intra-op pool takes the CPU the learner's other threads need (measured: 2 spinning threads
    on 2 busy cores made the tower 1.9x slower than 1 thread)."""
    for s in (enc._image, enc._utterance):
        assert s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
