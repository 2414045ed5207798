"""TensorRT export: graph compatibility and plugin-node contracts on the CPU; engine runs need a GPU.

No test here needs TensorRT to check the graphs that would be handed to it; the engine-building tests
skip with the reason :func:`tensorrt_status` gives (TensorRT missing, or no CUDA device).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dakd_edge.errors import DatasetError, ExportError, Notice, OutputError
from dakd_edge.export.nodes import DOMAIN
from dakd_edge.export.plugins import plugins_status
from dakd_edge.export.tensorrt import (
    TENSORRT_ONNX_OPS,
    EngineConfig,
    calibration_tiles,
    default_profile,
    save_timing_cache,
    tensorrt_graph_problems,
    tensorrt_status,
    write_engine,
)
from dakd_edge.meta import ModelMeta

TRT_OK, TRT_REASON = tensorrt_status()
PLUGINS_OK, PLUGINS_REASON = plugins_status()


def test_standard_graph_is_tensorrt_parsable(nano_exports) -> None:
    proto = onnx.load(str(nano_exports["standard"]))
    assert tensorrt_graph_problems(proto) == []
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= TENSORRT_ONNX_OPS
    assert "Einsum" not in ops and not any(n.domain == DOMAIN for n in proto.graph.node)
    # The scan is in the graph in plain ops: its unrolled steps (8 in and 8 across chunks per mixer).
    scan_muls = [n for n in proto.graph.node if "/mixer" in n.name and n.op_type == "Mul"]
    assert len(scan_muls) >= 2 * 16


def test_plugin_graph_nodes(nano_exports) -> None:
    proto = onnx.load(str(nano_exports["plugin"]))
    custom = [n for n in proto.graph.node if n.domain == DOMAIN]
    kinds = {n.op_type for n in custom}
    assert kinds == {"SelectiveScan", "TransposedAttention"}
    for n in custom:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["plugin_namespace"] == DOMAIN.encode()
        if n.op_type == "SelectiveScan":
            assert len(n.input) == 7 and attrs["delta_softplus"] == 1  # MambaVision: softplus(dt + bias)
        else:
            assert len(n.input) == 4
    # Without plugins allowed, each custom node is reported; with them, the graph is clean.
    assert len(tensorrt_graph_problems(proto)) == len(custom)
    assert tensorrt_graph_problems(proto, allow_plugins=True) == []
    # The plugin graph was parity-checked with the numpy reference ops at two sizes.
    assert all(r.passed for r in nano_exports["reports"]["plugin"].parity)


def test_graph_problems_detected() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axis = helper.make_tensor_value_info("axis", TensorProto.INT64, [])
    nodes = [
        helper.make_node("CumSum", ["x", "axis"], ["a"]),
        helper.make_node("Einsum", ["a", "a"], ["b"], equation="...i,...i->..."),
        helper.make_node("NonExistentOp", ["b"], ["c"]),
        helper.make_node("Foo", ["c"], ["y"], domain="other"),
    ]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x, axis], [y]))
    problems = tensorrt_graph_problems(proto)
    assert len(problems) == 4
    text = " | ".join(problems)
    for needle in ("axis is not a constant", "ellipsis", "not supported", "custom domain 'other'"):
        assert needle in text


def test_engine_config_and_profile() -> None:
    with pytest.raises(ExportError, match="calib"):
        EngineConfig(precision="int8")
    with pytest.raises(ExportError):
        EngineConfig(precision="bf8")
    meta = ModelMeta.default_for("saross-nano", 2, tile=512)
    assert default_profile(meta) == {"min": [1, 1, 32, 32], "opt": [8, 1, 512, 512], "max": [8, 1, 512, 512]}
    assert default_profile(meta, (1, 1, 256, 256))["max"] == [1, 1, 256, 256]
    assert default_profile(meta, max_batch=EngineConfig().max_batch) == default_profile(meta)
    assert default_profile(meta, max_batch=2)["opt"] == [2, 1, 512, 512]


def test_calibration_tiles(tmp_path: Path) -> None:
    from PIL import Image

    meta = ModelMeta.default_for("m", 2)
    with pytest.raises(DatasetError):
        calibration_tiles(tmp_path / "none", meta, (32, 32), 4)
    with pytest.raises(DatasetError, match="no images"):
        calibration_tiles(tmp_path, meta, (32, 32), 4)
    for i in range(3):
        Image.fromarray((np.arange(40 * 50).reshape(40, 50) * (i + 1) % 256).astype(np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    tiles = calibration_tiles(tmp_path, meta, (32, 48), 2)
    assert len(tiles) == 2 and tiles[0].shape == (1, 32, 48) and tiles[0].dtype == np.float32


def test_engine_and_sidecar_are_written_together(tmp_path: Path) -> None:
    """A failure while the pair is written leaves the old pair as it was (the sidecar used to be
    renamed into place before the engine); an orphan sidecar is replaced without --overwrite."""
    from dakd_edge.formats import engine_sidecar

    out = tmp_path / "m.engine"
    write_engine(out, b"old", {"v": 1})
    with pytest.raises(OutputError, match="exists"):
        write_engine(out, b"new", {"v": 2})
    with pytest.raises(TypeError):  # the sidecar cannot be written: nothing is renamed
        write_engine(out, b"new", {"v": object()}, overwrite=True)
    assert out.read_bytes() == b"old" and json.loads(engine_sidecar(out).read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
    out.unlink()  # an orphan sidecar (an engine deleted by hand)
    write_engine(out, b"new", {"v": 2})
    assert out.read_bytes() == b"new" and json.loads(engine_sidecar(out).read_text()) == {"v": 2}


def test_unsaved_timing_cache_is_a_notice(tmp_path: Path) -> None:
    ro = tmp_path / "missing" / "cache.bin"  # its folder does not exist: the write fails
    with pytest.warns(Notice, match="timing cache .* not saved .* is complete"):
        save_timing_cache(ro, lambda: b"cache", tmp_path / "m.engine")
    save_timing_cache(tmp_path / "cache.bin", lambda: b"cache", tmp_path / "m.engine")
    assert (tmp_path / "cache.bin").read_bytes() == b"cache"


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_OK, reason=TRT_REASON)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_and_parity(precision: str, tmp_path: Path) -> None:
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import export_engine
    from tests.export.conftest import amplified

    model, meta = amplified("saross-nano")
    shape = (1, 1, 128, 128)
    prof = default_profile(meta, shape)
    cfg = EngineConfig(precision=precision, min_shape=shape, opt_shape=shape, max_shape=shape)
    report = export_engine(model, meta, tmp_path / "m.engine", cfg, OnnxExportConfig(shape=shape))
    assert all(r.passed for r in report.parity) and report.profile == prof
    assert (tmp_path / "m.engine.json").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not (TRT_OK and PLUGINS_OK), reason=f"{TRT_REASON}; {PLUGINS_REASON}")
def test_plugin_engine_matches_standard(tmp_path: Path) -> None:
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import export_engine
    from tests.export.conftest import amplified

    model, meta = amplified("saross-nano")
    shape = (1, 1, 128, 128)
    cfg = EngineConfig(precision="fp32", min_shape=shape, opt_shape=shape, max_shape=shape)
    report = export_engine(
        model, meta, tmp_path / "p.engine", cfg, OnnxExportConfig(ops="plugin", shape=shape)
    )
    assert report.ops == "plugin" and all(r.passed for r in report.parity)
