"""firstwords run: the live device — camera + microphone -> words -> pairing -> memory, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import threading

HELP = "run the live learner: camera + microphone -> voice activity -> words -> memory (Ctrl-C to stop)"
EXAMPLE = "firstwords run --config rpi4 --bundle work/bundle --memory work/memory.db --camera 0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="device config: a name in device_configs/ or a .toml "
                                                        "path")
    parser.add_argument("--bundle", required=True, help="model bundle directory or .zip (firstwords export)")
    parser.add_argument("--memory", default="memory.db", help="memory file (SQLite; created if missing, else "
                        "added to; default: memory.db)")
    parser.add_argument("--camera", help="camera: an OpenCV index (0), a device path (/dev/video0) or "
                                         "'picamera2' "
                        "(default: the device config's)")
    parser.add_argument("--audio-device", help="microphone: a sounddevice index or name (default: the device "
                        "config's, else $FIRSTWORDS_AUDIO_DEVICE, else the system default)")
    parser.add_argument("--bias", choices=("open", "lm", "grammar", "keywords", "none"), default="open",
                        help="speech recognition: 'open' (default) hears any English word with the bundle's "
                             "words favoured; 'lm', 'grammar', 'keywords' are closed over the bundle's words "
                             "(for comparison: they force its words onto any speech); 'none': no favouring")
    parser.add_argument("--keep-media", action="store_true", help="keep a thumbnail with each remembered "
                                                                  "moment "
                        "(off by default: no images or audio are stored)")
    parser.add_argument("--asr-workers", type=int, help="speech recognisers in worker processes (default: "
                        "the device config's [audio] asr_workers; 1 = in the learner's thread)")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line")


def status_printer(enabled: bool, overflows):
    tty = sys.stderr.isatty()

    def show(stats) -> None:
        if not enabled:
            return
        line = (f"utterances {stats.utterances}  words {stats.words_learned}  frames {stats.frames_encoded} "
                f"(dropped {stats.frames_dropped})  audio overflows {overflows()}  heard "
                f"{stats.audio_seconds:.0f} s  speech waiting {stats.speech_backlog_s:.0f} s")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from firstwords.edge.capture import open_camera
    from firstwords.edge.hear import SAMPLE_RATE
    from firstwords.edge.learner import Learner
    from firstwords.edge.microphone import MicrophoneSource
    from firstwords.edge.outcome import exit_code, summary_text
    from firstwords.edge.runtime import adaptation_notice, build_runtime, load_config

    cfg = load_config(args.config)
    cam = cfg.camera
    print(adaptation_notice(args.memory), file=sys.stderr)
    mic = MicrophoneSource(device=args.audio_device or cfg.audio.device or None,
                           device_rate=(None if cfg.audio.sample_rate == SAMPLE_RATE
                                        else cfg.audio.sample_rate),
                           block_ms=cfg.audio.block_ms, queue_blocks=cfg.audio.queue_blocks)
    mic.start()  # fail now, with the list of devices, before a thread runs or a memory file is made
    try:
        rt = build_runtime(cfg, args.bundle, args.memory, realtime=True, speech=True, bias=args.bias,
                           keep_media=args.keep_media, asr_workers=args.asr_workers, clock_origin=None)
    except BaseException:
        mic.close()
        raise
    with rt:
        # Service: the status record beside the memory, and systemd's notify protocol (READY / WATCHDOG /
        # STATUS / STOPPING) when run under systemd (edge.status, edge.notify).
        from firstwords.edge.status import ServiceMonitor

        monitor = ServiceMonitor(args.memory, memory_stats=rt.memory.stats)
        # Camera frames are stamped with time.monotonic(), the microphone's clock (epoch 0).
        frames = open_camera(args.camera or cam.device, cam.width, cam.height, cam.fps, epoch=0.0)
        learner = Learner(rt.encoder, rt.memory, frames, audio=mic, vad=rt.vad, recognizer=rt.recognizer,
                          audio_overflows=lambda: mic.overflows, options=rt.options,
                          on_status=status_printer(not args.quiet, lambda: mic.overflows),
                          on_learned=lambda paired, words: monitor.learned(words), on_tick=monitor.tick)
        if args.seconds:
            timer = threading.Timer(args.seconds, learner.stop)
            timer.daemon = True
            timer.start()
        print(f"listening and watching (camera {args.camera or cam.device}, {cam.width}x{cam.height} at "
              f"{cam.fps:g} fps); Ctrl-C to stop", file=sys.stderr)
        failed = None
        try:
            rep = learner.run()
            monitor.stopping()
            failed = "; ".join(rep.errors) or None
            mem_stats = rt.memory.stats()
        except BaseException as e:
            failed = f"{type(e).__name__}: {e}"
            raise
        finally:
            monitor.stopped(failed)
    print(file=sys.stderr)
    print(summary_text(rep, mem_stats, "microphone"))
    return exit_code(rep, "run")
