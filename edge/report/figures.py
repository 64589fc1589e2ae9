"""The report's sections that need the bundle: localisation maps, the alignment map, n-way accuracy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from firstwords.edge.bundle import Bundle
from firstwords.edge.encode import Encoder
from firstwords.edge.evaluate import make_trials, score_trials, wilson_interval
from firstwords.edge.report import html
from firstwords.edge.report.data import MemoryReport
from firstwords.edge.report.evalset import EvalSet
from firstwords.edge.report.maps import (
    NEEDS_REEXPORT,
    SpatialEncoder,
    hit_rate,
    overlay,
    spatial_spec,
    word_maps,
)
from firstwords.edge.report.plots import Plotter
from firstwords.edge.report.png import data_uri, encode_png

MAP_WORDS = 6
MAP_FRAMES = 4
ALIGN_WORDS = 25
ALIGN_IMAGES = 40  # per category


def _map_words(rep: MemoryReport, vectors: Mapping[str, np.ndarray], cats: list[str]) -> list[str]:
    """Eval categories the memory has a vector for, strongest first."""
    strength = {f.word: f.strength for f in rep.words}
    return sorted((c for c in cats if c in vectors), key=lambda c: -strength.get(c, 0.0))


def maps_section(rep: MemoryReport, vectors: Mapping[str, np.ndarray], bundle: Bundle, ev: EvalSet | None,
                 enc: Encoder | None, threads: int | None) -> tuple[str, bool]:
    title = "Where the word is in the picture"
    if spatial_spec(bundle) is None:
        return html.section("maps", title, html.warn(NEEDS_REEXPORT)), False
    if ev is None or enc is None:
        return html.section("maps", title, html.warn("localisation maps are drawn over evaluation frames: pass "
                                                     "--eval-data (e.g. work/corpus/eval.json)")), True
    words = _map_words(rep, vectors, ev.categories)[:MAP_WORDS]
    if not words:
        return html.section("maps", title, html.warn("the memory has no vector for any evaluation category "
                                                     f"({', '.join(ev.categories)}): nothing to map yet")), True
    senc = SpatialEncoder(bundle, threads=threads)
    frames = ev.frames()
    embs, spatial = [], []
    for i in range(0, len(frames), 64):
        e, s = senc.encode(frames[i:i + 64])
        embs.append(e)
        spatial.append(s)
    ev._embeddings = np.concatenate(embs)  # the same graph's embedding output: no second pass for the rest
    sp = np.concatenate(spatial)
    figs = []
    for w in words:
        idx = [i for i, lab in enumerate(ev.labels) if lab == w][:MAP_FRAMES]
        maps = word_maps(sp[idx], vectors[w])
        cells = "".join(f'<figure>{html.img(data_uri(encode_png(overlay(frames[i], m)), "image/png"), w, "map")}'
                        f"<figcaption>{html.escape(ev.files[i].name)}</figcaption></figure>"
                        for i, m in zip(idx, maps))
        figs.append(f'<h3>{html.escape(w)}</h3><div class="maps">{cells}</div>')
    intro = html.note(f"Each cell of the image tower's {sp.shape[1]}×{sp.shape[2]} feature map before pooling, "
                      "projected into the joint space, scored by cosine against the word's vector in the memory "
                      "(bright = high); the white square marks the peak. Frames are never-seen evaluation frames.")
    parts = [intro]
    boxed = [i for i, lab in enumerate(ev.labels) if ev.boxes[i] and lab in ev.boxes[i] and lab in vectors]
    if boxed:
        labels, boxes = [ev.labels[i] for i in boxed], [ev.boxes[i][ev.labels[i]] for i in boxed]
        hr = hit_rate(sp[boxed], labels, boxes, vectors)
        text = hit_rate(sp[boxed], labels, boxes, {c: enc.word_embedding(c) for c in set(labels) if enc.knows(c)})
        parts.append(html.note(f"Honesty check: the map's peak falls inside the named object's box in {hr.hits} of "
                               f"{hr.n} evaluation frames ({hr.rate:.0%}) with the memory's word vectors, and in "
                               f"{text.hits} of {text.n} ({text.rate:.0%}) with the bundle's text encoder; a peak "
                               f"placed at random would land there {hr.chance:.0%} of the time (the boxes cover "
                               f"{hr.box_area:.0%} of a frame)."))
    else:
        parts.append(html.note("The evaluation data records no object boxes, so the maps' peaks are not scored."))
    return html.section("maps", title, *parts, *figs), True


def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T if vt.shape[0] >= 2 else np.c_[x @ vt[:1].T, np.zeros(len(x))]


def alignment_section(rep: MemoryReport, vectors: Mapping[str, np.ndarray], ev: EvalSet | None,
                      enc: Encoder | None, plot: Plotter) -> str:
    title = "Alignment of words and images"
    if not vectors:
        return html.section("alignment", title, html.warn("the memory is empty: no word vectors to place"))
    cats = set(ev.categories) if ev is not None else set()
    words = [f.word for f in rep.known[:ALIGN_WORDS]]
    words += [c for c in sorted(cats) if c in vectors and c not in words]
    if len(words) < 2:
        words = [f.word for f in rep.words[:ALIGN_WORDS]]
    wv = np.stack([vectors[w] for w in words])
    parts = []
    if ev is not None and enc is not None:
        emb = ev.embeddings(enc)
        keep = [i for c in sorted(cats) for i in [j for j, lab in enumerate(ev.labels) if lab == c][:ALIGN_IMAGES]]
        iv = emb[keep]
        # Each modality centred on its own mean: the words' offset from the images (the "modality gap") would
        # otherwise be the first component and hide how categories line up.
        xy = _pca2(np.concatenate([wv - wv.mean(0), iv - iv.mean(0)]))
        pts = [(float(a), float(b), w if w in cats else "", "s", w) for (a, b), w in zip(xy[:len(words)], words)]
        pts += [(float(a), float(b), ev.labels[i], "o", "") for (a, b), i in zip(xy[len(words):], keep)]
        parts.append(html.note(f"PCA of {len(words)} word vectors from the memory (squares) and {len(keep)} "
                               "evaluation image embeddings (dots), each set centred on its own mean; colour = "
                               "category (grey: a word that is not a category)."))
    else:
        xy = _pca2(wv)
        pts = [(float(a), float(b), "", "s", w) for (a, b), w in zip(xy, words)]
        parts.append(html.warn("no evaluation images: pass --eval-data to place images beside the words"))
    uri = plot.scatter(pts, "Words and images, 2-D PCA", "PC 1", "PC 2")
    return html.section("alignment", title, *parts, html.img(uri, "PCA map of words and images"))


def accuracy_section(vectors: Mapping[str, np.ndarray], ev: EvalSet | None, enc: Encoder | None,
                     plot: Plotter) -> str:
    title = "Per-category n-way accuracy"
    if ev is None or enc is None:
        return html.section("accuracy", title, html.warn("needs evaluation data: pass --eval-data"))
    cats = ev.categories
    if len(cats) < 2:
        return html.section("accuracy", title, html.warn(f"{ev.path} holds fewer than 2 categories"))
    emb = ev.embeddings(enc)
    trials = make_trials(ev.labels, n_way=min(4, len(cats)), trials_per_category=100, seed=0)
    series, rows = [], []
    sources = [("the memory's words", {c: vectors[c] for c in cats if c in vectors}),
               ("the bundle's text encoder", {c: enc.word_embedding(c) for c in cats if enc.knows(c)})]
    for name, wv in sources:
        if not wv:
            rows.append([html.escape(name), "—", "no vector for any category"])
            continue
        res = score_trials(trials, emb, wv)
        vals = [res.per_category.get(c, float("nan")) for c in cats]
        cis = [wilson_interval(round(res.per_category[c] * res.per_category_n[c]), res.per_category_n[c])
               if c in res.per_category else (0.0, 0.0) for c in cats]
        series.append((name, vals, cis))
        lo, hi = res.ci95
        missing = f"; no vector: {', '.join(res.skipped_categories)}" if res.skipped_categories else ""
        rows.append([html.escape(name), f"{res.overall:.3f}", f"[{lo:.3f}, {hi:.3f}] over {res.n_trials} trials"
                     + html.escape(missing)])
    n_way = len(trials[0].image_indices)
    parts = [html.note(f"CVCL's protocol: a category's word against {n_way} images (its own and {n_way - 1} from "
                       f"other categories), 100 trials per category, seed 0; whiskers are 95 % Wilson intervals; "
                       f"dashed line: chance 1/{n_way}."),
             html.table(["word vectors from", "accuracy", "95 % interval"], rows, numeric={1})]
    if series:
        parts.append(html.img(plot.bar_chart(cats, series, 1.0 / n_way, f"{n_way}-way accuracy per category",
                                             "accuracy"), "per-category accuracy"))
    return html.section("accuracy", title, *parts)
