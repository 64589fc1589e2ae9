"""What a training step sees: each utterance's tokens, the epoch's batches, one frame per utterance.

Each epoch draws a permutation of the utterances fixed by (seed, epoch) and cuts it into global batches;
per utterance one random frame of its window (CVCL; the first with single_frame), also fixed by (seed,
epoch), so a resumed or multi-process run sees exactly the batches a single uninterrupted run sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from firstwords.edge.errors import DataError
from firstwords.edge.tokenize import Vocab
from firstwords.export.config import DualEncoderConfig
from firstwords.export.features import frames_of
from firstwords.export.loss import infonce_loss
from firstwords.export.model import DualEncoder
from firstwords.export.pairs import PairDataset

log = logging.getLogger(__name__)


class Pairs:
    """Per-utterance tokens and frame choices shared by both training modes."""

    def __init__(self, records, vocab: Vocab, cfg: DualEncoderConfig, *, train: bool, single_frame: bool,
                 shuffled: bool, seed: int):
        self.ds = PairDataset(records, vocab, cfg.image.input_size, cfg.image.mean, cfg.image.std,
                              train=train and not cfg.train.cache_features, single_frame=single_frame,
                              shuffle_pairs=shuffled and train, seed=seed)
        self.tokens = torch.from_numpy(np.stack([t for t, _ in self.ds.tokens]))
        self.n = len(records)


def epoch_plan(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's global batches of utterance indices (a permutation fixed by seed and epoch)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    return [perm[i * batch:(i + 1) * batch] for i in range(n // batch)]


def frame_choice(frame_ids: list[np.ndarray], seed: int, epoch: int, single: bool) -> np.ndarray:
    """One frame (global feature row) per utterance for this epoch, fixed by seed and epoch."""
    rng = np.random.default_rng([seed, epoch, 1])
    return np.array([-1 if len(ids) == 0 else ids[0] if single else ids[rng.integers(len(ids))]
                     for ids in frame_ids], dtype=np.int64)


def frame_order(head: list[Path], records, cap: int) -> tuple[list[Path], list[list[Path]]]:
    """All frames to embed: `head` first, then the records' frames in round-robin order over utterances
    (every utterance's 1st frame, then every 2nd, ...) so that a budget cut still leaves each utterance its
    first frames. Also returns each record's frame list (at most `cap`)."""
    per_rec = [frames_of(r, cap) for r in records]
    order, seen = [], set(head)
    for k in range(max(len(ps) for ps in per_rec)):
        for ps in per_rec:
            if k < len(ps) and ps[k] not in seen:
                seen.add(ps[k])
                order.append(ps[k])
    return head + order, per_rec


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the all-padding columns of a token batch (at least <sos> and <eos> stay)."""
    width = int((tokens != 0).sum(1).max().item())
    return tokens[:, :max(width, 2)]


def val_loss(model: DualEncoder, x_all, tokens: torch.Tensor, batch: int, cached: bool) -> float:
    """InfoNCE over fixed consecutive batches of the validation set (first frames, no augmentation)."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, tokens.shape[0], batch):
            tk = tokens[s:s + batch]
            if tk.shape[0] < 2:
                break
            x = x_all[s:s + batch]
            img = model.encode_image_features(x) if cached else model.encode_image(x)
            loss = infonce_loss(img, model.encode_utterance(trim(tk)), model.logit_scale())
            total += float(loss) * tk.shape[0]
            count += tk.shape[0]
    model.train()
    return total / max(count, 1)


class SafePairs(torch.utils.data.Dataset):
    """PairDataset that never crashes a batch on one bad frame file: it logs and serves a neighbour."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        for k in range(8):
            try:
                return self.ds[(i + k) % len(self.ds)]
            except DataError as e:
                log.warning("skipping a pair: %s", e)
        raise DataError(f"8 consecutive training pairs from #{i} have unreadable frames; "
                        "check the frame files")
