"""ConfusionMatrix: hand-computed cases and an independent per-class set computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dakd_edge.metrics import ConfusionMatrix


def test_hand_computed_three_classes() -> None:
    target = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    r = cm.compute()
    # class 0: TP 1, FP 1 (pred 0 at target 2), FN 1 (target 0 pred 1) -> IoU 1/3
    # class 1: TP 2, FP 1, FN 0 -> IoU 2/3; class 2: TP 1, FP 0, FN 1 -> IoU 1/2
    assert r["iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["precision"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert r["recall"] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert r["f1"] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    assert r["pixel_accuracy"] == pytest.approx(4 / 6)
    assert r["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_accumulates_over_dataset_not_per_image_mean() -> None:
    # image A: class 1 perfect on 1 pixel; image B: class 1 all wrong on 3 pixels.
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 0, 0, 0]), np.array([1, 0, 0, 0]))
    cm.update(np.array([0, 0, 0, 0]), np.array([1, 1, 1, 0]))
    r = cm.compute()
    assert r["iou"][1] == pytest.approx(1 / 4)  # pooled: TP 1, FN 3; per-image mean would be 0.5
    assert r["positive"]["iou"] == pytest.approx(1 / 4)
    assert r["positive"]["name"] == "class1"
    assert r["miou"] == pytest.approx((r["iou"][0] + r["iou"][1]) / 2)


def test_ignore_index_and_absent_class() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2, 1]), np.array([0, 1, 255, 255]))
    r = cm.compute()
    assert r["pixels"] == 2
    assert math.isnan(r["iou"][2])  # never in target or prediction once ignored pixels are dropped
    assert r["miou"] == pytest.approx(1.0)


def test_scores_are_argmaxed() -> None:
    target = np.array([[[0, 1], [1, 1]]])
    logits = np.zeros((1, 2, 2, 2))
    logits[:, 1] = target  # class 1 wins where target is 1
    cm = ConfusionMatrix(2)
    cm.update(logits, target)
    assert cm.compute()["miou"] == pytest.approx(1.0)


def test_rejects_out_of_range_and_shape() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0, 2]))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1, 1]), np.array([0, 1]))


def _independent(preds: list[np.ndarray], targets: list[np.ndarray], k: int) -> dict[str, list[float]]:
    """Per-class set algebra on concatenated boolean masks (no confusion matrix)."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != 255
    p, t = p[keep], t[keep]
    out: dict[str, list[float]] = {"iou": [], "f1": [], "precision": [], "recall": []}
    for c in range(k):
        pc, tc = p == c, t == c
        inter, union = np.sum(pc & tc), np.sum(pc | tc)
        out["iou"].append(inter / union if union else math.nan)
        out["precision"].append(inter / pc.sum() if pc.sum() else math.nan)
        out["recall"].append(inter / tc.sum() if tc.sum() else math.nan)
        denom = pc.sum() + tc.sum()
        out["f1"].append(2 * inter / denom if denom else math.nan)
    out["acc"] = [float(np.mean(p == t))]
    return out


@pytest.mark.parametrize("k", [2, 5])
def test_matches_independent_computation(k: int) -> None:
    rng = np.random.default_rng(k)
    preds, targets = [], []
    cm = ConfusionMatrix(k)
    for _ in range(4):
        t = rng.integers(0, k, size=(2, 17, 23))
        t[rng.random(t.shape) < 0.1] = 255
        pr = np.where(rng.random(t.shape) < 0.6, np.where(t == 255, 0, t), rng.integers(0, k, size=t.shape))
        preds.append(pr)
        targets.append(t)
        cm.update(pr, t)
    r = cm.compute()
    ref = _independent(preds, targets, k)
    for key in ("iou", "f1", "precision", "recall"):
        np.testing.assert_allclose(r[key], ref[key], rtol=1e-12)
    assert r["miou"] == pytest.approx(np.nanmean(ref["iou"]))
    assert r["pixel_accuracy"] == pytest.approx(ref["acc"][0])


def test_merge_and_summary() -> None:
    a, b, both = ConfusionMatrix(2), ConfusionMatrix(2), ConfusionMatrix(2, class_names=["bg", "oil"])
    x, y = np.array([0, 1, 1]), np.array([0, 1, 0])
    a.update(x, y)
    b.update(y, x)
    both.update(x, y)
    both.update(y, x)
    assert (a.merge(b).matrix == both.matrix).all()
    text = both.summary()
    assert "oil" in text and "mean" in text


def test_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 1]]))
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
