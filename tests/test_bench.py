"""`dakd-edge bench`: schema, skip reasons, and the regression gate (no timing assertions)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dakd_edge.cli.bench  # noqa: F401 - reads run_bench's defaults at import, before a test patches it
from dakd_edge import bench as lib
from dakd_edge.errors import InputError

ROW_KEYS = {
    "backend", "precision", "tile", "batch", "status", "reason", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
    "tiles_per_s", "mpix_per_s", "peak_mem_mb", "argmax_agreement", "max_abs_err",
}  # fmt: skip


def _doc(p50: float, mpix: float) -> dict:
    row = lib.Row("onnxruntime", "fp32", 256, 1, p50_ms=p50, mean_ms=p50, mpix_per_s=mpix, model="m")
    return {"environment": {}, "results": [lib.asdict(row)]}


def test_parse_threshold() -> None:
    assert lib.parse_threshold("10%") == pytest.approx(0.10)
    assert lib.parse_threshold("0.25") == pytest.approx(0.25)
    with pytest.raises(InputError):
        lib.parse_threshold("ten")
    with pytest.raises(InputError):
        lib.parse_threshold("-5%")


def test_gate_passes_on_itself_and_within_threshold() -> None:
    base = _doc(10.0, 5.0)
    assert lib.compare(base, base, 0.10) == []
    assert lib.compare(_doc(10.9, 4.6), base, 0.10) == []  # 9% slower, 8% less throughput


def test_gate_fails_on_injected_regression() -> None:
    base = _doc(10.0, 5.0)
    problems = lib.compare(_doc(12.0, 5.0), base, 0.10)
    assert len(problems) == 2 and "p50_ms" in problems[0] and "+20.0%" in problems[0]
    problems = lib.compare(_doc(10.0, 4.0), base, 0.10)
    assert len(problems) == 1 and "mpix_per_s" in problems[0]


def test_gate_ignores_unmatched_and_non_ok_rows() -> None:
    base = _doc(10.0, 5.0)
    cur = copy.deepcopy(base)
    other = copy.deepcopy(cur["results"][0])
    other.update(tile=512, p50_ms=100.0, mean_ms=100.0)  # a combination the baseline lacks
    failed = copy.deepcopy(cur["results"][0])
    failed.update(batch=2, status="failed", p50_ms=100.0)  # not ok: not compared
    cur["results"] += [other, failed]
    assert lib.compare(cur, base, 0.0) == []


def test_gate_that_matches_nothing_is_an_error() -> None:
    base = _doc(10.0, 5.0)
    cur = copy.deepcopy(base)
    cur["results"][0]["tile"] = 512
    with pytest.raises(InputError, match="no row of baseline b.json matches"):
        lib.compare(cur, base, 0.0, source="b.json")
    cur = _doc(100.0, 0.1)
    cur["results"][0]["status"] = "skipped"  # not measurable here: nothing compared
    with pytest.raises(InputError, match="no row of baseline"):
        lib.compare(cur, base, 0.0)


def test_environment_has_versions() -> None:
    env = lib.environment()
    for key in ("cpu", "cores", "gpu", "cuda", "torch", "onnxruntime", "tensorrt", "dakd_edge", "git_commit"):
        assert key in env
    assert env["cores"] >= 1


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dakd_edge", "bench", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_cli_schema_skips_and_gate(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    r = _run_cli([
        "--model", "saross-nano", "--backend", "torch,onnxruntime,tensorrt,torch-triton", "--precision", "fp32,int8",
        "--tile", "64", "--batch", "1,2", "--warmup", "1", "--iters", "3", "--json", str(out),
    ])  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert set(doc) >= {"environment", "results"}
    rows = doc["results"]
    assert len(rows) == 4 * 2 * 2  # every combination listed, none dropped
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["status"] in ("ok", "skipped", "failed")
        if row["status"] != "ok":
            assert row["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["backend"] for r in ok} >= {"torch", "onnxruntime"}
    for row in ok:
        assert row["p50_ms"] <= row["p99_ms"]
        assert row["tiles_per_s"] > 0 and row["mpix_per_s"] > 0 and row["peak_mem_mb"] > 0
        assert row["argmax_agreement"] >= 99.0
        assert row["max_abs_err"] < 1e-3
    trt = [r for r in rows if r["backend"] == "tensorrt"]
    assert all(r["status"] == "skipped" and "TensorRT" in r["reason"] for r in trt)
    int8_torch = [r for r in rows if r["backend"] == "torch" and r["precision"] == "int8"]
    assert all(r["status"] == "skipped" for r in int8_torch)


@pytest.fixture(scope="module")
def nano_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, load_for_export

    model, meta = load_for_export("saross-nano", num_classes=2)
    out = tmp_path_factory.mktemp("bench") / "nano.onnx"
    export_onnx(model, meta, out, OnnxExportConfig(parity=False))
    return out


def test_gate_through_cli(tmp_path: Path, nano_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dakd_edge.cli import main

    args = ["bench", "--model", str(nano_onnx), "--backend", "onnxruntime", "--tile", "64", "--warmup", "1",
            "--iters", "3"]  # fmt: skip
    out = tmp_path / "base.json"
    with pytest.raises(SystemExit) as e:
        main([*args, "--json", str(out)])
    assert e.value.code == 0
    doc = json.loads(out.read_text())
    (row,) = doc["results"]
    assert row["status"] == "ok" and row["argmax_agreement"] is None  # no torch reference for an ONNX file

    with pytest.raises(SystemExit) as e:  # passes against itself with a generous limit
        main([*args, "--baseline", str(out), "--max-regression", "1000%"])
    assert e.value.code == 0
    assert "regression gate passed" in capsys.readouterr().out

    row["p50_ms"] /= 10  # injected regression: the baseline claims a 10x faster run
    row["mean_ms"] /= 10
    row["mpix_per_s"] *= 10
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as e:
        main([*args, "--baseline", str(fast), "--max-regression", "10%"])
    assert e.value.code == 1
    assert "regression gate FAILED" in capsys.readouterr().out


def test_cli_bad_inputs_exit_2(tmp_path: Path) -> None:
    r = _run_cli(["--model", str(tmp_path / "missing.onnx"), "--iters", "1"])
    assert r.returncode == 2 and "Traceback" not in r.stderr and "missing.onnx: no such file" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    r = _run_cli(["--model", "saross-nano", "--baseline", str(bad)])
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    r = _run_cli(["--model", "saross-nano", "--backend", "cuda-magic"])
    assert r.returncode == 2 and "unknown backend" in r.stderr


def test_cuda_graphs_rows_skip_with_reason_on_cpu() -> None:
    doc = lib.run_bench(
        models=["saross-nano"], backends=["torch", "torch-compile"], tiles=[32], warmup=0, iters=1,
        device="cpu", cuda_graphs=True,
    )  # fmt: skip
    rows = doc["results"]
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "skipped" and "CUDA graphs need CUDA" in row["reason"]
        assert row["extra"]["cuda_graphs"] is True


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager() -> None:
    import numpy as np
    import torch

    from dakd_edge.export.onnx import load_for_export
    from dakd_edge.inference.backends import TorchBackend

    model, meta = load_for_export("saross-nano", num_classes=2)
    be = TorchBackend(model=model, meta=meta, device="cuda", kernels="torch")
    graph = lib.CudaGraphPredict(be)
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((2, 1, 64, 64)).astype(np.float32)
    for inp in (x, y, x):  # replays read the new input, not the captured one
        np.testing.assert_allclose(graph(inp), be.predict(inp), atol=1e-5, rtol=0)
    assert graph.graph is not None and torch.cuda.is_available()
    doc = lib.run_bench(
        models=["saross-nano"], backends=["torch"], tiles=[64], warmup=1, iters=3, cuda_graphs=True
    )
    row = doc["results"][0]
    assert row["status"] == "ok" and row["extra"] == {"cuda_graphs": True, "timer": "cuda-events"}
    assert row["argmax_agreement"] >= 99.0


def test_default_tile_and_batch_are_what_segment_runs(tmp_path) -> None:
    """Without --tile/--batch, bench times the model's own tile at segment's default batch for it."""
    from dakd_edge.inference.predictor import default_batch
    from dakd_edge.weights import bundled_path

    onnx = str(bundled_path("onnxruntime"))
    tile = lib.Workbench(lib.ModelSpec.parse(onnx), "cpu", tmp_path).meta.tile
    assert tile == 256  # the bundled model's metadata (docs/bundled-v2.md)

    def pairs(**kw) -> list[tuple]:  # the (tile, batch) of each planned row
        return [k[3:] for k in lib.planned_keys([onnx], ["onnxruntime"], ["fp32"], device="cpu", **kw)]

    assert pairs() == [(256, default_batch("cpu", 256))] == [(256, 4)]
    assert pairs(tiles=[128]) == [(128, 16)]
    assert pairs(tiles=[512], batches=[1, 2]) == [(512, 1), (512, 2)]
    doc = lib.run_bench([onnx], ["onnxruntime"], warmup=0, iters=1, device="cpu")
    (r,) = doc["results"]
    assert (r["tile"], r["batch"], r["status"]) == (256, 4, "ok")
    assert r["p50_ms"] > 0 and r["mpix_per_s"] > 0


@pytest.mark.parametrize("kw", [{"tiles": [0]}, {"batches": [0]}, {"tiles": [256, -1]}, {"batches": []}])
def test_non_positive_tile_or_batch_is_one_input_error(kw: dict) -> None:
    with pytest.raises(lib.InputError, match="positive sizes"):
        lib.run_bench([None], ["onnxruntime"], warmup=0, iters=1, device="cpu", **kw)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"tiles": [1]}, "--tile must be at least 32"),  # was 262,144 tiles per call: a hang
        ({"tiles": [256, 31]}, "--tile must be at least 32"),
        ({"tiles": [512], "batches": [1_000_000]}, "Mpixel limit"),
        ({"num_classes": 0}, "--num-classes: 0 classes: a segmentation model needs 2 to 255"),
        ({"num_classes": 300}, "--num-classes: 300 classes"),
    ],
)
def test_exploding_sizes_are_refused_before_any_work(kw: dict, needle: str, monkeypatch) -> None:
    """Refused by the planner (the --baseline path) and the runner, before a model is loaded."""
    monkeypatch.setattr(lib, "Workbench", None)  # any model load would fail loudly
    tiles = kw.pop("tiles", [64])
    for call in (lib.planned_keys, lib.run_bench):
        extra = {} if call is lib.planned_keys else {"warmup": 0, "iters": 1}
        with pytest.raises(InputError, match=needle):
            call(["saross-nano"], ["onnxruntime"], ["fp32"], tiles=tiles, device="cpu", **kw, **extra)


def test_cli_tile_1_is_one_line_exit_2() -> None:
    r = _run_cli(["--tile", "1", "--iters", "3", "--warmup", "1", "--backend", "onnxruntime"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--tile must be at least 32" in r.stderr


def test_bad_scene_is_refused_before_any_row_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    """A damaged --scene used to fail only after every benchmark row had been measured."""
    from dakd_edge.cli.app import main

    bad = tmp_path / "scene.tif"
    bad.write_bytes(b"II*\x00 truncated")

    def no_rows(*a, **k):
        raise AssertionError("benchmark rows ran before the scene was checked")

    monkeypatch.setattr(lib, "run_bench", no_rows)
    with pytest.raises(SystemExit) as e:
        main(["bench", "--backend", "onnxruntime", "--scene", str(bad), "--iters", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "scene.tif" in err and len(err.strip().splitlines()) == 1


def test_run_scene_end_to_end_on_a_small_scene(tmp_path: Path) -> None:
    from tests.inference.fake import blob_scene, write_tif

    scene = write_tif(tmp_path / "s.tif", blob_scene(300, 280))
    r = lib.run_scene(scene, backend="onnxruntime")
    assert r["megapixels"] == pytest.approx(300 * 280 / 1e6) and r["mpix_per_s"] > 0
    assert r["tiles"]["run"] >= 1 and r["backend"] == "onnxruntime"


def _bench_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``dakd-edge bench *argv`` in-process; returns (exit code, stderr)."""
    from dakd_edge.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["bench", *argv])
    return int(e.value.code or 0), capsys.readouterr().err


