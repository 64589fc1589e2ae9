"""Few-shot word learning through the audio path: a word the bundle never saw (the sample corpus' novel
category, "bag"), spoken 1, 2, 5, 10 times near its object, heard by the device recogniser and learned by the
memory; 4-way accuracy of the memory's word against never-seen images of it and foils of the other categories.

Each exposure of the corpus' `novel_exposures.json` (an utterance naming the word and the 5 frames of its
window) is spoken by a voice in turn (child-directed prosody, room noise), recognised, and its words with a
confidence of at least `min_confidence` are learned with the frames' embeddings, as the learner does. An
exposure where the word is not heard teaches the word nothing. A fresh memory (the transcript-path few-shot of
tools/bench_memory.py first learns the training stream).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from firstwords.edge.heard import HeardWord
from firstwords.edge.speech_text import CHILD_PROSODY
from firstwords.edge.synth import DEFAULT_VOICES, room_noise, speak

SHOTS = (1, 2, 5, 10)


def hear(recognizer, text: str, voice: str, rng: np.random.Generator, min_confidence: float) -> list[HeardWord]:
    """`text` spoken by `voice` (child-directed, over room noise) and recognised: the words kept."""
    from firstwords.edge.hear import SAMPLE_RATE

    rate, pitch = CHILD_PROSODY
    x = speak(text, voice, rate=rate * float(rng.uniform(0.92, 1.08)), pitch=pitch + float(rng.uniform(-1.5, 1.5)))
    pad = np.zeros(SAMPLE_RATE // 2, np.float32)
    x = np.concatenate([pad, 0.8 * x, pad])
    result = recognizer.transcribe(x + room_noise(len(x), rng))
    return [w for w in result.words if w.confidence >= min_confidence]


def _images(encoder, corpus: Path, files: Sequence[str]) -> np.ndarray:
    from firstwords.edge.capture import import_cv2

    cv2 = import_cv2()
    rgb = []
    for f in files:
        bgr = cv2.imread(str(corpus / f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {corpus / f}; rebuild the corpus (tools/build_sample_corpus.py)")
        rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.concatenate([encoder.encode_image(rgb[i:i + 64]) for i in range(0, len(rgb), 64)])


def few_shot_spoken(encoder, recognizer, corpus: str | Path, voices: Sequence[str] = DEFAULT_VOICES,
                    min_confidence: float = 0.2, seed: int = 0, trials_per_category: int = 200,
                    shots: Sequence[int] = SHOTS) -> dict:
    """{"word", "accuracy": {k: 4-way accuracy after k spoken exposures}, "heard": {k: exposures in which the
    word was heard}, "exposures": [(text, voice, words heard)]}."""
    from firstwords.edge.evaluate import make_trials, score_trials
    from firstwords.edge.memory import AssociativeMemory

    corpus = Path(corpus)
    load = lambda name: json.loads((corpus / name).read_text(encoding="utf-8"))["data"]
    exposures, novel, ev = load("novel_exposures.json"), load("novel.json"), load("eval.json")
    word = novel[0]["category"]
    labels = [e["category"] for e in ev] + [word] * len(novel)
    emb = _images(encoder, corpus, [e["frame_filename"] for e in ev + novel])
    trials = [t for t in make_trials(labels, 4, trials_per_category, seed) if t.category == word]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(exposures))[:max(shots)]
    out: dict = {"word": word, "accuracy": {}, "heard": {}, "exposures": []}
    heard_count = 0
    with tempfile.TemporaryDirectory(prefix="firstwords-fewshot-") as tmp, \
            AssociativeMemory(Path(tmp) / "memory.db", encoder.dim) as mem:
        for k in range(1, max(shots) + 1):
            e = exposures[order[k - 1]]
            voice = voices[(k - 1) % len(voices)]
            words = hear(recognizer, e["utterance"], voice, rng, min_confidence)
            out["exposures"].append((e["utterance"], voice, " ".join(w.text for w in words)))
            heard_count += any(w.text == word for w in words)
            if words:
                mem.learn([w.text for w in words], _images(encoder, corpus, e["frame_filenames"]), 1e9 + k,
                          e["utterance"])
            if k in shots:
                vec = mem.word_vectors([word])
                out["accuracy"][k] = round(score_trials(trials, emb, vec).overall, 4) if vec else 0.25
                out["heard"][k] = heard_count
    return out
