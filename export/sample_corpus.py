#!/usr/bin/env python3
"""Build firstwords' sample corpus: a simulated head-cam session of REAL object photos with child-directed speech.

    python tools/build_sample_corpus.py --out work/corpus [--source auto|debian|subset] [--minutes 60] [--seed 0]
    python tools/build_sample_corpus.py --out work/tiny --tiny          # ~150 utterances, seconds
    python tools/build_sample_corpus.py --make-subset data/fashion_mnist_subset.npz   # (maintainers)

Objects are Fashion-MNIST product photos (Zalando, MIT licence), tinted and pasted with a mask onto scikit-image's
bundled photos (random crops, colour jitter) with clutter and sometimes a smaller distractor object. A scene
persists for a few seconds with camera jitter, sampled at 5 frames/s (CVCL's rate); a parent speaks utterances
from a small grammar: most name nothing in view, some name an absent object, word frequencies are Zipfian. The
child's gaze leaves the scene now and then (--look-away): those frames show another part of the room, half the time
another toy, so a naming window holds frames of the named object and frames of other things.

Output (CVCL's preprocessed format, see docs/CONTRACTS.md): train/val/test.json, transcript.csv, eval.json
(never-seen instances of the training categories in new scenes), novel.json + novel_exposures.json (a category
kept out of training entirely), timeline.json (the continuous session, for video/SRT/soundtrack) and
corpus_info.json. Human summary first; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import math
import os
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# data/ at the checkout's root, installed as firstwords/data: the same place relative to this file
DEFAULT_SUBSET = Path(__file__).resolve().parents[1] / "data" / "fashion_mnist_subset.npz"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FORMAT = "firstwords-sample-corpus v1"
FPS = 5.0  # CVCL samples frames at 5 per second
MAX_WINDOW_FRAMES = 32  # CVCL: an utterance's frames run to the next utterance, at most 32
LOOK_AWAY = 0.0  # long-run share of a scene's time the child looks away from its main object (opt-in)
VIDEO_NAME = "session_000"

# Fashion-MNIST class index -> the word a parent would say. Left out: class 6 "Shirt" (hard to tell from
# T-shirt/top, pullover and coat even for people, and "shirt" is T-shirt/top's word) and class 4 "Coat" (at 28 x 28
# it is Fashion-MNIST's most confused class with "Pullover"; with it, frozen ImageNet features reach only ~0.73
# 4-way accuracy in a linear probe on this corpus, ~0.79 without it).
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CLASS_WORDS = {0: "shirt", 1: "pants", 2: "sweater", 3: "dress", 5: "sandal", 7: "shoe", 8: "bag", 9: "boot"}
LEFT_OUT = {"Shirt": "confusable with T-shirt/top, pullover and coat; its word is T-shirt/top's",
            "Coat": "confusable with pullover at 28 x 28"}
SUBSET_CLASSES = (0, 1, 2, 3, 4, 5, 7, 8, 9)  # the committed subset keeps Coat too (frozen file; reproducible)
# Things are kept together (shoes by the door, clothes in the wardrobe): what the child sees on looking away from
# an object is mostly something of the same kind. Cross-situational learners find such consistent company hard.
PLACES = [("shirt", "pants", "sweater", "dress", "coat"), ("sandal", "shoe", "boot")]
SAME_PLACE = 0.8  # chance the other toy seen on looking away is kept with the main object
NOVEL_CATEGORY = "bag"  # never in a training frame or utterance; for the memory's few-shot test
TINY_CATEGORIES = ["shirt", "pants", "shoe", "boot"]

# Backgrounds: photos bundled in the scikit-image wheel (no download). Grey ones get a random tint.
BACKGROUNDS = ["grass", "gravel", "brick", "coffee", "chelsea", "astronaut", "rocket", "camera", "coins", "moon",
               "page", "clock", "immunohistochemistry", "hubble_deep_field", "retina", "text"]

# Child-directed speech, most common first: template choice is Zipfian by rank, so word frequencies come out
# Zipfian with function words everywhere. {w} is a category word.
NAMING = ["look at the {w}", "where's the {w}?", "that's a {w}", "look at your {w}!", "see the {w}?",
          "is that a {w}?", "the {w}", "you want the {w}?", "here's your {w}", "{w}!", "can you find the {w}?",
          "it's a {w}", "a {w}", "where is your {w}?", "oh a big {w}", "do you like the {w}?", "give me the {w}",
          "i see a {w}", "what a nice {w}", "let's put the {w} away", "that's your {w}", "you have a {w}",
          "can you say {w}?", "the {w} is here", "touch the {w}"]
CHATTER = ["look at that", "all done", "you want more?", "good job", "put it on", "what's that?", "okay",
           "yeah", "here you go", "come here", "oh my", "that's it", "are you hungry?", "let's go", "uh oh",
           "you did it", "where did it go?", "can you see it?", "no no", "what do you see?", "look!", "yes",
           "there you go", "let me see", "who's that?", "you're so silly", "it's time for a nap", "up you go",
           "do you want to play?", "let's play", "all gone", "thank you", "peekaboo", "bye bye", "hi baby",
           "it's okay", "is it nice?", "what are you doing?", "i know", "one more time", "that's funny",
           "where are you going?", "you like that?", "careful", "sit down please", "what is it?", "wow",
           "let's clean up", "are you tired?", "i love you"]


@dataclass
class Sizes:
    frame: int = 128
    minutes: float = 80.0
    eval_per_category: int = 100
    novel_eval: int = 100
    novel_exposures: int = 24
    categories: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path) -> np.ndarray:
    """An idx-format array (MNIST's), optionally gzipped."""
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load_debian(root: Path = DEBIAN_DIR) -> dict[str, np.ndarray]:
    return {"train_x": read_idx(root / "train-images-idx3-ubyte.gz"),
            "train_y": read_idx(root / "train-labels-idx1-ubyte.gz"),
            "test_x": read_idx(root / "t10k-images-idx3-ubyte.gz"),
            "test_y": read_idx(root / "t10k-labels-idx1-ubyte.gz")}


def load_subset(path: Path = DEFAULT_SUBSET) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}


