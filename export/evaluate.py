"""Evaluate torch checkpoints with CVCL's n-way protocol (trials and scoring live in edge.evaluate).

Frames are preprocessed by `edge.preprocess.prepare_images`, the device's own function, so a checkpoint and
its ONNX bundle are judged on identical inputs. A category word is embedded as the device embeds it:
`vocab.encode(word)` (<sos> word <eos>) through the utterance encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.evaluate import EvalResult, Trial, make_trials, score_trials
from firstwords.edge.preprocess import prepare_images
from firstwords.edge.tokenize import Vocab
from firstwords.export.data import load_eval_set, load_frame

log = logging.getLogger(__name__)


def load_frames_safely(paths: Sequence[Path]) -> tuple[list[np.ndarray], list[int]]:
    """Frames that decode, and the indices of those that do not (logged, never a crash mid-batch)."""
    frames, bad = [], []
    for i, p in enumerate(paths):
        try:
            frames.append(load_frame(p))
        except DataError as e:
            log.warning("%s", e)
            bad.append(i)
            frames.append(None)
    return frames, bad


@torch.inference_mode()
def embed_images(model, paths: Sequence[Path], size: int, mean, std, batch_size: int = 64,
                 progress: bool = False, features: bool = False) -> tuple[np.ndarray, list[int]]:
    """L2-normalised image embeddings [N, D] (or backbone features when features=True) of frame files.

    Returns (array, indices of frames that could not be read; their rows are zero)."""
    out = None
    bad: list[int] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc="features" if features else "images", unit="img", leave=False)
    enc = model.image_encoder
    bb = enc.backbone.to(memory_format=torch.channels_last)  # depthwise convs run ~3x faster on CPU
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        frames, chunk_bad = load_frames_safely(chunk)
        bad.extend(start + i for i in chunk_bad)
        good = [i for i, f in enumerate(frames) if f is not None]
        if good:
            x = torch.from_numpy(prepare_images([frames[i] for i in good], size, mean, std))
            x = x.contiguous(memory_format=torch.channels_last)
            y = bb(x) if features else model.encode_image(x)
            if out is None:
                out = np.zeros((len(paths), y.shape[1]), dtype=np.float32)
            out[[start + i for i in good]] = y.float().numpy()
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if out is None:
        raise DataError(f"none of the {len(paths)} frames could be read (e.g. {paths[0] if paths else '-'})")
    return out, bad


@torch.inference_mode()
def word_vectors(model, vocab: Vocab, words: Sequence[str]) -> dict[str, np.ndarray]:
    """{word: unit vector} for the words the vocabulary knows; unknown words are left out (and so skipped,
    listed, by score_trials rather than scored as <unk>)."""
    known = [w for w in words if w in vocab]
    if not known:
        return {}
    tokens = torch.from_numpy(vocab.encode_batch(known))
    emb = model.encode_utterance(tokens).float().numpy()
    return dict(zip(known, emb))


def evaluate_embeddings(labels: Sequence[str], image_emb: np.ndarray, words: dict[str, np.ndarray],
                        n_way: int = 4, trials: int = 100, seed: int = 0, trial_list=None) -> EvalResult:
    trial_list = trial_list if trial_list is not None else make_trials(labels, n_way, trials, seed)
    return score_trials(trial_list, image_emb, words)


def evaluate_model(model, vocab: Vocab, eval_json: str | Path, size: int, mean, std, *, n_way: int = 4,
                   trials: int = 100, seed: int = 0, frames_root=None, progress: bool = False) -> EvalResult:
    """CVCL's n-way evaluation of an in-memory DualEncoder on an eval set file."""
    es = load_eval_set(eval_json, frames_root)
    cats = es.categories
    if es.trials is None and n_way > len(cats):
        raise InputError(f"{n_way}-way evaluation needs at least {n_way} categories; {eval_json} has "
                         f"{len(cats)} ({', '.join(cats)}). Use --n-way {min(len(cats), 4)} or fewer.")
    model.eval()
    emb, bad = embed_images(model, es.frame_paths, size, mean, std, progress=progress)
    labels = list(es.labels)
    if bad:  # unreadable eval frames: no trial may pick them
        log.warning("%d of %d eval frames could not be read and are left out", len(bad), len(labels))
    if es.trials is not None:
        trial_list = [t for t in es.trials if not set(t.image_indices) & set(bad)]
        if n_way != len(trial_list[0].image_indices):
            log.info("the eval file holds pre-generated %d-way trials; using them", len(trial_list[0].image_indices))
    else:
        bad_set = set(bad)
        keep = [i for i in range(len(labels)) if i not in bad_set]
        sub_trials = make_trials([labels[i] for i in keep], n_way, trials, seed)
        trial_list = [Trial(t.category, tuple(keep[j] for j in t.image_indices), t.target_position)
                      for t in sub_trials]
    words = word_vectors(model, vocab, cats)
    return score_trials(trial_list, emb, words)


def evaluate_checkpoint(checkpoint: str | Path, eval_json: str | Path, *, n_way: int = 4, trials: int = 100,
                        seed: int = 0, frames_root=None, progress: bool = False) -> EvalResult:
    """Load a checkpoint (directory or training run) and evaluate it; reusable by the export parity gate."""
    from firstwords.export.checkpoint import load_checkpoint
    model, vocab, cfg, _ = load_checkpoint(checkpoint)
    return evaluate_model(model, vocab, eval_json, cfg.image.input_size, cfg.image.mean, cfg.image.std,
                          n_way=n_way, trials=trials, seed=seed, frames_root=frames_root, progress=progress)


def plot_per_category(result: EvalResult, out_png: str | Path, title: str = "") -> Path:
    """A bar per category (sorted by accuracy, as the paper's figure), 95 % interval on the overall bar,
    a dashed chance line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from firstwords.edge.evaluate import wilson_interval

    cats = sorted(result.per_category, key=lambda c: -result.per_category[c])
    accs = [result.per_category[c] for c in cats]
    errs = []
    for c in cats:
        n = result.per_category_n[c]
        lo, hi = wilson_interval(round(result.per_category[c] * n), n)
        errs.append((max(0.0, result.per_category[c] - lo), max(0.0, hi - result.per_category[c])))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(cats) + 2), 3.6), dpi=120)
    xs = np.arange(len(cats))
    ax.bar(xs, accs, color="#4C72B0", yerr=np.array(errs).T, capsize=2, ecolor="#333")
    lo, hi = result.ci95
    ax.bar([len(cats) + 0.5], [result.overall], color="#DD8452",
           yerr=[[max(0.0, result.overall - lo)], [max(0.0, hi - result.overall)]], capsize=3)
    ax.axhline(result.chance, ls="--", color="k", lw=1, label=f"chance ({result.chance:.2f})")
    ax.set_xticks(list(xs) + [len(cats) + 0.5], cats + ["overall"], rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"{result.n_way}-way accuracy")
    ax.set_title(title or f"{result.n_way}-way classification, {result.n_trials} trials")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
