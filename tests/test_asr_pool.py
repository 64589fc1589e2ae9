"""Speech recognition in worker processes: the same transcripts, in the same order, as one recogniser."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
from firstwords.edge.asr import _to_pcm16
from firstwords.edge.asr_pool import OrderedRecognition, RecognizerPool, RecognizerSpec, recognise_in_order
from firstwords.edge.errors import InputError
from firstwords.edge.hear import SAMPLE_RATE, resample

pytest.importorskip("pocketsphinx")
PHRASES = ["look at the ball", "where is the shoe", "that's a big dog", "the cat is sleeping now",
           "see the red bag", "give me the boot please", "can you find the sock", "all done"]
WORDS = ["look", "at", "the", "ball", "where", "is", "shoe", "a", "big", "dog", "cat", "see", "bag", "boot"]


def _speak(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
        return resample(pcm, w.getframerate(), SAMPLE_RATE)


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/install_system_deps.sh)")
    return [_speak(p) for p in PHRASES]


def test_the_decoder_adapts_across_utterances_and_the_pool_follows_it(speech):
    """pocketsphinx's cepstral mean carries over from utterance to utterance (which is why the pool hands each
    worker the mean a single decoder would have had): the same utterance after others is decoded from
    another mean than first thing."""
    rec = RecognizerSpec("pocketsphinx", {"vocabulary": WORDS}).build()
    first = rec.advance_cmn(speech[0])
    for a in speech[1:]:
        rec.transcribe(a)
    assert rec.advance_cmn(speech[0]) != first


def test_following_the_mean_costs_no_decoding_and_gives_the_same_mean(speech):
    """advance_cmn runs the utterance through a one-word search, not the recogniser's (which cost the pool's
    tracker a whole decode per utterance): the mean comes out the same, number for number, as when the real
    search ends the utterance, and the recogniser's own search is the active one again afterwards."""
    from firstwords.edge.asr_warp import MAX_WARP, utterance_warp
    from firstwords.edge.synth import speak

    spec = RecognizerSpec("pocketsphinx", {})  # the open search: general English, the heavy one
    cheap, real = spec.build(), spec.build()
    higher = [speak(p, "espeak:en-us+f3") for p in PHRASES[:3]]  # a voice whose utterances are warped
    said = [a for pair in zip(speech, higher) for a in pair]
    assert {utterance_warp(a) for a in said} == {1.0, MAX_WARP}
    for a in said:
        real._use_warp(a)  # as advance_cmn does first
        before = real.decoder.get_cmn()
        real.decoder.start_utt()
        real.decoder.process_raw(_to_pcm16(a), no_search=True)  # the same dithered samples
        real.decoder.end_utt()  # the default search decodes the whole utterance
        real._set_cmn(real.decoder.get_cmn())
        assert cheap.advance_cmn(a) == before
        assert cheap.decoder.get_cmn() == real.decoder.get_cmn()
    assert cheap.decoder.current_search() == real.decoder.current_search()
    assert cheap.transcribe(speech[0]) == real.transcribe(speech[0])


def test_the_pools_tracker_is_the_front_end_alone_and_follows_the_same_mean(speech):
    """The pool follows the mean with a recogniser built without the search's language model (the bundle's
    costs ~75 MB in the learner's process): its means are those of the full recogniser, utterance by
    utterance, under both warps."""
    from firstwords.edge.asr_warp import MAX_WARP, utterance_warp
    from firstwords.edge.synth import speak

    spec = RecognizerSpec("pocketsphinx", {"decoder_options": {"lw": 7.0}})  # the open search, general LM
    full, tracker = spec.build(), spec.build_tracker()
    assert full.lm_source != "none" and tracker.lm_source == "none" and tracker.vocabulary == ["a"]
    assert tracker.decoder.config["lw"] == 7.0 and tracker.max_warp == full.max_warp
    higher = [speak(p, "espeak:en-us+f3") for p in PHRASES[:3]]
    said = [a for pair in zip(speech, higher) for a in pair]
    assert {utterance_warp(a) for a in said} == {1.0, MAX_WARP}
    for a in said:
        assert tracker.advance_cmn(a) == full.advance_cmn(a)
    assert tracker.decoder.get_cmn() == full.decoder.get_cmn()


def test_two_workers_give_what_one_recogniser_gives_in_order(speech):
    spec = RecognizerSpec("pocketsphinx", {"vocabulary": WORDS})
    rec = spec.build()
    sequential = [recognise_in_order(rec, a) for a in speech * 2]
    with RecognizerPool(spec, workers=2) as pool:
        ordered = OrderedRecognition(pool, max_in_flight=3)
        got = []
        for i, audio in enumerate(speech * 2):
            got += ordered.submit(i, audio)
        got += list(ordered.drain())
    assert [r.item for r in got] == list(range(2 * len(speech)))
    assert [r.transcript for r in got] == sequential
    assert all(r.error is None and r.seconds > 0 for r in got)
    assert any(t.text for t in sequential)  # something was heard at all


def test_a_recogniser_that_cannot_be_built_fails_at_start():
    with pytest.raises(InputError, match="unknown recognizer"):
        RecognizerPool(RecognizerSpec("no-such-recognizer"), workers=1)


def test_one_bad_utterance_fails_alone(speech):
    bad = speech[0].copy()
    bad[100] = np.nan  # the recogniser refuses non-finite audio
    with RecognizerPool(RecognizerSpec("pocketsphinx", {"vocabulary": WORDS}), workers=2) as pool:
        ordered = OrderedRecognition(pool)
        got = ordered.submit("bad", bad) + ordered.submit("good", speech[1]) + list(ordered.drain())
    assert [r.item for r in got] == ["bad", "good"]
    assert isinstance(got[0].error, InputError) and got[0].transcript is None
    assert got[1].error is None and got[1].transcript.text
