#!/usr/bin/env python3
"""Record a sample session from the sample corpus's timeline, as a head-cam recording would be kept:

    python tools/make_sample_session.py --corpus work/corpus --out work/session [--voice en-us] [--no-speech]

Writes a session folder:
    session.avi   the frames at the corpus's rate (5 fps), MJPG
    session.wav   16 kHz mono soundtrack: every utterance spoken by espeak-ng at its time (skipped, with a note,
                  when espeak-ng is not installed: replay then uses the transcript)
    session.srt   the transcript, with the times the words are actually spoken
    session.json  what is inside (files, duration, fps, frame size, utterance count, the object words)

An utterance whose speech runs into the next one is spoken faster (up to --max-wpm) so that utterances stay
apart, as the VAD must find them. Human summary first; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, resample, write_wav
from firstwords.edge.transcripts import TimedUtterance, format_srt

FORMAT = "firstwords-session v1"
GAP = 0.12  # s of silence kept between one utterance's speech and the next one's start


def speak(text: str, voice: str, wpm: int) -> np.ndarray:
    """espeak-ng -> float32 mono 16 kHz."""
    proc = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text], capture_output=True,
                          check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise DataError(f"espeak-ng failed on {text!r}: {proc.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(proc.stdout)) as w:
        rate, width = w.getframerate(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise DataError(f"espeak-ng produced {width * 8}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    # espeak-ng pads with silence; trim it so that the SRT times are the speech's own
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0]:loud[-1] + 1] if len(loud) else x[:0]
    return resample(x, rate, SAMPLE_RATE)


def write_video(frames: list[dict], corpus: Path, path: Path, fps: float) -> tuple[int, int, int]:
    try:
        import cv2
    except ImportError as e:
        raise MissingExtraError("writing the session video needs OpenCV: pip install 'firstwords[camera]'") from e
    first = cv2.imread(str(corpus / frames[0]["file"]), cv2.IMREAD_COLOR)
    if first is None:
        raise DataError(f"{corpus / frames[0]['file']}: cannot read the corpus frame")
    h, w = first.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise DataError(f"OpenCV cannot write {path} (MJPG); is OpenCV built with its video writer?")
    written, prev = 0, first
    # A frame for every 1/fps step of the timeline (a missing one repeats the previous), so frame i is at i/fps.
    by_index = {round(f["t"] * fps): f["file"] for f in frames}
    for i in range(max(by_index) + 1):
        name = by_index.get(i)
        img = cv2.imread(str(corpus / name), cv2.IMREAD_COLOR) if name else None
        if img is None:
            img = prev
        elif img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        vw.write(img)
        prev = img
        written += 1
    vw.release()
    return written, w, h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  python tools/make_sample_session.py --corpus work/corpus "
                                        "--out work/session")
    ap.add_argument("--corpus", required=True, help="sample corpus folder (with timeline.json)")
    ap.add_argument("--out", required=True, help="session folder to write")
    ap.add_argument("--voice", default="en-us+f2", help="espeak-ng voice (default: en-us+f2, which pocketsphinx's "
                    "US English model recognises far better than the default male voice)")
    ap.add_argument("--wpm", type=int, default=165, help="speaking rate, words per minute (default: 165)")
    ap.add_argument("--max-wpm", type=int, default=280, help="fastest rate used to fit a long utterance")
    ap.add_argument("--max-minutes", type=float, default=None, help="only the first N minutes of the timeline")
    ap.add_argument("--no-speech", action="store_true", help="no soundtrack, transcript only")
    args = ap.parse_args(argv)

    corpus, out = Path(args.corpus), Path(args.out)
    t0 = time.perf_counter()
    try:
        timeline = json.loads((corpus / "timeline.json").read_text(encoding="utf-8"))
        frames, utts = timeline["frames"], timeline["utterances"]
        fps = float(timeline["fps"])
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {corpus}/timeline.json is missing or malformed ({e}); build the corpus first: "
              f"python tools/build_sample_corpus.py --out {corpus}", file=sys.stderr)
        return 2
    try:
        info = json.loads((corpus / "corpus_info.json").read_text(encoding="utf-8"))
        object_words = sorted(set(info.get("categories", [])) | {info.get("novel_category", "")} - {""})
    except (OSError, ValueError):
        object_words = sorted({w for u in utts for w in u.get("named", [])})
    if args.max_minutes is not None:
        limit = args.max_minutes * 60
        frames = [f for f in frames if f["t"] < limit]
        utts = [u for u in utts if u["start"] < limit]
    if not frames:
        print("error: the timeline has no frames", file=sys.stderr)
        return 2
    duration = max(frames[-1]["t"] + 1 / fps, max((u["end"] for u in utts), default=0.0))

    out.mkdir(parents=True, exist_ok=True)
    n_frames, w, h = write_video(frames, corpus, out / "session.avi", fps)
    print(f"video: {n_frames} frames {w}x{h} at {fps:g} fps -> {out / 'session.avi'}")

    speech = not args.no_speech and shutil.which("espeak-ng") is not None
    if not args.no_speech and not speech:
        print("note: espeak-ng is not installed (sudo apt-get install espeak-ng); writing the transcript only — "
              "replay will use it instead of speech recognition")
    timed: list[TimedUtterance] = []
    faster = overlapping = 0
    track = np.zeros(int(np.ceil((duration + 2.0) * SAMPLE_RATE)), np.float32) if speech else None
    for i, u in enumerate(utts):
        start = float(u["start"])
        nxt = float(utts[i + 1]["start"]) if i + 1 < len(utts) else duration + 2.0
        end = float(u["end"])
        if speech:
            x = speak(u["text"], args.voice, args.wpm)
            slot = max(nxt - start - GAP, 0.2)
            if len(x) / SAMPLE_RATE > slot:
                wpm = min(args.max_wpm, int(np.ceil(args.wpm * len(x) / SAMPLE_RATE / slot)) + 5)
                x = speak(u["text"], args.voice, wpm)
                faster += 1
            if len(x) / SAMPLE_RATE > slot:
                overlapping += 1
            a = round(start * SAMPLE_RATE)
            need = a + len(x)
            if need > len(track):
                track = np.concatenate([track, np.zeros(need - len(track), np.float32)])
            track[a:need] += 0.8 * x
            end = start + len(x) / SAMPLE_RATE
        timed.append(TimedUtterance(round(start, 3), round(max(end, start + 0.05), 3), u["text"],
                                    speaker=u.get("speaker")))
        if speech and (i + 1) % 200 == 0:
            print(f"  spoken {i + 1}/{len(utts)} utterances", flush=True)
    if speech:
        write_wav(out / "session.wav", np.clip(track, -1, 1))
        print(f"soundtrack: {len(utts)} utterances spoken by espeak-ng ({faster} sped up to fit, {overlapping} "
              f"still touching the next) -> {out / 'session.wav'}")
    else:
        (out / "session.wav").unlink(missing_ok=True)
    (out / "session.srt").write_text(format_srt(timed), encoding="utf-8")
    print(f"transcript: {len(timed)} utterances -> {out / 'session.srt'}")

    meta = {"format": FORMAT, "video": "session.avi", "audio": "session.wav" if speech else None,
            "transcript": "session.srt", "fps": fps, "frame_size": [w, h], "frames": n_frames,
            "duration": round(duration, 2), "utterances": len(timed), "object_words": object_words,
            "speech": {"engine": "espeak-ng", "voice": args.voice, "wpm": args.wpm} if speech else None,
            "corpus": str(corpus.resolve()), "corpus_format": timeline.get("format")}
    (out / "session.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    figures = {"frames": n_frames, "utterances": len(timed), "duration_s": round(duration, 2),
               "speech": speech, "sped_up": faster, "overlapping": overlapping,
               "seconds": round(time.perf_counter() - t0, 2), "out": str(out)}
    print(f"session written to {out} in {figures['seconds']} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
