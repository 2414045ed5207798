"""The model-file format table: every suffix resolves, every caller agrees with it, and the metadata keys
the writers use are the ones the readers look for (and the ones the bundled files carry)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from dakd_edge import formats
from dakd_edge.errors import InputError, ModelFileError
from dakd_edge.formats import ENGINE, FORMATS, ONNX, PYTORCH, SAFETENSORS, backend_for, format_of, suffixes

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "dakd_edge" / "weights"


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_suffix_resolves(fmt: formats.Format) -> None:
    assert fmt.suffixes and all(s == s.lower() and s.startswith(".") for s in fmt.suffixes)
    for s in fmt.suffixes:
        for name in (f"m{s}", f"dir.x/M{s.upper()}"):
            assert format_of(name) is fmt
            assert backend_for(name) == fmt.backend
        assert s in suffixes(fmt.name) and s in suffixes(fmt.backend) and s in suffixes()
    assert fmt.backend in formats.BACKENDS and set(fmt.precisions) <= set(formats.PRECISIONS)
    assert set(fmt.precisions) <= set(formats.backend_precisions(fmt.backend))


def test_table_is_consistent() -> None:
    every = suffixes()
    assert len(every) == len(set(every)), "a suffix belongs to one format"
    assert len({f.name for f in FORMATS}) == len(FORMATS)
    assert formats.BACKENDS == ("torch", "onnxruntime", "tensorrt")
    assert formats.BACKEND_CHOICES == (formats.AUTO, *formats.BACKENDS)
    assert suffixes("torch") == (".safetensors", ".pt", ".pth")
    assert formats.backend_precisions("onnxruntime") == ("fp32",)
    assert formats.backend_precisions("tensorrt") == formats.PRECISIONS
    assert format_of("scene.tif") is None and format_of("model") is None
    with pytest.raises(ModelFileError, match="cannot tell the model format"):
        backend_for("m.txt")
    with pytest.raises(InputError, match="unknown backend"):
        backend_for("m.onnx", "tflite")
    assert backend_for("m.onnx", "torch") == "torch"
    with pytest.raises(ValueError):
        suffixes("tflite")
    assert formats.engine_sidecar("out/m.trt") == Path("out/m.trt.json")


def test_on_disk_keys_are_fixed() -> None:
    """Renaming a key would orphan every file written so far (the bundled model among them)."""
    assert (SAFETENSORS.meta_key, PYTORCH.meta_key) == ("dakd_meta", "meta")
    assert (ONNX.meta_key, ONNX.ops_key) == ("dakd_edge.meta", "dakd_edge.ops")
    assert (ENGINE.meta_key, ENGINE.ops_key) == ("meta", "ops")
    assert (formats.INPUT_NAME, formats.OUTPUT_NAME) == ("input", "logits")
    assert formats.OPS_MODES == ("standard", "plugin")


def test_formats_imports_without_numpy_or_torch() -> None:
    script = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"
        "sys.modules['torch'] = None\n"
        "from dakd_edge.formats import backend_for\n"
        "print(backend_for('m.trt'))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "tensorrt", r.stderr


def test_trt_is_an_engine_everywhere(tmp_path: Path) -> None:
    from dakd_edge.bench import ModelSpec
    from dakd_edge.models.checkpoint import read_meta

    for suffix in ENGINE.suffixes:
        eng = tmp_path / f"m{suffix}"
        eng.write_bytes(b"\0")
        assert backend_for(eng) == "tensorrt"
        assert ModelSpec.parse(str(eng)).kind == "engine"  # bench used to miss .trt
        with pytest.raises(ModelFileError, match="exported model"):
            read_meta(eng)  # checkpoint I/O refuses it as an exported model
    assert ModelSpec.parse(str(WEIGHTS / "saross-edge-sos.onnx")).kind == "onnx"
    assert ModelSpec.parse(str(WEIGHTS / "saross-edge-sos.safetensors")).kind == "checkpoint"


def test_bench_and_cli_choices_come_from_the_table() -> None:
    from dakd_edge import bench
    from dakd_edge.cli.batch import batch
    from dakd_edge.cli.export import export
    from dakd_edge.cli.segment import demo, segment
    from dakd_edge.export.tensorrt import EngineConfig

    assert set(formats.BACKENDS) <= set(bench.BACKENDS)  # plus the torch-triton / torch-compile rows
    assert [b for b in bench.BACKENDS if b in formats.BACKENDS] == list(formats.BACKENDS)
    assert bench.PRECISIONS == formats.PRECISIONS
    for command in (segment, demo, batch):
        (opt,) = [p for p in command.params if p.name == "backend"]
        assert tuple(opt.type.choices) == formats.BACKEND_CHOICES and opt.default == formats.AUTO
    opts = {p.name: p for p in export.params}
    assert tuple(opts["ops"].type.choices) == (formats.AUTO, *formats.OPS_MODES)
    assert tuple(opts["precision"].type.choices) == ENGINE.precisions
    assert tuple(opts["fmt"].type.choices) == (ONNX.name, ENGINE.name)
    assert opts["precision"].default == EngineConfig().precision
    with pytest.raises(Exception, match="precision"):
        EngineConfig(precision="bf16")


def test_every_precision_has_a_parity_tolerance() -> None:
    from dakd_edge.export.parity import TOLERANCES

    assert set(TOLERANCES) == set(formats.PRECISIONS)


def test_bundled_files_carry_the_table_keys() -> None:
    from dakd_edge.inference.backends import read_onnx_meta
    from dakd_edge.models.checkpoint import read_meta

    st = WEIGHTS / "saross-edge-sos.safetensors"
    with open(st, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert SAFETENSORS.meta_key in header["__metadata__"]
    meta = read_meta(st)
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(WEIGHTS / "saross-edge-sos.onnx"), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props[ONNX.ops_key] == "standard"
    assert read_onnx_meta(WEIGHTS / "saross-edge-sos.onnx").name == meta.name
    assert json.loads(props[ONNX.meta_key])["name"] == meta.name


@pytest.mark.parametrize("fmt", [SAFETENSORS, PYTORCH], ids=lambda f: f.name)
def test_checkpoint_writer_keys_are_reader_keys(fmt: formats.Format, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from dakd_edge import create_model
    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import read_meta, save_model

    torch.manual_seed(0)
    path = tmp_path / f"m{fmt.suffixes[-1]}"
    saved = save_model(path, create_model("saross-nano").eval(), ModelMeta.default_for("saross-nano", 2))
    if fmt is SAFETENSORS:
        with open(path, "rb") as f:
            stored = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    else:
        stored = torch.load(path, weights_only=True)
    assert json.loads(stored[fmt.meta_key])["name"] == "saross-nano"
    assert read_meta(path) == saved


def test_onnx_writer_keys_are_reader_keys(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, read_metadata
    from dakd_edge.inference.backends import OnnxRuntimeBackend
    from tests.export.toy import toy

    model, meta = toy()
    out = tmp_path / "toy.onnx"
    export_onnx(model, meta, out, OnnxExportConfig(parity=False))
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props[ONNX.ops_key] == "standard" and ONNX.meta_key in props
    assert read_metadata(out) == (meta, "standard")
    assert OnnxRuntimeBackend(out).meta == meta
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == [formats.INPUT_NAME]
    assert [o.name for o in graph.output] == [formats.OUTPUT_NAME]


def test_engine_sidecar_keys_are_reader_keys(tmp_path: Path) -> None:
    from dakd_edge.inference.backends import read_engine_sidecar
    from dakd_edge.meta import ModelMeta

    eng = tmp_path / "m.plan"
    eng.write_bytes(b"\0")
    meta = ModelMeta.default_for("saross-nano", 2)
    side = {ENGINE.meta_key: meta.to_dict(), ENGINE.ops_key: "standard", "tensorrt_version": "10.8.0"}
    formats.engine_sidecar(eng).write_text(json.dumps(side))
    info = read_engine_sidecar(eng)
    assert ModelMeta.from_dict(info[ENGINE.meta_key]) == meta


def test_export_cli_defaults_are_the_config_defaults() -> None:
    from dakd_edge.cli.export import export
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import EngineConfig

    opts = {p.name: p.default for p in export.params}
    onnx_defaults = {f.name: f.default for f in fields(OnnxExportConfig)}
    engine_defaults = {f.name: f.default for f in fields(EngineConfig)}
    assert opts["opset"] == onnx_defaults["opset"] and opts["scan_chunk"] == onnx_defaults["scan_chunk"]
    assert opts["precision"] == engine_defaults["precision"]
    assert opts["workspace"] == engine_defaults["workspace_gib"]
    assert opts["max_batch"] == engine_defaults["max_batch"]
