#!/usr/bin/env python3
"""Benchmark the online associative memory (edge.memory).

    python tools/bench_memory.py --bundle work/bundle --corpus work/corpus [--seeds 3] [--spoken] [--out DIR]
    python tools/bench_memory.py --synthetic [--seeds 3] [--look-away 0.4]   # no bundle: clustered embeddings

Measures, side by side in one run:
  * a learning curve: held-out 4-way accuracy (edge.evaluate, CVCL's protocol) against utterances heard, for
    (a) the encoder only (a word = the bundle's utterance embedding), (b) the memory without re-entrance,
    (c) the memory with re-entrance; seeds averaged (a seed permutes the session in blocks of utterances and
    draws the trials); area under each curve with its spread over seeds. With the corpus's ground truth,
    (d): (b) fed only the frames that truly show what is named -- what choosing frames within windows could
    gain. A word the memory has not heard yet falls back to the encoder's embedding, so all start alike.
  * few-shot: a category kept out of training entirely (the corpus's novel.json / novel_exposures.json), its
    4-way accuracy after k = 1, 2, 5, 10 exposures (learned after the training stream); with --spoken also
    through the audio path (few_shot_spoken): each exposure said by one of six synthetic voices and heard by
    the bundle's device recogniser, the memory as shipped learning only what it heard;
  * name() latency at 10k words (median, p90) and learn() latency on a file database (synchronous FULL vs
    NORMAL, as a ratio).
Human-readable lines first, a PNG plot in --out, and the LAST line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import firstwords.edge  # noqa: F401  (first: it sets one BLAS thread before numpy loads)
import numpy as np
from firstwords.edge.evaluate import make_trials, score_trials
from firstwords.edge.memory import AssociativeMemory, LearningParams, Moment
from firstwords.edge.memory_rule import Background, whitener
from firstwords.edge.tokenize import words as split_words

REPO = Path(__file__).resolve().parents[1]

SHOTS = (1, 2, 5, 10)


@dataclass
class BenchData:
    source: str
    dim: int
    stream: list[Moment]  # training utterances in session order (frame embeddings already encoded)
    prior: dict[str, np.ndarray]  # in-vocabulary word -> the encoder's utterance embedding
    categories: list[str]
    eval_labels: list[str]
    eval_emb: np.ndarray
    novel_word: str
    novel_emb: np.ndarray  # [M, D] held-out images of the novel category
    novel_exposures: list[Moment]
    views: list[list[frozenset[str]]] | None = None  # per stream utterance, per frame: the categories in view


# ------------------------------------------------------------------------------------------ synthetic data
def synthetic_data(seed: int = 0, dim: int = 64, n_cat: int = 9, minutes: float = 40.0,
                   look_away: float = 0.0) -> BenchData:
    """Embeddings shaped like the sample corpus. A frame embeds its scene: a shared component (embedding
    spaces are anisotropic) + the primary object + maybe a smaller distractor + one of 16 backgrounds + camera
    jitter, so a window's frames are near-duplicates of one scene. Utterances name what is in view (42 %),
    something absent (10 %) or nothing (chatter), from Zipfian templates full of function words; an imperfect
    encoder prior for in-vocabulary words; a novel category kept out of training, as in the corpus.
    look_away: the share of naming windows whose second half turns to another object (the child looked
    away)."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    common = unit(rng.normal(size=dim))
    cats = ["shirt", "pants", "sweater", "dress", "coat", "sandal", "shoe", "boot", "hat"][:n_cat]
    novel = "bag"
    mu = {c: unit(rng.normal(size=dim)) for c in cats + [novel]}
    backgrounds = unit(rng.normal(size=(16, dim)))

    def frames(primary, distractor, n, background=None):
        bg = backgrounds[rng.integers(16)] if background is None else background
        inst = 0.35 * rng.normal(size=dim) / np.sqrt(dim)  # this instance of the object
        x = 1.5 * common + 1.0 * bg + (0.4 * mu[primary] + inst if primary else 0.0)
        x = x + (0.25 * mu[distractor] if distractor else 0.0)
        return unit(x + 0.25 * rng.normal(size=(n, dim)) / np.sqrt(dim)).astype(np.float32)

    naming = ["look at the {w}", "where's the {w}", "that's a {w}", "see the {w}", "the {w}",
              "you want the {w}", "here's your {w}", "{w}", "it's a {w}", "can you find the {w}"]
    chatter = ["look at that", "all done", "you want more", "good job", "what's that", "okay", "here you go",
               "oh my", "can you see it", "let's go", "what do you see", "look", "yes", "there you go"]

    def zipf(items):
        return items[min(int(rng.zipf(1.6)) - 1, len(items) - 1)]

    cat_w = 1.0 / np.arange(1, n_cat + 1) ** 0.6
    cat_w /= cat_w.sum()
    stream: list[Moment] = []
    views: list[list[frozenset[str]]] = []
    t = 0.0
    while t < minutes * 60:
        primary = cats[rng.choice(n_cat, p=cat_w)] if rng.random() > 0.12 else None
        distractor = cats[rng.choice(n_cat, p=cat_w)] if primary and rng.random() < 0.35 else None
        distractor = None if distractor == primary else distractor
        background = backgrounds[rng.integers(16)]
        for _ in range(int(rng.integers(1, 5))):
            r = rng.random()
            if primary and r < 0.42:
                text = zipf(naming).format(w=primary)
            elif r < 0.52:
                text = zipf(naming).format(w=cats[rng.choice(n_cat, p=cat_w)])
            else:
                text = zipf(chatter)
            n = int(rng.integers(3, 16))
            fr = frames(primary, distractor, n, background)
            view = [frozenset(c for c in (primary, distractor) if c)] * n
            if primary and primary in text and n >= 4 and rng.random() < look_away:
                away = [c for c in cats if c not in (primary, distractor)][int(rng.integers(n_cat - 2))]
                fr[n // 2:] = frames(away, None, n - n // 2, background)
                view = view[:n // 2] + [frozenset([away])] * (n - n // 2)
            stream.append(Moment(split_words(text), fr, t, text))
            views.append(view)
            t += n / 5.0
    vocab_words = {w for u in stream for w in u.words}
    prior = {}
    for w in sorted(vocab_words):  # the encoder: right direction for objects, but noisy; arbitrary otherwise
        base = unit(common + mu[w]) if w in mu else unit(rng.normal(size=dim) * 0.4 + 0.6 * common)
        prior[w] = unit(base + 1.5 * rng.normal(size=dim) / np.sqrt(dim)).astype(np.float32)
    def held_out(c):
        return frames(c, cats[rng.integers(n_cat)] if rng.random() < 0.25 else None, 1)

    eval_labels = [c for c in cats for _ in range(60)]
    eval_emb = np.concatenate([held_out(c) for c in eval_labels])
    novel_emb = np.concatenate([held_out(novel) for _ in range(60)])
    exposures = []
    for j in range(24):
        text = zipf(naming).format(w=novel)
        exposures.append(Moment(split_words(text), frames(novel, None, 5), 1e6 + j, text))
    return BenchData(f"synthetic (seed {seed}, dim {dim}, {n_cat} categories)", dim, stream, prior, cats,
                     eval_labels, eval_emb, novel, novel_emb, exposures, views)


# ------------------------------------------------------------------------------------------ real data
def _read_rgb(path: Path, cv2) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read image {path}; rebuild the corpus with "
                         f"tools/build_sample_corpus.py")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def corpus_data(bundle_path: Path, corpus: Path, cache_dir: Path, threads: int,
                max_utterances: int = 0) -> BenchData:
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.capture import import_cv2
    from firstwords.edge.encode import Encoder

    cv2 = import_cv2()
    bundle = load_bundle(bundle_path)
    enc = Encoder(bundle, threads=threads)

    def load(name):
        path = corpus / name
        if not path.exists():
            raise SystemExit(f"error: {path} is missing; build the corpus with tools/build_sample_corpus.py")
        return json.loads(path.read_text(encoding="utf-8"))

    train = sorted(load("train.json")["data"],
                   key=lambda r: (r.get("start_time", 0.0), r.get("utterance_num", 0)))
    if max_utterances:
        train = train[:max_utterances]
    ev = load("eval.json")["data"]
    nov = load("novel.json")["data"]
    exp = load("novel_exposures.json")["data"]
    files = sorted({f for r in train for f in r["frame_filenames"]} | {e["frame_filename"] for e in ev + nov}
                   | {f for e in exp for f in e["frame_filenames"]})
    # keyed on the bundle's and the corpus's contents: a rebuilt corpus reuses its frame names
    build_info = hashlib.sha256((corpus / "corpus_info.json").read_bytes()).hexdigest() \
        if (corpus / "corpus_info.json").exists() else ""
    sig = hashlib.sha256(json.dumps([str(bundle_path.resolve()), bundle.manifest.get("files", {}),
                                     str(corpus.resolve()), build_info, len(files), files[:3], files[-3:]],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = cache_dir / f"embeddings-{sig}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            names, emb = list(z["names"]), z["emb"]
        print(f"  frame embeddings from cache {cache}")
    else:
        t0 = time.perf_counter()
        chunks = []
        for i in range(0, len(files), 64):
            chunks.append(enc.encode_image([_read_rgb(corpus / f, cv2) for f in files[i:i + 64]]))
            if i % 2048 == 0:
                print(f"  encoding frames {i}/{len(files)}", flush=True)
        emb = np.concatenate(chunks).astype(np.float32)
        names = files
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, names=np.array(names), emb=emb)
        print(f"  encoded {len(files)} frames in {time.perf_counter() - t0:.0f} s (cached in {cache})")
    row = {n: i for i, n in enumerate(names)}
    in_view = {}  # frame file -> categories in view (the corpus's ground truth; diagnostics only)
    if (corpus / "timeline.json").exists():
        in_view = {f["file"]: frozenset(f["in_view"]) for f in load("timeline.json")["frames"]}
    stream = []
    views = []
    for r in train:
        ws = split_words(r["utterance"])
        if ws:
            stream.append(Moment(ws, emb[[row[f] for f in r["frame_filenames"]]],
                                    float(r.get("start_time", len(stream))), r["utterance"]))
            views.append([in_view.get(f, frozenset()) for f in r["frame_filenames"]])
    known = sorted({w for u in stream for w in u.words if enc.knows(w)})
    prior = dict(zip(known, enc.encode_utterance(known), strict=True)) if known else {}
    info = load("corpus_info.json")
    novel = info.get("novel_category", nov[0]["category"])
    exposures = []
    for j, e in enumerate(exp):
        ws = split_words(e["utterance"])
        exposures.append(Moment(ws, emb[[row[f] for f in e["frame_filenames"]]], 1e9 + j, e["utterance"],
                                   {w: prior[w] for w in ws if w in prior}))
    cats = sorted({e["category"] for e in ev})
    return BenchData(f"bundle {bundle_path} on corpus {corpus}", enc.dim, stream, prior, cats,
                     [e["category"] for e in ev], emb[[row[e["frame_filename"]] for e in ev]], novel,
                     emb[[row[e["frame_filename"]] for e in nov]], exposures, views if in_view else None)


# ------------------------------------------------------------------------------------------ measuring
def block_permutation(n: int, seed: int, block: int = 20) -> list[int]:
    """Seed 0: the session as recorded; other seeds: blocks of `block` consecutive utterances reordered."""
    idx = list(range(n))
    if seed == 0:
        return idx
    blocks = [idx[i:i + block] for i in range(0, n, block)]
    order = np.random.default_rng(seed).permutation(len(blocks))
    return [i for b in order for i in blocks[b]]


def accuracy(vectors: dict[str, np.ndarray], trials, emb) -> float:
    return score_trials(trials, emb, vectors).overall


def memory_accuracy(mem: AssociativeMemory, data: BenchData, prior_vecs: dict, trials) -> float:
    """Held-out 4-way accuracy of the memory's category words; a word it has not heard falls back to the
    encoder's embedding, and one never heard and not in the vocabulary is a zero vector (counted wrong)."""
    vecs = dict(prior_vecs)
    vecs.update(mem.word_vectors(data.categories))
    for c in data.categories:
        vecs.setdefault(c, np.zeros(data.dim, np.float32))
    return accuracy(vecs, trials, data.eval_emb)


def learning_curve(data: BenchData, seed: int, checkpoints: list[int], trials_per_cat: int,
                   learning: LearningParams | None = None, spoken=None) -> dict:
    """(b) and (c) are the same learner (same params), with re-entrant frame selection off and on. Also the
    frame-selection diagnostic: of the frames' worth a category word learned from windows where it was said,
    the share that came from frames actually showing it (the corpus's ground truth)."""
    order = block_permutation(len(data.stream), seed)
    cats = set(data.categories)
    trials = make_trials(data.eval_labels, 4, trials_per_cat, seed)
    prior_vecs = {c: data.prior[c] for c in data.categories if c in data.prior}
    enc_acc = accuracy(prior_vecs, trials, data.eval_emb) if prior_vecs else 0.25
    curves = {"encoder": [enc_acc] * len(checkpoints)}
    few = {}
    on_target = {}
    for name, re in (("memory", False), ("memory_reentrant", True)):
        accs = []
        on = total = 0.0
        with AssociativeMemory(":memory:", data.dim, reentrance=re, learning=learning) as mem:
            done = 0
            for cp in checkpoints:
                for i in order[done:cp]:  # one utterance at a time, as on the device
                    u = data.stream[i]
                    rep = mem.learn(u.words, u.frame_embeddings, u.t, u.text,
                                    {w: data.prior[w] for w in u.words if w in data.prior})
                    if data.views is not None:
                        for w in cats.intersection(u.words):
                            taken = rep.frame_taken[w]
                            total += sum(taken)
                            on += sum(x for x, v in zip(taken, data.views[i]) if w in v)
                done = cp
                accs.append(memory_accuracy(mem, data, prior_vecs, trials))
            few[name] = few_shot(mem, data, seed)
        curves[name] = accs
        on_target[name] = on / total if total else float("nan")
    if spoken is not None:  # the memory as shipped learns the stream, then hears the new word spoken
        with AssociativeMemory(":memory:", data.dim, reentrance=True, learning=learning) as mem:
            for i in order:
                u = data.stream[i]
                mem.learn(u.words, u.frame_embeddings, u.t, u.text,
                          {w: data.prior[w] for w in u.words if w in data.prior})
            few["spoken"] = spoken(mem, data, seed)
    if data.views is not None:
        curves["ideal_frames"] = ideal_frames_curve(data, order, checkpoints, trials, prior_vecs, learning)
    if data.views is not None:  # the same share for frames taken uniformly (every frame of the window)
        on = total = 0
        for u, v in zip(data.stream, data.views):
            for w in cats.intersection(u.words):
                total += len(v)
                on += sum(w in x for x in v)
        on_target["uniform"] = on / total if total else float("nan")
    return {"curves": curves, "few_shot": few, "on_target": on_target}


def ideal_frames_curve(data: BenchData, order: list[int], checkpoints: list[int], trials, prior_vecs,
                       learning: LearningParams | None) -> list[float]:
    """(d), not a learner: (b) fed only the frames of each naming window that truly show what is named (the
    corpus's ground truth), repeated to the window's length so the word learns as much from the window as
    (b) does -- what a perfect choice of frames WITHIN windows could gain over learning from every frame. (A
    learner may also gain by learning less from whole windows about something else, which (d) does not.)"""
    cats = set(data.categories)
    accs = []
    with AssociativeMemory(":memory:", data.dim, reentrance=False, learning=learning) as mem:
        done = 0
        for cp in checkpoints:
            for i in order[done:cp]:
                u, views = data.stream[i], data.views[i]
                named = cats.intersection(u.words)
                keep = [k for k, v in enumerate(views) if named & v] if named else []
                frames = u.frame_embeddings
                if keep:
                    frames = frames[np.resize(np.array(keep), len(views))]
                prior = {w: data.prior[w] for w in u.words if w in data.prior}
                mem.learn(u.words, frames, u.t, u.text, prior)
            done = cp
            accs.append(memory_accuracy(mem, data, prior_vecs, trials))
    return accs


def few_shot(mem: AssociativeMemory, data: BenchData, seed: int,
             trials_per_cat: int = 200) -> dict[int, float]:
    """Teach the held-out word after the training stream; 4-way accuracy of its vector after k exposures:
    its never-seen images against foils from the training categories' held-out images."""
    labels = data.eval_labels + [data.novel_word] * len(data.novel_emb)
    emb = np.concatenate([data.eval_emb, data.novel_emb])
    trials = [t for t in make_trials(labels, 4, trials_per_cat, seed) if t.category == data.novel_word]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.novel_exposures))
    frames = np.concatenate([u.frame_embeddings for u in data.stream]).astype(np.float64)
    g = frames.mean(axis=0)
    world = Background(frames.sum(axis=0), len(frames), 0, 0.0, frames.T @ frames)
    w = whitener(world, data.dim, LearningParams())
    out = {}
    heard = 0
    for k in SHOTS:
        while heard < k and heard < len(order):
            u = data.novel_exposures[order[heard]]
            mem.learn(u.words, u.frame_embeddings, 1e9 + heard + seed * 100, u.text, u.prior)
            heard += 1
        vec = mem.word_vectors([data.novel_word])
        out[k] = accuracy(vec, trials, emb) if vec else 0.25
        # reference: a supervised prototype, the mean of the same k exposures' frames (labels known) minus the
        # training frames' mean, whitened as the memory does -- what a prototype can reach in this space
        shown = np.concatenate([data.novel_exposures[i].frame_embeddings for i in order[:k]])
        proto = (shown.mean(axis=0) - g) @ w
        out[f"oracle_{k}"] = accuracy({data.novel_word: proto}, trials, emb)
    return out


