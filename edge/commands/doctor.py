"""firstwords doctor — check this machine against a device config and say what to fix.

Each check prints one line, OK / WARN / FAIL, with what to do; the exit code is 1 when anything FAILs.
FAIL: the config is invalid, onnxruntime is missing or has no CPU provider, the bundle is invalid, less RAM
is available than the config's budget, the disk is nearly full, or frames cannot be encoded at the config's
frame rate. WARN: a camera / microphone / speech extra or device is missing (replay still works), a stage is
over its budget, more threads than cores, a bundle made for another input size or quantization.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELP = "check this machine against a device config (runtime, camera, microphone, bundle, RAM, disk, latency)"
EXAMPLE = "firstwords doctor --config device_configs/rpi4.toml --bundle work/bundle"

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_FREE_DISK_MB = 200.0  # below this the memory database cannot grow safely: FAIL
LOW_FREE_DISK_MB = 1024.0  # below this: WARN


@dataclass
class Check:
    status: str
    name: str
    message: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="device config: a TOML path or a name (laptop, rpi4, "
                                                        "rpi5, rpi-zero-2w)")
    parser.add_argument("--bundle", help="model bundle directory or .zip (default: work/bundle if present)")
    parser.add_argument("--data-dir", default=".",
                        help="where the memory database will live, for the free-disk check "
                             "(default: the current folder)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs in the quick latency sample "
                                                             "(default: %(default)s)")
    parser.add_argument("--no-latency", action="store_true", help="skip the quick latency sample")
    parser.add_argument("--no-devices", action="store_true",
                        help="do not open the camera or list microphones")
    parser.add_argument("--memory", help="the learner's memory file: include its status record "
                                         "(firstwords status)")


# ------------------------------------------------------------------------------------------------ checks

def check_runtime() -> list[Check]:
    out = [Check(OK, "python", f"Python {platform.python_version()} on {platform.machine()} "
                               f"({platform.system()}), {os.cpu_count() or 1} cores")]
    try:
        import numpy as np
        out.append(Check(OK, "numpy", f"numpy {np.__version__}"))
    except ImportError:
        out.append(Check(FAIL, "numpy", "numpy is missing: pip install firstwords"))
    try:
        from firstwords.edge.ort import onnxruntime

        ort = onnxruntime()  # as the runtime imports it: telemetry off
    except ImportError:
        out.append(Check(FAIL, "onnxruntime", "onnxruntime is missing: pip install firstwords (it needs "
                                              "onnxruntime>=1.17; on a 32-bit Pi OS use the 64-bit OS)"))
        return out
    providers = ort.get_available_providers()
    version = ort.__version__
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if "CPUExecutionProvider" not in providers:
        out.append(Check(FAIL, "onnxruntime", f"onnxruntime {version} has no CPUExecutionProvider "
                                              f"({providers}); reinstall: pip install --force-reinstall "
                                              f"onnxruntime"))
    elif major_minor < (1, 17):
        out.append(Check(WARN, "onnxruntime", f"onnxruntime {version} is older than 1.17 (QDQ int8 fusions); "
                                              "pip install -U onnxruntime"))
    else:
        out.append(Check(OK, "onnxruntime", f"onnxruntime {version}, providers: {', '.join(providers)}"))
    return out


def check_telemetry(state: dict[str, Any] | None = None) -> Check:
    """onnxruntime's telemetry (edge/ort.py): off in this process, and no event queue left on disk."""
    from firstwords.edge.ort import TELEMETRY_ENV, telemetry_state

    st = telemetry_state() if state is None else state
    if st["env"] != "1" or st["imported_before"]:
        early = ", onnxruntime imported before firstwords" if st["imported_before"] else ""
        return Check(FAIL, "telemetry", f"onnxruntime's telemetry may be on "
                                        f"({TELEMETRY_ENV}={st['env'] or 'unset'}{early}"
                                        f"); start firstwords with {TELEMETRY_ENV}=1 in the environment")
    if st["queue"]:
        return Check(WARN, "telemetry", f"off in firstwords, but an onnxruntime telemetry queue from an "
                                        f"earlier program is at {st['queue']}; delete it: rm -r "
                                        f"'{st['queue']}'")
    api = ("and disable_telemetry_events() called" if st["api_called"]
           else "(this onnxruntime has no telemetry API)")
    return Check(OK, "telemetry", f"onnxruntime telemetry off ({TELEMETRY_ENV}=1 before its import {api}); "
                                  "no telemetry queue on disk")


