"""The headless status record: how a running learner is doing, readable without a screen.

A small JSON file beside the memory (`<memory>.status.json`), replaced atomically (edge.atomic) so a reader or
a power cut never sees half of one. The live learner keeps it up to date every `write_every` seconds and at
start and stop; `firstwords status` and `firstwords doctor` read it. Times are wall-clock UTC (ISO 8601).

`ServiceMonitor` is the glue a live run hangs on the learner's once-a-second tick: it updates the record,
tells systemd (edge.notify) READY=1 once camera, microphone and bundle deliver, a one-line STATUS=, WATCHDOG=1
only while the input flows and the learner progresses, and STOPPING=1 at shutdown.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firstwords.edge.atomic import atomic_write_json, pid_alive
from firstwords.edge.errors import DataError
from firstwords.edge.notify import Notifier, WatchdogPolicy

log = logging.getLogger(__name__)

STATUS_FORMAT = "firstwords-status"
STATUS_VERSION = 1
MAX_TODAY_WORDS = 5000  # distinct words kept for "learned today" (a day of speech has far fewer)


def status_path(memory: str | Path) -> Path:
    """Where the status record of a memory lives: beside it, `<memory>.status.json`."""
    p = Path(memory)
    return p.with_name(p.name + ".status.json")


def utc_iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def parse_iso(s: str | None) -> float | None:
    return None if not s else datetime.fromisoformat(s).timestamp()


@dataclass
class Status:
    """One snapshot. `state`: starting | running | stopped | failed."""
    memory: str
    state: str = "starting"
    pid: int = field(default_factory=os.getpid)
    started: str | None = None
    updated: str | None = None
    ready: bool = False  # camera, microphone and bundle delivered (READY=1 sent)
    last_frame: str | None = None
    last_utterance: str | None = None
    day: str | None = None  # local date the "today" counts are for
    words_today: int = 0  # distinct words learned from today
    today_words: list[str] = field(default_factory=list)
    words_total: int = 0  # distinct words in the memory
    utterances_learned: int = 0  # in this run
    frames_in: int = 0  # in this run
    frames_dropped: int = 0  # in this run: the encoder was behind
    audio_overflows: int = 0  # in this run: microphone blocks lost because the queue was full
    disk_used_bytes: int = 0  # the memory's files (database + WAL)
    evictions: int = 0  # entries the memory evicted to stay within its caps
    watchdog: str = "off"  # ok | stalled: <what> | off (not under systemd's watchdog)
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATUS_FORMAT, "version": STATUS_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Status:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def write_status(path: str | Path, status: Status) -> None:
    status.updated = utc_iso(time.time())
    atomic_write_json(path, status.to_dict())


def read_status(memory: str | Path) -> dict[str, Any]:
    """The record beside `memory` as a dict; DataError when there is none or it is unreadable."""
    path = status_path(memory)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"no status record at {path}: no learner has run with the memory {memory} yet "
                        "(start one with 'firstwords run' or 'firstwords service install')") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"the status record {path} is unreadable ({e}); the next run rewrites it") from e
    if not isinstance(d, dict) or d.get("format") != STATUS_FORMAT:
        raise DataError(f"{path} is not a firstwords status record")
    return d


def describe_state(d: dict[str, Any], now: float | None = None) -> str:
    """The state as a reader should take it: a 'running' record whose writer is gone is 'not running'."""
    state = d.get("state", "?")
    if state in ("running", "starting") and not pid_alive(int(d.get("pid", 0) or 0)):
        return f"not running (it stopped without saying so; last update {ago(d.get('updated'), now)})"
    return state


def ago(iso: str | None, now: float | None = None) -> str:
    t = parse_iso(iso)
    if t is None:
        return "never"
    s = max(0.0, (time.time() if now is None else now) - t)
    text = f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
    return f"{iso} ({text} ago)"


def format_status(d: dict[str, Any], now: float | None = None) -> str:
    mb = d.get("disk_used_bytes", 0) / 1e6
    rows = [
        ("state", describe_state(d, now)),
        ("memory", d.get("memory")),
        ("started", ago(d.get("started"), now)),
        ("updated", ago(d.get("updated"), now)),
        ("last frame", ago(d.get("last_frame"), now)),
        ("last utterance", ago(d.get("last_utterance"), now)),
        ("words learned", f"{d.get('words_today', 0)} today ({d.get('day')}), "
                          f"{d.get('words_total', 0)} in all"),
        ("this run", (f"{d.get('utterances_learned', 0)} utterances, {d.get('frames_in', 0)} frames, "
                     f"{d.get('frames_dropped', 0)} dropped, {d.get('audio_overflows', 0)} audio overflows")),
        ("disk used", f"{mb:.1f} MB, {d.get('evictions', 0)} evictions"),
        ("watchdog", d.get("watchdog")),
        ("last error", d.get("last_error") or "none"),
    ]
    return "\n".join(f"{k:<15} {v}" for k, v in rows)


def pulse(health: Any) -> Any:
    """The watchdog's counters from a learner snapshot: frames_in, audio_in, progress.

    Reads the runtime's health snapshot when it has these names, else the learner's stats: frames captured,
    audio blocks taken by the audio thread, and frames encoded as progress (a stuck encoder stops it)."""
    g = getattr
    frames = g(health, "frames_in", None)
    frames = g(health, "frames_captured", 0) if frames is None else frames
    audio = g(health, "audio_in", None)
    audio = g(health, "audio_blocks", 0) if audio is None else audio
    progress = g(health, "progress", None)
    if progress is None:
        progress = g(health, "frames_encoded", 0)
    return _Pulse(frames, audio, progress)


@dataclass
class _Pulse:
    frames_in: float
    audio_in: float
    progress: float


class ServiceMonitor:
    """Keeps the status record and speaks to systemd, driven by the learner's tick (`tick(stats)`).

    memory_stats: a callable giving the memory's stats() (disk used, evictions, words), read every write.
    watchdog_sec: systemd's WatchdogSec (default: from $WATCHDOG_USEC); pings stop once a counter has not
    moved for half of it, so systemd sees the silence well within WatchdogSec.
    """

    def __init__(self, memory: str | Path, memory_stats=None, notifier: Notifier | None = None,
                 watchdog_sec: float | None = None, write_every: float = 10.0) -> None:
        from firstwords.edge.notify import watchdog_seconds

        self.path = status_path(memory)
        self.memory_stats = memory_stats
        self.notifier = notifier if notifier is not None else Notifier()
        self.watchdog_sec = watchdog_seconds() if watchdog_sec is None else watchdog_sec
        self.policy = WatchdogPolicy(self.watchdog_sec / 2) if self.watchdog_sec else None
        self.write_every = write_every
        self._lock = threading.Lock()  # learned() runs on the learner's worker thread
        self.pings = 0
        self._last_write = -1e18
        self._counts = (-1.0, -1.0, -1.0)  # frames, utterances seen at the previous tick
        self.status = Status(memory=str(memory), started=utc_iso(time.time()))
        try:  # keep today's words across a restart on the same day
            old = read_status(memory)
            if old.get("day") == self._today():
                self.status.today_words = list(old.get("today_words", []))[:MAX_TODAY_WORDS]
        except DataError:
            pass
        self._today_set = set(self.status.today_words)
        self.status.day = self._today()
        self.status.words_today = len(self._today_set)
        self._write()

    @staticmethod
    def _today() -> str:
        return time.strftime("%Y-%m-%d")

    def learned(self, words: list[str]) -> None:
        """Called with the words of each utterance learned from (any thread)."""
        now = time.time()
        self.status.last_utterance = utc_iso(now)
        if self.status.day != self._today():
            self.status.day, self._today_set = self._today(), set()
        with self._lock:
            for w in words:  # HeardWord or str
                if len(self._today_set) < MAX_TODAY_WORDS:
                    self._today_set.add(str(getattr(w, "text", w)))
            self.status.words_today = len(self._today_set)

    def error(self, message: str) -> None:
        self.status.last_error = f"{utc_iso(time.time())} {message}"

    def tick(self, health: Any, overflows: int = 0) -> None:
        """Once a second from the learner's loop (its stats, or its Health snapshot): notify systemd, refresh
        the record now and then."""
        s, now = self.status, time.time()
        p = pulse(health)
        if getattr(health, "last_frame_at", None) is not None:  # the runtime's Health snapshot
            s.last_frame = utc_iso(health.last_frame_at)
        elif p.frames_in > self._counts[0]:
            s.last_frame = utc_iso(now)
        if getattr(health, "last_utterance_at", None) is not None:
            s.last_utterance = utc_iso(health.last_utterance_at)
        self._counts = (p.frames_in, p.audio_in, p.progress)
        s.frames_in = int(p.frames_in)
        s.frames_dropped = int(getattr(health, "frames_dropped", 0))
        s.utterances_learned = int(getattr(health, "utterances_learned", getattr(health, "utterances", 0)))
        s.audio_overflows = int(getattr(health, "audio_overflows", overflows))
        errors = getattr(health, "errors", None) or []
        last_error = getattr(health, "last_error", None) or (errors[-1] if errors else None)
        if last_error and not (s.last_error or "").endswith(str(last_error)):
            self.error(str(last_error))
        if not s.ready and p.frames_in > 0 and p.audio_in > 0:
            s.ready, s.state = True, "running"
            self.notifier.ready(self.line())
            self._write()
        if self.policy is not None:
            stalled = self.policy.stalled(p)
            s.watchdog = "ok" if not stalled else "stalled: no " + ", ".join(stalled)
            if s.ready and not stalled:
                self.pings += self.notifier.watchdog()
        self.notifier.status(self.line())
        if time.monotonic() - self._last_write >= self.write_every:
            self._write()

    def line(self) -> str:
        s = self.status
        tail = f"; last error {s.last_error}" if s.last_error else ""
        return (f"{s.state}: {s.words_today} words today, {s.words_total} in all; {s.utterances_learned} "
                f"utterances, {s.frames_in} frames ({s.frames_dropped} dropped), {s.audio_overflows} audio "
                f"overflows; watchdog {s.watchdog}{tail}")

    def stopping(self) -> None:
        self.status.state = "stopping"
        self.notifier.stopping()

    def stopped(self, failed: str | None = None) -> None:
        if failed:
            self.error(failed)
        self.status.state = "failed" if failed else "stopped"
        self._write()
        self.notifier.close()

    def _write(self) -> None:
        s = self.status
        if self.memory_stats is not None:
            try:
                m = self.memory_stats()
                s.words_total = int(m.get("words", 0))
                s.disk_used_bytes = int(m.get("disk_bytes", m.get("bytes_on_disk", 0)) or 0)
                s.evictions = int(m.get("evicted_episodes", m.get("evictions", 0)) or 0)
            except Exception as e:  # noqa: BLE001  # a closed or busy memory must not stop the status
                log.debug("memory stats unavailable: %s", e)
        with self._lock:
            s.today_words = sorted(self._today_set)
        try:
            write_status(self.path, s)
        except OSError as e:  # a full card: keep learning, say so in the journal
            log.warning("cannot write the status record %s: %s", self.path, e)
        self._last_write = time.monotonic()


def doctor_line(memory: str | Path, now: float | None = None) -> tuple[str, str]:
    """('OK' | 'WARN', message) for `firstwords doctor --memory`: the learner's state from its record."""
    try:
        d = read_status(memory)
    except DataError as e:
        return "WARN", str(e)
    state = describe_state(d, now)
    msg = (f"{state}; last frame {ago(d.get('last_frame'), now)}, "
           f"last utterance {ago(d.get('last_utterance'), now)}, {d.get('words_today', 0)} words today, "
           f"{d.get('words_total', 0)} in all, "
           f"{d.get('disk_used_bytes', 0) / 1e6:.1f} MB on disk")
    problems = []
    if d.get("last_error"):
        problems.append(f"last error: {d['last_error']}")
    if str(d.get("watchdog", "")).startswith("stalled"):
        problems.append(f"watchdog {d['watchdog']} (check the camera and microphone)")
    if state not in ("running", "stopped"):
        problems.append("see 'journalctl -u firstwords' for why it stopped")
    return ("WARN", msg + "; " + "; ".join(problems)) if problems else ("OK", msg)
