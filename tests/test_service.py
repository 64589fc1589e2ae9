"""The learner as a systemd service: the unit file, and `firstwords run` speaking the notify protocol.

The run tests start the real `firstwords run` in a subprocess with a real unix datagram socket as
NOTIFY_SOCKET. Only the hardware is fake: tests/fake_hw holds a `picamera2` and a `sounddevice` module with
the real libraries' API (first on PYTHONPATH), behind the real capture and microphone adapters.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.cli import main as cli_main
from firstwords.edge.errors import ConfigError
from firstwords.edge.service import ServiceSpec, render_unit, verify_unit

FAKE_HW = Path(__file__).parent / "fake_hw"
WATCHDOG_SEC = 4.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("torch")  # the bundle is made by our torch exporter
    from firstwords.export.tiny_dual import make_bundle

    return make_bundle(tmp_path_factory.mktemp("svc") / "bundle")


# ------------------------------------------------------------------------------------------------ the unit


def test_unit_has_what_a_watched_device_service_needs(bundle, tmp_path):
    text = render_unit(
        ServiceSpec(
            config="rpi4",
            bundle=bundle,
            memory=tmp_path / "m.db",
            user="root",
            watchdog_sec=30,
            stop_timeout_sec=20,
        ),
        command=["/opt/fw/bin/firstwords"],
    )
    lines = set(text.splitlines())
    for want in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "TimeoutStopSec=20",
        "KillSignal=SIGTERM",
        "StartLimitBurst=5",
        "IOSchedulingClass=best-effort",
        "Nice=5",
        "User=root",
        "WantedBy=multi-user.target",
        "SuccessExitStatus=130",
    ):
        assert want in lines, want
    exec_line = next(ln for ln in lines if ln.startswith("ExecStart="))
    assert exec_line == (
        f"ExecStart=/opt/fw/bin/firstwords run --config rpi4 --bundle {bundle} --memory "
        f"{tmp_path / 'm.db'} --quiet"
    )


def test_unit_refuses_what_could_not_start(bundle, tmp_path):
    with pytest.raises(ConfigError, match="no bundle"):
        render_unit(ServiceSpec(config="rpi4", bundle=tmp_path / "nothing", memory=tmp_path / "m.db"))
    with pytest.raises(ConfigError, match="absolute"):
        render_unit(ServiceSpec(config="rpi4", bundle=bundle, memory=Path("m.db")))
    with pytest.raises(ConfigError, match="no user"):
        render_unit(
            ServiceSpec(config="rpi4", bundle=bundle, memory=tmp_path / "m.db", user="no-such-user-x")
        )


def test_install_and_uninstall_write_a_unit_systemd_accepts(bundle, tmp_path, capsys):
    units = tmp_path / "units"
    units.mkdir()
    rc = cli_main(
        [
            "service",
            "install",
            "--config",
            "rpi4",
            "--bundle",
            str(bundle),
            "--memory",
            str(tmp_path / "dev" / "memory.db"),
            "--unit-dir",
            str(units),
            "--no-start",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    unit = units / "firstwords.service"
    assert "Type=notify" in unit.read_text()
    assert (tmp_path / "dev").is_dir()
    if shutil.which("systemd-analyze"):
        assert "systemd-analyze verify: ok" in out
        assert verify_unit(unit) == (True, "") or verify_unit(unit)[0]
    assert cli_main(["service", "uninstall", "--unit-dir", str(units), "--no-start"]) == 0
    assert not unit.exists()
    assert cli_main(["service", "uninstall", "--unit-dir", str(units), "--no-start"]) == 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_broken_unit(bundle, tmp_path):
    unit = tmp_path / "fw.service"
    text = render_unit(ServiceSpec(config="rpi4", bundle=bundle, memory=tmp_path / "m.db"))
    unit.write_text(text.replace("Type=notify", "Type=notifyy"))
    ok, out = verify_unit(unit)
    assert not ok and "notifyy" in out


# ------------------------------------------------------------------------------------------------ the run


class Listener:
    """systemd's side: a real unix datagram socket; records (time, {key: value}) per message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def pump(self, seconds: float, until=None) -> None:
        end = time.time() + seconds
        while time.time() < end:
            self.sock.settimeout(max(0.01, min(0.2, end - time.time())))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.time(), dict(ln.split("=", 1) for ln in data.decode().splitlines())))
            if until is not None and until(self.messages[-1][1]):
                return

    def times(self, key: str) -> list[float]:
        return [t for t, m in self.messages if key in m]


