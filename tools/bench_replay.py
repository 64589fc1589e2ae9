#!/usr/bin/env python3
"""Replay the sample session into a fresh memory, then let the memory name held-out frames (CVCL's 4-way
test).

    python tools/bench_replay.py --bundle work/bundle --session work/session --corpus work/corpus
           [--words-from auto|audio|transcript] [--speed max] [--config laptop] [--compare-transcript]

Figures, measured in this one run:
- acc_4way: the memory's 4-way accuracy on the corpus's held-out frames (eval.json: never-seen instances),
  each category's word vector taken from the memory; beside it the bundle's own (encoder word embeddings) for
  reference, and chance (0.25).
- realtime_factor: media seconds replayed per wall second (> 1: faster than real time).
- per-stage median latencies, frames_dropped, audio_overflows.
- object_word_recovery (audio path): share of the object words spoken in the soundtrack that VAD +
pocketsphinx
  recognised in speech overlapping them.
--compare-transcript also replays the transcript into a second fresh memory, for the audio-vs-transcript gap.
Human-readable output, then ONE JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import firstwords.edge  # noqa: F401  (first: the package sets numpy's BLAS to one thread before numpy loads)
from firstwords.edge.errors import FirstwordsError
from firstwords.edge.images import encode_image_files


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


def replay_once(session_path: Path, bundle, cfg, words_from: str, speed, bias: str, memory_path: Path):
    """One replay into a fresh memory; returns (source, report, runtime, heard, session): close the
    runtime."""
    from firstwords.edge.replay import choose_words_source, discover_session, replay
    from firstwords.edge.runtime import build_runtime

    session = discover_session(session_path)
    source = choose_words_source(session, words_from, cfg.audio.recognizer)
    heard = []
    rt = build_runtime(cfg, bundle, memory_path, realtime=speed is not None, speech=source == "audio",
                       bias=bias)
    try:
        rep = replay(session, rt.encoder, rt.memory, words_from=source, speed=speed, options=rt.options,
                     vad=rt.vad, recognizer=rt.recognizer, recognizer_name=cfg.audio.recognizer,
                     on_utterance=heard.append, install_signal_handlers=False)
    except BaseException:
        rt.close()
        raise
    return source, rep, rt, heard, session


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
    ap.add_argument("--bias", choices=("lm", "grammar", "keywords", "none"), default="lm")
    ap.add_argument("--memory", help="where to write the memory (default: a temporary file)")
    ap.add_argument("--compare-transcript", action="store_true",
                    help="also replay the transcript into a second fresh memory and score it")
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
    from firstwords.edge.runtime import load_config

    speed = parse_speed(args.speed)
    cfg = load_config(args.config)
    encoder = Encoder(load_bundle(args.bundle), threads=cfg.model.threads)
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
    runs = [args.words_from] + (["transcript"] if args.compare_transcript else [])
    figures: dict = {}
    for i, wf in enumerate(runs):
        mpath = Path(args.memory) if (args.memory and i == 0) else Path(tmp.name) / f"memory-{i}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(mpath) + suffix).unlink(missing_ok=True)
        t0 = time.perf_counter()
        source, rep, rt, heard, session = replay_once(session_path, encoder, cfg, wf, speed, args.bias, mpath)
        wall = time.perf_counter() - t0
        with rt:
            vecs = rt.memory.word_vectors(cats)
            stats = rt.memory.stats()
        result = score_trials(trials, img, vecs)
        print(f"\n== replay ({source}) of {session_path}")
        print(summary_text(rep, stats, source))
        print(result.table())
        row = {"acc_4way": round(result.overall, 4), "ci95": [round(x, 4) for x in result.ci95],
               "categories_missing": result.skipped_categories,
               "utterances": rep.stats["utterances"], "words_in_memory": stats.get("words"),
               "realtime_factor": round(rep.realtime_factor, 3), "wall_seconds": round(wall, 2),
               "median_ms": {k: v["median_ms"] for k, v in rep.latency.items()},
               "frames_dropped": rep.stats["frames_dropped"], "audio_overflows": rep.stats["audio_overflows"]}
        if "asr" in rep.latency:
            row["asr_realtime_factor"] = rep.latency["asr"].get("realtime_factor")
        if source == "audio":
            spoken = load_utterances(session.transcript) if session.transcript else []
            object_words = session.meta.get("object_words") or cats
            rec = object_word_recovery(heard, spoken, object_words)
            row["object_word_recovery"] = rec["recovery_rate"]
            row["object_word_false_alarms"] = rec["false_alarms"]
            row["object_words_said"] = rec["object_words_said"]
            print(f"object words recovered from the soundtrack: {rec['object_words_recovered']}/"
                  f"{rec['object_words_said']} = {rec['recovery_rate']}  (false alarms "
                  f"{rec['false_alarms']}); "
                  f"per word: {rec['per_word']}")
        figures[source] = row
    tmp.cleanup()

    main_row = figures[runs[0] if runs[0] != "auto" else next(iter(figures))]
    out = {"words_from": next(iter(figures)), **main_row, "acc_4way_encoder": round(enc_result.overall, 4),
           "chance": 0.25, "n_trials": len(trials)}
    if len(figures) > 1:
        out["acc_4way_transcript"] = figures["transcript"]["acc_4way"]
        out["realtime_factor_transcript"] = figures["transcript"]["realtime_factor"]
    if "object_word_recovery" not in out:
        out["object_word_recovery"] = None
    print(f"\nmemory 4-way accuracy {out['acc_4way']:.3f} (encoder {out['acc_4way_encoder']:.3f}, chance "
          "0.25); "
          f"realtime factor {out['realtime_factor']:.1f}x; object-word recovery "
          f"{out['object_word_recovery']}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
