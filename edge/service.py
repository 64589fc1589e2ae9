"""The learner as a systemd service: a unit file that starts `firstwords run` on boot and keeps it healthy.

Type=notify: systemd waits for READY=1 (camera, microphone and bundle up) and restarts the service when the
WATCHDOG=1 pings stop (edge.notify: they stop when frames or audio stop flowing or the learner stops making
progress). Restart=on-failure with a start limit, so a broken camera does not restart it forever; SIGTERM
(shutdown, low battery, `systemctl stop`) makes the learner flush what it heard into the memory and exit
within TimeoutStopSec. Nice and IOSchedulingClass keep the board responsive for its other work.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from firstwords.edge.errors import ConfigError

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_NAME = "firstwords"


@dataclass(frozen=True)
class ServiceSpec:
    config: str  # device config name or .toml path (resolved to an absolute path when it is a file)
    bundle: Path  # absolute
    memory: Path  # absolute
    user: str | None = None  # run as this user (default: the unit's default, root)
    name: str = DEFAULT_NAME
    watchdog_sec: int = 30  # s without a WATCHDOG=1 ping before systemd restarts the learner
    start_timeout_sec: int = 180  # s for the bundle to load and camera + microphone to deliver (READY=1)
    stop_timeout_sec: int = 30  # s for the flush after SIGTERM before systemd kills it
    restart_sec: int = 10
    start_limit_burst: int = 5  # restarts within start_limit_interval_sec before systemd gives up
    start_limit_interval_sec: int = 600
    nice: int = 5
    extra_args: tuple[str, ...] = ()


def firstwords_command() -> list[str]:
    """How to start this installation's `firstwords` (the venv's script beside this Python, else -m)."""
    script = Path(sys.executable).parent / "firstwords"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "firstwords.edge.cli"]


def _quote(arg: str) -> str:
    """A systemd ExecStart word: quoted when needed; '%' and '$' escaped so systemd does not expand them."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    return (
        arg
        if arg and all(c.isalnum() or c in "/._-=:+," for c in arg)
        else '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )


def check_spec(spec: ServiceSpec) -> None:
    """Refuse a unit that could not start: missing bundle, relative paths, unknown user."""
    for what, p in (("bundle", spec.bundle), ("memory", spec.memory)):
        if not p.is_absolute():
            raise ConfigError(f"the {what} path {p} must be absolute in a service (it starts from /)")
    if not spec.bundle.exists():
        raise ConfigError(
            f"no bundle at {spec.bundle}: copy one made by 'firstwords export' to the device first"
        )
    if spec.user is not None:
        try:
            pwd.getpwnam(spec.user)
        except KeyError:
            raise ConfigError(
                f"no user {spec.user!r} on this system: create it or leave out --user"
            ) from None
    if not spec.name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"service name {spec.name!r}: use letters, digits, '-' and '_'")
    if spec.stop_timeout_sec < 5 or spec.watchdog_sec < 5:
        raise ConfigError("stop timeout and watchdog must be at least 5 s (the learner ticks once a second)")


def render_unit(spec: ServiceSpec, command: list[str] | None = None) -> str:
    check_spec(spec)
    cmd = (command or firstwords_command()) + [
        "run",
        "--config",
        spec.config,
        "--bundle",
        str(spec.bundle),
        "--memory",
        str(spec.memory),
        "--quiet",
        *spec.extra_args,
    ]
    user = f"User={spec.user}\n" + "SupplementaryGroups=video audio\n" if spec.user else ""
    return f"""# Written by `firstwords service install`; remove with `firstwords service uninstall`.
[Unit]
Description=firstwords on-device word learner ({spec.config})
Wants=sound.target
After=sound.target local-fs.target
StartLimitIntervalSec={spec.start_limit_interval_sec}
StartLimitBurst={spec.start_limit_burst}

[Service]
Type=notify
NotifyAccess=main
ExecStart={" ".join(_quote(a) for a in cmd)}
WorkingDirectory={spec.memory.parent}
{user}Environment=PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
# Restarted when it fails or hangs (no WATCHDOG=1 for WatchdogSec), not after a clean stop.
Restart=on-failure
RestartSec={spec.restart_sec}
WatchdogSec={spec.watchdog_sec}
TimeoutStartSec={spec.start_timeout_sec}
# SIGTERM: the learner flushes what it heard into the memory and exits; killed after TimeoutStopSec.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={spec.stop_timeout_sec}
# `firstwords run` exits 130 after a SIGTERM (interrupted, memory flushed): a clean stop, not a failure.
SuccessExitStatus=130
# The board stays responsive: lower CPU priority and best-effort, low-priority disk access.
Nice={spec.nice}
IOSchedulingClass=best-effort
IOSchedulingPriority=6
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
"""


def unit_path(name: str = DEFAULT_NAME, unit_dir: Path = UNIT_DIR) -> Path:
    return Path(unit_dir) / f"{name}.service"


def systemd_running() -> bool:
    """True on a system booted with systemd (where systemctl can start the unit)."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def verify_unit(path: Path) -> tuple[bool, str] | None:
    """`systemd-analyze verify` on the unit: (ok, output); None when the tool is not installed."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    proc = subprocess.run(
        [tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    text = (proc.stdout + proc.stderr).strip()
    # Only lines about our unit count: others are about units already on this system.
    ours = [ln for ln in text.splitlines() if path.name in ln or str(path) in ln]
    return proc.returncode == 0 and not ours, "\n".join(ours) or text


def systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120, check=False)
