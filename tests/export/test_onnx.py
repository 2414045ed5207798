"""ONNX export machinery on a tiny windowed model: metadata, dynamic shapes, op modes, parity gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dakd_edge.errors import ExportError, OutputError
from dakd_edge.export import onnx as onnx_export
from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, parse_shape, read_metadata, run_onnx
from dakd_edge.export.parity import TOLERANCES, compare, deterministic_input, torch_logits
from dakd_edge.kernels.dispatch import export_ops, get_export_ops
from tests.export.toy import toy


@pytest.fixture(scope="module")
def toy_standard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    model, meta = toy(num_classes=3)
    path = tmp_path_factory.mktemp("onnx") / "toy.onnx"
    report = export_onnx(model, meta, path)
    return path, (model, meta, report)


def test_standard_export_metadata_and_parity(toy_standard) -> None:
    path, (model, meta, report) = toy_standard
    assert path.is_file() and report.dynamic and report.ops == "standard"
    assert report.parity and all(r.passed for r in report.parity)
    got, ops = read_metadata(path)
    assert got == meta and ops == "standard"
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    assert not any(n.domain == "dakd_edge" for n in proto.graph.node)
    assert not any(n.op_type in ("Loop", "Scan", "Einsum") for n in proto.graph.node)
    # the class dimension is written (the exporter left it symbolic), so a runtime can check the metadata
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in out] == ["batch", 3, "height", "width"]
    # no leftover temporary files next to the output
    assert [p.name for p in path.parent.iterdir()] == ["toy.onnx"]


@pytest.mark.parametrize("hw", [(49, 49), (30, 45), (2 * 57, 20)])
def test_dynamic_shapes_match_torch(toy_standard, hw: tuple[int, int]) -> None:
    path, (model, _, _) = toy_standard
    x = deterministic_input((2, 1, *hw), seed=3)
    res = compare(torch_logits(model, x), run_onnx(path, x), TOLERANCES["fp32"])
    print(res.line())
    assert res.passed


def test_plugin_export_has_custom_nodes(tmp_path: Path, toy_standard) -> None:
    model, meta = toy()
    path = tmp_path / "toy_plugin.onnx"
    report = export_onnx(model, meta, path, OnnxExportConfig(ops="plugin"))
    assert all(r.passed for r in report.parity)  # evaluated with the numpy reference ops
    proto = onnx.load(str(path))
    custom = [n for n in proto.graph.node if n.domain == "dakd_edge"]
    assert sorted(n.op_type for n in custom) == ["SelectiveScan", "TransposedAttention"]
    assert any(o.domain == "dakd_edge" for o in proto.opset_import)
    scan = next(n for n in custom if n.op_type == "SelectiveScan")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in scan.attribute}
    assert attrs["delta_softplus"] == 1 and attrs["plugin_namespace"] == b"dakd_edge"
    assert len(scan.input) == 7
    attn = next(n for n in custom if n.op_type == "TransposedAttention")
    assert len(attn.input) == 4
    # The attention's Softmax is inside its node, and the scan's unrolled steps (stacked with Concat in
    # the standard graph) are gone.
    assert not any(n.op_type == "Softmax" for n in proto.graph.node)
    concats = lambda g: sum(n.op_type == "Concat" for n in g.graph.node)  # noqa: E731
    assert concats(proto) + 2 <= concats(onnx.load(str(toy_standard[0])))
    assert read_metadata(path)[1] == "plugin"


def test_fixed_shape_and_simplify(tmp_path: Path) -> None:
    model, meta = toy()
    path = tmp_path / "fixed.onnx"
    report = export_onnx(model, meta, path, OnnxExportConfig(shape=(1, 1, 36, 36), simplify=True))
    assert not report.dynamic and report.simplified
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 36, 36]
    assert report.parity[0].shape == (1, 2, 36, 36)


def test_parity_failure_raises_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, meta = toy()
    real = onnx_export.onnx_runner
    monkeypatch.setattr(onnx_export, "onnx_runner", lambda m: lambda x: real(m)(x) + 1e-2)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="parity"):
        export_onnx(model, meta, out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(toy_standard) -> None:
    path, (model, meta, _) = toy_standard
    with pytest.raises(OutputError):
        export_onnx(model, meta, path)


def test_config_validation() -> None:
    with pytest.raises(ExportError):
        OnnxExportConfig(ops="fast")
    with pytest.raises(ExportError):
        OnnxExportConfig(opset=13)
    assert parse_shape("1x1x512x512") == (1, 1, 512, 512)
    with pytest.raises(ExportError):
        parse_shape("512x512")


def test_scan_chunk_default_is_the_kernels_export_chunk() -> None:
    """One default for --scan-chunk: the export config's equals the kernels' context default."""
    from dakd_edge.formats import EXPORT_SCAN_CHUNK

    assert OnnxExportConfig().scan_chunk == EXPORT_SCAN_CHUNK


def test_choose_ops_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from dakd_edge.export import plugins

    choose = onnx_export.choose_ops
    assert choose("auto", "onnx") == ("standard", None)
    assert choose("plugin", "onnx") == ("plugin", None)
    assert choose("standard", "engine") == ("standard", None)
    with pytest.raises(ExportError, match="--ops"):
        choose("fast", "onnx")
    monkeypatch.setattr(plugins, "plugins_status", lambda: (False, "TensorRT is not installed"))
    assert choose("auto", "engine") == (
        "standard",
        "TensorRT is not installed; building the engine from standard ops",
    )
    with pytest.raises(ExportError, match="--ops plugin: TensorRT is not installed"):
        choose("plugin", "engine")
    monkeypatch.setattr(plugins, "plugins_status", lambda: (True, "ok"))
    assert choose("auto", "engine") == ("plugin", None)
    assert choose("plugin", "engine") == ("plugin", None)


def test_export_ops_context_routes_ops() -> None:
    from dakd_edge.kernels import selective_scan

    assert get_export_ops() is None
    g = torch.Generator().manual_seed(0)
    u, dt = torch.randn(1, 3, 10, generator=g), torch.randn(1, 3, 10, generator=g)
    A, B, C = (
        -torch.rand(3, 2, generator=g),
        torch.randn(1, 2, 10, generator=g),
        torch.randn(1, 2, 10, generator=g),
    )
    base = selective_scan(u, dt, A, B, C, delta_softplus=True, kernels="torch")
    for mode in ("standard", "plugin"):
        with export_ops(mode):
            assert get_export_ops() == mode
            torch.testing.assert_close(selective_scan(u, dt, A, B, C, delta_softplus=True), base)
    with pytest.raises(ValueError):
        with export_ops("fast"):
            pass


def test_compare_statistics() -> None:
    ref = np.zeros((1, 2, 4, 4), np.float32)
    ref[:, 1] = 1.0
    out = ref.copy()
    out[0, 0, 0, 0] = 2.0  # flips one of 16 pixels
    res = compare(ref, out, TOLERANCES["fp32"])
    assert (
        not res.passed
        and res.max_abs == pytest.approx(2.0)
        and res.argmax_agreement == pytest.approx(15 / 16)
    )
    with pytest.raises(ExportError):
        compare(ref, np.full_like(ref, np.nan), TOLERANCES["fp32"])


def test_full_disk_is_not_reported_as_an_export_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC inside torch.onnx.export read "ONNX export ... failed: [Errno 28] ... (dynamic H x W
    unsupported by an op here? try a fixed --shape)": a hint that sent users after the graph."""
    import errno

    model, meta = toy()

    def export(model, args, f, **kw):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", export)
    with pytest.raises(OutputError, match=r"^no space left on .* \(writing .*m\.onnx\)$"):
        export_onnx(model, meta, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_too_little_space_refused_before_exporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dakd_edge.atomic as atomic

    model, meta = toy()
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 100)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **kw: pytest.fail("exported anyway"))
    with pytest.raises(OutputError, match=r"no space left on .* for .*m\.onnx: needs about"):
        export_onnx(model, meta, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_image_parity_at_a_fixed_batch(tmp_path: Path) -> None:
    """`export --shape 2x1x32x32 --image tile.png` fed the image as a batch of 1 to a graph whose batch is
    static 2: an ONNX Runtime INVALID_ARGUMENT traceback instead of a parity line."""
    from PIL import Image

    from dakd_edge.export.parity import image_input

    model, meta = toy()
    img = tmp_path / "tile.png"
    Image.fromarray((np.random.default_rng(0).random((50, 60)) * 255).astype(np.uint8)).save(img)
    x = image_input(img, meta, (2, 1, 32, 32))
    assert x.shape == (2, 1, 32, 32) and x.dtype == np.float32 and np.array_equal(x[0], x[1])
    cfg = OnnxExportConfig(shape=(2, 1, 32, 32), image=str(img))
    report = export_onnx(model, meta, tmp_path / "fixed2.onnx", cfg)
    assert [r.input for r in report.parity] == ["deterministic", "tile.png"]
    assert report.parity[1].shape == (2, 2, 32, 32)
    assert all(r.passed and r.max_abs <= 1e-4 for r in report.parity)


def test_fixed_shape_below_the_tile_records_a_tile_segment_can_run(tmp_path: Path) -> None:
    """`export --shape 1x1x32x32` of a 64-tile model stored tile 64: `segment --model` then refused every
    image above 32 px ("tile 64x64 exceeds the exported fixed shape 32x32"). The file now records tile
    32 (overlap within half of it), with a Notice, and segments a larger image."""
    from dakd_edge.errors import Notice
    from dakd_edge.inference.backends import OnnxRuntimeBackend
    from dakd_edge.inference.predictor import Predictor

    model, meta = toy()
    meta.overlap = 24
    out = tmp_path / "fixed.onnx"
    with pytest.warns(
        Notice, match=r"--shape 32x40 is smaller than the model's tile 64: .* tile 32 \(overlap 16\)"
    ):
        export_onnx(model, meta, out, OnnxExportConfig(shape=(1, 1, 32, 40)))
    stored, _ = read_metadata(out)
    assert (stored.tile, stored.overlap) == (32, 16) and (meta.tile, meta.overlap) == (64, 24)
    assert stored.class_names == meta.class_names and stored.normalization == meta.normalization
    image = (np.random.default_rng(1).random((70, 61)) * 255).astype(np.uint8)
    predictor = Predictor(OnnxRuntimeBackend(out))
    try:
        classes = predictor.predict(image, scale="uint8")
    finally:
        predictor.close()
    assert classes.shape == (70, 61) and int(classes.max()) < meta.num_classes


def test_export_report_names_the_files_hash_and_size(nano_exports) -> None:
    """A CI job keys caches and artifact checks on the file's hash: the report had none."""
    import hashlib

    for ops in ("standard", "plugin"):
        d = nano_exports["reports"][ops].to_dict()
        data = nano_exports[ops].read_bytes()
        assert d["sha256"] == hashlib.sha256(data).hexdigest() and d["size_bytes"] == len(data)
