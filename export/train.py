"""Training: CVCL's contrastive recipe, config-driven, seeded, resumable, scale-out through torchrun.

    firstwords train --config compact --data work/corpus/train.json -o work/ckpt
    torchrun --nproc_per_node 2 -m firstwords.export.train --config compact \
        --data work/corpus/train.json -o work/ckpt

Two modes, chosen by the config:
- cached features (train.cache_features, frozen backbone): the backbone runs once per frame (the device's
  preprocessing, `edge.preprocess.prepare_images`), its features are cached on disk, and the projection and
  utterance encoder train on them: minutes on a CPU instead of hours.
- images (otherwise): `export.pairs.PairDataset` with CVCL's augmentation, the whole model in the loop.

Each step draws a global batch of utterances (a permutation fixed by seed and epoch) and, per utterance, one
random frame of its window (CVCL; the first with single_frame). Under DistributedDataParallel every rank takes
its slice of the global batch and the embeddings are all-gathered (with gradients), so the loss is the same
InfoNCE over the whole global batch as in one process.

Output directory: last/ and best/ checkpoints (export.checkpoint), metrics.jsonl, curves.png.

The parts: export.data (records) -> export.batches (tokens, batch plans) and export.features (cached backbone
features) or export.pairs (augmented images) -> export.train_loop (steps, validation, checkpoints), with
export.distributed for several processes. This module sets them up and reports the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from firstwords.edge.errors import DataError, FirstwordsError
from firstwords.edge.tokenize import Vocab, build_vocab
from firstwords.export.batches import Pairs, frame_order
from firstwords.export.checkpoint import load_checkpoint
from firstwords.export.config import DualEncoderConfig, TrainConfig, load_model_config
from firstwords.export.data import LoadReport, load_cvcl_metadata, load_eval_set, split_records
from firstwords.export.distributed import barrier, init_distributed, shutdown_distributed
from firstwords.export.features import cached_features
from firstwords.export.model import DualEncoder, build_model, count_parameters
from firstwords.export.train_args import add_train_arguments
from firstwords.export.train_loop import Inputs, Progress, TrainLoop

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    data: Path
    out: Path
    config: str = "compact"
    val_data: Path | None = None  # default: val.json beside the training file, else 5 % split off
    eval_data: Path | None = None  # held-out n-way set tracked during training (default: eval.json beside)
    frames_root: Path | None = None
    seed: int = 0
    epochs: int | None = None  # None: the config's
    steps: int | None = None  # total optimiser steps (counting resumed ones)
    max_minutes: float | None = None  # wall-clock budget of this invocation, feature caching included
    batch_size: int | None = None
    lr: float | None = None  # overrides both lr and head_lr
    resume: bool = False
    shuffled: bool = False  # CVCL's control: each utterance paired with another utterance's frames
    single_frame: bool = False  # CVCL's ablation: the first frame of each window only
    cache_dir: Path | None = None  # default: <out>/../feature_cache
    workers: int = 0
    threads: int | None = None
    progress: bool = True
    log_every: int = 10
    # last/ (and best/ when improved) are written at most this often, and at the end
    save_every_s: float = 60.0


@dataclass
class TrainResult:
    out: Path
    steps: int
    epochs: float
    seconds: float
    stopped_by: str
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    eval_acc: float | None  # 4-way on the eval set at the end (cached mode or when an eval set exists)
    n_train: int
    n_val: int
    data_problems: dict = field(default_factory=dict)


def train(opts: TrainOptions) -> TrainResult:
    t_start = time.time()
    rank, world = init_distributed()
    cfg = load_model_config(opts.config)
    torch.set_num_threads(opts.threads or max(1, (os.cpu_count() or 1) // world))
    # batch and epochs come from --config even when a resumed checkpoint's config differs
    batch = opts.batch_size or cfg.train.batch_size
    if batch % world:
        raise FirstwordsError(f"the batch size {batch} must be divisible by the number of processes {world}")
    epochs = opts.epochs if opts.epochs is not None else cfg.train.epochs
    out = Path(opts.out)
    _check_run_dir(opts, out, rank)

    rep, val_rep, train_recs, val_recs = _load_data(opts)
    problems = dict(rep.problems) | ({f"val_{k}": v for k, v in val_rep.problems.items()} if val_rep else {})
    if len(train_recs) < batch:
        raise DataError(f"{opts.data}: {len(train_recs)} usable utterances, fewer than one batch of {batch}; "
                        "use more data or --batch-size")
    model, vocab, cfg, state = _model_and_vocab(opts, cfg, train_recs, out / "last")
    model.train()
    opt, sched = _optimiser(model, cfg.train, opts)
    progress = _restore(state, opt, sched, opts) if state is not None else Progress()
    inputs = _inputs(model, cfg, opts, train_recs, val_recs, vocab, batch, problems, out, rank, t_start)
    if inputs.cached and not opts.threads:
        # steps on cached features are tiny matrix products: one thread avoids the thread hand-off cost,
        # which on a shared 2-core machine made a step 30x slower with 2 threads
        torch.set_num_threads(1)
    loop = TrainLoop(model=model, vocab=vocab, cfg=cfg, opts=opts, opt=opt, sched=sched, progress=progress,
                     inputs=inputs, batch=batch, epochs=epochs, out=out, rank=rank, world=world,
                     t_start=t_start)
    if rank == 0:
        vp = inputs.val_pairs
        log.info("config %s: %d trainable / %d parameters; %d train and %d val utterances, vocab %d; "
                 "batch %d over %d process(es); %s", cfg.name, count_parameters(model, True),
                 count_parameters(model), inputs.train_pairs.n, vp.n if vp else 0, len(vocab), batch,
                 world, "cached backbone features" if inputs.cached else "images")
    stopped_by, last_loss, val_loss, acc = loop.run()
    barrier()
    result = TrainResult(out=out, steps=progress.step,
                         epochs=round(progress.step / max(loop.steps_per_epoch, 1), 2),
                         seconds=round(time.time() - t_start, 1), stopped_by=stopped_by, train_loss=last_loss,
                         val_loss=val_loss,
                         best_val_loss=None if progress.best_val == math.inf else progress.best_val,
                         eval_acc=acc, n_train=len(inputs.usable),
                         n_val=inputs.val_pairs.n if inputs.val_pairs else 0, data_problems=problems)
    if rank == 0:  # a marker that the run finished (the demo skips a finished step)
        tmp = out / "DONE.tmp"
        tmp.write_text(json.dumps(result_dict(result)))
        os.replace(tmp, out / "DONE")
    return result


def result_dict(result: TrainResult) -> dict:
    """The result as JSON-ready values (the last line `firstwords train` prints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}


