"""firstwords doctor: each check's verdict, the exit code, and what it tells the user to do."""

from __future__ import annotations

import argparse
import os
import tomllib

import pytest
from firstwords.edge.commands import doctor
from firstwords.edge.config import config_dir, parse_device_config

torch = pytest.importorskip("torch")
from firstwords.export.tiny_dual import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("doc") / "bundle", seed=3)


def config(name: str = "laptop", **tables):
    data = tomllib.loads((config_dir() / f"{name}.toml").read_text())
    for table, values in tables.items():
        data[table].update(values)
    return parse_device_config(data, f"test-{name}")


def args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    doctor.add_arguments(p)
    return p.parse_args(list(argv))


def test_help_and_example():
    assert doctor.HELP and doctor.EXAMPLE.startswith("firstwords doctor --config")


def test_ram_verdicts():
    cfg = config("rpi-zero-2w")  # 250 MB budget
    assert doctor.check_ram(cfg, {"MemAvailable": 200.0, "MemTotal": 430.0}).status == doctor.FAIL
    assert doctor.check_ram(cfg, {"MemAvailable": 300.0, "MemTotal": 430.0}).status == doctor.WARN
    ok = doctor.check_ram(cfg, {"MemAvailable": 4000.0, "MemTotal": 8000.0})
    assert ok.status == doctor.OK and "250" in ok.message
    assert doctor.check_ram(cfg, {}).status == doctor.WARN  # no /proc/meminfo: cannot tell


def test_disk_check_reads_free_space(tmp_path):
    c = doctor.check_disk(tmp_path)
    assert c.status in (doctor.OK, doctor.WARN, doctor.FAIL) and "MB free" in c.message


def test_threads_over_cores_warns():
    cores = os.cpu_count() or 1
    checks = doctor.check_cpu(config(model={"threads": cores + 2}))
    th = next(c for c in checks if c.name == "threads")
    assert th.status == doctor.WARN and f"{cores} cores" in th.message
    one = config(model={"threads": 1})
    assert next(c for c in doctor.check_cpu(one) if c.name == "threads").status == doctor.OK


def test_runtime_checks_name_onnxruntime():
    checks = doctor.check_runtime()
    ort = next(c for c in checks if c.name == "onnxruntime")
    assert ort.status == doctor.OK and "CPUExecutionProvider" in ort.message


def test_bundle_check_valid_mismatched_and_corrupt(bundle, tmp_path):
    checks, b = doctor.check_bundle(config(), str(bundle))
    assert b is not None and checks[0].status == doctor.OK
    # 32 px fp32 vs 128 px int8
    assert any(c.status == doctor.WARN and "re-export" in c.message for c in checks)
    # a corrupted copy fails its checksum
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in bundle.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "vocab.json").write_bytes((bundle / "vocab.json").read_bytes().replace(b"ball", b"bell"))
    checks, b = doctor.check_bundle(config(), str(bad))
    assert b is None and checks[0].status == doctor.FAIL and "vocab.json" in checks[0].message


def test_latency_sample_fails_when_frames_cannot_keep_up(bundle):
    from firstwords.edge.bundle import load_bundle

    b = load_bundle(bundle)
    fine = doctor.check_latency(config(model={"threads": 1}), b, runs=3)
    assert {c.name for c in fine} >= {"latency image_encode", "frame rate"}
    # 1e6 fps leaves one microsecond per frame: no machine keeps up
    hopeless = doctor.check_latency(config(model={"threads": 1}, pairing={"fps": 1e6}), b, runs=3)
    assert next(c for c in hopeless if c.name == "frame rate").status == doctor.FAIL


def test_run_exit_codes(bundle, tmp_path, capsys):
    rc = doctor.run(args("--config", "laptop", "--bundle", str(bundle), "--no-devices", "--runs", "3",
                         "--data-dir", str(tmp_path)))
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert all(line.split()[0] in ("OK", "WARN", "FAIL") for line in lines[:-2])
    assert "checks:" in lines[-1]
    # this machine has the RAM and disk a laptop config needs; the tiny bundle only WARNs
    assert rc == 0 or "FAIL  ram" in out or "FAIL  disk" in out
    assert "latency image_encode" in out

    rc = doctor.run(args("--config", str(tmp_path / "nope.toml")))
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("FAIL") and "no such device config" in out

    rc = doctor.run(args("--config", "laptop", "--bundle", str(tmp_path / "missing"), "--no-devices"))
    out = capsys.readouterr().out
    assert rc == 1 and any(line.startswith("FAIL") and "bundle" in line for line in out.splitlines())


def test_the_homes_speaker_adaptation_is_checked(tmp_path):
    pytest.importorskip("pocketsphinx")
    memory = tmp_path / "memory.db"
    assert doctor.check_adaptation(str(memory)).status == "OK"  # none yet: says how to make one
    (tmp_path / "memory.speech.adapt").write_text("garbage")
    check = doctor.check_adaptation(str(memory))
    assert check.status == "FAIL" and "firstwords adapt again" in check.message


def test_devices_are_listed_or_explained():
    """Whatever this machine has: a verdict per device and, when something is missing, what to do."""
    cam = doctor.check_camera(config())
    mic = doctor.check_microphone(config())
    for c in (cam, mic):
        assert c.status in (doctor.OK, doctor.WARN)
        if c.status == doctor.WARN:
            assert any(w in c.message for w in ("plug in", "pip install", "apt-get", "replay"))


def test_blas_threads_check(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert doctor.check_blas().status == doctor.OK
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    c = doctor.check_blas()
    assert c.status == doctor.WARN and "OPENBLAS_NUM_THREADS=1" in c.message


def test_telemetry_verdicts(tmp_path):
    ok = {"env": "1", "api_called": True, "imported_before": False, "queue": None}
    assert doctor.check_telemetry(ok).status == doctor.OK
    queued = doctor.check_telemetry({**ok, "queue": str(tmp_path / "q")})
    assert queued.status == doctor.WARN
    assert str(tmp_path / "q") in queued.message and "rm -r" in queued.message
    early = doctor.check_telemetry({**ok, "imported_before": True})
    assert early.status == doctor.FAIL and "ORT_DISABLE_TELEMETRY=1" in early.message


def _doctor_in(home, first: str = "") -> str:
    """`firstwords doctor` in a fresh process with HOME=home; `first` runs before firstwords is imported."""
    import subprocess
    import sys

    code = (first + "\nfrom firstwords.edge.cli import main\nmain(['doctor', '--config', 'laptop', "
            "'--no-latency', '--no-devices', '--data-dir', " + repr(str(home)) + "])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env["HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    return next(line for line in out.stdout.splitlines() if "telemetry" in line)


def test_doctor_reports_the_telemetry_state_of_a_real_process(tmp_path):
    line = _doctor_in(tmp_path)
    assert line.split()[0] == "OK" and "telemetry off" in line, line
    assert not (tmp_path / ".cache").exists()  # doctor's own onnxruntime import queued nothing
    queue = tmp_path / ".cache" / "Microsoft" / "DeveloperTools" / ".onnxruntime"
    queue.mkdir(parents=True)
    line = _doctor_in(tmp_path)
    assert line.split()[0] == "WARN" and str(queue) in line, line
    # imported before firstwords: can't help it
    line = _doctor_in(tmp_path / "other", first="import onnxruntime")
    assert line.split()[0] == "FAIL" and "ORT_DISABLE_TELEMETRY=1" in line, line
