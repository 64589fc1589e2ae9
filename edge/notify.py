"""systemd's notify protocol, spoken directly: one datagram per message to the socket in $NOTIFY_SOCKET.

A service of Type=notify tells systemd how it is doing by sending newline-separated `KEY=value` lines
(sd_notify(3)): READY=1 once it is up, STATUS=<one line> for `systemctl status`, WATCHDOG=1 at least every
WatchdogSec (systemd restarts the service when the pings stop), STOPPING=1 when it shuts down. No library is
needed: it is a unix datagram socket, and an address starting with '@' lives in the abstract namespace
(a leading NUL byte). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.

The watchdog policy lives here too: a ping means "input flows and the learner progresses", so a hung camera,
a silent microphone stream or a stuck worker thread stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract namespace
    return raw


class Notifier:
    """Sends sd_notify messages; inert when `address` (default: $NOTIFY_SOCKET) is unset."""

    def __init__(self, address: str | None = None) -> None:
        raw = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self.address = raw or None
        self._sock: socket.socket | None = None
        self.failures = 0  # sends that failed (logged once; the learner goes on)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        """send(READY=1, STATUS="...") -> True when the datagram left. Values are one line each."""
        if self.address is None:
            return False
        text = "\n".join(f"{k}={' '.join(str(v).splitlines())}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode(), _address(self.address))
            return True
        except OSError as e:  # systemd gone or the socket unreachable: keep learning, say so once
            self.failures += 1
            if self.failures == 1:
                log.warning("cannot notify systemd at %s: %s", self.address, e)
            return False

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, line: str) -> bool:
        return self.send(STATUS=line)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "stopping: flushing the memory") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_seconds(environ: dict[str, str] | None = None) -> float | None:
    """WatchdogSec as systemd passes it ($WATCHDOG_USEC, for this process when $WATCHDOG_PID is set)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


@dataclass
class WatchdogPolicy:
    """Decides, on each health tick, whether the learner is alive enough for a WATCHDOG=1 ping.

    Alive = within the last `stale_seconds` a frame arrived, audio arrived and the learner's progress counter
    moved. The health snapshot needs `frames_in`, `audio_in` and `progress` (monotonic counters); each is
    compared with the value it had when it last moved.
    """

    stale_seconds: float
    _seen: dict[str, tuple[float, float]] | None = None  # counter -> (value, monotonic time it last moved)

    COUNTERS = ("frames_in", "audio_in", "progress")

    def stalled(self, health: Any, now: float | None = None) -> list[str]:
        """The counters that have not moved for stale_seconds (empty: alive)."""
        now = time.monotonic() if now is None else now
        if self._seen is None:
            self._seen = {}
        out = []
        for name in self.COUNTERS:
            value = float(getattr(health, name))
            last = self._seen.get(name)
            if last is None or value != last[0]:
                self._seen[name] = (value, now)
            elif now - last[1] > self.stale_seconds:
                out.append(name)
        return out
