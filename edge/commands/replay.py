"""firstwords replay: a recorded session (video + soundtrack or transcript) through the device runtime."""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = "replay a recorded session (video + soundtrack or transcript) through the device runtime into a memory"
EXAMPLE = ("firstwords replay work/session --bundle work/bundle --memory work/memory.db --speed max "
           "--config device_configs/laptop.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="session folder (tools/make_sample_session.py), a video file with a "
                                        ".wav/.srt "
                        "beside it, or a transcript / wav with a video beside it")
    parser.add_argument("--bundle", required=True, help="model bundle directory or .zip (firstwords export)")
    parser.add_argument("--memory", required=True, help="memory file (SQLite; created if missing, else added "
                                                        "to)")
    parser.add_argument("--speed", default="max", help="'max' = as fast as the CPU allows (nothing dropped), "
                                                       "or a "
                        "factor of real time: 1 = paced like a live camera and microphone (default: max)")
    parser.add_argument("--config", default="laptop", help="device config: a name in device_configs/ or a "
                                                           ".toml path "
                        "(default: laptop)")
    parser.add_argument("--words-from", choices=("auto", "audio", "transcript"), default="auto",
                        help="where words come from: the soundtrack (VAD + speech recognition) or the "
                             "transcript; "
                        "auto = the soundtrack if there is one and the config's recognizer is not "
                        "'transcript'")
    parser.add_argument("--frames", help="video file or image folder (overrides what the session holds)")
    parser.add_argument("--audio", help="wav/flac soundtrack (overrides)")
    parser.add_argument("--transcript", help="SRT / WebVTT / CVCL CSV transcript (overrides)")
    parser.add_argument("--encoding", help="the transcript's text encoding, e.g. cp1252 or latin-1 (default: "
                                           "UTF-8, "
                        "falling back to cp1252 with a warning)")
    parser.add_argument("--bias", choices=("open", "lm", "grammar", "keywords", "none"), default="open",
                        help="speech recognition: 'open' (default) hears any English word with the bundle's "
                             "words favoured; 'lm', 'grammar', 'keywords' are closed over the bundle's words "
                             "(for comparison: they force its words onto any speech); 'none': no favouring")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: the device config's)")
    parser.add_argument("--keep-media", action="store_true", help="keep a thumbnail with each remembered "
                                                                  "moment")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
        line = (f"[{bar}] {100 * done:5.1f}% learned to {stats.paired_time:6.1f} s (read "
                f"{stats.media_time:.0f} s)"
                f"  utterances {stats.utterances}  words {stats.words_learned}  frames "
                f"{stats.frames_encoded} "
                f"(dropped {stats.frames_dropped})")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.outcome import exit_code, summary_json, summary_text
    from firstwords.edge.replay import (
        choose_words_source,
        discover_session,
        parse_speed,
        replay,
        session_duration,
    )
    from firstwords.edge.runtime import build_runtime

    speed = parse_speed(args.speed)
    cfg = load_device_config(resolve_device_config(args.config))
    session = discover_session(args.session, frames=args.frames, audio=args.audio, transcript=args.transcript)
    source = choose_words_source(session, args.words_from, cfg.audio.recognizer)
    print(f"replaying {session.describe()}", file=sys.stderr)
    t0 = time.perf_counter()
    with build_runtime(cfg, args.bundle, args.memory, realtime=speed is not None, speech=source == "audio",
                       threads=args.threads, bias=args.bias, keep_media=args.keep_media) as rt:
        rep = replay(session, rt.encoder, rt.memory, words_from=source, speed=speed, options=rt.options,
                     vad=rt.vad, recognizer=rt.recognizer, recognizer_name=cfg.audio.recognizer,
                     encoding=args.encoding,
                     on_status=progress_printer(session_duration(session), not args.quiet))
        mem_stats = rt.memory.stats()
    if not args.quiet:
        print(file=sys.stderr)
    print(summary_text(rep, mem_stats, source))
    if args.json:
        print(json.dumps(summary_json(rep, mem_stats, time.perf_counter() - t0)))
    return exit_code(rep, "replay")
