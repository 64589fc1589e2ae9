"""Replay: the device path with file sources instead of camera and microphone.

A session is found from one path (`discover_session`):
- a session folder written by tools/make_sample_session.py (session.json names the files), or any folder
  holding a video (or image frames) plus a .wav/.flac soundtrack and/or an .srt/.vtt/.csv transcript;
- a video file: a soundtrack and transcript with the same stem beside it are used; otherwise the video's own
  soundtrack is extracted with ffmpeg when ffmpeg is installed;
- a transcript or a wav file, with a video of the same stem beside it.

`replay(...)` runs the same `edge.learner.Learner` the live device runs, at full speed (`speed=None`:
back-pressure, nothing dropped) or paced (`speed=1.0`: as a camera and microphone would deliver, frames
dropped when the CPU falls behind).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firstwords.edge.capture import IMAGE_SUFFIXES
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.frame_files import ImageFolderSource, PacedSource, VideoFileSource
from firstwords.edge.hear import SAMPLE_RATE
from firstwords.edge.learner import Learner, LearnerOptions, LearnerReport, LearnerStats
from firstwords.edge.pair import TimedUtterance

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")
AUDIO_SUFFIXES = (".wav", ".flac")
TRANSCRIPT_SUFFIXES = (".srt", ".vtt", ".csv")
WORDS_FROM = ("auto", "audio", "transcript")


@dataclass
class Session:
    frames: Path | None  # a video file or an image folder
    audio: Path | None  # a wav / flac soundtrack
    transcript: Path | None  # SRT / WebVTT / CVCL CSV
    meta: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None  # s, when known
    _tmp: Any = field(default=None, repr=False)  # a temp dir holding an extracted soundtrack

    def describe(self) -> str:
        parts = [f"frames: {self.frames or '-'}", f"audio: {self.audio or '-'}",
                 f"transcript: {self.transcript or '-'}"]
        return "; ".join(parts)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _first(folder: Path, suffixes: Sequence[str]) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    return found[0] if found else None


def _beside(path: Path, suffixes: Sequence[str]) -> Path | None:
    for s in suffixes:
        p = path.with_suffix(s)
        if p.is_file() and p != path:
            return p
    return None


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def extract_soundtrack(video: Path, out_wav: Path) -> bool:
    """The video's soundtrack as 16 kHz mono wav via ffmpeg; False if ffmpeg is missing or there is none."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-vn", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", str(out_wav)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not out_wav.is_file() or out_wav.stat().st_size <= 44:
        log.info("no soundtrack extracted from %s: %s", video, proc.stderr.decode(errors="replace").strip())
        return False
    return True


