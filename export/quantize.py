"""int8 quantisation of exported towers with onnxruntime's quantisation tools.

Formats (chosen per device in device_configs/*.toml, [model] quantization):
    none      fp32 as exported
    dynamic   weights int8, activations quantised at run time (ConvInteger / MatMulInteger). Good for the
              utterance tower; 4-11x SLOWER than fp32 for CNNs on x86 (measured), so not for images.
    qdq_u8s8  static QDQ, uint8 activations / int8 weights, per-channel: on x86 with VNNI every conv fused,
              3.4x faster than fp32 for ResNet-18 (measured).
    qdq_s8s8  static QDQ, int8 activations and weights, per-channel: onnxruntime's advice for ARM (the Pi 5's
              Cortex-A76 has int8 dot-product instructions).

Static formats calibrate activation ranges (MinMax: deterministic) on training frames fed through a
`CalibrationDataReader`. The utterance tower always gets dynamic int8 when quantisation is on: its
embedding-table lookup and any MatMul quantise cleanly that way and there are no convolutions.

The static recipe (measured on a trained compact checkpoint; docs/EXPORT.md has the table): the input end of
the image tower -- the stem and the first MBConv block of EfficientNet-Lite0, `fp32_first_convs=3` -- and the
tail after the last convolution (pooling, projection, L2 normalisation) stay fp32; everything between is int8.
All-int8 misses the gate's centred cosine (0.98 vs fp32), this recipe passes (0.994) and is as fast as all-int8
(the int8 depthwise convolutions at full resolution with few channels gain nothing). The calibration method,
frame count and S8 activations barely matter (MinMax/Percentile/Entropy/moving average: 0.982-0.983 all-int8).

A trap this recipe avoids: onnxruntime (>= 1.2x, "WeightBiasQuantization") quantises at session load the fp32
weights of any Conv/Gemm whose input comes from a DequantizeLinear -- per-TENSOR, which wrecks depthwise convs
(centred cosine 0.83 when only one such conv was "excluded"). So fp32 regions are cut only at the graph's ends:
a contiguous prefix from the input (no DequantizeLinear before it) and the tail after the last Conv whose
first node (pooling) takes the dequantised activation, so the projection Gemm sees an fp32 input.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edge.bundle import QUANTIZATIONS

log = logging.getLogger(__name__)

STATIC_FORMATS = ("qdq_s8s8", "qdq_u8s8")
# Convolutions at the input end kept fp32 by the static recipe (EfficientNet-Lite0: stem + first MBConv block).
DEFAULT_FP32_FIRST_CONVS = 3


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class FrameCalibrationReader(CalibrationDataReader):
        """Feeds normalised frames [N, 3, S, S] to the calibrator in small batches; `rewind` starts over."""

        def __init__(self, images: np.ndarray, input_name: str = "image", batch: int = 8):
            self.images = np.ascontiguousarray(images, dtype=np.float32)
            self.input_name = input_name
            self.batch = batch
            self.pos = 0

        def get_next(self):
            if self.pos >= len(self.images):
                return None
            x = self.images[self.pos:self.pos + self.batch]
            self.pos += self.batch
            return {self.input_name: x}

        def rewind(self):
            self.pos = 0

    return FrameCalibrationReader


def calibration_reader(images: np.ndarray, input_name: str = "image", batch: int = 8):
    """An onnxruntime CalibrationDataReader over normalised frames (numpy [N, 3, S, S])."""
    return _calibration_reader_class()(images, input_name, batch)


def preprocess_for_quantization(src: Path, dst: Path) -> Path:
    """onnxruntime's quant_pre_process (graph optimisation + ONNX shape inference) run in a temporary folder:
    symbolic shape inference is skipped (it crashed on F.normalize with a dynamic batch) and a crash's temporary
    files stay in that folder. Falls back to the plain model if pre-processing fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="firstwords-qprep-") as tmp:
        out = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
            shutil.copyfile(out, dst)
        except Exception as e:  # noqa: BLE001 — onnxruntime / onnx raise many types here; the plain model still quantises
            log.warning("quant_pre_process failed on %s (%s); quantising the model as exported", src, e)
            shutil.copyfile(src, dst)
    return dst


def _conv_positions(model_path: Path) -> tuple[list, list[int]]:
    import onnx

    nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    return nodes, [i for i, node in enumerate(nodes) if node.op_type == "Conv"]


