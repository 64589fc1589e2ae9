"""Evaluate torch checkpoints with CVCL's n-way protocol (trials and scoring live in edge.evaluate).

Frames are preprocessed by `edge.preprocess.prepare_images`, the device's own function, so a checkpoint and
its ONNX bundle are judged on identical inputs. A category word is embedded as the device embeds it:
`vocab.encode(word)` (<sos> word <eos>) through the utterance encoder.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from firstwords.edge.errors import DataError, InputError
from firstwords.edge.evaluate import DIRECTIONS, EvalResult, Trial, label_tokens, make_trials, score_trials
from firstwords.edge.evaluate import word_vectors as edge_word_vectors
from firstwords.edge.preprocess import prepare_images
from firstwords.edge.tokenize import Vocab
from firstwords.export.data import load_eval_set, load_frame

log = logging.getLogger(__name__)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


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


def _torch_tokens_encoder(model):
    @torch.inference_mode()
    def encode(tokens: np.ndarray) -> np.ndarray:
        return model.encode_utterance(torch.from_numpy(tokens)).float().numpy()
    return encode


def word_vectors(model, vocab: Vocab, words: Sequence[str], bare: bool = False,
                 word_for: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """{word: unit vector} for the words the vocabulary knows through a torch model; unknown words are left out
    (and so skipped, listed, by score_trials rather than scored as <unk>). See edge.evaluate.word_vectors."""
    return edge_word_vectors(_torch_tokens_encoder(model), vocab, words, bare, word_for)


def embed_images_onnx(encoder, paths: Sequence[Path], batch_size: int = 32,
                      progress: bool = False) -> tuple[np.ndarray, list[int]]:
    """As embed_images, through a bundle's ONNX image tower (edge.encode.Encoder)."""
    out = np.zeros((len(paths), encoder.bundle.embedding_dim), dtype=np.float32)
    bad: list[int] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc="images", unit="img", leave=False)
    for start in range(0, len(paths), batch_size):
        frames, chunk_bad = load_frames_safely(paths[start:start + batch_size])
        bad.extend(start + i for i in chunk_bad)
        good = [i for i, f in enumerate(frames) if f is not None]
        if good:
            out[[start + i for i in good]] = encoder.encode_image([frames[i] for i in good])
        if bar is not None:
            bar.update(len(frames))
    if bar is not None:
        bar.close()
    if len(bad) == len(paths):
        raise DataError(f"none of the {len(paths)} frames could be read (e.g. {paths[0] if paths else '-'})")
    return out, bad


def evaluate_embeddings(labels: Sequence[str], image_emb: np.ndarray, words: dict[str, np.ndarray],
                        n_way: int = 4, trials: int = 100, seed: int = 0, trial_list=None,
                        direction: str = "image") -> EvalResult:
    trial_list = trial_list if trial_list is not None else make_trials(labels, n_way, trials, seed)
    return score_trials(trial_list, image_emb, words, direction, labels)


