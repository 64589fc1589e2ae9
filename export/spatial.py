"""The image tower's optional spatial output: features before pooling, projected into the joint space.

For localisation maps (CVCL's attention-map analysis, run on the device by edge.report.maps): the exported
image graph gets a second output `spatial` float32 [N, h, w, D] beside `embedding`, from the same pass. Each
cell of the backbone's last feature map goes through the tower's own projection -- for average+max pooling the
projection of a frame made entirely of that cell, (W_avg + W_max) h + b -- and is L2-normalised. The parity
gate compares it with torch like the embeddings (centred cosine over all cells)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from firstwords.export import require_torch

torch = require_torch()
F = torch.nn.functional

OUTPUT = "spatial"


def has_spatial(model) -> bool:
    """Whether the model's image tower exposes its feature map (our DualEncoder does; test stand-ins may not)."""
    enc = getattr(model, "image_encoder", None)
    return enc is not None and hasattr(getattr(enc, "backbone", None), "feature_map")


def spatial_from_map(image_encoder, h: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] feature map -> [N, h, w, D] unit vectors in the joint space."""
    w, b = image_encoder.projection.weight, image_encoder.projection.bias
    c = h.shape[1]
    if w.shape[1] == 2 * c:  # average + max pooled features, concatenated
        w = w[:, :c] + w[:, c:]
    return F.normalize(h.permute(0, 2, 3, 1) @ w.t() + b, dim=-1)


class SpatialImageTower(torch.nn.Module):
    """image -> (embedding [N, D], spatial [N, h, w, D]) in one pass: what image.onnx computes when exported
    with the spatial output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        enc = self.model.image_encoder
        h = enc.backbone.feature_map(image)
        emb = F.normalize(enc.projection(enc.backbone.pool(h)), dim=-1)
        return emb, spatial_from_map(enc, h)


def torch_spatial(model, images: np.ndarray, batch: int = 32) -> np.ndarray:
    tower = SpatialImageTower(model).eval()
    with torch.inference_mode():
        return np.concatenate([tower(torch.from_numpy(images[i:i + batch]))[1].numpy()
                               for i in range(0, len(images), batch)])


def onnx_spatial(image_path: Path, images: np.ndarray, threads: int | None = None, batch: int = 32) -> np.ndarray:
    from firstwords.edge.encode import make_session

    s = make_session(image_path, threads)
    return np.concatenate([s.run([OUTPUT], {"image": images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def spatial_parity(model, images: np.ndarray, fp32: Path, int8: Path | None, report, threads: int | None = None,
                   max_images: int = 64) -> None:
    """Add the spatial output's centred cosines (torch vs ONNX fp32, fp32 vs int8) to a ParityReport, and a
    failure when one is below the report's thresholds for embeddings of the same kind."""
    from firstwords.export.parity import centred_cosine

    x = np.ascontiguousarray(images[:max_images], np.float32)
    ref = torch_spatial(model, x)
    d = ref.shape[-1]
    fp = onnx_spatial(fp32, x, threads)
    pairs = [("onnx_fp32/spatial (torch)", ref, fp, report.thresholds.fp32_centred_cosine, "ONNX fp32 vs torch")]
    if int8 is not None:
        pairs.append(("onnx_int8/spatial (onnx_fp32)", fp, onnx_spatial(int8, x, threads),
                      report.thresholds.int8_spatial_centred_cosine, "int8 vs fp32"))
    for key, a, b, limit, what in pairs:
        mean, worst = centred_cosine(a.reshape(-1, d), b.reshape(-1, d))
        report.cosine[key] = {"mean": mean, "min": worst}
        if mean < limit:
            report.failures.append(f"{what} spatial output: centred cosine {mean:.6f} < {limit}")
