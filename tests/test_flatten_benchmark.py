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
    r = bench.wide_scenes(pred, [4], (96, 1100), tmp_path)
    row = r["scenes"]["4"]
    assert row["trend"]["applied"] is True  # 1100 px wide: flattened
    for key in ("raw", "flat"):
        assert 0.0 <= row[key]["miou"] <= 100.0
    assert r["mean_miou"]["raw"] == row["raw"]["miou"]
