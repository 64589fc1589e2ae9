"""firstwords replay: a recorded session (video + soundtrack or transcript) through the device runtime."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELP = "replay a recorded session (video + soundtrack or transcript) through the device runtime into a memory"
EXAMPLE = ("firstwords replay work/session --bundle work/bundle --memory work/memory.db --speed max "
           "--config device_configs/laptop.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="session folder (tools/make_sample_session.py), a video file with a .wav/.srt "
                        "beside it, or a transcript / wav with a video beside it")
    parser.add_argument("--bundle", required=True, help="model bundle directory or .zip (firstwords export)")
    parser.add_argument("--memory", required=True, help="memory file (SQLite; created if missing, else added to)")
    parser.add_argument("--speed", default="max", help="'max' = as fast as the CPU allows (nothing dropped), or a "
                        "factor of real time: 1 = paced like a live camera and microphone (default: max)")
    parser.add_argument("--config", default="laptop", help="device config: a name in device_configs/ or a .toml path "
                        "(default: laptop)")
    parser.add_argument("--words-from", choices=("auto", "audio", "transcript"), default="auto",
                        help="where words come from: the soundtrack (VAD + speech recognition) or the transcript; "
                        "auto = the soundtrack if there is one and the config's recognizer is not 'transcript'")
    parser.add_argument("--frames", help="video file or image folder (overrides what the session holds)")
    parser.add_argument("--audio", help="wav/flac soundtrack (overrides)")
    parser.add_argument("--transcript", help="SRT / WebVTT / CVCL CSV transcript (overrides)")
    parser.add_argument("--bias", choices=("lm", "grammar", "keywords", "none"), default="lm",
                        help="bias speech recognition to the bundle's words (default: lm)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: the device config's)")
    parser.add_argument("--keep-media", action="store_true", help="keep a thumbnail with each remembered moment")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def one_blas_thread() -> None:
    """numpy's BLAS on one thread (unless the user set it): the memory's products are small, and OpenBLAS threads
    fighting onnxruntime and the recogniser for the cores slow memory updates many times. Effective only
    before numpy is first imported, which the CLI has not done when a command's run() starts."""
    import os

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def parse_speed(text: str) -> float | None:
    from firstwords.edge.errors import InputError

    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError as e:
        raise InputError(f"--speed must be 'max' or a positive number (1 = real time), got {text!r}") from e
    if not v > 0:
        raise InputError(f"--speed must be 'max' or a positive number (1 = real time), got {text!r}")
    return v


def progress_printer(duration: float | None, enabled: bool):
    tty = sys.stderr.isatty()
    last = [-1.0]

    def show(stats) -> None:
        if not enabled:
            return
        # progress is what has been heard, recognised and learned from, not what has been read: at full speed
        # the soundtrack is read long before speech recognition is through it
        done = min(1.0, stats.paired_time / duration) if duration else 0.0
        if not tty:  # a log file: one line per 10 %
            if done - last[0] < 0.1 and done < 1.0:
                return
            last[0] = done
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        line = (f"[{bar}] {100 * done:5.1f}% learned to {stats.paired_time:6.1f} s (read {stats.media_time:.0f} s)"
                f"  utterances {stats.utterances}  words {stats.words_learned}  frames {stats.frames_encoded} "
                f"(dropped {stats.frames_dropped})")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def summary_text(rep, mem_stats: dict, source: str) -> str:
    s = rep.stats
    lines = [
        f"words from: {source}",
        (f"utterances learned: {s['utterances']}   (speech segments {s['speech_segments']}, recognised as "
         f"nothing {s['empty_recognitions']}, without frames {s['utterances_without_frames']})"),
        (f"words learned this session: {s['words_learned']}   words in memory: {mem_stats.get('words')}   "
         f"episodes: {mem_stats.get('episodes')}"),
        "top words: " + ", ".join(f"{w} ({n})" for w, n in rep.top_words),
        (f"frames encoded: {s['frames_encoded']}   frames dropped: {s['frames_dropped']}   "
         f"audio overflows: {s['audio_overflows']}"),
        f"media {rep.media_seconds:.1f} s in {rep.wall_seconds:.1f} s: realtime factor {rep.realtime_factor:.2f}x",
        "median latency (ms): " + ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in rep.latency.items()),
    ]
    if s["errors"]:
        lines.append("errors: " + "; ".join(s["errors"]))
    if rep.interrupted:
        lines.append("interrupted: what was heard so far is in the memory")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    one_blas_thread()
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.encode import Encoder
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.replay import (
        bundle_vocabulary,
        choose_words_source,
        discover_session,
        make_speech,
        options_from_config,
        replay,
        session_duration,
    )

    speed = parse_speed(args.speed)
    cfg = load_device_config(resolve_device_config(args.config))
    session = discover_session(args.session, frames=args.frames, audio=args.audio, transcript=args.transcript)
    source = choose_words_source(session, args.words_from, cfg.audio.recognizer)
    encoder = Encoder(load_bundle(args.bundle), threads=args.threads or cfg.model.threads)
    vad = rec = None
    if source == "audio":
        vad, rec = make_speech(cfg.audio.vad, bundle_vocabulary(encoder), bias=args.bias)
    opts = options_from_config(cfg, realtime=speed is not None)
    opts.keep_media = args.keep_media
    print(f"replaying {session.describe()}", file=sys.stderr)
    Path(args.memory).parent.mkdir(parents=True, exist_ok=True)
    mem = AssociativeMemory.from_config(args.memory, encoder.dim, cfg.memory, keep_media=args.keep_media)
    t0 = time.perf_counter()
    try:
        rep = replay(session, encoder, mem, words_from=source, speed=speed, options=opts, vad=vad, recognizer=rec,
                     recognizer_name=cfg.audio.recognizer,
                     on_status=progress_printer(session_duration(session), not args.quiet))
        mem_stats = mem.stats()
    finally:
        mem.close()
    if not args.quiet:
        print(file=sys.stderr)
    print(summary_text(rep, mem_stats, source))
    if args.json:
        print(json.dumps({"utterances": rep.stats["utterances"], "words_learned": rep.stats["words_learned"],
                          "words_in_memory": mem_stats.get("words"), "top_words": rep.top_words,
                          "frames_dropped": rep.stats["frames_dropped"], "audio_overflows": rep.stats["audio_overflows"],
                          "realtime_factor": round(rep.realtime_factor, 3),
                          "wall_seconds": round(time.perf_counter() - t0, 2),
                          "median_ms": {k: v["median_ms"] for k, v in rep.latency.items()}}))
    return 130 if rep.interrupted else 0
