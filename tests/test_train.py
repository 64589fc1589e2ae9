"""Training: learns, resumes exactly, controls and ablations, bad data counted, torchrun (2 processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from firstwords.edge.errors import FirstwordsError
from firstwords.export.checkpoint import load_checkpoint
from firstwords.export.train import TrainOptions, train
from synthetic_corpus import build, tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("corpus"))


def opts(corpus, out, cfg, **kw):
    return TrainOptions(data=corpus / "train.json", out=out, config=str(cfg), progress=False, threads=1,
                        cache_dir=out.parent / "cache", **kw)


def test_trains_learns_and_writes_a_run(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.json")
    res = train(opts(corpus, tmp_path / "run", cfg, epochs=10))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert res.steps == 10 * (96 // 16) and res.stopped_by == "epochs"
    assert losses[-1] < losses[0] - 0.5  # log(16) = 2.77 at the start
    assert res.eval_acc is not None and res.eval_acc > 0.5  # 4-way on never-seen frames; chance 0.25
    for f in ("curves.png", "best/model.pt", "last/model.pt", "last/train_state.pt", "best/vocab.json"):
        assert (tmp_path / "run" / f).is_file(), f
    _, vocab, _, meta = load_checkpoint(tmp_path / "run")
    assert "red" in vocab and meta["best_val_loss"] == pytest.approx(res.best_val_loss)
    assert meta["path"].endswith("last") and meta["step"] == res.steps
    best = json.loads((tmp_path / "run" / "best" / "meta.json").read_text())
    assert best["val_loss"] == pytest.approx(res.best_val_loss)


def test_resume_continues_where_it_stopped(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.json", feature_dropout=0.5)  # dropout: the RNG stream must resume too
    train(opts(corpus, tmp_path / "a", cfg, steps=20))
    first = train(opts(corpus, tmp_path / "b", cfg, steps=9))
    assert first.steps == 9
    with pytest.raises(FirstwordsError, match="--resume"):
        train(opts(corpus, tmp_path / "b", cfg, steps=20))
    resumed = train(opts(corpus, tmp_path / "b", cfg, steps=20, resume=True))
    assert resumed.steps == 20
    a = load_checkpoint(tmp_path / "a" / "last")[0].state_dict()
    b = load_checkpoint(tmp_path / "b" / "last")[0].state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    with pytest.raises(FirstwordsError, match="nothing to resume"):
        train(opts(corpus, tmp_path / "c", cfg, steps=5, resume=True))


def test_shuffled_control_and_single_frame_change_the_pairs(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.json")
    base = train(opts(corpus, tmp_path / "base", cfg, steps=12))
    shuf = train(opts(corpus, tmp_path / "shuf", cfg, steps=12, shuffled=True))
    single = train(opts(corpus, tmp_path / "single", cfg, steps=12, single_frame=True))
    assert shuf.train_loss != pytest.approx(base.train_loss)
    assert single.train_loss != pytest.approx(base.train_loss)
    meta = json.loads((tmp_path / "shuf" / "last" / "meta.json").read_text())
    assert meta["shuffled"] is True


def test_bad_records_are_counted_not_fatal(corpus, tmp_path):
    data = json.loads((corpus / "train.json").read_text())
    data["data"][0]["utterance"] = "   "
    data["data"][1]["frame_filenames"] = ["frames/nope.png"]
    data["data"][1]["timestamps"] = [0.0]
    data["data"][2]["frame_filenames"][0] = "frames/also_missing.png"
    (corpus / "broken.json").write_text(json.dumps(data))
    cfg = tiny_config(tmp_path / "tiny.json")
    o = opts(corpus, tmp_path / "run", cfg, steps=6)
    o.data = corpus / "broken.json"
    res = train(o)
    assert res.data_problems.get("empty_utterance") == 1
    assert res.data_problems.get("missing_frame") == 2
    assert res.n_train == 94  # two records dropped, the one with a frame left kept


def test_undecodable_frame_file_does_not_crash_a_batch(corpus, tmp_path):
    bad = corpus / "frames" / "train_00000.png"
    keep = bad.read_bytes()
    bad.write_bytes(b"not an image")
    try:
        cfg = tiny_config(tmp_path / "img.json", cache=False)
        res = train(opts(corpus, tmp_path / "img", cfg, steps=4))
        assert res.steps == 4
        cfg = tiny_config(tmp_path / "tiny.json")
        res = train(opts(corpus, tmp_path / "cached", cfg, steps=4))
        assert res.steps == 4
    finally:
        bad.write_bytes(keep)


def test_image_mode_trains_whole_model(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "img.json", cache=False)
    res = train(opts(corpus, tmp_path / "img", cfg, steps=6))
    assert res.steps == 6
    model = load_checkpoint(tmp_path / "img" / "last")[0]
    assert not model.config.image.frozen


def test_too_little_data_is_a_clear_error(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.json")
    with pytest.raises(FirstwordsError, match="batch"):
        train(opts(corpus, tmp_path / "run", cfg, batch_size=512))


def _torchrun(corpus, out, cfg, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "firstwords.export.train", "--config", str(cfg), "--data", str(corpus / "train.json"),
           "-o", str(out),
           "--steps", "12", "--threads", "1", "--no-progress", "--cache-dir", str(out.parent / "cache")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_torchrun_two_processes_match_one(corpus, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.json")
    one = train(opts(corpus, tmp_path / "one", cfg, steps=12))
    two = _torchrun(corpus, tmp_path / "two", cfg, 2)
    # each rank takes half of the same global batch and the embeddings are gathered: same loss, same steps
    assert two["steps"] == 12
    assert two["train_loss"] == pytest.approx(one.train_loss, rel=1e-3, abs=1e-3)
    a = load_checkpoint(tmp_path / "one" / "last")[0].state_dict()
    b = load_checkpoint(tmp_path / "two" / "last")[0].state_dict()
    key = "image_encoder.projection.weight"
    assert torch.allclose(a[key], b[key], atol=1e-4)
