"""Where a word is in the picture: localisation maps from the bundle's image tower (CVCL's attention-map
analysis, but from the device's own ONNX model), and how often a map's peak falls on the named object.

A bundle exported with the spatial output has a second output on image.onnx, `spatial` float32 [N, h, w, D]:
the tower's last feature map before pooling, each cell projected into the joint space with the tower's own
projection (for average+max pooling, the projection a frame made entirely of that cell would get) and
L2-normalised. A cell's score for a word is its cosine with the word's vector. The manifest records it as
image.spatial = {"output": "spatial", "grid": [h, w]}; bundles without it still load everywhere, and the
report then says that maps need a re-export."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from firstwords.edge.bundle import Bundle
from firstwords.edge.encode import DEFAULT_MAX_BATCH, make_session
from firstwords.edge.errors import BundleError
from firstwords.edge.preprocess import prepare_images
from firstwords.edge.report.png import colormap, resize_bilinear

NEEDS_REEXPORT = ("this bundle has no spatial output, so localisation maps cannot be drawn: re-export it with "
                  "`firstwords export CKPT -o BUNDLE` (the exporter writes the spatial output by default)")


def spatial_spec(bundle: Bundle) -> tuple[str, tuple[int, int]] | None:
    """(output name, (h, w)) of the image tower's spatial output, or None when the bundle has none."""
    sp = bundle.manifest.get("image", {}).get("spatial")
    if not isinstance(sp, dict):
        return None
    grid = sp.get("grid")
    if not isinstance(sp.get("output"), str) or not (isinstance(grid, list) and len(grid) == 2
                                                      and all(type(g) is int and g > 0 for g in grid)):
        raise BundleError(f"{bundle.source}: manifest image.spatial must be {{\"output\": name, \"grid\": [h, w]}}, "
                          f"got {sp!r}; re-export the bundle")
    return sp["output"], (grid[0], grid[1])


class SpatialEncoder:
    """The image tower of a bundle with both outputs: embeddings [N, D] and spatial features [N, h, w, D]."""

    def __init__(self, bundle: Bundle, threads: int | None = None, max_batch: int = DEFAULT_MAX_BATCH):
        spec = spatial_spec(bundle)
        if spec is None:
            raise BundleError(f"{bundle.source}: {NEEDS_REEXPORT}")
        self.bundle, self.output, self.grid = bundle, spec[0], spec[1]
        self.max_batch = max_batch
        self._session = make_session(bundle.image.path, threads,
                                     model_bytes=bundle.read_verified(bundle.image.path))

    def encode(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 H x W x 3 frames -> (embeddings [N, D], spatial [N, h, w, D])."""
        spec = self.bundle.image
        x = prepare_images(list(frames), spec.input_size, spec.mean, spec.std)
        embs, maps = [], []
        for i in range(0, len(x), self.max_batch):
            e, s = self._session.run([spec.output, self.output], {spec.input: x[i:i + self.max_batch]})
            embs.append(e)
            maps.append(s)
        return np.concatenate(embs), np.concatenate(maps)


def word_maps(spatial: np.ndarray, word_vector: np.ndarray) -> np.ndarray:
    """[N, h, w, D] spatial features x a word vector [D] -> cosine maps [N, h, w]."""
    v = np.asarray(word_vector, np.float32)
    v = v / max(float(np.linalg.norm(v)), 1e-12)
    s = spatial / np.maximum(np.linalg.norm(spatial, axis=-1, keepdims=True), 1e-12)
    return s @ v


def peak(score_map: np.ndarray) -> tuple[float, float]:
    """The map's highest cell as (y, x) in [0, 1] frame coordinates (the cell's centre)."""
    h, w = score_map.shape
    i, j = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
    return (i + 0.5) / h, (j + 0.5) / w


def cells_in_box(grid: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """Which cell centres lie in a box (x0, y0, x1, y1) given in [0, 1] frame coordinates: bool [h, w]."""
    h, w = grid
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


@dataclass
class HitRate:
    hits: int
    n: int
    chance: float  # expected hit rate of a peak drawn uniformly over the cells (mean share of cells in the box)
    box_area: float  # mean share of the frame the boxes cover
    per_word: dict[str, tuple[int, int]]

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else 0.0


def hit_rate(spatial: np.ndarray, words: Sequence[str], boxes: Sequence[Sequence[float]],
             vectors: Mapping[str, np.ndarray]) -> HitRate:
    """How often the peak of word i's map over frame i falls in box i ([0, 1] frame coordinates)."""
    grid = spatial.shape[1:3]
    hits, chance, area, per = 0, 0.0, 0.0, {}
    n = 0
    for s, w, box in zip(spatial, words, boxes, strict=True):
        if w not in vectors:
            continue
        m = word_maps(s[None], vectors[w])[0]
        inside = cells_in_box(grid, box)
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        hit = bool(inside[i, j])
        hits += hit
        n += 1
        chance += inside.mean()
        area += (box[2] - box[0]) * (box[3] - box[1])
        h, t = per.get(w, (0, 0))
        per[w] = (h + hit, t + 1)
    return HitRate(hits, n, chance / n if n else 0.0, area / n if n else 0.0, per)


def overlay(frame: np.ndarray, score_map: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The frame with the map (min-max scaled, viridis) blended over it and the peak cell outlined in white."""
    h, w = frame.shape[:2]
    m = score_map.astype(np.float64)
    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
    heat = colormap(resize_bilinear(m, h, w)).astype(np.float64)
    out = (1 - alpha) * frame.astype(np.float64) + alpha * heat
    gh, gw = m.shape
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    y0, y1 = int(i * h / gh), max(int((i + 1) * h / gh) - 1, int(i * h / gh))
    x0, x1 = int(j * w / gw), max(int((j + 1) * w / gw) - 1, int(j * w / gw))
    out[y0:y1 + 1, [x0, x1]] = 255
    out[[y0, y1], x0:x1 + 1] = 255
    return (out + 0.5).clip(0, 255).astype(np.uint8)
