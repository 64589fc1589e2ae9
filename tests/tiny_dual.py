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
    from export.bundle import write_bundle
    from export.onnx_export import export_towers

    work = work or out.parent / f"{out.name}-onnx"
    towers = export_towers(tiny_model(seed), work, SIZE)
    return write_bundle(out, towers.image, towers.utterance, VOCAB, manifest_fields(opset=towers.opset))
