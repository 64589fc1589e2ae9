"""Training: CVCL's contrastive recipe, config-driven, seeded, resumable, scale-out through torchrun.

    firstwords train --config compact --data work/corpus/train.json -o work/ckpt
    torchrun --nproc_per_node 2 -m firstwords.export.train --config compact --data work/corpus/train.json -o work/ckpt

Two modes, chosen by the config:
- cached features (train.cache_features, frozen backbone): the backbone runs once per frame (the device's
  preprocessing, `edge.preprocess.prepare_images`), its features are cached on disk, and the projection and
  utterance encoder train on them: minutes on a CPU instead of hours.
- images (otherwise): `export.data.PairDataset` with CVCL's augmentation, the whole model in the loop.

Each step draws a global batch of utterances (a permutation fixed by seed and epoch) and, per utterance, one
random frame of its window (CVCL; the first with single_frame). Under DistributedDataParallel every rank takes
its slice of the global batch and the embeddings are all-gathered (with gradients), so the loss is the same
InfoNCE over the whole global batch as in one process.

Output directory: last/ and best/ checkpoints (export.checkpoint), metrics.jsonl, curves.png.
"""

from __future__ import annotations

import argparse
import hashlib
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
import torch.distributed as dist
from firstwords.edge.errors import DataError, FirstwordsError
from firstwords.edge.tokenize import Vocab, build_vocab
from firstwords.export.checkpoint import load_checkpoint, save_checkpoint
from firstwords.export.config import ModelConfig, load_model_config
from firstwords.export.data import LoadReport, PairDataset, load_cvcl_metadata, load_eval_set, split_records
from firstwords.export.evaluate import embed_images, evaluate_embeddings, word_vectors
from firstwords.export.loss import batch_accuracy, infonce_loss
from firstwords.export.model import DualEncoder, build_model, count_parameters
from torch import nn

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
    save_every_s: float = 60.0  # last/ (and best/ when improved) are written at most this often, and at the end


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


# --------------------------------------------------------------------------------------------- distributed


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up (gloo: CPU); (rank, world). No-op in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return _dist_info()


def _gather_cat(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping gradients (their backward sums the ranks' gradients)."""
    if _dist_info()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x), dim=0)


class _StepModule(nn.Module):
    """What DDP wraps: (features or images, tokens) -> (image emb, utterance emb, logit scale)."""

    def __init__(self, model: DualEncoder, cached: bool):
        super().__init__()
        self.model = model
        self.cached = cached

    def forward(self, x, tokens):
        img = self.model.encode_image_features(x) if self.cached else self.model.encode_image(x)
        return img, self.model.encode_utterance(tokens), self.model.logit_scale()


# -------------------------------------------------------------------------------------------------- data


def _frames_of(record, cap: int) -> list[Path]:
    paths = list(record.frame_paths)
    if cap and len(paths) > cap:  # evenly spaced over the window: neighbouring 5 fps frames are near copies
        idx = np.linspace(0, len(paths) - 1, cap).round().astype(int)
        paths = [paths[i] for i in sorted(set(idx.tolist()))]
    return paths


def _cache_key(cfg: ModelConfig, paths: list[Path]) -> str:
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


