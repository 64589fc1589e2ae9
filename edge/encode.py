"""The device encoder: one onnxruntime session per tower of a bundle (numpy + onnxruntime only).

    enc = Encoder(load_bundle("work/bundle"), threads=2)
    enc.encode_image(frames)        # uint8 H x W x 3 frames -> float32 [N, D], unit norm
    enc.encode_utterance(texts)     # list[str] -> float32 [N, D], unit norm
    enc.word_embedding("ball")      # encode_utterance(["ball"])[0]

The same names exist on the torch model (export.model.DualEncoder), over tensors instead of frames / text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from firstwords.edge.bundle import Bundle, load_bundle
from firstwords.edge.config import max_threads
from firstwords.edge.errors import REEXPORT, BundleError, InputError
from firstwords.edge.images import MAX_PIXELS
from firstwords.edge.ort import onnxruntime
from firstwords.edge.preprocess import prepare_images

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32  # frames per onnxruntime call; bounds the activation memory on a Pi
# Frames larger than this are refused before preprocessing, which holds a float32 copy of the frame (12 bytes
# a pixel: a 20000 x 20000 frame took 6 GB and 26 s). The same figure as image files get before they are
# decoded (edge.images).
MAX_FRAME_PIXELS = MAX_PIXELS


def make_session(path: str | Path, threads: int | None = None, optimize: bool = True,
                 model_bytes: bytes | None = None, tune: Callable[[Any], None] | None = None):
    """An onnxruntime CPU session: `threads` intra-op threads (None = onnxruntime's default), one inter-op
    thread, sequential execution, full graph optimisation (constant folding, fusions of QDQ pairs).
    With `model_bytes` the session is built from those (already verified) bytes; `path` only names it.
    `tune(session_options)` may change further settings (e.g. onnxruntime's memory options) before the
    session is made."""
    ort = onnxruntime()  # telemetry off (edge/ort.py)
    opts = ort.SessionOptions()
    if threads is not None:
        if type(threads) is not int or threads < 1:
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        if threads > max_threads():
            raise InputError(f"threads = {threads} is too many: at most {max_threads()} on this machine "
                             f"({os.cpu_count() or 1} cores); use {os.cpu_count() or 1} or fewer")
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3  # errors only
    # Idle worker threads sleep instead of spinning: a spinning pool takes the CPU the learner's other threads
    # (decoding, the memory update, speech recognition) need; on 2 busy cores, 2 spinning threads made the
    # image tower 1.9x slower than 1 thread, while without spinning they were as fast.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if tune is not None:
        tune(opts)
    try:
        model = model_bytes if model_bytes is not None else str(path)
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
        raise BundleError(f"{path}: onnxruntime cannot load this model ({e}); re-export the bundle with "
                          "`firstwords export`, or upgrade onnxruntime if the model uses a newer "
                          "opset") from e


class Encoder:
    """Both towers of a bundle behind `encode_image` / `encode_utterance`. Safe to call from several threads
    at once (onnxruntime runs concurrent calls of one session in parallel, each on the calling thread plus
    the session's pool): a full-speed replay encodes two batches at once this way (edge.learner_stages)."""

    def __init__(self, bundle: Bundle | str | Path, threads: int | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH,
                 tune_session: Callable[[Any], None] | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.threads = threads
        self.max_batch = max_batch
        self.dim = self.bundle.embedding_dim
        self.vocab = self.bundle.vocab
        self.input_size = self.bundle.image.input_size
        # Sessions from bytes hashed as they are read: a model swapped after load_bundle() is refused.
        self._image = make_session(self.bundle.image.path, threads, tune=tune_session,
                                   model_bytes=self.bundle.read_verified(self.bundle.image.path))
        self._utterance = make_session(self.bundle.utterance.path, threads, tune=tune_session,
                                       model_bytes=self.bundle.read_verified(self.bundle.utterance.path))
        self._check_finite_outputs()

    def _check_finite_outputs(self) -> None:
        """Refuse a bundle whose towers give NaN / inf for a plain input (one grey frame, one unknown word):
        such a bundle would learn nothing, silently. One tiny run per tower."""
        img, utt = self.bundle.image, self.bundle.utterance
        grey = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        # The sessions themselves, not encode_*(): a subclass's hooks (and call counts) stay untouched.
        probes = (("image", img.path, lambda: self._image.run([img.output], {img.input: grey})[0]),
                  ("utterance", utt.path, lambda: self._utterance.run(
                      [utt.output], {utt.input: self.vocab.encode_batch(["<unk>"])})[0]))
        for tower, path, probe in probes:
            try:
                out = probe()
            except BundleError:
                raise
            except Exception as e:  # onnxruntime's own error types: the model loads but cannot run
                raise BundleError(f"{self.bundle.source}: {path.name}: the {tower} tower fails on a plain "
                                  f"input ({type(e).__name__}: {e}); {REEXPORT}") from e
            if out.shape != (1, self.dim) or not np.isfinite(out).all():
                what = "non-finite values (NaN / inf)" if out.shape == (1, self.dim) else out.shape
                raise BundleError(f"{self.bundle.source}: {path.name}: the {tower} tower outputs {what} "
                                  f"for a plain input, so it would learn nothing; its weights are damaged or "
                                  f"the export overflowed — {REEXPORT}")

    # -- images ---------------------------------------------------------------------------------------------
    def prepare(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 H x W x 3 frames -> the normalised float32 [N, 3, S, S] the image tower takes."""
        if not isinstance(frames, (np.ndarray, Sequence, str, bytes)) and hasattr(frames, "__iter__"):
            frames = list(frames)  # a generator: looked at once here, then preprocessed
        if isinstance(frames, np.ndarray):
            sizes = [frames.shape[-3:-1]] if frames.ndim in (3, 4) else []
        elif isinstance(frames, Sequence) and not isinstance(frames, (str, bytes)):
            sizes = [f.shape[:2] for f in frames if isinstance(f, np.ndarray) and f.ndim >= 2]
        else:
            sizes = []  # not frames at all: prepare_images says so
        for h, w in sizes:
            if h * w > MAX_FRAME_PIXELS:
                raise InputError(f"a frame of {w} x {h} pixels is larger than the {MAX_FRAME_PIXELS:,} "
                                 f"pixels firstwords takes; downscale it first (the model sees "
                                 f"{self.input_size} x {self.input_size})")
        spec = self.bundle.image
        return prepare_images(frames, spec.input_size, spec.mean, spec.std)

    def encode_image(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Frames (a list of uint8 H x W x 3, or an array [N, H, W, 3] / [H, W, 3]) -> float32 [N, D]."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        return self.encode_image_array(self.prepare(frames))

    def encode_image_array(self, x: np.ndarray) -> np.ndarray:
        """Already-normalised float32 [N, 3, S, S] -> float32 [N, D] (the parity gate feeds torch the same
        x)."""
        s = self.input_size
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise InputError(f"image input must be a float32 array [N, 3, {s}, {s}], got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        spec = self.bundle.image
        outs = [self._image.run([spec.output], {spec.input: x[i:i + self.max_batch]})[0]
                for i in range(0, len(x), self.max_batch)]
        if not outs:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    # -- utterances -----------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise InputError("encode_utterance takes a list of utterances; wrap a single one: [text]")
        texts = list(texts)
        if not texts:
            raise InputError("no utterances given")
        for t in texts:
            if not isinstance(t, str):
                raise InputError(f"utterances must be strings, got {type(t).__name__} {t!r}")
        return self.vocab.encode_batch(texts)

    def encode_utterance(self, texts: Sequence[str]) -> np.ndarray:
        """Utterances -> float32 [N, D] (CVCL tokenisation; unknown words become <unk>)."""
        return self.encode_tokens(self.tokenize(texts))

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """int64 [N, L] token ids (right-padded with 0) -> float32 [N, D]."""
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or tokens.shape[1] < 1:
            raise InputError(f"tokens must be an int array [N, L], got "
                             f"{getattr(tokens, 'shape', type(tokens))}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(self.vocab)):
            raise InputError(f"token ids must lie in 0..{len(self.vocab) - 1}")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        spec = self.bundle.utterance
        outs = [self._utterance.run([spec.output], {spec.input: tokens[i:i + self.max_batch]})[0]
                for i in range(0, len(tokens), self.max_batch)]
        return np.concatenate(outs).astype(np.float32, copy=False)

    def word_embedding(self, word: str) -> np.ndarray:
        """The embedding of a one-word utterance, float32 [D]."""
        if not isinstance(word, str) or not word.strip():
            raise InputError(f"a word must be a non-empty string, got {word!r}")
        return self.encode_utterance([word])[0]

    def knows(self, word: str) -> bool:
        """Whether the word is in the encoder's vocabulary (otherwise it encodes as <unk>)."""
        return word.lower() in self.vocab
