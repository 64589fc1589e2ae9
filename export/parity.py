"""The parity gate: the exported (and quantised) towers must behave like the torch model they came from.

Measured on held-out evaluation trials (CVCL's n-way protocol, edge.evaluate) and on the embeddings
themselves:
- task accuracy: ONNX fp32 within 0.5 point of torch; int8 within 1.5 points of ONNX fp32;
- CENTRED cosine between torch and ONNX embeddings (the reference set's mean embedding subtracted from both
  before the cosine): >= 0.9999 for fp32, >= 0.99 for int8. Plain cosine is a trap: an untrained net maps
  every input to nearly the same vector, so plain cosines are ~1.0 whatever the export did to it.
The figures go into the bundle manifest's `parity`; a miss fails the export with the figures in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.encode import make_session
from firstwords.edge.errors import FirstwordsError
from firstwords.edge.evaluate import Trial, make_trials, score_trials
from firstwords.edge.tokenize import Vocab

log = logging.getLogger(__name__)


class ParityError(FirstwordsError):
    """The exported model does not behave like the torch model (figures in the message)."""


@dataclass(frozen=True)
class Thresholds:
    fp32_accuracy_drop: float = 0.005  # 0.5 point
    int8_accuracy_drop: float = 0.015  # 1.5 points, relative to ONNX fp32
    fp32_centred_cosine: float = 0.9999
    int8_centred_cosine: float = 0.99
    int8_spatial_centred_cosine: float = 0.98  # the spatial output's cells (export.spatial): int8 vs fp32


def centred_cosine(ref: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(mean, min) over rows of cos(ref_i - mu, other_i - mu), mu = mean of ref's rows."""
    ref = np.asarray(ref, np.float64)
    other = np.asarray(other, np.float64)
    if len(ref) < 2:
        raise ValueError("centred cosine needs at least 2 embeddings")
    mu = ref.mean(0, keepdims=True)
    a, b = ref - mu, other - mu
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(cos.mean()), float(cos.min())


