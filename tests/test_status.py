"""The headless status record, `firstwords status` and doctor's learner line; the monitor's notify logic."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from firstwords.edge.errors import DataError
from firstwords.edge.notify import Notifier
from firstwords.edge.status import ServiceMonitor, doctor_line, read_status, status_path


class Stats:
    """The learner's per-tick numbers (edge.learner.LearnerStats has these names)."""

    def __init__(self, frames=0, audio=0, encoded=0, utterances=0, dropped=0, errors=()):
        self.frames_captured, self.audio_blocks, self.frames_encoded = frames, audio, encoded
        self.utterances, self.frames_dropped, self.errors = utterances, dropped, list(errors)


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n.sock"))
    sock.setblocking(False)
    yield sock, str(tmp_path / "n.sock")
    sock.close()


def drain(sock) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def fake_memory_stats():
    return {"words": 7, "bytes_on_disk": 123456, "evictions": 3}


def test_record_is_written_beside_the_memory_and_read_back(tmp_path):
    mem = tmp_path / "m.db"
    mon = ServiceMonitor(mem, memory_stats=fake_memory_stats, notifier=Notifier(""), write_every=0.0)
    mon.tick(Stats(frames=5, audio=40, encoded=5), overflows=2)
    mon.learned(["ball", "dog"])
    mon.learned(["ball"])
    mon.tick(Stats(frames=10, audio=80, encoded=10, utterances=2, dropped=1), overflows=2)
    d = read_status(mem)
    assert status_path(mem) == tmp_path / "m.db.status.json"
    assert d["state"] == "running" and d["ready"] and d["pid"] == os.getpid()
    assert d["words_today"] == 2 and d["words_total"] == 7 and d["evictions"] == 3
    assert d["disk_used_bytes"] == 123456 and d["audio_overflows"] == 2 and d["frames_dropped"] == 1
    assert d["last_frame"] and d["last_utterance"] and d["started"]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind
    mon.stopped()
    assert read_status(mem)["state"] == "stopped"
    # A restart the same day keeps counting today's words from where it was.
    again = ServiceMonitor(mem, notifier=Notifier(""))
    again.learned(["cat", "ball"])
    assert again.status.words_today == 3


def test_ready_only_once_frames_and_audio_flow_and_pings_only_while_alive(listener, tmp_path):
    sock, path = listener
    mon = ServiceMonitor(tmp_path / "m.db", notifier=Notifier(path), watchdog_sec=2.0, write_every=1e9)
    mon.tick(Stats(frames=0, audio=30))  # microphone up, camera not yet
    assert not any("READY=1" in m for m in drain(sock))
    mon.tick(Stats(frames=3, audio=60, encoded=3))
    msgs = drain(sock)
    assert msgs[0].startswith("READY=1") and "WATCHDOG=1" in msgs
    mon.tick(Stats(frames=3, audio=90, encoded=3))  # the camera stops; not yet stale
    assert "WATCHDOG=1" in drain(sock)
    time.sleep(1.1)
    mon.tick(Stats(frames=3, audio=120, encoded=3))  # no frame for > WatchdogSec / 2: no ping
    msgs = drain(sock)
    assert "WATCHDOG=1" not in msgs and any("stalled: no frames_in" in m for m in msgs)
    mon.tick(Stats(frames=4, audio=150, encoded=4))
    assert "WATCHDOG=1" in drain(sock)
    mon.stopping()
    assert drain(sock)[0].startswith("STOPPING=1")


def test_a_worker_error_is_the_last_error(tmp_path):
    mem = tmp_path / "m.db"
    mon = ServiceMonitor(mem, notifier=Notifier(""), write_every=0.0)
    mon.tick(Stats(frames=1, audio=1, errors=["encoder: disk full"]))
    mon.stopped("encoder: disk full")
    d = read_status(mem)
    assert d["state"] == "failed" and d["last_error"].endswith("encoder: disk full")
    level, msg = doctor_line(mem)
    assert level == "WARN" and "disk full" in msg


