"""The tokenizer rule travels with the vocabulary: bundles and checkpoints name it; old ones (which do not) keep
the rule they were made with, with a warning; an unknown rule is refused."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from firstwords.edge.bundle import load_bundle
from firstwords.edge.errors import BundleError, DataError
from firstwords.edge.tokenize import LEGACY_RULE, SPACY_RULE, Vocab

torch = pytest.importorskip("torch")
from firstwords.export.tiny_dual import VOCAB, make_bundle

CONTRACTED = {**VOCAB, "that": 8, "'s": 9, "that's": 10, ",": 11}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_bundle(tmp_path_factory.mktemp("rule") / "bundle")


@pytest.fixture
def bundle_dir(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "bundle"))


def _edit_tokenizer(d: Path, **changes) -> None:
    m = json.loads((d / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            m["tokenizer"].pop(k, None)
        else:
            m["tokenizer"][k] = v
    (d / "manifest.json").write_text(json.dumps(m))


def test_new_bundles_name_the_spacy_rule(bundle_dir, caplog):
    tok = json.loads((bundle_dir / "manifest.json").read_text())["tokenizer"]
    assert tok["rule"] == SPACY_RULE and tok["strip_punctuation"] is False
    with caplog.at_level(logging.WARNING):
        b = load_bundle(bundle_dir)
    assert b.tokenizer.rule == SPACY_RULE and b.vocab.rule == SPACY_RULE
    assert "tokenizer rule" not in caplog.text


def test_old_bundle_keeps_the_old_rule_with_a_warning(bundle_dir, caplog):
    _edit_tokenizer(bundle_dir, rule=None, strip_punctuation=True)  # a manifest as firstwords wrote it before
    with caplog.at_level(logging.WARNING):
        b = load_bundle(bundle_dir)
    assert b.vocab.rule == LEGACY_RULE
    assert "does not name its tokenizer rule" in caplog.text and LEGACY_RULE in caplog.text
    assert b.vocab.tokens("Look, the ball!") == ["look", "the", "ball"]


@pytest.mark.parametrize("changes,msg", [
    ({"rule": "nltk_v9"}, "unknown tokenizer rule 'nltk_v9'"),
    ({"rule": SPACY_RULE, "strip_punctuation": True}, "not a tokenisation this firstwords implements"),
    ({"rule": 3}, "must be a string"),
])
def test_bad_rule_is_refused_naming_it(bundle_dir, changes, msg):
    _edit_tokenizer(bundle_dir, **changes)
    with pytest.raises(BundleError, match=msg):
        load_bundle(bundle_dir)


def test_encoder_feeds_cvcl_tokens(tmp_path):
    """Through a real bundle: under the spaCy rule "that's," is <sos> that 's , <eos>; under the old rule it was
    <sos> that's <eos>."""
    from firstwords.edge.encode import Encoder
    from firstwords.export.bundle import write_bundle
    from firstwords.export.onnx_export import export_towers
    from firstwords.export.tiny_dual import SIZE, manifest_fields, tiny_model

    towers = export_towers(tiny_model(0, vocab_size=len(CONTRACTED)), tmp_path / "onnx", SIZE)
    for rule in (SPACY_RULE, LEGACY_RULE):
        out = write_bundle(tmp_path / rule, towers.image, towers.utterance, Vocab(dict(CONTRACTED), rule=rule),
                           manifest_fields(opset=towers.opset))
        enc = Encoder(out, threads=1)
        want = [2, 8, 9, 11, 3] if rule == SPACY_RULE else [2, 10, 3]
        assert enc.vocab.encode("That's,") == want
        ref = Encoder(out, threads=1).encode_utterance(["that 's ,"] if rule == SPACY_RULE else ["that's"])
        assert float(enc.encode_utterance(["That's,"])[0] @ ref[0]) > 0.9999


def test_checkpoint_records_its_rule_and_old_ones_keep_the_old(tmp_path, caplog):
    from firstwords.export.checkpoint import load_checkpoint, save_checkpoint
    from firstwords.export.config import config_from_dict, load_model_config
    from firstwords.export.model import build_model

    d = load_model_config("compact").to_dict()
    d["image"].update(input_size=32, pretrained="none")
    d["embedding_dim"] = 16
    model = build_model(config_from_dict(d), len(VOCAB))
    ck = save_checkpoint(tmp_path / "ck", model, Vocab(dict(VOCAB)))
    assert json.loads((ck / "meta.json").read_text())["tokenizer"] == SPACY_RULE
    assert load_checkpoint(ck)[1].rule == SPACY_RULE
    meta = json.loads((ck / "meta.json").read_text())
    del meta["tokenizer"]
    (ck / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(ck)[1].rule == LEGACY_RULE
    assert "does not name its tokenizer rule" in caplog.text
    meta["tokenizer"] = "nltk_v9"
    (ck / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="unknown tokenizer rule"):
        load_checkpoint(ck)
