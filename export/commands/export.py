"""firstwords export — a trained checkpoint to a device bundle (ONNX, int8 per device, parity-gated)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from firstwords.edge.quantization import QUANTIZATION_FORMATS, STATIC_FORMATS

HELP = "export a checkpoint to an int8 ONNX bundle for a device, with a parity gate"
EXAMPLE = ("firstwords export work/ckpt -o work/bundle --config rpi5 "
           "--eval-data work/corpus/eval.json")



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint",
                        help="checkpoint directory, or a training run directory (uses best/ or last/)")
    parser.add_argument("-o", "--output", required=True,
                        help="bundle directory to write (or a path ending in .zip)")
    parser.add_argument("--config", help="device config: a TOML path or a name (laptop, rpi4, rpi5, "
                                         "rpi-zero-2w); sets quantization, input size and threads")
    parser.add_argument("--quantization", choices=QUANTIZATION_FORMATS,
                        help="override the device config's quantization (none = fp32)")
    parser.add_argument("--input-size", type=int, help="override the image input size in px (default: the "
                                                       "device config's, else the model's)")
    parser.add_argument("--eval-data", default="work/corpus/eval.json",
                        help="held-out evaluation set for the parity gate (default: %(default)s)")
    parser.add_argument("--calib-data", help="training metadata JSON whose frames calibrate static int8 "
                                             "(default: train.json beside --eval-data)")
    parser.add_argument("--calib-frames", type=int, default=64,
                        help="calibration frames (default: %(default)s)")
    parser.add_argument("--eval-images", type=int, default=400,
                        help="at most this many evaluation images for the gate (default: %(default)s)")
    parser.add_argument("--n-way", type=int, default=4,
                        help="n-way trials for the gate (default: %(default)s)")
    parser.add_argument("--trials-per-category", type=int, default=50, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int,
                        help="onnxruntime threads for the gate (default: the device config's)")
    parser.add_argument("--skip-parity", action="store_true",
                        help="write the bundle without the parity gate (loudly recorded in the manifest)")
    parser.add_argument("--speech-lm", action="store_true",
                        help="also build the speech recogniser's language model (general English interpolated with "
                             "the training sentences; ~1 min, ~2 GB RAM once) into the bundle: open-vocabulary "
                             "hearing that favours the bundle's words. Without it the device hears with the general "
                             "model only")
    parser.add_argument("--train-data", help="training metadata JSON whose utterances the speech LM is built from "
                        "(default: train.json beside --eval-data)")


def device_settings(args) -> tuple[str, int | None, int | None, str]:
    """(quantization, input_size, threads, device name) from --config and the overriding flags."""
    from firstwords.edge.errors import ConfigError

    quant, size, threads, device = None, None, None, ""
    if args.config:
        from firstwords.edge.config import load_device_config, resolve_device_config

        dc = load_device_config(resolve_device_config(args.config))
        quant, size, threads, device = dc.model.quantization, dc.model.input_size, dc.model.threads, dc.name
    quant = args.quantization or quant
    if quant is None:
        raise ConfigError("say which quantization to use: --config <device> (laptop, rpi4, rpi5, "
                          "rpi-zero-2w, or a TOML file), or "
                          f"--quantization {{{','.join(QUANTIZATION_FORMATS)}}}")
    return quant, args.input_size or size, args.threads or threads, device


def speech_lm_caps(args) -> tuple[int | None, int | None]:
    """The device config's caps on the general model's n-grams and words in the speech LM ([audio]
    speech_lm_ngrams, speech_lm_words); none without --config."""
    if not args.config:
        return None, None
    from firstwords.edge.config import load_device_config, resolve_device_config

    audio = load_device_config(resolve_device_config(args.config)).audio
    return audio.speech_lm_ngrams, audio.speech_lm_words


def run(args: argparse.Namespace) -> int:
    from firstwords.export import require_torch

    torch = require_torch()
    from firstwords.edge.bundle import sha256_file
    from firstwords.edge.errors import DataError, InputError
    from firstwords.export.checkpoint import load_checkpoint
    from firstwords.export.image_sets import calibration_images, eval_images
    from firstwords.export.onnx_export import export_bundle

    quant, size, threads, device = device_settings(args)
    lm_ngrams, lm_words = speech_lm_caps(args)
    torch.set_num_threads(max(1, threads or torch.get_num_threads()))
    model, vocab, cfg, meta = load_checkpoint(args.checkpoint)
    size = size or cfg.image.input_size
    if size != cfg.image.input_size:
        print(f"note: exporting at {size} px; the model was trained at {cfg.image.input_size} px")
    if size % 32 or size < 32:
        raise InputError(f"--input-size / [model] input_size must be a multiple of 32, got {size}")
    mean, std = cfg.image.mean, cfg.image.std

    eval_path = Path(args.eval_data)
    ev_imgs = ev_labels = ev_trials = None
    if not args.skip_parity:
        if not eval_path.is_file():
            raise DataError(f"{eval_path}: evaluation set not found; the parity gate needs held-out "
                            "images: pass --eval-data (build the sample corpus with "
                            "tools/build_sample_corpus.py), or --skip-parity to export unchecked")
        ev_imgs, ev_labels, ev_trials = eval_images(eval_path, args.eval_images, size, mean, std)
    calib = None
    if quant in STATIC_FORMATS:
        calib_path = Path(args.calib_data) if args.calib_data else eval_path.parent / "train.json"
        if not calib_path.is_file():
            raise DataError(f"{calib_path}: calibration data not found; {quant} calibrates on training "
                            "frames: pass --calib-data work/corpus/train.json (CVCL metadata format)")
        calib = calibration_images(calib_path, args.calib_frames, size, mean, std)
        print(f"calibrating {quant} on {len(calib)} training frames from {calib_path}")

    ckpt_dir = Path(meta["path"])
    extra_manifest = {"device": device, "checkpoint_sha256": sha256_file(ckpt_dir / "model.pt")}
    lm_dir = tempfile.TemporaryDirectory(prefix="firstwords-speech-lm-") if args.speech_lm else None
    extra_files = None
    if lm_dir is not None:
        from firstwords.export.lm import DICT_FILE, LM_FILE, build_domain_lm

        train = Path(args.train_data) if args.train_data else eval_path.parent / "train.json"
        print(f"building the speech language model from {train} ...", flush=True)
        extra_manifest["speech"] = build_domain_lm(train, lm_dir.name, max_general_ngrams=lm_ngrams,
                                                   max_general_words=lm_words)
        extra_files = {name: Path(lm_dir.name) / name for name in (LM_FILE, DICT_FILE)}
    result = export_bundle(
        model, vocab, args.output, input_size=size, mean=mean, std=std, quantization=quant,
        model_config=cfg.name, training_data=str(meta.get("training_data") or meta.get("data") or ""),
        calibration_images=calib, eval_images=ev_imgs, eval_labels=ev_labels, eval_trials=ev_trials,
        threads=threads, skip_parity=args.skip_parity, n_way=args.n_way,
        trials_per_category=args.trials_per_category,
        extra_manifest=extra_manifest, extra_files=extra_files)
    if lm_dir is not None:
        lm_dir.cleanup()

    if result.parity is not None:
        print(result.parity.table())
    else:
        print("WARNING: the parity gate was SKIPPED (--skip-parity); "
              "the manifest records parity_skipped: true")
    for name, n in sorted(result.sizes.items()):
        print(f"  {name:<16} {n / 1e6:8.3f} MB")
    print(f"wrote {result.bundle} ({quant}; both towers {result.towers_bytes / 1e6:.2f} MB)")
    print(json.dumps({"bundle": str(result.bundle), "quantization": quant, "bytes": result.sizes,
                      "towers_mb": round(result.towers_bytes / 1e6, 3),
                      "parity": result.parity.to_dict() if result.parity is not None else None}))
    return 0
