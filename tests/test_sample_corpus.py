"""The sample corpus (export.sample_corpus via tools/build_sample_corpus.py): layout, CVCL format, held-out and
novel splits, statistics, determinism, the objects' boxes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.tokenize import build_vocab, words

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "build_sample_corpus.py"  # the thin wrapper: it runs the package module
SUBSET = REPO / "data" / "fashion_mnist_subset.npz"

pytest.importorskip("cv2")
pytest.importorskip("skimage")


def _build(out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(TOOL), "--out", str(out), "--source", "subset", "--no-progress",
                           *extra], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    return out, _build(out, "--tiny")


def _load(p: Path) -> dict:
    return json.loads(p.read_text(encoding="utf-8"))


def test_layout_and_summary_line(tiny):
    out, figures = tiny
    for name in ("train.json", "val.json", "test.json", "eval.json", "novel.json", "novel_exposures.json",
                 "transcript.csv", "timeline.json", "corpus_info.json"):
        assert (out / name).is_file(), name
    info = _load(out / "corpus_info.json")
    assert figures["train"] + figures["val"] + figures["test"] == figures["utterances"] == \
        info["counts"]["utterances"]
    assert figures["train"] >= 0.85 * figures["utterances"] and figures["val"] >= 1 and figures["test"] >= 1
    assert 80 <= figures["utterances"] <= 300  # --tiny is about 150 utterances
    assert info["frame_size"] == 128 and info["fps"] == 5.0 and info["seed"] == 0
    assert len(info["categories"]) >= 4 and info["novel_category"] == "bag"
    assert info["bytes"] == figures["bytes"] > 0


def test_training_metadata_is_cvcl_format_and_clean(tiny):
    from firstwords.export.data import load_cvcl_metadata, load_frame
    out, figures = tiny
    for split in ("train", "val", "test"):
        rep = load_cvcl_metadata(out / f"{split}.json")
        assert not rep.problems, rep.summary()  # every frame exists, every key known
        assert len(rep.records) == figures[split]
        for r in rep.records:
            assert 1 <= len(r.frame_paths) <= 32
            assert np.allclose(np.diff(r.timestamps), 0.2)  # consecutive frames at 5 fps
            assert r.timestamps[0] >= r.meta["start_time"] - 1e-6 and r.meta["num_frames"] == len(r.frame_paths)
            assert r.meta["video"] == "session_000"
    frame = load_frame(rep.records[0].frame_paths[0])
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8 and frame.std() > 5


def test_novel_category_is_absent_from_training(tiny):
    out, _ = tiny
    info = _load(out / "corpus_info.json")
    novel = info["novel_category"]
    assert novel not in info["categories"] and novel not in info["word_frequencies"]
    timeline = _load(out / "timeline.json")
    assert all(novel not in f["in_view"] for f in timeline["frames"])
    for split in ("train", "val", "test"):
        for rec in _load(out / f"{split}.json")["data"]:
            assert novel not in words(rec["utterance"]) and novel not in rec["categories_in_view"]
    assert novel not in build_vocab(r["utterance"] for r in _load(out / "train.json")["data"])
    # its own held-out images and its exposures: distinct instances, all files present, each names it
    evals = _load(out / "novel.json")["data"]
    exposures = _load(out / "novel_exposures.json")["data"]
    assert len(evals) >= 20 and len(exposures) >= 8
    assert {e["category"] for e in evals} == {novel}
    assert not {e["instance"] for e in evals} & {e["instance"] for e in exposures}
    for e in exposures:
        assert novel in words(e["utterance"]) and (out / e["frame_filename"]).is_file()
        assert e["frame_filename"] == e["frame_filenames"][0] and all((out / f).is_file() for f in e["frame_filenames"])


def test_eval_instances_are_never_seen_in_training(tiny):
    from firstwords.export.data import load_eval_set
    out, _ = tiny
    info = _load(out / "corpus_info.json")
    es = load_eval_set(out / "eval.json")
    assert sorted(set(es.labels)) == sorted(info["categories"])
    assert all(es.labels.count(c) == 20 for c in info["categories"])
    eval_items = _load(out / "eval.json")["data"]
    seen = {i for e in _load(out / "timeline.json")["episodes"] for i in e["instances"]}
    assert seen and all(i.startswith("train:") for i in seen)
    assert all(e["instance"].startswith("test:") for e in eval_items)
    assert not seen & {e["instance"] for e in eval_items}
    assert len({e["frame_filename"] for e in eval_items}) == len(eval_items)


def test_speech_statistics(tiny):
    out, _ = tiny
    info = _load(out / "corpus_info.json")
    k = info["utterance_kinds"]
    assert k["names_in_view"] < 0.5  # most utterances name nothing in view ...
    assert k["names_absent"] > 0.02  # ... and some name what is not there
    assert abs(k["names_in_view"] + k["names_absent"] + k["names_nothing"] - 1) < 0.01
    freq = info["word_frequencies"]
    top = sorted(freq, key=lambda w: -freq[w])[:5]
    assert "the" in top  # function words are the most frequent
    assert -2.0 < info["zipf_slope"] < -0.6
    # named-in-view utterances really name a category whose object is in view
    timeline = _load(out / "timeline.json")
    for u in timeline["utterances"]:
        if u["kind"] == "in_view":
            assert u["named"][0] in u["in_view"] and u["named"][0] in words(u["text"])
        elif u["kind"] == "absent":
            assert u["named"][0] not in u["in_view"]


def test_timeline_and_transcript_agree(tiny):
    from firstwords.edge.transcripts import load_transcript
    out, _ = tiny
    tl = _load(out / "timeline.json")
    times = [f["t"] for f in tl["frames"]]
    assert np.allclose(np.diff(times), 0.2) and times[0] == 0.0  # continuous at 5 fps
    assert all((out / f["file"]).is_file() for f in tl["frames"][::50])
    starts = [u["start"] for u in tl["utterances"]]
    assert starts == sorted(starts) and all(u["end"] > u["start"] for u in tl["utterances"])
    assert all(a["end"] <= b["start"] for a, b in zip(tl["utterances"], tl["utterances"][1:]))  # no overlap
    assert tl["duration"] >= tl["utterances"][-1]["end"]
    rows = load_transcript(out / "transcript.csv")
    assert [r.text for r in rows] == [u["text"] for u in tl["utterances"]]
    assert np.allclose([r.start for r in rows], starts, atol=0.06)
    assert {r.video for r in rows} == {"session_000.mp4"}


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for name in ("train.json", "eval.json", "timeline.json"):
        h.update((out / name).read_bytes())
    for f in sorted((out / "frames").glob("*.jpg"))[::25]:
        h.update(f.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _build(a, "--tiny", "--minutes", "0.5", "--workers", "2")
    _build(b, "--tiny", "--minutes", "0.5", "--workers", "1")  # same output with one process
    _build(c, "--tiny", "--minutes", "0.5", "--seed", "1")
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_committed_subset():
    assert SUBSET.stat().st_size <= 3_000_000
    with np.load(SUBSET, allow_pickle=False) as z:
        assert z["train_x"].dtype == np.uint8 and z["train_x"].shape[1:] == (28, 28)
        assert z["train_x"].shape[0] == z["train_y"].shape[0] == z["train_idx"].shape[0]
        assert set(np.unique(z["train_y"])) == set(np.unique(z["test_y"])) == {0, 1, 2, 3, 4, 5, 7, 8, 9}
        debian = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        if debian.is_file():  # the subset is exactly the source's images at the recorded indices
            from firstwords.export.sample_source import read_idx
            full = read_idx(debian)
            assert np.array_equal(full[z["test_idx"]], z["test_x"])


def test_bad_source_is_a_clear_error(tmp_path, monkeypatch):
    import firstwords.export.sample_source as src
    from firstwords.edge.errors import DataError
    monkeypatch.setattr(src, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="dataset-fashion-mnist"):  # library code raises; main() exits
        src.load_source("debian")
    _, name = src.load_source("auto")  # falls back to the committed subset
    assert name.startswith("subset:")


def test_library_errors_are_errors_not_exits(tmp_path):
    from firstwords.edge.errors import DataError
    from firstwords.export.sample_corpus import Sizes, build
    with pytest.raises(DataError, match="held-out"):
        build(tmp_path / "c", "subset", Sizes(minutes=0.2, eval_per_category=10_000, categories=["shirt", "boot"]),
              seed=0, progress=False)


def test_boxes_locate_the_objects(tiny):
    """Every frame and held-out image records where its objects are ([x0, y0, x1, y1] in [0, 1])."""
    out, _ = tiny
    tl = _load(out / "timeline.json")
    for f in tl["frames"]:
        assert set(f["boxes"]) <= set(f["in_view"])
        for x0, y0, x1, y1 in f["boxes"].values():
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    items = _load(out / "eval.json")["data"]
    assert all(e["category"] in e["boxes"] for e in items)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for e in items for b in [e["boxes"][e["category"]]]]
    assert 0.05 < np.mean(areas) < 0.5


def test_default_gaze_stays_on_the_scene(tiny):
    out, figures = tiny
    tl = _load(out / "timeline.json")
    assert {f["looking"] for f in tl["frames"]} == {"scene"}
    assert figures["named_object_in_window"] > 0.95 and not any(e["away"] for e in tl["episodes"])


@pytest.fixture(scope="module")
def wandering(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gaze")
    return out, _build(out, "--tiny", "--minutes", "2", "--look-away", "0.4")


def test_gaze_leaves_the_scene_and_the_timeline_says_what_each_frame_shows(wandering):
    out, figures = wandering
    tl = _load(out / "timeline.json")
    info = _load(out / "corpus_info.json")
    by_ep = {e["episode"]: e for e in tl["episodes"]}
    away = [f for f in tl["frames"] if f["looking"] == "away"]
    assert away and len(away) < 0.5 * len(tl["frames"])  # the child looks away, but mostly at the scene
    for f in tl["frames"]:
        ep = by_ep[f["episode"]]
        if f["looking"] == "away":  # another part of the room: never the scene's objects, maybe another toy
            assert ep["primary"] is not None
            assert f["in_view"] == ([ep["away"]] if ep["away"] else [])
            assert ep["primary"] not in f["in_view"] and ep["distractor"] not in f["in_view"]
        else:
            assert f["in_view"] == [c for c in (ep["primary"], ep["distractor"]) if c]
    assert any(e["away"] for e in tl["episodes"])
    # an utterance's categories in view are everything in the room, so an 'absent' name is of nothing there
    for u in tl["utterances"]:
        ep = by_ep[u["episode"]]
        assert set(u["in_view"]) == {c for c in (ep["primary"], ep["distractor"], ep["away"]) if c}
    # the summary counts how often a naming window's frame shows the named object, from the frames themselves
    shown = [n in tl["frames"][k]["in_view"] for u in tl["utterances"] if u["kind"] == "in_view"
             for n in u["named"] for k in range(*u["frames"])]
    assert 0.4 < info["named_object_in_window"] == figures["named_object_in_window"] == \
        round(sum(shown) / len(shown), 3) < 0.9


def test_gaze_path_share_and_no_gaze():
    from firstwords.export.sample_script import gaze_path
    rng = np.random.default_rng(0)
    assert gaze_path(rng, 40, 0.0) == [True] * 40
    runs = [gaze_path(rng, 400, 0.4) for _ in range(20)]
    assert all(len(r) == 400 and r[0] for r in runs)  # a scene starts with the child looking at it
    share = 1 - np.mean([np.mean(r) for r in runs])
    assert 0.3 < share < 0.5  # the long-run share looking away is what was asked


def test_a_box_holds_its_pasted_object():
    """Render scenes twice, the second time with the object's photo blanked (same random streams): the pixels
    that change -- the object -- lie in the box the first rendering reports, and the box is not much larger."""
    import numpy as np
    from firstwords.export.sample_scene import CameraPath, Scene, _cv2, load_backgrounds, render_scene
    from firstwords.export.sample_source import load_subset

    cv2, pool = _cv2(), load_backgrounds()
    images = load_subset()["train_x"][:20]
    blank = np.zeros_like(images)
    for i in range(8):
        views = []
        for imgs in (images, blank):
            canvas, boxes = render_scene(Scene("shirt", i, None, None), imgs, np.random.default_rng([5, i]), pool,
                                         128, cv2)
            cam = CameraPath(np.random.default_rng([5, i, 2]), 128, canvas.shape[0])
            views.append((cam.next(canvas, cv2), cam.frame_boxes(boxes)))
        (with_obj, box), (without, _) = views
        changed = np.abs(with_obj - without).max(axis=2) > 0.1
        x0, y0, x1, y1 = (v * 128 for v in box["shirt"])
        ys, xs = np.nonzero(changed)
        inside = (xs >= x0 - 3) & (xs <= x1 + 3) & (ys >= y0 - 3) & (ys <= y1 + 3)  # the drop shadow: a few px
        assert changed.sum() > 100 and inside.mean() > 0.97, (i, inside.mean())
        assert changed.sum() > 0.3 * (x1 - x0) * (y1 - y0)  # the box is tight around the object
