"""benchmarks/osd_scenes.py on a tiny OSD-layout folder with a pixel-local numpy model: exact counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend

OIL, LOOKALIKE, SEA, LAND = (0, 255, 255), (255, 0, 0), (0, 0, 0), (0, 153, 0)


def _osd(root: Path) -> Path:
    """One 60 x 90 image: every 10 x 20 dark block is called oil by the fake model (pixel-local)."""
    images, labels = root / "test" / "images", root / "test" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    img = np.full((60, 90), 150, np.uint8)
    lab = np.zeros((60, 90, 3), np.uint8)
    for rows, cols, dark, label in (
        ((5, 15), (5, 25), True, OIL),  # a slick found
        ((20, 30), (5, 25), True, LOOKALIKE),  # a false alarm on a look-alike
        ((40, 50), (5, 25), True, SEA),  # a false alarm on open sea
        ((5, 50), (60, 80), True, LAND),  # dark land: nodata, never a spill
        ((5, 15), (35, 50), False, OIL),  # a bright slick: missed
    ):
        if dark:
            img[slice(*rows), slice(*cols)] = 30
        lab[slice(*rows), slice(*cols)] = label
    Image.fromarray(np.stack([img] * 3, -1)).save(images / "img_0001.png")
    Image.fromarray(lab).save(labels / "img_0001.png")
    return root


def test_slicks_false_alarms_and_their_truth_class_are_counted(
    tmp_path: Path, load_benchmark, monkeypatch
) -> None:
    bench = load_benchmark("osd_scenes")

    def factory(model, backend, threads, batch=1):
        return lambda tile, overlap: Predictor(
            FakeBackend(radius=0, tile=32), tile or 32, overlap or 0, batch=1
        )

    monkeypatch.setattr(bench, "predictor_factory", factory)
    out = tmp_path / "r.json"
    bench.main(["--osd", str(_osd(tmp_path / "osd")), "--min-area", "5px,250px", "-o", str(out)])
    r = json.loads(out.read_text())["models"]["bundled"]["32/0"]["min_area"]
    sp = r["5px"]["spills"]
    assert (sp["truth"], sp["detected"], sp["predicted"], sp["false_alarms"]) == (2, 1, 3, 2)
    assert sp["false_alarms_on"] == {"sea": 1, "look-alike": 1}
    px = r["5px"]["pooled_pixels"]  # tp 200 (found slick), fp 400 (two false alarms), fn 150 (missed)
    assert px["oil_iou"] == pytest.approx(200 / 750, abs=1e-12)
    assert px["oil_recall"] == pytest.approx(200 / 350, abs=1e-12)
    sp = r["250px"]["spills"]  # every region is 150-200 px: none is a spill or a slick
    assert (sp["truth"], sp["predicted"], sp["false_alarms"]) == (0, 0, 0)
