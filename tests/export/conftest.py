"""Shared export fixtures: registry models with unit-scale random logits, exported once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


def amplified(name: str, num_classes: int = 2, **cfg: Any) -> tuple[Any, Any]:
    """Registry model (seeded random init) whose last layer is rescaled to give logits of unit spread.

    Random-init segmentation nets emit logits of ~1e-2; at that scale a 1e-4 parity bar and the arg-max
    check would be nearly vacuous. Rescaling only the classifier keeps the graph unchanged.
    """
    from dakd_edge.export.onnx import load_for_export

    model, meta = load_for_export(name, num_classes=num_classes, **cfg)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    head = next(
        m for m in reversed(last) if getattr(m, "out_channels", getattr(m, "out_features", 0)) == num_classes
    )
    with torch.no_grad():
        x = torch.randn(1, meta.in_chans, 64, 64, generator=torch.Generator().manual_seed(0))
        scale = 1.0 / float(model(x).std().clamp_min(1e-6))
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.mul_(scale)
    return model.eval(), meta


@pytest.fixture(scope="session")
def nano_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """saross-nano (5 classes) exported with standard and plugin ops (dynamic shapes)."""
    from dakd_edge.export.onnx import OnnxExportConfig, export_onnx

    model, meta = amplified("saross-nano", num_classes=5)
    root: Path = tmp_path_factory.mktemp("nano")
    reports = {}
    # The plugin graph is evaluated by onnx's pure-numpy reference evaluator: keep its inputs small.
    for ops, side in (("standard", 64), ("plugin", 32)):
        cfg = OnnxExportConfig(ops=ops, parity_size=side)
        reports[ops] = export_onnx(model, meta, root / f"nano_{ops}.onnx", cfg)
    return {
        "model": model,
        "meta": meta,
        "reports": reports,
        **{ops: root / f"nano_{ops}.onnx" for ops in reports},
    }
