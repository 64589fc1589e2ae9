"""Convert a checkpoint of CVCL's released model (Vong et al., Science 2024; wkvong/multimodal-baby) into a bundle.

CVCL: a ResNeXt-50 32x4d image encoder (torchvision layout) whose `fc` is a Linear(2048 -> 512) projection, and
an utterance encoder that is an Embedding(vocab, 512) averaged over the non-pad tokens (<sos>, <eos> included,
CVCL's "flat" embedding type); both L2-normalised; CVCL's vocab.json (<pad> 0, <unk> 1, <sos> 2, <eos> 3), whose
tokens are spaCy's English tokenizer's, lowercased ("'s", "n't", punctuation): the bundle records the tokenizer
rule spacy_en_v1 (edge.tokenize). Its Lightning checkpoint (MultiModalLitModel) stores the weights under
    vision_encoder.model.*           (conv1, bn1, layer1..4, fc)
    text_encoder.embedding.weight
and the same modules again under model.image_embed.*, model.text_embed.* and language_model.* (checked equal,
then ignored), plus model.logit_neg_log_temperature when the temperature was learned (ignored: evaluation
compares cosines). Key mapping: export.model.cvcl_key_map. The ResNeXt's depth and widths are read from the
checkpoint's shapes, so a same-layout checkpoint of another size converts too (the tests use a narrow one).
docs/REPRODUCE_CVCL.md walks through converting and evaluating CVCL's released model.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from firstwords.edge.errors import DataError
from firstwords.edge.tokenize import SPACY_RULE, Vocab
from firstwords.export.model import Bottleneck, ImageEncoder, UtteranceEncoder, cvcl_key_map
from torch import nn

log = logging.getLogger(__name__)

CVCL_INPUT_SIZE = 224  # px
CVCL_MEAN = (0.485, 0.456, 0.406)  # ImageNet, as CVCL's transforms
CVCL_STD = (0.229, 0.224, 0.225)
_STRIDES = (1, 2, 2, 2)


class ResNeXt(nn.Module):
    """torchvision-layout ResNeXt with the depth / widths given (ResNeXt-50 32x4d: blocks (3, 4, 6, 3),
    planes (64, 128, 256, 512), groups 32, base width 4, stem 64)."""

    def __init__(self, blocks: tuple[int, ...], planes: tuple[int, ...], groups: int, base_width: int,
                 stem: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
            layers = []
            for j in range(n):
                layers.append(Bottleneck(inplanes, p, _STRIDES[i] if j == 0 else 1, groups, base_width))
                inplanes = p * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.n_stages = len(planes)
        self.out_dim = inplanes

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean(dim=(2, 3))


class CVCLDualEncoder(nn.Module):
    """CVCL's model with our tower names: encode_image / encode_utterance, L2-normalised."""

    def __init__(self, backbone: ResNeXt, dim: int, vocab_size: int):
        super().__init__()
        self.image_encoder = ImageEncoder(backbone, dim, frozen=True)
        self.utterance_encoder = UtteranceEncoder(vocab_size, dim, "embedding")

    def encode_image(self, images):
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_utterance(self, tokens):
        return F.normalize(self.utterance_encoder(tokens), dim=-1)


def read_cvcl_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a CVCL checkpoint (.ckpt / .pt), loaded with weights_only=True (no pickled code)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: CVCL checkpoint not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 — torch raises UnpicklingError / RuntimeError / others
        # Lightning stores hyper-parameters as an argparse.Namespace: a plain attribute bag, safe to allow.
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001
            raise DataError(
                f"{p}: cannot read it as weights only ({str(first).splitlines()[0]}). firstwords never unpickles "
                "code. In a trusted Python, save just the weights: import torch; "
                "torch.save(torch.load('CKPT', weights_only=False)['state_dict'], 'cvcl_state_dict.pt') and "
                "convert that file") from first
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{p}: expected a state_dict (name -> tensor) or a Lightning checkpoint holding one")
    return dict(obj)


# MultiModalLitModel holds its encoders twice more: MultiModalModel's image_embed / text_embed and
# LanguageModel's text_encoder are the same modules (prefix of the copy -> prefix of the original).
_DUPLICATES = {"model.image_embed.": "vision_encoder.", "model.text_embed.": "text_encoder.",
               "language_model.text_encoder.": "text_encoder."}


