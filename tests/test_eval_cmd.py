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
    assert figures["n_way"] == 4 and figures["chance"] == 0.25
    assert set(figures["per_category"]) == {"red", "green", "blue", "yellow", "purple"}
    assert figures["accuracy"] > 0.5 and figures["ci95"][0] < figures["accuracy"] < figures["ci95"][1]
    assert "95% CI" in out and "chance 0.250" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(js.read_text()) == figures


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
