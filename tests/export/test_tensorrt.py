"""TensorRT export: graph compatibility and plugin-node contracts on the CPU; engine runs need a GPU.

No test here needs TensorRT to check the graphs that would be handed to it; the engine-building tests
skip with the reason :func:`tensorrt_status` gives (TensorRT missing, or no CUDA device). The builder
and runner are driven per TensorRT version (8.4 to 11.x) on the fake module of
:mod:`tests.export.fake_trt`, far enough to check the calls each version gets, not what they compute.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Any

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
    build_engine,
    calibration_tiles,
    default_profile,
    save_timing_cache,
    tensorrt_graph_problems,
    tensorrt_onnx_ops,
    tensorrt_status,
    write_engine,
)
from dakd_edge.meta import ModelMeta
from tests.export import fake_trt

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


# --- TensorRT 8.5 / 8.6 (JetPack 5, JetPack 6.0) and 10.x, on the fake module of tests/export/fake_trt.py


def _build(tmp_path: Path, cfg: EngineConfig | None = None, name: str = "m.engine") -> Any:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not parsed by the fake")
    meta = ModelMeta.default_for("saross-nano", fake_trt.CLASSES, tile=64)
    return build_engine(onnx_file, tmp_path / name, meta, cfg or EngineConfig(precision="fp16"))


@pytest.mark.parametrize(
    ("version", "flags", "level"),
    [("8.5.2.2", 1, None), ("8.6.2", 1, 3), ("10.3.0", 0, 3), ("10.8.0.43", 0, 3)],
)
def test_build_engine_per_tensorrt_version(
    version: str, flags: int, level: int | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Below 10 the network is explicit batch by flag (flags 0 made an implicit-batch network the ONNX
    parser refuses); the optimization level is set where it exists (8.6+); 10.x is built as before."""
    from dakd_edge.formats import engine_sidecar

    trt = fake_trt.install(monkeypatch, version)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # the default level is no reason to say anything
        report = _build(tmp_path)
    calls = {c[0]: c[1:] for c in trt.calls}
    assert calls["create_network"] == (flags,)
    assert calls.get("builder_optimization_level") == ((level,) if level else None)
    assert ("set_flag", trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS) in trt.calls
    assert report.tensorrt_version == version
    assert (tmp_path / "m.engine").read_bytes() == b"engine " + version.encode()
    info = json.loads(engine_sidecar(tmp_path / "m.engine").read_text())
    assert info["tensorrt_version"] == version
    assert (info["cuda_version"], info["gpu"]) == ("11.4", "Fake Orin")


def test_unavailable_optimization_level_is_a_notice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trt = fake_trt.install(monkeypatch, "8.5.2.2")
    with pytest.warns(Notice, match=r"TensorRT 8\.5\.2\.2 has no builder optimization level .* level 5 not"):
        _build(tmp_path, EngineConfig(precision="fp32", builder_optimization_level=5))
    assert (tmp_path / "m.engine").is_file() and "builder_optimization_level" not in {c[0] for c in trt.calls}
    trt = fake_trt.install(monkeypatch, "8.6.2")
    _build(tmp_path, EngineConfig(precision="fp32", builder_optimization_level=5), "n.engine")
    assert ("builder_optimization_level", 5) in trt.calls