def object_category_trials(root: str | Path, known, n_foils: int = 3, per_image: int = 5,
                           seed: int = 0) -> list[dict]:
    """Trials in the layout of CVCL's object-category (Konkle) evaluation, from a folder of category folders
    (<root>/<category>/*.jpg): for every image of every category the vocabulary knows (`known(category)`),
    `per_image` trials against `n_foils` images of other, distinct, random categories. CVCL: 3 foils, 5 per image.
    Records as CVCL's trial files: target_category, target_img_filename, foil_categories, foil_img_filenames."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    images = {p.name: sorted(str(f) for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES) for p in folders}
    cats = [c for c, files in images.items() if files and known(c)]
    unknown = sorted(c for c, files in images.items() if files and c not in cats)
    if unknown:
        log.warning("%s: %d categories the vocabulary does not know are left out (as CVCL does): %s", root,
                    len(unknown), ", ".join(unknown[:20]))
    if len(cats) <= n_foils:
        raise InputError(f"{root}: {len(cats)} known categories with images ({', '.join(cats) or 'none'}); "
                         f"{n_foils + 1}-way trials need at least {n_foils + 1} (folders <category>/*.jpg)")
    rng = np.random.default_rng(seed)
    trials = []
    for cat in cats:
        others = [c for c in cats if c != cat]
        for target in images[cat]:
            for i in range(per_image):
                foils = [others[j] for j in rng.choice(len(others), size=n_foils, replace=False)]
                trials.append({"trial_num": i, "target_category": cat, "target_img_filename": target,
                               "foil_categories": foils,
                               "foil_img_filenames": [images[f][int(rng.integers(len(images[f])))] for f in foils]})
    return trials


def _trial_list(es, bad: list[int], n_way: int, trials: int, seed: int, source) -> list[Trial]:
    cats = es.categories
    if es.trials is None and n_way > len(cats):
        raise InputError(f"{n_way}-way evaluation needs at least {n_way} categories; {source} has "
                         f"{len(cats)} ({', '.join(cats)}). Use --n-way {min(len(cats), 4)} or fewer.")
    labels = list(es.labels)
    if bad:  # unreadable eval frames: no trial may pick them
        log.warning("%d of %d eval frames could not be read and are left out", len(bad), len(labels))
    if es.trials is not None:
        trial_list = [t for t in es.trials if not set(t.image_indices) & set(bad)]
        if n_way != len(trial_list[0].image_indices):
            log.info("the eval file holds pre-generated %d-way trials; using them", len(trial_list[0].image_indices))
        return trial_list
    bad_set = set(bad)
    keep = [i for i in range(len(labels)) if i not in bad_set]
    sub_trials = make_trials([labels[i] for i in keep], n_way, trials, seed)
    return [Trial(t.category, tuple(keep[j] for j in t.image_indices), t.target_position, t.categories)
            for t in sub_trials]


def _score(es, emb, bad, words, *, directions, n_way, trials, seed, source) -> dict[str, EvalResult]:
    trial_list = _trial_list(es, bad, n_way, trials, seed, source)
    return {d: score_trials(trial_list, emb, words, d, es.labels) for d in directions}


def evaluate_model(model, vocab: Vocab, eval_json: str | Path, size: int, mean, std, *, n_way: int = 4,
                   trials: int = 100, seed: int = 0, frames_root=None, progress: bool = False,
                   direction: str = "image") -> EvalResult:
    """CVCL's n-way evaluation of an in-memory DualEncoder on an eval set file, in one direction."""
    es = load_eval_set(eval_json, frames_root)
    model.eval()
    emb, bad = embed_images(model, es.frame_paths, size, mean, std, progress=progress)
    words = word_vectors(model, vocab, es.categories)
    return _score(es, emb, bad, words, directions=(direction,), n_way=n_way, trials=trials, seed=seed,
                  source=eval_json)[direction]


def evaluate_checkpoint(checkpoint: str | Path, eval_json: str | Path, *, n_way: int = 4, trials: int = 100,
                        seed: int = 0, frames_root=None, progress: bool = False,
                        direction: str = "image") -> EvalResult:
    """Load a checkpoint (directory or training run) and evaluate it; reusable by the export parity gate."""
    return evaluate(checkpoint, eval_json, directions=(direction,), n_way=n_way, trials=trials, seed=seed,
                    frames_root=frames_root, progress=progress)[direction]


def is_bundle(path: str | Path) -> bool:
    p = Path(path)
    return (p / "manifest.json").is_file() or (p.is_file() and p.suffix.lower() == ".zip")


