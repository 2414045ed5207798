"""Every registry model that claims exportability exports to ONNX and matches PyTorch in ONNX Runtime.

Each export checks two input sizes through the built-in parity gate (64x64 and an odd 45x56, both
needing window padding in SAROSS-Net); a third size is run here on the same file. The large MambaVision
variants (saross-t/s/b) share saross-nano's code path and differ only in widths and depths; they take
minutes on a CI CPU, so they run only with DAKD_TEST_ALL_EXPORTS=1 (saross-b and -r34 were checked).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dakd_edge
from dakd_edge.errors import ExportError
from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, run_onnx
from dakd_edge.export.parity import TOLERANCES, compare, deterministic_input, torch_logits
from tests.export.conftest import amplified

# saross-r34 is nano's decoder on timm's ResNet-34 (the encoder the SMP baselines below also export).
BIG = {"saross-t", "saross-s", "saross-b", "saross-r34"}
# The SMP baselines are tested with their smallest encoder of the same family: the decoder (the part
# that differs between architectures) is unchanged, and export time drops ~3x.
SMALL_ENCODER = {"unet": "resnet18", "linknet": "resnet18", "pspnet": "resnet18", "deeplabv3plus": "resnet18",
                 "segformer": "mit_b0"}  # fmt: skip
# Dynamic H x W is impossible for PSPNet under the TorchScript exporter (adaptive_avg_pool2d needs a
# static input size whose pooled cells divide it), so it is exported at fixed shapes instead.
FIXED_ONLY = {"pspnet"}
ALL = os.environ.get("DAKD_TEST_ALL_EXPORTS") == "1"


def _names() -> list[str]:
    # Exportability is a class flag, but only the builders are registered: it is checked in the test
    # body (building every variant at collection time would cost minutes of CPU).
    # nano: conftest session fixture; "test-*": test-only models registered by tests/train/tiny.py.
    return [n for n in dakd_edge.list_models() if n != "saross-nano" and not n.startswith("test-")]


def _small(name: str) -> dict[str, str]:
    return {"encoder_name": SMALL_ENCODER[name]} if name in SMALL_ENCODER else {}


def _params(names: list[str]) -> list:
    out = []
    for n in names:
        marks = (
            []
            if (n not in BIG or ALL)
            else [pytest.mark.skip(reason="large variant: DAKD_TEST_ALL_EXPORTS=1")]
        )
        out.append(pytest.param(n, marks=marks))
    return out


def test_saross_nano_exports_and_matches(nano_exports) -> None:
    report = nano_exports["reports"]["standard"]
    assert [r.input for r in report.parity] == ["deterministic", "deterministic-odd"]
    for r in report.parity:
        print(r.line())
        assert r.passed
    x = deterministic_input((2, 1, 40, 130), seed=5)  # batch 2, a third (wide) size
    res = compare(
        torch_logits(nano_exports["model"], x), run_onnx(nano_exports["standard"], x), TOLERANCES["fp32"]
    )
    print(res.line())
    assert res.passed


@pytest.mark.parametrize("name", _params([n for n in _names() if n not in FIXED_ONLY]))
def test_registry_model_exports_dynamic(name: str, tmp_path: Path) -> None:
    model, meta = amplified(name, **_small(name))
    if not getattr(type(model), "exportable", False):
        pytest.skip(f"{name} does not claim exportability")
    report = export_onnx(model, meta, tmp_path / f"{name}.onnx", OnnxExportConfig(parity_size=64))
    assert len(report.parity) == 2 and all(r.passed for r in report.parity)
    for r in report.parity:
        print(name, r.line())


@pytest.mark.parametrize("name", sorted(FIXED_ONLY))
def test_fixed_shape_only_models(name: str, tmp_path: Path) -> None:
    model, meta = amplified(name, **_small(name))
    assert getattr(type(model), "exportable", False)
    # PSPNet pools the stride-8 map to 1/2/3/6 cells; ONNX needs static sizes those divide, so only
    # multiples of 96 export (a padded size makes the pooled map's size symbolic again).
    for h, w in ((96, 96), (96, 192)):
        report = export_onnx(
            model, meta, tmp_path / f"{name}{h}x{w}.onnx", OnnxExportConfig(shape=(1, 1, h, w))
        )
        assert report.parity[0].passed
    # the failure says which shapes export (it said "try a fixed --shape", and 256 failed too)
    for shape in (None, (1, 1, 256, 256)):
        with pytest.raises(
            ExportError, match=rf"{name} exports only at a fixed --shape with H and W multiples of 96"
        ):
            export_onnx(model, meta, tmp_path / "dyn.onnx", OnnxExportConfig(shape=shape))


def test_windowed_caft_exports_dynamic(tmp_path: Path) -> None:
    """caft_window pads and partitions on symbolic shapes: one file serves sizes with partial cells."""
    model, meta = amplified("saross-edge", caft_window=32)
    report = export_onnx(model, meta, tmp_path / "w.onnx", OnnxExportConfig(parity_size=64))
    assert len(report.parity) == 2 and all(r.passed for r in report.parity)
    x = deterministic_input((2, 1, 72, 120), seed=3)  # cells of 32 input px: partial at every level
    res = compare(torch_logits(model, x), run_onnx(tmp_path / "w.onnx", x), TOLERANCES["fp32"])
    print(res.line())
    assert res.passed
