"""Checkpoints: a directory written atomically.

    <ckpt>/config.json       the model config (export.config.DualEncoderConfig.to_dict())
    <ckpt>/vocab.json        the vocabulary (CVCL's layout, specials 0..3)
    <ckpt>/model.pt          state_dict (torch.save; loaded with weights_only=True)
    <ckpt>/train_state.pt    optimizer / scheduler / step / RNG states for --resume (optional)
    <ckpt>/meta.json         format, embedding dim, input size, mean/std, step, epoch, metrics, data name

A training run directory (`firstwords train -o work/ckpt`) holds `last/` and `best/` checkpoints;
`load_checkpoint` accepts either a checkpoint directory or a run directory (then `last/`, else `best/`).
`last/` is the trained model; `best/` is the snapshot with the lowest validation loss. On the sample corpus
the validation InfoNCE rises after a few epochs (chatter utterances get memorised) while held-out word
accuracy still improves (0.60 at the lowest val loss vs 0.68 at the end), so the run's model is `last/`.

Atomic: files are written into `<ckpt>.tmp`, fsynced, then swapped in by renames (`<ckpt>` -> `<ckpt>.old`,
`<ckpt>.tmp` -> `<ckpt>`, remove `<ckpt>.old`). A crash leaves either the old or the new checkpoint whole; if
it struck between the two renames, `load_checkpoint` finds `<ckpt>.old` and uses it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from firstwords.edge.errors import ConfigError, DataError
from firstwords.edge.tokenize import Vocab, rule_of
from firstwords.export.config import DualEncoderConfig, config_from_dict
from firstwords.export.model import DualEncoder, build_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "firstwords-checkpoint"
CHECKPOINT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def _save_torch(path: Path, obj) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(path: str | Path, model: DualEncoder, vocab: Vocab, *, train_state: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write a checkpoint directory atomically; returns its path. `meta` adds fields to meta.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    cfg: DualEncoderConfig = model.config
    # DDP / compiled wrappers are unwrapped by the caller; keys must be the plain DualEncoder's.
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _write_json(tmp / "config.json", cfg.to_dict())
    _write_json(tmp / "vocab.json", vocab.ids)
    _save_torch(tmp / "model.pt", state)
    if train_state is not None:
        _save_torch(tmp / "train_state.pt", train_state)
    info = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "model_config": cfg.name, "embedding_dim": cfg.embedding_dim,
        "input_size": cfg.image.input_size, "mean": list(cfg.image.mean), "std": list(cfg.image.std),
        "max_tokens": vocab.max_tokens, "vocab_size": len(vocab), "tokenizer": vocab.rule, "saved_at": time.time(),
    }
    info.update(meta or {})
    _write_json(tmp / "meta.json", info)
    _fsync_dir(tmp)
    # Swap: path -> .old, .tmp -> path. A crash between the renames leaves the checkpoint at .old only
    # (which resolve_checkpoint finds); so .old is removed before the swap only while `path` holds a whole
    # checkpoint, otherwise it is the one copy and stays until the new checkpoint is in place.
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir from a checkpoint dir or a run dir (last/ then best/); recovers `<ckpt>.old`."""
    path = Path(path)
    if (path / "model.pt").is_file():
        return path
    for sub in ("last", "best"):
        if (path / sub / "model.pt").is_file():
            return path / sub
        old = path / f"{sub}.old"
        if (old / "model.pt").is_file():
            log.warning("using %s: a save was interrupted between renames", old)
            return old
    old = path.with_name(path.name + ".old")
    if (old / "model.pt").is_file():
        log.warning("using %s: a save was interrupted between renames", old)
        return old
    raise DataError(f"{path}: no checkpoint here (expected model.pt, or last/ or best/ of a training run); "
                    "train one with: firstwords train --config compact --data work/corpus/train.json "
                    f"-o {path}")


def read_meta(path: str | Path) -> dict:
    ck = resolve_checkpoint(path)
    try:
        return json.loads((ck / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{ck}/meta.json: cannot read ({e}); the checkpoint is damaged, retrain or use "
                        "another") from e


def load_checkpoint(path: str | Path, *, with_train_state: bool = False):
    """-> (model in eval mode, vocab, model_config, meta). meta["train_state"] is set if asked and present."""
    ck = resolve_checkpoint(path)
    meta = read_meta(ck)
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("format_version") != CHECKPOINT_VERSION:
        raise DataError(f"{ck}: not a firstwords checkpoint of version {CHECKPOINT_VERSION} "
                        f"(format {meta.get('format')!r}, version {meta.get('format_version')!r})")
    try:
        cfg_data = json.loads((ck / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{ck}/config.json: cannot read ({e})") from e
    try:
        cfg = config_from_dict(cfg_data, str(ck / "config.json"))
    except ConfigError as e:
        raise DataError(f"{ck}: its model config is invalid: {e}") from e
    try:
        rule = rule_of(meta.get("tokenizer"), f"checkpoint {ck}")
        vocab = Vocab.from_file(ck / "vocab.json", max_tokens=cfg.utterance.max_tokens, rule=rule)
    except Exception as e:  # BundleError from edge.tokenize
        raise DataError(f"{ck}/vocab.json: {e}") from e
    try:
        state = torch.load(ck / "model.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises various types for truncated / foreign files
        raise DataError(f"{ck}/model.pt: cannot load the weights ({e}); the checkpoint is damaged") from e
    model = build_model(cfg, len(vocab), load_pretrained=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"{ck}/model.pt does not match its config.json ({str(e).splitlines()[0]})") from e
    model.eval()
    if with_train_state and (ck / "train_state.pt").is_file():
        meta["train_state"] = torch.load(ck / "train_state.pt", map_location="cpu", weights_only=True)
    meta["path"] = str(ck)
    return model, vocab, cfg, meta