def torch_embeddings(model, images: np.ndarray, tokens: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings from the torch model. Images go in channels-last (same result within 1e-6; depthwise convs
    ran ~1.8x faster on this CPU), which is most of an export's time."""
    import torch

    model = model.eval()
    with torch.inference_mode():
        img = [model.encode_image(torch.from_numpy(images[i:i + batch]).contiguous(memory_format=torch.channels_last))
               .numpy() for i in range(0, len(images), batch)]
        utt = [model.encode_utterance(torch.from_numpy(tokens[i:i + batch])).numpy()
               for i in range(0, len(tokens), batch)]
    return np.concatenate(img), np.concatenate(utt)


def onnx_embeddings(image_path: Path, utterance_path: Path, images: np.ndarray, tokens: np.ndarray,
                    threads: int | None = None, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    si, su = make_session(image_path, threads), make_session(utterance_path, threads)
    img = [si.run(["embedding"], {"image": images[i:i + batch]})[0] for i in range(0, len(images), batch)]
    utt = [su.run(["embedding"], {"tokens": tokens[i:i + batch]})[0] for i in range(0, len(tokens), batch)]
    return np.concatenate(img), np.concatenate(utt)


@dataclass
class Variant:
    name: str  # torch | onnx_fp32 | onnx_int8
    image: np.ndarray
    utterance: np.ndarray
    accuracy: float | None = None


@dataclass
class ParityReport:
    n_images: int
    n_words: int
    n_trials: int
    n_way: int
    accuracy: dict[str, float | None] = field(default_factory=dict)
    cosine: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    quantization: str = "none"
    spread: float = 0.0  # mean distance of torch image embeddings from their centre (~0: collapsed model)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        # Rounded so that re-exports write byte-identical manifests.
        return {
            "eval_images": self.n_images, "eval_words": self.n_words, "trials": self.n_trials, "n_way": self.n_way,
            "accuracy": {k: (None if v is None else round(v, 4)) for k, v in self.accuracy.items()},
            "centred_cosine": {k: {m: round(x, 6) for m, x in v.items()} for k, v in self.cosine.items()},
            "torch_image_spread": round(self.spread, 6),
            "thresholds": {k: v for k, v in self.thresholds.__dict__.items()},
            "passed": self.passed, "failures": list(self.failures),
        }

    def table(self) -> str:
        lines = [(f"parity on {self.n_images} held-out images, {self.n_words} utterances, {self.n_trials} "
                  f"{self.n_way}-way trials:")]
        for k, v in self.accuracy.items():
            lines.append(f"  accuracy {k:<10} {'n/a' if v is None else f'{100 * v:6.2f} %'}")
        for k, v in self.cosine.items():
            lines.append(f"  centred cosine vs {k:<24} mean {v['mean']:.6f}  min {v['min']:.6f}")
        lines.append("  PASSED" if self.passed else "  FAILED: " + "; ".join(self.failures))
        return "\n".join(lines)


def measure_parity(model, images: np.ndarray, labels: Sequence[str] | None, vocab: Vocab,
                   fp32: tuple[Path, Path], int8: tuple[Path, Path] | None = None, quantization: str = "none",
                   trials: Sequence[Trial] | None = None, n_way: int = 4, trials_per_category: int = 50,
                   seed: int = 0, threads: int | None = None, thresholds: Thresholds | None = None,
                   max_words: int = 200, cache: dict | None = None) -> ParityReport:
    """Compare torch, ONNX fp32 and (if given) ONNX int8 on the same normalised images [N, 3, S, S].

    labels: category per image (None: embeddings only, no accuracy); categories not in the vocabulary are
    skipped by the trials. The utterance tower is compared on the category words, up to `max_words`
    vocabulary words and two-word utterances made of them.
    """
    th = thresholds or Thresholds()
    images = np.ascontiguousarray(images, np.float32)
    label_words = [w for w in sorted(set(labels)) if w in vocab] if labels is not None else []
    # Utterances for the utterance tower: the category words, vocabulary words, and two-word utterances.
    vocab_words = [vocab.word(i) for i in range(4, min(len(vocab), 4 + max_words))]
    singles = label_words + [w for w in vocab_words if w not in set(label_words)]
    pairs = [f"{a} {b}" for a, b in zip(singles[::2], singles[1::2])][:max_words // 4]
    texts = singles + pairs
    tokens = vocab.encode_batch(texts) if texts else vocab.encode_batch(["", "xyzzy"])

    cache = {} if cache is None else cache  # torch / fp32 embeddings reused across int8 attempts
    if "torch" not in cache:
        cache["torch"] = torch_embeddings(model, images, tokens)
        cache["onnx_fp32"] = onnx_embeddings(*fp32, images, tokens, threads)
    variants = [Variant("torch", *cache["torch"]), Variant("onnx_fp32", *cache["onnx_fp32"])]
    if int8 is not None:
        variants.append(Variant("onnx_int8", *onnx_embeddings(*int8, images, tokens, threads)))

    n_trials = 0
    if labels is not None and len(label_words) >= 2:
        if trials is None:
            cats = sorted(set(labels))
            trials = make_trials(list(labels), n_way=min(n_way, len(cats)),
                                 trials_per_category=trials_per_category, seed=seed)
        n_way = len(trials[0].image_indices)
        for v in variants:
            res = score_trials(trials, v.image, {w: v.utterance[i] for i, w in enumerate(label_words)})
            v.accuracy = res.overall
            n_trials = res.n_trials
    elif labels is not None:
        log.warning("fewer than 2 evaluation categories are in the vocabulary: parity checks embeddings only")
    report = ParityReport(n_images=len(images), n_words=len(texts), n_trials=n_trials, n_way=n_way,
                          quantization=quantization, thresholds=th)
    report.accuracy = {v.name: v.accuracy for v in variants}

    def cos(ref: Variant, other: Variant, limit: float, what: str) -> None:
        for tower, a, b in (("image", ref.image, other.image), ("utterance", ref.utterance, other.utterance)):
            if len(a) < 2:
                continue
            mean, worst = centred_cosine(a, b)
            report.cosine[f"{other.name}/{tower} ({ref.name})"] = {"mean": mean, "min": worst}
            if mean < limit:
                report.failures.append(f"{what} {tower} embeddings: centred cosine {mean:.6f} < {limit}")

    torch_v, fp = variants[0], variants[1]
    spread = float(np.linalg.norm(torch_v.image - torch_v.image.mean(0), axis=1).mean()) if len(images) > 1 else 1.0
    report.spread = spread
    if spread < 1e-3:
        report.failures.append(f"the torch model maps every evaluation image to nearly the same embedding "
                               f"(mean distance from the centre {spread:.2e}): the checkpoint looks untrained or "
                               "collapsed, so parity cannot be judged")
    cos(torch_v, fp, th.fp32_centred_cosine, "ONNX fp32 vs torch")
    if torch_v.accuracy is not None and torch_v.accuracy - fp.accuracy > th.fp32_accuracy_drop:
        report.failures.append(f"ONNX fp32 accuracy {100 * fp.accuracy:.2f} % is more than "
                               f"{100 * th.fp32_accuracy_drop:.1f} point below torch's {100 * torch_v.accuracy:.2f} %")
    if int8 is not None:
        q = variants[2]
        cos(fp, q, th.int8_centred_cosine, "int8 vs fp32")
        if fp.accuracy is not None and fp.accuracy - q.accuracy > th.int8_accuracy_drop:
            report.failures.append(f"int8 accuracy {100 * q.accuracy:.2f} % is more than "
                                   f"{100 * th.int8_accuracy_drop:.1f} points below fp32's {100 * fp.accuracy:.2f} %")
    return report


def gate(report: ParityReport, what: str = "export") -> None:
    """Raise ParityError when the report missed a threshold."""
    if report.failures:
        raise ParityError(f"{what} failed the parity gate:\n{report.table()}\n" + "; ".join(report.failures) +
                          ". The bundle was not "
                          "written. Try another quantization (e.g. --quantization none, or qdq_u8s8 instead of "
                          "qdq_s8s8), more calibration frames (--calib-frames), or check that the checkpoint is "
                          "trained; --skip-parity writes it anyway (recorded in the manifest).")
