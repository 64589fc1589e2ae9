#!/usr/bin/env python3
"""Side-by-side image-tower speed: our compact tower (fp32 and int8) against CVCL's architecture and a CLIP
ViT-B/32-sized tower, all exported the same way (TorchScript exporter, opset 17) and run with onnxruntime.

    python tools/bench_export.py [--runs 20] [--quantization qdq_u8s8] [--calib-data work/corpus/train.json]

Batch 1, 1 and 2 threads; median and p95 latency per tower, file sizes, speed-up ratios. Random weights for
CVCL and CLIP (only the architecture matters for speed); ImageNet EfficientNet-Lite0 weights for ours when
installed. Human-readable table first; the LAST line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def clip_vit_b32(dim: int = 512):
    """A CLIP ViT-B/32-sized image tower in plain torch: 32 px patches, width 768, 12 layers, 12 heads."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, w: int, heads: int):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(w), nn.LayerNorm(w)
            self.qkv, self.out = nn.Linear(w, 3 * w), nn.Linear(w, w)
            self.fc1, self.fc2 = nn.Linear(w, 4 * w), nn.Linear(4 * w, w)

        def forward(self, x):
            n, t, w = x.shape
            qkv = self.qkv(self.ln1(x)).reshape(n, t, 3, self.heads, w // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            a = ((q @ k.transpose(-1, -2)) / (w // self.heads) ** 0.5).softmax(-1) @ v
            x = x + self.out(a.transpose(1, 2).reshape(n, t, w))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class ViT(nn.Module):
        def __init__(self, size=224, patch=32, w=768, layers=12, heads=12):
            super().__init__()
            self.patch = nn.Conv2d(3, w, patch, patch, bias=False)
            self.cls = nn.Parameter(torch.randn(1, 1, w) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, w) * 0.01)
            self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
            self.blocks = nn.Sequential(*[Block(w, heads) for _ in range(layers)])
            self.proj = nn.Linear(w, dim, bias=False)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
            x = self.blocks(self.ln_pre(x))
            return F.normalize(self.proj(self.ln_post(x[:, 0])), dim=-1)

    return ViT().eval()


def image_tower(config: str, pretrained: bool):
    """The image tower of a model config (`cvcl`: ResNeXt-50 + Linear(2048 -> 512), random weights)."""
    from firstwords.export.config import load_model_config
    from firstwords.export.model import ImageTower, build_model

    cfg = load_model_config(config)
    try:
        model = build_model(cfg, 100, load_pretrained=pretrained)
    except Exception:  # noqa: BLE001 — weights package missing: the speed is the same with random weights
        model = build_model(cfg, 100, load_pretrained=False)
    return ImageTower(model.eval()).eval(), cfg


def export_image(module, size: int, path: Path) -> Path:
    import torch
    from firstwords.export.onnx_export import _export_one

    with torch.no_grad():
        _export_one(module, torch.randn(1, 3, size, size), path, "image", {0: "batch"}, 17, "torchscript")
    return path


def latency(path: Path, size: int, threads: int, runs: int, warmup: int = 3) -> dict:
    from firstwords.edge.encode import make_session

    s = make_session(path, threads)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for _ in range(warmup):
        s.run(None, {"image": x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {"image": x})
        ts.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(float(np.median(ts)), 3), "p95_ms": round(float(np.percentile(ts, 95)), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per tower and thread count")
    ap.add_argument("--quantization", default="qdq_u8s8", choices=["qdq_u8s8", "qdq_s8s8", "dynamic"],
                    help="int8 format of our compact tower (default %(default)s)")
    from firstwords.export.quantize import DEFAULT_FP32_FIRST_CONVS

    ap.add_argument("--fp32-first-convs", type=int, default=DEFAULT_FP32_FIRST_CONVS,
                    help="keep the input end of the int8 tower up to this conv in fp32 (default %(default)s: "
                         "the export recipe; the gate may choose more)")
    ap.add_argument("--calib-data",
                    help="CVCL metadata JSON whose frames calibrate int8 (default: random frames)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default %(default)s)")
    ap.add_argument("--no-imagenet", action="store_true", help="random weights for our tower too")
    args = ap.parse_args(argv)

    import torch
    from firstwords.export.quantize import quantize_image_tower

    torch.set_num_threads(2)
    threads = [int(t) for t in args.threads.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="firstwords-bench-"))
    compact, cfg = image_tower("compact", pretrained=not args.no_imagenet)
    cs = cfg.image.input_size
    print(f"exporting towers to {tmp} ...", flush=True)
    towers = {"compact_fp32": (export_image(compact, cs, tmp / "compact_fp32.onnx"), cs)}
    if args.calib_data:
        from firstwords.export.image_sets import calibration_images

        calib = calibration_images(Path(args.calib_data), 64, cs, cfg.image.mean, cfg.image.std)
    else:
        calib = np.random.default_rng(0).uniform(-1, 1, (32, 3, cs, cs)).astype(np.float32)
    towers["compact_int8"] = (quantize_image_tower(towers["compact_fp32"][0], tmp / "compact_int8.onnx",
                                                   args.quantization, calib,
                                                   fp32_first_convs=args.fp32_first_convs), cs)
    if args.fp32_first_convs:
        all_int8 = quantize_image_tower(towers["compact_fp32"][0], tmp / "compact_int8_all.onnx",
                                        args.quantization, calib)
        towers["compact_int8_all"] = (all_int8, cs)
    towers["cvcl_fp32"] = (export_image(image_tower("cvcl", False)[0], 224, tmp / "cvcl_fp32.onnx"), 224)
    towers["clip_vitb32_fp32"] = (export_image(clip_vit_b32(), 224, tmp / "clip_vitb32_fp32.onnx"), 224)

    results: dict[str, dict] = {}
    for name, (path, size) in towers.items():
        results[name] = {"input_px": size, "mb": round(path.stat().st_size / 1e6, 2)}
        for t in threads:
            lat = results[name][f"t{t}"] = latency(path, size, t, args.runs)
            print(f"  {name:<18} {size:>4} px  {t} thread(s): median {lat['median_ms']:8.2f} ms"
                  f"  p95 {lat['p95_ms']:8.2f} ms", flush=True)

    print(f"\n{'tower':<18} {'px':>4} {'MB':>7} "
          + " ".join(f"{'t' + str(t) + ' med':>9} {'p95':>8}" for t in threads))
    for name, r in results.items():
        print(f"{name:<18} {r['input_px']:>4} {r['mb']:>7.2f} "
              + " ".join(f"{r[f't{t}']['median_ms']:>9.2f} {r[f't{t}']['p95_ms']:>8.2f}" for t in threads))
    ratios = {}
    for t in threads:
        base = results["compact_int8"][f"t{t}"]["median_ms"]
        for other in ("compact_fp32", "cvcl_fp32", "clip_vitb32_fp32"):
            if other not in results:
                continue
            ratios[f"{other}_over_compact_int8_t{t}"] = round(results[other][f"t{t}"]["median_ms"] / base, 1)
    print("\nspeed-up of compact int8 (median latency ratio, batch 1):")
    for k, v in ratios.items():
        print(f"  {k:<40} {v:6.1f}x")
    print(json.dumps({"quantization": args.quantization, "fp32_first_convs": args.fp32_first_convs,
                      "towers": results, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
