"""Model configs, dual encoders, CVCL checkpoint mapping, checkpoints and ONNX exportability."""

import json

import numpy as np
import pytest
import torch
from firstwords.edge.errors import ConfigError, DataError
from firstwords.edge.tokenize import SPECIAL_TOKENS, Vocab
from firstwords.export.checkpoint import load_checkpoint, save_checkpoint
from firstwords.export.config import available_configs, config_from_dict, load_model_config
from firstwords.export.model import (
    DualEncoder,
    ImageTower,
    ResNeXt50,
    UtteranceTower,
    build_model,
    count_parameters,
    load_cvcl_state_dict,
)

torch.set_num_threads(1)


def small_vocab(n_words=20):
    ids = dict(SPECIAL_TOKENS)
    for i in range(n_words):
        ids[f"w{i}"] = len(ids)
    return Vocab(ids)


def test_every_builtin_config_loads():
    names = available_configs()
    assert {"compact", "cvcl", "compact_lstm", "compact_transformer"} <= set(names)
    for n in names:
        assert load_model_config(n).name == n


def test_unknown_and_missing_keys_name_file_and_key(tmp_path):
    d = load_model_config("compact").to_dict()
    d["image"]["colour"] = 1
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"bad\.json.*image\.colour"):
        load_model_config(p)
    d = load_model_config("compact").to_dict()
    del d["train"]["lr"]
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"bad\.json.*missing key `train\.lr`"):
        load_model_config(p)
    d = load_model_config("compact").to_dict()
    d["utterance"]["encoder"] = "gru"
    with pytest.raises(ConfigError, match="utterance.encoder.*allowed"):
        config_from_dict(d, "x.json")
    d = load_model_config("compact").to_dict()
    d["embedding_dim"] = "64"
    with pytest.raises(ConfigError, match="embedding_dim.*int"):
        config_from_dict(d, "x.json")
    with pytest.raises(ConfigError, match="not found"):
        load_model_config("nonexistent")


def test_compact_image_tower_is_pi_sized():
    cfg = load_model_config("compact")
    m = DualEncoder(cfg, 50)
    assert count_parameters(m.image_encoder) <= 5_000_000
    assert 128 <= cfg.image.input_size <= 160
    assert count_parameters(m, trainable_only=True) < count_parameters(m.image_encoder.backbone)  # frozen


def test_cvcl_parameter_counts_match_the_paper():
    m = DualEncoder(load_model_config("cvcl"), 2350)
    backbone = count_parameters(m.image_encoder.backbone)
    # ResNeXt-50 32x4d is 25.03 M with its 1000-way classifier, 22.98 M without (CVCL replaces the
    # classifier).
    assert backbone == 22_979_904
    assert backbone + 2048 * 1000 + 1000 == 25_028_904
    assert count_parameters(m.image_encoder.projection) == 2048 * 512 + 512  # 1.05 M
    assert count_parameters(m.utterance_encoder) == 2350 * 512  # 1.2 M
    assert count_parameters(m, trainable_only=True) == 2048 * 512 + 512 + 2350 * 512


def test_encoders_are_unit_norm_and_mask_pads():
    for name in ("compact", "compact_lstm", "compact_transformer"):
        torch.manual_seed(0)
        m = DualEncoder(load_model_config(name), 30).eval()
        img = m.encode_image(torch.randn(3, 3, 64, 64))
        assert torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
        short = torch.tensor([[2, 5, 6, 3]])
        padded = torch.tensor([[2, 5, 6, 3, 0, 0, 0]])
        a, b = m.encode_utterance(short), m.encode_utterance(padded)
        assert torch.allclose(a.norm(dim=1), torch.ones(1), atol=1e-5)
        assert torch.allclose(a, b, atol=1e-5), name  # padding changes nothing
        other = m.encode_utterance(torch.tensor([[2, 7, 6, 3]]))
        assert not torch.allclose(a, other, atol=1e-3)