def check_blas() -> Check:
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    if blas == "1":
        return Check(OK, "blas", "numpy's BLAS runs one thread (OPENBLAS_NUM_THREADS=1)")
    return Check(WARN, "blas", f"OPENBLAS_NUM_THREADS={blas or 'unset'}: numpy's BLAS threads fight "
                               "onnxruntime's for the cores and slow memory queries tens of times; export "
                               "OPENBLAS_NUM_THREADS=1")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


def check_cpu(cfg: Any) -> list[Check]:
    cores = os.cpu_count() or 1
    out = []
    if cfg.model.threads > cores:
        out.append(Check(WARN, "threads", f"the config asks for {cfg.model.threads} onnxruntime threads but "
                                          f"this machine has {cores} cores; set [model] threads = "
                                          f"{max(1, cores - 1)}"))
    else:
        out.append(Check(OK, "threads", f"{cfg.model.threads} onnxruntime threads on {cores} cores"))
    flags = cpu_flags()
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") and flags:
        dot = "asimddp" in flags
        if cfg.model.quantization == "qdq_s8s8" and not dot:
            out.append(Check(WARN, "int8", "this CPU has no int8 dot-product instructions (asimddp), where "
                                           "qdq_u8s8 is usually faster than the config's qdq_s8s8; compare "
                                           "both with tools/profile_latency.py"))
        else:
            out.append(Check(OK, "int8", f"int8 dot product: {'yes' if dot else 'no'}; "
                                         f"quantization {cfg.model.quantization}"))
    elif flags:
        vnni = "avx512_vnni" in flags or "avx_vnni" in flags
        out.append(Check(OK, "int8", f"x86 {'with' if vnni else 'without'} VNNI; quantization "
                                     f"{cfg.model.quantization}"))
    return out


def meminfo_mb() -> dict[str, float]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            key, val = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable", "SwapTotal"):
                out[key] = int(val.split()[0]) / 1024.0
    except (OSError, ValueError):
        pass
    return out


def check_ram(cfg: Any, info: dict[str, float] | None = None) -> Check:
    info = meminfo_mb() if info is None else info
    budget = cfg.budget.ram_mb
    if "MemAvailable" not in info:
        return Check(WARN, "ram", f"cannot read /proc/meminfo; make sure {budget:g} MB are free for the "
                                  f"runtime")
    avail, total = info["MemAvailable"], info.get("MemTotal", 0.0)
    msg = f"{avail:.0f} MB available of {total:.0f} MB; the runtime's budget is {budget:g} MB"
    if avail < budget:
        return Check(FAIL, "ram", msg + ": stop other programs, lower [memory] capacity_words, or use a "
                                        "smaller bundle / input size (tools/profile_memory.py shows what "
                                        "takes RAM)")
    if avail < 1.5 * budget:
        return Check(WARN, "ram", msg + ": little headroom; add swap (zram) or free memory")
    return Check(OK, "ram", msg)


def check_disk(path: str | Path) -> Check:
    p = Path(path)
    try:
        usage = shutil.disk_usage(p if p.exists() else Path.cwd())
    except OSError as e:
        return Check(WARN, "disk", f"cannot check free space at {p}: {e}")
    free = usage.free / 2**20
    msg = f"{free:.0f} MB free at {p.resolve()}"
    if free < MIN_FREE_DISK_MB:
        return Check(FAIL, "disk", msg + f": the memory database needs room to grow (at least "
                                         f"{MIN_FREE_DISK_MB:g} MB); free space or use --data-dir elsewhere")
    if free < LOW_FREE_DISK_MB:
        return Check(WARN, "disk", msg + ": low; keep an eye on it (firstwords forget frees space)")
    return Check(OK, "disk", msg)


def check_camera(cfg: Any) -> Check:
    from firstwords.edge.errors import MissingExtraError

    dev = cfg.camera.device
    if dev == "picamera2":
        from firstwords.edge.capture import picamera2_available

        if not picamera2_available():
            return Check(WARN, "camera", "the config uses picamera2 but it is not installed: sudo apt-get "
                                         "install python3-picamera2 (and create the venv with "
                                         "--system-site-packages); replay still works")
        return Check(OK, "camera", "picamera2 is installed (camera opened only by `firstwords run`)")
    videos = sorted(str(p) for p in Path("/dev").glob("video*")) if Path("/dev").is_dir() else []
    try:
        from firstwords.edge.capture import import_cv2, parse_camera_device

        cv2 = import_cv2()
    except MissingExtraError as e:
        return Check(WARN, "camera", f"{e}; replay of frame folders still works")
    listed = f" (video devices: {', '.join(videos)})" if videos else " (no /dev/video* devices)"
    device = parse_camera_device(dev)
    if isinstance(device, int) and not videos and sys.platform.startswith("linux"):
        return Check(WARN, "camera", f"no camera: no /dev/video* devices for camera {dev!r}; plug in a USB "
                                     "webcam (live runs need one, replay does not)")
    cap = cv2.VideoCapture(device)
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    if not ok:
        return Check(WARN, "camera", f"camera {dev!r} cannot be opened{listed}: plug in a USB webcam or set "
                                     "[camera] device in the config; live runs need one, replay does not")
    return Check(OK, "camera", f"camera {dev!r} delivers frames{listed}")


