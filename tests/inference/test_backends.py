"""Backends behind one interface; the ONNX Runtime path must work where importing torch fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.errors import InputError, ModelFileError
from dakd_edge.formats import backend_for
from dakd_edge.inference import load
from dakd_edge.inference.backends import (
    OnnxRuntimeBackend,
    TorchBackend,
    check_engine_compat,
    read_engine_sidecar,
)
from dakd_edge.meta import ModelMeta
from tests.export.toy import toy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from dakd_edge.export.onnx import OnnxExportConfig, export_onnx

    model, meta = toy(num_classes=5)
    d = tmp_path_factory.mktemp("backends")
    dyn = d / "toy.onnx"
    export_onnx(model, meta, dyn)
    fixed = d / "toy_fixed.onnx"
    export_onnx(model, meta, fixed, OnnxExportConfig(shape=(2, 1, 40, 40)))
    plugin = d / "toy_plugin.onnx"
    export_onnx(model, meta, plugin, OnnxExportConfig(ops="plugin", parity=False))
    return model, meta, dyn, fixed, plugin


def test_onnxruntime_matches_torch_backend(exported) -> None:
    model, meta, dyn, fixed, _ = exported
    torch_b = TorchBackend(model=model, meta=meta, kernels="torch")
    x = np.random.default_rng(0).standard_normal((3, 1, 33, 47)).astype(np.float32)
    ref = torch_b.predict(x)
    ort_b = OnnxRuntimeBackend(dyn)
    assert ort_b.meta == meta and ort_b.name == "onnxruntime" and ort_b.device == "cpu"
    np.testing.assert_allclose(ort_b.predict(x), ref, atol=1e-4)
    # Fixed 2x1x40x40 export: a batch of 3 is split, 33x47 is refused (too wide), 33x40 padded/cropped.
    fixed_b = OnnxRuntimeBackend(fixed)
    x2 = x[:, :, :, :40]
    out = fixed_b.predict(x2)
    assert out.shape == (3, 5, 33, 40)
    # Same as torch on the reflect-padded tile, cropped back (the toy's attention is global).
    padded = np.pad(x2, ((0, 0), (0, 0), (0, 7), (0, 0)), mode="reflect")
    np.testing.assert_allclose(out, torch_b.predict(padded)[:, :, :33], atol=1e-4)
    with pytest.raises(Exception, match="exceeds"):
        fixed_b.predict(x)
    # Thread options reach the session; spinning is off unless asked for (same results either way).
    spin_b = OnnxRuntimeBackend(dyn, threads=1, spin=True)
    opts = spin_b.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert (
        ort_b.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    )
    np.testing.assert_allclose(spin_b.predict(x), ort_b.predict(x), atol=1e-6)


def test_plugin_onnx_refused_by_onnxruntime(exported) -> None:
    with pytest.raises(ModelFileError, match="--ops standard"):
        OnnxRuntimeBackend(exported[4])


def test_load_returns_predictor(exported) -> None:
    _, meta, dyn, _, _ = exported
    pred = load(dyn)
    assert pred.meta == meta
    img = (np.random.default_rng(1).random((50, 61)) * 255).astype(np.uint8)
    proba = pred.predict_proba(img)
    assert proba.shape == (5, 50, 61) and np.allclose(proba.sum(0), 1, atol=1e-4)
    labels = pred.predict(img)
    assert labels.shape == (50, 61) and labels.dtype == np.uint8


def test_backend_for_suffixes(tmp_path: Path) -> None:
    assert backend_for("m.onnx") == "onnxruntime"
    assert backend_for("m.engine") == "tensorrt"
    assert backend_for("m.trt") == "tensorrt" and backend_for("M.PLAN") == "tensorrt"
    assert backend_for("m.safetensors") == "torch"
    assert backend_for("m.onnx", "torch") == "torch"
    with pytest.raises(ModelFileError):
        backend_for("m.txt")
    with pytest.raises(InputError, match="unknown backend 'tflite'"):
        backend_for("m.onnx", "tflite")
    with pytest.raises(ModelFileError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")


def test_engine_sidecar_and_version_check(tmp_path: Path) -> None:
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\0")
    with pytest.raises(ModelFileError, match="missing"):
        read_engine_sidecar(eng)
    side = tmp_path / "m.engine.json"
    for bad in ([1, 2], {"tensorrt_version": "10.8.0"}, {"meta": {"tile": 3}}):
        side.write_text(json.dumps(bad))
        with pytest.raises(ModelFileError, match="m.engine.json"):
            read_engine_sidecar(eng)
    meta = ModelMeta.default_for("saross-nano", 2).to_dict()
    side.write_text(json.dumps({"tensorrt_version": "10.8.0", "cuda_version": "12.6", "meta": meta}))
    info = read_engine_sidecar(eng)
    check_engine_compat(info, "10.8.0", "12.4")
    with pytest.raises(ModelFileError, match="TensorRT 10.8.0 but this machine has TensorRT 10.3.0"):
        check_engine_compat(info, "10.3.0", "12.6")
    with pytest.raises(ModelFileError, match="CUDA"):
        check_engine_compat(info, "10.8.0", "11.8")


def test_onnx_inference_without_torch(exported) -> None:
    """An edge box without PyTorch (and without the onnx package): load(x.onnx).predict(image)."""
    dyn = exported[2]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["onnx"] = None
        import numpy as np
        from dakd_edge.inference import load
        pred = load({str(dyn)!r})
        img = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
        labels = pred.predict(img)
        assert labels.shape == (70, 90), labels.shape
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("OK", pred.backend.name, int(labels.max()))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK onnxruntime")


def test_torch_backend_needs_torch_message() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        from dakd_edge.errors import BackendUnavailable
        from dakd_edge.inference.backends import TorchBackend
        try:
            TorchBackend("m.safetensors")
        except BackendUnavailable as e:
            print("OK", e)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("OK") and "onnx" in r.stdout, r.stderr


def test_bundled_model_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exported) -> None:
    import shutil

    import dakd_edge.weights

    monkeypatch.setattr(dakd_edge.weights, "__file__", str(tmp_path / "__init__.py"))
    with pytest.raises(ModelFileError, match="no bundled model"):
        load()
    shutil.copy(exported[2], tmp_path / "bundled.onnx")
    assert dakd_edge.weights.bundled_path() == tmp_path / "bundled.onnx"
    assert load().backend.name == "onnxruntime"
