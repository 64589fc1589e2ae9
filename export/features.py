"""Cached backbone features: a frozen backbone runs once per frame, training then works on its features.

The frames go through the device's preprocessing (`edge.preprocess.prepare_images`, inside
`export.evaluate.embed_images`) and a copy of the backbone with BatchNorm folded into its convolutions.
Features are cached on disk (np.save, no pickle) under a key of the preprocessing and the frame files, and
filled incrementally, so a run stopped by its time budget is continued by the next one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from firstwords.edge.errors import DataError
from firstwords.export.config import DualEncoderConfig
from firstwords.export.distributed import barrier, dist_info
from firstwords.export.evaluate import embed_images
from firstwords.export.model import DualEncoder
from torch import nn

log = logging.getLogger(__name__)

_CHUNK = 128  # frames per backbone batch (and between deadline checks)


def frames_of(record, cap: int) -> list[Path]:
    """The record's frame files, at most `cap` (0: all) evenly spaced over its window."""
    paths = list(record.frame_paths)
    if cap and len(paths) > cap:  # evenly spaced over the window: neighbouring 5 fps frames are near copies
        idx = np.linspace(0, len(paths) - 1, cap).round().astype(int)
        paths = [paths[i] for i in sorted(set(idx.tolist()))]
    return paths


def _cache_key(cfg: DualEncoderConfig, paths: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([cfg.image.backbone, cfg.image.pretrained, cfg.image.input_size, cfg.image.mean,
                         cfg.image.std, cfg.image.pooling]).encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:20]


def cached_features(model: DualEncoder, cfg: DualEncoderConfig, paths: list[Path], cache_dir: Path,
                    progress: bool, deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features [N, F] of frame files and a mask [N] of the rows computed and readable.

    Cached in cache_dir and filled in the order of `paths`: with a deadline, extraction stops when it
    passes and a later run (or --resume) continues where it stopped. Rank 0 computes; the other ranks wait
    and read."""
    rank, _ = dist_info()
    key = _cache_key(cfg, paths)
    feat_file = cache_dir / f"features-{key}.npy"
    done_file = cache_dir / f"features-{key}.done.npy"  # int8: 0 to do, 1 done, -1 unreadable
    if rank == 0:
        _fill_cache(model, cfg, paths, cache_dir, feat_file, done_file, progress, deadline)
    barrier()
    feats = np.load(feat_file, allow_pickle=False)
    done = np.load(done_file, allow_pickle=False)
    return feats, done == 1


def _fill_cache(model: DualEncoder, cfg: DualEncoderConfig, paths: list[Path], cache_dir: Path,
                feat_file: Path, done_file: Path, progress: bool, deadline: float | None) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    if feat_file.is_file() and done_file.is_file():
        feats = np.load(feat_file, allow_pickle=False)
        done = np.load(done_file, allow_pickle=False)
    else:
        feats = np.zeros((len(paths), model.image_encoder.backbone.out_dim), dtype=np.float32)
        done = np.zeros(len(paths), dtype=np.int8)
    todo = np.flatnonzero(done == 0)
    if not len(todo):
        return
    t0 = time.time()
    fused = fold_batchnorm(model.image_encoder.backbone)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="backbone features",
                   unit="frame", dynamic_ncols=True)
    for s in range(0, len(todo), _CHUNK):
        if deadline is not None and time.time() > deadline:
            log.warning("feature budget spent: %d of %d frames have features; training on those "
                        "(a later run continues the cache)", int((done != 0).sum()), len(paths))
            break
        ids = todo[s:s + _CHUNK]
        try:
            f, bad = embed_images(fused, [paths[i] for i in ids], cfg.image.input_size, cfg.image.mean,
                                  cfg.image.std, features=True, batch_size=_CHUNK)
        except DataError:  # not one frame of the chunk decodes (each was logged)
            done[ids] = -1
            continue
        feats[ids] = f
        done[ids] = 1
        done[ids[bad]] = -1
        if bar is not None:
            bar.update(len(ids))
    if bar is not None:
        bar.close()
    log.info("backbone features of %d frames in %.1f s -> %s",
             int((done != 0).sum()) - (len(paths) - len(todo)), time.time() - t0, feat_file)
    for arr, dst in ((feats, feat_file), (done, done_file)):
        tmp = dst.with_suffix(".tmp.npy")
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, dst)


def fold_batchnorm(backbone: nn.Module) -> nn.Module:
    """A copy of `backbone` (eval mode) with each Conv2d -> BatchNorm2d pair fused into one Conv2d."""
    fused = copy.deepcopy(backbone).eval()
    with torch.random.fork_rng():  # new Conv2d layers draw init weights: keep the training RNG stream as is
        _fold_into(fused)
    return _ImageOnly(fused)


def _fold_into(fused: nn.Module) -> None:
    for mod in fused.modules():
        conv, bn = getattr(mod, "conv", None), getattr(mod, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            groups=conv.groups, bias=True)
            with torch.no_grad():
                new.weight.copy_(conv.weight * scale[:, None, None, None])
                b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                new.bias.copy_((b - bn.running_mean) * scale + bn.bias)
            mod.conv, mod.bn = new, nn.Identity()


class _ImageOnly(nn.Module):
    """Quacks like a DualEncoder for embed_images(features=True): .image_encoder.backbone."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.image_encoder = nn.Module()
        self.image_encoder.backbone = backbone
