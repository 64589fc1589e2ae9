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

The static recipe (measured side by side on trained compact checkpoints with tools/bench_int8.py; table in
docs/EXPORT.md): (1) the input end of the image tower -- the stem and the first MBConv block of
EfficientNet-Lite0, `fp32_first_convs=3` -- and the tail after the last convolution (pooling, projection, L2
normalisation) stay fp32, everything between is int8; (2) bias correction: the int8 weights' mean error is
absorbed by the fp32 biases before the final quantisation (most of the int8 error of this net is in its
weights: weights-only int8 alone gave centred cosine 0.987). Centred cosine of the int8 embeddings to fp32:
all-int8 MinMax 0.982, recipe 0.998 (gate: >= 0.99), at the speed of all-int8 (~1.9x fp32, 1 thread; the int8
convs at full resolution with few channels gain nothing). Calibration method and frame count (32-200) barely
matter (MinMax / Percentile 99.999 / Entropy / moving average: 0.982-0.983 all-int8); per-tensor weights are
no faster and wreck the depthwise convs (0.80). S8 activations lose ~0.001-0.004 (half the uint8 range is
wasted on ReLU6 outputs) and are not faster on x86; they are the ARM choice.

A trap this recipe avoids: onnxruntime (1.32, its "WeightBiasQuantization" graph transformer) quantises at
session load the fp32 weights of any Conv/Gemm whose input comes from a DequantizeLinear -- per-TENSOR, which
wrecks depthwise convs (centred cosine 0.83 when only one such conv was "excluded"). So fp32 regions are cut
only at the graph's ends: a contiguous prefix from the input (no DequantizeLinear before it) and the tail
after the last Conv whose first node (pooling) takes the dequantised activation, so the projection Gemm sees
an fp32 input.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from firstwords.edge.quantization import QUANTIZATION_FORMATS

log = logging.getLogger(__name__)