def evaluate(model_path: str | Path, data: str | Path, *, directions: Sequence[str] = DIRECTIONS, n_way: int = 4,
             trials: int = 100, seed: int = 0, frames_root=None, progress: bool = False,
             bare_labels: bool | None = None, word_for: dict[str, str] | None = None, threads: int | None = None,
             write_trials: str | Path | None = None) -> dict[str, EvalResult]:
    """CVCL's evaluation of a checkpoint or a bundle (fp32 or int8), in the directions asked.

    data: our eval.json, CVCL's trial file (eval_*.json), or a folder of category folders (CVCL's object-category
    evaluation; its trials are written to `write_trials` when given). bare_labels: embed a category word
    alone, as CVCL's eval.py does (default for converted CVCL bundles), else as <sos> word <eos>.
    """
    for d in directions:
        if d not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {d!r}")
    word_for = dict(word_for or {})
    if is_bundle(model_path):
        from firstwords.edge.encode import Encoder

        enc = Encoder(model_path, threads=threads)
        vocab, encode_tokens = enc.vocab, enc.encode_tokens
        if bare_labels is None:
            bare_labels = (enc.bundle.manifest.get("source") or {}).get("converted_from") == "cvcl"
        embed = lambda paths: embed_images_onnx(enc, paths, progress=progress)
    else:
        from firstwords.export.checkpoint import load_checkpoint

        model, vocab, cfg, _ = load_checkpoint(model_path)
        model.eval()
        encode_tokens = _torch_tokens_encoder(model)
        embed = lambda paths: embed_images(model, paths, cfg.image.input_size, cfg.image.mean,
                                           cfg.image.std, progress=progress)
    data = Path(data)
    if data.is_dir():
        def known(c: str) -> bool:
            return bool(label_tokens(vocab, [word_for.get(c, c)])[0])
        records = object_category_trials(data, known, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            trial_file = Path(write_trials) if write_trials else Path(tmp) / "eval_object_categories.json"
            trial_file.write_text(json.dumps({"data": records}))
            es = load_eval_set(trial_file, frames_root)
    else:
        es = load_eval_set(data, frames_root)
    emb, bad = embed(es.frame_paths)
    words = edge_word_vectors(encode_tokens, vocab, es.categories, bool(bare_labels), word_for)
    return _score(es, emb, bad, words, directions=directions, n_way=n_way, trials=trials, seed=seed, source=data)


def plot_per_category(results: EvalResult | Sequence[EvalResult], out_png: str | Path, title: str = "") -> Path:
    """A bar per category (sorted by the first result's accuracy, as the paper's figure) for each direction side
    by side, 95 % intervals, the overall bars at the right, a dashed chance line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from firstwords.edge.evaluate import wilson_interval

    results = [results] if isinstance(results, EvalResult) else list(results)
    first = results[0]
    cats = sorted(set().union(*(r.per_category for r in results)), key=lambda c: -first.per_category.get(c, 0.0))
    width = 0.8 / len(results)
    colours = ("#4C72B0", "#55A868")
    fig, ax = plt.subplots(figsize=(max(7.5, 0.45 * len(cats) * len(results) + 2), 3.6), dpi=120)
    for k, r in enumerate(results):
        xs = np.arange(len(cats) + 1) + (k - (len(results) - 1) / 2) * width
        xs[-1] += 0.5
        accs, errs = [], []
        for c in cats:
            acc, n = r.per_category.get(c, 0.0), r.per_category_n.get(c, 0)
            lo, hi = wilson_interval(round(acc * n), n)
            accs.append(acc)
            errs.append((max(0.0, acc - lo), max(0.0, hi - acc)))
        lo, hi = r.ci95
        accs.append(r.overall)
        errs.append((max(0.0, r.overall - lo), max(0.0, hi - r.overall)))
        what = "word -> images" if r.direction == "image" else "image -> words"
        ax.bar(xs, accs, width=width, color=colours[k % 2], yerr=np.array(errs).T, capsize=2, ecolor="#333",
               label=f"{r.direction} ({what}): {100 * r.overall:.1f} %")
    ax.axhline(first.chance, ls="--", color="k", lw=1, label=f"chance ({first.chance:.2f})")
    ax.set_xticks(list(range(len(cats))) + [len(cats) + 0.5], cats + ["overall"], rotation=60, ha="right")
    ax.set_ylim(0, 1.2)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel(f"{first.n_way}-way accuracy")
    ax.set_title(title or f"{first.n_way}-way classification, {first.n_trials} trials")
    ax.legend(loc="upper center", fontsize=7, ncol=len(results) + 1, frameon=False)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