def _no_rows(*a, **k):
    raise AssertionError("benchmark rows ran before the disk was checked")


def test_full_json_disk_is_refused_before_any_row_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    """The results were lost after every row had been measured: "no space left" came at the write."""
    from tests.fs import fill, leftovers, tmpfs

    monkeypatch.setattr(lib, "run_bench", _no_rows)
    with tmpfs(tmp_path / "disk", "256k") as disk:
        fill(disk, leave=16_384)
        code, err = _bench_cli(
            ["--backend", "onnxruntime", "--iters", "1", "--json", str(disk / "r.json")], capsys
        )
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"no space left on {disk} for {disk / 'r.json'}: needs about 0.1 MB" in err
        assert leftovers(disk) == ["hog.bin"]


def test_json_write_that_still_fails_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.fs import fill, leftovers, tmpfs

    big = {"environment": {"notes": "x" * 300_000}, "results": []}  # past the estimate for one row
    monkeypatch.setattr(lib, "run_bench", lambda *a, **k: copy.deepcopy(big))
    with tmpfs(tmp_path / "disk", "256k") as disk:
        fill(disk, leave=128 * 1024)
        code, err = _bench_cli(
            ["--backend", "onnxruntime", "--iters", "1", "--json", str(disk / "r.json")], capsys
        )
        assert code == 2 and err == f"dakd-edge: error: no space left on {disk} (writing {disk / 'r.json'})\n"
        assert leftovers(disk) == ["hog.bin"]


