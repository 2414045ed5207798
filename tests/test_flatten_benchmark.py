"""benchmarks/flatten.py: its scoring, and one tiny wide scene through the segment path (numpy model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


def test_binary_scores_count_oil_against_the_rest(load_benchmark) -> None:
    bench = load_benchmark("flatten")
    labels = np.array([0, 0, 1, 1, 2, 2, 4, 255], np.uint8)  # sea, oil, look-alike, land, ignored
    pred = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.uint8)
    s = bench.binary_scores(pred, labels)
    assert s["cm"] == [[3, 2], [1, 1]]  # rest: 3 right, 2 called oil; oil: 1 missed, 1 found
    assert s["miou"] == pytest.approx((3 / 6 + 1 / 4) / 2)
    assert s["oil_call_rate"] == {"sea": 0.5, "lookalike": 0.5}


def test_wide_scene_runs_both_ways(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("flatten")
    pred = Predictor(FakeBackend(num_classes=2, radius=2, tile=128), 128, 16, batch=4)
    r = bench.wide_scenes(pred, [4], (96, 1100), tmp_path, ["raw", "flat", "match"])
    row = r["scenes"]["4"]
    assert row["trend"]["flat"]["applied"] is True  # 1100 px wide: flattened
    assert row["trend"]["match"]["target_level"] == pytest.approx(0.435)
    for key in ("raw", "flat", "match"):
        assert 0.0 <= row[key]["miou"] <= 100.0
    assert r["mean_miou"]["raw"] == row["raw"]["miou"]


def test_shifted_mosaics_are_written_as_db(tmp_path: Path, load_benchmark, monkeypatch) -> None:
    """``--shift``: one global level shift, written as calibrated dB that reads back to the shifted
    luminance through the model's stretch."""
    bench = load_benchmark("flatten")
    seen = []
    monkeypatch.setattr(
        bench, "segment_modes", lambda p, scene, w, modes: seen.append(scene) or {k: gt for k in modes}
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(16)]
    masks = [(im > 128).astype(np.uint8) for im in images]
    mosaic = bench._mosaic_module()
    lay = mosaic.mosaic_layouts(16, 1, 4, 0)[0]  # the one mosaic's patch order
    gt = mosaic.assemble([masks[i] for i in lay], 4)
    r = bench.ramped_mosaics(None, images, masks, [0.1], 1, tmp_path, ["raw", "match"], shift=True)
    assert r == {"0.1": {"raw": 100.0, "match": 100.0}}
    import rasterio

    from dakd_edge.data.scaling import to_unit

    with rasterio.open(seen[0]) as ds:
        db = ds.read(1)
    assert db.dtype == np.float32
    want = mosaic.assemble([images[i] for i in lay], 4) / 255.0 + 0.1
    np.testing.assert_allclose(to_unit(db, "db"), np.clip(want, 0, 1), atol=1e-5)