def make_subset(out: Path, per_class_train: int = 300, per_class_test: int = 100, seed: int = 0) -> dict:
    """The committed subset: a fixed random sample per used class from Debian's full Fashion-MNIST.
    Keeps the original indices (train_idx / test_idx) so anyone can check it against the source."""
    full = load_debian()
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {k: [] for k in ("train_x", "train_y", "train_idx", "test_x", "test_y", "test_idx")}
    for cls in SUBSET_CLASSES:
        for split, n in (("train", per_class_train), ("test", per_class_test)):
            idx = np.sort(rng.choice(np.flatnonzero(full[f"{split}_y"] == cls), size=n, replace=False))
            parts[f"{split}_x"].append(full[f"{split}_x"][idx])
            parts[f"{split}_y"].append(full[f"{split}_y"][idx])
            parts[f"{split}_idx"].append(idx.astype(np.int32))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return {"path": str(out), "bytes": out.stat().st_size, "train": len(arrays["train_y"]),
            "test": len(arrays["test_y"]), "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def load_source(source: str) -> tuple[dict[str, np.ndarray], str]:
    debian_ok = (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file()
    if source == "debian" and not debian_ok:
        sys.exit(f"error: {DEBIAN_DIR} has no Fashion-MNIST; install it (sudo apt-get install "
                 "dataset-fashion-mnist) or use --source subset")
    if source == "debian" or (source == "auto" and debian_ok):
        return load_debian(), f"debian:{DEBIAN_DIR}"
    if not DEFAULT_SUBSET.is_file():
        sys.exit(f"error: the committed subset {DEFAULT_SUBSET} is missing; restore it from git or install "
                 "dataset-fashion-mnist and use --source debian")
    return load_subset(), f"subset:data/{DEFAULT_SUBSET.name}"


# ------------------------------------------------------------------------------------------------- imaging


def _cv2():
    try:
        import cv2
    except ImportError:
        sys.exit("error: building the corpus needs OpenCV: pip install 'firstwords[camera]'")
    cv2.setNumThreads(1)
    return cv2


def load_backgrounds() -> list[np.ndarray]:
    try:
        import skimage.data as skd
    except ImportError:
        sys.exit("error: building the corpus needs scikit-image's bundled photos: pip install 'firstwords[train]'")
    out = []
    for name in BACKGROUNDS:
        try:
            img = np.asarray(getattr(skd, name)())
        except Exception as e:  # noqa: BLE001 - a photo missing from this scikit-image version: use the others
            print(f"note: background {name!r} unavailable ({type(e).__name__}); skipped", file=sys.stderr)
            continue
        if img.dtype != np.uint8:
            continue
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(img[:, :, :3]))
    if len(out) < 4:
        sys.exit("error: fewer than 4 scikit-image sample photos load here; reinstall scikit-image")
    return out


def random_colour(rng: np.random.Generator, sat=(0.35, 0.95), val=(0.45, 1.0)) -> np.ndarray:
    """An RGB colour in [0, 1] from a random hue."""
    h, s, v = rng.uniform(0, 6), rng.uniform(*sat), rng.uniform(*val)
    i, f = int(h) % 6, h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def background(rng: np.random.Generator, pool: list[np.ndarray], size: int, cv2) -> np.ndarray:
    """A random crop of a random photo, resized to size x size, colour-jittered; float32 [0, 1]."""
    src = pool[rng.integers(len(pool))]
    h, w = src.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    img = cv2.resize(src[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.4, 1.3)  # saturation
    img = img * (0.6 + 0.6 * random_colour(rng, sat=(0.0, 0.4), val=(0.8, 1.0)))  # tint (grey photos too)
    img = (img - 0.5) * rng.uniform(0.6, 1.1) + 0.5 * rng.uniform(0.8, 1.2)  # contrast, brightness
    # a head-cam's soft focus on the surroundings (and smaller JPEGs than crisp texture)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.4) * size / 128)
    return np.clip(img, 0, 1)


# Typical colours of each kind of thing (jeans are blue, boots brown or black), RGB in [0, 1]. An object takes
# one of its kind's colours (jittered) 60 % of the time and any colour otherwise: a real, imperfect cue, as in a
# child's world; held-out instances are coloured the same way.
PALETTES = {
    "shirt": [(0.95, 0.95, 0.92), (0.9, 0.3, 0.3), (0.3, 0.55, 0.9), (0.95, 0.85, 0.3)],
    "pants": [(0.2, 0.3, 0.6), (0.15, 0.15, 0.18), (0.65, 0.55, 0.4), (0.35, 0.45, 0.75)],
    "sweater": [(0.75, 0.15, 0.2), (0.2, 0.5, 0.3), (0.85, 0.75, 0.6), (0.45, 0.3, 0.6)],
    "dress": [(0.9, 0.4, 0.65), (0.85, 0.15, 0.25), (0.65, 0.4, 0.85), (0.95, 0.8, 0.35)],
    "sandal": [(0.75, 0.55, 0.35), (0.55, 0.35, 0.2), (0.85, 0.7, 0.35)],
    "shoe": [(0.95, 0.95, 0.95), (0.55, 0.6, 0.65), (0.2, 0.6, 0.9), (0.9, 0.3, 0.2)],
    "boot": [(0.4, 0.25, 0.15), (0.12, 0.1, 0.1), (0.6, 0.45, 0.3)],
    "bag": [(0.5, 0.3, 0.2), (0.2, 0.2, 0.2), (0.8, 0.2, 0.3), (0.85, 0.75, 0.55)],
}


def object_colour(rng: np.random.Generator, category: str | None) -> np.ndarray:
    pal = PALETTES.get(category or "")
    if pal and rng.random() < 0.6:
        base = np.array(pal[rng.integers(len(pal))], dtype=np.float32)
        return np.clip(base * rng.uniform(0.8, 1.15) + rng.normal(0, 0.05, 3), 0.05, 1).astype(np.float32)
    return random_colour(rng)


def object_sprite(grey28: np.ndarray, rng: np.random.Generator, extent: int, cv2, category: str | None = None):
    """Tint a grey Fashion-MNIST image and cut it out: (rgb float32 h x w x 3, alpha float32 h x w).
    `extent` is the object's longer side in pixels."""
    g = grey28.astype(np.float32) / 255.0
    mask = g > 0.03
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        ys, xs = np.array([0, 27]), np.array([0, 27])
    g = g[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = g.shape
    scale = extent / max(h, w)
    nh, nw = max(2, round(h * scale)), max(2, round(w * scale))
    g = cv2.resize(g, (nw, nh), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    alpha = np.clip((g - 0.02) / 0.08, 0, 1)  # soft edge from the object's own pixels
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0.7)
    colour = object_colour(rng, category)
    shade = 0.25 + 0.75 * g[:, :, None]  # keeps the photo's texture and folds
    rgb = colour[None, None, :] * shade
    if rng.random() < 0.3:  # a second colour on the brighter parts (print, stripes of light)
        rgb = np.where(g[:, :, None] > rng.uniform(0.5, 0.8), random_colour(rng)[None, None, :] * shade, rgb)
    return rgb.astype(np.float32), alpha.astype(np.float32)


def paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, cy: int, cx: int,
          shadow: bool = True) -> None:
    """Alpha-blend a sprite centred at (cy, cx), clipped at the canvas border; in place."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    y0, x0 = cy - h // 2, cx - w // 2
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(h, H - y0), min(w, W - x0)
    if ye <= ys or xe <= xs:
        return
    if shadow:  # a soft drop shadow so the object sits on the scene
        off = max(1, h // 25)
        sy0, sx0 = y0 + off, x0 + off
        sys_, sxs = max(0, -sy0), max(0, -sx0)
        sye, sxe = min(h, H - sy0), min(w, W - sx0)
        if sye > sys_ and sxe > sxs:
            a = 0.35 * alpha[sys_:sye, sxs:sxe, None]
            region = canvas[sy0 + sys_:sy0 + sye, sx0 + sxs:sx0 + sxe]
            region *= 1 - a
    a = alpha[ys:ye, xs:xe, None]
    region = canvas[y0 + ys:y0 + ye, x0 + xs:x0 + xe]
    region[:] = region * (1 - a) + rgb[ys:ye, xs:xe] * a


def clutter(canvas: np.ndarray, rng: np.random.Generator, pool: list[np.ndarray], cv2, n: int) -> None:
    """Small textured blobs (toys, furniture edges) so scenes are not clean."""
    H = canvas.shape[0]
    for _ in range(n):
        s = int(H * rng.uniform(0.08, 0.25))
        patch = background(rng, pool, s, cv2)
        m = np.zeros((s, s), np.float32)
        if rng.random() < 0.5:
            cv2.ellipse(m, (s // 2, s // 2), (s // 2 - 1, int(s * rng.uniform(0.2, 0.5))),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        else:
            cv2.rectangle(m, (int(s * 0.1), int(s * 0.2)), (int(s * 0.9), int(s * 0.8)), 1.0, -1)
        m = cv2.GaussianBlur(m, (5, 5), 1.0)
        paste(canvas, patch, m, int(rng.integers(0, H)), int(rng.integers(0, H)), shadow=False)


@dataclass
class Scene:
    """One episode's scene, rendered once on a canvas larger than the frame so the camera can move."""
    primary: str | None
    primary_instance: int | None
    distractor: str | None
    distractor_instance: int | None


def _sprite_box(alpha: np.ndarray, cy: int, cx: int) -> list[float]:
    """The canvas box (x0, y0, x1, y1) of a sprite's opaque part when pasted centred at (cy, cx)."""
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        ys, xs = np.array([0, alpha.shape[0] - 1]), np.array([0, alpha.shape[1] - 1])
    y0, x0 = cy - alpha.shape[0] // 2, cx - alpha.shape[1] // 2
    return [float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1)]


def render_scene(scene: Scene, images: np.ndarray, rng: np.random.Generator, pool, frame: int, cv2,
                 margin: float = 1.25) -> tuple[np.ndarray, dict[str, list[float]]]:
    """The scene's canvas and the boxes of its objects on it ({category: [x0, y0, x1, y1]} in canvas px)."""
    boxes: dict[str, list[float]] = {}
    C = round(frame * margin)
    canvas = background(rng, pool, C, cv2)
    clutter(canvas, rng, pool, cv2, rng.integers(1, 5))
    centre = C / 2
    if scene.distractor is not None:
        rgb, a = object_sprite(images[scene.distractor_instance], rng, int(frame * rng.uniform(0.18, 0.3)), cv2,
                               scene.distractor)
        ang = rng.uniform(0, 2 * math.pi)
        r = frame * rng.uniform(0.28, 0.4)
        cy, cx = int(centre + r * math.sin(ang)), int(centre + r * math.cos(ang))
        paste(canvas, rgb, a, cy, cx)
        boxes[scene.distractor] = _sprite_box(a, cy, cx)
    if scene.primary is not None:
        rgb, a = object_sprite(images[scene.primary_instance], rng, int(frame * rng.uniform(0.4, 0.7)), cv2,
                               scene.primary)
        # random position, kept mostly inside the frame the camera will see
        slack = max(0.0, (frame - max(a.shape)) / 2)
        cy = centre + rng.uniform(-slack, slack) * 0.9
        cx = centre + rng.uniform(-slack, slack) * 0.9
        paste(canvas, rgb, a, int(cy), int(cx))
        boxes[scene.primary] = _sprite_box(a, int(cy), int(cx))  # the primary drawn last: over the distractor
    canvas *= rng.uniform(0.75, 1.15)  # the episode's lighting
    return canvas, boxes


class CameraPath:
    """A head-cam's small drift: a smooth random walk of shift, zoom and roll."""

    def __init__(self, rng: np.random.Generator, frame: int, canvas: int):
        self.rng, self.frame, self.canvas = rng, frame, canvas
        self.state = np.zeros(4)  # dx, dy (pixels), log zoom, roll (degrees)
        self.vel = np.zeros(4)
        self.matrix = np.eye(2, 3)  # the last frame's canvas -> frame affine map

    def next(self, img: np.ndarray, cv2) -> np.ndarray:
        limit = np.array([(self.canvas - self.frame) / 2 * 0.9, (self.canvas - self.frame) / 2 * 0.9, 0.12, 6.0])
        self.vel = 0.7 * self.vel + self.rng.normal(0, 1, 4) * limit * 0.08
        self.state = np.clip(self.state + self.vel, -limit, limit)
        dx, dy, lz, roll = self.state
        zoom = math.exp(lz)
        c = self.canvas / 2
        M = cv2.getRotationMatrix2D((c + dx, c + dy), roll, zoom)
        M[:, 2] += self.frame / 2 - np.array([c + dx, c + dy])
        self.matrix = M
        out = cv2.warpAffine(img, M, (self.frame, self.frame), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        return out


    def frame_boxes(self, boxes: dict[str, list[float]]) -> dict[str, list[float]]:
        """Canvas boxes -> boxes in the last frame, as [x0, y0, x1, y1] in [0, 1] frame coordinates (the
        bounding box of the moved corners, clipped to the frame); objects out of view are left out."""
        out = {}
        for cat, (x0, y0, x1, y1) in boxes.items():
            corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ self.matrix.T
            lo = np.clip(corners.min(0), 0, self.frame) / self.frame
            hi = np.clip(corners.max(0), 0, self.frame) / self.frame
            if hi[0] - lo[0] > 0.01 and hi[1] - lo[1] > 0.01:
                out[cat] = [round(float(v), 3) for v in (lo[0], lo[1], hi[0], hi[1])]
        return out


def to_jpeg(img: np.ndarray, path: Path, cv2, quality: int = 85) -> None:
    bgr = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)[:, :, ::-1]
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


# ------------------------------------------------------------------------------------------------- speech


def zipf_pick(rng: np.random.Generator, items: list[str], exponent: float = 1.0) -> str:
    w = 1.0 / np.arange(1, len(items) + 1) ** exponent
    return items[rng.choice(len(items), p=w / w.sum())]


def utterance_for(rng: np.random.Generator, primary: str | None, in_view: list[str], categories: list[str],
                  cat_weights: np.ndarray, p_name_in_view: float,
                  p_name_absent: float) -> tuple[str, list[str], str]:
    """(text, categories named, kind) with kind in {"in_view", "absent", "none"}. In view, the parent names the
    main object (the one the child attends to); an absent name is of nothing in view."""
    r = rng.random()
    if primary is not None and r < p_name_in_view:
        return zipf_pick(rng, NAMING).format(w=primary), [primary], "in_view"
    if r < (p_name_in_view if primary is not None else 0.0) + p_name_absent:
        others = [c for c in categories if c not in in_view]
        w = np.array([cat_weights[categories.index(c)] for c in others])
        word = others[rng.choice(len(others), p=w / w.sum())]
        return zipf_pick(rng, NAMING).format(w=word), [word], "absent"
    return zipf_pick(rng, CHATTER, 0.9), [], "none"


def speech_seconds(text: str, rng: np.random.Generator) -> float:
    return 0.3 + 0.24 * len(text.split()) + rng.uniform(0, 0.2)


# -------------------------------------------------------------------------------------------------- build


_WORKER: dict = {}  # what episode renderers share (set before forking)


def gaze_path(rng: np.random.Generator, n_frames: int, look_away: float) -> list[bool]:
    """Per frame of a scene, whether the child looks at the scene's main object (True) or away (False).

    A head-cam does not stay on what is being named: infants look away and back within seconds (Yu & Smith
    2012 report sustained looks of a few seconds). A two-state chain with exponential dwell times, starting on the
    object (a scene is what the child turned to); `look_away` is the long-run share of time spent looking away."""
    if look_away <= 0.0:
        return [True] * n_frames
    on_mean = 2.4  # seconds of a look at the object (mean)
    away_mean = on_mean * look_away / (1.0 - look_away)
    out: list[bool] = []
    state = True
    while len(out) < n_frames:
        dwell = rng.exponential(on_mean if state else away_mean)
        out += [state] * max(1, round(dwell * FPS))
        state = not state
    return out[:n_frames]


def _render_episode(job: tuple) -> tuple[int, list[dict]]:
    """Render one scene's frames; deterministic from (seed, episode) whatever the worker or order. Returns the
    first frame's number and each frame's object boxes."""
    ep, scene, away_scene, gaze, k0 = job
    w = _WORKER
    cv2 = _cv2()
    canvas, boxes = render_scene(scene, w["images"], np.random.default_rng([w["seed"], ep, 1]), w["pool"], w["frame"],
                          cv2)
    cam = CameraPath(np.random.default_rng([w["seed"], ep, 2]), w["frame"], canvas.shape[0])
    away = away_cam = None
    away_boxes: dict = {}
    if not all(gaze):  # what the child sees when looking away: another part of the room, maybe another toy
        away, away_boxes = render_scene(away_scene, w["images"], np.random.default_rng([w["seed"], ep, 4]), w["pool"],
                            w["frame"], cv2)
        away_cam = CameraPath(np.random.default_rng([w["seed"], ep, 5]), w["frame"], away.shape[0])
    frame_boxes = []
    for i, on in enumerate(gaze):
        img = cam.next(canvas, cv2) if on else away_cam.next(away, cv2)
        frame_boxes.append(cam.frame_boxes(boxes) if on else away_cam.frame_boxes(away_boxes))
        to_jpeg(img, w["out"] / f"frames/{k0 + i:06d}.jpg", cv2, w["quality"])
    return k0, frame_boxes


def build(out: Path, source: str, sizes: Sizes, seed: int, quality: int = 85, progress: bool = True,
          workers: int = 1, look_away: float = LOOK_AWAY) -> dict:
    t0 = time.perf_counter()
    cv2 = _cv2()
    data, source_name = load_source(source)
    pool = load_backgrounds()
    rng = np.random.default_rng(seed)
    cats = sizes.categories
    word_to_class = {w: c for c, w in CLASS_WORDS.items()}
    F = sizes.frame

    # Instances: training scenes draw from Fashion-MNIST's train split, held-out sets from its test split,
    # so an eval instance is never in a training frame. The novel category's train-split images are only
    # used for its exposures, its test-split images only for novel.json.
    def pool_of(split: str, word: str) -> np.ndarray:
        return rng.permutation(np.flatnonzero(data[f"{split}_y"] == word_to_class[word]))

    train_pool = {w: pool_of("train", w) for w in cats}
    test_pool = {w: pool_of("test", w) for w in cats}
    novel_train, novel_test = pool_of("train", NOVEL_CATEGORY), pool_of("test", NOVEL_CATEGORY)
    for w in cats:
        if len(test_pool[w]) < sizes.eval_per_category:
            raise SystemExit(f"error: only {len(test_pool[w])} held-out {w!r} images; lower the eval size")
    n_novel_eval = min(sizes.novel_eval, len(novel_test))
    n_exposures = min(sizes.novel_exposures, len(novel_train))
    cursor = dict.fromkeys(cats, 0)

    def next_instance(word: str) -> int:
        p = train_pool[word]
        i = int(p[cursor[word] % len(p)])  # cycles when the session is longer than the pool
        cursor[word] += 1
        return i

    # Category frequencies: mildly Zipfian (rank^-0.5), as a child sees some things more than others.
    cat_weights = 1.0 / np.arange(1, len(cats) + 1) ** 0.5
    cat_weights = cat_weights / cat_weights.sum()
    cat_order = list(rng.permutation(cats))
    cat_w = np.array([cat_weights[cat_order.index(c)] for c in cats])

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("frames", "eval_frames", "novel_frames"):
        (out / sub).mkdir(exist_ok=True)
        for old in (out / sub).glob("*.jpg"):  # a rebuild replaces, never mixes, frames
            old.unlink()

    # ---- plan and render the session, episode by episode
    total = sizes.minutes * 60.0
    frames_meta: list[dict] = []
    utterances: list[dict] = []
    episodes: list[dict] = []
    t = 0.0
    jobs: list[tuple] = []
    while t < total:
        ep = len(episodes)
        has_obj = rng.random() > 0.12
        primary = cats[rng.choice(len(cats), p=cat_w)] if has_obj else None
        distractor = None
        if has_obj and rng.random() < 0.25:  # an empty scene stays empty (clutter only)
            distractor = cats[rng.choice(len(cats), p=cat_w)]
            while distractor == primary:
                distractor = cats[rng.choice(len(cats), p=cat_w)]
        scene = Scene(primary, next_instance(primary) if primary else None,
                      distractor, next_instance(distractor) if distractor else None)
        looked_at = [c for c in (primary, distractor) if c]  # in view while the child looks at the scene
        # looking away shows another part of the room: half the time another toy (a category not in the scene)
        grng = np.random.default_rng([seed, ep, 3])
        away_obj = None
        if primary is not None and look_away > 0 and grng.random() < 0.5:
            others = [c for c in cats if c not in looked_at]
            place = next((pl for pl in PLACES if primary in pl), ())
            near = [c for c in others if c in place]
            if near and grng.random() < SAME_PLACE:
                others = near
            w_o = np.array([cat_w[cats.index(c)] for c in others])
            away_obj = others[grng.choice(len(others), p=w_o / w_o.sum())]
        away_scene = Scene(away_obj, next_instance(away_obj) if away_obj else None, None, None)
        in_view = looked_at + ([away_obj] if away_obj else [])  # in the room: never named as absent
        # utterances of this episode: a few, with gaps; the scene lasts until the last one's window ends
        ep_start = t
        n_utt = int(rng.integers(1, 4))
        for _ in range(n_utt):
            text, named, kind = utterance_for(rng, primary, in_view, cats, cat_w, 0.47, 0.10)
            dur = speech_seconds(text, rng)
            gap = 0.1 + float(min(rng.exponential(0.5), 4.0))
            utterances.append({"text": text, "start": round(t, 2), "end": round(t + dur, 2), "named": named,
                               "kind": kind, "in_view": in_view, "episode": ep,
                               "speaker": "M" if rng.random() < 0.8 else "F"})
            t += dur + gap
        ep_end = max(t, ep_start + 2.0)  # a scene lasts at least 2 s
        t = ep_end
        # frames at 5 fps: frame k is at time k / FPS; rendered below, in parallel
        k0, k1 = math.ceil(round(ep_start * FPS, 6)), math.ceil(round(ep_end * FPS, 6))
        gaze = gaze_path(grng, k1 - k0, look_away if primary is not None else 0.0)
        for k, on in zip(range(k0, k1), gaze):
            frames_meta.append({"t": round(k / FPS, 2), "file": f"frames/{k:06d}.jpg",
                                "in_view": looked_at if on else ([away_obj] if away_obj else []),
                                "episode": ep, "looking": "scene" if on else "away"})
        jobs.append((ep, scene, away_scene, gaze, k0))
        episodes.append({"episode": ep, "start": round(ep_start, 2), "end": round(ep_end, 2),
                         "primary": primary, "distractor": distractor, "away": away_obj,
                         "instances": [f"train:{i}" for i in (scene.primary_instance, scene.distractor_instance,
                                                               away_scene.primary_instance) if i is not None],
                         "frames": [k0, k1], "looking_at_scene": round(sum(gaze) / max(len(gaze), 1), 3)})
    duration = t
    bar = _bar(total=len(frames_meta), desc="session frames", unit="frame", enabled=progress)
    _WORKER.update(images=data["train_x"], pool=pool, seed=seed, frame=F, quality=quality, out=out)
    by_frame = {round(m["t"] * FPS): m for m in frames_meta}

    def rendered(k0: int, frame_boxes: list[dict]) -> None:
        for i, b in enumerate(frame_boxes):
            by_frame[k0 + i]["boxes"] = b  # where each object in view is: for localisation checks
        bar.update(len(frame_boxes))

    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as procs:  # children inherit _WORKER
            for k0, frame_boxes in procs.imap_unordered(_render_episode, jobs, chunksize=8):
                rendered(k0, frame_boxes)
    else:
        for job in jobs:
            rendered(*_render_episode(job))
    bar.close()

    # ---- CVCL records: frames from the utterance's start to the next utterance's start (1..32 frames)
    frame_of = by_frame
    records = []
    for i, u in enumerate(utterances):
        nxt = utterances[i + 1]["start"] if i + 1 < len(utterances) else duration
        ks = list(range(math.ceil(round(u["start"] * FPS, 6)), math.ceil(round(nxt * FPS, 6))))
        ks = [k for k in ks if k in frame_of][:MAX_WINDOW_FRAMES]
        if not ks:
            ks = [min(frame_of, key=lambda k: abs(k / FPS - u["start"]))]
        u["frames"] = [ks[0], ks[-1] + 1]
        records.append({"utterance": u["text"], "frame_filenames": [frame_of[k]["file"] for k in ks],
                        "timestamps": [round(k / FPS, 2) for k in ks], "utterance_num": i,
                        "num_frames": len(ks), "video": VIDEO_NAME, "start_time": u["start"],
                        "end_time": u["end"], "speaker": u["speaker"], "categories_in_view": u["in_view"],
                        "named": u["named"]})
    # how often a naming window's frame shows what is named (CVCL's frame sampling sees the same odds)
    shown = [named in frame_of[k]["in_view"] for u in utterances if u["kind"] == "in_view"
             for named in u["named"] for k in range(*u["frames"])]
    order = rng.permutation(len(records))  # CVCL: shuffle, then split 90/5/5 by utterance
    n_val = n_test = max(1, int(0.05 * len(records)))
    splits = {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
              "test": sorted(order[n_val:n_val + n_test])}
    for split, idx in splits.items():
        _write_json(out / f"{split}.json", {"data": [records[i] for i in idx]})
        for i in idx:
            utterances[i]["split"] = split

    with open(out / "transcript.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Time", "Video Name", "Utterance", "Speaker"])
        for u in utterances:
            m, s = divmod(u["start"], 60)
            w.writerow([f"{int(m)}:{s:04.1f}", f"{VIDEO_NAME}.mp4", u["text"], u["speaker"]])

    # ---- held-out evaluation: never-seen instances in new scenes (single frames, no camera path)
    def still(word: str, instance: int, images: np.ndarray, name: str, salt: int) -> dict[str, list[float]]:
        others = [c for c in cats if c != word]
        distractor = others[rng.integers(len(others))] if rng.random() < 0.25 else None
        # a distractor here is another held-out (test-split) instance: eval scenes hold no training instance
        d_inst = int(test_pool[distractor][rng.integers(len(test_pool[distractor]))]) if distractor else None
        scene = Scene(word, instance, distractor, d_inst)
        canvas, boxes = render_scene(scene, images, np.random.default_rng([seed, salt]), pool, F, cv2)
        cam = CameraPath(np.random.default_rng([seed, salt, 2]), F, canvas.shape[0])
        to_jpeg(cam.next(canvas, cv2), out / name, cv2, quality)
        return cam.frame_boxes(boxes)

    eval_items = []
    n_eval = sizes.eval_per_category * len(cats) + n_novel_eval + n_exposures
    bar = _bar(total=n_eval, desc="held-out images", unit="img", enabled=progress)
    for w in cats:
        for j in range(sizes.eval_per_category):
            inst = int(test_pool[w][j])
            name = f"eval_frames/{len(eval_items) + 1:06d}.jpg"
            boxes = still(w, inst, data["test_x"], name, 10_000_000 + len(eval_items))
            eval_items.append({"category": w, "frame_filename": name, "instance": f"test:{inst}", "boxes": boxes})
            bar.update()
    _write_json(out / "eval.json", {"data": eval_items})

    novel_items = []
    for j in range(n_novel_eval):
        inst = int(novel_test[j])
        name = f"novel_frames/{j + 1:06d}.jpg"
        boxes = still(NOVEL_CATEGORY, inst, data["test_x"], name, 20_000_000 + j)
        novel_items.append({"category": NOVEL_CATEGORY, "frame_filename": name, "instance": f"test:{inst}",
                            "boxes": boxes})
        bar.update()
    _write_json(out / "novel.json", {"data": novel_items})

    exposures = []
    for j in range(n_exposures):  # a short head-cam window naming the novel object, 5 frames each
        inst = int(novel_train[j])
        scene = Scene(NOVEL_CATEGORY, inst, None, None)
        canvas, _ = render_scene(scene, data["train_x"], np.random.default_rng([seed, 30_000_000 + j]), pool, F,
                                 cv2)
        cam = CameraPath(np.random.default_rng([seed, 30_000_000 + j, 2]), F, canvas.shape[0])
        names = []
        for k in range(5):
            name = f"novel_frames/exp_{j + 1:04d}_{k}.jpg"
            to_jpeg(cam.next(canvas, cv2), out / name, cv2, quality)
            names.append(name)
        text = zipf_pick(rng, NAMING).format(w=NOVEL_CATEGORY)
        exposures.append({"utterance": text, "frame_filename": names[0], "frame_filenames": names,
                          "timestamps": [round(k / FPS, 2) for k in range(5)], "category": NOVEL_CATEGORY,
                          "instance": f"train:{inst}"})
        bar.update()
    bar.close()
    _write_json(out / "novel_exposures.json", {"data": exposures})

    # ---- the continuous session, for a video + SRT + soundtrack
    _write_json(out / "timeline.json", {
        "format": FORMAT, "video": VIDEO_NAME, "fps": FPS, "frame_size": F, "duration": round(duration, 2),
        "frames": frames_meta,
        "utterances": [{"index": i, "text": u["text"], "start": u["start"], "end": u["end"],
                        "speaker": u["speaker"], "named": u["named"], "kind": u["kind"], "in_view": u["in_view"],
                        "episode": u["episode"], "split": u["split"], "frames": u["frames"]}
                       for i, u in enumerate(utterances)],
        "episodes": episodes})

    # ---- summary figures
    from_train = [utterances[i] for i in splits["train"]]
    word_counts = Counter(w for u in from_train for w in _words(u["text"]))
    kinds = Counter(u["kind"] for u in utterances)
    n_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    seconds = time.perf_counter() - t0
    info = {
        "format": FORMAT, "seed": seed, "source": source_name, "frame_size": F, "fps": FPS,
        "jpeg_quality": quality, "minutes": round(duration / 60, 2),
        "categories": cats, "novel_category": NOVEL_CATEGORY,
        "class_words": {FASHION_CLASSES[c]: w for c, w in CLASS_WORDS.items()},
        "left_out_classes": LEFT_OUT,
        "counts": {"utterances": len(utterances), "train": len(splits["train"]), "val": len(splits["val"]),
                   "test": len(splits["test"]), "frames": len(frames_meta), "episodes": len(episodes),
                   "eval_images": len(eval_items), "eval_per_category": sizes.eval_per_category,
                   "novel_eval_images": len(novel_items), "novel_exposures": len(exposures)},
        "utterance_kinds": {"names_in_view": round(kinds["in_view"] / len(utterances), 3),
                            "names_absent": round(kinds["absent"] / len(utterances), 3),
                            "names_nothing": round(kinds["none"] / len(utterances), 3)},
        "category_frequency": {c: sum(1 for e in episodes if e["primary"] == c) for c in cats},
        "look_away": look_away,
        "named_object_in_window": round(sum(shown) / max(len(shown), 1), 3),
        "word_frequencies": dict(word_counts.most_common()),
        "zipf_slope": _zipf_slope(word_counts),
        "held_out": "eval/novel instances come from Fashion-MNIST's test split; training scenes use only the "
                    "train split; the novel category appears in no training frame or utterance",
        "bytes": n_bytes, "build_seconds": round(seconds, 1),
    }
    _write_json(out / "corpus_info.json", info, indent=1)
    return info


