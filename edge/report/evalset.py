"""Evaluation frames for the report: CVCL-style eval metadata ({"data": [{"frame_filename", "category"}]},
paths relative to the file), optionally with the objects' boxes ("boxes": {category: [x0, y0, x1, y1]} in
[0, 1] frame coordinates, as the sample corpus writes them). Frames are read once and encoded once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError

MAX_PER_CATEGORY = 100  # frames per category read for the report (bounded time on a device)


@dataclass
class EvalSet:
    path: Path
    files: list[Path]
    labels: list[str]
    boxes: list[dict[str, list[float]] | None]
    _frames: list[np.ndarray] | None = field(default=None, repr=False)
    _embeddings: np.ndarray | None = field(default=None, repr=False)

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))

    def frames(self) -> list[np.ndarray]:
        if self._frames is None:
            from firstwords.edge.images import read_image

            try:
                self._frames = [read_image(str(p)) for p in self.files]
            except Exception as e:  # OpenCV missing, or an unreadable file: name it
                raise DataError(f"{self.path}: cannot read its frames ({e})") from e
        return self._frames

    def embeddings(self, encoder) -> np.ndarray:
        if self._embeddings is None:
            frames = self.frames()
            self._embeddings = np.concatenate([encoder.encode_image(frames[i:i + 64])
                                               for i in range(0, len(frames), 64)])
        return self._embeddings


def load_eval_set(path: str | Path, max_per_category: int = MAX_PER_CATEGORY) -> EvalSet:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such eval file; give CVCL-style eval metadata (e.g. work/corpus/eval.json) "
                        "or leave --eval-data out")
    try:
        items = json.loads(p.read_text(encoding="utf-8"))["data"]
        entries = [(str(e["frame_filename"]), str(e["category"]), e.get("boxes")) for e in items]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{p}: not eval metadata ({e}); expected {{\"data\": [{{\"frame_filename\": ..., "
                        "\"category\": ...}}, ...]}}") from e
    count: dict[str, int] = {}
    files, labels, boxes = [], [], []
    for name, cat, box in entries:
        if count.get(cat, 0) >= max_per_category:
            continue
        count[cat] = count.get(cat, 0) + 1
        f = p.parent / name
        if not f.is_file():
            raise DataError(f"{p}: frame {name} is missing (looked for {f})")
        files.append(f)
        labels.append(cat)
        boxes.append(box if isinstance(box, dict) else None)
    if not files:
        raise DataError(f"{p}: holds no frames")
    return EvalSet(p, files, labels, boxes)
