"""systemd's notify protocol over a real unix datagram socket, and the watchdog policy."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from firstwords.edge.notify import Notifier, WatchdogPolicy, watchdog_seconds


def recv_all(sock: socket.socket) -> list[dict[str, str]]:
    out = []
    sock.setblocking(False)
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return out
        out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    yield sock, str(path)
    sock.close()


def test_messages_arrive_as_systemd_reads_them(listener):
    sock, path = listener
    n = Notifier(path)
    assert n.enabled
    assert n.ready("up: camera, microphone, bundle")
    assert n.watchdog()
    assert n.status("line one\nline two")  # a STATUS= is one line: newlines become spaces
    assert n.stopping()
    msgs = recv_all(sock)
    assert msgs == [{"READY": "1", "STATUS": "up: camera, microphone, bundle"}, {"WATCHDOG": "1"},
                    {"STATUS": "line one line two"},
                    {"STOPPING": "1", "STATUS": "stopping: flushing the memory"}]


def test_abstract_namespace_address():
    name = f"firstwords-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        assert Notifier("@" + name).watchdog()
        assert recv_all(sock) == [{"WATCHDOG": "1"}]
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready("x") and not n.watchdog()


def test_a_vanished_socket_is_counted_not_raised(tmp_path):
    n = Notifier(str(tmp_path / "gone.sock"))
    assert not n.watchdog()
    assert not n.watchdog()
    assert n.failures == 2


def test_watchdog_seconds_from_systemds_environment():
    pid = str(os.getpid())
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "4000000"}) == 4.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_seconds({}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None


class H:
    def __init__(self, frames_in, audio_in, progress):
        self.frames_in, self.audio_in, self.progress = frames_in, audio_in, progress


def test_policy_names_the_counter_that_stopped():
    p = WatchdogPolicy(stale_seconds=2.0)
    assert p.stalled(H(1, 1, 1), now=0.0) == []
    assert p.stalled(H(5, 9, 7), now=1.0) == []
    assert p.stalled(H(5, 20, 9), now=2.5) == []  # frames stopped 1.5 s ago: not yet stale
    assert p.stalled(H(5, 30, 11), now=3.5) == ["frames_in"]
    assert p.stalled(H(5, 40, 11), now=6.0) == ["frames_in", "progress"]  # a stuck learner too
    assert p.stalled(H(6, 50, 12), now=6.5) == []  # moving again: pings resume