def check_duplicates(sd: Mapping[str, torch.Tensor]) -> int:
    """The copies of a CVCL checkpoint must equal their originals (they are one module saved under several
    names); a checkpoint where they differ was edited or merged and is refused. Returns how many were checked."""
    n = 0
    for k, v in sd.items():
        for dup, orig in _DUPLICATES.items():
            if k.startswith(dup):
                o = sd.get(orig + k[len(dup):])
                if o is not None and (o.shape != v.shape or not torch.equal(o, v)):
                    raise DataError(f"the checkpoint's {k} differs from {orig + k[len(dup):]}: they should be one "
                                    "module saved twice (CVCL's MultiModalLitModel); the checkpoint was altered")
                n += 1
    return n


def _mapped(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    check_duplicates(sd)
    out = {}
    for k, v in sd.items():
        dst = cvcl_key_map(k)
        if dst is not None and dst != "logit_scale_log":
            out[dst] = v
    return out


def infer_resnext(sd: Mapping[str, torch.Tensor]) -> dict:
    """Depth and widths of the ResNeXt in a mapped state dict (keys image_encoder.backbone.*)."""
    pre = "image_encoder.backbone."
    if pre + "conv1.weight" not in sd:
        raise DataError("the checkpoint has no vision_encoder.model.conv1.weight: not CVCL's ResNeXt "
                        "image encoder (expected MultiModalLitModel with cnn 'resnext50_32x4d')")
    blocks, planes = [], []
    groups = base_width = None
    for i in range(1, 5):
        idx = {int(m.group(1)) for k in sd if (m := re.match(rf"{re.escape(pre)}layer{i}\.(\d+)\.conv1\.weight$", k))}
        if not idx:
            break
        blocks.append(max(idx) + 1)
        w1 = sd[f"{pre}layer{i}.0.conv1.weight"]
        w2 = sd[f"{pre}layer{i}.0.conv2.weight"]
        w3 = sd[f"{pre}layer{i}.0.conv3.weight"]
        p = w3.shape[0] // Bottleneck.expansion
        width = w1.shape[0]
        g = width // w2.shape[1]
        bw = width * 64 // (p * g)
        planes.append(p)
        if groups is None:
            groups, base_width = g, bw
        elif (g, bw) != (groups, base_width):
            raise DataError(f"layer{i} has groups {g} / base width {bw}, layer1 has {groups} / {base_width}")
    if not blocks:
        raise DataError("the checkpoint's ResNeXt has no layer1 blocks")
    return {"blocks": tuple(blocks), "planes": tuple(planes), "groups": groups, "base_width": base_width,
            "stem": sd[pre + "conv1.weight"].shape[0]}


def load_cvcl_vocab(path: str | Path) -> Vocab:
    """CVCL's vocab.json (word -> id; <pad> 0, <unk> 1, <sos> 2, <eos> 3)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: CVCL's vocab.json not found; pass --vocab PATH (it ships with CVCL's checkpoint)")
    try:
        return Vocab.from_file(p, rule=SPACY_RULE)  # CVCL counted spaCy's English tokens
    except Exception as e:
        raise DataError(f"{p}: not a CVCL vocabulary: {e}") from e


def build_cvcl_model(state_dict: Mapping[str, torch.Tensor], vocab: Vocab) -> CVCLDualEncoder:
    """A CVCLDualEncoder holding the checkpoint's weights (every weight checked for presence and shape)."""
    sd = _mapped(state_dict)
    arch = infer_resnext(sd)
    emb = sd.get("utterance_encoder.embedding.weight")
    fc = sd.get("image_encoder.projection.weight")
    if emb is None or fc is None:
        raise DataError("the checkpoint lacks text_encoder.embedding.weight or vision_encoder.model.fc.weight: "
                        "not CVCL's model with the 'flat' embedding text encoder")
    if emb.shape[0] != len(vocab):
        raise DataError(f"the checkpoint's embedding has {emb.shape[0]} rows but the vocabulary has {len(vocab)} "
                        "words: use the vocab.json that came with this checkpoint (--vocab)")
    if fc.shape[0] != emb.shape[1]:
        raise DataError(f"image projection gives {fc.shape[0]} dims, word embeddings {emb.shape[1]}")
    model = CVCLDualEncoder(ResNeXt(**arch), dim=emb.shape[1], vocab_size=emb.shape[0])
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    if missing:
        raise DataError(f"the checkpoint lacks {len(missing)} weights, e.g. vision_encoder.model."
                        f"{missing[0].removeprefix('image_encoder.backbone.')}")
    bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise DataError(f"weight {bad[0]} has shape {tuple(sd[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: sd[k].float() for k in own}, strict=True)
    log.info("CVCL model: ResNeXt blocks %s planes %s groups %d x %d, D=%d, vocab %d", arch["blocks"],
             arch["planes"], arch["groups"], arch["base_width"], emb.shape[1], emb.shape[0])
    return model.eval()
