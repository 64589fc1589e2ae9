"""Build firstwords' sample corpus: a simulated head-cam session of REAL object photos with child-directed speech.

    python tools/build_sample_corpus.py --out work/corpus [--source auto|debian|subset] [--minutes 60] [--seed 0]
    python tools/build_sample_corpus.py --out work/tiny --tiny          # ~150 utterances, seconds
    python tools/build_sample_corpus.py --make-subset data/fashion_mnist_subset.npz   # (maintainers)

Objects are Fashion-MNIST product photos (Zalando, MIT licence), tinted and pasted with a mask onto scikit-image's
bundled photos (random crops, colour jitter) with clutter and sometimes a smaller distractor object. A scene
persists for a few seconds with camera jitter, sampled at 5 frames/s (CVCL's rate); a parent speaks utterances
from a small grammar: most name nothing in view, some name an absent object, word frequencies are Zipfian. The
child's gaze leaves the scene now and then (--look-away): those frames show another part of the room, half the time
another toy, so a naming window holds frames of the named object and frames of other things.

Output (CVCL's preprocessed format, see docs/CONTRACTS.md): train/val/test.json, transcript.csv, eval.json
(never-seen instances of the training categories in new scenes), novel.json + novel_exposures.json (a category
kept out of training entirely), timeline.json (the continuous session, for video/SRT/soundtrack) and
corpus_info.json. Human summary first; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from firstwords.edge.errors import DataError, FirstwordsError
from firstwords.export.sample_scene import (
    CameraPath,
    Scene,
    _cv2,
    load_backgrounds,
    render_scene,
    render_view,
    to_jpeg,
)
from firstwords.export.sample_script import (
    CHATTER,
    FPS,
    NAMING,
    plan_session,
    zipf_pick,
)
from firstwords.export.sample_source import CLASS_WORDS, FASHION_CLASSES, LEFT_OUT, load_source, make_subset

__all__ = ["CHATTER", "CLASS_WORDS", "NAMING", "Sizes", "build", "main"]

FORMAT = "firstwords-sample-corpus v1"
MAX_WINDOW_FRAMES = 32  # CVCL: an utterance's frames run to the next utterance, at most 32
LOOK_AWAY = 0.0  # long-run share of a scene's time the child looks away from its main object (opt-in)
VIDEO_NAME = "session_000"
NOVEL_CATEGORY = "bag"  # never in a training frame or utterance; for the memory's few-shot test
TINY_CATEGORIES = ["shirt", "pants", "shoe", "boot"]


@dataclass
class Sizes:
    frame: int = 128
    minutes: float = 80.0
    eval_per_category: int = 100
    novel_eval: int = 100
    novel_exposures: int = 24
    categories: list[str] = field(default_factory=list)


_WORKER: dict = {}  # what episode renderers share (set before forking)


def _render_episode(job: tuple) -> tuple[int, list[dict]]:
    """Render one scene's frames; deterministic from (seed, episode) whatever the worker or order. Returns the
    first frame's number and each frame's object boxes."""
    ep, scene, away_scene, gaze, k0 = job
    w = _WORKER
    cv2 = _cv2()
    canvas, boxes = render_scene(scene, w["images"], np.random.default_rng([w["seed"], ep, 1]), w["pool"], w["frame"],
                          cv2)
    cam = CameraPath(np.random.default_rng([w["seed"], ep, 2]), w["frame"], canvas.shape[0])
    away = away_cam = None
    away_boxes: dict = {}
    if not all(gaze):  # what the child sees when looking away: another part of the room, maybe another toy
        away, away_boxes = render_scene(away_scene, w["images"], np.random.default_rng([w["seed"], ep, 4]), w["pool"],
                            w["frame"], cv2)
        away_cam = CameraPath(np.random.default_rng([w["seed"], ep, 5]), w["frame"], away.shape[0])
    frame_boxes = []
    for i, on in enumerate(gaze):
        img = cam.next(canvas, cv2) if on else away_cam.next(away, cv2)
        frame_boxes.append(cam.frame_boxes(boxes) if on else away_cam.frame_boxes(away_boxes))
        to_jpeg(img, w["out"] / f"frames/{k0 + i:06d}.jpg", cv2, w["quality"])
    return k0, frame_boxes


def build(out: Path, source: str, sizes: Sizes, seed: int, quality: int = 85, progress: bool = True,
          workers: int = 1, look_away: float = LOOK_AWAY) -> dict:
    t0 = time.perf_counter()
    cv2 = _cv2()
    data, source_name = load_source(source)
    pool = load_backgrounds()
    rng = np.random.default_rng(seed)
    cats = sizes.categories
    word_to_class = {w: c for c, w in CLASS_WORDS.items()}
    F = sizes.frame

    # Instances: training scenes draw from Fashion-MNIST's train split, held-out sets from its test split,
    # so an eval instance is never in a training frame. The novel category's train-split images are only
    # used for its exposures, its test-split images only for novel.json.
    def pool_of(split: str, word: str) -> np.ndarray:
        return rng.permutation(np.flatnonzero(data[f"{split}_y"] == word_to_class[word]))

    train_pool = {w: pool_of("train", w) for w in cats}
    test_pool = {w: pool_of("test", w) for w in cats}
    novel_train, novel_test = pool_of("train", NOVEL_CATEGORY), pool_of("test", NOVEL_CATEGORY)
    for w in cats:
        if len(test_pool[w]) < sizes.eval_per_category:
            raise DataError(f"only {len(test_pool[w])} held-out {w!r} images; lower the eval size")
    n_novel_eval = min(sizes.novel_eval, len(novel_test))
    n_exposures = min(sizes.novel_exposures, len(novel_train))
    cursor = dict.fromkeys(cats, 0)

    def next_instance(word: str) -> int:
        p = train_pool[word]
        i = int(p[cursor[word] % len(p)])  # cycles when the session is longer than the pool
        cursor[word] += 1
        return i

    # Category frequencies: mildly Zipfian (rank^-0.5), as a child sees some things more than others.
    cat_weights = 1.0 / np.arange(1, len(cats) + 1) ** 0.5
    cat_weights = cat_weights / cat_weights.sum()
    cat_order = list(rng.permutation(cats))
    cat_w = np.array([cat_weights[cat_order.index(c)] for c in cats])

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("frames", "eval_frames", "novel_frames"):
        (out / sub).mkdir(exist_ok=True)
        for old in (out / sub).glob("*.jpg"):  # a rebuild replaces, never mixes, frames
            old.unlink()

    # ---- plan the session episode by episode, then render it (in parallel)
    frames_meta, utterances, episodes, jobs, duration = plan_session(rng, cats, cat_w, next_instance,
                                                                     sizes.minutes * 60.0, seed, look_away)
    bar = _bar(total=len(frames_meta), desc="session frames", unit="frame", enabled=progress)
    _WORKER.update(images=data["train_x"], pool=pool, seed=seed, frame=F, quality=quality, out=out)
    by_frame = {round(m["t"] * FPS): m for m in frames_meta}

    def rendered(k0: int, frame_boxes: list[dict]) -> None:
        for i, b in enumerate(frame_boxes):
            by_frame[k0 + i]["boxes"] = b  # where each object in view is: for localisation checks
        bar.update(len(frame_boxes))

    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as procs:  # children inherit _WORKER
            for k0, frame_boxes in procs.imap_unordered(_render_episode, jobs, chunksize=8):
                rendered(k0, frame_boxes)
    else:
        for job in jobs:
            rendered(*_render_episode(job))
    bar.close()

    # ---- CVCL records: frames from the utterance's start to the next utterance's start (1..32 frames)
    frame_of = by_frame
    records = []
    for i, u in enumerate(utterances):
        nxt = utterances[i + 1]["start"] if i + 1 < len(utterances) else duration
        ks = list(range(math.ceil(round(u["start"] * FPS, 6)), math.ceil(round(nxt * FPS, 6))))
        ks = [k for k in ks if k in frame_of][:MAX_WINDOW_FRAMES]
        if not ks:
            ks = [min(frame_of, key=lambda k: abs(k / FPS - u["start"]))]
        u["frames"] = [ks[0], ks[-1] + 1]
        records.append({"utterance": u["text"], "frame_filenames": [frame_of[k]["file"] for k in ks],
                        "timestamps": [round(k / FPS, 2) for k in ks], "utterance_num": i,
                        "num_frames": len(ks), "video": VIDEO_NAME, "start_time": u["start"],
                        "end_time": u["end"], "speaker": u["speaker"], "categories_in_view": u["in_view"],
                        "named": u["named"]})
    # how often a naming window's frame shows what is named (CVCL's frame sampling sees the same odds)
    shown = [named in frame_of[k]["in_view"] for u in utterances if u["kind"] == "in_view"
             for named in u["named"] for k in range(*u["frames"])]
    order = rng.permutation(len(records))  # CVCL: shuffle, then split 90/5/5 by utterance
    n_val = n_test = max(1, int(0.05 * len(records)))
    splits = {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
              "test": sorted(order[n_val:n_val + n_test])}
    for split, idx in splits.items():
        _write_json(out / f"{split}.json", {"data": [records[i] for i in idx]})
        for i in idx:
            utterances[i]["split"] = split

    with open(out / "transcript.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Time", "Video Name", "Utterance", "Speaker"])
        for u in utterances:
            m, s = divmod(u["start"], 60)
            w.writerow([f"{int(m)}:{s:04.1f}", f"{VIDEO_NAME}.mp4", u["text"], u["speaker"]])

    # ---- held-out evaluation: never-seen instances in new scenes (single frames, no camera path)
    def still(word: str, instance: int, images: np.ndarray, name: str, salt: int) -> dict[str, list[float]]:
        others = [c for c in cats if c != word]
        distractor = others[rng.integers(len(others))] if rng.random() < 0.25 else None
        # a distractor here is another held-out (test-split) instance: eval scenes hold no training instance
        d_inst = int(test_pool[distractor][rng.integers(len(test_pool[distractor]))]) if distractor else None
        return render_view(Scene(word, instance, distractor, d_inst), images, [seed, salt], pool, F, cv2,
                           [out / name], quality)[0]

    eval_items = []
    n_eval = sizes.eval_per_category * len(cats) + n_novel_eval + n_exposures
    bar = _bar(total=n_eval, desc="held-out images", unit="img", enabled=progress)
    for w in cats:
        for j in range(sizes.eval_per_category):
            inst = int(test_pool[w][j])
            name = f"eval_frames/{len(eval_items) + 1:06d}.jpg"
            boxes = still(w, inst, data["test_x"], name, 10_000_000 + len(eval_items))
            eval_items.append({"category": w, "frame_filename": name, "instance": f"test:{inst}", "boxes": boxes})
            bar.update()
    _write_json(out / "eval.json", {"data": eval_items})

    novel_items = []
    for j in range(n_novel_eval):
        inst = int(novel_test[j])
        name = f"novel_frames/{j + 1:06d}.jpg"
        boxes = still(NOVEL_CATEGORY, inst, data["test_x"], name, 20_000_000 + j)
        novel_items.append({"category": NOVEL_CATEGORY, "frame_filename": name, "instance": f"test:{inst}",
                            "boxes": boxes})
        bar.update()
    _write_json(out / "novel.json", {"data": novel_items})

    exposures = []
    for j in range(n_exposures):  # a short head-cam window naming the novel object, 5 frames each
        inst = int(novel_train[j])
        names = [f"novel_frames/exp_{j + 1:04d}_{k}.jpg" for k in range(5)]
        render_view(Scene(NOVEL_CATEGORY, inst, None, None), data["train_x"], [seed, 30_000_000 + j], pool, F, cv2,
                    [out / n for n in names], quality)
        text = zipf_pick(rng, NAMING).format(w=NOVEL_CATEGORY)
        exposures.append({"utterance": text, "frame_filename": names[0], "frame_filenames": names,
                          "timestamps": [round(k / FPS, 2) for k in range(5)], "category": NOVEL_CATEGORY,
                          "instance": f"train:{inst}"})
        bar.update()
    bar.close()
    _write_json(out / "novel_exposures.json", {"data": exposures})

    # ---- the continuous session, for a video + SRT + soundtrack
    _write_json(out / "timeline.json", {
        "format": FORMAT, "video": VIDEO_NAME, "fps": FPS, "frame_size": F, "duration": round(duration, 2),
        "frames": frames_meta,
        "utterances": [{"index": i, "text": u["text"], "start": u["start"], "end": u["end"],
                        "speaker": u["speaker"], "named": u["named"], "kind": u["kind"], "in_view": u["in_view"],
                        "episode": u["episode"], "split": u["split"], "frames": u["frames"]}
                       for i, u in enumerate(utterances)],
        "episodes": episodes})

    # ---- summary figures
    from_train = [utterances[i] for i in splits["train"]]
    word_counts = Counter(w for u in from_train for w in _words(u["text"]))
    kinds = Counter(u["kind"] for u in utterances)
    n_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    seconds = time.perf_counter() - t0
    info = {
        "format": FORMAT, "seed": seed, "source": source_name, "frame_size": F, "fps": FPS,
        "jpeg_quality": quality, "minutes": round(duration / 60, 2),
        "categories": cats, "novel_category": NOVEL_CATEGORY,
        "class_words": {FASHION_CLASSES[c]: w for c, w in CLASS_WORDS.items()},
        "left_out_classes": LEFT_OUT,
        "counts": {"utterances": len(utterances), "train": len(splits["train"]), "val": len(splits["val"]),
                   "test": len(splits["test"]), "frames": len(frames_meta), "episodes": len(episodes),
                   "eval_images": len(eval_items), "eval_per_category": sizes.eval_per_category,
                   "novel_eval_images": len(novel_items), "novel_exposures": len(exposures)},
        "utterance_kinds": {"names_in_view": round(kinds["in_view"] / len(utterances), 3),
                            "names_absent": round(kinds["absent"] / len(utterances), 3),
                            "names_nothing": round(kinds["none"] / len(utterances), 3)},
        "category_frequency": {c: sum(1 for e in episodes if e["primary"] == c) for c in cats},
        "look_away": look_away,
        "named_object_in_window": round(sum(shown) / max(len(shown), 1), 3),
        "word_frequencies": dict(word_counts.most_common()),
        "zipf_slope": _zipf_slope(word_counts),
        "held_out": "eval/novel instances come from Fashion-MNIST's test split; training scenes use only the "
                    "train split; the novel category appears in no training frame or utterance",
        "bytes": n_bytes, "build_seconds": round(seconds, 1),
    }
    _write_json(out / "corpus_info.json", info, indent=1)
    return info


def _words(text: str) -> list[str]:
    from firstwords.edge.tokenize import words
    return words(text)


def _zipf_slope(counts: Counter) -> float:
    """Least-squares slope of log frequency on log rank (Zipf's law: about -1)."""
    f = np.array(sorted(counts.values(), reverse=True), dtype=np.float64)
    if len(f) < 3:
        return float("nan")
    r = np.arange(1, len(f) + 1)
    return round(float(np.polyfit(np.log(r), np.log(f), 1)[0]), 3)


def _write_json(path: Path, obj: dict, indent: int | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, desc: str, unit: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: python tools/build_sample_corpus.py --out work/corpus")
    ap.add_argument("--out", type=Path, help="output folder (created; frames inside are replaced)")
    ap.add_argument("--source", choices=["auto", "debian", "subset"], default="auto",
                    help="Fashion-MNIST source: Debian's full set, the committed subset, or auto (Debian if "
                         "installed)")
    ap.add_argument("--minutes", type=float, default=None, help="session length (default 80; --tiny: 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frame-size", type=int, default=128,
                    help="frame side in pixels (default 128: the objects are 28x28 photos upscaled, so more "
                         "pixels add bytes, not detail)")
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    ap.add_argument("--look-away", type=float, default=LOOK_AWAY, metavar="SHARE",
                    help=f"share of a scene's time the child looks away from its main object, at another part "
                         f"of the room (default {LOOK_AWAY}; 0: the camera stays on the scene)")
    ap.add_argument("--tiny", action="store_true",
                    help=f"a few minutes, {len(TINY_CATEGORIES)} categories + the novel one, few held-out images "
                         "(tests, quick end-to-end runs)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="processes rendering frames (default: up to 2); output is the same for any number")
    ap.add_argument("--make-subset", type=Path, metavar="NPZ",
                    help="(maintainers) write the committed Fashion-MNIST subset from Debian's full set, then exit")
    args = ap.parse_args(argv)

    if args.make_subset:
        res = make_subset(args.make_subset)
        print(f"wrote {res['path']}: {res['train']} train + {res['test']} held-out images, {res['bytes']} bytes")
        print(json.dumps(res))
        return 0
    if args.out is None:
        ap.error("--out is required")
    if args.tiny:
        sizes = Sizes(frame=args.frame_size, minutes=args.minutes or 4.0, eval_per_category=20, novel_eval=20,
                      novel_exposures=8, categories=list(TINY_CATEGORIES))
    else:
        sizes = Sizes(frame=args.frame_size, minutes=args.minutes or 80.0,
                      categories=[w for c, w in sorted(CLASS_WORDS.items()) if w != NOVEL_CATEGORY])
    if not 32 <= sizes.frame <= 512:
        ap.error("--frame-size must be 32..512")
    if not 0.2 <= sizes.minutes <= 600:
        ap.error("--minutes must be 0.2..600")
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if not 0.0 <= args.look_away <= 0.8:
        ap.error("--look-away must be 0..0.8")
    try:
        info = build(args.out, args.source, sizes, args.seed, args.quality, progress=not args.no_progress,
                     workers=args.workers if sys.platform.startswith("linux") else 1, look_away=args.look_away)
    except FirstwordsError as e:  # the library raises; only here does an error become an exit code
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = info["counts"]
    k = info["utterance_kinds"]
    print(f"sample corpus in {args.out} ({info['source']}, seed {info['seed']}):")
    print(f"  session: {info['minutes']:.1f} min, {c['frames']} frames of {info['frame_size']}x{info['frame_size']} "
          f"at {info['fps']:g} fps, {c['episodes']} scenes")
    print(f"  utterances: {c['utterances']} (train {c['train']} / val {c['val']} / test {c['test']}); "
          f"name something in view {k['names_in_view']:.0%}, name an absent object {k['names_absent']:.0%}, "
          f"name nothing {k['names_nothing']:.0%}; Zipf slope {info['zipf_slope']}")
    print(f"  gaze: looks away {info['look_away']:.0%} of a scene's time; a naming window's frame shows the "
          f"named object {info['named_object_in_window']:.0%} of the time")
    print(f"  categories: {', '.join(info['categories'])}; novel (kept out of training): {info['novel_category']}")
    print(f"  held out: {c['eval_images']} eval images ({c['eval_per_category']}/category), "
          f"{c['novel_eval_images']} novel-category images, {c['novel_exposures']} novel exposures")
    print(f"  {info['bytes'] / 1e6:.1f} MB written in {info['build_seconds']:.1f} s")
    print(json.dumps({"out": str(args.out), "source": info["source"], "seed": info["seed"],
                      "frame_size": info["frame_size"], **c, **k, "zipf_slope": info["zipf_slope"],
                      "named_object_in_window": info["named_object_in_window"],
                      "bytes": info["bytes"], "seconds": info["build_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