def test_layernorm_graph_on_8_5_names_the_opset(
    nano_exports, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An ONNX file built elsewhere at opset 17 (`bench` builds from its own export) fails TensorRT 8.5's
    parser with an error about plugins only; the message says which --opset parses."""
    fake_trt.install(monkeypatch, "8.5.2.2")
    meta = ModelMeta.default_for("saross-nano", 5, tile=64)
    with pytest.raises(
        ExportError, match=r"Plugin not found \(TensorRT 8\.5\.2\.2 needs the ONNX export at --opset 16\)$"
    ):
        build_engine(nano_exports["standard"], tmp_path / "m.engine", meta, EngineConfig(precision="fp32"))
    fake_trt.install(monkeypatch, "8.6.2")
    build_engine(nano_exports["standard"], tmp_path / "m.engine", meta, EngineConfig(precision="fp32"))


def test_fp16_on_tensorrt_11_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip's newest TensorRT is 11.x, which removed BuilderFlag.FP16/INT8 and the INT8 calibrator."""
    from dakd_edge.errors import BackendUnavailable

    fake_trt.install(monkeypatch, "11.4.0.106")
    with pytest.raises(
        BackendUnavailable, match=r"^--precision fp16: TensorRT 11\.4\.0\.106 removed the FP16"
    ):
        _build(tmp_path)
    assert _build(tmp_path, EngineConfig(precision="fp32")).tensorrt_version == "11.4.0.106"


def test_tensorrt_before_8_5_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dakd_edge.errors import BackendUnavailable
    from dakd_edge.inference.backends import TensorRTBackend

    fake_trt.install(monkeypatch, "8.4.1.5")  # JetPack 5.0.2
    ok, reason = tensorrt_status()
    assert not ok and reason.startswith("TensorRT 8.4.1.5 is too old: dakd-edge needs TensorRT >= 8.5")
    with pytest.raises(BackendUnavailable, match=r"^TensorRT 8\.4\.1\.5 is too old: .*>= 8\.5") as e:
        _build(tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "m.engine").exists()
    write_engine(tmp_path / "old.engine", b"engine 8.4.1.5", _sidecar("8.4.1.5"))
    with pytest.raises(BackendUnavailable, match=r"^TensorRT 8\.4\.1\.5 is too old"):
        TensorRTBackend(tmp_path / "old.engine")


def _sidecar(version: str) -> dict[str, Any]:
    meta = ModelMeta.default_for("saross-nano", fake_trt.CLASSES, tile=64)
    prof = default_profile(meta, max_batch=2)
    return {"meta": meta.to_dict(), "tensorrt_version": version, "cuda_version": "11.4", "profile": prof}


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2", "10.3.0"])
def test_runner_per_tensorrt_version(version: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The runner's name-based API exists from 8.5: a built engine runs through it (batches split to
    the profile's max), and an engine of another TensorRT is refused in one line, 8.x <-> 10.x both ways."""
    from dakd_edge.errors import ModelFileError
    from dakd_edge.inference.backends import TensorRTBackend

    trt = fake_trt.install(monkeypatch, version)
    write_engine(tmp_path / "m.engine", b"engine " + version.encode(), _sidecar(version))
    backend = TensorRTBackend(tmp_path / "m.engine")
    out = backend.predict(np.zeros((3, 1, 40, 48), np.float32))
    backend.close()
    assert out.shape == (3, fake_trt.CLASSES, 40, 48)
    names = [c[0] for c in trt.calls if c[0] != "deserialize_cuda_engine"]
    step = ["set_input_shape", "set_tensor_address", "set_tensor_address", "execute_async_v3"]
    assert names == step * 2  # max batch 2: tiles 0-1, then tile 2
    assert ("set_input_shape", "input", (1, 1, 40, 48)) in trt.calls
    other = "10.8.0.43" if version.startswith("8.") else "8.5.2.2"
    write_engine(tmp_path / "o.engine", b"engine " + other.encode(), _sidecar(other))
    mismatch = rf"^engine was built with TensorRT {other} but this machine has TensorRT {version}; "
    with pytest.raises(ModelFileError, match=mismatch):
        TensorRTBackend(tmp_path / "o.engine")


@pytest.mark.parametrize(
    ("version", "requested", "opset"),
    [
        ("8.5.2.2", None, 16),
        ("8.5.2.2", 16, 16),
        ("8.5.2.2", 17, "--opset 17: TensorRT 8.5.2.2 cannot parse LayerNormalization .* use --opset 16$"),
        ("8.6.2", None, 17),
        ("8.6.2", 18, "--opset 18: TensorRT 8.6.2 parses ONNX opsets up to 17: use --opset 17$"),
        ("10.3.0", None, 17),
        ("10.3.0", 16, 16),
        ("10.3.0", 18, 18),
    ],
)
def test_engine_opset_per_tensorrt_version(version: str, requested: int | None, opset: Any) -> None:
    from dakd_edge.export.tensorrt import choose_engine_opset

    if isinstance(opset, str):
        with pytest.raises(ExportError, match=opset):
            choose_engine_opset(requested, version)
        return
    chosen, note = choose_engine_opset(requested, version)
    assert chosen == opset
    assert (note is not None) == (requested is None and version.startswith("8.5"))
    if note:
        assert "TensorRT 8.5.2.2 has no LayerNormalization importer" in note and "opset 16" in note


def test_standard_graph_check_is_version_aware(nano_exports) -> None:
    """The opset-17 graph parses from 8.6 on; on 8.5 exactly its LayerNormalization nodes are reported."""
    proto = onnx.load(str(nano_exports["standard"]))
    norms = [n for n in proto.graph.node if n.op_type == "LayerNormalization"]
    assert norms and tensorrt_onnx_ops() == TENSORRT_ONNX_OPS
    for version in (None, "8.6.2", "10.3.0", "10.8.0"):
        assert tensorrt_graph_problems(proto, version=version) == []
    problems = tensorrt_graph_problems(proto, version="8.5.2.2")
    assert len(problems) == len(norms)
    hint = "no importer in TensorRT 8.5.2.2 (needs >= 8.6); export with --opset 16"
    assert all(hint in p for p in problems)


def test_version_limits_in_graph_check() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["a"]), helper.make_node("Mish", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x, axes], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert tensorrt_graph_problems(proto) == []  # TensorRT 10 (newest): unchanged
    assert tensorrt_graph_problems(proto, version="10.8.0") == []
    assert tensorrt_graph_problems(proto, version="10.3.0") == [
        "Unsqueeze node ?: input 1 must be a constant on TensorRT 10.3.0"
    ]
    text = " | ".join(tensorrt_graph_problems(proto, version="8.6.2"))
    assert "ONNX opset 18: TensorRT 8.6.2 parses opsets up to 17" in text
    assert "Mish node ?: no importer in TensorRT 8.6.2 (needs >= 10.0)" in text


def test_export_engine_on_tensorrt_8_5(nano_exports, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PyTorch -> ONNX -> engine on 8.5: the default opset 17 becomes 16 (a Notice says why), whose graph
    has no LayerNormalization and passes the 8.5 graph check and the fp32 ONNX parity."""
    from dakd_edge.export import tensorrt as export_trt
    from dakd_edge.export.onnx import OnnxExportConfig

    fake_trt.install(monkeypatch, "8.5.2.2")
    monkeypatch.setattr(export_trt, "check_engine_parity", lambda *a: [])  # the fake engine computes nothing
    keep = tmp_path / "kept.onnx"
    with pytest.warns(Notice, match="TensorRT 8.5.2.2 has no LayerNormalization importer .* opset 16"):
        report = export_trt.export_engine(
            nano_exports["model"], nano_exports["meta"], tmp_path / "m.engine", EngineConfig(),
            OnnxExportConfig(parity_size=64), keep_onnx=keep,
        )  # fmt: skip
    proto = onnx.load(str(keep))
    assert proto.opset_import[0].version == 16
    assert "LayerNormalization" not in {n.op_type for n in proto.graph.node}
    assert {n.op_type for n in proto.graph.node} <= tensorrt_onnx_ops("8.5.2.2")
    assert tensorrt_graph_problems(proto, version="8.5.2.2") == []
    assert report.tensorrt_version == "8.5.2.2" and report.parity and all(r.passed for r in report.parity)
    with pytest.raises(ExportError, match="--opset 18: TensorRT 8.5.2.2 cannot parse .* use --opset 16"):
        export_trt.export_engine(
            nano_exports["model"], nano_exports["meta"], tmp_path / "n.engine", EngineConfig(),
            OnnxExportConfig(opset=18),
        )  # fmt: skip


def test_cli_engine_opset_and_ops_on_tensorrt_8_5(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`export --format engine` picks opset 16 on 8.5 and says so; an explicit 17 is refused with the
    --opset to use; --ops auto falls back to standard ops, saying plugins need 10.8."""
    from click.testing import CliRunner

    from dakd_edge.cli.app import cli
    from dakd_edge.export import tensorrt as export_trt
    from dakd_edge.export.tensorrt import EngineReport

    used: list[Any] = []

    def fake_export(model, meta, out, ecfg, cfg, overwrite=False):  # the engine path is tested above
        used.append(cfg)
        return EngineReport(str(out), ecfg.precision, cfg.ops, {}, "8.5.2.2", 0.0)

    monkeypatch.setattr(export_trt, "export_engine", fake_export)
    fake_trt.install(monkeypatch, "8.5.2.2")
    args = ["export", "saross-nano", "--format", "engine", "-o", str(tmp_path / "m.engine")]
    r = CliRunner().invoke(cli, [*args, "--opset", "17"])
    assert isinstance(r.exception, ExportError) and not used
    assert str(r.exception).endswith("TensorRT 8.5.2.2 cannot parse LayerNormalization (opset >= 17; "
                                     "TensorRT >= 8.6 can): use --opset 16")  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert used[-1].opset == 16 and used[-1].ops == "standard"
    assert "dakd-edge: warning: TensorRT 8.5.2.2 has no LayerNormalization importer" in r.output
    assert "needs >= 10.8 with tensorrt.plugin); use --ops standard" in r.output
    fake_trt.install(monkeypatch, "10.3.0")
    r = CliRunner().invoke(cli, [*args, "--ops", "standard"])
    assert r.exit_code == 0, r.output
    assert used[-1].opset == 17 and "note:" not in r.output


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2", "10.3.0"])
def test_plugins_need_tensorrt_10_8(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused by version even where a tensorrt.plugin module exists, naming --ops standard as the way."""
    fake_trt.install(monkeypatch, version)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", types.ModuleType("tensorrt.plugin"))
    ok, reason = plugins_status()
    assert not ok
    assert reason == (
        f"TensorRT {version} cannot serve the plugins (needs >= 10.8 with tensorrt.plugin); "
        "use --ops standard (TensorRT >= 8.5)"
    )


def test_runner_pads_fixed_batches_and_refuses_another_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fixed-batch engine (--shape 2x...) gets its last tiles padded to the batch (3 tiles ran as a
    batch of 1 the engine cannot take); a shape the profile refuses is one line; an engine built for a
    GPU of another compute capability is refused naming both GPUs (TensorRT's own failure named none)."""
    from dakd_edge.errors import InputError, ModelFileError
    from dakd_edge.inference.backends import TensorRTBackend

    trt = fake_trt.install(monkeypatch, "10.3.0")
    info = _sidecar("10.3.0")
    fixed = [2, 1, 40, 48]
    info["profile"] = {"min": fixed, "opt": fixed, "max": fixed}
    write_engine(
        tmp_path / "f.engine", b"engine 10.3.0", {**info, "gpu": "Fake Orin", "compute_capability": "8.7"}
    )
    backend = TensorRTBackend(tmp_path / "f.engine")
    out = backend.predict(np.zeros((3, 1, 40, 48), np.float32))
    assert out.shape == (3, fake_trt.CLASSES, 40, 48)
    shapes = [c[2] for c in trt.calls if c[0] == "set_input_shape"]
    assert shapes == [(2, 1, 40, 48), (2, 1, 40, 48)]
    monkeypatch.setattr(backend.context, "set_input_shape", lambda name, shape: False, raising=False)
    with pytest.raises(InputError, match=r"^input \(2, 1, 40, 48\) is outside the engine's shape profile"):
        backend.predict(np.zeros((2, 1, 40, 48), np.float32))
    backend.close()
    write_engine(
        tmp_path / "a.engine", b"engine 10.3.0", {**info, "gpu": "NVIDIA A100", "compute_capability": "8.0"}
    )
    with pytest.raises(
        ModelFileError,
        match=r"built for NVIDIA A100 \(compute capability 8\.0\) but this machine's GPU is Fake Orin \(8\.7\)",
    ):
        TensorRTBackend(tmp_path / "a.engine")
    write_engine(tmp_path / "o.engine", b"engine 10.3.0", info)  # an older sidecar: no capability recorded
    TensorRTBackend(tmp_path / "o.engine").close()


def test_export_engine_work_folder_is_registered_for_the_interrupt_path(
    nano_exports, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A SIGTERM during TensorRT's build (minutes in C, ended by the signal watchdog's hard exit) left
    the intermediate ONNX (10 MB) in /tmp on every run: the work folder was a TemporaryDirectory the
    interrupt path did not know. It is registered while the engine builds, and gone afterwards."""
    from dakd_edge import atomic
    from dakd_edge.export import tensorrt as export_trt
    from dakd_edge.export.onnx import OnnxExportConfig

    fake_trt.install(monkeypatch, "10.8.0")
    monkeypatch.setattr(export_trt, "check_engine_parity", lambda *a: [])
    seen: list[set] = []
    build = export_trt.build_engine

    def spy(onnx_path, *a, **kw):
        seen.append({p for p in atomic._LIVE if p in Path(onnx_path).parents})
        return build(onnx_path, *a, **kw)

    monkeypatch.setattr(export_trt, "build_engine", spy)
    report = export_trt.export_engine(
        nano_exports["model"],
        nano_exports["meta"],
        tmp_path / "m.engine",
        EngineConfig(),
        OnnxExportConfig(parity_size=64),
    )
    assert len(seen) == 1 and len(seen[0]) == 1
    (folder,) = seen[0]
    assert folder.name.startswith("dakd-export-") and not folder.exists() and folder not in atomic._LIVE
    engine = (tmp_path / "m.engine").read_bytes()  # the report names what CI keys its artifacts on
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert report.sha256 == hashlib.sha256(engine).hexdigest() and report.size_bytes == len(engine)
    assert report.onnx_sha256 == sidecar["onnx_sha256"] and len(report.onnx_sha256) == 64
