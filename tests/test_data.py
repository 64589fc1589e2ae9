"""export.data's readers (CVCL metadata, transcript, eval sets) with bad-data reporting; export.pairs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import DataError
from firstwords.edge.tokenize import Vocab, build_vocab

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from firstwords.export import data, pairs


def _png(path: Path, colour=(200, 30, 30), size=(40, 32)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = colour
    arr[: size[1] // 2, : size[0] // 2] = 255 - np.array(colour, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path.name


def _write_meta(root: Path, records: list, name: str = "train.json") -> Path:
    p = root / name
    p.write_text(json.dumps({"data": records}), encoding="utf-8")
    return p


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for i in range(6):
        _png(tmp_path / "frames" / f"{i:06d}.png", colour=(40 * i, 100, 200 - 30 * i))
    return tmp_path


def _rec(utt, frames, **kw):
    return {"utterance": utt, "frame_filenames": [f"frames/{f:06d}.png" for f in frames],
            "timestamps": [float(f) / 5 for f in frames], "utterance_num": 0, **kw}


def test_reads_good_records_with_relative_paths_and_keeps_meta(corpus):
    p = _write_meta(corpus, [_rec("look at the shoe", [0, 1], video="session_000"), _rec("all done", [2])])
    rep = data.load_cvcl_metadata(p)
    assert [r.utterance for r in rep.records] == ["look at the shoe", "all done"]
    assert rep.records[0].frame_paths == [corpus / "frames/000000.png", corpus / "frames/000001.png"]
    assert rep.records[0].timestamps == [0.0, 0.2]
    assert rep.records[0].meta == {"utterance_num": 0, "video": "session_000"}
    assert not rep.problems


def test_each_bad_kind_is_counted_skipped_and_named(corpus, caplog):
    recs = [
        _rec("good one", [0]),
        _rec("", [1]),                                      # empty_utterance
        _rec("  ", [1]),                                    # empty_utterance
        _rec("missing some", [2, 99]),                      # missing_frame (kept with 1 frame)
        _rec("missing all", [98, 99]),                      # missing_frame x2 + no_frames_left
        _rec("no frames", []),                              # no_frames
        _rec("typo key", [3], frame_filename="x.png"),      # unknown_keys (kept)
        {"frame_filenames": ["frames/000004.png"]},         # missing_utterance
        _rec(7, [4]),                                       # bad_utterance
    ]
    p = _write_meta(corpus, recs)
    # a record with bytes that are not UTF-8, spliced into the JSON text
    raw = p.read_bytes().replace(b'"good one"', b'"good one"', 1)
    raw = raw[:-2] + b', {"utterance": "caf\xe9 bad", "frame_filenames": ["frames/000005.png"]}]}'
    p.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="firstwords.export.data"):
        rep = data.load_cvcl_metadata(p)
    assert [r.utterance for r in rep.records] == ["good one", "missing some", "typo key"]
    assert rep.records[1].frame_paths == [corpus / "frames/000002.png"]
    assert rep.records[1].timestamps == [0.4]
    assert rep.problems == {"empty_utterance": 2, "missing_frame": 3, "no_frames_left": 1, "no_frames": 1,
                            "unknown_keys": 1, "missing_utterance": 1, "bad_utterance": 1,
                            "undecodable_text": 1}
    summary = rep.summary()
    assert "3 of 10 records usable" in summary
    assert "000099.png" in summary and "frame_filename" in summary and "not UTF-8" in summary
    # one log line per kind, naming the file
    logged = caplog.text
    for kind in rep.problems:
        assert kind in logged
    assert "unknown_keys: 1" in logged and "kept" in logged


def test_all_bad_raises_data_error_saying_why(corpus):
    p = _write_meta(corpus, [_rec("a", [50]), _rec("", [0])])
    with pytest.raises(DataError) as e:
        data.load_cvcl_metadata(p)
    msg = str(e.value)
    assert "none of the 2 utterance records is usable" in msg
    assert "missing_frame" in msg and "000050.png" in msg and "empty_utterance" in msg
    assert "frames_root" in msg


def test_frames_root_and_absolute_paths(corpus, tmp_path_factory):
    other = tmp_path_factory.mktemp("meta")
    p = _write_meta(other, [_rec("hi there", [0]),
                            {"utterance": "abs", "frame_filenames": [str(corpus / "frames/000001.png")]},
                            # CVCL's cluster path: found by file name under frames_root
                            {"utterance": "cluster", "frame_filenames": ["/misc/lab/frames/000002.png"]}])
    beside = data.load_cvcl_metadata(p)  # relative paths resolved beside the json: only the absolute one
    assert [r.utterance for r in beside.records] == ["abs"] and beside.problems["missing_frame"] == 2
    rep = data.load_cvcl_metadata(p, frames_root=corpus)
    want = [corpus / f"frames/00000{i}.png" for i in range(3)]
    assert [r.frame_paths[0] for r in rep.records] == want
    assert rep.records[1].timestamps[0] != rep.records[1].timestamps[0]  # NaN when no timestamps given


def test_not_json_and_wrong_shape_are_clear(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        data.load_cvcl_metadata(bad)
    bad.write_text(json.dumps({"items": []}))
    with pytest.raises(DataError, match=r'\{"data": \[...\]\}'):
        data.load_cvcl_metadata(bad)
    with pytest.raises(DataError, match="not found"):
        data.load_cvcl_metadata(tmp_path / "nope.json")


def test_load_frame_errors_name_the_file(corpus):
    arr = data.load_frame(corpus / "frames/000000.png")
    assert arr.dtype == np.uint8 and arr.shape == (32, 40, 3)
    junk = corpus / "frames/junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="junk.jpg.*cannot decode"):
        data.load_frame(junk)
    with pytest.raises(DataError, match="gone.png.*not found"):
        data.load_frame(corpus / "gone.png")


def test_eval_set_ours_and_cvcl_trials(corpus):
    ours = corpus / "eval.json"
    ours.write_text(json.dumps({"data": [{"category": "shoe", "frame_filename": "frames/000000.png"},
                                         {"category": "bag", "frame_filename": "frames/000001.png"},
                                         {"category": "bag", "frame_filename": "frames/missing.png"}]}))
    es = data.load_eval_set(ours)
    assert es.labels == ["shoe", "bag"] and es.trials is None and es.categories == ["bag", "shoe"]

    def f(i):  # CVCL stores absolute paths
        return str(corpus / f"frames/{i:06d}.png")
    trials = corpus / "eval_dev.json"
    trials.write_text(json.dumps({"data": [
        {"trial_num": 0, "target_category": "ball", "target_img_filename": f(0),
         "foil_categories": ["cat", "car", "cup"], "foil_img_filenames": [f(1), f(2), f(3)]},
        {"trial_num": 1, "target_category": "cat", "target_img_filename": f(1),
         "foil_categories": ["ball", "car", "cup"], "foil_img_filenames": [f(0), f(2), f(4)]}]}))
    es = data.load_eval_set(trials)
    assert len(es.frame_paths) == 5 and es.labels == ["ball", "cat", "car", "cup", "cup"]
    assert es.trials[0].image_indices == (0, 1, 2, 3) and es.trials[0].target_position == 0
    assert es.trials[1].category == "cat" and es.trials[1].image_indices == (1, 0, 2, 4)
    from firstwords.edge.evaluate import score_trials
    emb = np.eye(5, dtype=np.float32)
    res = score_trials(es.trials, emb, {"ball": emb[0], "cat": emb[1]})
    assert res.overall == 1.0 and res.n_way == 4


def test_split_records_is_by_utterance_and_deterministic():
    recs = list(range(100))
    a = data.split_records(recs, seed=3)
    assert [len(x) for x in a] == [90, 5, 5]
    assert sorted(a[0] + a[1] + a[2]) == recs
    assert a == data.split_records(recs, seed=3) and a != data.split_records(recs, seed=4)
    with pytest.raises(DataError):
        data.split_records(recs, (0.5, 0.5, 0.5))


def _dataset(corpus, **kw):
    p = _write_meta(corpus, [_rec("look at the shoe", [0, 1, 2]), _rec("where is the bag", [3]),
                             _rec("the shoe the shoe", [4, 5])])
    recs = data.load_cvcl_metadata(p).records
    vocab = Vocab(build_vocab([r.utterance for r in recs], min_freq=1))
    return recs, vocab, pairs.PairDataset(recs, vocab, 24, **kw)


def test_pair_dataset_eval_uses_device_preprocessing(corpus):
    from firstwords.edge.preprocess import prepare_images
    recs, vocab, ds = _dataset(corpus, train=False)
    img, tok, n = ds[0]
    assert img.dtype == torch.float32 and tuple(img.shape) == (3, 24, 24)
    want = prepare_images([data.load_frame(recs[0].frame_paths[0])], 24)[0]
    assert np.array_equal(img.numpy(), want)
    assert tok.dtype == torch.int64 and tok.shape == (vocab.max_tokens,)
    assert n == 6 and tok[:n].tolist() == vocab.encode("look at the shoe") and tok[n:].sum() == 0
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    imgs, toks, ns = next(iter(loader))
    assert imgs.shape == (3, 3, 24, 24) and toks.shape == (3, 25) and ns.tolist() == [6, 6, 6]


def test_pair_dataset_train_augments_and_draws_frames(corpus):
    torch.manual_seed(0)
    _, _, ds = _dataset(corpus, train=True)
    draws = torch.stack([ds[0][0] for _ in range(12)])
    assert draws.shape == (12, 3, 24, 24) and torch.isfinite(draws).all()
    # random frame + crop + blur + flip: the draws differ
    assert (draws - draws[0]).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 8


def test_shuffled_pairs_control_pairs_other_frames(corpus):
    recs, vocab, ds = _dataset(corpus, train=False, shuffle_pairs=True, seed=1)
    assert sorted(ds.frame_source.tolist()) == [0, 1, 2]
    assert all(ds.frame_source[i] != i for i in range(3))
    again = pairs.PairDataset(recs, vocab, 24, train=False, shuffle_pairs=True, seed=1)
    assert ds.frame_source.tolist() == again.frame_source.tolist()
    img, tok, _ = ds[0]
    other = pairs.PairDataset(recs, vocab, 24, train=False)[int(ds.frame_source[0])][0]
    assert torch.equal(img, other)  # the frame of another utterance
    assert tok[:ds[0][2]].tolist() == vocab.encode(recs[0].utterance)  # the utterance stays its own


def test_bad_frame_inside_dataset_names_the_file(corpus):
    recs, _, ds = _dataset(corpus, train=False)
    Path(recs[1].frame_paths[0]).write_bytes(b"garbage")
    with pytest.raises(DataError, match="000003.png"):
        ds[1]
