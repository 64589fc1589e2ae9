"""A small synthetic corpus in CVCL's metadata format for the training / evaluation tests (seconds to build).

Frames are 32 px: a coloured square (the "object") at a random place on a noisy grey background. Utterances
name the colour ("look at the red") for most windows, chatter for some, as the sample corpus does. Paired with
a 32 px, from-scratch `compact`-style config so no pretrained weights are loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230), "yellow": (230, 220, 30),
           "purple": (150, 40, 200)}
CHATTER = ["all done", "good job", "okay", "look at that"]


def _frame(rng, colour) -> np.ndarray:
    img = rng.integers(90, 160, size=(32, 32, 3)).astype(np.uint8)
    s = int(rng.integers(10, 18))
    y, x = rng.integers(0, 32 - s, size=2)
    img[y:y + s, x:x + s] = np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255)
    return img


def _save(img: np.ndarray, path: Path) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def build(root: Path, n_train: int = 96, n_val: int = 16, n_eval_per: int = 8, frames: int = 3,
          seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = sorted(COLOURS)
    k = 0

    def records(n, split):
        nonlocal k
        out = []
        for i in range(n):
            w = words[int(rng.integers(len(words)))]
            text = f"look at the {w}" if rng.random() < 0.8 else CHATTER[int(rng.integers(len(CHATTER)))]
            names = []
            for _ in range(frames):
                name = f"frames/{split}_{k:05d}.png"
                k += 1
                _save(_frame(rng, COLOURS[w]), root / name)
                names.append(name)
            out.append({"utterance": text, "frame_filenames": names,
                        "timestamps": [i * 2.0 + j * 0.2 for j in range(frames)], "utterance_num": i})
        return out

    (root / "train.json").write_text(json.dumps({"data": records(n_train, "train")}))
    (root / "val.json").write_text(json.dumps({"data": records(n_val, "val")}))
    ev = []
    for w in words:
        for j in range(n_eval_per):
            name = f"eval_frames/{w}_{j}.png"
            _save(_frame(rng, COLOURS[w]), root / name)
            ev.append({"category": w, "frame_filename": name})
    (root / "eval.json").write_text(json.dumps({"data": ev}))
    return root


def tiny_config(path: Path, cache: bool = True, **train) -> Path:
    """compact, shrunk: 32 px, 16-d; cached features of the frozen ImageNet backbone, or image mode from
    scratch."""
    from firstwords.export.config import load_model_config

    d = load_model_config("compact").to_dict()
    d["name"] = "tiny_test"
    d["embedding_dim"] = 16
    d["image"].update(input_size=32, pretrained="imagenet" if cache else "none", frozen=cache)
    d["train"].update(batch_size=16, lr=3e-3, head_lr=3e-3, epochs=20, cache_features=cache,
                      feature_dropout=0.0, max_frames_per_utterance=0, plateau_patience=2)
    d["train"].update(train)
    path.write_text(json.dumps(d))
    return path
