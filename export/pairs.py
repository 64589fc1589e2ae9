"""The training pairs as a torch dataset: (image, tokens) per utterance, with CVCL's augmentation.

Image-mode training (a model config with cache_features false) draws from it; cached-feature training uses
only its tokens and its shuffled-control pairing (`frame_source`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from firstwords.edge.errors import DataError
from firstwords.edge.preprocess import IMAGENET_MEAN, IMAGENET_STD, prepare_images
from firstwords.edge.tokenize import Vocab
from firstwords.export.data import UtteranceRecord, load_frame


def pad_tokens(vocab: Vocab, text: str) -> tuple[np.ndarray, int]:
    ids = vocab.encode(text)
    out = np.zeros(vocab.max_tokens, dtype=np.int64)
    out[: len(ids)] = ids
    return out, len(ids)


class PairDataset(torch.utils.data.Dataset):
    """(image, tokens, n_tokens) pairs for InfoNCE training, one per utterance.

    train=True: a random frame of the utterance's window on each draw (CVCL), RandomResizedCrop(scale 0.2-1,
    ratio 3/4-4/3), Gaussian blur (sigma 0.1-2.0 at 224 px, scaled to image_size) with p=0.5, horizontal flip
    p=0.5, in torch ops. train=False or single_frame=True: the first frame, no augmentation, preprocessed by
    `edge.preprocess.prepare_images` (the device's function). shuffle_pairs=True: each utterance is paired
    with the frames of another utterance (a random derangement fixed by `seed`), CVCL's shuffled control.
    """

    def __init__(self, records: Sequence[UtteranceRecord], vocab: Vocab, image_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                 train: bool = True, single_frame: bool = False, shuffle_pairs: bool = False,
                 seed: int = 0) -> None:
        if not records:
            raise DataError("PairDataset got no records; check the metadata file loaded any")
        if image_size < 8:
            raise DataError(f"image_size must be at least 8 pixels, got {image_size}")
        self.records = list(records)
        self.vocab = vocab
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = train
        self.single_frame = single_frame or not train
        self.shuffle_pairs = shuffle_pairs
        n = len(self.records)
        if shuffle_pairs and n > 1:
            order = np.random.default_rng(seed).permutation(n)
            self.frame_source = np.empty(n, dtype=np.int64)
            self.frame_source[order] = np.roll(order, -1)  # a random cycle: nobody keeps their own frames
        else:
            self.frame_source = np.arange(n, dtype=np.int64)
        self.tokens = [pad_tokens(vocab, r.utterance) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[int(self.frame_source[i])]
        k = 0 if self.single_frame else int(torch.randint(len(rec.frame_paths), (1,)).item())
        frame = load_frame(rec.frame_paths[k])
        if not self.single_frame:
            image = self._augment(torch.from_numpy(frame))
        else:
            image = torch.from_numpy(prepare_images([frame], self.image_size, self.mean, self.std)[0])
        tokens, n = self.tokens[i]
        return image, torch.from_numpy(tokens.copy()), n

    def _augment(self, frame):
        """uint8 HxWx3 tensor -> normalised float32 [3, S, S] with CVCL's training augmentation."""
        F = torch.nn.functional
        h, w = frame.shape[:2]
        top, left, ch, cw = random_resized_crop_box(h, w, torch)
        x = frame[top:top + ch, left:left + cw].permute(2, 0, 1).float().unsqueeze(0) / 255.0
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=True)
        if torch.rand(()) < 0.5:
            sigma = float(torch.empty(()).uniform_(0.1, 2.0)) * self.image_size / 224
            x = gaussian_blur(x, sigma, torch)
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x.clamp(0, 1) - mean) / std)[0].contiguous()


def random_resized_crop_box(h: int, w: int, torch, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop box sampling: (top, left, height, width)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(*scale))
        ar = math.exp(float(torch.empty(()).uniform_(*log_r)))
        cw = round(math.sqrt(target * ar))
        ch = round(math.sqrt(target / ar))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)).item())
            left = int(torch.randint(0, w - cw + 1, (1,)).item())
            return top, left, ch, cw
    side = min(h, w)  # fallback: a centre crop
    return (h - side) // 2, (w - side) // 2, side, side


def gaussian_blur(x, sigma: float, torch):
    """Separable Gaussian blur of [N, C, H, W] with reflect padding; kernel radius 3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-1] // 2 - 1, x.shape[-2] // 2 - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    F = torch.nn.functional
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
