"""DAKD losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dakd_edge.train.losses import DAKDLoss, LossConfig, ce_loss, kd_loss, soft_dice_loss


def _px(*values: float) -> torch.Tensor:
    """One pixel's logits as (1, K, 1, 1)."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def test_kd_uniform_student_is_T2_log_k_for_any_teacher():
    # p = (1/2, 1/2) -> -sum q log p = log 2 whatever q is; times T^2.
    for t in (1.0, 2.0, 4.0):
        got = kd_loss(_px(0.0, 0.0), _px(math.log(3.0), 0.0), temperature=t)
        assert got.item() == pytest.approx(t * t * math.log(2.0), rel=1e-6)


def test_kd_hand_value_and_temperature():
    # T=1, student (2, 0), teacher uniform: CE = log(1 + e^2) - 1.
    assert kd_loss(_px(2.0, 0.0), _px(0.0, 0.0), 1.0).item() == pytest.approx(math.log(1 + math.e**2) - 1)
    # T=2: student logits are halved -> (1, 0); times 4.
    want = 4 * (math.log(1 + math.e) - 0.5)
    assert kd_loss(_px(2.0, 0.0), _px(0.0, 0.0), 2.0).item() == pytest.approx(want, rel=1e-6)


def test_kd_tempers_teacher_and_student_hinton_by_hand():
    """Eq. 8-9 with a non-uniform teacher (so q depends on T): T^2 sum_k -q_k log p_k, q = softmax(z_t / T),
    p = softmax(z_s / T), mean over pixels; computed here pixel by pixel from the definitions."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 2, 2, generator=g), 3 * torch.randn(2, 3, 2, 2, generator=g)
    for temp in (1.0, 2.0, 4.0):
        total = 0.0
        for n in range(2):
            for i in range(2):
                for j in range(2):
                    zs = [s[n, k, i, j].item() / temp for k in range(3)]
                    zt = [t[n, k, i, j].item() / temp for k in range(3)]
                    q = [math.exp(z) / sum(math.exp(v) for v in zt) for z in zt]
                    log_p = [z - math.log(sum(math.exp(v) for v in zs)) for z in zs]
                    total += temp * temp * -sum(qk * lp for qk, lp in zip(q, log_p, strict=True))
        assert kd_loss(s, t, temp).item() == pytest.approx(total / 8, rel=1e-5)


def test_kd_gradient_flows_to_student_only_and_valid_mask():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    valid[1] = True
    kd_loss(s, t, 2.0, valid).backward()
    assert t.grad is None
    assert s.grad[0].abs().sum() == 0 and s.grad[1].abs().sum() > 0
    assert kd_loss(s, t, 2.0, valid).item() == pytest.approx(kd_loss(s[1:], t[1:], 2.0).item(), rel=1e-6)


def test_ce_uniform_and_ignore():
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 1], [255, 1]]])
    assert ce_loss(logits, target).item() == pytest.approx(math.log(2.0))
    assert ce_loss(logits, torch.full((1, 2, 2), 255)).item() == 0.0


def test_soft_dice_hand_value():
    # 4 pixels, one oil, uniform prediction: sea (2*1.5+1)/(2+3+1) = 2/3, oil (2*0.5+1)/(2+1+1) = 1/2.
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 0], [0, 1]]])
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - (2 / 3 + 1 / 2) / 2, rel=1e-6)
    # A confident correct prediction gives ~0, a confident wrong one close to 1.
    good = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40
    assert soft_dice_loss(good, target).item() < 1e-3
    assert soft_dice_loss(-good, target).item() > 0.7


def test_generalised_dice_hand_value():
    # Weights 1/9 (sea, 3 px) and 1/1 (oil): 1 - 2*(1.5/9 + 0.5) / ((2+3)/9 + (2+1)).
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 0], [0, 1]]])
    num = 2 * (1.5 / 9 + 0.5)
    den = 5 / 9 + 3
    got = soft_dice_loss(logits, target, generalised=True).item()
    assert got == pytest.approx(1 - num / den, rel=1e-5)


def test_composite_original_images_have_no_kd():
    loss = DAKDLoss(LossConfig(ce_weight=1.0, kd_weight=5.0, dice_weight=0.0))
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 1], [1, 0]]])
    out = loss(logits, target)
    assert out["kd"].item() == 0.0
    assert out["loss"].item() == pytest.approx(math.log(2.0))


def test_composite_generated_soft_vs_hard():
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[:, 1] = 3.0  # argmax oil everywhere
    logits = torch.zeros(1, 2, 2, 2)
    target = teacher.argmax(1)  # generated samples: the hard label is the teacher's argmax
    gen = torch.tensor([True])
    soft = DAKDLoss(LossConfig(ce_weight=1.0, kd_weight=0.5, dice_weight=1.0, temperature=2.0))
    hard = DAKDLoss(LossConfig(ce_weight=1.0, kd_weight=0.5, dice_weight=1.0, temperature=2.0, labels="hard"))
    s = soft(logits, target, teacher, gen)
    h = hard(logits, target, teacher, gen)
    assert s["ce"].item() == pytest.approx(math.log(2.0))  # CE against the teacher's argmax
    # Dice vs all-oil target: oil (2*2+1)/(2+4+1) = 5/7; sea absent from the target but p_sum = 2 > 0.5
    # counts as predicted: (0+1)/(2+0+1) = 1/3.
    assert s["dice"].item() == pytest.approx(1 - (5 / 7 + 1 / 3) / 2, rel=1e-6)
    assert s["kd"].item() == pytest.approx(4 * math.log(2.0), rel=1e-6)
    assert h["kd"].item() == 0.0
    assert s["loss"].item() == pytest.approx(h["loss"].item() + 0.5 * 4 * math.log(2.0), rel=1e-6)


def test_composite_mixed_batch_and_class_weights_backward():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (3, 8, 8))
    target[2, :2] = 255  # mosaic padding
    teacher = torch.randn(3, 2, 8, 8)
    gen = torch.tensor([False, False, True])
    out = DAKDLoss(LossConfig(class_weights=(1.0, 3.0)))(logits, target, teacher, gen)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher_logits"):
        DAKDLoss()(logits, target, None, gen)
    with pytest.raises(ValueError, match="labels"):
        LossConfig(labels="fuzzy")
