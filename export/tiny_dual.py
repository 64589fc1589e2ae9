"""A tiny torch dual encoder and a bundle made from it, for the bundle / encoder / export tests.

Same interface as export.model.DualEncoder (encode_image / encode_utterance, L2-normalised), small enough to
export in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

SIZE = 32  # px
DIM = 16
VOCAB = {"<pad>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 3, "ball": 4, "dog": 5, "cat": 6, "shoe": 7}


def tiny_model(seed: int = 0, vocab_size: int = len(VOCAB), dim: int = DIM):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TinyDual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.proj = nn.Linear(16, dim)
            self.emb = nn.Embedding(vocab_size, dim, padding_idx=0)

        def encode_image(self, x):
            h = F.relu(self.conv2(F.relu(self.conv(x)))).mean(dim=(2, 3))
            return F.normalize(self.proj(h), dim=-1)

        def encode_utterance(self, tokens):
            mask = (tokens != 0).unsqueeze(-1).float()
            e = (self.emb(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return F.normalize(e, dim=-1)

    torch.manual_seed(seed)
    return TinyDual().eval()


def manifest_fields(**extra) -> dict:
    return {"embedding_dim": DIM,
            "image": {"input_size": SIZE, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "quantization": "none", "opset": 17, "model_config": "tiny-test", "training_data": "none",
            **extra}


def make_bundle(out: Path, seed: int = 0, work: Path | None = None) -> Path:
    from firstwords.export.bundle import write_bundle
    from firstwords.export.onnx_export import export_towers

    work = work or out.parent / f"{out.name}-onnx"
    towers = export_towers(tiny_model(seed), work, SIZE)
    return write_bundle(out, towers.image, towers.utterance, VOCAB, manifest_fields(opset=towers.opset))


CATEGORIES = ("ball", "dog", "cat", "shoe")
_COLOURS = {"ball": (220, 40, 40), "dog": (40, 200, 40), "cat": (40, 60, 220), "shoe": (220, 200, 40)}


def category_frame(cat: str, rng, size: int = 40):
    """A uint8 frame: noisy background with a blob of the category's colour at a random place."""
    import numpy as np

    img = rng.integers(0, 120, (size, size, 3)).astype(np.int16)
    r = int(rng.integers(8, 14))
    y, x = (int(v) for v in rng.integers(r, size - r, 2))
    img[y - r:y + r, x - r:x + r] = np.array(_COLOURS[cat]) + rng.integers(-25, 25, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_corpus(root: Path, n_train: int = 40, n_eval: int = 12, seed: int = 0) -> Path:
    """A tiny CVCL-format corpus: train.json (utterances with frames) and eval.json (labelled frames)."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "eval_frames").mkdir(exist_ok=True)
    train, evals = [], []
    for i in range(n_train):
        cat = CATEGORIES[i % len(CATEGORIES)]
        name = f"frames/{i:05d}.png"
        Image.fromarray(category_frame(cat, rng)).save(root / name)
        train.append({"utterance": f"look at the {cat}", "frame_filenames": [name], "timestamps": [float(i)],
                      "utterance_num": i})
    for i in range(n_eval * len(CATEGORIES)):
        cat = CATEGORIES[i % len(CATEGORIES)]
        name = f"eval_frames/{i:05d}.png"
        Image.fromarray(category_frame(cat, rng)).save(root / name)
        evals.append({"category": cat, "frame_filename": name})
    (root / "train.json").write_text(json.dumps({"data": train}))
    (root / "eval.json").write_text(json.dumps({"data": evals}))
    return root


def train_tiny(model, steps: int = 150, seed: int = 0, size: int = SIZE):
    """A few hundred InfoNCE steps on synthetic category frames, so the model's embeddings mean something
    (parity of an untrained net is trivially perfect)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from firstwords.edge.preprocess import prepare_images
    from firstwords.edge.tokenize import Vocab

    rng = np.random.default_rng(seed)
    vocab = Vocab(dict(VOCAB))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        cats = [CATEGORIES[int(i)] for i in rng.permutation(len(CATEGORIES))]
        x = torch.from_numpy(prepare_images([category_frame(c, rng) for c in cats], size))
        t = torch.from_numpy(vocab.encode_batch([f"the {c}" for c in cats]))
        logits = model.encode_image(x) @ model.encode_utterance(t).T / 0.1
        target = torch.arange(len(cats))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
