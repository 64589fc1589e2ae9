"""Export: towers to ONNX, int8 quantisation, the parity gate, determinism, and the `export` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.bundle import load_bundle
from firstwords.edge.encode import Encoder
from firstwords.edge.preprocess import prepare_images

torch = pytest.importorskip("torch")
from firstwords.edge.tokenize import Vocab
from firstwords.export.parity import ParityError, centred_cosine
from firstwords.export.tiny_dual import CATEGORIES, SIZE, VOCAB, make_corpus, tiny_model, train_tiny


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return train_tiny(tiny_model(seed=2))


def _eval(corpus: Path):
    from firstwords.export.data import load_eval_set, load_frame

    ev = load_eval_set(corpus / "eval.json")
    return prepare_images([load_frame(p) for p in ev.frame_paths], SIZE), ev.labels


def _calib(corpus: Path):
    from firstwords.export.data import load_frame

    frames = sorted((corpus / "frames").glob("*.png"))
    return prepare_images([load_frame(p) for p in frames], SIZE)


def _export(model, out, corpus, quantization="qdq_u8s8", calib=None, **kw):
    from firstwords.export.onnx_export import export_bundle

    images, labels = _eval(corpus)
    return export_bundle(model, Vocab(dict(VOCAB)), out, input_size=SIZE, mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225), quantization=quantization, model_config="tiny",
                         training_data="tiny synthetic",
                         calibration_images=_calib(corpus) if calib is None else calib,
                         eval_images=images, eval_labels=labels, threads=1, **kw)


def test_centred_cosine_sees_what_plain_cosine_hides():
    """Untrained-net trap: all embeddings near one vector; unrelated noise looks 'perfect' uncentred."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(32)
    a = base + 0.01 * rng.standard_normal((50, 32))
    b = base + 0.01 * rng.standard_normal((50, 32))
    plain = np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    assert plain > 0.999
    assert centred_cosine(a, b)[0] < 0.5
    assert centred_cosine(a, a)[0] == pytest.approx(1.0)


def test_int8_export_passes_gate_and_records_figures(trained, corpus, tmp_path):
    res = _export(trained, tmp_path / "b", corpus)
    p = res.parity
    assert p.passed, p.table()
    assert p.accuracy["torch"] >= 0.9  # the model learned the task, so parity is judged on something real
    assert abs(p.accuracy["onnx_fp32"] - p.accuracy["torch"]) <= 0.005
    assert p.accuracy["torch"] - p.accuracy["onnx_int8"] <= 0.015
    b = load_bundle(res.bundle)
    m = b.manifest
    assert m["quantization"] == "qdq_u8s8" and m["parity_skipped"] is False
    assert m["parity"]["passed"] is True and m["parity"]["accuracy"]["onnx_int8"] is not None
    assert m["parity"]["centred_cosine"]["onnx_int8/image (onnx_fp32)"]["mean"] >= 0.99
    assert m["quantization_detail"]["calibration_frames"] == 40
    # int8 image graph really is quantised
    assert b"QuantizeLinear" in b.image.path.read_bytes()
    # and the bundle runs on the device path with the same answers as the gate measured
    enc = Encoder(b, threads=1)
    images, labels = _eval(corpus)
    img = enc.encode_image_array(images)
    words = {c: enc.word_embedding(c) for c in CATEGORIES}
    pred = [max(CATEGORIES, key=lambda c: float(img[i] @ words[c])) for i in range(len(labels))]
    assert np.mean([p == lab for p, lab in zip(pred, labels, strict=True)]) >= 0.9