def cached_features(model: DualEncoder, cfg: ModelConfig, paths: list[Path], cache_dir: Path,
                    progress: bool, deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features [N, F] of frame files and a mask [N] of the rows computed and readable.

    Cached in cache_dir (np.save, no pickle) and filled incrementally in the order of `paths`: with a
    deadline, extraction stops when it passes and a later run (or --resume) continues where it stopped.
    Rank 0 computes; the other ranks wait and read."""
    rank, world = _dist_info()
    key = _cache_key(cfg, paths)
    feat_file = cache_dir / f"features-{key}.npy"
    done_file = cache_dir / f"features-{key}.done.npy"  # int8: 0 to do, 1 done, -1 unreadable
    if rank == 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if feat_file.is_file() and done_file.is_file():
            feats = np.load(feat_file, allow_pickle=False)
            done = np.load(done_file, allow_pickle=False)
        else:
            feats = np.zeros((len(paths), model.image_encoder.backbone.out_dim), dtype=np.float32)
            done = np.zeros(len(paths), dtype=np.int8)
        todo = np.flatnonzero(done == 0)
        if len(todo):
            t0 = time.time()
            fused = fold_batchnorm(model.image_encoder.backbone)
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="backbone features",
                           unit="frame", dynamic_ncols=True)
            chunk = 128
            for s in range(0, len(todo), chunk):
                if deadline is not None and time.time() > deadline:
                    log.warning("feature budget spent: %d of %d frames have features; training on those "
                                "(a later run continues the cache)", int((done != 0).sum()), len(paths))
                    break
                ids = todo[s:s + chunk]
                try:
                    f, bad = embed_images(fused, [paths[i] for i in ids], cfg.image.input_size, cfg.image.mean,
                                          cfg.image.std, features=True, batch_size=chunk)
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
            log.info("backbone features of %d frames in %.1f s -> %s", int((done != 0).sum()) - (len(paths) - len(todo)),
                     time.time() - t0, feat_file)
            for arr, dst in ((feats, feat_file), (done, done_file)):
                tmp = dst.with_suffix(".tmp.npy")
                np.save(tmp, arr, allow_pickle=False)
                os.replace(tmp, dst)
    if world > 1:
        dist.barrier()
    feats = np.load(feat_file, allow_pickle=False)
    done = np.load(done_file, allow_pickle=False)
    return feats, done == 1


def fold_batchnorm(backbone: nn.Module) -> nn.Module:
    """A copy of `backbone` (eval mode) with each Conv2d -> BatchNorm2d pair fused into one Conv2d."""
    import copy

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


def _sibling(data: Path, name: str) -> Path | None:
    p = data.parent / name
    return p if p.is_file() and p.resolve() != data.resolve() else None


# ------------------------------------------------------------------------------------------------- train


class _Pairs:
    """Per-utterance tokens and frame choices shared by both modes."""

    def __init__(self, records, vocab: Vocab, cfg: ModelConfig, opts: TrainOptions, train: bool):
        self.ds = PairDataset(records, vocab, cfg.image.input_size, cfg.image.mean, cfg.image.std,
                              train=train and not cfg.train.cache_features, single_frame=opts.single_frame,
                              shuffle_pairs=opts.shuffled and train, seed=opts.seed)
        self.tokens = torch.from_numpy(np.stack([t for t, _ in self.ds.tokens]))
        self.n = len(records)


def _epoch_plan(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    return [perm[i * batch:(i + 1) * batch] for i in range(n // batch)]


def _frame_choice(frame_ids: list[np.ndarray], seed: int, epoch: int, single: bool) -> np.ndarray:
    """One frame (global feature row) per utterance for this epoch, fixed by seed and epoch."""
    rng = np.random.default_rng([seed, epoch, 1])
    return np.array([-1 if len(ids) == 0 else ids[0] if single else ids[rng.integers(len(ids))]
                     for ids in frame_ids], dtype=np.int64)


def _trim(tokens: torch.Tensor) -> torch.Tensor:
    width = int((tokens != 0).sum(1).max().item())
    return tokens[:, :max(width, 2)]


def _val_loss(model: DualEncoder, x_all, tokens: torch.Tensor, batch: int, cached: bool) -> float:
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
            loss = infonce_loss(img, model.encode_utterance(_trim(tk)), model.logit_scale())
            total += float(loss) * tk.shape[0]
            count += tk.shape[0]
    model.train()
    return total / max(count, 1)


def plot_curves(metrics_file: Path, out_png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    tr = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    ev = [(r["step"], r["eval_acc"]) for r in rows if r.get("eval_acc") is not None]
    fig, ax = plt.subplots(1, 2 if ev else 1, figsize=(10 if ev else 6, 3.6), dpi=110, squeeze=False)
    a = ax[0][0]
    if tr:
        a.plot(*zip(*tr), label="train", lw=1)
    if va:
        a.plot(*zip(*va), label="val", marker="o", ms=3)
    a.set_xlabel("step")
    a.set_ylabel("InfoNCE loss")
    a.legend()
    if ev:
        b = ax[0][1]
        b.plot(*zip(*ev), marker="o", ms=3, color="#DD8452")
        b.axhline(0.25, ls="--", color="k", lw=1, label="chance")
        b.set_ylim(0, 1)
        b.set_xlabel("step")
        b.set_ylabel("held-out 4-way accuracy")
        b.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


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


def train(opts: TrainOptions) -> TrainResult:
    t_start = time.time()
    rank, world = init_distributed()
    cfg = load_model_config(opts.config)
    heavy_threads = opts.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(heavy_threads)
    tc = cfg.train
    batch = opts.batch_size or tc.batch_size
    if batch % world:
        raise FirstwordsError(f"the batch size {batch} must be divisible by the number of processes {world}")
    epochs = opts.epochs if opts.epochs is not None else tc.epochs
    out = Path(opts.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    last_dir, best_dir = out / "last", out / "best"
    if not opts.resume and (last_dir / "model.pt").is_file():
        raise FirstwordsError(f"{out} already holds a training run; pass --resume to continue it, or choose "
                              "another output directory with -o")
    if opts.resume and not (last_dir / "model.pt").is_file():
        raise FirstwordsError(f"nothing to resume in {out} (no last/ checkpoint); drop --resume to start")

    rep, val_rep, train_recs, val_recs = _load_data(opts)
    problems = dict(rep.problems) | ({f"val_{k}": v for k, v in val_rep.problems.items()} if val_rep else {})
    if len(train_recs) < batch:
        raise DataError(f"{opts.data}: {len(train_recs)} usable utterances, fewer than one batch of {batch}; "
                        "use more data or --batch-size")

    # model, vocab, optimiser (fresh or resumed)
    state = None
    if opts.resume:
        model, vocab, cfg_ck, meta = load_checkpoint(last_dir, with_train_state=True)
        if cfg_ck.to_dict() != cfg.to_dict():
            log.warning("resuming with the checkpoint's model config %r (the --config given differs)", cfg_ck.name)
            cfg, tc = cfg_ck, cfg_ck.train
        state = meta.get("train_state")
        if state is None:
            raise FirstwordsError(f"{last_dir} has no train_state.pt; it cannot be resumed")
    else:
        torch.manual_seed(opts.seed)
        vocab = Vocab(build_vocab(r.utterance for r in train_recs), max_tokens=cfg.utterance.max_tokens)
        model = build_model(cfg, len(vocab), load_pretrained=True)
    model.train()
    cached = tc.cache_features
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("image_encoder.backbone.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("image_encoder.backbone.")]
    lr, head_lr = (opts.lr, opts.lr) if opts.lr else (tc.lr, tc.head_lr)
    groups = [{"params": head, "lr": head_lr}] + ([{"params": body, "lr": lr}] if body else [])
    opt = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min", factor=tc.plateau_factor,
                                                        patience=tc.plateau_patience)
             if tc.scheduler == "plateau" else None)
    step, epoch, batch_in_epoch, best_val = 0, 0, 0, math.inf
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        best_val = state.get("best_val_loss", math.inf)
        torch.set_rng_state(state["torch_rng"])
        if state.get("shuffled") != opts.shuffled or state.get("single_frame") != opts.single_frame:
            raise FirstwordsError("--shuffled / --single-frame must match the run being resumed "
                                  f"(it had shuffled={state.get('shuffled')}, single_frame={state.get('single_frame')})")

    train_pairs = _Pairs(train_recs, vocab, cfg, opts, train=True)
    val_pairs = _Pairs(val_recs, vocab, cfg, opts, train=False) if len(val_recs) >= 2 else None
    eval_path = opts.eval_data or _sibling(opts.data, "eval.json")
    cache_dir = opts.cache_dir or out.parent / "feature_cache"

    # inputs: cached backbone features, or the PairDataset
    eval_state = None
    usable = np.arange(train_pairs.n)
    if cached:
        src = train_pairs.ds.frame_source  # shuffled control: utterance i sees record src[i]'s frames
        per_rec = [_frames_of(r, tc.max_frames_per_utterance) for r in train_recs]
        val_paths = [r.frame_paths[0] for r in val_recs] if val_pairs else []
        eval_set = load_eval_set(eval_path, opts.frames_root) if eval_path else None
        head = val_paths + (list(eval_set.frame_paths) if eval_set else [])
        # frames in round-robin order over utterances (every utterance's 1st frame, then every 2nd, ...) so
        # that a budget cut still leaves each utterance its first frames
        order, seen = [], set(head)
        for k in range(max(len(ps) for ps in per_rec)):
            for ps in per_rec:
                if k < len(ps) and ps[k] not in seen:
                    seen.add(ps[k])
                    order.append(ps[k])
        paths = head + order
        budget_end = t_start + 0.6 * opts.max_minutes * 60 if opts.max_minutes else None
        feats, ok = cached_features(model, cfg, paths, cache_dir, opts.progress and rank == 0, budget_end)
        row = {p: i for i, p in enumerate(paths)}
        frame_ids = []
        for i in range(len(train_recs)):
            frame_ids.append(np.array([row[p] for p in per_rec[src[i]] if ok[row[p]]], dtype=np.int64))
        usable = np.array([i for i in range(len(train_recs)) if len(frame_ids[i])], dtype=np.int64)
        if len(usable) < len(train_recs):
            problems["utterances_without_frame_features"] = len(train_recs) - len(usable)
        if len(usable) < batch:
            raise DataError(f"only {len(usable)} utterances have readable frames (features); need a batch of "
                            f"{batch}. Give more time (--max-minutes) or check the frame files.")
        features = torch.from_numpy(feats)
        val_x = features[:len(val_paths)]
        if eval_set is not None:
            eval_state = (eval_set, features[len(val_paths):len(head)])
    else:
        features = None
        val_x = None
        if val_pairs is not None:
            val_x = torch.stack([val_pairs.ds[i][0] for i in range(val_pairs.n)])

    if cached and not opts.threads:
        # steps on cached features are tiny matrix products: one thread avoids the thread hand-off cost,
        # which on a shared 2-core machine made a step 30x slower with 2 threads
        torch.set_num_threads(1)
    ddp_model = _StepModule(model, cached)
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(ddp_model, broadcast_buffers=False)
    steps_per_epoch = len(usable) // batch
    total_steps = min(opts.steps or 10**12, epochs * steps_per_epoch)
    metrics_file = out / "metrics.jsonl"
    local = batch // world

    def log_row(row: dict) -> None:
        if rank == 0:
            with open(metrics_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def eval_acc() -> float | None:
        if eval_state is None:
            return None
        es, ev = eval_state
        with torch.inference_mode():
            model.eval()
            img = model.encode_image_features(ev).numpy()
            model.train()
        words = word_vectors(model, vocab, es.categories)
        if len(es.categories) < 4 or not words:
            return None
        return evaluate_embeddings(es.labels, img, words, n_way=4, trials=50, seed=0,
                                   trial_list=es.trials).overall

    def train_state() -> dict:
        return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else None,
                "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_val_loss": best_val,
                "torch_rng": torch.get_rng_state(), "seed": opts.seed, "shuffled": opts.shuffled,
                "single_frame": opts.single_frame}

    def meta(val_loss: float | None) -> dict:
        return {"step": step, "epoch": epoch, "val_loss": val_loss, "best_val_loss": best_val,
                "training_data": str(opts.data), "shuffled": opts.shuffled, "single_frame": opts.single_frame,
                "world_size": world, "seed": opts.seed, "model_config_name": cfg.name}

    # best/ is kept in memory and written with last/ (checkpoint writes of a 14 MB model every epoch would
    # dominate cached-feature training, where an epoch takes well under a second)
    best_snapshot: dict | None = None
    last_save = time.time()

    def persist(val_loss: float | None) -> None:
        nonlocal best_snapshot, last_save
        if rank == 0:
            save_checkpoint(last_dir, model, vocab, train_state=train_state(), meta=meta(val_loss))
            if best_snapshot is not None:
                live = {k: v.clone() for k, v in model.state_dict().items()}
                model.load_state_dict(best_snapshot["state"])
                save_checkpoint(best_dir, model, vocab, meta=best_snapshot["meta"])
                model.load_state_dict(live)
                best_snapshot = None
            plot_curves(metrics_file, out / "curves.png")
        last_save = time.time()

    def validate(final: bool = False) -> tuple[float | None, float | None]:
        nonlocal best_val, best_snapshot
        vl = _val_loss(model, val_x, val_pairs.tokens, batch, cached) if val_pairs is not None else None
        acc = eval_acc()
        if sched is not None and vl is not None:
            sched.step(vl)
        log_row({"step": step, "epoch": epoch, "val_loss": vl, "eval_acc": acc,
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t_start, 1)})
        if (vl is not None and vl < best_val) or (vl is None and final):
            best_val = vl if vl is not None else best_val
            if rank == 0:
                best_snapshot = {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                                 "meta": meta(vl) | {"eval_acc": acc}}
        if final or time.time() - last_save >= opts.save_every_s:
            persist(vl)
        return vl, acc

    if rank == 0:
        log.info("config %s: %d trainable / %d parameters; %d train and %d val utterances, vocab %d; "
                 "batch %d over %d process(es); %s", cfg.name, count_parameters(model, True),
                 count_parameters(model), train_pairs.n, val_pairs.n if val_pairs else 0, len(vocab), batch,
                 world, "cached backbone features" if cached else "images")
    bar = None
    if opts.progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=min(step, total_steps), desc="train", unit="step",
                   dynamic_ncols=True)
    stopped_by = "epochs" if total_steps == epochs * steps_per_epoch else "steps"
    deadline = t_start + opts.max_minutes * 60 if opts.max_minutes else None
    running, n_running, last_loss = 0.0, 0, math.nan
    val_loss, acc = None, None
    eval_every = tc.eval_every or steps_per_epoch
    while step < total_steps:
        plan = [usable[b] for b in _epoch_plan(len(usable), batch, opts.seed, epoch)]
        choice = _frame_choice(frame_ids, opts.seed, epoch, opts.single_frame) if cached else None
        loader = None
        if not cached:
            mine = [b[rank * local:(rank + 1) * local].tolist() for b in plan[batch_in_epoch:]]
            loader = iter(torch.utils.data.DataLoader(_SafePairs(train_pairs.ds), batch_sampler=mine,
                                                      num_workers=opts.workers))
        while batch_in_epoch < len(plan) and step < total_steps:
            idx = plan[batch_in_epoch][rank * local:(rank + 1) * local]
            if cached:
                x = features[torch.from_numpy(choice[idx])]
                tk = train_pairs.tokens[torch.from_numpy(idx)]
            else:
                x, tk, _ = next(loader)
            img, utt, scale = ddp_model(x, _trim(tk))
            img_all, utt_all = _gather_cat(img), _gather_cat(utt)
            loss = infonce_loss(img_all, utt_all, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            batch_in_epoch += 1
            last_loss = loss.detach().item()
            running += last_loss
            n_running += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", epoch=epoch)
            if step % opts.log_every == 0 or step == total_steps:
                ia, ua = batch_accuracy(img_all.detach(), utt_all.detach())
                log_row({"step": step, "epoch": epoch, "train_loss": running / n_running, "img_acc": ia,
                         "utt_acc": ua, "lr": opt.param_groups[0]["lr"],
                         "seconds": round(time.time() - t_start, 1)})
                running, n_running = 0.0, 0
            out_of_time = deadline is not None and time.time() > deadline
            if world > 1 and deadline is not None:  # all ranks stop at the same step
                flag = torch.tensor([1.0 if out_of_time else 0.0])
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                out_of_time = bool(flag.item())
            if step % eval_every == 0 or out_of_time:
                val_loss, acc = validate(final=out_of_time or step == total_steps)
            if out_of_time:
                stopped_by = "max_minutes"
                break
        if stopped_by == "max_minutes":
            break
        if batch_in_epoch >= len(plan):
            epoch += 1
            batch_in_epoch = 0
    if bar is not None:
        bar.close()
    if step % eval_every != 0 and stopped_by != "max_minutes":
        val_loss, acc = validate(final=True)
    if world > 1:
        dist.barrier()
    result = TrainResult(out=out, steps=step, epochs=round(step / max(steps_per_epoch, 1), 2),
                       seconds=round(time.time() - t_start, 1), stopped_by=stopped_by, train_loss=last_loss,
                       val_loss=val_loss, best_val_loss=None if best_val == math.inf else best_val,
                       eval_acc=acc, n_train=len(usable), n_val=val_pairs.n if val_pairs else 0,
                       data_problems=problems)
    if rank == 0:  # a marker that the run finished (the demo skips a finished step)
        tmp = out / "DONE.tmp"
        tmp.write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}))
        os.replace(tmp, out / "DONE")
    return result


class _SafePairs(torch.utils.data.Dataset):
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
        raise DataError(f"8 consecutive training pairs from #{i} have unreadable frames; check the frame files")


# --------------------------------------------------------------------------------------------- torchrun


from firstwords.export.train_args import add_train_arguments


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
    """Entry point for `torchrun ... -m firstwords.export.train` (the CLI's `firstwords train` calls train() too)."""
    p = argparse.ArgumentParser(prog="python -m firstwords.export.train", description=__doc__.split("\n\n")[0])
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
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(describe(result))
        print(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
