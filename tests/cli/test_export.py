"""`dakd-edge export` like a user runs it: checkpoint -> ONNX with parity, and the one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dakd_edge.cli.app import cli


def test_export_checkpoint_to_onnx_with_image_parity(nano_ckpt: Path, tmp_path: Path) -> None:
    from PIL import Image

    from dakd_edge.inference.backends import OnnxRuntimeBackend

    img = tmp_path / "tile.png"
    Image.fromarray((np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)).save(img)
    out = tmp_path / "nano.onnx"
    args = [
        "export",
        str(nano_ckpt),
        "-o",
        str(out),
        "--shape",
        "1x1x64x64",
        "--image",
        str(img),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("parity")] == ["[deterministic", "[tile.png"]
    assert all(ln.endswith("-> ok") for ln in lines if ln.startswith("parity"))
    assert OnnxRuntimeBackend(out).meta.name == "saross-nano"
    again = CliRunner().invoke(cli, args)  # exists, no --overwrite
    assert again.exit_code != 0 and "exists" in str(again.exception)


def test_no_bundled_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dakd_edge.weights
    from dakd_edge.errors import ModelFileError

    monkeypatch.setattr(dakd_edge.weights, "__file__", str(tmp_path / "__init__.py"))
    r = CliRunner().invoke(cli, ["export", "-o", str(tmp_path / "m.onnx")])
    assert isinstance(r.exception, ModelFileError) and "no bundled model" in str(r.exception)


def test_engine_without_tensorrt_is_one_line_exit_2(tmp_path: Path) -> None:
    from dakd_edge.export.tensorrt import tensorrt_status

    if tensorrt_status()[0]:
        pytest.skip("TensorRT is usable here: the engine path is tested in tests/export/test_tensorrt.py")
    r = subprocess.run(
        ["dakd-edge", "export", "saross-nano", "--format", "engine", "-o", str(tmp_path / "m.engine")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("dakd-edge: error: --format engine: TensorRT is not installed")
    assert not (tmp_path / "m.engine").exists()


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["export", "saross-nano", "-o", str(tmp_path / "m.onnx"), "--ops", "fast"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["export", "saross-nano", "-o", str(tmp_path / "m.onnx"), "--shape", "64x64"])
    assert r.exit_code != 0 and "--shape" in str(r.exception)


def test_export_notices_are_one_line_and_engine_refusals_come_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library's Notices (a fixed --shape's tile, a foreign timing cache, the engine opset) reached
    the user as Python's two-line warning, or not at all; and `--precision int8` without --calib was
    refused only after the model had loaded."""
    import warnings

    from dakd_edge.errors import Notice
    from dakd_edge.export import onnx as export_onnx_mod
    from dakd_edge.export.onnx import OnnxExportReport
    from tests.export import fake_trt
    from tests.export.toy import toy
    from tests.reliability.cli import run

    loads: list[str] = []
    monkeypatch.setattr(export_onnx_mod, "load_for_export", lambda spec, **kw: (loads.append(spec), toy())[1])

    def fake_export(model, meta, out, cfg, overwrite=False):
        warnings.warn(Notice("the file records tile 32"), stacklevel=2)
        return OnnxExportReport(str(out), cfg.ops, cfg.opset, True, False, 0, {}, 0.0)

    monkeypatch.setattr(export_onnx_mod, "export_onnx", fake_export)
    code, _, err = run(["export", "toy", "-o", str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    assert "dakd-edge: warning: the file records tile 32" in err.splitlines()
    assert "warnings.warn" not in err and loads == ["toy"]
    fake_trt.install(monkeypatch, "10.3.0")
    args = ["export", "toy", "-o", str(tmp_path / "m.engine"), "--precision", "int8"]
    code, _, err = run(args, capsys)  # (after a note that these ops build from standard ones)
    assert code == 2 and err.splitlines()[-1].startswith("dakd-edge: error: --precision int8 needs --calib")
    assert loads == ["toy"]  # refused before loading the model


def test_export_notes_are_warning_lines_as_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine opset and op-mode notes were printed as ``note: ...`` where every other command
    prints ``dakd-edge: warning: ...``."""
    from dakd_edge.export import onnx as export_onnx_mod
    from dakd_edge.export import tensorrt as export_trt
    from dakd_edge.export.tensorrt import EngineReport
    from tests.export import fake_trt
    from tests.export.toy import toy
    from tests.reliability.cli import run

    def fake_engine(model, meta, out, ecfg, cfg, overwrite=False):
        return EngineReport(str(out), ecfg.precision, cfg.ops, {}, "8.5.2.2", 0.0)

    monkeypatch.setattr(export_onnx_mod, "load_for_export", lambda spec, **kw: toy())
    monkeypatch.setattr(export_trt, "export_engine", fake_engine)
    fake_trt.install(monkeypatch, "8.5.2.2")
    code, _, err = run(["export", "toy", "--format", "engine", "-o", str(tmp_path / "m.engine")], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines and all(ln.startswith("dakd-edge: warning: ") for ln in lines), err
    assert any("TensorRT 8.5.2.2 has no LayerNormalization importer" in ln for ln in lines), err
    assert any("use --ops standard" in ln for ln in lines), err