def _words(text: str) -> list[str]:
    from firstwords.edge.tokenize import words
    return words(text)


def _zipf_slope(counts: Counter) -> float:
    """Least-squares slope of log frequency on log rank (Zipf's law: about -1)."""
    f = np.array(sorted(counts.values(), reverse=True), dtype=np.float64)
    if len(f) < 3:
        return float("nan")
    r = np.arange(1, len(f) + 1)
    return round(float(np.polyfit(np.log(r), np.log(f), 1)[0]), 3)


def _write_json(path: Path, obj: dict, indent: int | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, desc: str, unit: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: python tools/build_sample_corpus.py --out work/corpus")
    ap.add_argument("--out", type=Path, help="output folder (created; frames inside are replaced)")
    ap.add_argument("--source", choices=["auto", "debian", "subset"], default="auto",
                    help="Fashion-MNIST source: Debian's full set, the committed subset, or auto (Debian if "
                         "installed)")
    ap.add_argument("--minutes", type=float, default=None, help="session length (default 80; --tiny: 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frame-size", type=int, default=128,
                    help="frame side in pixels (default 128: the objects are 28x28 photos upscaled, so more "
                         "pixels add bytes, not detail)")
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    ap.add_argument("--look-away", type=float, default=LOOK_AWAY, metavar="SHARE",
                    help=f"share of a scene's time the child looks away from its main object, at another part "
                         f"of the room (default {LOOK_AWAY}; 0: the camera stays on the scene)")
    ap.add_argument("--tiny", action="store_true",
                    help=f"a few minutes, {len(TINY_CATEGORIES)} categories + the novel one, few held-out images "
                         "(tests, quick end-to-end runs)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="processes rendering frames (default: up to 2); output is the same for any number")
    ap.add_argument("--make-subset", type=Path, metavar="NPZ",
                    help="(maintainers) write the committed Fashion-MNIST subset from Debian's full set, then exit")
    args = ap.parse_args(argv)

    if args.make_subset:
        res = make_subset(args.make_subset)
        print(f"wrote {res['path']}: {res['train']} train + {res['test']} held-out images, {res['bytes']} bytes")
        print(json.dumps(res))
        return 0
    if args.out is None:
        ap.error("--out is required")
    if args.tiny:
        sizes = Sizes(frame=args.frame_size, minutes=args.minutes or 4.0, eval_per_category=20, novel_eval=20,
                      novel_exposures=8, categories=list(TINY_CATEGORIES))
    else:
        sizes = Sizes(frame=args.frame_size, minutes=args.minutes or 80.0,
                      categories=[w for c, w in sorted(CLASS_WORDS.items()) if w != NOVEL_CATEGORY])
    if not 32 <= sizes.frame <= 512:
        ap.error("--frame-size must be 32..512")
    if not 0.2 <= sizes.minutes <= 600:
        ap.error("--minutes must be 0.2..600")
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if not 0.0 <= args.look_away <= 0.8:
        ap.error("--look-away must be 0..0.8")
    info = build(args.out, args.source, sizes, args.seed, args.quality, progress=not args.no_progress,
                 workers=args.workers if sys.platform.startswith("linux") else 1, look_away=args.look_away)
    c = info["counts"]
    k = info["utterance_kinds"]
    print(f"sample corpus in {args.out} ({info['source']}, seed {info['seed']}):")
    print(f"  session: {info['minutes']:.1f} min, {c['frames']} frames of {info['frame_size']}x{info['frame_size']} "
          f"at {info['fps']:g} fps, {c['episodes']} scenes")
    print(f"  utterances: {c['utterances']} (train {c['train']} / val {c['val']} / test {c['test']}); "
          f"name something in view {k['names_in_view']:.0%}, name an absent object {k['names_absent']:.0%}, "
          f"name nothing {k['names_nothing']:.0%}; Zipf slope {info['zipf_slope']}")
    print(f"  gaze: looks away {info['look_away']:.0%} of a scene's time; a naming window's frame shows the "
          f"named object {info['named_object_in_window']:.0%} of the time")
    print(f"  categories: {', '.join(info['categories'])}; novel (kept out of training): {info['novel_category']}")
    print(f"  held out: {c['eval_images']} eval images ({c['eval_per_category']}/category), "
          f"{c['novel_eval_images']} novel-category images, {c['novel_exposures']} novel exposures")
    print(f"  {info['bytes'] / 1e6:.1f} MB written in {info['build_seconds']:.1f} s")
    print(json.dumps({"out": str(args.out), "source": info["source"], "seed": info["seed"],
                      "frame_size": info["frame_size"], **c, **k, "zipf_slope": info["zipf_slope"],
                      "named_object_in_window": info["named_object_in_window"],
                      "bytes": info["bytes"], "seconds": info["build_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