def test_export_is_deterministic(trained, corpus, tmp_path):
    a = _export(trained, tmp_path / "a", corpus).bundle
    b = _export(trained, tmp_path / "b", corpus).bundle
    for name in ("image.onnx", "utterance.onnx", "vocab.json", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_gate_fails_bad_int8_and_keeps_old_bundle(trained, corpus, tmp_path):
    """Calibrating on blank frames clips every real activation: the gate must catch it, write nothing."""
    out = tmp_path / "b"
    _export(trained, out, corpus, quantization="none")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    blank = np.zeros((8, 3, SIZE, SIZE), np.float32)
    with pytest.raises(ParityError, match=r"(?s)parity gate:.*int8.*The bundle was not written"):
        _export(trained, out, corpus, calib=blank)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_skip_parity_is_recorded(trained, corpus, tmp_path):
    res = _export(trained, tmp_path / "b", corpus, quantization="none", skip_parity=True)
    m = load_bundle(res.bundle).manifest
    assert m["parity_skipped"] is True and m["parity"] == {}
    assert res.parity is None


# ---------------------------------------------------------------------------------------------- the command


def main(argv: list[str]) -> int:
    """`firstwords export ...` as the CLI runs it (errors -> `error: ...` on stderr, exit 2)."""
    from firstwords.edge.cli import main as cli_main

    return cli_main(argv)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real firstwords checkpoint (compact architecture at 32 px, small dim, random weights)."""
    from firstwords.export.checkpoint import save_checkpoint
    from firstwords.export.config import config_from_dict, load_model_config
    from firstwords.export.model import build_model

    d = load_model_config("compact").to_dict()
    d["image"].update(input_size=SIZE, pretrained="none")
    d["embedding_dim"] = 16
    cfg = config_from_dict(d)
    torch.manual_seed(0)
    model = build_model(cfg, len(VOCAB))
    # Random BatchNorm statistics collapse every image to one embedding; estimate them on some frames so
    # that the embeddings differ (as a trained model's do) and parity means something.
    from firstwords.export.data import load_frame

    corpus = make_corpus(tmp_path_factory.mktemp("bn"), n_train=16, n_eval=1, seed=5)
    frames = [load_frame(p) for p in sorted((corpus / "frames").glob("*.png"))]
    x = torch.from_numpy(prepare_images(frames, SIZE))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.image_encoder.backbone.train()  # (a frozen backbone stays in eval mode under model.train())
    with torch.no_grad():
        model.image_encoder.backbone(x)
    model.eval()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ckpt", model, Vocab(dict(VOCAB)),
                           meta={"training_data": "tiny synthetic"})


def test_export_command_fp32(checkpoint, corpus, tmp_path, capsys):
    out = tmp_path / "bundle"
    rc = main(["export", str(checkpoint), "-o", str(out), "--quantization", "none",
               "--eval-data", str(corpus / "eval.json"), "--threads", "1"])
    cap = capsys.readouterr()
    text = cap.out
    assert rc == 0, cap.err
    assert "parity on" in text and "PASSED" in text
    last = json.loads(text.strip().splitlines()[-1])
    assert last["quantization"] == "none" and last["parity"]["passed"]
    b = load_bundle(out)
    assert b.model_config == "compact" and b.training_data == "tiny synthetic"
    assert len(b.manifest["checkpoint_sha256"]) == 64


def test_export_command_takes_quantization_from_device_config(checkpoint, corpus, tmp_path, capsys):
    cfg = Path(__file__).resolve().parents[1] / "device_configs" / "laptop.toml"
    text = cfg.read_text().replace("input_size = 128", f"input_size = {SIZE}")
    dev = tmp_path / "dev.toml"
    dev.write_text(text)
    out = tmp_path / "bundle.zip"
    rc = main(["export", str(checkpoint), "-o", str(out), "--config", str(dev), "--skip-parity",
               "--calib-frames", "8", "--eval-data", str(corpus / "eval.json")])
    text = capsys.readouterr().out
    assert rc == 0
    assert "SKIPPED" in text
    b = load_bundle(out)
    assert b.quantization == "qdq_u8s8" and b.manifest["device"] == "laptop"
    assert b.manifest["parity_skipped"] is True
    b.close()


def test_export_command_errors_are_clear(checkpoint, tmp_path, capsys):
    rc = main(["export", str(checkpoint), "-o", str(tmp_path / "b"), "--quantization", "none",
               "--eval-data", str(tmp_path / "nope.json")])
    assert rc == 2
    assert "evaluation set not found" in capsys.readouterr().err
    rc = main(["export", str(checkpoint), "-o", str(tmp_path / "b"), "--eval-data",
               str(tmp_path / "nope.json")])
    assert rc == 2
    assert "say which quantization" in capsys.readouterr().err


@pytest.mark.slow
def test_compact_int8_bundle_is_small(tmp_path):
    """Acceptance: the compact bundle (EfficientNet-Lite0 + projection, embedding utterance encoder) in int8
    is <= 6 MB."""
    from firstwords.export.config import load_model_config
    from firstwords.export.model import build_model
    from firstwords.export.onnx_export import export_bundle

    cfg = load_model_config("compact")
    vocab = {**VOCAB, **{f"w{i}": 8 + i for i in range(1000)}}
    model = build_model(cfg, len(vocab)).eval()
    calib = np.random.default_rng(0).uniform(-1, 1, (16, 3, 128, 128)).astype(np.float32)
    res = export_bundle(model, Vocab(vocab), tmp_path / "b", input_size=128, mean=cfg.image.mean,
                        std=cfg.image.std, quantization="qdq_u8s8", model_config="compact",
                        training_data="none", calibration_images=calib, skip_parity=True)
    assert res.towers_bytes <= 6_000_000
    shutil.rmtree(res.bundle)


# ------------------------------------------------------------------------------ the static int8 recipe


@pytest.fixture(scope="module")
def compact_model(tmp_path_factory):
    """The compact architecture (EfficientNet-Lite0 layout, 49 convs) at 32 px, random weights, BatchNorm
    statistics estimated on frames (random statistics collapse every image to one embedding)."""
    from firstwords.export.config import config_from_dict, load_model_config
    from firstwords.export.data import load_frame
    from firstwords.export.model import build_model

    torch.set_num_threads(1)
    d = load_model_config("compact").to_dict()
    d["image"].update(input_size=SIZE, pretrained="none")
    d["embedding_dim"] = 16
    torch.manual_seed(0)
    model = build_model(config_from_dict(d), len(VOCAB))
    corpus = make_corpus(tmp_path_factory.mktemp("bnc"), n_train=16, n_eval=1, seed=7)
    frames = [load_frame(p) for p in sorted((corpus / "frames").glob("*.png"))]
    x = torch.from_numpy(prepare_images(frames, SIZE))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.image_encoder.backbone.train()
    with torch.no_grad():
        model.image_encoder.backbone(x)
    return model.eval()


@pytest.fixture(scope="module")
def compact_fp32(compact_model, tmp_path_factory):
    from firstwords.export.onnx_export import export_towers

    return export_towers(compact_model, tmp_path_factory.mktemp("compact"), SIZE).image


def _fp32_convs_reading_dq(path: Path) -> list[str]:
    """Conv/Gemm nodes with fp32 weights whose input is dequantised: onnxruntime re-quantises those weights
    per tensor at session load (WeightBiasQuantization), which is what the recipe must never leave behind."""
    import onnx

    g = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    return [n.name for n in g.node if n.op_type in ("Conv", "Gemm") and n.input[1] in inits
            and producer.get(n.input[0]) == "DequantizeLinear"]


@pytest.mark.parametrize("fmt", ["qdq_u8s8", "qdq_s8s8"])
def test_recipe_keeps_input_end_and_tail_really_fp32(compact_fp32, tmp_path, fmt):
    import onnx
    from firstwords.export.quantize import fp32_prefix, quantize_image_tower

    calib = np.random.default_rng(0).uniform(-1, 1, (8, 3, SIZE, SIZE)).astype(np.float32)
    out = quantize_image_tower(compact_fp32, tmp_path / "q.onnx", fmt, calib, fp32_first_convs=3,
                               bias_correction=fmt == "qdq_u8s8")
    g = onnx.load(str(out)).graph
    convs = [n for n in g.node if n.op_type == "Conv"]
    weight_from = {o: n.op_type for n in g.node for o in n.output}
    quantised = [c.name for c in convs if weight_from.get(c.input[1]) == "DequantizeLinear"]
    assert len(convs) == 49 and len(quantised) == 46  # stem + first block fp32, the rest int8
    assert all(c.name not in quantised for c in convs[:3])
    assert _fp32_convs_reading_dq(out) == []
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    assert weight_from.get(gemm.input[0]) != "DequantizeLinear" and gemm.input[1] not in weight_from
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "image" for n in g.node)
    # a prefix of 3 convs = every node up to the 4th conv (activations between them included)
    assert len(fp32_prefix(compact_fp32, 3)) > 3
    # small models stay mostly quantised (the prefix is capped at a quarter of the convolutions: 12 of 49)
    assert fp32_prefix(compact_fp32, 100) == fp32_prefix(compact_fp32, 12) != fp32_prefix(compact_fp32, 11)


def test_calibration_runs_once_per_export_and_is_deterministic(compact_fp32, tmp_path):
    from firstwords.export.quantize import quantize_image_tower

    calib = np.random.default_rng(1).uniform(-1, 1, (8, 3, SIZE, SIZE)).astype(np.float32)
    work = tmp_path / "work"
    kw = {"work_dir": work, "bias_correction": False}  # (correction: two static passes, same cache)
    a = quantize_image_tower(compact_fp32, tmp_path / "a.onnx", "qdq_u8s8", calib, fp32_first_convs=6, **kw)
    caches = sorted(work.glob("calibration-*.json"))
    assert len(caches) == 1
    # a second attempt (other nodes fp32) reuses the cached ranges ...
    stamp = caches[0].stat().st_mtime_ns
    b = quantize_image_tower(compact_fp32, tmp_path / "b.onnx", "qdq_u8s8", calib, fp32_first_convs=3, **kw)
    assert sorted(work.glob("calibration-*.json")) == caches and caches[0].stat().st_mtime_ns == stamp
    # ... and gives the same bytes as a fresh calibration
    c = quantize_image_tower(compact_fp32, tmp_path / "c.onnx", "qdq_u8s8", calib, fp32_first_convs=3,
                             bias_correction=False)
    assert b.read_bytes() == c.read_bytes() and a.read_bytes() != b.read_bytes()


def test_bias_correction_removes_the_mean_output_error(tmp_path):
    """One strided, padded conv with uneven channels: after correction, the int8 weights (with the corrected
    bias) give the same mean output per channel as the fp32 conv on the calibration frames; before, they did
    not."""
    import onnx
    import onnxruntime as ort
    from firstwords.export.quantize import (
        _dequantized_weights,
        calibration_reader,
        conv_input_means,
        correct_biases,
    )
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    w = (rng.normal(0, 1, (4, 3, 3, 3)) * np.array([1, 0.01, 3, 0.2])[:, None, None, None]).astype(np.float32)
    b = rng.normal(0, 1, 4).astype(np.float32)
    conv = helper.make_node("Conv", ["image", "w", "b"], ["embedding"], name="conv", pads=[1, 1, 1, 1],
                            strides=[2, 2])
    image_in = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, 9, 9])
    graph = helper.make_graph([conv], "g", [image_in],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    x = rng.uniform(0, 2, (16, 3, 9, 9)).astype(np.float32)  # mean 1: weight errors shift the outputs
    qdq = tmp_path / "qdq.onnx"
    quantize_static(str(fp32), str(qdq), calibration_reader(x), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    corrected = tmp_path / "corrected.onnx"
    assert correct_biases(fp32, qdq, conv_input_means(fp32, x), corrected) == 1

    wq = next(v for v in _dequantized_weights(onnx.load(str(qdq))).values() if v.ndim == 4).astype(np.float32)

    def mean_out(path: Path, weights=None) -> np.ndarray:
        m = onnx.load(str(path))
        if weights is not None:
            m.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "w"))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return s.run(None, {"image": x})[0].astype(np.float64).mean((0, 2, 3))

    ref = mean_out(fp32)
    before = np.abs(mean_out(fp32, wq) - ref)
    after = np.abs(mean_out(corrected, wq) - ref)
    assert before.max() > 1e-3
    assert after.max() < 1e-5 and np.all(after < before)