def _check_run_dir(opts: TrainOptions, out: Path, rank: int) -> None:
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    last_dir = out / "last"
    if not opts.resume and (last_dir / "model.pt").is_file():
        raise FirstwordsError(f"{out} already holds a training run; pass --resume to continue it, or choose "
                              "another output directory with -o")
    if opts.resume and not (last_dir / "model.pt").is_file():
        raise FirstwordsError(f"nothing to resume in {out} (no last/ checkpoint); drop --resume to start")


def _sibling(data: Path, name: str) -> Path | None:
    p = data.parent / name
    return p if p.is_file() and p.resolve() != data.resolve() else None


def _load_data(opts: TrainOptions):
    rep: LoadReport = load_cvcl_metadata(opts.data, opts.frames_root)
    val_path = opts.val_data or _sibling(opts.data, "val.json")
    if val_path is not None:
        val_rep = load_cvcl_metadata(val_path, opts.frames_root)
        train_recs, val_recs = rep.records, val_rep.records
    else:
        train_recs, val_recs, _ = split_records(rep.records, (0.95, 0.05, 0.0), seed=opts.seed)
        val_rep = None
    return rep, val_rep, train_recs, val_recs


def _model_and_vocab(opts: TrainOptions, cfg: DualEncoderConfig, train_recs, last_dir: Path
                     ) -> tuple[DualEncoder, Vocab, DualEncoderConfig, dict | None]:
    """A fresh model and vocabulary (seeded), or the last checkpoint's with its train state (--resume)."""
    if not opts.resume:
        torch.manual_seed(opts.seed)
        vocab = Vocab(build_vocab(r.utterance for r in train_recs), max_tokens=cfg.utterance.max_tokens)
        return build_model(cfg, len(vocab), load_pretrained=True), vocab, cfg, None
    model, vocab, cfg_ck, meta = load_checkpoint(last_dir, with_train_state=True)
    if cfg_ck.to_dict() != cfg.to_dict():
        log.warning("resuming with the checkpoint's model config %r (the --config given differs)",
                    cfg_ck.name)
        cfg = cfg_ck
    state = meta.get("train_state")
    if state is None:
        raise FirstwordsError(f"{last_dir} has no train_state.pt; it cannot be resumed")
    return model, vocab, cfg, state