def test_status_command(tmp_path):
    mem = tmp_path / "m.db"
    cmd = [sys.executable, "-m", "firstwords.edge.cli", "status", "--memory", str(mem)]
    missing = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "no status record" in missing.stderr
    mon = ServiceMonitor(mem, memory_stats=fake_memory_stats, notifier=Notifier(""), write_every=0.0)
    mon.tick(Stats(frames=5, audio=5))
    mon.learned(["ball"])
    mon.tick(Stats(frames=6, audio=6, utterances=1))
    human = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "words learned   1 today" in human and "7 in all" in human and "3 evictions" in human
    as_json = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert as_json["words_today"] == 1 and as_json["state_now"] == "running"


def test_a_dead_writer_reads_as_not_running(tmp_path):
    mem = tmp_path / "m.db"
    mon = ServiceMonitor(mem, notifier=Notifier(""), write_every=0.0)
    mon.tick(Stats(frames=1, audio=1))
    d = json.loads(status_path(mem).read_text())
    d["pid"] = 2 ** 22 + 12345  # no such process
    status_path(mem).write_text(json.dumps(d))
    level, msg = doctor_line(mem)
    assert level == "WARN" and msg.startswith("not running")


def test_unreadable_record_is_a_clear_error(tmp_path):
    mem = tmp_path / "m.db"
    status_path(mem).write_text("{half")
    with pytest.raises(DataError, match="unreadable"):
        read_status(mem)


def test_doctor_includes_the_learner(tmp_path):
    mem = tmp_path / "m.db"
    ServiceMonitor(mem, notifier=Notifier(""), write_every=0.0).tick(Stats(frames=1, audio=1))
    out = subprocess.run([sys.executable, "-m", "firstwords.edge.cli", "doctor", "--config", "laptop",
                          "--no-latency", "--no-devices", "--data-dir", str(tmp_path), "--memory", str(mem)],
                         capture_output=True, text=True, check=False).stdout
    line = next(ln for ln in out.splitlines() if " learner " in ln)
    assert line.startswith("OK") and "running" in line, out


def test_a_stuck_encoder_stops_the_pings_though_input_flows(listener, tmp_path):
    sock, path = listener
    mon = ServiceMonitor(tmp_path / "m.db", notifier=Notifier(path), watchdog_sec=1.0, write_every=1e9)
    mon.tick(Stats(frames=5, audio=50, encoded=5))
    assert "WATCHDOG=1" in drain(sock)
    time.sleep(0.6)
    mon.tick(Stats(frames=8, audio=80, encoded=5))  # camera and microphone deliver, nothing gets encoded
    msgs = drain(sock)
    assert "WATCHDOG=1" not in msgs and any("stalled: no progress" in m for m in msgs)


def test_the_runtimes_health_snapshot_drives_it_too(listener, tmp_path):
    """Learner.health(): frames_in, audio_in, progress, wall-clock times, overflows, last error."""
    from types import SimpleNamespace

    sock, path = listener
    mon = ServiceMonitor(tmp_path / "m.db", notifier=Notifier(path), watchdog_sec=1.0, write_every=0.0)
    t = time.time() - 5
    h = SimpleNamespace(started=t, last_frame_at=t, last_utterance_at=t + 1, frames_in=10, audio_in=100,
                        frames_dropped=2, utterances_learned=3, words_learned=4, audio_overflows=1,
                        last_error=None, progress=50)
    mon.tick(h)
    assert drain(sock)[0].startswith("READY=1")
    d = read_status(tmp_path / "m.db")
    assert d["frames_dropped"] == 2 and d["utterances_learned"] == 3 and d["audio_overflows"] == 1
    assert d["last_frame"] and d["last_utterance"] > d["last_frame"]
    time.sleep(0.6)
    h.frames_in, h.audio_in = 11, 110  # input flows, but no stage makes progress
    mon.tick(h)
    assert not any(m.startswith("WATCHDOG") for m in drain(sock))
