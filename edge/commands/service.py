"""firstwords service: install / uninstall the systemd unit that runs the learner on boot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "install or remove the systemd service that runs the learner on boot (watched, restarted, flushed)"
EXAMPLE = (
    "firstwords service install --config rpi4 --bundle /home/pi/bundle --memory /home/pi/memory.db --user pi"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inst = sub.add_parser("install", help="write the unit, check it, enable and start it")
    inst.add_argument(
        "--config", required=True, help="device config: a name (rpi4, rpi5, ...) or a .toml path"
    )
    inst.add_argument("--bundle", required=True, help="model bundle directory or .zip on the device")
    inst.add_argument(
        "--memory", required=True, help="memory file (SQLite; its status record goes beside it)"
    )
    inst.add_argument("--user", help="run as this user (e.g. pi; default: root)")
    inst.add_argument(
        "--watchdog-sec",
        type=int,
        default=30,
        help="restart when the learner shows no progress for this long (default: 30)",
    )
    inst.add_argument(
        "--stop-timeout-sec", type=int, default=30, help="time allowed for the flush on stop (default: 30)"
    )
    inst.add_argument("--camera", help="camera override passed to run (an OpenCV index or 'picamera2')")
    inst.add_argument("--audio-device", help="microphone override passed to run")
    for p in (inst, sub.add_parser("uninstall", help="stop, disable and remove the unit")):
        p.add_argument("--name", default="firstwords", help="unit name (default: firstwords)")
        p.add_argument(
            "--unit-dir",
            default="/etc/systemd/system",
            help="where units live (default: /etc/systemd/system)",
        )
        p.add_argument(
            "--no-start", action="store_true", help="only write / remove the file; do not call systemctl"
        )


def _install(args: argparse.Namespace) -> int:
    from firstwords.edge.atomic import atomic_write_text
    from firstwords.edge.config import resolve_device_config
    from firstwords.edge.service import (
        ServiceSpec,
        render_unit,
        systemctl,
        systemd_running,
        unit_path,
        verify_unit,
    )

    config = resolve_device_config(args.config)  # fails now, naming the configs, if unknown
    config_arg = args.config if not Path(args.config).is_file() else str(Path(config).resolve())
    extra = [
        a
        for flag, v in (("--camera", args.camera), ("--audio-device", args.audio_device))
        if v
        for a in (flag, v)
    ]
    spec = ServiceSpec(
        config=config_arg,
        bundle=Path(args.bundle).resolve(),
        memory=Path(args.memory).resolve(),
        user=args.user,
        name=args.name,
        watchdog_sec=args.watchdog_sec,
        stop_timeout_sec=args.stop_timeout_sec,
        extra_args=tuple(extra),
    )
    text = render_unit(spec)
    if not spec.memory.parent.exists():
        spec.memory.parent.mkdir(parents=True)
        if args.user:  # the service user writes the memory and its status record there
            import shutil

            shutil.chown(spec.memory.parent, user=args.user)
    path = unit_path(args.name, Path(args.unit_dir))
    atomic_write_text(path, text)
    print(f"wrote {path}")
    verified = verify_unit(path)
    if verified is not None:
        ok, out = verified
        print(
            "systemd-analyze verify: " + ("ok" if ok else "FAILED") + (f"\n{out}" if out and not ok else "")
        )
        if not ok:
            path.unlink()
            print(f"error: {path} not installed: fix what systemd-analyze says above", file=sys.stderr)
            return 1
    if args.no_start or not systemd_running():
        print(f"to start it: sudo systemctl daemon-reload && sudo systemctl enable --now {args.name}")
        return 0
    # --no-block: Type=notify start waits for READY=1 (bundle loaded, camera and microphone delivering).
    for cmd in (("daemon-reload",), ("enable", "--now", "--no-block", args.name)):
        proc = systemctl(*cmd)
        if proc.returncode != 0:
            print(f"error: systemctl {' '.join(cmd)} failed: {proc.stderr.strip()}", file=sys.stderr)
            return 1
    print(
        f"enabled and starting; see 'systemctl status {args.name}', 'journalctl -u {args.name} -f' and "
        f"'firstwords status --memory {spec.memory}'"
    )
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from firstwords.edge.service import systemctl, systemd_running, unit_path

    path = unit_path(args.name, Path(args.unit_dir))
    if not path.exists():
        print(f"error: no unit at {path}: nothing to remove", file=sys.stderr)
        return 2
    if not args.no_start and systemd_running():
        systemctl("disable", "--now", args.name)  # the learner flushes on the SIGTERM this sends
    path.unlink()
    if not args.no_start and systemd_running():
        systemctl("daemon-reload")
    print(f"removed {path} (the memory and its status record are kept)")
    return 0


def run(args: argparse.Namespace) -> int:
    return _install(args) if args.action == "install" else _uninstall(args)