def test_cvcl_embedding_encoder_is_the_mean_of_word_embeddings():
    m = DualEncoder(load_model_config("compact"), 30).eval()
    tokens = torch.tensor([[2, 5, 6, 3, 0]])
    e = m.utterance_encoder.embedding.weight
    expected = torch.nn.functional.normalize(e[[2, 5, 6, 3]].mean(0, keepdim=True), dim=1)
    assert torch.allclose(m.encode_utterance(tokens), expected, atol=1e-6)


def test_frozen_backbone_stays_in_eval_mode_and_gets_no_gradient():
    m = DualEncoder(load_model_config("compact"), 30)
    m.train()
    assert not m.image_encoder.backbone.training
    img, utt, scale = m(torch.randn(4, 3, 64, 64), torch.tensor([[2, 4, 3]] * 4))
    (img * utt).sum().backward()
    assert all(p.grad is None for p in m.image_encoder.backbone.parameters())
    assert m.image_encoder.projection.weight.grad is not None
    assert abs(float(scale) - 1 / 0.07) < 1e-4


def test_pretrained_lite0_weights_load_and_differ_from_scratch():
    cfg = load_model_config("compact")
    a = build_model(cfg, 10, load_pretrained=True).image_encoder.backbone.stem.conv.weight
    b = build_model(cfg, 10, load_pretrained=False).image_encoder.backbone.stem.conv.weight
    assert a.shape == b.shape and not torch.allclose(a, b)


def fake_cvcl_state_dict(vocab_size=2350):
    """A state_dict laid out as CVCL's Lightning checkpoint (keys as in wkvong/multimodal-baby)."""
    net = ResNeXt50()
    sd = {f"vision_encoder.model.{k}": torch.randn_like(v.float()).to(v.dtype)
          for k, v in net.state_dict().items()}
    sd["vision_encoder.model.fc.weight"] = torch.randn(512, 2048)
    sd["vision_encoder.model.fc.bias"] = torch.randn(512)
    sd["text_encoder.embedding.weight"] = torch.randn(vocab_size, 512)
    # Lightning also registers the shared modules under `model.` and `language_model.`: duplicates.
    sd["model.text_embed.embedding.weight"] = sd["text_encoder.embedding.weight"]
    sd["language_model.text_encoder.embedding.weight"] = sd["text_encoder.embedding.weight"]
    return {"state_dict": sd, "epoch": 3}


def test_load_cvcl_state_dict_maps_keys_and_validates():
    ckpt = fake_cvcl_state_dict(40)
    m = DualEncoder(load_model_config("cvcl"), 40)
    summary = load_cvcl_state_dict(m, ckpt)
    sd = ckpt["state_dict"]
    assert torch.equal(m.image_encoder.projection.weight, sd["vision_encoder.model.fc.weight"])
    assert torch.equal(m.image_encoder.backbone.layer3[2].conv2.weight,
                       sd["vision_encoder.model.layer3.2.conv2.weight"])
    assert torch.equal(m.utterance_encoder.embedding.weight, sd["text_encoder.embedding.weight"])
    assert "model.text_embed.embedding.weight" in summary["ignored"]
    wrong_vocab = DualEncoder(load_model_config("cvcl"), 41)
    with pytest.raises(ConfigError, match="vocabulary"):
        load_cvcl_state_dict(wrong_vocab, ckpt)
    del sd["vision_encoder.model.layer1.0.bn1.running_mean"]
    with pytest.raises(ConfigError, match="lacks"):
        load_cvcl_state_dict(DualEncoder(load_model_config("cvcl"), 40), ckpt)
    with pytest.raises(ConfigError, match="cvcl"):
        load_cvcl_state_dict(DualEncoder(load_model_config("compact"), 40), ckpt)


