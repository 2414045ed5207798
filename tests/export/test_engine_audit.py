"""Engine-path bugs found in the export audit, each driven on the fake TensorRT of fake_trt.py.

fp32 engines built with TF32 (TensorRT's default), INT8 calibration batches of another shape than the
calibration profile, a foreign timing cache, the engine parity input outside a fixed-batch profile, and
a failed engine parity destroying the engine an ``--overwrite`` was meant to replace.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dakd_edge.errors import DatasetError, ExportError, Notice
from dakd_edge.export.tensorrt import EngineConfig, build_engine
from dakd_edge.formats import engine_sidecar
from dakd_edge.meta import ModelMeta
from tests.export import fake_trt


def _onnx(tmp_path: Path) -> Path:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"not parsed by the fake")
    return f


def _meta(tile: int = 64) -> ModelMeta:
    return ModelMeta.default_for("saross-nano", fake_trt.CLASSES, tile=tile)


@pytest.mark.parametrize(("precision", "cleared"), [("fp32", True), ("fp16", False)])
def test_fp32_engine_is_built_without_tf32(
    precision: str, cleared: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TensorRT sets BuilderFlag.TF32 by default: an "fp32" engine then rounds conv/matmul inputs to 10
    mantissa bits (~5e-4 relative) on Ampere and newer (Orin, A100, H100), and fails the 1e-4 parity."""
    trt = fake_trt.install(monkeypatch, "10.3.0")
    build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), EngineConfig(precision=precision))
    assert (("clear_flag", trt.BuilderFlag.TF32) in trt.calls) is cleared


def _tiles(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        img = (np.arange(70 * 80).reshape(70, 80) * (i + 3) % 256).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize(("shape", "batch"), [(None, 2), ((3, 1, 48, 40), 3)])
def test_int8_calibration_batches_match_the_calibration_profile(
    shape: Any, batch: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TensorRT calibrates at the calibration profile's opt shape. It was the inference profile, whose opt
    batch is --max-batch (8), while the calibrator copied batches of calib_batch_size (4) tiles into a
    buffer of that size: TensorRT read past it. Now the calibration profile is the calibrator's shape
    (a fixed --shape keeps its batch: the graph's batch is static then)."""
    trt = fake_trt.install(monkeypatch, "10.3.0")
    calib = _tiles(tmp_path / "calib", 6)
    cfg = EngineConfig(precision="int8", calib_dir=str(calib), calib_batch_size=2, calib_batches=3)
    build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), cfg, shape=shape)
    calls = {c[0]: c[1:] for c in trt.calls}
    h, w = (64, 64) if shape is None else shape[2:]
    expected = [batch, 1, h, w]
    assert calls["set_calibration_profile"] == ({"input": (expected, expected, expected)},)
    size, opt, batches = calls["calibrate"]
    assert size == batch and opt == expected and batches == 6 // batch
    assert trt.cudart.mallocs == [batch * 1 * h * w * 4]  # one calibration batch of float32
    assert trt.cudart.frees == [4096]  # and freed after the build (it was never freed)


def test_int8_without_enough_tiles_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Fewer images than one calibration batch (or a cache path that does not exist, with no images)
    gave TensorRT zero batches and an unexplained build failure; now a DatasetError before the build."""
    trt = fake_trt.install(monkeypatch, "10.3.0")
    calib = _tiles(tmp_path / "calib", 1)
    cfg = EngineConfig(precision="int8", calib_dir=str(calib), calib_batch_size=4)
    with pytest.raises(DatasetError, match=r"needs at least 4 images .* found 1"):
        build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), cfg)
    cfg = EngineConfig(precision="int8", calib_cache=str(tmp_path / "missing.cache"))
    with pytest.raises(DatasetError, match=r"calibration cache .*missing\.cache does not exist"):
        build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), cfg)
    assert "build_serialized_network" not in {c[0] for c in trt.calls}
    assert not (tmp_path / "m.engine").exists()


def test_foreign_timing_cache_is_a_notice_and_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A timing cache from another GPU or TensorRT (CI caches shared between runners) is refused by
    set_timing_cache; that was ignored, the build ran without a cache and saving it then failed on None."""
    trt = fake_trt.install(monkeypatch, "10.3.0")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"made on an A100")
    cfg = EngineConfig(precision="fp16", timing_cache=str(cache))
    with pytest.warns(Notice, match=r"timing cache .*timing\.cache does not fit this GPU/TensorRT"):
        build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), cfg)
    sets = [c[1:] for c in trt.calls if c[0] == "set_timing_cache"]
    assert sets == [(b"made on an A100", False), (b"", True)]
    assert cache.read_bytes() == b"cache"  # replaced by this build's cache
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # this GPU's own cache: nothing to say
        build_engine(_onnx(tmp_path), tmp_path / "n.engine", _meta(), cfg)


