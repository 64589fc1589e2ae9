"""Measuring a recogniser on synthetic speech: object-word recall, object false alarms in off-topic speech,
open-vocabulary word error, real-time factor (tools/bench_hearing.py is the command line over this).

Material, per voice (edge.synth): child-directed phrases naming an object, from the sample corpus' templates
(seen: they occur in the training sentences the speech LM was built from) and from `UNSEEN_NAMING` (never
seen), and adult OFF-TOPIC sentences that name nothing. Each clip has room noise and half a second of it on
each side, as a VAD cuts an utterance. A word counts as heard when the recogniser gives it a confidence of at
least `min_confidence` (the device config's `[memory] min_word_confidence`: what the memory would learn from).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.speech_text import ADULT_PROSODY, CHILD_PROSODY, OFF_TOPIC, UNSEEN_NAMING
from firstwords.edge.synth import NOISE_DB, room_noise, speak
from firstwords.edge.tokenize import words as tokenize_words

PAD_S = 0.5


@dataclass(frozen=True)
class Clip:
    kind: str  # "seen" | "unseen" | "off_topic"
    voice: str
    text: str
    target: str | None  # the object word named, None for off-topic speech
    audio: np.ndarray


@dataclass
class Tally:
    named: int = 0
    heard: int = 0
    named_unseen: int = 0
    heard_unseen: int = 0
    false_alarms: int = 0
    off_topic_s: float = 0.0
    edits: int = 0
    ref_words: int = 0
    cpu_s: float = 0.0
    audio_s: float = 0.0
    misses: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def figures(self) -> dict:
        return {"object_recall": _ratio(self.heard, self.named),
                "object_recall_seen_templates": _ratio(self.heard - self.heard_unseen,
                                                       self.named - self.named_unseen),
                "object_recall_unseen_templates": _ratio(self.heard_unseen, self.named_unseen),
                "offtopic_object_false_alarms_per_min": _ratio(self.false_alarms, self.off_topic_s / 60.0),
                "offtopic_wer": _ratio(self.edits, self.ref_words),
                "asr_realtime_factor": _ratio(self.cpu_s, self.audio_s),
                "named": self.named, "off_topic_minutes": round(self.off_topic_s / 60.0, 2)}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Edit distance over words (substitutions, insertions, deletions)."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d = d, np.empty_like(d)
        d[0] = i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[-1])


def make_clips(voice: str, objects: Sequence[str], seen_templates: Sequence[str], n_seen: int, n_unseen: int,
               n_off_topic: int, seed: int = 0) -> list[Clip]:
    """The material for one voice (deterministic for a seed and voice)."""
    rng = np.random.default_rng([seed, sum(map(ord, voice))])
    plan = [("seen", str(rng.choice(seen_templates))) for _ in range(n_seen)]
    plan += [("unseen", UNSEEN_NAMING[i % len(UNSEEN_NAMING)]) for i in rng.permutation(n_unseen)]
    clips = []
    for i, (kind, template) in enumerate(plan):
        word = objects[(i + int(rng.integers(len(objects)))) % len(objects)]
        text = template.format(w=word)
        clips.append(Clip(kind, voice, text, word, spoken_clip(text, voice, CHILD_PROSODY, rng)))
    for i in rng.permutation(len(OFF_TOPIC))[:n_off_topic]:
        clips.append(Clip("off_topic", voice, OFF_TOPIC[i], None,
                          spoken_clip(OFF_TOPIC[i], voice, ADULT_PROSODY, rng)))
    return clips


def spoken_clip(text: str, voice: str, prosody: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """`text` as the benchmarks speak it: the voice at the prosody with a little random rate and pitch, half a
    second of room noise on each side (as a VAD cuts an utterance), room noise throughout."""
    rate, pitch = prosody
    x = speak(text, voice, rate=rate * float(rng.uniform(0.92, 1.08)),
              pitch=pitch + float(rng.uniform(-1.5, 1.5)))
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), np.float32)
    x = np.concatenate([pad, 0.8 * x, pad])
    return x + room_noise(len(x), rng, NOISE_DB)


def score(recognizer, clips: Sequence[Clip], objects: Sequence[str], min_confidence: float) -> Tally:
    """Run the recogniser on every clip; recall, false alarms, word errors and CPU time (this thread's)."""
    t = Tally()
    object_set = set(objects)
    for c in clips:
        start = time.thread_time()
        result = recognizer.transcribe(c.audio)
        t.cpu_s += time.thread_time() - start
        t.audio_s += len(c.audio) / SAMPLE_RATE
        kept = {w.text for w in result.words if w.confidence >= min_confidence}
        if c.target is None:
            alarms = sorted(kept & object_set)
            t.false_alarms += len(alarms)
            t.off_topic_s += len(c.audio) / SAMPLE_RATE - 2 * PAD_S
            ref = tokenize_words(c.text)
            t.edits += word_errors(ref, tokenize_words(result.text))  # the best hypothesis' words
            t.ref_words += len(ref)
            if alarms:
                t.alarms.append(f"{c.voice}: {c.text!r} -> {result.text!r}")
        else:
            hit = c.target in kept
            t.named += 1
            t.heard += hit
            if c.kind == "unseen":
                t.named_unseen += 1
                t.heard_unseen += hit
            if not hit:
                t.misses.append(f"{c.voice}: {c.text!r} -> {result.text!r}")
    return t


_RSS_PROBE = """
import sys
from firstwords.edge.asr import make_recognizer
from firstwords.edge.bundle import load_bundle
from firstwords.edge.synth import speak
b = load_bundle(sys.argv[1]) if sys.argv[1] else None
kwargs = {"threads": 1} if sys.argv[3] == "whisper" else {}
rec = make_recognizer(sys.argv[3], bundle=b, **kwargs)
rec.transcribe(speak("look at the shoe, it is a nice shoe", sys.argv[2]))
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""
# VmHWM (kB), not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the process that forked, so a
# probe started by a bench holding several recognisers reported the bench's own peak.


def recognizer_peak_rss_mb(bundle_path: str | None, voice: str, recognizer: str = "pocketsphinx") -> float:
    """Peak RSS (MB) of a fresh process that loads the recogniser (with the bundle's speech model or words;
    whisper on one thread) and hears one phrase: Python, numpy and the decoder, no encoder or memory."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, bundle_path or "", voice, recognizer],
                          capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the RSS probe failed: {proc.stderr.strip()[-500:]}")
    return round(int(proc.stdout.strip().splitlines()[-1]) / 1024.0, 1)


def adapt_to_voices(bundle, voices: Sequence[str], objects: Sequence[str], templates: Sequence[str], out,
                    seed: int, n_seen: int = 12, n_unseen: int = 12, n_off_topic: int = 8,
                    method: str = "map") -> dict:
    """A home's speaker adaptation (edge.asr_adapt) for the benchmarks: a draw of the voices' speech (`seed`:
    other phrases and prosody than the measured draw's) heard in order by the unadapted recogniser, the
    adaptation (`method`) estimated from its own hypotheses into `out`. templates: the seen naming phrases
    (make_clips). Returns estimate_adaptation's account."""
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.asr_adapt import estimate_adaptation, hear

    rec = make_recognizer("pocketsphinx", bundle=bundle)
    heard = (hear(rec, c.audio) for voice in voices  # heard as estimate_adaptation reads it
             for c in make_clips(voice, objects, templates, n_seen, n_unseen, n_off_topic, seed))
    return estimate_adaptation(heard, out, dictionary=rec.decoder.config["dict"], method=method)
