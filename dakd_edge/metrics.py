"""Segmentation metrics accumulated over a whole dataset (one confusion matrix, not per-image means).

This is how the paper's tables are computed: IoU_k = TP / (TP + FP + FN) from the summed confusion
matrix, mIoU = mean over classes. For binary sets (SOS: background/oil) :meth:`ConfusionMatrix.compute`
reports both the oil class alone (``positive``) and the mean of the two classes (``miou``); the paper's
SOS numbers are the mean of the two classes. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


class ConfusionMatrix:
    """Accumulates ``matrix[target, pred]`` pixel counts.

    Args:
        num_classes: K.
        ignore_index: target value excluded from every count (OSD/our datasets use 255).
        class_names: optional names used by :meth:`summary`.
        positive_class: for K = 2, the class reported alone under ``positive`` (oil = 1).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        positive_class: int = 1,
    ) -> None:
        if num_classes < 2:
            raise ValueError("num_classes must be >= 2")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names else [f"class{i}" for i in range(num_classes)]
        self.positive_class = positive_class
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add a batch. ``pred``: class ids shaped like ``target``, or scores with one extra class axis
        (``(K,H,W)`` for ``(H,W)`` targets, ``(N,K,H,W)`` for ``(N,H,W)``), reduced by argmax."""
        pred = _to_numpy(pred)
        target = _to_numpy(target)
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(axis=max(pred.ndim - 3, 0))
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
        pred = pred.astype(np.int64, copy=False).ravel()
        target = target.astype(np.int64, copy=False).ravel()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        k = self.num_classes
        if target.size and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"target ids outside [0, {k}) (ignore_index={self.ignore_index})")
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            raise ValueError(f"predicted ids outside [0, {k})")
        self.matrix += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (e.g. from another DDP rank or data shard) in place."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix
        return self

    def compute(self) -> dict[str, Any]:
        """Metrics as fractions in [0, 1].

        Keys: ``iou``, ``f1``, ``precision``, ``recall`` (per-class lists; NaN for a class absent from
        both target and prediction), ``miou``, ``mf1``, ``mprecision``, ``mrecall`` (NaN-skipping means
        over classes), ``pixel_accuracy``, ``pixels``, ``matrix``; for K = 2 also ``positive``
        (the oil class's iou/f1/precision/recall).
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        fp = m.sum(axis=0) - tp
        fn = m.sum(axis=1) - tp
        iou = _safe_div(tp, tp + fp + fn)
        precision = _safe_div(tp, tp + fp)
        recall = _safe_div(tp, tp + fn)
        f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
        total = m.sum()

        def mean(v: np.ndarray) -> float:
            return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

        out: dict[str, Any] = {
            "iou": iou.tolist(),
            "f1": f1.tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "miou": mean(iou),
            "mf1": mean(f1),
            "mprecision": mean(precision),
            "mrecall": mean(recall),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "pixels": int(total),
            "class_names": list(self.class_names),
            "matrix": self.matrix.tolist(),
        }
        if self.num_classes == 2:
            p = self.positive_class
            out["positive"] = {
                "class": p,
                "name": self.class_names[p],
                "iou": float(iou[p]),
                "f1": float(f1[p]),
                "precision": float(precision[p]),
                "recall": float(recall[p]),
            }
        return out

    def summary(self) -> str:
        """Plain-text table in percent, as the paper prints it."""
        r = self.compute()
        lines = [f"{'class':<14}{'IoU':>8}{'F1':>8}{'Prec':>8}{'Rec':>8}"]
        for i, name in enumerate(self.class_names):
            vals = (r["iou"][i], r["f1"][i], r["precision"][i], r["recall"][i])
            lines.append(f"{name:<14}" + "".join(f"{100 * v:8.2f}" for v in vals))
        means = (r["miou"], r["mf1"], r["mprecision"], r["mrecall"])
        lines.append(f"{'mean':<14}" + "".join(f"{100 * v:8.2f}" for v in means))
        lines.append(f"pixel accuracy {100 * r['pixel_accuracy']:.2f}%  ({r['pixels']} pixels)")
        return "\n".join(lines)
