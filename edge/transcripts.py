"""Transcript files for replay -> `TimedUtterance`s (edge.pair): SRT, WebVTT and CVCL's raw transcript CSV.

Every parser takes `str` or `bytes` and either returns utterances sorted by start time or raises
`edge.errors.DataError` naming the line — never any other exception, whatever the input (tested with
hypothesis).

CVCL CSV (`Time, Video Name, Utterance, Speaker`; extra columns ignored, header names case-insensitive):
`Time` is a start time; SAYCam writes minutes:seconds ("1:05", "12:30", sometimes a range "1:05-1:10").
time_format="auto" reads "H:MM:SS(.fff)", "M:SS(.fff)" or plain seconds ("65.5"); time_format="saycam" applies
CVCL's own reading (multimodal-baby `convert_timestamps_to_seconds`: "12.5" = 12 min 50 s, rows it cannot read
are skipped). Rows with an empty time or utterance are skipped (counted in the log), as CVCL does. The end of
a CSV utterance is the next later start in the same video, capped at `max_duration` seconds (last one:
`last_duration`), since the CSV has only start times.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import re
from pathlib import Path

from firstwords.edge.errors import DataError
from firstwords.edge.pair import TimedUtterance

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024  # a transcript larger than this is not a transcript


class TranscriptEncodingError(DataError):
    """The file's bytes are not text in the encoding tried (or the encoding name is unknown)."""


def _decode(data: str | bytes, encoding: str, what: str) -> str:
    if isinstance(data, str):
        text = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode(encoding)
        except LookupError as e:
            raise TranscriptEncodingError(f"{what}: unknown encoding {encoding!r}; give a Python codec name "
                                          "such as utf-8, cp1252 or latin-1 (replay: --encoding)") from e
        except UnicodeDecodeError as e:
            raise TranscriptEncodingError(
                f"{what}: cannot decode as {encoding} ({e}); re-save the file as UTF-8, or give its encoding "
                "(replay: --encoding cp1252, or the file's own; in Python: encoding='cp1252')") from e
    else:
        raise DataError(f"{what}: expected text or bytes, got {type(data).__name__}")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{what}: line {line}: NUL character — this is a binary file, not a transcript")
    return text.lstrip("\ufeff")


_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <c.x>, <00:01.000>, {\an8}


def _clean_text(lines: list[str]) -> str:
    text = " ".join(ln.strip() for ln in lines if ln.strip())
    text = html.unescape(_TAG.sub("", text))
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------- SRT / WebVTT

# hours optional (WebVTT allows MM:SS.mmm); comma or dot before milliseconds; digit counts bounded
_TS = r"(?:(\d{1,4}):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?"
_CUE_TIME = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s+.*)?$")


def _seconds(h: str | None, m: str, s: str, frac: str | None, lineno: int, what: str) -> float:
    mi, se = int(m), int(s)
    if (mi >= 60 and h is not None) or se >= 60:
        raise DataError(f"{what}: line {lineno}: minutes/seconds out of range in a timestamp")
    ms = int((frac or "0").ljust(3, "0"))
    return ((int(h) if h else 0) * 3_600_000 + mi * 60_000 + se * 1000 + ms) / 1000.0  # exact on the ms grid


