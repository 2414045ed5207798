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