def spoken_few_shot(bundle: Path, novel_word: str, adapt_to: Path | None = None, how: str = "enrol"):
    """few_shot's teaching through the audio path (edge.asr_fewshot): each exposure spoken by the six voices
    in turn and heard by the bundle's device recogniser; None when pocketsphinx or the voices are missing.
    adapt_to: first adapt the recogniser to the voices (edge.asr_adapt, as `firstwords adapt` does for a
    home) and write the adaptation there: `how` "enrol", from their readings of the enrolment script of the
    bundle's content words (edge.asr_enrol), or "home", from other speech of theirs naming the other objects,
    heard unadapted. The new word is never in it."""
    from firstwords.edge.asr import make_recognizer
    from firstwords.edge.asr_enrol import adapt_from_voices, bundle_words
    from firstwords.edge.asr_eval import adapt_to_voices
    from firstwords.edge.asr_fewshot import spoken_shots
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.config import load_device_config, resolve_device_config
    from firstwords.edge.synth import DEFAULT_VOICES, available_voices
    from firstwords.export.sample_corpus import CLASS_WORDS, NAMING

    voices = available_voices(list(DEFAULT_VOICES))
    b = load_bundle(bundle)
    if adapt_to is not None and voices:
        if how == "enrol":  # the script of the bundle's content words (the new word is never in a bundle's)
            words = [w for w in bundle_words(b) if w != novel_word]
            with tempfile.TemporaryDirectory(prefix="firstwords-enrolment-") as folder:
                info = adapt_from_voices(b, voices, adapt_to, folder, words)
            print(f"  adaptation for the spoken few-shot: the voices' enrolment on the bundle's "
                  f"{info['words']} content words ({info['speech_minutes']:g} min), estimated in "
                  f"{info['seconds']:g} s")
        else:
            others = sorted(set(CLASS_WORDS.values()) - {novel_word})  # the new word is never in it
            info = adapt_to_voices(b, voices, others, NAMING, adapt_to, seed=1)
            print(f"  adaptation for the spoken few-shot: {info['speech_minutes']:g} min of the voices "
                  f"naming the other objects, heard unadapted, estimated in {info['seconds']:g} s")
    rec = make_recognizer("pocketsphinx", bundle=b, adaptation=adapt_to)
    min_conf = load_device_config(resolve_device_config("laptop")).memory.min_word_confidence

    def run(mem: AssociativeMemory, data: BenchData, seed: int) -> dict:
        labels = data.eval_labels + [data.novel_word] * len(data.novel_emb)
        emb = np.concatenate([data.eval_emb, data.novel_emb])
        trials = [t for t in make_trials(labels, 4, 200, seed) if t.category == data.novel_word]
        return spoken_shots(mem, rec, data.novel_exposures, data.novel_word,
                            lambda m: accuracy(m.word_vectors([data.novel_word]), trials, emb)
                            if data.novel_word in m.words() else 0.25, voices, min_conf, seed, SHOTS)

    return run if voices else None