def test_scene_without_room_in_the_temp_folder_is_refused_first(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--scene`` writes segment's class map to the temporary folder: a full one failed after the rows."""
    import tempfile

    from tests.fs import leftovers, tmpfs
    from tests.inference.fake import blob_scene, write_tif

    scene = write_tif(tmp_path / "s.tif", blob_scene(512, 512))  # a class map of ~400 kB
    monkeypatch.setattr(lib, "run_bench", _no_rows)
    with tmpfs(tmp_path / "disk", "256k") as disk:
        monkeypatch.setattr(tempfile, "tempdir", str(disk))
        code, err = _bench_cli(["--backend", "onnxruntime", "--iters", "1", "--scene", str(scene)], capsys)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"no space left on {disk} for the --scene class map in {disk}" in err
        assert leftovers(disk) == []


def test_engine_onnx_is_exported_per_opset(tmp_path: Path) -> None:
    """TensorRT 8.5 engines need opset 16 (no LayerNormalization importer): the workbench exports the
    model once per opset, so ONNX Runtime rows keep the default file and engines get theirs."""
    import onnx

    from dakd_edge.bench import ModelSpec, Workbench
    from dakd_edge.export.onnx import DEFAULT_OPSET
    from dakd_edge.export.tensorrt import choose_engine_opset

    wb = Workbench(ModelSpec.parse("saross-nano"), "cpu", tmp_path)
    default, old = wb.onnx_path(), wb.onnx_path(choose_engine_opset(None, "8.5.2.2")[0])
    assert default != old and wb.onnx_path(DEFAULT_OPSET) == default and wb.onnx_path(16) == old
    ops = {p: {n.op_type for n in onnx.load(p).graph.node} for p in (default, old)}
    assert onnx.load(old).opset_import[0].version == 16 and "LayerNormalization" not in ops[old]
    assert (
        onnx.load(default).opset_import[0].version == DEFAULT_OPSET and "LayerNormalization" in ops[default]
    )
