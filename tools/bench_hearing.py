#!/usr/bin/env python3
"""Measure hearing per voice and pooled: object-word recall (on phrase templates seen in the training
sentences and on unseen ones), object false alarms per minute of off-topic speech, open-vocabulary word error
on that speech, real-time factor (CPU seconds per second of speech) and the recogniser's peak RSS.

    .venv/bin/python tools/bench_hearing.py --bundle work/bundle [--compare lm] [--n-seen 12 --n-unseen 12]

The bundle's speech LM (firstwords export --speech-lm) is what the device hears with; without one the general
English model is measured (with a warning). --compare lm also measures the closed-vocabulary search for
contrast; --compare whisper the optional laptop recogniser (Whisper tiny.en, firstwords[whisper]) on one core
with the bundle's words favoured (whisper:none: without). The logic lives in firstwords.edge.asr_eval.

A home's device hears through the speaker adaptation `firstwords adapt` estimated for its voices
(edge.asr_adapt), and so does this benchmark, measuring the adapted recogniser ("device") beside the unadapted
one ("unadapted"). --adapt enrol (the default): each voice first reads the enrolment script of the bundle's
content words (edge.asr_enrol, as `firstwords enrol --bundle` records the home's speakers: carrier sentences,
none of the measured phrases; "bag", never in the bundle, is not in it), and the adaptation is estimated from
those readings. --adapt home: from another draw of clips by the same voices (seed + 1: other phrases, other
prosody) heard by the unadapted recogniser, its own hypotheses taken as the words (no true text). --adapt
none: the unadapted recogniser only.
Last line: one JSON object with exactly
offtopic_object_false_alarms_per_min, object_recall, object_recall_unseen_templates, offtopic_wer,
asr_realtime_factor (pooled over the voices, the device's recogniser).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from firstwords.edge.asr import make_recognizer
from firstwords.edge.asr_enrol import adapt_from_voices
from firstwords.edge.asr_eval import Tally, adapt_to_voices, make_clips, recognizer_peak_rss_mb, score
from firstwords.edge.asr_warp import PITCH_SPLIT_HZ
from firstwords.edge.bundle import load_bundle
from firstwords.edge.synth import DEFAULT_VOICES, available_voices
from firstwords.export.sample_corpus import CLASS_WORDS, NAMING

KEYS = ("offtopic_object_false_alarms_per_min", "object_recall", "object_recall_unseen_templates",
        "offtopic_wer", "asr_realtime_factor")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  .venv/bin/python tools/bench_hearing.py "
                                        "--bundle work/bundle")
    ap.add_argument("--bundle",
                    help="bundle folder or .zip (its speech LM and words); none: general model only")
    ap.add_argument("--voices", default=",".join(DEFAULT_VOICES), help="comma-separated ENGINE:NAME voices")
    ap.add_argument("--n-seen", type=int, default=12,
                    help="phrases per voice from seen templates (default: 12)")
    ap.add_argument("--n-unseen", type=int, default=12,
                    help="phrases per voice from unseen templates (default: 12)")
    ap.add_argument("--n-off-topic", type=int, default=8, help="off-topic sentences per voice (default: 8)")
    ap.add_argument("--min-confidence", type=float, default=0.2,
                    help="a word counts as heard at this confidence or more (the device config's [memory] "
                         "min_word_confidence; default: %(default)s)")
    ap.add_argument("--compare", default="", help="also measure these, e.g. 'lm' (closed vocabulary), "
                    "'whisper' (laptop recogniser), 'whisper:none' (it without favouring)")
    ap.add_argument("--adapt", choices=("enrol", "home", "none"), default="enrol",
                    help="enrol (default): the device adapted to the voices from their readings of an "
                         "enrolment script (edge.asr_enrol); home: from another draw of their speech "
                         "(unsupervised, edge.asr_adapt); both measured beside the unadapted recogniser; "
                         "none: unadapted only")
    ap.add_argument("--adapt-method", choices=("map", "mllr"), default="map",
                    help="the adaptation's kind (edge.asr_adapt): map, the device's (default), or mllr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=3, help="misses / false alarms to print per voice")
    args = ap.parse_args(argv)

    voices = available_voices([v for v in args.voices.split(",") if v])
    if not voices:
        print("error: no speech synthesiser voice is installed (sudo apt-get install espeak-ng flite "
              "festival festvox-us-slt-hts)", file=sys.stderr)
        return 2
    bundle = load_bundle(args.bundle) if args.bundle else None
    objects = sorted(set(CLASS_WORDS.values()))
    recognizers = {"device": make_recognizer("pocketsphinx", bundle=bundle)}
    tmp = tempfile.TemporaryDirectory(prefix="firstwords-hearing-")
    home = Path(tmp.name) / "home.speech.adapt"
    if args.adapt == "enrol":
        info = adapt_from_voices(bundle, voices, home, Path(tmp.name) / "enrolment")
        print(f"home adaptation (enrolment): each voice read {info['prompts']} prompts over the bundle's "
              f"{info['words']} content words ({info['speech_minutes']:g} min in all), estimated in "
              f"{info['seconds']:g} s")
    elif args.adapt == "home":
        info = adapt_to_voices(bundle, voices, objects, NAMING, home, args.seed + 1, args.n_seen,
                               args.n_unseen, args.n_off_topic, args.adapt_method)
        print(f"home adaptation ({info['method']}): from {info['speech_minutes']:g} min of other speech by "
              f"the same voices (seed {args.seed + 1}, {info['utterances']} utterances, the unadapted "
              f"recogniser's hypotheses), estimated in {info['seconds']:g} s")
    if args.adapt != "none":
        recognizers = {"device": make_recognizer("pocketsphinx", bundle=bundle, adaptation=home),
                       "unadapted": recognizers["device"]}
    device = recognizers["device"]
    print(f"device recogniser: {device.lm_source}; vocal tract length normalisation: warp {device.max_warp} "
          f"from a median pitch of {PITCH_SPLIT_HZ:g} Hz; voices: {', '.join(voices)}")
    for bias in [b for b in args.compare.split(",") if b]:
        words = [w for w in bundle.vocab.ids if not w.startswith("<")] if bundle else objects
        if bias.startswith("whisper"):  # "whisper" (the bundle's words favoured) or "whisper:none"; one core
            recognizers[bias] = make_recognizer("whisper", vocabulary=words, threads=1,
                                                bias=bias.partition(":")[2] or "open")
            continue
        recognizers[bias] = make_recognizer("pocketsphinx", vocabulary=words, bias=bias)
    t0 = time.perf_counter()
    pooled = {name: Tally() for name in recognizers}
    print(f"{'recogniser':<10} {'voice':<32} {'recall':>6} {'seen':>6} {'unseen':>6} {'FA/min':>6} "
          f"{'WER':>6} {'RTF':>6}")
    for voice in voices:
        clips = make_clips(voice, objects, NAMING, args.n_seen, args.n_unseen, args.n_off_topic, args.seed)
        for name, rec in recognizers.items():
            cpu = time.process_time()
            t = score(rec, clips, objects, args.min_confidence)
            if name.startswith("whisper"):  # CTranslate2 decodes in its own threads: the process's CPU time
                t.cpu_s = time.process_time() - cpu
            pooled[name].add(t)
            f = t.figures()
            print(f"{name:<10} {voice:<32} {f['object_recall']:>6.2f} "
                  f"{f['object_recall_seen_templates']:>6.2f} {f['object_recall_unseen_templates']:>6.2f} "
                  f"{f['offtopic_object_false_alarms_per_min']:>6.2f} {f['offtopic_wer']:>6.2f} "
                  f"{f['asr_realtime_factor']:>6.2f}", flush=True)
            for line in (t.misses[:args.show] + t.alarms[:args.show]) if name == "device" else []:
                print(f"    {line}")
    for name, t in pooled.items():
        f = t.figures()
        print(f"{name:<10} {'POOLED (' + str(len(voices)) + ' voices)':<32} {f['object_recall']:>6.2f} "
              f"{f['object_recall_seen_templates']:>6.2f} {f['object_recall_unseen_templates']:>6.2f} "
              f"{f['offtopic_object_false_alarms_per_min']:>6.2f} {f['offtopic_wer']:>6.2f} "
              f"{f['asr_realtime_factor']:>6.2f}   ({f['named']} namings, "
              f"{f['off_topic_minutes']} min off-topic)")
    rss = recognizer_peak_rss_mb(args.bundle, voices[0])
    print(f"recogniser peak RSS (fresh process: Python + numpy + decoder): {rss} MB; "
          f"bench took {time.perf_counter() - t0:.0f} s")
    if any(name.startswith("whisper") for name in recognizers):
        print(f"whisper peak RSS (fresh process, one thread): "
              f"{recognizer_peak_rss_mb(args.bundle, voices[0], 'whisper')} MB")
    tmp.cleanup()
    device = pooled["device"].figures()
    print(json.dumps({k: device[k] for k in KEYS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
