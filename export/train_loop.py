"""The training loop: steps over the epoch's batches, periodic validation, checkpoints, metrics.

`TrainLoop.run()` is what `export.train.train` calls once the data, model and optimiser are set up. It steps
until the step or epoch limit or the wall-clock deadline, validates every `eval_every` steps (the validation
InfoNCE loss and the held-out 4-way accuracy), appends to metrics.jsonl, and writes last/ (and best/ when the
validation loss improved) at most every `save_every_s` seconds and at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from firstwords.edge.tokenize import Vocab
from firstwords.export.batches import Pairs, SafePairs, epoch_plan, frame_choice, trim, val_loss
from firstwords.export.checkpoint import save_checkpoint
from firstwords.export.config import DualEncoderConfig
from firstwords.export.curves import plot_curves
from firstwords.export.distributed import any_rank, gather_cat
from firstwords.export.evaluate import evaluate_embeddings, word_vectors
from firstwords.export.loss import batch_accuracy, infonce_loss
from firstwords.export.model import DualEncoder
from torch import nn

if TYPE_CHECKING:
    from firstwords.export.data import EvalSet
    from firstwords.export.train import TrainOptions

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """What the steps draw from: cached backbone features (cached mode) or the pair dataset (image mode)."""

    cached: bool
    usable: np.ndarray  # indices of the training utterances that have at least one usable frame
    train_pairs: Pairs
    val_pairs: Pairs | None
    features: torch.Tensor | None = None  # cached mode: one row per frame
    frame_ids: list[np.ndarray] | None = None  # cached mode: each utterance's rows of `features`
    val_x: torch.Tensor | None = None  # validation inputs (first frames): feature rows or images
    eval_set: EvalSet | None = None  # held-out n-way set (cached mode)
    eval_x: torch.Tensor | None = None  # its feature rows


@dataclass
class Progress:
    """Where the run is: restored from train_state.pt on --resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val: float = math.inf


class StepModule(nn.Module):
    """What DDP wraps: (features or images, tokens) -> (image emb, utterance emb, logit scale)."""

    def __init__(self, model: DualEncoder, cached: bool):
        super().__init__()
        self.model = model
        self.cached = cached

    def forward(self, x, tokens):
        img = self.model.encode_image_features(x) if self.cached else self.model.encode_image(x)
        return img, self.model.encode_utterance(tokens), self.model.logit_scale()