def discover_session(path: str | Path, *, frames: str | Path | None = None, audio: str | Path | None = None,
                     transcript: str | Path | None = None) -> Session:
    """Find a session's frames, soundtrack and transcript from one path (explicit ones override)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such session; give a session folder (tools/make_sample_session.py writes "
                        "one), "
                        "a video file, or a transcript / wav with a video beside it")
    s = Session(None, None, None)
    if p.is_dir():
        meta_path = p / "session.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise DataError(f"{meta_path}: unreadable session description ({e}); remake the "
                                "session") from e
            s.meta = meta
            for key in ("video", "audio", "transcript"):
                name = meta.get(key)
                if name and not (p / name).exists():
                    raise DataError(f"{meta_path} names {key} {name!r}, which is missing; remake the session")
            s.frames = p / meta["video"] if meta.get("video") else None
            s.audio = p / meta["audio"] if meta.get("audio") else None
            s.transcript = p / meta["transcript"] if meta.get("transcript") else None
            s.duration = meta.get("duration")
        else:
            s.frames = _first(p, VIDEO_SUFFIXES)
            if s.frames is None:
                if (p / "frames").is_dir() and _has_images(p / "frames"):
                    s.frames = p / "frames"
                elif _has_images(p):
                    s.frames = p
            s.audio = _first(p, AUDIO_SUFFIXES)
            s.transcript = _first(p, TRANSCRIPT_SUFFIXES)
    else:
        suffix = p.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            s.frames = p
            s.audio = _beside(p, AUDIO_SUFFIXES)
            s.transcript = _beside(p, TRANSCRIPT_SUFFIXES)
        elif suffix in AUDIO_SUFFIXES:
            s.audio = p
            s.frames = _beside(p, VIDEO_SUFFIXES)
            s.transcript = _beside(p, TRANSCRIPT_SUFFIXES)
        elif suffix in TRANSCRIPT_SUFFIXES:
            s.transcript = p
            s.frames = _beside(p, VIDEO_SUFFIXES)
            s.audio = _beside(p, AUDIO_SUFFIXES)
        else:
            raise DataError(f"{p}: not a session: expected a folder, a video ({', '.join(VIDEO_SUFFIXES)}), "
                            f"audio ({', '.join(AUDIO_SUFFIXES)}) or a transcript "
                            f"({', '.join(TRANSCRIPT_SUFFIXES)})")
    if frames is not None:
        s.frames = Path(frames)
    if audio is not None:
        s.audio = Path(audio)
    if transcript is not None:
        s.transcript = Path(transcript)
    for what, q in (("frames", s.frames), ("audio", s.audio), ("transcript", s.transcript)):
        if q is not None and not q.exists():
            raise DataError(f"{q}: no such {what} file")
    if s.audio is None and s.frames is not None and s.frames.is_file() and audio is None:
        tmp = tempfile.TemporaryDirectory(prefix="firstwords-replay-")
        wav = Path(tmp.name) / "soundtrack.wav"
        if extract_soundtrack(s.frames, wav):
            s.audio, s._tmp = wav, tmp
        else:
            tmp.cleanup()
    if s.frames is None:
        raise DataError(f"{p}: found no video or image frames for this session; pass --frames "
                        "VIDEO_OR_FOLDER")
    if s.audio is None and s.transcript is None:
        hint = "" if shutil.which("ffmpeg") else (" (ffmpeg is not installed, so a video's own soundtrack "
                                                  "cannot be read: sudo apt-get install ffmpeg, or put a "
                                                  ".wav beside the video)")
        raise DataError(f"{p}: found neither a soundtrack nor a transcript; pass --audio WAV or "
                        f"--transcript SRT{hint}")
    return s


def choose_words_source(session: Session, words_from: str, recognizer_name: str = "pocketsphinx") -> str:
    """'audio' or 'transcript'. auto: the soundtrack through VAD + ASR when there is one and the device
    config's recogniser is not 'transcript'; otherwise the transcript."""
    if words_from not in WORDS_FROM:
        raise InputError(f"words_from must be one of {WORDS_FROM}, got {words_from!r}")
    if words_from == "auto":
        if session.audio is not None and recognizer_name != "transcript":
            return "audio"
        if session.transcript is not None:
            return "transcript"
        return "audio"
    if words_from == "audio" and session.audio is None:
        raise DataError("this session has no soundtrack; use --words-from transcript (or give --audio WAV)")
    if words_from == "transcript" and session.transcript is None:
        raise DataError("this session has no transcript; use --words-from audio (or give --transcript FILE)")
    return words_from


def load_utterances(path: Path, encoding: str | None = None,
                    warnings: list[str] | None = None) -> list[TimedUtterance]:
    """A transcript's utterances. encoding None: UTF-8, and when the file is not UTF-8, cp1252 (Windows'
    Western encoding, which reads any byte) with a line added to `warnings` saying so."""
    from firstwords.edge.transcripts import TranscriptEncodingError, load_transcript

    if encoding is not None:
        rows = load_transcript(path, encoding=encoding)
    else:
        try:
            rows = load_transcript(path)
        except TranscriptEncodingError:
            rows = load_transcript(path, encoding="cp1252")
            if warnings is not None:
                warnings.append(f"{path}: not UTF-8; read as cp1252 (Windows Western). If words look wrong, "
                                "pass --encoding with the file's encoding")
    return rows


def parse_speed(text: str) -> float | None:
    """--speed: 'max' -> None (as fast as the CPU allows), else a positive factor of real time."""
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError as e:
        raise InputError(f"--speed must be 'max' or a positive number (1 = real time), got {text!r}") from e
    if not v > 0:
        raise InputError(f"--speed must be 'max' or a positive number (1 = real time), got {text!r}")
    return v


def session_duration(session: Session) -> float | None:
    if session.duration:
        return float(session.duration)
    if session.frames is not None and session.frames.is_file():
        return VideoFileSource(session.frames).duration()
    return None


