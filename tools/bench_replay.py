#!/usr/bin/env python3
"""Replay the sample session into a fresh memory, then let the memory name held-out frames (CVCL's 4-way
test).

    python tools/bench_replay.py --bundle work/bundle --session work/session --corpus work/corpus
           [--words-from auto|audio|transcript] [--speed max] [--config laptop] [--folder-copies 3]
           [--transcript-only]

Figures, measured in this one run:
- acc_4way: the memory's 4-way accuracy on the corpus's held-out frames (eval.json: never-seen instances),
  each category's word vector taken from the memory; beside it the bundle's own (encoder word embeddings) for
  reference, and chance (0.25).
- realtime_factor: media seconds replayed per wall second (> 1: faster than real time), with the default
  recognition workers (one per core); the audio path is also replayed with 1 and 2 workers:
  realtime_factor_asr_workers {"1": .., "2": ..} and asr_workers_speedup (2 over 1).
- realtime_factor_transcript: the transcript path (always replayed, into a second memory).
- prep_over_tower: frame preparation (a 640 x 480 frame to the tower's input) over the image tower, per
  frame at batch 1 on the same threads.
- media_hours_per_wall_hour {"1": .., "2": ..}: a folder of --folder-copies copies of the session replayed
  into one memory (edge.sessions) with 1 and 2 worker processes (through the home adaptation, beside it).
- per-stage latencies per item (a frame, an utterance) and median per call, frames_dropped,
  audio_overflows.
- object_word_recovery (audio path): share of the object words spoken in the soundtrack that VAD +
  pocketsphinx recognised in speech overlapping them. A home's device hears through the speaker adaptation
  `firstwords adapt` estimated (edge.asr_adapt). With --adapt enrol (the default) each of the soundtrack's
  voices first reads the enrolment script of the bundle's content words (`firstwords enrol --bundle B
  --voices ..`, edge.asr_enrol: two prompts a word, ~2.3 min a voice; the prompts are not the session's
  phrases), and the adaptation is estimated from those readings. With --adapt home it is estimated from the
  session's own soundtrack heard by the unadapted recogniser (its own hypotheses, no transcript: two passes,
  as a laptop replay of recordings can), and the unadapted recovery from that pass is printed.
Human-readable output, then ONE JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import firstwords.edge  # noqa: F401  (first: the package sets numpy's BLAS to one thread before numpy loads)
from firstwords.edge.asr_pool import default_workers
from firstwords.edge.errors import FirstwordsError
from firstwords.edge.images import encode_image_files
from firstwords.edge.speed import camera_frame, folder_of_copies, prep_over_tower


def load_eval(corpus: Path, limit_per_category: int | None) -> tuple[list[str], list[Path]]:
    items = json.loads((corpus / "eval.json").read_text(encoding="utf-8"))["data"]
    labels, paths, seen = [], [], {}
    for it in items:
        c = it["category"]
        if limit_per_category is not None and seen.get(c, 0) >= limit_per_category:
            continue
        seen[c] = seen.get(c, 0) + 1
        labels.append(c)
        paths.append(corpus / it["frame_filename"])
    return labels, paths


def replay_once(session_path: Path, bundle, cfg, words_from: str, speed, bias: str, memory_path: Path,
                asr_workers: int = 1, encode_workers: int = 1, adaptation: Path | None = None):
    """One replay into a fresh memory; returns (source, report, runtime, heard, session): close the
    runtime."""
    from firstwords.edge.replay import choose_words_source, discover_session, replay
    from firstwords.edge.runtime import build_runtime

    session = discover_session(session_path)
    source = choose_words_source(session, words_from, cfg.audio.recognizer)
    heard = []
    rt = build_runtime(cfg, bundle, memory_path, realtime=speed is not None, speech=source == "audio",
                       bias=bias, asr_workers=asr_workers, encode_workers=encode_workers,
                       speaker_adaptation=adaptation)
    try:
        rep = replay(session, rt.encoder, rt.memory, words_from=source, speed=speed, options=rt.options,
                     vad=rt.vad, recognizer=rt.recognizer, recognizer_name=cfg.audio.recognizer,
                     on_utterance=heard.append, install_signal_handlers=False)
    except BaseException:
        rt.close()
        raise
    return source, rep, rt, heard, session


def adapt_to_session(session_path: Path, bundle, cfg, out: Path) -> Path:
    """The home's speaker adaptation from the session's soundtrack (the unadapted recogniser's hypotheses);
    prints what that unadapted pass recovered."""
    from firstwords.edge.asr_adapt import adapt_home
    from firstwords.edge.replay import discover_session, load_utterances, object_word_recovery

    res = adapt_home([session_path], bundle, out, vad=cfg.audio.vad, max_minutes=60)
    heard = res["heard"].get(str(session_path), [])
    session = discover_session(session_path)
    spoken = load_utterances(session.transcript) if session.transcript else []
    rec = object_word_recovery(heard, spoken, session.meta.get("object_words") or [],
                               cfg.memory.min_word_confidence)
    print(f"home adaptation from the session's soundtrack ({res['speech_minutes']:g} min of speech, "
          f"{res['utterances']} utterances, estimated in {res['seconds']:g} s); the unadapted pass recovered "
          f"{rec['object_words_recovered']}/{rec['object_words_said']} = {rec['recovery_rate']} object words "
          f"(false alarms {rec['false_alarms']}); per word: {rec['per_word']}")
    return out


def enrol_voices(session_path: Path, bundle, out: Path, folder: Path) -> Path:
    """The home's speaker adaptation from an enrolment: each of the soundtrack's voices reads the script of
    the bundle's content words (edge.asr_enrol), as the home's speakers would (firstwords enrol --bundle)."""
    from firstwords.edge import asr_enrol
    from firstwords.edge.errors import InputError
    from firstwords.edge.replay import discover_session

    session = discover_session(session_path)
    try:
        voices = ((session.meta.get("speech") or {}).get("voices")) or []
    finally:
        session.cleanup()
    if not voices:
        raise InputError(f"{session_path}: its session.json names no synthesiser voices to enrol; use "
                         "--adapt home or none")
    t0 = time.perf_counter()
    res = asr_enrol.adapt_from_voices(bundle, voices, out, folder)
    print(f"enrolment: {len(voices)} voices read {res['prompts']} prompts over the bundle's {res['words']} "
          f"content words ({res['speech_minutes']:g} min of speech, synthesised and estimated in "
          f"{time.perf_counter() - t0:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  python tools/bench_replay.py --bundle work/bundle "
                                        "--session work/session --corpus work/corpus")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--session", required=True, help="session folder (tools/make_sample_session.py)")
    ap.add_argument("--corpus", required=True, help="the sample corpus (its eval.json holds the held-out "
                                                    "frames)")
    ap.add_argument("--config", default="laptop", help="device config name or path (default: laptop)")
    ap.add_argument("--words-from", choices=("auto", "audio", "transcript"), default="auto")
    ap.add_argument("--speed", default="max", help="'max' or a factor of real time (default: max)")
    ap.add_argument("--bias", choices=("open", "lm", "grammar", "keywords", "none"), default="open")
    ap.add_argument("--memory", help="where to write the memory (default: a temporary file)")
    ap.add_argument("--compare-transcript", action="store_true", help="(always on: kept for old scripts)")
    ap.add_argument("--folder-copies", type=int, default=3, help="sessions in the folder replay (copies of "
                    "--session; 0 = no folder replay; default: 3)")
    ap.add_argument("--folder-words-from", choices=("auto", "audio", "transcript"), default="auto",
                    help="words source of the folder replay (default: auto)")
    ap.add_argument("--transcript-only", action="store_true", help="replay the transcript path only (a quick "
                    "measure of realtime_factor_transcript; the audio figures are null)")
    ap.add_argument("--adapt", choices=("enrol", "home", "none"), default="enrol",
                    help="enrol (default): adapt the recogniser to the session's voices first, from their "
                         "readings of an enrolment script (firstwords enrol / adapt --enrolment); home: from "
                         "the session's own soundtrack (unsupervised); none: the unadapted recogniser")
    ap.add_argument("--trials", type=int, default=100, help="trials per category (default: 100)")
    ap.add_argument("--eval-per-category", type=int, help="use at most this many held-out images per "
                                                          "category")
    args = ap.parse_args(argv)

    try:
        return bench(args)
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def bench(args: argparse.Namespace) -> int:
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder
    from firstwords.edge.evaluate import make_trials, score_trials
    from firstwords.edge.outcome import summary_text
    from firstwords.edge.replay import load_utterances, object_word_recovery, parse_speed
    from firstwords.edge.runtime import default_encode_workers, load_config

    speed = parse_speed(args.speed)
    cfg = load_config(args.config)
    bundle = load_bundle(args.bundle)
    encoder = Encoder(bundle, threads=cfg.model.threads)  # evaluation and prep_over_tower
    # the replays' own, as build_runtime makes it: a full-speed replay encodes batches in parallel
    encode_workers = default_encode_workers(speed is not None, cfg.model.threads)
    replay_encoder = Encoder(bundle, threads=max(1, cfg.model.threads // encode_workers))
    corpus, session_path = Path(args.corpus), Path(args.session)
    labels, paths = load_eval(corpus, args.eval_per_category)
    cats = sorted(set(labels))
    img = encode_image_files(encoder, paths, batch=32)
    trials = make_trials(labels, n_way=4, trials_per_category=args.trials, seed=0)
    enc_words = {c: encoder.word_embedding(c) for c in cats}
    enc_result = score_trials(trials, img, enc_words)
    print(f"held-out frames: {len(paths)} in {len(cats)} categories; {len(trials)} 4-way trials")
    print(f"the bundle's own word embeddings: 4-way accuracy {enc_result.overall:.3f}")

    tmp = tempfile.TemporaryDirectory(prefix="firstwords-bench-")
    adaptation = None
    if args.adapt == "home" and not args.transcript_only:
        adaptation = adapt_to_session(session_path, bundle, cfg, Path(tmp.name) / "home.speech.adapt")
    elif args.adapt == "enrol" and not args.transcript_only:
        adaptation = enrol_voices(session_path, bundle, Path(tmp.name) / "home.speech.adapt",
                                  Path(tmp.name) / "enrolment")
    default = default_workers()
    # (label, words_from, recognition workers): the first is the main row; audio with 1 and 2 workers
    runs = [("main", args.words_from, default)]
    runs += [(f"asr{n}", "audio", n) for n in (1, 2) if n != default]
    runs.append(("transcript", "transcript", 1))
    if args.transcript_only:  # the transcript row alone; it is the main row too
        runs = [("transcript", "transcript", 1)]
    figures: dict = {}
    for i, (label, wf, workers) in enumerate(runs):
        mpath = Path(args.memory) if (args.memory and i == 0) else Path(tmp.name) / f"memory-{i}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(mpath) + suffix).unlink(missing_ok=True)
        t0 = time.perf_counter()
        source, rep, rt, heard, session = replay_once(session_path, replay_encoder, cfg, wf, speed, args.bias,
                                                      mpath, workers if wf != "transcript" else 1,
                                                      encode_workers, adaptation)
        wall = time.perf_counter() - t0
        with rt:
            vecs = rt.memory.word_vectors(cats)
            stats = rt.memory.stats()
        result = score_trials(trials, img, vecs)
        print(f"\n== replay ({source}, {workers} recognition worker(s)) of {session_path}")
        print(summary_text(rep, stats, source))
        print(result.table())
        row = {"acc_4way": round(result.overall, 4), "ci95": [round(x, 4) for x in result.ci95],
               "categories_missing": result.skipped_categories,
               "utterances": rep.stats["utterances"], "words_in_memory": stats.get("words"),
               "realtime_factor": round(rep.realtime_factor, 3), "wall_seconds": round(wall, 2),
               "ms_per_item": {k: v["ms_per_item"] for k, v in rep.latency.items()},
               "median_ms": {k: v["median_ms"] for k, v in rep.latency.items()},  # per call
               "frames_dropped": rep.stats["frames_dropped"], "audio_overflows": rep.stats["audio_overflows"],
               "source": source, "asr_workers": workers if source == "audio" else 0}
        if "asr" in rep.latency:
            row["asr_realtime_factor"] = rep.latency["asr"].get("realtime_factor")
        if source == "audio":
            spoken = load_utterances(session.transcript) if session.transcript else []
            object_words = session.meta.get("object_words") or cats
            rec = object_word_recovery(heard, spoken, object_words, cfg.memory.min_word_confidence)
            row["object_word_recovery"] = rec["recovery_rate"]
            row["object_word_false_alarms"] = rec["false_alarms"]
            row["object_words_said"] = rec["object_words_said"]
            print(f"object words recovered from the soundtrack: {rec['object_words_recovered']}/"
                  f"{rec['object_words_said']} = {rec['recovery_rate']}  (false alarms "
                  f"{rec['false_alarms']}); per word: {rec['per_word']}")
        figures[label] = row

    main_row = dict(figures.get("main") or figures["transcript"])
    audio = {r["asr_workers"]: r["realtime_factor"] for r in figures.values() if r["source"] == "audio"}
    out = {"words_from": main_row.pop("source"), **main_row, "acc_4way_encoder": round(enc_result.overall, 4),
           "chance": 0.25, "n_trials": len(trials)}
    out.pop("asr_workers")
    out["acc_4way_transcript"] = figures["transcript"]["acc_4way"]
    out["realtime_factor_transcript"] = figures["transcript"]["realtime_factor"]
    out["realtime_factor_asr_workers"] = {str(n): audio.get(n) for n in (1, 2)}
    out["asr_workers_speedup"] = (round(audio[2] / audio[1], 3) if audio.get(1) and audio.get(2) else None)
    out.setdefault("object_word_recovery", None)
    out.update(prep_over_tower(encoder, camera_frame()))
    out["media_hours_per_wall_hour"] = folder_figures(args, session_path, Path(tmp.name), adaptation)
    tmp.cleanup()
    load = os.getloadavg()
    print(f"\nrealtime factor, audio path: {audio}  (by recognition workers; speedup 2 over 1: "
          f"{out['asr_workers_speedup']}); transcript path {out['realtime_factor_transcript']}x")
    print(f"frame preparation {out['prep_ms_per_frame']} ms per frame (640 x 480, batch 1), image tower "
          f"{out['tower_ms_per_frame']} ms per frame: prep_over_tower {out['prep_over_tower']}")
    print(f"folder of {args.folder_copies} sessions: media hours per wall hour by worker processes "
          f"{out['media_hours_per_wall_hour']}")
    print(f"memory 4-way accuracy {out['acc_4way']:.3f} (encoder {out['acc_4way_encoder']:.3f}, chance "
          f"0.25); object-word recovery {out['object_word_recovery']}; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(json.dumps(out))
    return 0


def folder_figures(args: argparse.Namespace, session_path: Path, tmp: Path,
                   adaptation: Path | None = None) -> dict[str, float | None]:
    """Media hours per wall hour of a folder replay (copies of the session) with 1 and 2 workers, hearing
    through `adaptation` (put beside the folder's memory, where `firstwords adapt` puts a home's)."""
    import shutil

    from firstwords.edge.asr_adapt import adaptation_path
    from firstwords.edge.runtime import build_runtime
    from firstwords.edge.sessions import replay_folder

    if args.folder_copies < 1:
        return {"1": None, "2": None}
    folder = folder_of_copies(session_path, tmp / "folder", args.folder_copies)
    out = {}
    for workers in (1, 2):
        memory = tmp / f"folder-{workers}.db"
        if adaptation is not None:
            shutil.copy(adaptation, adaptation_path(memory))
        t0 = time.perf_counter()
        with build_runtime(args.config, args.bundle, memory, realtime=False) as rt:
            rep = replay_folder(folder, args.config, args.bundle, rt.memory, workers=workers,
                                words_from=args.folder_words_from)
        wall = time.perf_counter() - t0
        out[str(workers)] = round((rep.media_seconds / 3600) / (wall / 3600), 2)
        print(f"folder replay, {workers} worker(s): {rep.media_seconds:.0f} s of media in {wall:.1f} s")
    return out


if __name__ == "__main__":
    sys.exit(main())
