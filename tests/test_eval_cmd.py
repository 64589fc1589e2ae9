"""firstwords eval: CVCL's protocol on a checkpoint, the chart, and clear errors."""

import argparse
import json

import pytest
from firstwords.edge.errors import DataError, InputError
from firstwords.export.evaluate import evaluate_checkpoint
from firstwords.export.train import TrainOptions, train
from synthetic_corpus import build, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    corpus = build(root / "corpus", n_train=64, n_val=16, n_eval_per=6)
    cfg = tiny_config(root / "tiny.json")
    train(TrainOptions(data=corpus / "train.json", out=root / "run", config=str(cfg), epochs=8, progress=False,
                       threads=1))
    return corpus, root / "run"


def _cmd(argv):
    import firstwords.export.commands.eval as mod
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return mod.run(p.parse_args(argv))


def test_eval_command_prints_table_json_and_chart(run, tmp_path, capsys):
    corpus, ckpt = run
    png, js = tmp_path / "chart.png", tmp_path / "figures.json"
    assert _cmd([str(ckpt), "--data", str(corpus / "eval.json"), "--plot", str(png), "--json", str(js),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["directions"] == ["image", "text"] and figures["n_way"] == 4  # both, by default
    for d in ("image", "text"):
        r = figures[d]
        assert r["direction"] == d and r["n_way"] == 4 and r["chance"] == 0.25 and r["n_trials"] == 500
        assert set(r["per_category"]) == {"red", "green", "blue", "yellow", "purple"}
        assert r["accuracy"] > 0.5 and r["ci95"][0] < r["accuracy"] < r["ci95"][1]
    assert "direction image (word -> n images)" in out and "direction text (image -> n words)" in out
    assert "95% CI" in out and "chance 0.250" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(js.read_text()) == figures


def test_one_direction_only(run, capsys):
    corpus, ckpt = run
    assert _cmd([str(ckpt), "--data", str(corpus / "eval.json"), "--direction", "text", "--no-progress"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["directions"] == ["text"] and "image" not in figures


def _cvcl_trial_file(corpus, n_foils=3, per_cat=10, seed=0):
    """CVCL's eval_*.json layout, made from the corpus's eval images."""
    import random

    rng = random.Random(seed)
    items = json.loads((corpus / "eval.json").read_text())["data"]
    by_cat = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it["frame_filename"])
    trials = []
    for cat in sorted(by_cat):
        for i in range(per_cat):
            foils = rng.sample([c for c in sorted(by_cat) if c != cat], n_foils)
            trials.append({"trial_num": i, "target_category": cat, "target_img_filename": rng.choice(by_cat[cat]),
                           "foil_categories": foils, "foil_img_filenames": [rng.choice(by_cat[f]) for f in foils]})
    path = corpus / f"eval_test_{n_foils}_foils.json"
    path.write_text(json.dumps({"data": trials}))
    return path, trials


def test_text_direction_on_a_cvcl_trial_file_uses_its_foil_words(run):
    """Image direction: the word against the trial's images; text direction: the target image against the words
    of the trial's categories (target + foil_categories) — recomputed here from the embeddings by hand."""
    import numpy as np
    from firstwords.export.checkpoint import load_checkpoint
    from firstwords.export.data import load_eval_set
    from firstwords.export.evaluate import embed_images, evaluate, word_vectors

    corpus, ckpt = run
    path, trials = _cvcl_trial_file(corpus, n_foils=2)
    res = evaluate(ckpt, path)
    assert {d: r.n_way for d, r in res.items()} == {"image": 3, "text": 3}
    assert res["text"].n_trials == len(trials) == 50
    model, vocab, cfg, _ = load_checkpoint(ckpt)
    es = load_eval_set(path)
    emb, _ = embed_images(model, es.frame_paths, cfg.image.input_size, cfg.image.mean, cfg.image.std)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    words = word_vectors(model, vocab, es.categories)
    index = {p.name: i for i, p in enumerate(es.frame_paths)}  # eval frame names are unique
    right = 0
    for t in trials:
        img = emb[index[t["target_img_filename"].split("/")[-1]]]
        sims = [float(img @ words[c]) for c in [t["target_category"], *t["foil_categories"]]]
        right += int(np.argmax(sims) == 0)
    assert res["text"].overall == right / len(trials)


def test_a_bundle_evaluates_as_its_checkpoint(run, tmp_path):
    """One evaluation for torch checkpoints and ONNX bundles: the fp32 bundle scores as the checkpoint does."""
    from firstwords.edge.cli import main
    from firstwords.export.evaluate import evaluate

    corpus, ckpt = run
    out = tmp_path / "bundle"
    assert main(["export", str(ckpt), "-o", str(out), "--quantization", "none", "--skip-parity"]) == 0
    a = evaluate(ckpt, corpus / "eval.json", trials=20)
    b = evaluate(out, corpus / "eval.json", trials=20, threads=1)
    for d in ("image", "text"):
        assert abs(a[d].overall - b[d].overall) <= 0.02, (d, a[d].overall, b[d].overall)


def test_object_category_folder_makes_cvcl_konkle_trials(run, tmp_path, capsys):
    """A folder of category folders (CVCL's object-category layout): 5 trials per image, 3 foils each, only
    categories the vocabulary knows; the trials are written in CVCL's trial-file layout."""
    import shutil

    corpus, ckpt = run
    root = tmp_path / "object_categories"
    for it in json.loads((corpus / "eval.json").read_text())["data"][:30]:
        dst = root / it["category"] / (it["category"] + "_" + it["frame_filename"].split("/")[-1])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / it["frame_filename"], dst.with_suffix(".jpg"))
    (root / "zebra").mkdir()
    shutil.copy(next((root / "red").iterdir()), root / "zebra" / "z.jpg")  # not in the vocabulary: left out
    saved = tmp_path / "trials.json"
    assert _cmd([str(ckpt), "--data", str(root), "--write-trials", str(saved), "--no-progress"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_images = sum(1 for c in root.iterdir() if c.name != "zebra" for _ in c.iterdir())
    assert figures["image"]["n_trials"] == figures["text"]["n_trials"] == 5 * n_images
    assert figures["n_way"] == 4 and "zebra" not in figures["image"]["per_category"]
    trials = json.loads(saved.read_text())["data"]
    assert len(trials) == 5 * n_images
    assert set(trials[0]) == {"trial_num", "target_category", "target_img_filename", "foil_categories",
                              "foil_img_filenames"}
    assert all(len({t["target_category"], *t["foil_categories"]}) == 4 for t in trials)


def test_evaluate_checkpoint_is_deterministic_and_seeded(run):
    corpus, ckpt = run
    a = evaluate_checkpoint(ckpt, corpus / "eval.json", n_way=5, trials=20, seed=1)
    b = evaluate_checkpoint(ckpt, corpus / "eval.json", n_way=5, trials=20, seed=1)
    assert a.overall == b.overall and a.n_trials == 100 and a.n_way == 5


def test_n_way_larger_than_categories_is_a_clear_error(run):
    corpus, ckpt = run
    with pytest.raises(InputError, match="10-way.*5"):
        evaluate_checkpoint(ckpt, corpus / "eval.json", n_way=10)


def test_unknown_category_word_is_listed_as_skipped(run, tmp_path):
    corpus, ckpt = run
    data = json.loads((corpus / "eval.json").read_text())
    for item in data["data"][:6]:
        item["category"] = "zebra"  # a word the vocabulary never saw
    p = corpus / "eval_zebra.json"
    p.write_text(json.dumps(data))
    res = evaluate_checkpoint(ckpt, p, n_way=4, trials=10)
    assert "zebra" in res.skipped_categories and "zebra" not in res.per_category


def test_missing_checkpoint_or_data_is_a_clear_error(run, tmp_path):
    corpus, ckpt = run
    with pytest.raises(DataError, match="no checkpoint"):
        evaluate_checkpoint(tmp_path / "none", corpus / "eval.json")
    with pytest.raises(DataError, match="not found"):
        evaluate_checkpoint(ckpt, tmp_path / "missing.json")