def _parse_cue_time(line: str, lineno: int, what: str) -> tuple[float, float] | None:
    m = _CUE_TIME.match(line)
    if not m:
        return None
    g = m.groups()
    start = _seconds(g[0], g[1], g[2], g[3], lineno, what)
    end = _seconds(g[4], g[5], g[6], g[7], lineno, what)
    if end < start:
        raise DataError(f"{what}: line {lineno}: cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
    return start, end


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Blank-line separated blocks as (first line number, lines)."""
    out: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    first = 0
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not cur:
                first = i
            cur.append(line)
        elif cur:
            out.append((first, cur))
            cur = []
    if cur:
        out.append((first, cur))
    return out


def parse_srt(data: str | bytes, encoding: str = "utf-8-sig", what: str = "SRT") -> list[TimedUtterance]:
    text = _decode(data, encoding, what)
    out = []
    for first, lines in _blocks(text):
        k = 0
        if lines[0].strip().isdigit() and len(lines) > 1:
            k = 1  # cue number
        times = _parse_cue_time(lines[k], first + k, what)
        if times is None:
            raise DataError(f"{what}: line {first + k}: expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm', "
                            f"got {lines[k][:80]!r}")
        body = _clean_text(lines[k + 1:])
        if body:
            out.append(TimedUtterance(times[0], times[1], body))
    return sorted(out, key=lambda u: (u.start, u.end))


_VOICE = re.compile(r"<v(?:\.[\w.-]*)?\s+([^>]*)>")


def parse_webvtt(data: str | bytes, encoding: str = "utf-8-sig",
                 what: str = "WebVTT") -> list[TimedUtterance]:
    text = _decode(data, encoding, what)
    blocks = _blocks(text)
    if not blocks or not re.match(r"^WEBVTT(?:[ \t].*)?$", blocks[0][1][0].strip()):
        raise DataError(f"{what}: line 1: a WebVTT file starts with 'WEBVTT'")
    out = []
    for first, lines in blocks[1:]:
        head = lines[0].strip()
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        k = 0 if "-->" in lines[0] else 1  # optional cue identifier
        if k >= len(lines):
            raise DataError(f"{what}: line {first}: a cue identifier without a timing line")
        times = _parse_cue_time(lines[k], first + k, what)
        if times is None:
            raise DataError(f"{what}: line {first + k}: expected 'MM:SS.mmm --> MM:SS.mmm', got "
                            f"{lines[k][:80]!r}")
        raw = " ".join(lines[k + 1:])
        voice = _VOICE.search(raw)
        speaker = (" ".join(voice.group(1).split()) or None) if voice else None
        body = _clean_text(lines[k + 1:])
        if body:
            out.append(TimedUtterance(times[0], times[1], body, speaker=speaker))
    return sorted(out, key=lambda u: (u.start, u.end))


# ---------------------------------------------------------------------------------------------- CVCL CSV

_CLOCK = re.compile(r"^(?:(\d{1,4}):)?(\d{1,4}):(\d{1,2}(?:\.\d{1,6})?)$")
_NUMBER = re.compile(r"^\d{1,7}(?:\.\d{1,6})?$")


def _auto_time(s: str) -> float | None:
    s = s.strip()
    m = _CLOCK.match(s)
    if m:
        h, mi, se = m.groups()
        if float(se) >= 60 or (h is not None and int(mi) >= 60):
            return None
        return (int(h) if h else 0) * 3600 + int(mi) * 60 + float(se)
    if _NUMBER.match(s):
        return float(s)
    return None


def _saycam_time(s: str) -> float | None:
    """CVCL's reading: minutes and seconds split on : . , ; with single-digit seconds meaning tens."""
    first = s.split("-")[0]
    if first == "":
        return None
    parts = re.split(r"[:.,;]", first)
    if parts[0] == "":
        parts[0] = "0"
    if len(parts) == 1:
        parts.append("0")
    elif parts[1] in ("1", "2", "3", "4", "5"):
        parts[1] += "0"
    if not (re.fullmatch(r"\d{1,6}", parts[0].strip()) and re.fullmatch(r"\d{1,6}", parts[1].strip())):
        return None
    secs = int(parts[0]) * 60 + int(parts[1])
    return float(secs) if secs <= 2000 else None  # CVCL drops out-of-range stamps


def _cells(row: list[str]):
    return lambda i: row[i].strip() if i is not None and i < len(row) else ""


def _parse_time_cell(s: str, time_format: str) -> tuple[float | None, float | None]:
    if time_format == "saycam":
        return _saycam_time(s), None
    s = s.strip()
    if "-" in s:  # a range "1:05-1:10"
        a, _, b = s.partition("-")
        start, end = _auto_time(a), _auto_time(b)
        return start, (end if end is not None and start is not None and end >= start else None)
    return _auto_time(s), None


def parse_cvcl_csv(data: str | bytes, encoding: str = "utf-8-sig", time_format: str = "auto",
                   video: str | None = None, max_duration: float = 10.0, last_duration: float = 3.0,
                   what: str = "CVCL CSV") -> list[TimedUtterance]:
    """Rows of CVCL's raw transcript CSV; `video` keeps only that 'Video Name'. Sorted by (video, start)."""
    if time_format not in ("auto", "saycam"):
        raise DataError(f"{what}: time_format must be 'auto' or 'saycam', got {time_format!r}")
    if not (max_duration > 0 and last_duration > 0):
        raise DataError(f"{what}: max_duration and last_duration must be positive")
    text = _decode(data, encoding, what)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[str | None, float, float | None, str, str | None]] = []
    skipped = 0
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{what}: empty file; expected a header 'Time, Video Name, Utterance, Speaker'")
        cols = {h.strip().lower(): i for i, h in enumerate(header)}
        if "time" not in cols or "utterance" not in cols:
            raise DataError(f"{what}: line 1: header must name 'Time' and 'Utterance' columns "
                            f"(CVCL: Time, Video Name, Utterance, Speaker), got {header[:8]!r}")
        it, iu = cols["time"], cols["utterance"]
        iv, isp = cols.get("video name"), cols.get("speaker")
        for row in reader:
            lineno = reader.line_num
            if not any(c.strip() for c in row):
                continue
            cell = _cells(row)
            vid = cell(iv) or None
            if video is not None and vid != video:
                continue
            utt = " ".join(cell(iu).split())
            start, end = _parse_time_cell(cell(it), time_format)
            if start is None or not utt:
                if cell(it) and start is None and time_format == "auto":
                    raise DataError(f"{what}: line {lineno}: cannot read time {cell(it)[:40]!r}; expected "
                                    "'M:SS', 'H:MM:SS' or seconds (or time_format='saycam' for CVCL's "
                                    "reading)")
                skipped += 1
                continue
            rows.append((vid, start, end, utt, cell(isp) or None))
    except csv.Error as e:
        raise DataError(f"{what}: line {reader.line_num}: malformed CSV ({e})") from e
    if skipped:
        log.info("%s: skipped %d rows without a time or an utterance", what, skipped)
    rows.sort(key=lambda r: (r[0] or "", r[1]))
    out = []
    for i, (vid, start, end, utt, spk) in enumerate(rows):
        if end is None:
            nxt = next((r[1] for r in rows[i + 1:] if r[0] == vid and r[1] > start), None)
            end = start + last_duration if nxt is None else min(nxt, start + max_duration)
        out.append(TimedUtterance(start, end, utt, speaker=spk, video=vid))
    return out