def check_microphone(cfg: Any) -> Check:
    from firstwords.edge.errors import MissingExtraError

    try:
        from firstwords.edge.hear import _import_sounddevice, list_input_devices, resolve_device

        devices = list_input_devices()
    except MissingExtraError as e:
        return Check(WARN, "microphone", f"{e}; replay of wav files still works")
    except Exception as e:  # noqa: BLE001  (PortAudio raises its own error types when there is no sound system)
        return Check(WARN, "microphone", f"cannot list audio devices ({e}); replay of wav files still works")
    if not devices:
        return Check(WARN, "microphone", "no audio input device found: plug in a USB microphone; live runs "
                                         "need one, replay does not")
    names = "; ".join(f"[{d['index']}] {d['name']} ({d['default_samplerate']:g} Hz)" for d in devices[:6])
    want = resolve_device(cfg.audio.device)
    sd = _import_sounddevice()
    try:
        sd.check_input_settings(device=want, samplerate=cfg.audio.sample_rate, channels=1, dtype="float32")
    except Exception as e:  # noqa: BLE001  (sounddevice.PortAudioError or ValueError for an unknown device)
        return Check(WARN, "microphone", f"device {want or 'default'!r} does not take "
                                         f"{cfg.audio.sample_rate} Hz mono ({e}); set [audio] sample_rate to "
                                         f"the device's rate (it is resampled to 16 kHz) or pick another "
                                         f"device. Inputs: {names}")
    return Check(OK, "microphone", f"device {want or 'default'!r} takes {cfg.audio.sample_rate} Hz mono. "
                                   f"Inputs: {names}")


def check_speech(cfg: Any, memory: str | None = None) -> list[Check]:
    import importlib.util

    out = []
    if cfg.audio.recognizer == "pocketsphinx":
        if importlib.util.find_spec("pocketsphinx") is None:
            out.append(Check(WARN, "asr", "pocketsphinx is not installed: pip install 'firstwords[speech]'; "
                                          "replay with transcripts still works"))
        else:
            out.append(Check(OK, "asr", "pocketsphinx is installed"))
            out.append(check_adaptation(memory))
    if cfg.audio.vad == "silero":
        from firstwords.edge.errors import MissingExtraError
        from firstwords.edge.vad import silero_model_path

        try:
            out.append(Check(OK, "vad", f"Silero VAD model at {silero_model_path()}"))
        except MissingExtraError as e:
            out.append(Check(WARN, "vad", str(e)))
    else:
        out.append(Check(OK, "vad", f"{cfg.audio.vad} VAD (no model needed)"))
    return out


def check_bundle(cfg: Any, path: str | None) -> tuple[list[Check], Any]:
    from firstwords.edge.errors import BundleError

    if path is None:
        if (Path("work/bundle") / "manifest.json").is_file():
            path = "work/bundle"
        else:
            return [Check(WARN, "bundle",
                          "no bundle given: pass --bundle DIR to check it and sample its latency")], None
    from firstwords.edge.bundle import load_bundle

    try:
        b = load_bundle(path)
    except BundleError as e:
        return [Check(FAIL, "bundle", str(e))], None
    out = [Check(OK, "bundle", f"{path}: valid ({b.model_config or 'model'}, {b.image.input_size} px, "
                               f"{b.quantization}, dim {b.embedding_dim}, {len(b.vocab)} tokens)")]
    if b.image.input_size != cfg.model.input_size or b.quantization != cfg.model.quantization:
        out.append(Check(WARN, "bundle", f"the bundle is {b.image.input_size} px {b.quantization} but the "
                                         f"config wants {cfg.model.input_size} px {cfg.model.quantization}: "
                                         f"re-export with `firstwords export CHECKPOINT -o BUNDLE --config "
                                         f"{cfg.path}`"))
    return out, b