def auc(xs: list[int], ys: list[float]) -> float:
    """Area under the curve over utterances heard, normalised to [0, 1] (mean accuracy over the session)."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def name_latency(dim: int, n_words: int = 10_000, queries: int = 2000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    with AssociativeMemory(":memory:", dim, capacity_words=n_words) as mem:
        batch = []
        for i in range(0, n_words, 10):
            ws = [f"w{j}" for j in range(i, min(i + 10, n_words))]
            batch.append(Moment(ws, rng.normal(size=(4, dim)).astype(np.float32), float(i), " ".join(ws)))
        for j in range(0, len(batch), 200):
            mem.learn_batch(batch[j:j + 200])
        assert len(mem.words()) == n_words
        qs = rng.normal(size=(queries, dim)).astype(np.float32)
        mem.name(qs[0])  # builds the query matrix once
        times = []
        for q in qs:
            t0 = time.perf_counter()
            mem.name(q, k=5)
            times.append(time.perf_counter() - t0)
        learn_times = []  # an update at 10k words, in RAM (':memory:'; the file's fsync is measured apart)
        for i in range(200):
            fr = rng.normal(size=(16, dim)).astype(np.float32)
            t0 = time.perf_counter()
            mem.learn(["look", "at", "the", f"w{i}"], fr, 1e6 + i, f"look at the w{i}")
            learn_times.append(time.perf_counter() - t0)
    times.sort()
    return {"words": n_words, "median_ms": 1e3 * times[len(times) // 2],
            "p90_ms": 1e3 * times[int(0.9 * len(times))],
            "learn_median_ms": 1e3 * statistics.median(learn_times)}


def learn_latency(dim: int, n: int = 60, seed: int = 0) -> dict:
    """learn() on a file database, one transaction each: synchronous FULL (the default; survives power cuts)
    versus NORMAL (survives a process crash only), measured side by side."""
    rng = np.random.default_rng(seed)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            times = []
            with AssociativeMemory(Path(tmp) / f"{sync}.sqlite", dim, synchronous=sync) as mem:
                for i in range(n):
                    fr = rng.normal(size=(16, dim)).astype(np.float32)
                    t0 = time.perf_counter()
                    mem.learn(["look", "at", "the", f"w{i % 20}"], fr, float(i), f"look at the w{i % 20}")
                    times.append(time.perf_counter() - t0)
            out[sync] = 1e3 * statistics.median(times)
    return {"learn_median_ms_full": out["FULL"], "learn_median_ms_normal": out["NORMAL"],
            "full_over_normal": out["FULL"] / max(out["NORMAL"], 1e-9)}


def plot(path: Path, checkpoints, mean_curves, sd_curves, few, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib missing: pip install 'firstwords[plot]' for the PNG)")
        return False
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {"encoder": "(a) encoder only", "memory": "(b) memory",
              "memory_reentrant": "(c) memory + re-entrance",
              "ideal_frames": "(d) ground-truth frames in windows"}
    colours = {"encoder": "tab:blue", "memory": "tab:orange", "memory_reentrant": "tab:green",
               "ideal_frames": "tab:grey"}
    for k, lab in labels.items():
        if k not in mean_curves:
            continue
        m, s = np.array(mean_curves[k]), np.array(sd_curves[k])
        ax.plot(checkpoints, m, marker="o", ms=3, label=lab, color=colours[k],
                ls="--" if k == "ideal_frames" else "-")
        ax.fill_between(checkpoints, m - s, m + s, alpha=0.15, color=colours[k])
    ax.axhline(0.25, color="grey", ls=":", label="chance")
    ax.set_xlabel("utterances heard")
    ax.set_ylabel("held-out 4-way accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("learning curve")
    for k in ("memory", "memory_reentrant"):
        bx.plot(list(SHOTS), [few[k][s] for s in SHOTS], marker="o", label=labels[k], color=colours[k])
    bx.axhline(0.25, color="grey", ls=":")
    bx.axhline(0.60, color="red", ls="--", lw=0.8, label="target 0.60")
    bx.set_xscale("log")
    bx.set_xticks(list(SHOTS), [str(s) for s in SHOTS])
    bx.set_xlabel("exposures to the novel word")
    bx.set_ylim(0, 1)
    bx.set_title("few-shot (category kept out of training)")
    bx.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="a model bundle (firstwords export)")
    ap.add_argument("--corpus", type=Path, help="the sample corpus (tools/build_sample_corpus.py)")
    ap.add_argument("--synthetic", action="store_true", help="clustered synthetic embeddings instead")
    ap.add_argument("--look-away", type=float, default=0.0, metavar="P",
                    help="synthetic: the share of naming windows whose second half shows another object")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--points", type=int, default=10,
                    help="checkpoints on the learning curve (plus early ones)")
    ap.add_argument("--trials", type=int, default=50, help="4-way trials per category at each checkpoint")
    ap.add_argument("--max-utterances", type=int, default=0, help="use only the first N (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spoken", action="store_true", help="also teach the novel word through the audio path "
                    "(six synthetic voices -> the bundle's device recogniser): few_shot_spoken")
    ap.add_argument("--adapt", choices=("enrol", "home", "none"), default="enrol",
                    help="--spoken: the recogniser adapted to the voices first, as `firstwords adapt` does "
                         "for a home: from their enrolment on the bundle's content words (enrol, default) "
                         "or other speech of theirs naming the other objects (home); or none")
    ap.add_argument("--out", type=Path, default=REPO / "work" / "bench_memory")
    args = ap.parse_args(argv)
    if not args.synthetic and (args.bundle is None or args.corpus is None):
        ap.error("give --bundle and --corpus, or --synthetic")
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    print("firstwords memory benchmark")
    if args.synthetic:
        data = synthetic_data(look_away=args.look_away)
    else:
        data = corpus_data(args.bundle, args.corpus, args.out / "cache", args.threads, args.max_utterances)
    if args.max_utterances:
        data.stream = data.stream[: args.max_utterances]
    n = len(data.stream)
    print(f"  data: {data.source}; {n} training utterances, {len(data.categories)} categories, dim "
          f"{data.dim}, {len(data.prior)} words with an encoder prior; novel word {data.novel_word!r} "
          f"({len(data.novel_exposures)} exposures available)")
    checkpoints = sorted({0, *[c for c in (10, 25, 50, 100) if c < n],
                          *[round(x) for x in np.linspace(0, n, args.points + 1)]})
    learning = LearningParams()
    print("  (c) is the memory as shipped (re-entrant gate); (b) is the same learner with it off")
    spoken = None
    if args.spoken and not args.synthetic:
        home = args.out / "home.speech.adapt" if args.adapt != "none" else None
        spoken = spoken_few_shot(args.bundle, data.novel_word, home, args.adapt)
    runs = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        runs.append(learning_curve(data, seed, checkpoints, args.trials, learning, spoken))
        print(f"  seed {seed}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    kinds = ["encoder", "memory", "memory_reentrant"]
    kinds += ["ideal_frames"] if "ideal_frames" in runs[0]["curves"] else []
    mean_c = {k: np.mean([r["curves"][k] for r in runs], axis=0).tolist() for k in kinds}
    sd_c = {k: np.std([r["curves"][k] for r in runs], axis=0).tolist() for k in kinds}
    aucs = {k: [auc(checkpoints, r["curves"][k]) for r in runs] for k in kinds}
    few = {k: {s: float(np.mean([r["few_shot"][k][s] for r in runs])) for s in SHOTS}
           for k in ("memory", "memory_reentrant")}
    few_oracle = {s: float(np.mean([r["few_shot"]["memory"][f"oracle_{s}"] for r in runs])) for s in SHOTS}
    few_sd = {k: {s: float(np.std([r["few_shot"][k][s] for r in runs])) for s in SHOTS}
              for k in ("memory", "memory_reentrant")}

    print("\nlearning curve: held-out 4-way accuracy (mean over seeds) vs utterances heard")
    print(f"  {'heard':>7} " + " ".join(f"{k:>17}" for k in kinds))
    for i, cp in enumerate(checkpoints):
        print(f"  {cp:>7} " + " ".join(f"{mean_c[k][i]:>10.3f} ± {sd_c[k][i]:.3f}" for k in kinds))
    print("\narea under the learning curve (mean accuracy over the session), mean ± sd over "
          f"{args.seeds} seeds:")
    for k, lab in zip(kinds, ["(a) encoder only", "(b) memory", "(c) memory + re-entrance",
                              "(d) ground-truth frames"]):
        print(f"  {lab:<26} {np.mean(aucs[k]):.4f} ± {np.std(aucs[k]):.4f}")
    diff = np.array(aucs["memory_reentrant"]) - np.array(aucs["memory"])
    reentrance_ok = bool(np.mean(diff) >= 0)
    # paired per seed: the same stream, trials and learner, only the frame selection differs
    verdict = ("better" if np.mean(diff) > np.std(diff) else "worse" if np.mean(diff) < -np.std(diff)
               else "equal")
    print(f"  (c) - (b): {np.mean(diff):+.4f} ± {np.std(diff):.4f} over seeds -> "
          f"{'(c) >= (b): PASS' if reentrance_ok else '(c) < (b): FAIL'} (mean); "
          f"beyond the seed spread: {verdict}")
    print("  (c) - (b) per seed: " + " ".join(f"{d:+.4f}" for d in diff)
          + f"  ((c) > (b) in {int(np.sum(diff > 0))} of {len(diff)} seeds)")
    headroom = None
    if "ideal_frames" in aucs:  # what a perfect frame choice would gain: the most re-entrance could
        hd = np.array(aucs["ideal_frames"]) - np.array(aucs["memory"])
        headroom = (float(np.mean(hd)), float(np.std(hd)))
        print(f"  (d) - (b): {headroom[0]:+.4f} ± {headroom[1]:.4f}: what choosing frames WITHIN each window "
              f"could gain (ground truth; the window's credit kept; (d) is not a learner)")
    on_target = None
    if data.views is not None:
        on_target = {k: float(np.mean([r["on_target"][k] for r in runs]))
                     for k in ("uniform", "memory", "memory_reentrant")}
        print("\nframe selection: share of what a category word learned (frames' worth) from windows where "
              "it was said that came from frames showing it (ground truth)")
        print(f"  every frame of the window alike {on_target['uniform']:.3f}   (b) memory "
              f"{on_target['memory']:.3f}   (c) memory + re-entrance {on_target['memory_reentrant']:.3f}")
    print(f"\nfew-shot: 4-way accuracy of {data.novel_word!r} (never in training) after k exposures")
    for k in ("memory", "memory_reentrant"):
        print(f"  {k:<17} " + "  ".join(f"k={s}: {few[k][s]:.3f}±{few_sd[k][s]:.3f}" for s in SHOTS))
    print(f"  {'(reference)':<17} " + "  ".join(f"k={s}: {few_oracle[s]:.3f}      " for s in SHOTS)
          + " <- supervised prototype of the same exposures")
    few_ok = max(few["memory_reentrant"][s] for s in SHOTS) >= 0.60
    print(f"  reaches >= 0.60 within 10 exposures: {'PASS' if few_ok else 'FAIL'}")
    spoken_acc = spoken_heard = None
    if spoken is not None:
        sp = [r["few_shot"]["spoken"] for r in runs]
        spoken_acc = {s: float(np.mean([r["accuracy"][s] for r in sp])) for s in SHOTS}
        spoken_heard = {s: float(np.mean([r["heard"][s] for r in sp])) for s in SHOTS}
        print(f"  {'spoken (c)':<17} " + "  ".join(f"k={s}: {spoken_acc[s]:.3f} (heard {spoken_heard[s]:.1f})"
                                                for s in SHOTS) + " <- said by six voices, heard")
        for text, voice, heard in runs[0]["few_shot"]["spoken"]["exposures"]:
            print(f"      {voice}: {text!r} -> {heard!r}")

    lat = name_latency(data.dim)
    print(f"\nname() at {lat['words']} words: median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})")
    print(f"learn() at {lat['words']} words, in RAM: median {lat['learn_median_ms']:.3f} ms per utterance")
    ll = learn_latency(data.dim)
    print(f"learn() on a file database: median {ll['learn_median_ms_full']:.2f} ms (synchronous FULL) vs "
          f"{ll['learn_median_ms_normal']:.2f} ms (NORMAL): FULL/NORMAL = {ll['full_over_normal']:.2f}x")

    png = args.out / "memory_learning_curve.png"
    if plot(png, checkpoints, mean_c, sd_c, few, data.source):
        print(f"plot: {png}")
    result = {
        "source": data.source, "utterances": n, "seeds": args.seeds, "checkpoints": checkpoints,
        "curves_mean": {k: [round(x, 4) for x in v] for k, v in mean_c.items()},
        "auc_mean": {k: round(float(np.mean(v)), 4) for k, v in aucs.items()},
        "auc_sd": {k: round(float(np.std(v)), 4) for k, v in aucs.items()},
        "auc_per_seed": {k: [round(x, 4) for x in v] for k, v in aucs.items()},
        "reentrance_minus_plain_auc": round(float(np.mean(diff)), 4),
        "reentrance_minus_plain_auc_sd": round(float(np.std(diff)), 4),
        "reentrance_minus_plain_auc_per_seed": [round(float(d), 4) for d in diff],
        "reentrance_better_seeds": int(np.sum(diff > 0)),
        "ideal_frames_minus_plain_auc": None if headroom is None else round(headroom[0], 4),
        "ideal_frames_minus_plain_auc_sd": None if headroom is None else round(headroom[1], 4),
        "reentrance_ge_plain": reentrance_ok, "reentrance_verdict": verdict,
        "frames_on_target": None if on_target is None else {k: round(v, 4) for k, v in on_target.items()},
        "novel_word": data.novel_word,
        "few_shot": {k: {str(s): round(v, 4) for s, v in d.items()} for k, d in few.items()},
        "few_shot_reaches_0_60": few_ok,
        "few_shot_spoken": spoken_acc and {str(s): round(v, 4) for s, v in spoken_acc.items()},
        "few_shot_spoken_heard": spoken_heard and {str(s): v for s, v in spoken_heard.items()},
        "few_shot_supervised_prototype": {str(s): round(v, 4) for s, v in few_oracle.items()},
        "name_median_ms_10k": round(lat["median_ms"], 4), "name_p90_ms_10k": round(lat["p90_ms"], 4),
        "learn_median_ms_10k_ram": round(lat["learn_median_ms"], 3),
        "learn_median_ms_full": round(ll["learn_median_ms_full"], 3),
        "learn_median_ms_normal": round(ll["learn_median_ms_normal"], 3),
        "learn_full_over_normal": round(ll["full_over_normal"], 2),
        "plot": str(png), "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