# ---------------------------------------------------------------------------------------------- files

def load_transcript(path: str | Path, **kwargs) -> list[TimedUtterance]:
    """By extension: .srt, .vtt, .csv (CVCL). kwargs go to the parser (encoding, time_format, video ...)."""
    p = Path(path)
    parsers = {".srt": parse_srt, ".vtt": parse_webvtt, ".csv": parse_cvcl_csv}
    parser = parsers.get(p.suffix.lower())
    if parser is None:
        raise DataError(f"{p}: unknown transcript type {p.suffix!r}; use .srt, .vtt or CVCL's .csv")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{p}: {size} bytes is too large for a transcript (limit {MAX_FILE_BYTES})")
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read transcript ({e})") from e
    return parser(data, what=str(p), **kwargs)


def _stamp(t: float, sep: str) -> str:
    if not (math.isfinite(t) and t >= 0):
        raise DataError(f"cannot write time {t!r}: times must be finite and >= 0")
    ms = round(t * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_srt(utterances: list[TimedUtterance]) -> str:
    """SRT text for utterances (what tools/make_sample_session.py writes beside a video)."""
    parts = []
    for i, u in enumerate(utterances, start=1):
        text = " ".join(u.text.split())
        parts.append(f"{i}\n{_stamp(u.start, ',')} --> {_stamp(u.end, ',')}\n{text}\n")
    return "\n".join(parts)


def format_webvtt(utterances: list[TimedUtterance]) -> str:
    parts = ["WEBVTT\n"]
    for u in utterances:
        text = html.escape(" ".join(u.text.split()), quote=False)
        if u.speaker:
            text = f"<v {u.speaker}>{text}"
        parts.append(f"{_stamp(u.start, '.')} --> {_stamp(u.end, '.')}\n{text}\n")
    return "\n".join(parts)
