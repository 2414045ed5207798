"""DAKD losses for SAROSS-Net (paper Eq. 8-10): cross-entropy, Hinton distillation and soft Dice.

``L = l1 * L_ce + l2 * L_kd + l3 * L_dice``. On original images only hard labels exist, so ``L_kd`` is
off there; on generated images the hard target is the teacher's argmax and ``L_kd`` pulls the student's
tempered distribution towards the teacher's (``--labels soft``, DAKD) or is dropped (``--labels hard``,
the paper's hard-label row). The weights and the temperature of the paper were lost in extraction;
the defaults below are common choices (Hinton T = 2..4, equal weights) and every one is an option.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dakd_edge.meta import IGNORE_INDEX


def ce_loss(
    logits: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Pixel-wise cross-entropy, mean over labelled pixels (0 when none is labelled)."""
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 2.0,
    valid: Tensor | None = None,
) -> Tensor:
    """Hinton distillation: ``T^2 * sum_k -q_k log p_k`` averaged over pixels.

    ``q = softmax(z_teacher / T)``, ``p = softmax(z_student / T)``, both over the class axis 1. The cross
    entropy differs from KL(q || p) by the teacher's entropy, a constant for the student, so gradients
    are those of the usual KL form; ``T^2`` keeps their scale independent of ``T`` (Hinton 2015).
    ``valid`` (N, H, W) bool restricts the mean to some pixels (e.g. generated samples in a mixed batch).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} vs teacher {tuple(teacher_logits.shape)}")
    t = float(temperature)
    q = F.softmax(teacher_logits.detach().float() / t, dim=1)
    log_p = F.log_softmax(student_logits.float() / t, dim=1)
    per_pixel = -(q * log_p).sum(dim=1) * (t * t)  # (N, H, W)
    if valid is None:
        return per_pixel.mean()
    if not bool(valid.any()):
        return student_logits.sum() * 0.0
    return per_pixel[valid].mean()


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1.0,
    generalised: bool = False,
) -> Tensor:
    """Soft Dice on softmax probabilities against one-hot targets, over the whole batch.

    Default: ``1 - mean_k (2 sum p r + eps) / (sum p + sum r + eps)`` over the classes present in the
    target or predicted (a rare class, e.g. oil, weighs as much as the sea: this is what counters the
    class imbalance). ``generalised=True`` is Sudre et al. 2017's generalised Dice, with class weights
    ``1 / (sum r)^2`` (classes absent from the target get weight 0). Ignored pixels count nowhere.
    """
    k = logits.shape[1]
    prob = F.softmax(logits.float(), dim=1)
    valid = (target != ignore_index).unsqueeze(1).float()  # (N,1,H,W)
    one_hot = F.one_hot(target.clamp(0, k - 1).long(), k).permute(0, 3, 1, 2).float() * valid
    prob = prob * valid
    dims = (0, 2, 3)
    inter = (prob * one_hot).sum(dims)
    p_sum = prob.sum(dims)
    r_sum = one_hot.sum(dims)
    if generalised:
        w = torch.where(r_sum > 0, 1.0 / r_sum.clamp_min(1.0) ** 2, torch.zeros_like(r_sum))
        if not bool((w > 0).any()):
            return logits.sum() * 0.0
        return 1.0 - (2.0 * (w * inter).sum() + eps * 1e-6) / ((w * (p_sum + r_sum)).sum() + eps * 1e-6)
    dice = (2.0 * inter + eps) / (p_sum + r_sum + eps)
    present = (r_sum > 0) | (p_sum > 0.5)
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


@dataclass
class LossConfig:
    """Weights of the composite loss and the distillation temperature (all CLI options).

    ``labels``: "soft" = DAKD (CE on the teacher's argmax + KD on its logits for generated images),
    "hard" = generated images contribute through CE on the teacher's argmax only.
    """

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    dice_weight: float = 1.0
    temperature: float = 2.0
    labels: str = "soft"
    generalised_dice: bool = False
    class_weights: tuple[float, ...] | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if self.labels not in ("hard", "soft"):
            raise ValueError(f"labels must be 'hard' or 'soft', got {self.labels!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("ce_weight", "kd_weight", "dice_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


class DAKDLoss(nn.Module):
    """Composite loss over a batch that may mix original and generated samples.

    ``forward(logits, target, teacher_logits=None, generated=None)``:
    ``target`` (N,H,W) int64 hard labels (255 = ignore; for generated samples the teacher's argmax, as
    the augmented-set reader yields it); ``teacher_logits`` (N,K,H,W) for generated samples (any values
    elsewhere); ``generated`` (N,) bool marks which samples carry teacher logits. KD counts the labelled
    pixels of generated samples only (mosaic padding is ignored).
    Returns a dict with ``loss`` and the unweighted ``ce``, ``kd``, ``dice`` terms (detached).
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        cw = self.config.class_weights
        self.register_buffer("class_weights", torch.tensor(cw, dtype=torch.float32) if cw else None)

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        teacher_logits: Tensor | None = None,
        generated: Tensor | None = None,
    ) -> dict[str, Tensor]:
        cfg = self.config
        n = logits.shape[0]
        if generated is None:
            generated = torch.zeros(n, dtype=torch.bool, device=logits.device)
        generated = generated.to(logits.device).bool()
        if bool(generated.any()) and teacher_logits is None:
            raise ValueError("generated samples need teacher_logits")
        ce = ce_loss(logits, target, self.class_weights, cfg.ignore_index)
        dice = soft_dice_loss(logits, target, cfg.ignore_index, generalised=cfg.generalised_dice)
        total = cfg.ce_weight * ce + cfg.dice_weight * dice
        kd = logits.new_zeros(())
        if cfg.labels == "soft" and cfg.kd_weight > 0 and bool(generated.any()):
            valid = generated.view(n, 1, 1) & (target != cfg.ignore_index)
            kd = kd_loss(logits, teacher_logits, cfg.temperature, valid)
            total = total + cfg.kd_weight * kd
        return {"loss": total, "ce": ce.detach(), "kd": kd.detach(), "dice": dice.detach()}