# Convolutions at the input end kept fp32 by the static recipe (EfficientNet-Lite0: stem + first MBConv
# block).
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
    """onnxruntime's quant_pre_process (graph optimisation + ONNX shape inference) run in a temporary
    folder: symbolic shape inference is skipped (it crashed on F.normalize with a dynamic batch) and a crash's
    temporary files stay in that folder. Falls back to the plain model if pre-processing fails."""
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
    """n capped at a quarter of the model's convolutions, so that at least three quarters are quantised even
    in a small model (the number the fp32 prefix really keeps; recorded in the manifest). A quarter, not less:
    the gate's retries (export.onnx_export.FP32_PREFIXES) need room on small towers (a reduced ResNeXt with
    random weights passed only at 4 of 17 convs)."""
    return max(0, min(n, len(_conv_positions(Path(model_path))[1]) // 4))


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
                         bias_correction: bool = True, work_dir: str | Path | None = None) -> Path:
    """Quantise the image tower to `fmt` (see module doc). Static formats need calibration_images.

    fp32_first_convs: convolutions at the input end kept fp32 together with everything between them (the
    default is the measured recipe; 0 = all int8). fp32_tail_nodes: pooling/projection/normalisation fp32.
    bias_correction: int8 weight errors' mean effect removed through the fp32 biases (see correct_biases).
    work_dir: a folder kept across calls (e.g. the export's attempts) for the pre-processed model and the
    calibration cache, so that repeated calls calibrate once; default: a fresh temporary folder."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if fmt not in QUANTIZATION_FORMATS:
        raise ValueError(f"quantization must be one of {QUANTIZATION_FORMATS}, got {fmt!r}")
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

        def static(model: Path, dst: Path) -> None:
            quantize_static(
                str(model), str(dst), None if cache.is_file() else calibration_reader(calibration_images),
                quant_format=QuantFormat.QDQ, nodes_to_exclude=exclude,
                per_channel=per_channel, activation_type=act, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": fmt == "qdq_s8s8", "WeightSymmetric": True})

        if not bias_correction:
            static(pre, out)
        else:
            # Pass 1 gives the int8 weights onnxruntime chose; pass 2 quantises the model whose biases absorb
            # their mean error (same weights, same activation ranges from the cache).
            first = Path(tmp) / "pass1.onnx"
            static(pre, first)
            corrected = Path(tmp) / "corrected.onnx"
            means = conv_input_means(pre, calibration_images)
            n = correct_biases(pre, first, means, corrected)
            static(corrected, out)
            log.info("bias correction: %d convolutions", n)
    log.info("quantised %s -> %s (%s, %d nodes fp32)", src, out, fmt, len(exclude))
    return out


def conv_input_means(model_path: Path, images: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """Mean map [C, H, W] (over frames, float64) of every Conv's input in the fp32 model, keyed by tensor
    name. One onnxruntime thread: the same sums every run (byte-identical bundles)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    names = list(dict.fromkeys(n.input[0] for n in model.graph.node if n.op_type == "Conv"))
    del model.graph.output[:]
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    images = np.ascontiguousarray(images, np.float32)
    sums = [np.zeros(0)] * len(names)
    for i in range(0, len(images), batch):
        outs = sess.run(names, {sess.get_inputs()[0].name: images[i:i + batch]})
        part = [o.astype(np.float64).sum(axis=0) for o in outs]
        sums = part if i == 0 else [a + b for a, b in zip(sums, part, strict=True)]
    return {name: total / len(images) for name, total in zip(names, sums, strict=True)}


def _dequantized_weights(qdq) -> dict[str, np.ndarray]:
    """{DequantizeLinear output name: float64 array} for every DequantizeLinear of a constant (weights)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    out = {}
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = inits[node.input[0]].astype(np.float64)
        scale = inits[node.input[1]].astype(np.float64)
        zero = inits[node.input[2]].astype(np.float64) if len(node.input) > 2 else np.zeros_like(scale)
        if scale.size > 1:  # per channel along `axis`
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        out[node.output[0]] = (q - zero) * scale
    return out


def _window_means(mean_map: np.ndarray, conv, kernel: tuple[int, int]) -> np.ndarray:
    """[C, kh, kw]: for each kernel offset, the mean over output positions of the (zero-padded) input it
    sees."""
    attrs = {a.name: list(a.ints) for a in conv.attribute if a.ints}
    pads = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    x = np.pad(mean_map, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    kh, kw = kernel
    oh = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((x.shape[0], kh, kw))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            out[:, i, j] = x[:, rows, cols].mean((1, 2))
    return out


def correct_biases(fp32_path: Path, qdq_path: Path, input_means: dict[str, np.ndarray],
                   out_path: Path) -> int:
    """Bias correction (Nagel et al., "Data-free quantization", 2019, here with measured input means): an int8
    weight error dW shifts a conv's output channel o by sum_i,k dW[o,i,k] * E[x_i at offset k] on average;
    subtract that from the fp32 bias, so the int8 model's outputs are unbiased. E[...] is taken over the
    calibration frames and the output positions, padding included. Writes the corrected fp32 model; returns
    how many convolutions were corrected. Measured: centred cosine to fp32 0.994 -> 0.998."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    deq = _dequantized_weights(qdq)
    qconv = {n.name: n for n in qdq.graph.node if n.op_type == "Conv"}
    inits = {i.name: i for i in model.graph.initializer}
    n_corrected = 0
    for conv in model.graph.node:
        q = qconv.get(conv.name)
        if conv.op_type != "Conv" or q is None or q.input[1] not in deq or len(conv.input) < 3 \
                or conv.input[2] not in inits or conv.input[0] not in input_means:
            continue
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)  # [out, in per group, kh, kw]
        if w.ndim != 4:
            continue
        dw = deq[q.input[1]] - w
        groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
        m = _window_means(input_means[conv.input[0]], conv, w.shape[2:])  # [in, kh, kw]
        m = m.reshape(groups, 1, w.shape[1], *w.shape[2:])
        shift = (dw.reshape(groups, w.shape[0] // groups, *w.shape[1:]) * m).sum((2, 3, 4)).reshape(-1)
        b = numpy_helper.to_array(inits[conv.input[2]])
        inits[conv.input[2]].CopyFrom(numpy_helper.from_array((b - shift).astype(b.dtype), conv.input[2]))
        n_corrected += 1
    onnx.save(model, str(out_path))
    return n_corrected


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
