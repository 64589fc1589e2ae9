"""A real PortAudio capture through MicrophoneSource, on a machine without a sound card.

The test starts its own PulseAudio server (user mode, private socket in a temp dir, no D-Bus, no cookie) with
a `module-sine-source` (440 Hz) as the default source, and points ALSA at it with an `.asoundrc` in a
temporary HOME (the `pulse` ALSA plugin from libasound2-plugins). PortAudio (Debian's libportaudio2: ALSA host
API) then sees a `default` input device that delivers a real-time paced sine. Recording happens in a child
process, because PortAudio reads the ALSA configuration when sounddevice is imported.  Skipped, with the
reason, when pulseaudio / the ALSA pulse plugin / sounddevice are missing
(tools/install_system_deps.sh installs pulseaudio and libasound2-plugins).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from firstwords.edge.errors import DeviceError
from firstwords.edge.hear import MicrophoneSource, list_input_devices

mode = sys.argv[1]
out = {"devices": list_input_devices()}
if mode == "bad-device":
    try:
        MicrophoneSource(device="no such microphone").start()
    except DeviceError as e:
        out["error"] = str(e)
else:
    kw = {"device_rate": int(sys.argv[2])} if len(sys.argv) > 2 else {}
    if mode == "stall":
        kw["queue_blocks"] = 4
    mic = MicrophoneSource(**kw)
    blocks, t_first = [], None
    for b in mic:
        now = time.monotonic()
        if t_first is None:
            t_first = now
            if mode == "stall":
                time.sleep(1.0)  # a consumer that falls behind: the callback must drop and count, not block
        blocks.append((b.t, len(b.samples), b.samples))
        if now - t_first >= (2.5 if mode == "stall" else 1.5):
            break
    mic.close()
    y = np.concatenate([s for _, _, s in blocks])
    n = min(8000, len(y))
    spec = np.abs(np.fft.rfft(y[-n:] * np.hanning(n)))
    times = [t for t, _, _ in blocks]
    steps = [round((b - a) * 16000 - n) for (a, n, _), (b, _, _) in zip(blocks, blocks[1:])]
    out.update(rate=mic.rate, samples=len(y), wall=time.monotonic() - t_first, stats=mic.stats(),
               peak_hz=float(np.argmax(spec) * 16000 / n), max_abs=float(np.abs(y).max()),
               finite=bool(np.isfinite(y).all()), dtype=str(y.dtype), gaps=[s for s in steps if s],
               monotonic=all(b > a for a, b in zip(times, times[1:])))
print(json.dumps(out))
"""


def _pulse_plugin() -> bool:
    return bool(glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so")
                or glob.glob("/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"))


@pytest.fixture(scope="module")
def pulse_home(tmp_path_factory):
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (sudo apt-get install pulseaudio libasound2-plugins): "
                    "no way to give PortAudio a capture device on a machine without a sound card")
    if not _pulse_plugin():
        pytest.skip("the ALSA pulse plugin is missing (sudo apt-get install libasound2-plugins)")
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip(f"sounddevice cannot be imported: {probe.stderr.strip().splitlines()[-1]} "
                    "(pip install 'firstwords[audio]'; sudo apt-get install libportaudio2)")
    home = tmp_path_factory.mktemp("pulse")
    sock = home / "native"
    (home / "fw.pa").write_text(
        f"load-module module-native-protocol-unix socket={sock} auth-anonymous=1\n"
        "load-module module-sine-source source_name=fwsine frequency=440 rate=16000\n"
        "load-module module-null-sink sink_name=fwsink rate=16000 channels=1\n"
        "set-default-source fwsine\n")
    (home / ".asoundrc").write_text(
        f'pcm.!default {{\n  type pulse\n  server "unix:{sock}"\n}}\n'
        f'ctl.!default {{\n  type pulse\n  server "unix:{sock}"\n}}\n')
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home))
    server = subprocess.Popen(["pulseaudio", "-n", "-F", str(home / "fw.pa"), "--exit-idle-time=-1",
                               "--daemonize=no", "--use-pid-file=no", "--log-target=stderr",
                               "--log-level=error"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not sock.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not sock.exists():
        server.kill()
        err = server.communicate(timeout=5)[1].strip()[-300:]
        pytest.skip(f"pulseaudio did not start here ({err or 'no socket after 15 s'})")
    try:
        yield home
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def record(home: Path, *args: str) -> dict:
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home), PYTHONPATH=str(REPO))
    env.pop("FIRSTWORDS_AUDIO_DEVICE", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_real_portaudio_capture_at_16k(pulse_home):
    r = record(pulse_home, "capture")
    assert any(d["name"] == "default" for d in r["devices"])
    assert r["rate"] == 16000 and r["dtype"] == "float32" and r["finite"]
    assert r["peak_hz"] == pytest.approx(440, abs=4)  # the sine's pitch: samples are at the rate we think
    assert 0.3 < r["max_abs"] <= 1.0
    # paced by the server, not free-running (the ALSA null plugin delivered ~4 M samples/s here):
    # at least 1 s and at most a few seconds of audio (server-side buffering) in 1.5 s of wall time
    assert 16000 <= r["samples"] <= 16000 * 6
    assert r["gaps"] == [] and r["monotonic"] and r["stats"]["overflows"] == 0


def test_real_portaudio_capture_resampled_from_48k(pulse_home):
    r = record(pulse_home, "capture", "48000")
    assert r["rate"] == 48000
    assert r["peak_hz"] == pytest.approx(440, abs=4)  # resampled 48 kHz -> 16 kHz keeps the pitch
    assert r["gaps"] == [] and r["monotonic"] and r["finite"]


def test_slow_consumer_drops_blocks_counts_them_and_time_jumps(pulse_home):
    r = record(pulse_home, "stall")
    assert r["stats"]["overflows"] > 0  # ~1 s of 32 ms blocks against a queue of 4
    assert r["gaps"] and all(g > 0 for g in r["gaps"])  # the dropped audio shows as forward time jumps
    assert r["peak_hz"] == pytest.approx(440, abs=4)


def test_unknown_device_is_a_clear_error(pulse_home):
    r = record(pulse_home, "bad-device")
    assert "no audio input device" in r["error"] and "FIRSTWORDS_AUDIO_DEVICE" in r["error"]
