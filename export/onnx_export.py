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
EXPORTERS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class ExportedTowers:
    image: Path
    utterance: Path
    opset: int
    embedding_dim: int


def _tower_modules(model):
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return self.m.encode_image(image)

    class UtteranceTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, tokens):
            return self.m.encode_utterance(tokens)

    return ImageTower(model).eval(), UtteranceTower(model).eval()


def _export_one(module, example, path: Path, input_name: str, dynamic: dict[int, str], opset: int,
                exporter: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer warnings
        if exporter == "torchscript":
            torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=["embedding"],
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={input_name: dynamic, "embedding": {0: "batch"}})
        elif exporter == "dynamo":
            dims = {axis: torch.export.Dim(name, min=1) for axis, name in dynamic.items()}
            torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=["embedding"],
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
                  exporter: str = "torchscript", example_tokens_len: int = 5) -> ExportedTowers:
    """Export both towers of `model` (a torch dual encoder) into `out_dir` as image.onnx, utterance.onnx."""
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
    with torch.no_grad():
        _export_one(image_mod, x, img_path, "image", {0: "batch"}, opset, exporter)
        _export_one(utt_mod, tokens, utt_path, "tokens", {0: "batch", 1: "length"}, opset, exporter)
    got = _fix_output_dim(img_path, dim)
    _fix_output_dim(utt_path, dim)
    log.info("exported %s and %s (opset %d, D=%d)", img_path, utt_path, got, dim)
    return ExportedTowers(img_path, utt_path, got, dim)
