"""`evaluate --scene S --truth T`: a truth that cannot be scored is refused before the scene is
segmented (it was refused after minutes of inference), and the run has segment's progress bar and -q."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dakd_edge.inference as inference
import dakd_edge.inference.segment as seg_lib
from dakd_edge.cli import segment as seg_cli
from dakd_edge.errors import DakdError
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, blob_scene, write_tif

H, W = 64, 96  # the scene's rows and columns


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    """The fake model for ``evaluate``; ``segment_scene`` records its call and stops the run there."""
    monkeypatch.setattr(inference, "load", lambda *a, **k: Predictor(FakeBackend(tile=64), tile=64))
    calls: list[dict] = []

    def segment_scene(predictor, scene, **kw):
        calls.append(kw)
        raise DakdError("segmented")

    monkeypatch.setattr(seg_lib, "segment_scene", segment_scene)
    return calls


def _evaluate(run_cli, tmp_path: Path, truth: Path, *extra: str) -> tuple[int, str]:
    scene = write_tif(tmp_path / "s.tif", blob_scene(H, W))
    code, out, err = run_cli(["evaluate", "--scene", str(scene), "--truth", str(truth), *extra])
    assert out == ""
    return code, err


@pytest.mark.parametrize(
    "name, data, says",
    [
        (
            "small.tif",
            np.zeros((100, 80), np.uint8),
            "the truth raster is 80 x 100 pixels but the prediction s.tif's class map is 96 x 64; give "
            "truth on the scene's grid, or its slicks as polygons (.geojson / .gpkg)",
        ),
        (
            "prob.tif",
            np.where(np.arange(H * W).reshape(H, W) == 70, 0.5, 1.0).astype(np.float32),
            "truth values are not whole numbers (e.g. 0.5): a probability or intensity raster is no class mask",
        ),
        (
            "wide.tif",
            np.where(np.arange(H * W).reshape(H, W) == 5, 300, 0).astype(np.int16),
            "truth value 300 is outside 0-255 class ids (give the raster a nodata if it marks unlabelled "
            "pixels)",
        ),
        (
            "rgb.tif",
            np.stack([np.zeros((H, W), np.uint8), np.ones((H, W), np.uint8), np.zeros((H, W), np.uint8)]),
            "the truth raster's 3 bands differ (colours, as OSD's RGB labels): give one band of class ids "
            "(OSD's labels_1D), or a mask with equal bands",
        ),
    ],
)
def test_a_truth_that_cannot_be_scored_is_refused_before_segmenting(
    run_cli, tmp_path: Path, runs: list[dict], name: str, data: np.ndarray, says: str
) -> None:
    truth = write_tif(tmp_path / name, data)
    code, err = _evaluate(run_cli, tmp_path, truth)
    assert (code, err) == (2, f"dakd-edge: error: {truth}: {says}\n")
    assert runs == []


def test_a_truth_of_class_ids_goes_on_to_segmenting(run_cli, tmp_path: Path, runs: list[dict]) -> None:
    """Whole numbers stored as floats, and 0-255 in int16, are class ids: no refusal."""
    for name, dtype in (("f.tif", np.float32), ("i.tif", np.int16)):
        truth = write_tif(tmp_path / name, np.ones((H, W), dtype))
        assert _evaluate(run_cli, tmp_path, truth) == (2, "dakd-edge: error: segmented\n")
    assert [(Path(kw["out"]).name, kw["polygons"]) for kw in runs] == [("classes.tif", False)] * 2


def test_evaluate_scene_has_segments_progress_bar_and_quiet(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: list[dict]
) -> None:
    monkeypatch.setattr(seg_cli, "stderr_is_terminal", lambda: True)
    truth = write_tif(tmp_path / "t.tif", np.zeros((H, W), np.uint8))
    assert _evaluate(run_cli, tmp_path, truth)[0] == 2
    assert _evaluate(run_cli, tmp_path, truth, "-q")[0] == 2
    assert _evaluate(run_cli, tmp_path, truth, "--quiet")[0] == 2
    assert [callable(kw["progress"]) for kw in runs] == [True, False, False]
