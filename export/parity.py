"""Parity of an exported model against PyTorch: error statistics, tolerances, test inputs.

numpy only at import time; the PyTorch reference run imports torch lazily. Errors are measured on
logits: ``max_abs = max |exported - torch|`` and ``max_rel = max_abs / max |torch|`` (relative to the
logit scale, so it does not blow up where a logit crosses zero), plus the share of pixels whose
arg-max class agrees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.errors import ExportError, InputError
from dakd_edge.meta import ModelMeta


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. ``atol`` applies to ``max_abs`` scaled by ``max(1, max|ref|)``."""

    atol: float
    min_argmax_agreement: float

    def scaled_atol(self, ref_scale: float) -> float:
        return self.atol * max(1.0, ref_scale)


# fp32: the bar (1e-4 on logits, >= 99.9 % arg-max agreement). Reduced precisions follow the
# usual budgets for fp16 engines (~1e-2 of the logit scale) and calibrated int8 (~5e-2).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, min_argmax_agreement=0.999),
    "fp16": Tolerance(atol=2e-2, min_argmax_agreement=0.99),
    "int8": Tolerance(atol=1e-1, min_argmax_agreement=0.95),
}


@dataclass
class ParityResult:
    """Error of one exported run against the PyTorch reference on one input."""

    input: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    argmax_agreement: float
    passed: bool
    tolerance: float
    min_argmax_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        status = "ok" if self.passed else "FAILED"
        shape = "x".join(str(s) for s in self.shape)
        return (
            f"parity [{self.input} {shape}]: max abs {self.max_abs:.3e} (tol {self.tolerance:.1e}), "
            f"max rel {self.max_rel:.3e}, argmax agreement {100 * self.argmax_agreement:.3f}% "
            f"(min {100 * self.min_argmax_agreement:.1f}%) -> {status}"
        )


def compare(
    ref: np.ndarray, out: np.ndarray, tol: Tolerance, input_name: str = "deterministic"
) -> ParityResult:
    """Error statistics of ``out`` against ``ref`` (both ``(N, K, H, W)`` logits)."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ExportError(f"exported model returned shape {out.shape}, PyTorch {ref.shape}")
    if not np.isfinite(out).all():
        raise ExportError(f"exported model returned non-finite logits on the {input_name} input")
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(np.abs(out - ref).max()) if ref.size else 0.0
    agree = float((out.argmax(1) == ref.argmax(1)).mean()) if ref.size else 1.0
    limit = tol.scaled_atol(scale)
    passed = max_abs <= limit and agree >= tol.min_argmax_agreement
    return ParityResult(
        input=input_name,
        shape=tuple(int(s) for s in ref.shape),
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else 0.0,
        argmax_agreement=agree,
        passed=passed,
        tolerance=limit,
        min_argmax_agreement=tol.min_argmax_agreement,
    )


def deterministic_input(shape: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
    """A reproducible normalised input: smooth structures (slicks, bright targets) plus speckle.

    Pure noise would leave most logits near a tie; structure makes the arg-max check meaningful.
    """
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = np.empty(shape, dtype=np.float32)
    for i in range(n):
        for j in range(c):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = max(h, w) * rng.uniform(0.15, 0.35)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
            waves = 0.3 * np.sin(xx / rng.uniform(3, 9) + yy / rng.uniform(5, 13))
            speckle = rng.gamma(4.0, 0.25, size=(h, w)).astype(np.float32)
            x[i, j] = (0.8 * speckle - 1.6 * blob + waves - 0.5) / 0.5
    return x


def image_input(path: str | Path, meta: ModelMeta, shape: tuple[int, int, int, int] | None) -> np.ndarray:
    """A real image as a normalised ``(N, C, H, W)`` batch: centre crop (fixed shape: crop/pad to its
    H x W, and repeated to its batch N, which the graph holds static); N is 1 for a dynamic export."""
    from PIL import Image

    from dakd_edge.data.scaling import normalize, to_unit

    p = Path(path)
    try:
        with Image.open(p) as im:
            raw = np.asarray(im.convert("L"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read parity image {p}: {e}") from e
    unit = to_unit(raw, "uint8", meta.normalization)
    if shape is not None:
        th, tw = shape[2], shape[3]
    else:
        th, tw = min(raw.shape[0], meta.tile), min(raw.shape[1], meta.tile)
    top = max(0, (unit.shape[0] - th) // 2)
    left = max(0, (unit.shape[1] - tw) // 2)
    crop = unit[top : top + th, left : left + tw]
    crop = np.pad(crop, ((0, th - crop.shape[0]), (0, tw - crop.shape[1])), mode="reflect")
    x = normalize(crop, meta.normalization)[None, None]
    n = shape[0] if shape is not None else 1
    return np.ascontiguousarray(np.tile(x, (n, meta.in_chans, 1, 1)), dtype=np.float32)


def torch_logits(model: Any, x: np.ndarray) -> np.ndarray:
    """Reference logits: the eager model with the PyTorch reference kernels, fp32, on the CPU."""
    import torch

    from dakd_edge.kernels import use_kernels

    with torch.no_grad(), use_kernels("torch"):
        return model(torch.from_numpy(x)).float().numpy()
