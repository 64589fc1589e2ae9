"""Symmetric InfoNCE (CLIP / CVCL): cross-entropy image->utterance and utterance->image over the batch.

Pair i in the batch is the positive for row i and column i; every other item of the batch is a negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_logits(img_emb: torch.Tensor, utt_emb: torch.Tensor, logit_scale: torch.Tensor | float):
    """(logits_per_image [N, N], logits_per_utterance [N, N]) from L2-normalised embeddings."""
    logits = logit_scale * img_emb @ utt_emb.t()
    return logits, logits.t()


def infonce_loss(img_emb: torch.Tensor, utt_emb: torch.Tensor,
                 logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean of the two cross-entropies; `logit_scale` = 1 / temperature."""
    per_img, per_utt = contrastive_logits(img_emb, utt_emb, logit_scale)
    target = torch.arange(img_emb.shape[0], device=img_emb.device)
    return (F.cross_entropy(per_img, target) + F.cross_entropy(per_utt, target)) / 2


def batch_accuracy(img_emb: torch.Tensor, utt_emb: torch.Tensor) -> tuple[float, float]:
    """Fraction of images whose best utterance is their own, and vice versa (a training diagnostic)."""
    sims = img_emb @ utt_emb.t()
    target = torch.arange(sims.shape[0], device=sims.device)
    per_img = (sims.argmax(1) == target).float().mean().item()
    return per_img, (sims.argmax(0) == target).float().mean().item()