def _optimiser(model: DualEncoder, tc: TrainConfig, opts: TrainOptions):
    """AdamW over the trainable parts (the backbone at lr, the rest at head_lr) and the plateau scheduler."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in named if not n.startswith("image_encoder.backbone.")]
    body = [p for n, p in named if n.startswith("image_encoder.backbone.")]
    lr, head_lr = (opts.lr, opts.lr) if opts.lr else (tc.lr, tc.head_lr)
    groups = [{"params": head, "lr": head_lr}] + ([{"params": body, "lr": lr}] if body else [])
    opt = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min", factor=tc.plateau_factor,
                                                        patience=tc.plateau_patience)
             if tc.scheduler == "plateau" else None)
    return opt, sched


def _restore(state: dict, opt, sched, opts: TrainOptions) -> Progress:
    """Optimiser, scheduler, position and torch RNG of the run being resumed."""
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("shuffled") != opts.shuffled or state.get("single_frame") != opts.single_frame:
        raise FirstwordsError("--shuffled / --single-frame must match the run being resumed (it had "
                              f"shuffled={state.get('shuffled')}, single_frame={state.get('single_frame')})")
    return Progress(step=state["step"], epoch=state["epoch"], batch_in_epoch=state["batch_in_epoch"],
                    best_val=state.get("best_val_loss", math.inf))


def _inputs(model: DualEncoder, cfg: DualEncoderConfig, opts: TrainOptions, train_recs, val_recs,
            vocab: Vocab, batch: int, problems: dict, out: Path, rank: int, t_start: float) -> Inputs:
    """The pairs, and in cached mode the backbone features of every frame the run uses."""
    flags = {"single_frame": opts.single_frame, "shuffled": opts.shuffled, "seed": opts.seed}
    train_pairs = Pairs(train_recs, vocab, cfg, train=True, **flags)
    val_pairs = Pairs(val_recs, vocab, cfg, train=False, **flags) if len(val_recs) >= 2 else None
    if not cfg.train.cache_features:
        val_x = None
        if val_pairs is not None:
            val_x = torch.stack([val_pairs.ds[i][0] for i in range(val_pairs.n)])
        return Inputs(cached=False, usable=np.arange(train_pairs.n), train_pairs=train_pairs,
                      val_pairs=val_pairs, val_x=val_x)

    eval_path = opts.eval_data or _sibling(opts.data, "eval.json")
    eval_set = load_eval_set(eval_path, opts.frames_root) if eval_path else None
    val_paths = [r.frame_paths[0] for r in val_recs] if val_pairs else []
    head = val_paths + (list(eval_set.frame_paths) if eval_set else [])
    paths, per_rec = frame_order(head, train_recs, cfg.train.max_frames_per_utterance)
    budget_end = t_start + 0.6 * opts.max_minutes * 60 if opts.max_minutes else None
    cache_dir = opts.cache_dir or out.parent / "feature_cache"
    feats, ok = cached_features(model, cfg, paths, cache_dir, opts.progress and rank == 0, budget_end)
    row = {p: i for i, p in enumerate(paths)}
    src = train_pairs.ds.frame_source  # shuffled control: utterance i sees record src[i]'s frames
    frame_ids = [np.array([row[p] for p in per_rec[src[i]] if ok[row[p]]], dtype=np.int64)
                 for i in range(len(train_recs))]
    usable = np.array([i for i in range(len(train_recs)) if len(frame_ids[i])], dtype=np.int64)
    if len(usable) < len(train_recs):
        problems["utterances_without_frame_features"] = len(train_recs) - len(usable)
    if len(usable) < batch:
        raise DataError(f"only {len(usable)} utterances have readable frames (features); need a batch of "
                        f"{batch}. Give more time (--max-minutes) or check the frame files.")
    features = torch.from_numpy(feats)
    return Inputs(cached=True, usable=usable, train_pairs=train_pairs, val_pairs=val_pairs, features=features,
                  frame_ids=frame_ids, val_x=features[:len(val_paths)], eval_set=eval_set,
                  eval_x=features[len(val_paths):len(head)] if eval_set is not None else None)


# --------------------------------------------------------------------------------------------- torchrun


def options_from_args(a: argparse.Namespace) -> TrainOptions:
    return TrainOptions(data=a.data, out=a.out, config=a.config, val_data=a.val_data, eval_data=a.eval_data,
                        frames_root=a.frames_root, seed=a.seed, epochs=a.epochs, steps=a.steps,
                        max_minutes=a.max_minutes, batch_size=a.batch_size, lr=a.lr, resume=a.resume,
                        shuffled=a.shuffled, single_frame=a.single_frame, cache_dir=a.cache_dir,
                        workers=a.workers, threads=a.threads, progress=not a.no_progress)


def describe(result: TrainResult) -> str:
    lines = [(f"trained {result.steps} steps ({result.epochs} epochs) in {result.seconds:.0f} s, "
              f"stopped by {result.stopped_by}; {result.n_train} train / {result.n_val} val utterances"),
             f"train loss {result.train_loss:.4f}"
             + (f", val loss {result.val_loss:.4f}" if result.val_loss is not None else "")
             + (f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else "")
             + (f", held-out 4-way accuracy {result.eval_acc:.3f}" if result.eval_acc is not None else "")]
    if result.data_problems:
        lines.append("data problems (skipped and counted): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(result.data_problems.items())))
    lines.append(f"checkpoints: {result.out}/best, {result.out}/last; metrics {result.out}/metrics.jsonl; "
                 f"curves {result.out}/curves.png")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `torchrun ... -m firstwords.export.train` (`firstwords train` calls train() too)."""
    p = argparse.ArgumentParser(prog="python -m firstwords.export.train",
                                description=__doc__.split("\n\n")[0])
    add_train_arguments(p)
    a = p.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = train(options_from_args(a))
    except FirstwordsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed()
    if rank == 0:
        print(describe(result))
        print(json.dumps(result_dict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
