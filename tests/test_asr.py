"""Speech recognition: espeak-ng phrases -> VAD -> pocketsphinx's closed searches (biased to a vocabulary)
recover the object words; HeardWords with times and confidences; the recognizer interface, registry and bad
input. The open-vocabulary device search with the bundle's speech LM: tests/test_hearing.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from firstwords.edge.asr import (
    RECOGNIZERS,
    PocketSphinxRecognizer,
    Transcript,
    available_recognizers,
    make_recognizer,
    register_recognizer,
)
from firstwords.edge.errors import InputError
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.heard import HeardWord
from firstwords.edge.synth import speak
from firstwords.edge.tokenize import words
from firstwords.edge.vad import make_vad

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (Debian package espeak-ng)")

OBJECTS = ["shoe", "ball", "dog", "boot", "coat", "bag", "cup"]
TEMPLATES = ["look at the {w}", "where's the {w}", "that's a {w}", "do you want the {w}", "here's your {w}"]
VOCAB = sorted({w for t in TEMPLATES for w in words(t.format(w=""))} | set(OBJECTS) | {"<pad>", "<unk>"})
SENTENCES = [t.format(w=o) for t in TEMPLATES for o in OBJECTS]
SAID = ["look at the shoe", "where's the ball", "that's a dog", "here's your coat", "look at the boot"]


@pytest.fixture(scope="module")
def clips():
    if ESPEAK is None:
        pytest.skip("espeak-ng not installed")
    # the US voice at 150 wpm (pocketsphinx's model is US English), with espeak's own silence around it
    return [speak(text, "espeak:en-us", rate=1.1, margin=0.3) for text in SAID]


@pytest.fixture(scope="module")
def lm_recognizer():
    return PocketSphinxRecognizer(vocabulary=VOCAB, sentences=SENTENCES, bias="lm")


@needs_espeak
def test_vad_then_biased_pocketsphinx_recovers_object_words(clips, lm_recognizer):
    rng = np.random.default_rng(0)
    noise = lambda s: (rng.standard_normal(int(s * SAMPLE_RATE)) * 0.003).astype(np.float32)
    session = np.concatenate([noise(0.8)] + [p for c in clips for p in (c + noise(len(c) / SAMPLE_RATE),
                                                                        noise(1.0))])
    segs = make_vad("silero").segment(session)
    assert len(segs) == len(SAID)
    recovered = 0
    for seg, text in zip(segs, SAID):
        tr = lm_recognizer.transcribe(seg.audio)
        obj = (set(words(text)) & set(OBJECTS)).pop()
        recovered += obj in tr.tokens
        assert set(tr.tokens) <= set(VOCAB)  # biased: nothing outside the vocabulary
    assert recovered >= len(SAID) - 1  # measured 4/4 here; one miss tolerated across pocketsphinx versions


@needs_espeak
def test_digital_silence_does_not_derail_recognition(clips, lm_recognizer):
    # espeak-ng pads with exact zeros; without dither pocketsphinx heard "look at the shoe" as "shoe" / "do"
    hits = sum((set(words(t)) & set(OBJECTS)).pop() in lm_recognizer.transcribe(c).tokens
               for c, t in zip(clips, SAID))
    assert hits == len(SAID)  # without the dither: 3 of 5


@needs_espeak
def test_transcript_words_have_times_and_confidences(clips, lm_recognizer):
    audio = clips[0]
    tr = lm_recognizer.transcribe(audio)
    assert isinstance(tr, Transcript) and tr.text == " ".join(tr.tokens)
    assert tr.words and 0.0 <= tr.confidence <= 1.0
    dur = len(audio) / SAMPLE_RATE
    for w in tr.words:
        assert isinstance(w, HeardWord) and 0.0 <= w.start < w.end <= dur + 0.02 and 0.0 <= w.confidence <= 1.0
    assert [w.start for w in tr.words] == sorted(w.start for w in tr.words)
    assert "shoe" in tr.tokens and tr.words[tr.tokens.index("shoe")].start > 0.3  # last word, not the first


@needs_espeak
def test_keyword_spotting_of_object_words(clips):
    rec = PocketSphinxRecognizer(vocabulary=OBJECTS, bias="keywords", kws_threshold=1e-20)
    hits = sum(obj in rec.transcribe(c).tokens for c, obj in zip(clips, ["shoe", "ball", "dog", "coat"]))
    assert hits >= 3


def test_vocabulary_words_without_pronunciation_are_reported():
    rec = PocketSphinxRecognizer(vocabulary=["ball", "xqzzyv", "<pad>", "Ball"], bias="lm")
    assert rec.vocabulary == ["ball"] and rec.unknown_words == ["xqzzyv"]
    with pytest.raises(InputError, match="dictionary"):
        PocketSphinxRecognizer(vocabulary=["xqzzyv"], bias="lm")
    with pytest.raises(InputError, match="bias"):
        PocketSphinxRecognizer(vocabulary=["ball"], bias="loud")
    with pytest.raises(InputError, match="vocabulary"):
        PocketSphinxRecognizer(bias="grammar")


def test_bad_and_tiny_audio(lm_recognizer):
    with pytest.raises(InputError, match="NaN or Inf"):
        lm_recognizer.transcribe(np.full(8000, np.nan, np.float32))
    with pytest.raises(InputError):
        lm_recognizer.transcribe(np.zeros(8000, np.int16))
    assert lm_recognizer.transcribe(np.zeros(0, np.float32)) == Transcript("")
    assert lm_recognizer.transcribe(np.zeros(800, np.float32)).text == ""  # 50 ms
    assert isinstance(lm_recognizer.transcribe(np.clip(np.full(16000, 5.0, np.float32), -1, 1)), Transcript)


class EchoRecognizer:
    """A user's own recognizer: anything with `name` and `transcribe(audio) -> Transcript`."""

    name = "echo"

    def __init__(self, text: str = "hello"):
        self.text = text

    def transcribe(self, audio):
        return Transcript(self.text, (HeardWord(self.text, 0.0, len(audio) / SAMPLE_RATE, 1.0),), 1.0)


def test_registry_builds_user_recognizers(monkeypatch):
    monkeypatch.setitem(RECOGNIZERS, "echo", RECOGNIZERS.get("echo"))
    register_recognizer("echo", EchoRecognizer)
    assert "echo" in available_recognizers() and "pocketsphinx" in available_recognizers()
    assert make_recognizer("echo", text="ball").transcribe(np.zeros(1600, np.float32)).text == "ball"
    with pytest.raises(InputError, match="unknown recognizer"):
        make_recognizer("whisper-from-the-internet")
