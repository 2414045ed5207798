"""`dakd-edge bench` usage errors: one line naming the option, before the header and any model load."""

from __future__ import annotations

from pathlib import Path

import pytest

import dakd_edge.cli.bench  # noqa: F401  (reads run_bench's defaults at import: before the patches)
from dakd_edge import bench as lib


def _no_model(*a, **k):
    raise AssertionError("a model was loaded before the options were checked")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--tile", "16"], "--tile must be at least 32 (as for segment), got 16"),
        (["--tile", "64,16", "--device", "cpu"], "--tile must be at least 32"),
        (["--tile", "512", "--batch", "1000000", "--device", "cpu"], "Mpixel limit"),
        (["--batch", "0", "--device", "cpu"], "--batch needs positive sizes, got 0"),
        (["--backend", "onnx"], "--backend: unknown backend 'onnx'; choose from torch,"),
        (["--backend", "torch,onnx", "--device", "cpu"], "--backend: unknown backend 'onnx'"),
        (["--precision", "fp64", "--device", "cpu"], "--precision: unknown precision 'fp64'"),
    ],
)
def test_bad_options_are_refused_before_the_header_and_any_model_load(
    run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], says: str
) -> None:
    """`bench --tile 16` printed the bench header to stdout (and, with --scene, loaded the model)
    before its usage error."""
    from tests.inference.fake import blob_scene, write_tif

    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    for name in ("Workbench", "scene_predictor", "run_bench"):
        monkeypatch.setattr(lib, name, _no_model)
    code, out, err = run_cli(["bench", *args, "--scene", str(scene)])
    assert code == 2 and out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dakd-edge: error: ") and says in lines[0], err
