"""Vocal tract length normalisation (edge.asr_warp): the pitch estimate, the warp it picks, and a recogniser
that warps per utterance hearing the same through a pool's cepstral-mean tracker as in sequence."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from firstwords.edge.asr import PocketSphinxRecognizer
from firstwords.edge.asr_warp import MAX_WARP, PITCH_SPLIT_HZ, median_pitch, utterance_warp, warp_for_pitch
from firstwords.edge.synth import speak

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (Debian package espeak-ng)")


def _voiced(f0: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))  # a glottal-like harmonic series
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("f0", [95.0, 120.0, 180.0, 230.0, 300.0])
def test_median_pitch_of_a_harmonic_series(f0):
    assert median_pitch(_voiced(f0)) == pytest.approx(f0, rel=0.04)


def test_noise_and_short_audio_have_no_pitch_and_no_warp():
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.05
    assert median_pitch(noise) == 0.0
    assert median_pitch(np.zeros(100, np.float32)) == 0.0
    assert warp_for_pitch(0.0) == 1.0


def test_a_male_pitch_is_not_warped_a_female_one_is():
    assert warp_for_pitch(120.0) == 1.0 and warp_for_pitch(PITCH_SPLIT_HZ - 1) == 1.0
    assert warp_for_pitch(PITCH_SPLIT_HZ) == warp_for_pitch(230.0) == MAX_WARP > 1.0
    assert warp_for_pitch(230.0, max_warp=1.0) == 1.0  # switched off


@needs_espeak
def test_a_low_voice_is_not_warped_a_high_one_is():
    low = speak("look at the shoe, it is a nice shoe", "espeak:en-us")
    high = speak("look at the shoe, it is a nice shoe", "espeak:en-us+f3", pitch=70)
    assert median_pitch(low) < PITCH_SPLIT_HZ < median_pitch(high)


@needs_espeak
def test_warped_decoding_is_the_same_through_a_tracker_as_in_sequence():
    """Voices alternate, so the warp changes from utterance to utterance: a worker handed the tracker's mean
    hears each utterance exactly as one recogniser does in sequence (edge.asr_pool's contract)."""
    said = [("look at the shoe", "espeak:en-us+f3"), ("where is the bag", "espeak:en-us"),
            ("that is a nice dress", "espeak:en-us+f3"), ("put on your boots", "espeak:en-us")]
    clips = [speak(text, voice) for text, voice in said]
    one, tracker, worker = (PocketSphinxRecognizer() for _ in range(3))
    sequential = [one.transcribe(a, cmn=one.advance_cmn(a)) for a in clips]
    states = [tracker.advance_cmn(a) for a in clips]
    pooled = [worker.transcribe(a, cmn=s) for a, s in zip(clips[::-1], states[::-1])][::-1]  # any order
    assert [t.words for t in pooled] == [t.words for t in sequential]
    assert {utterance_warp(a) for a in clips} == {1.0, MAX_WARP}  # the warp did change
    plain = PocketSphinxRecognizer(max_warp=1.0)
    plain.transcribe(clips[0])
    assert plain.decoder.config["warp_params"] == "1"  # never warped


@needs_espeak
def test_the_warp_does_not_depend_on_the_decoders_built_before_in_the_process():
    """pocketsphinx keeps the warp's parameters process-wide: a decoder built without a warp once made a
    later decoder's switch to the same warp string a no-op (the pool's tracker then heard unwarped what its
    fresh workers heard warped)."""
    female = speak("look at the shoe, it is a nice shoe", "espeak:en-us+f3")
    assert utterance_warp(female) == MAX_WARP
    means = []
    for _ in range(2):
        warped = PocketSphinxRecognizer()
        warped.advance_cmn(female)
        means.append(warped.decoder.get_cmn())
        plain = PocketSphinxRecognizer(max_warp=1.0)
        plain.advance_cmn(female)
    assert means[0] == means[1] != plain.decoder.get_cmn()
