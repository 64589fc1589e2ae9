"""`firstwords enrol`: record the home's speakers reading a short script that names the device's words
(edge.asr_enrol), for `firstwords adapt --enrolment` to fit speech recognition to their voices.

Each speaker runs it once with their name: it shows a prompt, records the reading (the device config's
microphone and VAD), then the next. A second run records only the prompts still missing. `--voices` has speech
synthesisers read the script instead (demos, benchmarks).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "record the home's speakers reading a script of the device's words (for adapt --enrolment)"
EXAMPLE = ("firstwords enrol work/enrolment --bundle work/bundle --speaker mum --words shoe,boot,shirt\n"
           "  firstwords adapt --enrolment work/enrolment --bundle work/bundle --memory work/memory.db")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="the enrolment folder: its script (prompts.txt) and one subfolder of "
                                       "readings per speaker")
    parser.add_argument("--bundle", help="model bundle directory or .zip: the script names its content words "
                                         "(unless --words)")
    parser.add_argument("--words", help="comma-separated words the script names, e.g. the study's object "
                                        "words (default: the bundle's content words)")
    parser.add_argument("--per-word", type=int, default=None,
                        help="prompts per word, each a different sentence (default: 4, or 2 when more than "
                             "20 words)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", help="who is reading (a name: their readings go to FOLDER/NAME)")
    who.add_argument("--voices", help="comma-separated speech synthesiser voices (ENGINE:NAME, edge.synth) "
                                      "that read the script instead of a person")
    parser.add_argument("--config", default="laptop",
                        help="device config (microphone and VAD): a name in device_configs/ or a .toml path "
                             "(default: laptop)")
    parser.add_argument("--audio-device", help="microphone: a sounddevice index or name (default: the device "
                                               "config's)")
    parser.add_argument("--script-only", action="store_true",
                        help="write the script (prompts.txt) and stop: record elsewhere as "
                             "FOLDER/SPEAKER/ID.wav")


def _words(args: argparse.Namespace) -> list[str]:
    from firstwords.edge.asr_enrol import bundle_words
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.errors import InputError

    if args.words:
        return list(dict.fromkeys(w.strip().lower() for w in args.words.split(",") if w.strip()))
    if not args.bundle:
        raise InputError("give --words (the words to rehearse) or --bundle (its content words)")
    bundle = load_bundle(args.bundle)
    try:
        return bundle_words(bundle)
    finally:
        bundle.close()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from firstwords.edge import asr_enrol
    from firstwords.edge.hear import SAMPLE_RATE
    from firstwords.edge.runtime import load_config
    from firstwords.edge.vad import make_vad

    words = _words(args)
    folder = Path(args.folder)
    prompts = asr_enrol.enrolment_prompts(words, args.per_word)
    asr_enrol.write_prompts(folder, prompts)
    print(f"script: {len(prompts)} prompts over {len(words)} words -> {folder / asr_enrol.PROMPTS_FILE}",
          file=sys.stderr)
    if args.script_only:
        return 0

    def show(i: int, n: int, text: str) -> None:
        print(f"[{i}/{n}] {text}", file=sys.stderr, flush=True)

    if args.voices:
        voices = [v.strip() for v in args.voices.split(",") if v.strip()]
        result = asr_enrol.synthesize(folder, voices, on_prompt=show if sys.stderr.isatty() else None)
    else:
        from firstwords.edge.microphone import MicrophoneSource

        cfg = load_config(args.config)
        mic = MicrophoneSource(device=args.audio_device or cfg.audio.device or None,
                               device_rate=(None if cfg.audio.sample_rate == SAMPLE_RATE
                                            else cfg.audio.sample_rate),
                               block_ms=cfg.audio.block_ms, queue_blocks=cfg.audio.queue_blocks)
        mic.start()
        try:
            print(f"read each line aloud after it appears ({args.speaker}; Ctrl-C stops, a later run goes on "
                  "where this one stopped)", file=sys.stderr)
            result = asr_enrol.record(folder, args.speaker, mic, make_vad(cfg.audio.vad), on_prompt=show)
        finally:
            mic.close()
    print(json.dumps({**result, **asr_enrol.summary(folder)}))
    missing = result.get("missing", 0)
    if missing:
        print(f"{missing} prompt(s) heard no reading: run the same command again to record them",
              file=sys.stderr)
    return 1 if missing else 0
