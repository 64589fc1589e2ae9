"""Export the two towers of a dual encoder to ONNX (fp32), with a dynamic batch axis.

Any torch module with `encode_image(x [N,3,S,S]) -> [N,D]` and `encode_utterance(tokens [N,L]) -> [N,D]`
(L2-normalised) is exported as two graphs matching the bundle contract:
    image.onnx      image  float32 [batch, 3, S, S] -> embedding float32 [batch, D]
    utterance.onnx  tokens int64   [batch, length]  -> embedding float32 [batch, D]

The TorchScript exporter is the default: opset 17, one self-contained file, fast, and byte-identical output
for the same weights (measured). The dynamo exporter (`exporter="dynamo"`) gives opset >= 18; it is asked
for a single file (external_data=False).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Convolutions at the input end kept fp32 (with everything between them), tried in turn until the int8 parity
# gate passes: the first is the static recipe of export.quantize (stem + first MBConv block of Lite0), which
# passed on the measured checkpoint; the others are fallbacks that cost some speed (docs/EXPORT.md).
FP32_PREFIXES = (3, 6, 12)
EXPORTERS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class ExportedTowers:
    image: Path
    utterance: Path
    opset: int
    embedding_dim: int
    spatial_grid: tuple[int, int] | None = None  # (h, w) of image.onnx's `spatial` output, None without it


def _tower_modules(model):
    """Each tower as a module of its own (works for any model with encode_image / encode_utterance)."""
    from firstwords.export.model import ImageTower, UtteranceTower

    return ImageTower(model).eval(), UtteranceTower(model).eval()


def _export_one(module, example, path: Path, input_name: str, dynamic: dict[int, str], opset: int,
                exporter: str, outputs: tuple[str, ...] = ("embedding",)) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer warnings
        if exporter == "torchscript":
            torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=list(outputs),
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={input_name: dynamic, **{o: {0: "batch"} for o in outputs}})
        elif exporter == "dynamo":
            dims = {axis: torch.export.Dim(name, min=1) for axis, name in dynamic.items()}
            torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=list(outputs),
                              opset_version=opset, dynamo=True, external_data=False, dynamic_shapes=(dims,))
        else:
            raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")


def _fix_output_dim(path: Path, dim: int) -> int:
    """Write the fixed embedding width into the graph's output shape (the tracer leaves it symbolic) and
    return the model's opset."""
    import onnx

    model = onnx.load(str(path))
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) == 2:
        out_dims[1].Clear()
        out_dims[1].dim_value = dim
        out_dims[0].Clear()
        out_dims[0].dim_param = "batch"
    model.producer_name, model.producer_version = "firstwords", ""  # no torch version in the bytes
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_towers(model, out_dir: str | Path, input_size: int, opset: int = DEFAULT_OPSET,
                  exporter: str = "torchscript", example_tokens_len: int = 5, spatial: bool = True) -> ExportedTowers:
    """Export both towers of `model` (a torch dual encoder) into `out_dir` as image.onnx, utterance.onnx.
    spatial: give image.onnx its second output `spatial` [N, h, w, D] (export.spatial) when the model has one."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    image_mod, utt_mod = _tower_modules(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, input_size, input_size, generator=g)
    tokens = torch.tensor([[2] + [4] * (example_tokens_len - 2) + [3], [2, 3] + [0] * (example_tokens_len - 2)],
                          dtype=torch.long)
    with torch.no_grad():
        dim = int(image_mod(x).shape[1])
        dim_u = int(utt_mod(tokens).shape[1])
    if dim != dim_u:
        raise ValueError(f"image and utterance embeddings differ in width ({dim} vs {dim_u})")
    img_path, utt_path = out / "image.onnx", out / "utterance.onnx"
    grid = None
    outputs: tuple[str, ...] = ("embedding",)
    if spatial:
        from firstwords.export.spatial import OUTPUT, SpatialImageTower, has_spatial

        if has_spatial(model):
            image_mod, outputs = SpatialImageTower(model).eval(), ("embedding", OUTPUT)
            with torch.no_grad():
                grid = tuple(int(n) for n in image_mod(x)[1].shape[1:3])
    with torch.no_grad():
        _export_one(image_mod, x, img_path, "image", {0: "batch"}, opset, exporter, outputs)
        _export_one(utt_mod, tokens, utt_path, "tokens", {0: "batch", 1: "length"}, opset, exporter)
    got = _fix_output_dim(img_path, dim)
    _fix_output_dim(utt_path, dim)
    log.info("exported %s and %s (opset %d, D=%d, spatial grid %s)", img_path, utt_path, got, dim, grid)
    return ExportedTowers(img_path, utt_path, got, dim, grid)


# ---------------------------------------------------------------------------------------------------------
# checkpoint -> bundle: export, quantise, parity gate, write


@dataclass
class ExportResult:
    bundle: Path
    parity: object  # export.parity.ParityReport or None when skipped
    sizes: dict[str, int]  # bytes per bundle file
    quantization: str

    @property
    def towers_bytes(self) -> int:
        return self.sizes["image.onnx"] + self.sizes["utterance.onnx"]


def export_bundle(model, vocab, out: str | Path, *, input_size: int, mean, std, quantization: str,
                  model_config: str, training_data: str, calibration_images=None, eval_images=None,
                  eval_labels=None, eval_trials=None, threads: int | None = None, skip_parity: bool = False,
                  n_way: int = 4, trials_per_category: int = 50, extra_manifest: dict | None = None,
                  opset: int = DEFAULT_OPSET, exporter: str = "torchscript", spatial: bool = True,
                  extra_files: dict | None = None) -> ExportResult:
    """Export `model` to a bundle at `out`: fp32 ONNX, int8 per `quantization`, parity gate, atomic write.

    The gate compares torch, ONNX fp32 and int8 on eval_images (normalised [N, 3, S, S]) and, with labels,
    on n-way trials; a miss raises export.parity.ParityError and nothing is written (an old bundle stays).
    """
    import tempfile

    from firstwords.edge.quantization import QUANTIZATION_FORMATS, STATIC_FORMATS
    from firstwords.export.bundle import write_bundle
    from firstwords.export.parity import gate, measure_parity
    from firstwords.export.quantize import (
        capped_fp32_first_convs,
        quantize_image_tower,
        quantize_utterance_tower,
    )

    if quantization not in QUANTIZATION_FORMATS:
        raise ValueError(f"quantization must be one of {QUANTIZATION_FORMATS}, got {quantization!r}")
    if quantization in STATIC_FORMATS and (calibration_images is None or len(calibration_images) == 0):
        raise ValueError(f"{quantization} needs calibration frames (training frames)")
    if not skip_parity and (eval_images is None or len(eval_images) < 2):
        raise ValueError("the parity gate needs evaluation images (or skip_parity=True)")
    with tempfile.TemporaryDirectory(prefix="firstwords-export-") as tmp:
        towers = export_towers(model, Path(tmp) / "fp32", input_size, opset=opset, exporter=exporter,
                               spatial=spatial)
        img, utt = towers.image, towers.utterance
        int8 = None
        report = None
        fp32_convs = 0
        cache: dict = {}
        if quantization != "none":
            utt = quantize_utterance_tower(towers.utterance, Path(tmp) / "utterance-int8.onnx", quantization)
        # Static int8: if the gate misses, keep more of the input end in fp32 and try again. The attempts share
        # one pre-processed model and one calibration (work_dir), and the gate's torch / fp32 embeddings (cache).
        attempts = [0]
        if quantization in STATIC_FORMATS:
            attempts = list(dict.fromkeys(capped_fp32_first_convs(towers.image, n)
                                          for n in (FP32_PREFIXES[:1] if skip_parity else FP32_PREFIXES)))
        for fp32_convs in attempts:
            if quantization != "none":
                img = quantize_image_tower(towers.image, Path(tmp) / f"image-int8-{fp32_convs}.onnx", quantization,
                                           calibration_images, fp32_first_convs=fp32_convs,
                                           work_dir=Path(tmp) / "quant-work")
                int8 = (img, utt)
            if skip_parity:
                log.warning("PARITY GATE SKIPPED: the exported bundle's accuracy is not checked")
                break
            report = measure_parity(model, eval_images, eval_labels, vocab, (towers.image, towers.utterance),
                                    int8, quantization=quantization, trials=eval_trials, n_way=n_way,
                                    trials_per_category=trials_per_category, threads=threads, cache=cache)
            if towers.spatial_grid is not None:
                from firstwords.export.spatial import spatial_parity

                spatial_parity(model, eval_images, towers.image, img if int8 is not None else None, report, threads)
            log.info("%s", report.table())
            int8_only = all(f.startswith("int8") for f in report.failures)
            if report.passed or not int8_only:
                break
            log.warning("int8 with the first %d convolutions in fp32 missed the gate (%s); trying more in fp32",
                        fp32_convs, "; ".join(report.failures))
        if report is not None:
            gate(report)
        fields = {
            "embedding_dim": towers.embedding_dim,
            "image": {"input_size": int(input_size), "mean": [float(x) for x in mean],
                      "std": [float(x) for x in std],
                      **({"spatial": {"output": "spatial", "grid": list(towers.spatial_grid)}}
                         if towers.spatial_grid is not None else {})},
            "tokenizer": {"max_tokens": int(vocab.max_tokens)},
            "quantization": quantization,
            "quantization_detail": {
                "image": {"none": "fp32", "dynamic": "dynamic int8 (ConvInteger / MatMulInteger)",
                          "qdq_u8s8": "static QDQ, uint8 activations, int8 per-channel weights (bias-corrected), "
                                      "MinMax; input end and tail (pooling, projection, normalisation) fp32",
                          "qdq_s8s8": "static QDQ, int8 activations, int8 per-channel weights (bias-corrected), "
                                      "MinMax; input end and tail (pooling, projection, normalisation) fp32"}[quantization],
                "utterance": "fp32" if quantization == "none" else "dynamic int8 weights",
                "fp32_first_convs": fp32_convs,
                "calibration_frames": 0 if calibration_images is None or quantization not in STATIC_FORMATS
                else len(calibration_images)},
            "opset": towers.opset,
            "exporter": exporter,
            "model_config": model_config,
            "training_data": training_data,
            "parity": report.to_dict() if report is not None else {},
            "parity_skipped": bool(skip_parity),
            **(extra_manifest or {}),
        }
        path = write_bundle(out, img, utt, vocab, fields, extra_files=extra_files)
    from firstwords.edge.bundle import load_bundle

    b = load_bundle(path, check_checksums=False)
    sizes = b.file_bytes()
    b.close()
    return ExportResult(path, report, sizes, quantization)