def start_run(bundle: Path, tmp_path: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, Listener]:
    listener = Listener(tmp_path / "notify.sock")
    env = {
        **os.environ,
        "PYTHONPATH": str(FAKE_HW),
        "NOTIFY_SOCKET": str(listener.path),
        "WATCHDOG_USEC": str(int(WATCHDOG_SEC * 1e6)),
        **env_extra,
    }
    env.pop("WATCHDOG_PID", None)
    with open(tmp_path / "run.log", "w") as log:  # a file, not a pipe nobody drains
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "firstwords.edge.cli",
                "run",
                "--config",
                "rpi4",
                "--camera",
                "picamera2",
                "--bundle",
                str(bundle),
                "--memory",
                str(tmp_path / "memory.db"),
                "-q",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    listener.pump(120, until=lambda m: "READY" in m)
    if not listener.times("READY"):
        stop(proc)
        pytest.fail(f"no READY=1 within 120 s: {(tmp_path / 'run.log').read_text()[-2000:]}")
    return proc, listener


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_stalled_camera_stops_the_watchdog_pings(bundle, tmp_path):
    stall_file = tmp_path / "stalled_at"
    proc, lis = start_run(
        bundle, tmp_path, {"FAKE_CAMERA_STALL_AFTER": "20", "FAKE_CAMERA_STALL_FILE": str(stall_file)}
    )
    try:
        deadline = time.time() + 60  # 20 frames at 5 fps, then the camera hangs
        while not stall_file.exists() and time.time() < deadline:
            lis.pump(0.5)
        assert stall_file.exists(), "the fake camera never stalled"
        stalled_at = float(stall_file.read_text())
        lis.pump(2 * WATCHDOG_SEC)
    finally:
        stop(proc)
    pings = lis.times("WATCHDOG")
    assert [t for t in pings if t < stalled_at], "no pings while the camera delivered"
    after = [t for t in pings if t > stalled_at]
    # The last ping comes within WatchdogSec of the stall; then silence, so systemd restarts the service.
    assert not after or after[-1] - stalled_at < WATCHDOG_SEC, (after, stalled_at)
    assert lis.messages[-1][0] - max(pings) > WATCHDOG_SEC
    status = json.loads((tmp_path / "memory.db.status.json").read_text())
    assert status["watchdog"].startswith("stalled: no frames_in"), status


def speech_wav(path: Path, text: str, lead_s: float) -> Path | None:
    """`lead_s` of silence, then `text` spoken by espeak-ng, as 16 kHz mono; None without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return None
    raw = path.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True, capture_output=True
    )
    from firstwords.edge.hear import read_audio, write_wav

    write_wav(path, np.concatenate([np.zeros(int(16000 * lead_s), np.float32), read_audio(raw)]))
    return path


def test_flowing_input_keeps_pinging_and_sigterm_flushes_within_the_stop_timeout(bundle, tmp_path):
    stop_timeout = 20.0  # the unit's TimeoutStopSec for this test
    wav = speech_wav(tmp_path / "speech.wav", "look at the ball. the dog and the ball.", lead_s=2.0)
    proc, lis = start_run(bundle, tmp_path, {"FAKE_MIC_WAV": str(wav)} if wav else {})
    try:
        ready = lis.times("READY")[0]
        lis.pump(3 * WATCHDOG_SEC)
        pings = [ready] + lis.times("WATCHDOG")
        gaps = np.diff(pings)
        assert len(pings) >= 2 * WATCHDOG_SEC and gaps.max() < WATCHDOG_SEC / 2, gaps
        t_term = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {stop_timeout} s after SIGTERM (systemd would kill it)")
        took = time.time() - t_term
        lis.pump(0.5)
    finally:
        stop(proc)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode in (0, 130), log[-2000:]  # 130: interrupted, a clean stop (SuccessExitStatus=130)
    assert took < stop_timeout
    assert any("STOPPING" in m for _, m in lis.messages)
    status = json.loads((tmp_path / "memory.db.status.json").read_text())
    assert status["state"] == "stopped" and status["last_error"] is None, status
    with sqlite3.connect(tmp_path / "memory.db") as db:
        words = db.execute("SELECT count(*) FROM words").fetchone()[0]
        episodes = db.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert status["words_total"] == words
    if wav:  # what was heard before the SIGTERM is in the memory
        assert episodes >= 1 and status["words_today"] >= 1, (words, episodes, log[-2000:])


# ------------------------------------------------------------------------------------------------ picamera2


def test_picamera2_adapter_through_a_module_with_picamera2s_api(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_HW))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    from firstwords.edge.capture import PiCamera2Source, open_camera

    cam = open_camera("picamera2", 64, 48, 20.0)
    assert isinstance(cam, PiCamera2Source)
    got = []
    for t, frame in cam:
        got.append((t, frame))
        if len(got) == 5:
            cam.close()
    assert [f.shape for _, f in got] == [(48, 64, 3)] * 5  # configured size, RGB (padding channel dropped)
    assert all(f.dtype == np.uint8 and f.flags.c_contiguous for _, f in got)
    times = [t for t, _ in got]
    assert times == sorted(times) and times[-1] - times[0] >= 3 / 20.0 * 0.9  # paced at the configured fps
    assert cam.stats.frames == 5


@pytest.mark.slow
def test_sigterm_with_a_hung_camera_still_exits_within_the_stop_timeout(bundle, tmp_path):
    stall_file = tmp_path / "stalled_at"
    proc, lis = start_run(
        bundle, tmp_path, {"FAKE_CAMERA_STALL_AFTER": "10", "FAKE_CAMERA_STALL_FILE": str(stall_file)}
    )
    try:
        deadline = time.time() + 60
        while not stall_file.exists() and time.time() < deadline:
            lis.pump(0.5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20.0)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 20 s after SIGTERM with a hung camera")
    finally:
        stop(proc)
    assert proc.returncode in (0, 130)