def test_checkpoint_round_trip_and_damage(tmp_path):
    vocab = small_vocab()
    cfg = load_model_config("compact_lstm")
    torch.manual_seed(1)
    m = build_model(cfg, len(vocab), load_pretrained=False).eval()
    run = tmp_path / "run"
    save_checkpoint(run / "last", m, vocab, train_state={"step": 7}, meta={"step": 7})
    save_checkpoint(run / "last", m, vocab, train_state={"step": 8}, meta={"step": 8})  # overwrite
    assert not (run / "last.tmp").exists() and not (run / "last.old").exists()
    m2, vocab2, cfg2, meta = load_checkpoint(run, with_train_state=True)
    assert cfg2 == cfg and vocab2.ids == vocab.ids and meta["step"] == 8 and meta["train_state"]["step"] == 8
    assert meta["input_size"] == cfg.image.input_size and meta["mean"] == cfg.image.mean
    x, t = torch.randn(2, 3, 128, 128), torch.tensor([[2, 4, 5, 3], [2, 6, 3, 0]])
    assert torch.allclose(m.encode_image(x), m2.encode_image(x), atol=1e-6)
    assert torch.allclose(m.encode_utterance(t), m2.encode_utterance(t), atol=1e-6)
    # a crash between the two renames leaves only last.old: still loadable
    (run / "last").rename(run / "last.old")
    assert load_checkpoint(run)[3]["step"] == 8
    (run / "last.old").rename(run / "last")
    (run / "last" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="damaged"):
        load_checkpoint(run)
    with pytest.raises(DataError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["compact", "compact_lstm", "compact_transformer"])
def test_encoders_export_to_onnx_with_dynamic_axes(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    cfg = load_model_config(name)
    torch.manual_seed(0)
    m = build_model(cfg, 30, load_pretrained=False).eval()
    size = cfg.image.input_size
    img_path, utt_path = tmp_path / "image.onnx", tmp_path / "utterance.onnx"
    torch.onnx.export(ImageTower(m), (torch.randn(2, 3, size, size),), str(img_path), input_names=["image"],
                      output_names=["embedding"], dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}},
                      opset_version=18, dynamo=False)
    torch.onnx.export(UtteranceTower(m), (torch.tensor([[2, 4, 5, 3], [2, 6, 3, 0]]),), str(utt_path),
                      input_names=["tokens"], output_names=["embedding"],
                      dynamic_axes={"tokens": {0: "n", 1: "length"}, "embedding": {0: "n"}},
                      opset_version=18, dynamo=False)
    si = ort.InferenceSession(str(img_path), providers=["CPUExecutionProvider"])
    su = ort.InferenceSession(str(utt_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    got = si.run(None, {"image": x})[0]
    with torch.no_grad():
        want = m.encode_image(torch.from_numpy(x)).numpy()
    assert got.shape == (3, cfg.embedding_dim) and np.abs(got - want).max() < 1e-4
    t = np.array([[2, 7, 8, 9, 10, 3, 0], [2, 5, 3, 0, 0, 0, 0], [2, 11, 3, 0, 0, 0, 0]], dtype=np.int64)
    got = su.run(None, {"tokens": t})[0]
    with torch.no_grad():
        want = m.encode_utterance(torch.from_numpy(t)).numpy()
    assert got.shape == (3, cfg.embedding_dim) and np.abs(got - want).max() < 1e-4


def test_cvcl_runs_a_training_step_with_its_backbone_frozen():
    from firstwords.export.loss import infonce_loss

    torch.manual_seed(0)
    m = DualEncoder(load_model_config("cvcl"), 50)
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1)
    before_proj = m.image_encoder.projection.weight.clone()
    before_conv = m.image_encoder.backbone.layer4[2].conv3.weight.clone()
    img, utt, scale = m(torch.randn(4, 3, 64, 64), torch.tensor([[2, 5, 3], [2, 6, 3], [2, 7, 3], [2, 8, 3]]))
    loss = infonce_loss(img, utt, scale)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and img.shape == (4, 512)
    assert not torch.equal(before_proj, m.image_encoder.projection.weight)
    assert torch.equal(before_conv, m.image_encoder.backbone.layer4[2].conv3.weight)
