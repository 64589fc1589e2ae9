#!/usr/bin/env python3
"""int8 recipes for the compact image tower, side by side in one run, on a TRAINED checkpoint.

    python tools/bench_int8.py work/ckpt --corpus work/corpus [--runs 200] [--calib-frames 64] \
        [--eval-images 400]

Per option: centred cosine of the int8 image embeddings to ONNX fp32 (mean, min), 4-way accuracy (torch / ONNX
fp32 / int8, the export gate's trials), quantisation seconds, file size, and latency at batch 1 with 1 and 2
threads (all towers timed round-robin, so that load drift on a shared machine hits every option alike). Then
one full `export_bundle` with the default recipe and its parity gate, timed. Human-readable table first; the
LAST line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# name -> (format, quantize_image_tower keyword arguments); "legacy_*" call onnxruntime directly (see below).
_ALL_INT8 = {"fp32_first_convs": 0, "fp32_tail_nodes": False, "bias_correction": False}
OPTIONS = {
    "u8s8_all_minmax": ("qdq_u8s8", _ALL_INT8),
    "u8s8_all_percentile99999": ("qdq_u8s8", {"legacy": "percentile"}),
    "u8s8_first8_convs_excluded_(old)": ("qdq_u8s8", {"legacy": "first8"}),
    "u8s8_all_tail_biascorr": ("qdq_u8s8", {"fp32_first_convs": 0}),
    "u8s8_prefix3_tail": ("qdq_u8s8", {"bias_correction": False}),
    "u8s8_prefix3_tail_biascorr (default)": ("qdq_u8s8", {}),
    "u8s8_prefix6_tail_biascorr": ("qdq_u8s8", {"fp32_first_convs": 6}),
    "s8s8_all_minmax": ("qdq_s8s8", _ALL_INT8),
    "s8s8_prefix3_tail_biascorr (default)": ("qdq_s8s8", {}),
}


def legacy(src: Path, dst: Path, fmt: str, calib: np.ndarray, how: str) -> Path:
    """The recipes before this benchmark: all-int8 with Percentile calibration, or (H3's fallback) the first 8
    Conv nodes alone in nodes_to_exclude -- which onnxruntime then re-quantises per tensor at session load."""
    import onnx
    from firstwords.export.quantize import calibration_reader, preprocess_for_quantization
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = CalibrationMethod.Percentile if how == "percentile" else CalibrationMethod.MinMax
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess_for_quantization(src, Path(tmp) / "pre.onnx")
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        quantize_static(str(pre), str(dst), calibration_reader(calib), quant_format=QuantFormat.QDQ,
                        nodes_to_exclude=convs[:8] if how == "first8" else [], per_channel=True,
                        activation_type=QuantType.QUInt8 if fmt == "qdq_u8s8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=method,
                        extra_options={"ActivationSymmetric": fmt == "qdq_s8s8", "WeightSymmetric": True,
                                       "CalibPercentile": 99.999})
    return dst


def _pct(v: float | None) -> str:
    return f"{100 * v:6.2f}" if v is not None else "     -"


def latencies(paths: dict[str, Path], size: int, threads: int, runs: int) -> dict[str, dict]:
    from firstwords.edge.encode import make_session

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    sessions = {k: make_session(p, threads) for k, p in paths.items()}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, {"image": x})
    ts: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"image": x})
            ts[k].append((time.perf_counter() - t0) * 1000)
    return {k: {"median_ms": round(float(np.median(v)), 3), "p10_ms": round(float(np.percentile(v, 10)), 3),
                "p90_ms": round(float(np.percentile(v, 90)), 3)} for k, v in ts.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a trained checkpoint (or run directory)")
    ap.add_argument("--corpus", default="work/corpus", help="folder with train.json and eval.json")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per tower and thread count")
    ap.add_argument("--calib-frames", type=int, default=64)
    ap.add_argument("--eval-images", type=int, default=400)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)

    import torch
    from firstwords.export.checkpoint import load_checkpoint
    from firstwords.export.image_sets import calibration_images, eval_images
    from firstwords.export.onnx_export import export_bundle, export_towers
    from firstwords.export.parity import measure_parity
    from firstwords.export.quantize import quantize_image_tower, quantize_utterance_tower

    torch.set_num_threads(2)
    model, vocab, cfg, _meta = load_checkpoint(args.checkpoint)
    size, mean, std = cfg.image.input_size, cfg.image.mean, cfg.image.std
    corpus = Path(args.corpus)
    calib = calibration_images(corpus / "train.json", args.calib_frames, size, mean, std)
    ev, labels, trials = eval_images(corpus / "eval.json", args.eval_images, size, mean, std)
    tmp = Path(tempfile.mkdtemp(prefix="firstwords-int8-"))
    towers = export_towers(model, tmp / "fp32", size)
    utt8 = quantize_utterance_tower(towers.utterance, tmp / "utterance-int8.onnx", "qdq_u8s8")
    cache: dict = {}
    t0 = time.perf_counter()
    base = measure_parity(model, ev, labels, vocab, (towers.image, towers.utterance), None, cache=cache,
                          trials=trials, threads=2)
    print(f"checkpoint {args.checkpoint}: {cfg.name}, {size} px; torch / fp32 embeddings of {len(ev)} images "
          f"in {time.perf_counter() - t0:.1f} s; {len(calib)} calibration frames", flush=True)
    print(f"  accuracy torch {100 * base.accuracy['torch']:.2f} %, "
          f"ONNX fp32 {100 * base.accuracy['onnx_fp32']:.2f} %")

    rows: dict[str, dict] = {}
    paths = {"fp32": towers.image}
    for name, (fmt, kw) in OPTIONS.items():
        out = tmp / f"{len(paths)}.onnx"
        t0 = time.perf_counter()
        if "legacy" in kw:
            legacy(towers.image, out, fmt, calib, kw["legacy"])
        else:
            quantize_image_tower(towers.image, out, fmt, calib, **kw)
        secs = time.perf_counter() - t0
        r = measure_parity(model, ev, labels, vocab, (towers.image, towers.utterance), (out, utt8),
                           cache=cache, trials=trials, threads=2)
        c = r.cosine["onnx_int8/image (onnx_fp32)"]
        rows[name] = {"format": fmt, "centred_cosine_mean": round(c["mean"], 5),
                      "centred_cosine_min": round(c["min"], 4),
                      "accuracy": {k: round(v, 4) for k, v in r.accuracy.items()}, "passed": r.passed,
                      "quantize_s": round(secs, 1), "mb": round(out.stat().st_size / 1e6, 3)}
        paths[name] = out
        print(f"  {name:<38} cos {c['mean']:.5f} (min {c['min']:.4f})  "
              f"int8 acc {100 * r.accuracy['onnx_int8']:.2f} %"
              f"  {'PASS' if r.passed else 'fail'}  {secs:5.1f} s", flush=True)
    rows["fp32"] = {"format": "none", "mb": round(towers.image.stat().st_size / 1e6, 3)}

    for t in [int(x) for x in args.threads.split(",")]:
        lat = latencies(paths, size, t, args.runs)
        for k, v in lat.items():
            rows[k][f"t{t}"] = {**v, "speedup_vs_fp32": round(lat["fp32"]["median_ms"] / v["median_ms"], 2)}

    # One full export with the default recipe and the gate (what `firstwords export` does after loading).
    t0 = time.perf_counter()
    res = export_bundle(model, vocab, tmp / "bundle", input_size=size, mean=mean, std=std,
                        quantization="qdq_u8s8", model_config=cfg.name, training_data="bench",
                        calibration_images=calib, eval_images=ev, eval_labels=labels, eval_trials=trials,
                        threads=2)
    export_s = time.perf_counter() - t0

    print(f"\n{'option':<38} {'cos mean':>8} {'min':>7} {'torch':>6} {'fp32':>6} {'int8':>6} {'MB':>6} "
          f"{'t1 ms':>6} {'x':>5} {'t2 ms':>6} {'x':>5}")
    for k, r in rows.items():
        acc = r.get("accuracy", {})
        t1, t2 = r["t1"], r.get("t2", {})
        print(f"{k:<38} {r.get('centred_cosine_mean', 1.0):8.5f} {r.get('centred_cosine_min', 1.0):7.4f} "
              f"{_pct(acc.get('torch', base.accuracy['torch']))} "
              f"{_pct(acc.get('onnx_fp32', base.accuracy['onnx_fp32']))} "
              f"{_pct(acc.get('onnx_int8'))} {r['mb']:6.2f} "
              f"{t1['median_ms']:6.2f} {t1['speedup_vs_fp32']:5.2f} "
              f"{t2.get('median_ms', 0):6.2f} {t2.get('speedup_vs_fp32', 0):5.2f}")
    detail = json.loads((res.bundle / "manifest.json").read_text())["quantization_detail"]
    print(f"\nfull export with the gate (default recipe): {export_s:.1f} s, "
          f"{'passed' if res.parity.passed else 'FAILED'}; fp32 prefix kept: "
          f"{detail['fp32_first_convs']} convs")
    print(json.dumps({"checkpoint": str(args.checkpoint), "model_config": cfg.name, "input_px": size,
                      "eval_images": len(ev), "calibration_frames": len(calib), "options": rows,
                      "export_s": round(export_s, 1), "export_passed": res.parity.passed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
