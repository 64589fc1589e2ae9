"""Speech recognition in worker processes inside the learner: a replay of the sample soundtrack with two
recognition workers teaches the memory exactly what one in-thread recogniser teaches it; the pool closes with
the runtime; the speech backlog is measured and its bound warned about, never enforced by dropping audio."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from firstwords.edge.asr_pool import RecognizerPool
from firstwords.edge.learner import Learner, LearnerOptions
from firstwords.edge.replay import discover_session, replay
from firstwords.edge.runtime import build_runtime

pytest.importorskip("pocketsphinx")


def _state(mem) -> dict:
    words = sorted(mem.words())
    return {"words": words, "exposures": [mem.exposures(w) for w in words],
            "strength": np.array([mem.strength(w) for w in words]),
            "vectors": mem.word_vectors(words), "episodes": len(mem.episode_times())}


def _replay_audio(sample, path, workers: int) -> tuple[dict, dict]:
    with build_runtime("laptop", sample.bundle, path, realtime=False, speech=True, asr_workers=workers) as rt:
        assert isinstance(rt.recognizer, RecognizerPool) == (workers > 1)
        rep = replay(discover_session(sample.session), rt.encoder, rt.memory, words_from="audio",
                     options=rt.options, vad=rt.vad, recognizer=rt.recognizer, install_signal_handlers=False)
        assert not rep.errors
        pool = rt.recognizer
        state = _state(rt.memory)
    if workers > 1:
        with pytest.raises(RuntimeError):  # closed with the runtime: no more work accepted
            pool.submit(np.zeros(160, np.float32))
    return state, rep.stats


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed: no soundtrack")
def test_two_recognition_workers_teach_what_one_recogniser_teaches(sample, tmp_path):
    one, stats1 = _replay_audio(sample, tmp_path / "one.db", 1)
    two, stats2 = _replay_audio(sample, tmp_path / "two.db", 2)
    assert stats1["utterances"] > 5 and stats1["speech_segments"] == stats2["speech_segments"]
    assert one["words"] == two["words"] and one["exposures"] == two["exposures"]
    assert one["episodes"] == two["episodes"] > 5
    np.testing.assert_allclose(one["strength"], two["strength"], rtol=1e-5, atol=1e-6)
    for w in one["words"]:
        np.testing.assert_allclose(one["vectors"][w], two["vectors"][w], rtol=1e-4, atol=1e-5)
    assert stats2["speech_backlog_s"] == 0.0 and stats2["speech_backlog_max_s"] > 0


class _Seg:
    def __init__(self, start: float, seconds: float) -> None:
        self.start, self.end = start, start + seconds
        self.audio = np.zeros(int(seconds * 16000), np.float32)


class _SlowVad:
    """Every block is one 2-s segment of speech (a fake at the hardware edge: the VAD's interface)."""

    def feed(self, t, samples):
        return [_Seg(t, 2.0)]

    def flush(self):
        return []


class _SlowRecognizer:
    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio):
        import time

        time.sleep(0.05)
        self.calls += 1
        return "ball"


class _Memory:
    def __init__(self) -> None:
        self.learned = 0

    def learn(self, words, frame_embeddings, t, utterance_text, prior=None):
        self.learned += 1


def test_a_speech_backlog_over_the_bound_warns_once_and_drops_nothing(caplog):
    blocks = [(2.0 * i, np.zeros(32000, np.float32)) for i in range(12)]
    rec = _SlowRecognizer()
    seen = []
    learner = Learner(_NoEncoder(), _Memory(), None, audio=blocks, vad=_SlowVad(), recognizer=rec,
                      options=LearnerOptions(realtime=True, max_backlog_s=5.0, status_interval=0.01),
                      on_tick=lambda h: seen.append(h.speech_backlog_s))
    with caplog.at_level(logging.WARNING):
        rep = learner.run(install_signal_handlers=False)
    assert rec.calls == 12  # every segment recognised: nothing dropped for the backlog
    assert rep.stats["speech_backlog_max_s"] > 5.0 and rep.stats["backlog_exceeded"] >= 1
    assert rep.stats["speech_backlog_s"] == 0.0 and max(seen) > 0
    assert sum("cannot keep up" in r.message for r in caplog.records) == 1
    assert any("rose above 5 s" in w for w in rep.warnings)


class _NoEncoder:
    dim = 4

    def prepare(self, frames):
        raise AssertionError("no frames in this test")

    def encode_image_array(self, x):
        raise AssertionError("no frames in this test")

    def encode_utterance(self, texts):
        return np.ones((len(texts), 4), np.float32)

    def knows(self, word):
        return True
