"""firstwords run: the live device — camera + microphone -> words -> pairing -> memory, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

HELP = "run the live learner: camera + microphone -> voice activity -> words -> memory (Ctrl-C to stop)"
EXAMPLE = "firstwords run --config device_configs/rpi4.toml --bundle work/bundle --memory work/memory.db --camera 0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="device config: a name in device_configs/ or a .toml path")
    parser.add_argument("--bundle", required=True, help="model bundle directory or .zip (firstwords export)")
    parser.add_argument("--memory", default="memory.db", help="memory file (SQLite; created if missing, else "
                        "added to; default: memory.db)")
    parser.add_argument("--camera", help="camera: an OpenCV index (0), a device path (/dev/video0) or 'picamera2' "
                        "(default: the device config's)")
    parser.add_argument("--audio-device", help="microphone: a sounddevice index or name (default: the device "
                        "config's, else $FIRSTWORDS_AUDIO_DEVICE, else the system default)")
    parser.add_argument("--bias", choices=("lm", "grammar", "keywords", "none"), default="lm",
                        help="bias speech recognition to the bundle's words (default: lm)")
    parser.add_argument("--keep-media", action="store_true", help="keep a thumbnail with each remembered moment "
                        "(off by default: no images or audio are stored)")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line")


def status_printer(enabled: bool, overflows):
    tty = sys.stderr.isatty()

    def show(stats) -> None:
        if not enabled:
            return
        line = (f"utterances {stats.utterances}  words {stats.words_learned}  frames {stats.frames_encoded} "
                f"(dropped {stats.frames_dropped})  audio overflows {overflows()}  heard {stats.audio_seconds:.0f} s")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.commands.replay import one_blas_thread

    one_blas_thread()
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.capture import open_camera
    from firstwords.edge.commands.replay import summary_text
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.encode import Encoder
    from firstwords.edge.hear import MicrophoneSource
    from firstwords.edge.learner import Learner
    from firstwords.edge.memory import AssociativeMemory
    from firstwords.edge.replay import bundle_vocabulary, make_speech, options_from_config

    cfg = load_device_config(resolve_device_config(args.config))
    encoder = Encoder(load_bundle(args.bundle), threads=cfg.model.threads)
    vad, rec = make_speech(cfg.audio.vad, bundle_vocabulary(encoder), bias=args.bias)
    cam = cfg.camera
    # Camera frames are stamped with time.monotonic(), the microphone's clock (epoch 0).
    frames = open_camera(args.camera or cam.device, cam.width, cam.height, cam.fps, epoch=0.0)
    mic = MicrophoneSource(device=args.audio_device or cfg.audio.device or None,
                           device_rate=None if cfg.audio.sample_rate == 16000 else cfg.audio.sample_rate,
                           block_ms=cfg.audio.block_ms, queue_blocks=cfg.audio.queue_blocks)
    mic.start()  # fail now, with the list of devices, rather than inside a thread
    opts = options_from_config(cfg, realtime=True)
    opts.keep_media = args.keep_media
    opts.clock_origin = None
    Path(args.memory).parent.mkdir(parents=True, exist_ok=True)
    mem = AssociativeMemory(args.memory, encoder.dim, capacity_words=cfg.memory.capacity_words,
                            capacity_episodes=cfg.memory.capacity_episodes, keep_media=args.keep_media)
    # --- service: status record beside the memory + systemd notify / watchdog (edge.status, edge.notify)
    from firstwords.edge.status import ServiceMonitor

    monitor = ServiceMonitor(args.memory, memory_stats=mem.stats)
    show = status_printer(not args.quiet, lambda: mic.overflows)

    def on_status(stats) -> None:
        show(stats)
        monitor.tick(stats, overflows=mic.overflows)

    # ---
    learner = Learner(encoder, mem, frames, audio=mic, vad=vad, recognizer=rec,
                      audio_overflows=lambda: mic.overflows, options=opts, on_status=on_status,
                      on_learned=lambda paired, words: monitor.learned(words))
    if args.seconds:
        timer = threading.Timer(args.seconds, learner.stop)
        timer.daemon = True
        timer.start()
    print(f"listening and watching (camera {args.camera or cam.device}, {cam.width}x{cam.height} at {cam.fps:g} fps); "
          "Ctrl-C to stop", file=sys.stderr)
    failed = None
    try:
        rep = learner.run()
        monitor.stopping()
        mem_stats = mem.stats()
        failed = rep.stats["errors"][-1] if rep.stats.get("errors") else None
    except BaseException as e:
        failed = f"{type(e).__name__}: {e}"
        raise
    finally:
        monitor.stopped(failed)
        mem.close()
    print(file=sys.stderr)
    print(summary_text(rep, mem_stats, "microphone"))
    if failed:  # a worker failed: exit non-zero so that systemd (Restart=on-failure) starts a fresh run
        print(f"error: the learner stopped on a failure: {failed}", file=sys.stderr)
        return 1
    return 0