def capped_fp32_first_convs(model_path: str | Path, n: int) -> int:
    """n capped at an eighth of the model's convolutions, so that a small model is still quantised (the
    number the fp32 prefix really keeps; recorded in the manifest)."""
    return max(0, min(n, len(_conv_positions(Path(model_path))[1]) // 8))


def fp32_prefix(model_path: Path, n_convs: int) -> list[str]:
    """Every node before the n-th Conv (graph order is topological; n capped by capped_fp32_first_convs): the
    input end of the tower, kept fp32 as one piece so that no fp32 Conv in it reads a DequantizeLinear (see
    the module doc)."""
    nodes, conv_at = _conv_positions(model_path)
    n = capped_fp32_first_convs(model_path, n_convs)
    return [node.name for node in nodes[:conv_at[n]]] if n > 0 else []


def fp32_tail(model_path: Path) -> list[str]:
    """Every node after the last Conv except its activation (Clip/Relu, folded into that Conv's int8 output):
    global pooling, projection, L2 normalisation. Cheap, and the embedding itself is not rounded to 8 bits."""
    nodes, conv_at = _conv_positions(model_path)
    if not conv_at:
        return []
    tail = nodes[conv_at[-1] + 1:]
    if tail and tail[0].op_type in ("Clip", "Relu"):
        tail = tail[1:]
    return [node.name for node in tail]


def calibration_cache(folder: Path, model_path: Path, images: np.ndarray, method: str = "MinMax") -> Path:
    """Path of onnxruntime's calibration cache for (model, frames, method) inside `folder`: the activation
    ranges are computed once and reused by every quantisation attempt of one export (they do not depend on
    which nodes stay fp32, nor on the activation type)."""
    h = hashlib.sha256(Path(model_path).read_bytes())
    h.update(np.ascontiguousarray(images, np.float32).tobytes())
    h.update(method.encode())
    return Path(folder) / f"calibration-{h.hexdigest()[:16]}.json"


def quantize_image_tower(fp32_path: str | Path, out_path: str | Path, fmt: str,
                         calibration_images: np.ndarray | None = None, per_channel: bool = True,
                         fp32_first_convs: int = DEFAULT_FP32_FIRST_CONVS, fp32_tail_nodes: bool = True,
                         work_dir: str | Path | None = None) -> Path:
    """Quantise the image tower to `fmt` (see module doc). Static formats need calibration_images.

    fp32_first_convs: convolutions at the input end kept fp32 together with everything between them (the
    default is the measured recipe; 0 = all int8). fp32_tail_nodes: pooling/projection/normalisation fp32.
    work_dir: a folder kept across calls (e.g. the export's attempts) for the pre-processed model and the
    calibration cache, so that repeated calls calibrate once; default: a fresh temporary folder."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if fmt not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {fmt!r}")
    src, out = Path(fp32_path), Path(out_path)
    if fmt == "none":
        shutil.copyfile(src, out)
        return out
    with tempfile.TemporaryDirectory(prefix="firstwords-quant-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        pre = work / f"pre-{hashlib.sha256(src.read_bytes()).hexdigest()[:16]}.onnx"
        if not pre.is_file():
            preprocess_for_quantization(src, pre)
        if fmt == "dynamic":
            log.warning("dynamic int8 for the image tower: ConvInteger is often slower than fp32 for CNNs; "
                        "prefer qdq_u8s8 (x86) or qdq_s8s8 (ARM)")
            quantize_dynamic(str(pre), str(out), per_channel=per_channel, weight_type=QuantType.QInt8)
            return out
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError(f"{fmt} needs calibration frames")
        act = QuantType.QUInt8 if fmt == "qdq_u8s8" else QuantType.QInt8
        exclude = fp32_prefix(pre, fp32_first_convs) + (fp32_tail(pre) if fp32_tail_nodes else [])
        cache = calibration_cache(work, pre, calibration_images)
        quantize_static(
            str(pre), str(out), None if cache.is_file() else calibration_reader(calibration_images),
            quant_format=QuantFormat.QDQ, nodes_to_exclude=exclude,
            per_channel=per_channel, activation_type=act, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": fmt == "qdq_s8s8", "WeightSymmetric": True})
    log.info("quantised %s -> %s (%s, %d nodes fp32)", src, out, fmt, len(exclude))
    return out


def quantize_utterance_tower(fp32_path: str | Path, out_path: str | Path, fmt: str) -> Path:
    """fmt "none": copy; any int8 format: dynamic int8 (weights int8; embedding table and MatMuls)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = Path(fp32_path), Path(out_path)
    if fmt == "none":
        shutil.copyfile(src, out)
        return out
    with tempfile.TemporaryDirectory(prefix="firstwords-quant-") as tmp:
        pre = preprocess_for_quantization(src, Path(tmp) / "pre.onnx")
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
    return out