class TrainLoop:
    def __init__(self, *, model: DualEncoder, vocab: Vocab, cfg: DualEncoderConfig, opts: TrainOptions,
                 opt: torch.optim.Optimizer, sched, progress: Progress, inputs: Inputs, batch: int,
                 epochs: int, out: Path, rank: int, world: int, t_start: float):
        self.model, self.vocab, self.cfg, self.opts = model, vocab, cfg, opts
        self.opt, self.sched, self.p, self.inputs = opt, sched, progress, inputs
        self.batch, self.epochs, self.out, self.rank, self.world = batch, epochs, out, rank, world
        self.t_start = t_start
        self.metrics_file = out / "metrics.jsonl"
        self.steps_per_epoch = len(inputs.usable) // batch
        self.total_steps = min(opts.steps or 10**12, epochs * self.steps_per_epoch)
        self.eval_every = cfg.train.eval_every or self.steps_per_epoch
        # best/ is kept in memory and written with last/ (checkpoint writes of a 14 MB model every epoch would
        # dominate cached-feature training, where an epoch takes well under a second)
        self.best_snapshot: dict | None = None
        self.last_save = time.time()

    # ------------------------------------------------------------------------------------------ records

    def log_row(self, row: dict) -> None:
        if self.rank == 0:
            with open(self.metrics_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def eval_acc(self) -> float | None:
        """4-way accuracy of the held-out set's images against the category words (cached mode)."""
        es, ev = self.inputs.eval_set, self.inputs.eval_x
        if es is None:
            return None
        with torch.inference_mode():
            self.model.eval()
            img = self.model.encode_image_features(ev).numpy()
            self.model.train()
        words = word_vectors(self.model, self.vocab, es.categories)
        if len(es.categories) < 4 or not words:
            return None
        return evaluate_embeddings(es.labels, img, words, n_way=4, trials=50, seed=0,
                                   trial_list=es.trials).overall

    def train_state(self) -> dict:
        p, o = self.p, self.opts
        return {"optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else None,
                "step": p.step, "epoch": p.epoch, "batch_in_epoch": p.batch_in_epoch,
                "best_val_loss": p.best_val, "torch_rng": torch.get_rng_state(), "seed": o.seed,
                "shuffled": o.shuffled, "single_frame": o.single_frame}

    def meta(self, vl: float | None) -> dict:
        p, o = self.p, self.opts
        return {"step": p.step, "epoch": p.epoch, "val_loss": vl, "best_val_loss": p.best_val,
                "training_data": str(o.data), "shuffled": o.shuffled, "single_frame": o.single_frame,
                "world_size": self.world, "seed": o.seed, "model_config_name": self.cfg.name}

    def persist(self, vl: float | None) -> None:
        if self.rank == 0:
            save_checkpoint(self.out / "last", self.model, self.vocab, train_state=self.train_state(),
                            meta=self.meta(vl))
            if self.best_snapshot is not None:
                live = {k: v.clone() for k, v in self.model.state_dict().items()}
                self.model.load_state_dict(self.best_snapshot["state"])
                save_checkpoint(self.out / "best", self.model, self.vocab, meta=self.best_snapshot["meta"])
                self.model.load_state_dict(live)
                self.best_snapshot = None
            plot_curves(self.metrics_file, self.out / "curves.png")
        self.last_save = time.time()

    def validate(self, final: bool = False) -> tuple[float | None, float | None]:
        p, vp = self.p, self.inputs.val_pairs
        vl = (val_loss(self.model, self.inputs.val_x, vp.tokens, self.batch, self.inputs.cached)
              if vp is not None else None)
        acc = self.eval_acc()
        if self.sched is not None and vl is not None:
            self.sched.step(vl)
        self.log_row({"step": p.step, "epoch": p.epoch, "val_loss": vl, "eval_acc": acc,
                      "lr": self.opt.param_groups[0]["lr"], "seconds": round(time.time() - self.t_start, 1)})
        if (vl is not None and vl < p.best_val) or (vl is None and final):
            p.best_val = vl if vl is not None else p.best_val
            if self.rank == 0:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.best_snapshot = {"state": state, "meta": self.meta(vl) | {"eval_acc": acc}}
        if final or time.time() - self.last_save >= self.opts.save_every_s:
            self.persist(vl)
        return vl, acc

    # -------------------------------------------------------------------------------------------- steps

    def _batches(self, plan: list[np.ndarray]):
        """(x, tokens) of the epoch's remaining batches, this rank's slice of each global batch."""
        inp, p, local = self.inputs, self.p, self.batch // self.world
        lo, hi = self.rank * local, (self.rank + 1) * local
        if inp.cached:
            choice = frame_choice(inp.frame_ids, self.opts.seed, p.epoch, self.opts.single_frame)
            for b in plan[p.batch_in_epoch:]:
                idx = b[lo:hi]
                rows = torch.from_numpy(choice[idx])
                yield inp.features[rows], inp.train_pairs.tokens[torch.from_numpy(idx)]
            return
        mine = [b[lo:hi].tolist() for b in plan[p.batch_in_epoch:]]
        loader = torch.utils.data.DataLoader(SafePairs(inp.train_pairs.ds), batch_sampler=mine,
                                             num_workers=self.opts.workers)
        for x, tk, _ in loader:
            yield x, tk

    def run(self) -> tuple[str, float, float | None, float | None]:
        """Train to the end; (stopped_by, last train loss, last val loss, last held-out accuracy)."""
        p, opts, inp = self.p, self.opts, self.inputs
        ddp_model: nn.Module = StepModule(self.model, inp.cached)
        if self.world > 1:
            ddp_model = nn.parallel.DistributedDataParallel(ddp_model, broadcast_buffers=False)
        bar = None
        if opts.progress and self.rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=self.total_steps, initial=min(p.step, self.total_steps), desc="train",
                       unit="step", dynamic_ncols=True)
        stopped_by = "epochs" if self.total_steps == self.epochs * self.steps_per_epoch else "steps"
        deadline = self.t_start + opts.max_minutes * 60 if opts.max_minutes else None
        running, n_running, last_loss = 0.0, 0, math.nan
        vl, acc = None, None
        while p.step < self.total_steps:
            plan = [inp.usable[b] for b in epoch_plan(len(inp.usable), self.batch, opts.seed, p.epoch)]
            batches = self._batches(plan)
            while p.batch_in_epoch < len(plan) and p.step < self.total_steps:
                x, tk = next(batches)
                img, utt, scale = ddp_model(x, trim(tk))
                img_all, utt_all = gather_cat(img), gather_cat(utt)
                loss = infonce_loss(img_all, utt_all, scale)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                p.step += 1
                p.batch_in_epoch += 1
                last_loss = loss.detach().item()
                running += last_loss
                n_running += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.3f}", epoch=p.epoch)
                if p.step % opts.log_every == 0 or p.step == self.total_steps:
                    ia, ua = batch_accuracy(img_all.detach(), utt_all.detach())
                    self.log_row({"step": p.step, "epoch": p.epoch, "train_loss": running / n_running,
                                  "img_acc": ia, "utt_acc": ua, "lr": self.opt.param_groups[0]["lr"],
                                  "seconds": round(time.time() - self.t_start, 1)})
                    running, n_running = 0.0, 0
                out_of_time = deadline is not None and time.time() > deadline
                if self.world > 1 and deadline is not None:  # all ranks stop at the same step
                    out_of_time = any_rank(out_of_time)
                if p.step % self.eval_every == 0 or out_of_time:
                    vl, acc = self.validate(final=out_of_time or p.step == self.total_steps)
                if out_of_time:
                    stopped_by = "max_minutes"
                    break
            batches.close()
            if stopped_by == "max_minutes":
                break
            if p.batch_in_epoch >= len(plan):
                p.epoch += 1
                p.batch_in_epoch = 0
        if bar is not None:
            bar.close()
        if p.step % self.eval_every != 0 and stopped_by != "max_minutes":
            vl, acc = self.validate(final=True)
        return stopped_by, last_loss, vl, acc
