"""firstwords replay: a recorded session (video + soundtrack or transcript) through the device runtime, or a
folder of sessions (one child's recordings) in time order into one memory (edge.sessions)."""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = ("replay a recorded session (video + soundtrack or transcript), or a folder of sessions, through the "
        "device runtime into a memory")
EXAMPLE = ("firstwords replay work/session --bundle work/bundle --memory work/memory.db --speed max "
           "--config device_configs/laptop.toml\n  firstwords replay work/session --bundle work/bundle "
           "--memory work/whisper.db --recognizer whisper   # the laptop's stronger recogniser\n"
           "  firstwords replay recordings/ --bundle work/bundle "
           "--memory work/memory.db --workers 2   # a folder of session folders, resumable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="session folder (tools/make_sample_session.py), a video file with a "
                        ".wav/.srt beside it, a transcript / wav with a video beside it, or a folder of "
                        "session folders (replayed in time order into one memory; run again after an "
                        "interruption to resume)")
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
    parser.add_argument("--recognizer", metavar="NAME",
                        help="speech recogniser for the soundtrack instead of the device config's: e.g. "
                             "'whisper' (Whisper tiny.en, stronger and ~5x slower; a laptop option, never a "
                             "device's: pip install 'firstwords[whisper]'), or a registered / entry-point "
                             "name (for a folder of sessions too)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: the device config's)")
    parser.add_argument("--keep-media", action="store_true", help="keep a thumbnail with each remembered "
                                                                  "moment")
    parser.add_argument("--asr-workers", type=int, help="speech recognisers in worker processes for one "
                        "session (default: one per core; 1 = in the learner's thread)")
    parser.add_argument("--workers", type=int, help="a folder of sessions: sessions digested at once, in "
                        "worker processes or Ray tasks (default: one per core)")
    parser.add_argument("--ray", metavar="auto|ADDRESS|local", help="a folder of sessions: digest them on a "
                        "Ray cluster ('auto' = the running one, ADDRESS = ray://host:10001 or host:6379, "
                        "'local' = start one here); needs pip install 'firstwords[scale]'")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def check_recognizer(name: str) -> None:
    """--recognizer's name must be a registered recogniser (built later, with the runtime or in workers)."""
    from firstwords.edge.asr import available_recognizers
    from firstwords.edge.errors import InputError

    if name not in available_recognizers():
        raise InputError(f"unknown recognizer {name!r}; available: {available_recognizers()} (for words from "
                         "the transcript use --words-from transcript)")


def with_recognizer(cfg, name: str | None):
    """The device config with its [audio] recognizer replaced by --recognizer's (checked by name here, built
    with the runtime)."""
    if not name:
        return cfg
    from dataclasses import replace

    check_recognizer(name)
    return replace(cfg, audio=replace(cfg.audio, recognizer=name))


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
    from firstwords.edge.asr_pool import default_workers
    from firstwords.edge.sessions import is_session_folder_of_folders

    for flag in ("asr_workers", "workers"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            from firstwords.edge.errors import InputError

            raise InputError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if is_session_folder_of_folders(args.session):
        return run_folder(args)
    if args.ray:
        from firstwords.edge.errors import InputError

        raise InputError(f"--ray replays a folder of session folders; {args.session} is one session")
    asr_workers = args.asr_workers or default_workers()
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
    cfg = with_recognizer(load_device_config(resolve_device_config(args.config)), args.recognizer)
    session = discover_session(args.session, frames=args.frames, audio=args.audio, transcript=args.transcript)
    source = choose_words_source(session, args.words_from, cfg.audio.recognizer)
    if args.recognizer and source != "audio":
        from firstwords.edge.errors import InputError

        raise InputError(f"--recognizer {args.recognizer} hears a soundtrack, but this replay takes its "
                         "words from the transcript; give the session's soundtrack (--audio WAV) or drop "
                         "--recognizer")
    print(f"replaying {session.describe()}", file=sys.stderr)
    if source == "audio" and cfg.audio.recognizer == "pocketsphinx":
        from firstwords.edge.runtime import adaptation_notice

        print(adaptation_notice(args.memory), file=sys.stderr)
    t0 = time.perf_counter()
    with build_runtime(cfg, args.bundle, args.memory, realtime=speed is not None, speech=source == "audio",
                       threads=args.threads, bias=args.bias, keep_media=args.keep_media,
                       asr_workers=asr_workers) as rt:
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


def run_folder(args: argparse.Namespace) -> int:
    """A folder of sessions into one memory, in time order; sessions already in the memory's ledger are
    skipped, so an interrupted run resumes."""
    from firstwords.edge.asr_pool import default_workers
    from firstwords.edge.errors import FirstwordsError
    from firstwords.edge.outcome import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
    from firstwords.edge.runtime import build_runtime
    from firstwords.edge.sessions import find_sessions, replay_folder

    workers = args.workers or default_workers()
    recognizer = getattr(args, "recognizer", None)
    if recognizer:
        check_recognizer(recognizer)  # before the first session, not in its worker
    sessions = find_sessions(args.session)
    where = f"Ray ({args.ray})" if args.ray else f"{workers} worker process{'es' if workers > 1 else ''}"
    print(f"replaying {len(sessions)} sessions of {args.session} in time order with {where}", file=sys.stderr)
    t0 = time.perf_counter()
    done = [0]

    def applied(digest) -> None:
        done[0] += 1
        if not args.quiet:
            print(f"[{done[0]}] {digest.name}: {digest.media_seconds:.0f} s of media, {len(digest.moments)} "
                  f"utterances learned ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    status, report, error = EXIT_OK, None, ""
    with build_runtime(args.config, args.bundle, args.memory, realtime=False, threads=args.threads,
                       keep_media=args.keep_media) as rt:
        try:
            report = replay_folder(args.session, args.config, args.bundle, rt.memory, workers=workers,
                                   ray_address=args.ray, words_from=args.words_from,
                                   keep_media=args.keep_media, recognizer=recognizer, on_applied=applied)
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
        except FirstwordsError as e:
            status, error = EXIT_FAILED, str(e)
        mem_stats = rt.memory.stats()
    wall = time.perf_counter() - t0
    if report is not None:
        hours = report.media_seconds / 3600
        print(f"sessions applied: {len(report.applied)}   already in the memory (skipped): "
              f"{len(report.skipped)}\nutterances learned: {report.moments}   words in memory: "
              f"{mem_stats.get('words')}\nmedia {report.media_seconds:.0f} s in {wall:.0f} s: "
              f"{hours / (wall / 3600):.1f} media hours per wall hour")
        if args.json:
            print(json.dumps({"applied": report.applied, "skipped": report.skipped, "moments": report.moments,
                              "media_seconds": round(report.media_seconds, 2), "wall_seconds": round(wall, 2),
                              "words_in_memory": mem_stats.get("words")}))
    elif status == EXIT_INTERRUPTED:
        print(f"interrupted after {done[0]} sessions: they are in the memory; run the same command again to "
              "resume", file=sys.stderr)
    else:
        print(f"error: {error}; the {done[0]} sessions applied before it are in the memory; run the same "
              "command again to resume", file=sys.stderr)
    return status
