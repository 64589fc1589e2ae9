#!/usr/bin/env python3
"""Measure the hearing path on speech made by espeak-ng: VAD (energy, Silero) -> pocketsphinx (each bias).

Builds a session of child-directed phrases (the sample corpus' templates and object words) spoken by espeak-ng
with pauses and room noise, then reports, side by side in one run:
- VAD: utterances found / expected, boundary errors, real-time factor (processing time / audio time);
- ASR on the VAD's segments: object-word recovery (the phrase's object word is in the transcript), object
  false alarms (an object word recognised that was not said), word error rate, real-time factor.
Last line: one JSON object with the figures.

    .venv/bin/python tools/bench_hearing.py --n 30 --biases grammar,keywords,lm,none
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from firstwords.edge.asr import PocketSphinxRecognizer
from firstwords.edge.hear import SAMPLE_RATE, read_audio, write_wav
from firstwords.edge.tokenize import words as tokenize_words
from firstwords.edge.vad import make_vad

try:  # the sample corpus' own phrases, so the bench measures what the demo hears
    from firstwords.export.sample_corpus import CHATTER, CLASS_WORDS, NAMING

    OBJECTS = sorted(set(CLASS_WORDS.values()))
except ImportError:  # pragma: no cover - the corpus tool is optional here
    NAMING = ["look at the {w}", "where's the {w}?", "that's a {w}", "see the {w}?", "it's a {w}"]
    CHATTER = ["look at that", "all done", "good job", "here you go", "uh oh"]
    OBJECTS = ["shirt", "pants", "sweater", "dress", "coat", "sandal", "shoe", "bag", "boot"]


def wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance, reference length) over words."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d = d, np.empty_like(d)
        d[0] = i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[-1]), len(ref)


def make_session(n: int, seed: int, workdir: Path, voice: str, wpm: int, noise_db: float):
    rng = np.random.default_rng(seed)
    noise_amp = 10 ** (noise_db / 20)
    texts = []
    for i in range(n):
        if i % 4 == 3:
            texts.append(str(rng.choice(CHATTER)))
        else:
            texts.append(str(rng.choice(NAMING)).format(w=str(rng.choice(OBJECTS))))
    parts = [rng.standard_normal(SAMPLE_RATE).astype(np.float32) * noise_amp]
    truth, t = [], 1.0
    for i, text in enumerate(texts):
        wav = workdir / f"u{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True,
                       capture_output=True)
        clip = read_audio(wav)
        loud = np.nonzero(np.abs(clip) > 0.01)[0]
        a, b = loud[0], loud[-1] + 1
        clip = clip[max(0, a - 800): b + 800]  # espeak's own silence trimmed to 50 ms each side
        truth.append((t + min(800, a) / SAMPLE_RATE, t + (len(clip) - 800) / SAMPLE_RATE, text))
        pause = rng.uniform(0.6, 1.6)
        parts += [clip + rng.standard_normal(len(clip)).astype(np.float32) * noise_amp,
                  rng.standard_normal(int(pause * SAMPLE_RATE)).astype(np.float32) * noise_amp]
        t += len(clip) / SAMPLE_RATE + pause
    x = np.concatenate(parts)
    write_wav(workdir / "session.wav", x)
    return x, truth


def match(segments, truth):
    """Pair each true utterance with the VAD segment overlapping it most (None if none)."""
    pairs = []
    for a, b, text in truth:
        best, best_ov = None, 0.0
        for s in segments:
            ov = min(b, s.end) - max(a, s.start)
            if ov > best_ov:
                best, best_ov = s, ov
        pairs.append((best, a, b, text))
    return pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="utterances in the session (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voice", default="en-us", help="espeak-ng voice")
    ap.add_argument("--wpm", type=int, default=150, help="espeak-ng words per minute")
    ap.add_argument("--noise-db", type=float, default=-50.0, help="room noise level, dBFS")
    ap.add_argument("--biases", default="lm,lm-vocab,keywords,none",
                    help="pocketsphinx searches to compare: lm (n-gram from the corpus' sentences), lm-vocab "
                         "(unigrams of the vocabulary), keywords (object words spotted), grammar (any sequence "
                         "of vocabulary words; slow with a large vocabulary), none (open vocabulary)")
    ap.add_argument("--kws-threshold", type=float, default=1e-10, help="keyword-spotting threshold")
    ap.add_argument("--vad-for-asr", default="silero", choices=["energy", "silero"])
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (sudo apt-get install espeak-ng): nothing to measure")
        print(json.dumps({"skipped": "espeak-ng missing"}))
        return 1

    with tempfile.TemporaryDirectory(prefix="bench-hearing-") as tmp:
        x, truth = make_session(args.n, args.seed, Path(tmp), args.voice, args.wpm, args.noise_db)
    audio_s = len(x) / SAMPLE_RATE
    print(f"session: {len(truth)} utterances, {audio_s:.1f} s of audio (espeak-ng {args.voice}, {args.wpm} wpm, "
          f"noise {args.noise_db:.0f} dBFS)")
    result: dict = {"utterances": len(truth), "audio_seconds": round(audio_s, 2), "vad": {}, "asr": {}}

    segs_by_vad = {}
    for name in ("energy", "silero"):
        vad = make_vad(name)
        t0 = time.perf_counter()
        segs = vad.segment(x)
        dt = time.perf_counter() - t0
        segs_by_vad[name] = segs
        pairs = match(segs, truth)
        found = [(s, a, b) for s, a, b, _ in pairs if s is not None]
        start_err = [s.start - a for s, a, b in found]
        end_err = [s.end - b for s, a, b in found]
        result["vad"][name] = {"segments": len(segs), "found": len(found), "realtime_factor": round(dt / audio_s, 5),
                               "start_err_median_s": round(float(np.median(start_err)), 3) if found else None,
                               "end_err_median_s": round(float(np.median(end_err)), 3) if found else None}
        r = result["vad"][name]
        print(f"VAD {name:6s}: {len(segs)} segments, {len(found)}/{len(truth)} utterances found, "
              f"start err median {r['start_err_median_s']} s, end err median {r['end_err_median_s']} s, "
              f"RTF {r['realtime_factor']:.4f}")
    e, s = result["vad"]["energy"]["realtime_factor"], result["vad"]["silero"]["realtime_factor"]
    if e > 0:
        print(f"  Silero / energy time ratio: {s / e:.1f}x")

    vocab = sorted({w for t in NAMING + CHATTER for w in tokenize_words(t.replace("{w}", ""))} | set(OBJECTS))
    sentences = [t.format(w=o) for t in NAMING for o in OBJECTS] + list(CHATTER)
    pairs = match(segs_by_vad[args.vad_for_asr], truth)
    for bias in [b.strip() for b in args.biases.split(",") if b.strip()]:
        t0 = time.perf_counter()
        if bias == "keywords":  # spotting: the object words only (function words are too short to spot)
            rec = PocketSphinxRecognizer(vocabulary=OBJECTS, bias="keywords", kws_threshold=args.kws_threshold)
        elif bias == "lm-vocab":  # an LM from the vocabulary alone (no sentences): unigrams
            rec = PocketSphinxRecognizer(vocabulary=vocab, bias="lm")
        else:
            rec = PocketSphinxRecognizer(vocabulary=vocab, bias=bias, sentences=sentences)
        init_s = time.perf_counter() - t0
        said = recovered = false_alarms = errors = ref_words = 0
        dec_s = seg_s = 0.0
        examples = []
        for seg, a, b, text in pairs:
            ref = tokenize_words(text)
            objs = set(ref) & set(OBJECTS)
            if seg is None:
                said += len(objs)
                errors += len(ref)
                ref_words += len(ref)
                continue
            t0 = time.perf_counter()
            tr = rec.transcribe(seg.audio)
            dec_s += time.perf_counter() - t0
            seg_s += len(seg.audio) / SAMPLE_RATE
            hyp = tokenize_words(tr.text)
            said += len(objs)
            recovered += len(objs & set(hyp))
            false_alarms += len((set(hyp) & set(OBJECTS)) - objs)
            ed, n = wer(ref, hyp)
            errors += ed
            ref_words += n
            if len(examples) < 3:
                examples.append((text, tr.text))
        r = {"object_recovery": round(recovered / max(said, 1), 3), "objects_said": said,
             "object_false_alarms": false_alarms,
             "wer": None if bias == "keywords" else round(errors / max(ref_words, 1), 3),
             "realtime_factor": round(dec_s / max(seg_s, 1e-9), 4), "init_s": round(init_s, 2)}
        result["asr"][bias] = r
        print(f"pocketsphinx bias={bias:8s}: object words recovered {recovered}/{said} ({r['object_recovery']:.0%}), "
              f"false alarms {false_alarms}, WER {'-' if r['wer'] is None else format(r['wer'], '.0%')}, RTF {r['realtime_factor']:.3f}, init {init_s:.2f} s")
        for ref_t, hyp_t in examples:
            print(f"    said {ref_t!r:34s} heard {hyp_t!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
