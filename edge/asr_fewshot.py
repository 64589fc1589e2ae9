"""Few-shot word learning through the audio path: a word the bundle never saw (the sample corpus' novel
category, "bag"), spoken 1, 2, 5, 10 times near its object, heard by the device recogniser and learned by a
memory that has learned the training stream first (tools/bench_memory.py --spoken); 4-way accuracy of the
memory's word against never-seen images of it and foils of the other categories.

A memory that has seen nothing else cannot be measured this way: it whitens by the frames it has seen, so
with only the new word's frames there is nothing to tell the word's objects from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from firstwords.edge.asr_eval import spoken_clip
from firstwords.edge.heard import HeardWord
from firstwords.edge.speech_text import CHILD_PROSODY
from firstwords.edge.synth import DEFAULT_VOICES

SHOTS = (1, 2, 5, 10)


def hear(recognizer, text: str, voice: str, rng: np.random.Generator,
         min_confidence: float) -> list[HeardWord]:
    """`text` spoken by `voice` (child-directed, over room noise) and recognised: the words kept."""
    result = recognizer.transcribe(spoken_clip(text, voice, CHILD_PROSODY, rng))
    return [w for w in result.words if w.confidence >= min_confidence]


def spoken_shots(mem, recognizer, exposures: Sequence, word: str, score: Callable[[Any], float],
                 voices: Sequence[str] = DEFAULT_VOICES, min_confidence: float = 0.2, seed: int = 0,
                 shots: Sequence[int] = SHOTS) -> dict:
    """Teach `word` through the audio path to a memory that has already learned (the training stream, as a
    device would have): exposures (Moments: the utterance naming the word, its window's frame embeddings,
    the encoder's priors) are spoken by the voices in turn, recognised, and their words kept at
    `min_confidence` are learned with the frames, as the learner does; an exposure where the word is not heard
    teaches the word nothing. `score(mem)` is the 4-way accuracy of the memory's word vector.
    Returns {"accuracy": {k: after k exposures}, "heard": {k: exposures in which the word was heard},
    "exposures": [(text, voice, words heard)]}."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(exposures))[:max(shots)]
    out: dict = {"accuracy": {}, "heard": {}, "exposures": []}
    heard_count = 0
    for k in range(1, max(shots) + 1):
        e = exposures[order[k - 1]]
        voice = voices[(k - 1) % len(voices)]
        words = hear(recognizer, e.text, voice, rng, min_confidence)
        out["exposures"].append((e.text, voice, " ".join(w.text for w in words)))
        heard_count += any(w.text == word for w in words)
        if words:
            prior = {w.text: e.prior[w.text] for w in words if e.prior and w.text in e.prior}
            mem.learn(words, e.frame_embeddings, e.t, e.text, prior)
        if k in shots:
            out["accuracy"][k] = round(score(mem), 4)
            out["heard"][k] = heard_count
    return out
