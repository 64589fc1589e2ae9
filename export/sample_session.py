#!/usr/bin/env python3
"""Record a sample session from the sample corpus's timeline, as a head-cam recording would be kept:

    python tools/make_sample_session.py --corpus work/corpus --out work/session [--voices ...] [--no-speech]

Writes a session folder:
    session.avi   the frames at the corpus's rate (5 fps), MJPG
    session.wav   16 kHz mono soundtrack (skipped, with a note, when no speech synthesiser is installed: replay
                  then uses the transcript): every utterance spoken at its time by several voices (a voice per
                  scene, cycling through espeak-ng, flite and festival voices: edge.synth), the child-directed
                  ones slower and higher; some runs of chatter replaced by OFF-TOPIC adult sentences
                  (edge.speech_text.OFF_TOPIC: full sentences about other things, as in a real home, which must
                  teach nothing); room noise under everything.
    session.srt   the transcript of what is said, with the times it is spoken
    session.json  what is inside (files, duration, fps, frame size, utterance count, object words, voices)

An off-topic sentence takes the place of one to three consecutive utterances that name nothing, so every naming
keeps its start and its window of frames. An utterance whose speech runs into the next one is spoken faster so
that utterances stay apart, as the VAD must find them. Deterministic for a --seed. Human summary first; the last
line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError
from firstwords.edge.hear import SAMPLE_RATE, write_wav
from firstwords.edge.speech_text import ADULT_PROSODY, CHILD_PROSODY, OFF_TOPIC
from firstwords.edge.synth import DEFAULT_VOICES, NOISE_DB, available_voices, parse_voice, room_noise, speak
from firstwords.edge.transcripts import TimedUtterance, format_srt

FORMAT = "firstwords-session v1"
GAP = 0.12  # s of silence kept between one utterance's speech and the next one's start


def plan_off_topic(utts: list[dict], share: float, rng: np.random.Generator, min_slot: float = 3.0) -> dict:
    """{index of the first replaced utterance: (off-topic text, number of utterances it replaces)}: runs of
    one to three consecutive utterances naming nothing, chosen with probability `share`, long enough together."""
    plan: dict[int, tuple[str, int]] = {}
    i = 0
    while i < len(utts) - 1:
        if utts[i].get("named") or rng.random() >= share:
            i += 1
            continue
        k = 1
        while (k < 3 and i + k < len(utts) - 1 and not utts[i + k].get("named")
               and utts[i + k]["start"] - utts[i]["start"] < min_slot):
            k += 1
        if utts[i + k]["start"] - utts[i]["start"] >= min_slot:
            plan[i] = (str(OFF_TOPIC[int(rng.integers(len(OFF_TOPIC)))]), k)
        i += k
    return plan


def say(text: str, voice: str, prosody: tuple[float, float], slot: float, rng: np.random.Generator
        ) -> tuple[np.ndarray, bool]:
    """Speech for one utterance, sped up (down to 0.6 of its time) when it would run past its slot."""
    rate, pitch = prosody
    rate *= float(rng.uniform(0.92, 1.08))
    pitch += float(rng.uniform(-1.5, 1.5))
    x = speak(text, voice, rate=rate, pitch=pitch)
    faster = False
    if len(x) / SAMPLE_RATE > slot and parse_voice(voice)[0] != "festival":  # festival takes no rate
        rate = max(0.6, rate * slot / (len(x) / SAMPLE_RATE) * 0.95)
        x = speak(text, voice, rate=rate, pitch=pitch)
        faster = True
    return x, faster


def speak_session(session: str | Path, out: str | Path, texts: list[str], voices: list[str], seed: int = 0,
                  prosody: tuple[float, float] = ADULT_PROSODY) -> Path:
    """A copy of a session (its video, its utterance times) with a new soundtrack: at each utterance's time
    (unless the previous text is still being spoken) the next of `texts`, by the next of `voices`, over room
    noise; the SRT says what is spoken. For tests and benchmarks: a session of only off-topic speech, or one
    naming a new word."""
    import shutil

    from firstwords.edge.transcripts import load_transcript

    src, out = Path(session), Path(out)
    meta = json.loads((src / "session.json").read_text(encoding="utf-8"))
    utts = load_transcript(src / meta["transcript"])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / meta["video"], out / meta["video"])
    rng = np.random.default_rng(seed)
    track = np.zeros(int((float(meta["duration"]) + 4.0) * SAMPLE_RATE), np.float32)
    timed: list[TimedUtterance] = []
    busy_until = -1.0
    for u in utts:
        if u.start < busy_until:  # still speaking the previous text: this utterance's time is skipped
            continue
        text = texts[len(timed) % len(texts)]
        x, _ = say(text, voices[len(timed) % len(voices)], prosody, 60.0, rng)
        a = round(u.start * SAMPLE_RATE)
        x = x[:max(len(track) - a, 0)]
        track[a:a + len(x)] += 0.8 * x
        busy_until = u.start + len(x) / SAMPLE_RATE + 0.4
        timed.append(TimedUtterance(u.start, round(u.start + max(len(x), 800) / SAMPLE_RATE, 3), text))
    write_wav(out / "session.wav", np.clip(track + room_noise(len(track), rng), -1, 1))
    (out / "session.srt").write_text(format_srt(timed), encoding="utf-8")
    meta.update({"audio": "session.wav", "transcript": "session.srt", "utterances": len(timed),
                 "speech": {"voices": list(voices), "texts": len(texts), "seed": seed}})
    (out / "session.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


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
    ap.add_argument("--voices", default=",".join(DEFAULT_VOICES),
                    help="comma-separated ENGINE:NAME voices, one per scene in turn (default: the six of "
                         "edge.synth.DEFAULT_VOICES that are installed)")
    ap.add_argument("--off-topic", type=float, default=0.5,
                    help="share of the runs of utterances naming nothing replaced by an off-topic adult "
                         "sentence (default: %(default)s; 0 = none)")
    ap.add_argument("--noise-db", type=float, default=NOISE_DB, help="room noise level, dBFS (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="voices' prosody, off-topic choice and noise (default: 0)")
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

    voices = [] if args.no_speech else available_voices([v.strip() for v in args.voices.split(",") if v.strip()])
    speech = bool(voices)
    if not args.no_speech and not speech:
        print("note: no speech synthesiser is installed (sudo apt-get install espeak-ng flite festival "
              "festvox-us-slt-hts); writing the transcript only — replay will use it instead of speech recognition")
    rng = np.random.default_rng(args.seed)
    plan = plan_off_topic(utts, args.off_topic, rng) if speech else {}
    timed: list[TimedUtterance] = []
    faster = overlapping = 0
    track = np.zeros(int(np.ceil((duration + 2.0) * SAMPLE_RATE)), np.float32) if speech else None
    i = 0
    while i < len(utts):
        u = utts[i]
        text, span, prosody, speaker = u["text"], 1, CHILD_PROSODY, u.get("speaker")
        if i in plan:
            (text, span), prosody, speaker = plan[i], ADULT_PROSODY, "A"
        start = float(u["start"])
        nxt = float(utts[i + span]["start"]) if i + span < len(utts) else duration + 2.0
        end = float(utts[i + span - 1]["end"])
        if speech:
            voice = voices[int(u.get("episode", i)) % len(voices)]
            x, sped = say(text, voice, prosody, max(nxt - start - GAP, 0.2), rng)
            faster += sped
            overlapping += len(x) / SAMPLE_RATE > nxt - start - GAP
            a = round(start * SAMPLE_RATE)
            if a + len(x) > len(track):
                track = np.concatenate([track, np.zeros(a + len(x) - len(track), np.float32)])
            track[a:a + len(x)] += 0.8 * x
            end = start + len(x) / SAMPLE_RATE
        timed.append(TimedUtterance(round(start, 3), round(max(end, start + 0.05), 3), text, speaker=speaker))
        i += span
        if speech and len(timed) % 200 == 0:
            print(f"  spoken {len(timed)} utterances", flush=True)
    if speech:
        track += room_noise(len(track), rng, args.noise_db)
        write_wav(out / "session.wav", np.clip(track, -1, 1))
        print(f"soundtrack: {len(timed)} utterances ({len(plan)} off-topic) by {len(voices)} voices ({faster} "
              f"sped up to fit, {overlapping} still touching the next) -> {out / 'session.wav'}")
    else:
        (out / "session.wav").unlink(missing_ok=True)
    (out / "session.srt").write_text(format_srt(timed), encoding="utf-8")
    print(f"transcript: {len(timed)} utterances -> {out / 'session.srt'}")

    meta = {"format": FORMAT, "video": "session.avi", "audio": "session.wav" if speech else None,
            "transcript": "session.srt", "fps": fps, "frame_size": [w, h], "frames": n_frames,
            "duration": round(duration, 2), "utterances": len(timed), "object_words": object_words,
            "speech": {"voices": voices, "noise_db": args.noise_db, "seed": args.seed} if speech else None,
            # which timeline utterances an off-topic sentence took the place of (the SRT says what was spoken)
            "off_topic": [{"index": i, "replaces": k, "text": t} for i, (t, k) in sorted(plan.items())],
            "corpus": str(corpus.resolve()), "corpus_format": timeline.get("format")}
    (out / "session.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    figures = {"frames": n_frames, "utterances": len(timed), "duration_s": round(duration, 2),
               "speech": speech, "off_topic": len(plan), "voices": len(voices), "sped_up": faster, "overlapping": overlapping,
               "seconds": round(time.perf_counter() - t0, 2), "out": str(out)}
    print(f"session written to {out} in {figures['seconds']} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
