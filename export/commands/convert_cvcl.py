"""firstwords convert-cvcl — CVCL's released checkpoint (ResNeXt-50 + embedding) to a firstwords bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from firstwords.edge.quantization import QUANTIZATION_FORMATS, STATIC_FORMATS

HELP = "convert a checkpoint of CVCL's released model (Vong et al. 2024) into a bundle, fp32 and int8"
EXAMPLE = ("firstwords convert-cvcl cvcl.ckpt --vocab vocab.json -o work/cvcl_bundle --fp32-output "
           "work/cvcl_bundle_fp32 --calib-data saycam/train.json --eval-data saycam/eval_dev.json")

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="CVCL checkpoint (.ckpt Lightning file or a saved state_dict .pt)")
    parser.add_argument("-o", "--output", required=True, help="bundle to write (directory or .zip)")
    parser.add_argument("--vocab", help="CVCL's vocab.json (default: vocab.json beside the checkpoint)")
    parser.add_argument("--config", help="device config (sets quantization and threads)")
    parser.add_argument("--quantization", choices=QUANTIZATION_FORMATS,
                        help="format of the -o bundle (default: the device config's, else qdq_u8s8)")
    parser.add_argument("--fp32-output", help="also write an fp32 bundle here")
    parser.add_argument("--input-size", type=int, default=224, help="image input in px (CVCL: %(default)s)")
    parser.add_argument("--calib-data", help="frames for int8 calibration: CVCL metadata JSON or a folder of images")
    parser.add_argument("--eval-data", help="held-out evaluation set (our eval.json or CVCL's trial JSON) for the "
                                            "parity gate; without it the gate compares embeddings only")
    parser.add_argument("--calib-frames", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--eval-images", type=int, default=200, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, help="threads for torch and onnxruntime")
    parser.add_argument("--skip-parity", action="store_true", help="no parity gate (recorded in the manifest)")


def frame_paths(path: Path) -> list[Path]:
    from firstwords.edge.errors import DataError

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no image files (png, jpg) in this folder")
        return files
    if path.is_file():
        from firstwords.export.data import load_cvcl_metadata

        return sorted({p for r in load_cvcl_metadata(path).records for p in r.frame_paths})
    raise DataError(f"{path}: calibration data not found (give a CVCL metadata JSON or a folder of images)")


def run(args: argparse.Namespace) -> int:
    from firstwords.export import require_torch

    torch = require_torch()
    from firstwords.edge.bundle import sha256_file
    from firstwords.edge.errors import DataError, InputError
    from firstwords.export.convert_cvcl import (
        CVCL_MEAN,
        CVCL_STD,
        build_cvcl_model,
        load_cvcl_vocab,
        read_cvcl_checkpoint,
    )
    from firstwords.export.image_sets import eval_images, load_images, spread
    from firstwords.export.onnx_export import export_bundle

    quant, threads, device = "qdq_u8s8", args.threads, ""
    if args.config:
        from firstwords.edge.config import load_device_config, resolve_device_config

        dc = load_device_config(resolve_device_config(args.config))
        quant, threads, device = dc.model.quantization, args.threads or dc.model.threads, dc.name
    quant = args.quantization or quant
    size = args.input_size
    if size < 32 or size % 32:
        raise InputError(f"--input-size must be a multiple of 32, got {size}")
    if threads:
        torch.set_num_threads(threads)

    ckpt = Path(args.checkpoint)
    state = read_cvcl_checkpoint(ckpt)
    vocab = load_cvcl_vocab(Path(args.vocab) if args.vocab else ckpt.parent / "vocab.json")
    model = build_cvcl_model(state, vocab)

    calib = ev_imgs = ev_labels = ev_trials = None
    if args.calib_data:
        calib = load_images(spread(frame_paths(Path(args.calib_data)), args.calib_frames), size, CVCL_MEAN,
                            CVCL_STD)
    if quant in STATIC_FORMATS and calib is None:
        raise DataError(f"{quant} calibrates on real frames: pass --calib-data (CVCL's train.json or a folder of "
                        "frames), or --quantization dynamic / none")
    if not args.skip_parity:
        if args.eval_data:
            ev_imgs, ev_labels, ev_trials = eval_images(Path(args.eval_data), args.eval_images, size, CVCL_MEAN,
                                                        CVCL_STD)
        elif calib is not None:
            print("note: no --eval-data: the parity gate compares embeddings on the calibration frames only")
            ev_imgs = calib
        else:
            raise DataError("the parity gate needs frames: pass --eval-data or --calib-data (or --skip-parity)")

    common = {"input_size": size, "mean": CVCL_MEAN, "std": CVCL_STD, "model_config": "cvcl",
              "training_data": "CVCL (Vong et al. 2024), SAYCam-S", "eval_images": ev_imgs, "eval_labels": ev_labels,
              "eval_trials": ev_trials, "threads": threads, "skip_parity": args.skip_parity,
              "extra_manifest": {"device": device, "source": {"converted_from": "cvcl",
                                                              "checkpoint_sha256": sha256_file(ckpt)}}}
    results = []
    if args.fp32_output:
        results.append(export_bundle(model, vocab, args.fp32_output, quantization="none", **common))
    results.append(export_bundle(model, vocab, args.output, quantization=quant, calibration_images=calib, **common))

    for r in results:
        if r.parity is not None:
            print(r.parity.table())
        print(f"wrote {r.bundle} ({r.quantization}; towers {r.towers_bytes / 1e6:.2f} MB)")
    print(json.dumps({"bundles": [{"path": str(r.bundle), "quantization": r.quantization, "bytes": r.sizes,
                                   "parity": r.parity.to_dict() if r.parity is not None else None}
                                  for r in results]}))
    return 0
