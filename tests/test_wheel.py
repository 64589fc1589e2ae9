"""The built wheel is the whole program a device needs: installed with the device extras (no torch) into a
fresh virtual environment outside the checkout, it replays a session, answers `ask` and passes `doctor`.

The wheel is built from a copy of the checkout (pip, isolated build); the venv is made without pip and filled
by this interpreter's pip (`pip --python`), from the registry or its local cache. Every command runs with its
working directory outside the checkout and without PYTHONPATH, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_EXTRAS = "camera,audio,speech"
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "work", "runs", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache")


def _run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv dir, a working directory outside the checkout)."""
    top = tmp_path_factory.mktemp("wheel")
    src, dist, env_dir, cwd = top / "src", top / "dist", top / "venv", top / "cwd"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    cwd.mkdir()
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], cwd, timeout=600))
    (wheel,) = dist.glob("firstwords-*.whl")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    _ok(_run([sys.executable, "-m", "pip", "--python", env_dir / "bin" / "python", "install", "-q",
              "--no-compile", f"{wheel}[{DEVICE_EXTRAS}]"], cwd, timeout=900))
    return wheel, env_dir, cwd


def test_wheel_holds_every_module_and_the_package_data(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"firstwords/{p.relative_to(ROOT)}" for folder in ("edge", "export")
            for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts}
    want |= {f"firstwords/{p.relative_to(ROOT)}" for p in (ROOT / "device_configs").glob("*.toml")}
    want |= {f"firstwords/{p.relative_to(ROOT)}" for p in (ROOT / "export" / "model_configs").glob("*.json")}
    want |= {f"firstwords/{p.relative_to(ROOT)}" for p in (ROOT / "data").glob("*.npz")}
    missing = sorted(want - names)
    assert not missing, f"not in the wheel (add the package / package data to pyproject.toml): {missing[:10]}"
    assert not [n for n in names if n.split("/")[0] in ("edge", "export", "tests", "tools")]


def test_installed_without_torch_under_the_projects_own_import_names(installed):
    _, env_dir, cwd = installed
    py = env_dir / "bin" / "python"
    for generic in ("edge", "export", "torch"):
        proc = _run([py, "-c", f"import {generic}"], cwd)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, (generic, proc.stderr)
    code = ("import json, sys; from firstwords.edge.config import load_device_config, resolve_device_config; "
            "p = resolve_device_config('rpi4'); c = load_device_config(p); "
            "print(json.dumps([str(p.resolve()), c.name, 'torch' in sys.modules]))")
    path, name, torch_loaded = json.loads(_ok(_run([py, "-c", code], cwd)).strip().splitlines()[-1])
    assert Path(path).is_relative_to(env_dir.resolve())
    assert path.endswith("firstwords/device_configs/rpi4.toml")
    assert name and not torch_loaded


def test_replay_ask_and_doctor_from_the_installed_wheel(installed, sample):
    _, env_dir, cwd = installed
    fw = env_dir / "bin" / "firstwords"
    memory = cwd / "memory.db"
    out = _ok(_run([fw, "replay", sample.session, "--config", "rpi4", "--bundle", sample.bundle, "--memory",
                    memory, "--words-from", "transcript", "--json"], cwd))
    learned = json.loads(out.strip().splitlines()[-1])
    assert learned["utterances"] > 10 and learned["words_in_memory"] > 5, learned

    image = sorted((sample.corpus / "eval_frames").iterdir())[0]
    answer = json.loads(_ok(_run([fw, "ask", "--memory", memory, "--bundle", sample.bundle, "--image", image,
                                  "--json"], cwd)).strip().splitlines()[-1])
    assert answer["words"], answer
    word = answer["words"][0][0]
    moments = json.loads(_ok(_run([fw, "ask", "--memory", memory, "--word", word, "--json"], cwd))
                         .strip().splitlines()[-1])
    assert moments["exposures"] > 0 and moments["moments"], moments

    report = _ok(_run([fw, "doctor", "--config", "rpi4", "--bundle", sample.bundle, "--no-devices", "--runs",
                       "3"], cwd))
    config_line = next(line for line in report.splitlines() if line.split()[1:2] == ["config"])
    assert str(env_dir.resolve()) in config_line  # rpi4 came from the installed package, not the checkout
    assert " 0 FAIL" in report