def check_latency(cfg: Any, bundle: Any, runs: int) -> list[Check]:
    from firstwords.edge.profiling import profile_latency

    report = profile_latency(cfg, bundle, runs=max(runs, 3),
                             memory_words=min(cfg.memory.capacity_words, 2000),
                             stages=("frame_preprocess", "image_encode", "memory_query"))
    out = []
    for s in report.stages:
        msg = f"{s.stage} median {s.median:.2f} {s.unit} (p95 {s.p95:.2f}), budget {s.budget:g}"
        out.append(Check(WARN if s.status == "OVER" else OK, f"latency {s.stage}",
                         msg + (": over budget; run tools/profile_latency.py for the whole picture"
                                if s.status == "OVER" else "")))
    per_frame = sum(s.median or 0.0 for s in report.stages if s.stage in ("frame_preprocess", "image_encode"))
    period_ms = 1000.0 / cfg.pairing.fps
    if per_frame > period_ms:
        out.append(Check(FAIL, "frame rate", f"a frame costs {per_frame:.0f} ms but the config pairs at "
                                             f"{cfg.pairing.fps:g} fps ({period_ms:.0f} ms per frame): most "
                                             f"frames will be dropped; lower [pairing] fps, [model] "
                                             f"input_size or use a faster quantization"))
    else:
        out.append(Check(OK, "frame rate", f"a frame costs {per_frame:.1f} ms of the {period_ms:.0f} ms a "
                                           f"{cfg.pairing.fps:g} fps pairing allows "
                                           f"({per_frame / period_ms:.0%})"))
    return out


def check_adaptation(memory: str | None) -> Check:
    """The home's speaker adaptation beside the memory (edge.asr_adapt): usable, or what to do."""
    from firstwords.edge.asr_adapt import adaptation_path, decoder_setting, find_tools
    from firstwords.edge.errors import FirstwordsError

    try:
        find_tools()
        tools = "`firstwords enrol`, then `adapt --enrolment`, can fit recognition to the home's voices"
    except FirstwordsError as e:
        tools = f"`firstwords adapt` is unavailable ({e})"
    path = adaptation_path(memory) if memory else None
    if path is None or not path.exists():
        where = f" beside {memory}" if memory else ""
        return Check(OK, "adaptation", f"no speaker adaptation{where}: {tools}")
    try:
        from pocketsphinx import Config

        kind, _ = decoder_setting(path, Config()["hmm"])
    except FirstwordsError as e:
        return Check(FAIL, "adaptation", f"{e}; or delete it to hear unadapted")
    what = "adapted means (MAP)" if kind == "mean" else "an MLLR transform"
    return Check(OK, "adaptation", f"hearing through the home's speaker adaptation {path} ({what})")


def diagnose(args: argparse.Namespace) -> list[Check]:
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.errors import ConfigError

    checks: list[Check] = []
    try:
        cfg = load_device_config(resolve_device_config(args.config))
    except ConfigError as e:
        return [Check(FAIL, "config", str(e))]
    checks.append(Check(OK, "config", f"{cfg.path}: {cfg.description}"))
    runtime = check_runtime()
    checks += runtime
    runtime_ok = all(c.status != FAIL for c in runtime)
    checks += check_cpu(cfg)
    checks.append(check_telemetry())
    checks.append(check_blas())
    checks.append(check_ram(cfg))
    checks.append(check_disk(args.data_dir))
    if not args.no_devices:
        checks.append(check_camera(cfg))
        checks.append(check_microphone(cfg))
    checks += check_speech(cfg, getattr(args, "memory", None))
    if runtime_ok:
        bundle_checks, bundle = check_bundle(cfg, args.bundle)
        checks += bundle_checks
        if bundle is not None and not args.no_latency:
            checks += check_latency(cfg, bundle, args.runs)
    if getattr(args, "memory", None):
        from firstwords.edge.status import doctor_line

        level, message = doctor_line(args.memory)
        checks.append(Check(level, "learner", message))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:<4}  {c.name:<{width}}  {c.message}")
    fails = [c for c in checks if c.status == FAIL]
    warns = [c for c in checks if c.status == WARN]
    print(f"\n{len(checks)} checks: {len(checks) - len(fails) - len(warns)} OK, {len(warns)} WARN, "
          f"{len(fails)} FAIL" + (" - fix the FAIL lines above" if fails else ""))
    sys.stdout.flush()
    return 1 if fails else 0
