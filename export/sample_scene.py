"""Scenes of the sample corpus: a Fashion-MNIST object tinted and pasted onto one of scikit-image's bundled
photos, with clutter and sometimes a distractor; a head-cam's drifting view of it; the objects' boxes in each
frame (for localisation checks)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, MissingExtraError

# Backgrounds: photos bundled in the scikit-image wheel (no download). Grey ones get a random tint.
BACKGROUNDS = ["grass", "gravel", "brick", "coffee", "chelsea", "astronaut", "rocket", "camera", "coins", "moon",
               "page", "clock", "immunohistochemistry", "hubble_deep_field", "retina", "text"]



def _cv2():
    try:
        import cv2
    except ImportError:
        raise MissingExtraError("building the corpus needs OpenCV: pip install 'firstwords[camera]'") from None
    cv2.setNumThreads(1)
    return cv2


def load_backgrounds() -> list[np.ndarray]:
    try:
        import skimage.data as skd
    except ImportError:
        raise MissingExtraError("building the corpus needs scikit-image's bundled photos: "
                                "pip install 'firstwords[train]'") from None
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
        raise DataError("fewer than 4 scikit-image sample photos load here; reinstall scikit-image")
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


def render_view(scene: Scene, images: np.ndarray, key: list[int], pool, frame: int, cv2, paths: list[Path],
                quality: int) -> list[dict[str, list[float]]]:
    """Render a scene (random stream `key`) and write len(paths) frames of a head-cam's view of it (stream
    key + [2]); returns each frame's object boxes."""
    canvas, boxes = render_scene(scene, images, np.random.default_rng(key), pool, frame, cv2)
    cam = CameraPath(np.random.default_rng([*key, 2]), frame, canvas.shape[0])
    out = []
    for path in paths:
        to_jpeg(cam.next(canvas, cv2), path, cv2, quality)
        out.append(cam.frame_boxes(boxes))
    return out
