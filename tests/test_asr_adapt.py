"""Speaker adaptation (edge.asr_adapt): a home's voices fitted with CMU Sphinx's own trainer from the
device's own hypotheses; the recogniser and the runtime hear through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge import asr_adapt
from firstwords.edge.asr_adapt import (
    HeardUtterance,
    adaptation_path,
    adaptation_words,
    estimate_adaptation,
    find_tools,
    hear,
    read_sendump,
)
from firstwords.edge.errors import DataError, InputError, MissingExtraError

ps = pytest.importorskip("pocketsphinx")
SENTENCES = ["look at the ball", "where is the shoe", "that's a big dog", "the cat is sleeping now",
             "see the red bag on the floor", "give me the boot please", "can you find the sock",
             "my brother drove to the city", "the weather was cold all winter", "put the cup on the table",
             "we are going to the park today", "do you want some more milk", "here comes the little train",
             "the water is too hot to drink"]


def _tools_or_skip() -> None:
    try:
        find_tools()
    except MissingExtraError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def heard() -> tuple[list[HeardUtterance], object]:
    """~40 s of a higher voice (one the recogniser warps), heard in order by the general English
    recogniser."""
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.synth import available_voices, speak

    _tools_or_skip()
    if not available_voices(["espeak:en-us+f3"]):
        pytest.skip("espeak-ng is not installed (tools/install_system_deps.sh)")
    rec = make_recognizer("pocketsphinx")
    audio = [speak(s, "espeak:en-us+f3", rate=r) for r in (1.0, 1.3) for s in SENTENCES]
    return [hear(rec, a) for a in audio], rec


def test_the_shipped_mixture_weights_read_as_probabilities():
    w = read_sendump(Path(ps.Config()["hmm"]) / "sendump")
    assert w.ndim == 3 and w.shape[0] == 3 and w.shape[1] == 128  # 3 streams, 128 Gaussians per codebook
    assert np.allclose(w.sum(axis=1), 1.0)
    assert (w > 0).all() and len(np.unique(w[0, :, 0])) > 10  # weights, not a constant


def test_words_for_the_trainer_are_the_dictionarys_spelling():
    assert adaptation_words("where 's the Shoe? that 's it") == ["where's", "the", "shoe", "that's", "it"]
    assert adaptation_path("work/memory.db") == Path("work/memory.speech.adapt")


@pytest.mark.parametrize("method", ["map", pytest.param("mllr", marks=pytest.mark.slow)])
def test_the_adaptation_fits_the_voice_it_heard(heard, tmp_path, method):
    """Estimated from the recogniser's own hypotheses (no true text), the adaptation makes the model fit that
    voice better: the best paths score higher through it, in total and for most utterances."""
    from firstwords.edge.asr import make_recognizer

    utterances, rec = heard
    out = tmp_path / "home.speech.adapt"
    info = estimate_adaptation(utterances, out, dictionary=rec.decoder.config["dict"], method=method)
    assert info["method"] == method
    assert out.is_file() and info["utterances"] >= 2 * len(SENTENCES) - 4 and info["speech_minutes"] > 0.5
    assert {u.warp for u in utterances} == {asr_adapt.utterance_warp(utterances[0].audio)} != {1.0}
    plain, adapted = make_recognizer("pocketsphinx"), make_recognizer("pocketsphinx", adaptation=out)
    assert adapted.adaptation == str(out)
    scores = np.zeros((len(utterances), 2))
    for i, u in enumerate(utterances):
        for j, r in enumerate((plain, adapted)):
            r.transcribe(u.audio)
            scores[i, j] = r.decoder.hyp().score  # log-likelihood of the best path (acoustic + language)
    assert scores[:, 1].sum() > scores[:, 0].sum()
    assert (scores[:, 1] > scores[:, 0]).mean() >= 2 / 3, scores


def test_too_little_speech_is_refused_and_nothing_written(heard, tmp_path):
    utterances, rec = heard
    out = tmp_path / "x.adapt"
    with pytest.raises(InputError, match="at least 30 s"):
        estimate_adaptation(utterances[:2], out)
    with pytest.raises(InputError, match="unknown adaptation method"):
        estimate_adaptation(utterances, out, method="fmllr")
    assert not out.exists()


def test_missing_programs_say_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(asr_adapt, "SPHINXTRAIN_DIRS", ("/nonexistent",))
    with pytest.raises(MissingExtraError, match="apt-get install sphinxtrain sphinxbase-utils"):
        find_tools()


def test_an_adaptation_file_that_is_not_one_is_a_clear_error(tmp_path):
    from firstwords.edge.asr import make_recognizer

    with pytest.raises(DataError, match="speaker adaptation file not found"):
        make_recognizer("pocketsphinx", adaptation=tmp_path / "none.adapt")
    (tmp_path / "other.adapt").write_bytes(b"s3\nversion 1.0\nendhdr\n" + bytes(100))  # another model
    with pytest.raises(DataError, match="another acoustic model"):
        make_recognizer("pocketsphinx", adaptation=tmp_path / "other.adapt")
    (tmp_path / "junk.adapt").write_text("not an adaptation")
    with pytest.raises(DataError, match="not a speaker adaptation"):
        make_recognizer("pocketsphinx", adaptation=tmp_path / "junk.adapt")


def test_adapt_command_writes_beside_the_memory_and_the_runtime_hears_through_it(sample, tmp_path):
    """`firstwords adapt` on a session -> memory.speech.adapt; build_runtime's recogniser (and a pool's
    workers) then load it, and a memory without one hears unadapted."""
    from firstwords.edge.runtime import build_runtime

    _tools_or_skip()
    if not sample.has_audio:
        pytest.skip("the sample session has no soundtrack (espeak-ng missing)")
    memory = tmp_path / "home" / "memory.db"
    memory.parent.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "firstwords.edge.cli", "adapt", str(sample.session),
                           "--bundle", str(sample.bundle), "--memory", str(memory), "--minutes", "5"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(info["path"]) == adaptation_path(memory) and adaptation_path(memory).is_file()
    assert "speech heard" in proc.stderr  # the progress bar
    with build_runtime("laptop", sample.bundle, memory, realtime=False, speech=True, asr_workers=1) as rt:
        assert rt.recognizer.adaptation == str(adaptation_path(memory))
    with build_runtime("laptop", sample.bundle, tmp_path / "other.db", realtime=False, speech=True,
                       asr_workers=1) as rt:
        assert rt.recognizer.adaptation is None
    with build_runtime("laptop", sample.bundle, memory, realtime=False, speech=True, asr_workers=2) as rt:
        assert rt.recognizer.spec.kwargs["adaptation"] == str(adaptation_path(memory))


def test_a_bare_recording_of_the_home_adapts_too(sample, tmp_path):
    """A wav recorded in the home (no video, no session folder) is heard as it is."""
    from firstwords.edge.asr_adapt import adapt_home
    from firstwords.edge.bundle import load_bundle

    _tools_or_skip()
    if not sample.has_audio:
        pytest.skip("the sample session has no soundtrack (espeak-ng missing)")
    wav = tmp_path / "living-room.wav"
    wav.write_bytes((sample.session / "session.wav").read_bytes())
    bundle = load_bundle(sample.bundle)
    try:
        info = adapt_home([wav], bundle, tmp_path / "m.speech.adapt", max_minutes=1)
    finally:
        bundle.close()
    assert info["sessions"] == 1 and info["speech_minutes"] >= 0.5 and (tmp_path / "m.speech.adapt").is_file()
    assert list(info["heard"]) == [str(wav)]