def replay(session: Session, encoder: Any, memory: Any, *, words_from: str = "auto",
           speed: float | None = None,
           options: LearnerOptions | None = None, vad: Any = None, recognizer: Any = None,
           recognizer_name: str = "pocketsphinx", encoding: str | None = None,
           on_status: Callable[[LearnerStats], None] | None = None,
           on_learned: Callable | None = None, on_utterance: Callable | None = None,
           on_tick: Callable | None = None, install_signal_handlers: bool = True) -> LearnerReport:
    """Run a session through the learner into `memory`. vad / recognizer: the audio path's (edge.runtime's
    build_runtime(speech=True) makes them); ignored for a transcript. `options` is not changed: the replay
    runs on a copy with its pacing (`speed`) and the session's clock. The report's `warnings` say what
    was odd about the session's files (an empty transcript, a soundtrack without audio, no frames)."""
    if speed is not None and not speed > 0:
        raise InputError("speed must be positive (1 = real time) or None for as fast as possible, got "
                         f"{speed!r}")
    source = choose_words_source(session, words_from, recognizer_name)
    opts = replace(options if options is not None else LearnerOptions(), realtime=speed is not None,
                   clock_origin=0.0)
    warnings: list[str] = []
    try:
        frames: Any = (VideoFileSource(session.frames, fps=opts.fps) if session.frames.is_file()
                       else ImageFolderSource(session.frames, fps=opts.fps, index_fps=opts.fps))
        if speed is not None:
            frames = PacedSource(frames, speed=speed)
        kw: dict[str, Any] = {}
        if source == "audio":
            from firstwords.edge.hear import AudioFileSource

            if vad is None or recognizer is None:
                raise InputError("the audio path needs a vad and a recognizer "
                                 "(firstwords.edge.runtime.build_runtime(..., speech=True) makes them)")
            audio = AudioFileSource(session.audio, speed=speed)
            if audio.duration == 0:
                warnings.append(f"{session.audio}: the soundtrack holds no audio (a header only); "
                                "nothing can be heard")
            kw.update(audio=audio, vad=vad, recognizer=recognizer)
        else:
            utts = load_utterances(session.transcript, encoding, warnings)
            if not utts:
                warnings.append(f"{session.transcript}: the transcript holds no utterances; nothing to learn")
            kw.update(transcript=utts, transcript_paced=speed)
        learner = Learner(encoder, memory, frames, options=opts, on_status=on_status, on_learned=on_learned,
                          on_utterance=on_utterance, on_tick=on_tick, **kw)
        report = learner.run(install_signal_handlers=install_signal_handlers)
    finally:
        session.cleanup()
    if report.stats["frames_captured"] == 0 and not report.errors and not report.interrupted:
        warnings.append(f"{session.frames}: no frames were read (a video without frames, or no readable "
                        "image); every utterance was left without frames")
    report.warnings[:0] = warnings
    return report


def object_word_recovery(heard: Sequence[TimedUtterance], spoken: Sequence[TimedUtterance],
                         object_words: Sequence[str], min_confidence: float = 0.0,
                         slack: float = 0.3) -> dict[str, Any]:
    """How many object words spoken (the transcript) were recognised in speech overlapping them in time
    (within `slack` s), and how many recognised object words were not said there (false alarms). Recognised:
    a heard word with a confidence of at least `min_confidence` (the memory's [memory] min_word_confidence:
    what it learns from), from the best hypothesis or a competing one (edge.asr_nbest)."""
    from firstwords.edge.tokenize import words

    objs = set(object_words)
    heard_words = [(u.start, u.end, {w.text for w in u.heard_words() if w.confidence >= min_confidence})
                   for u in heard]
    spoken_words = [(u.start, u.end, set(words(u.text))) for u in spoken]
    said = found = false = 0
    per_word: dict[str, list[int]] = {}
    for s0, s1, ws in spoken_words:
        for w in ws & objs:
            ok = any(w in hw for h0, h1, hw in heard_words if h0 < s1 + slack and h1 > s0 - slack)
            said += 1
            found += ok
            per_word.setdefault(w, [0, 0])
            per_word[w][0] += ok
            per_word[w][1] += 1
    for h0, h1, hw in heard_words:
        for w in hw & objs:
            if not any(w in sw for s0, s1, sw in spoken_words if s0 < h1 + slack and s1 > h0 - slack):
                false += 1
    return {"object_words_said": said, "object_words_recovered": found,
            "recovery_rate": round(found / said, 4) if said else None, "false_alarms": false,
            "per_word": {w: round(a / n, 3) for w, (a, n) in sorted(per_word.items())}}