def test_sidecar_records_compute_capability(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Engines are specific to the GPU's compute capability; the sidecar names it for the runner."""
    fake_trt.install(monkeypatch, "10.3.0")
    build_engine(_onnx(tmp_path), tmp_path / "m.engine", _meta(), EngineConfig(precision="fp16"))
    info = json.loads(engine_sidecar(tmp_path / "m.engine").read_text())
    assert (info["gpu"], info["compute_capability"]) == ("Fake Orin", "8.7")


class _RecordingBackend:
    """Stands in for TensorRTBackend: checks each batch against the sidecar's profile, returns torch's
    logits plus ``offset``."""

    offset = 0.0
    seen: list[tuple[int, ...]] = []

    def __init__(self, path: Any) -> None:
        from tests.export.toy import toy

        self.info = json.loads(engine_sidecar(path).read_text())
        self.model = toy()[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        from dakd_edge.export.parity import torch_logits

        lo, hi = self.info["profile"]["min"], self.info["profile"]["max"]
        type(self).seen.append(tuple(x.shape))
        if not all(a <= s <= b for a, s, b in zip(lo, x.shape, hi, strict=True)):
            raise ExportError(f"input {x.shape} outside the engine profile {lo}..{hi}")
        return torch_logits(self.model, x) + self.offset

    def close(self) -> None:
        pass


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    import dakd_edge.inference.backends as backends

    fake_trt.install(monkeypatch, "10.3.0")
    monkeypatch.setattr(backends, "TensorRTBackend", _RecordingBackend)
    _RecordingBackend.offset, _RecordingBackend.seen = 0.0, []
    return _RecordingBackend


def test_engine_parity_input_fits_a_fixed_batch_profile(engine_env: Any, tmp_path: Path) -> None:
    """`export --shape 2x1x32x32 --format engine` built a batch-2 engine, then checked it on a batch of
    1, which the engine cannot take; the parity input now has the profile's batch."""
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import export_engine
    from tests.export.toy import toy

    model, meta = toy()
    shape = (2, 1, 32, 32)
    report = export_engine(
        model, meta, tmp_path / "m.engine", EngineConfig(precision="fp32"), OnnxExportConfig(shape=shape)
    )
    assert engine_env.seen == [shape]
    assert report.parity[-1].shape == (2, 2, 32, 32) and report.parity[-1].max_abs <= 1e-6
    assert all(r.passed for r in report.parity)


def test_failed_engine_parity_keeps_the_engine_it_would_replace(engine_env: Any, tmp_path: Path) -> None:
    """With --overwrite, the new engine and sidecar replaced the old pair before the parity check, and a
    failure then deleted them: the user lost a working engine. Now nothing is replaced until parity passes."""
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import export_engine, write_engine
    from tests.export.toy import toy

    model, meta = toy()
    out = tmp_path / "m.engine"
    write_engine(out, b"engine old", {"v": "old"})
    engine_env.offset = 0.5  # well past the fp32 bar (1e-4 x max(1, |logit|))
    cfg = OnnxExportConfig(shape=(1, 1, 32, 32))
    with pytest.raises(ExportError, match=r"^engine parity failed: .*-> FAILED"):
        export_engine(model, meta, out, EngineConfig(precision="fp32"), cfg, overwrite=True)
    assert out.read_bytes() == b"engine old"
    assert json.loads(engine_sidecar(out).read_text()) == {"v": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
    engine_env.offset = 0.0
    report = export_engine(model, meta, out, EngineConfig(precision="fp32"), cfg, overwrite=True)
    assert report.path == str(out) and out.read_bytes() == b"engine 10.3.0"
    assert json.loads(engine_sidecar(out).read_text())["tensorrt_version"] == "10.3.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
