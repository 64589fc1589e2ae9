#!/usr/bin/env python3
"""Soak test: replay a session again and again into one memory for a set time, and watch for leaks.

    python tools/soak.py --seconds 600      # builds a 1-minute sample session + tiny bundle
    python tools/soak.py --seconds 3600 --session work/session --bundle work/bundle --words-from audio \
        --vad silero --log work/soak/rows.jsonl

Each iteration is a full replay (`edge.replay.replay`, --speed max) through the real learner loop into the
SAME memory, which has small capacities so that eviction runs all the time. After every iteration it records
the process's RSS, open file descriptors and threads, and the memory's size on disk (database + WAL). After a
warm-up (the first --warmup fraction of the time), a flat process shows slopes near zero: memory held by the
replay is returned, files and threads are closed, the database stays within what its capacity allows.

Human table first; the LAST line is one JSON object with the figures and slopes (per minute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, not current: a fallback


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def os_threads() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope dy/dx (0 with fewer than 2 distinct x)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def ensure_sample(workdir: Path, session: str | None, bundle: str | None) -> tuple[Path, Path]:
    if session and bundle:
        return Path(session), Path(bundle)
    from firstwords.export.sample_data import (
        build_sample,  # the tests' builder: corpus --tiny, session, tiny bundle
    )

    print(f"building a 1-minute sample session and a tiny bundle in {workdir / 'sample'} ...", flush=True)
    s = build_sample(workdir / "sample")
    return Path(session) if session else s.session, Path(bundle) if bundle else s.bundle


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: python tools/soak.py --seconds 600 --audio")
    ap.add_argument("--seconds", type=float, default=120.0, help="how long to soak (default 120)")
    ap.add_argument("--workdir", type=Path, default=REPO / "work" / "soak", help="where the memory (and a "
                    "built sample) go (default: work/soak)")
    ap.add_argument("--session", help="session folder to replay (default: build a 1-minute sample)")
    ap.add_argument("--bundle", help="model bundle (default: the tiny test bundle, built with torch)")
    ap.add_argument("--words-from", choices=("transcript", "audio", "alternate"), default="transcript",
                    help="where each replay's words come from: the transcript, the soundtrack (VAD + "
                    "pocketsphinx), or the two in turn (default: transcript)")
    ap.add_argument("--audio", action="store_const", const="alternate", dest="words_from",
                    help="same as --words-from alternate")
    ap.add_argument("--vad", choices=("energy", "silero"), default="energy", help="VAD of the soundtrack "
                    "replays (silero runs a second onnxruntime model; default: energy)")
    ap.add_argument("--log", type=Path, help="append each iteration's figures to this JSON-lines file as "
                    "they come (a run stopped early still leaves its figures)")
    ap.add_argument("--capacity-words", type=int, default=30,
                    help="memory word capacity (small: eviction runs)")
    ap.add_argument("--capacity-episodes", type=int, default=60, help="memory episode capacity")
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of the run ignored for the slopes")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    args = ap.parse_args(argv)
    if not args.seconds > 0 or not 0 <= args.warmup < 1:
        ap.error("--seconds must be positive and --warmup in [0, 1)")

    from firstwords.edge.replay import discover_session, replay
    from firstwords.edge.runtime import build_runtime, make_speech

    args.workdir.mkdir(parents=True, exist_ok=True)
    session, bundle = ensure_sample(args.workdir, args.session, args.bundle)
    db = args.workdir / "soak.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    rt = build_runtime("laptop", bundle, db, realtime=False, threads=args.threads,
                       capacity_words=args.capacity_words, capacity_episodes=args.capacity_episodes)
    enc, mem, vad, recognizer = rt.encoder, rt.memory, None, None
    if args.words_from != "transcript":
        meta_file = session / "session.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        words = meta.get("object_words", []) + ["look", "at", "the", "a", "is", "this", "where", "see",
                                                "it's"]
        vad, recognizer = make_speech(args.vad, words, bundle=enc.bundle)

    rows = []
    t0 = time.monotonic()
    it = 0
    media = utts = 0.0
    errors: list[str] = []
    print(f"soaking for {args.seconds:.0f} s: {session} with {bundle}, memory capacity "
          f"{args.capacity_words} words / {args.capacity_episodes} episodes", flush=True)
    while time.monotonic() - t0 < args.seconds:
        alternate = args.words_from == "alternate"
        words_from = "audio" if (alternate and it % 2 == 1) or args.words_from == "audio" else "transcript"
        rep = replay(discover_session(session), enc, mem, words_from=words_from, speed=None,
                     options=rt.options,
                     vad=vad, recognizer=recognizer, install_signal_handlers=False)
        it += 1
        media += rep.media_seconds
        utts += rep.stats["utterances"]
        errors += rep.stats["errors"]
        st = mem.stats()
        wal = Path(f"{db}-wal")
        rows.append({"t": time.monotonic() - t0, "iteration": it, "source": words_from,
                     "rss_mb": rss_mb(), "fds": open_fds(), "threads": os_threads(),
                     "py_threads": threading.active_count(), "db_kb": st["bytes_on_disk"] / 1024,
                     "db_main_kb": db.stat().st_size / 1024,
                     "wal_kb": (wal.stat().st_size if wal.exists() else 0) / 1024,
                     "words": st["words"], "episodes": st["episodes"],
                     "utterances_total": st["utterances_learned"]})
        if args.log is not None:
            with args.log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    wall = time.monotonic() - t0
    rt.close()

    print(f"\n{'t s':>7} {'iter':>5} {'source':>10} {'RSS MB':>8} {'fds':>5} {'thr':>4} {'DB KB':>8} "
          f"{'WAL KB':>8} {'words':>6} {'episodes':>8}")
    step = max(1, len(rows) // 25)
    if args.words_from == "alternate" and step % 2 == 0:
        step += 1  # so that the rows shown alternate between transcript and audio replays
    for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
        print(f"{r['t']:7.1f} {r['iteration']:5d} {r['source']:>10} {r['rss_mb']:8.1f} {r['fds']:5d} "
              f"{r['threads']:4d} {r['db_kb']:8.1f} {r['wal_kb']:8.1f} {r['words']:6d} {r['episodes']:8d}")

    warm = [r for r in rows if r["t"] >= args.warmup * wall] or rows[-1:]
    mins = [r["t"] / 60 for r in warm]
    fig = {
        "seconds": round(wall, 1), "iterations": it, "media_seconds": round(media, 1),
        "realtime_factor": round(media / wall, 1) if wall else 0.0, "utterances_per_s": round(utts / wall, 1),
        "warmup_iterations": len(rows) - len(warm), "errors": len(errors),
        "rss_mb_after_warmup": round(warm[0]["rss_mb"], 1), "rss_mb_end": round(rows[-1]["rss_mb"], 1),
        "rss_mb_max": round(max(r["rss_mb"] for r in rows), 1),
        "rss_slope_mb_per_min": round(slope(mins, [r["rss_mb"] for r in warm]), 3),
        "db_kb_after_warmup": round(warm[0]["db_kb"], 1), "db_kb_end": round(rows[-1]["db_kb"], 1),
        "db_kb_max": round(max(r["db_kb"] for r in rows), 1),
        "db_slope_kb_per_min": round(slope(mins, [r["db_kb"] for r in warm]), 3),
        "db_main_slope_kb_per_min": round(slope(mins, [r["db_main_kb"] for r in warm]), 3),
        "fds_after_warmup": warm[0]["fds"], "fds_end": rows[-1]["fds"],
        "fds_slope_per_min": round(slope(mins, [r["fds"] for r in warm]), 3),
        "threads_after_warmup": warm[0]["threads"], "threads_end": rows[-1]["threads"],
        "threads_max": max(r["threads"] for r in rows),
        "threads_slope_per_min": round(slope(mins, [r["threads"] for r in warm]), 3),
        "words_end": rows[-1]["words"], "episodes_end": rows[-1]["episodes"],
        "capacity_words": args.capacity_words, "capacity_episodes": args.capacity_episodes,
    }
    # Flat: after warm-up, the last third of the samples sits no higher than the first third (medians, so one
    # allocator step does not decide it), within a small tolerance.
    third = max(1, len(warm) // 3)

    def growth(key: str) -> float:
        first = sorted(r[key] for r in warm[:third])[third // 2]
        last = sorted(r[key] for r in warm[-third:])[third // 2]
        return last - first

    fig["rss_growth_mb_late"] = round(growth("rss_mb"), 2)
    fig["db_main_growth_kb_late"] = round(growth("db_main_kb"), 1)
    fig["rss_flat"] = fig["rss_growth_mb_late"] < max(2.0, 0.02 * fig["rss_mb_end"])
    fig["db_flat"] = fig["db_main_growth_kb_late"] < max(64.0, 0.1 * warm[0]["db_main_kb"])
    fig["fds_flat"] = warm[-1]["fds"] <= warm[0]["fds"] + 2
    fig["threads_flat"] = warm[-1]["threads"] <= warm[0]["threads"] + 2
    fig["within_capacity"] = (rows[-1]["words"] <= args.capacity_words
                              and rows[-1]["episodes"] <= args.capacity_episodes)
    print(f"\n{it} replays in {wall:.0f} s ({fig['realtime_factor']}x real time, {fig['utterances_per_s']} "
          f"utterances/s); errors: {len(errors)}")
    print(f"RSS {fig['rss_mb_after_warmup']} -> {fig['rss_mb_end']} MB (slope {fig['rss_slope_mb_per_min']} "
          f"MB/min, last third vs first third after warm-up {fig['rss_growth_mb_late']:+} MB, flat: "
          f"{fig['rss_flat']}); DB {fig['db_kb_after_warmup']} -> {fig['db_kb_end']} KB incl. WAL (main file "
          f"slope {fig['db_main_slope_kb_per_min']} KB/min, flat: {fig['db_flat']})")
    print(f"fds {fig['fds_after_warmup']} -> {fig['fds_end']} (flat: {fig['fds_flat']}); threads "
          f"{fig['threads_after_warmup']} -> {fig['threads_end']} (flat: {fig['threads_flat']}); memory "
          f"{fig['words_end']} words / {fig['episodes_end']} episodes (within capacity: "
          f"{fig['within_capacity']})")
    for e in errors[:5]:
        print(f"error: {e}")
    print(json.dumps(fig))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
