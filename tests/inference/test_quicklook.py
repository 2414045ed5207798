"""PNG quicklook: grey SAR, translucent class colours, nodata grey, legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.quicklook import NODATA_RGB, quicklook, render
from dakd_edge.inference.segment import segment_scene
from dakd_edge.meta import ModelMeta

from .fake import FakeBackend, write_tif


def test_render_overlay_and_legend() -> None:
    meta = ModelMeta.default_for("m", 5)
    sar = np.ma.masked_array(np.tile(np.linspace(0, 255, 200), (120, 1)), mask=False)
    sar.mask = np.zeros(sar.shape, bool)
    sar.mask[:5] = True
    cls = np.zeros((120, 200), np.uint8)
    cls[40:60, 150:190] = 1  # oil: cyan tint
    img = np.asarray(render(sar, cls, meta))
    assert img.shape == (120, 200, 3)
    assert tuple(img[0, 100]) == NODATA_RGB
    oil = img[50, 170].astype(int)
    assert oil[1] > oil[0] + 60 and oil[2] > oil[0] + 60  # cyan-ish: G, B above R
    sea = img[30, 170]
    assert sea[0] == sea[1] == sea[2]  # class 0 left untinted
    legend = img[:, :30]  # legend box at the bottom left, swatches first
    assert (legend.reshape(-1, 3) == (0, 255, 255)).all(1).any()  # the oil swatch


def test_quicklook_file(tmp_path: Path) -> None:
    a = np.full((300, 500), 150, np.uint8)
    a[100:150, 100:300] = 30
    src = write_tif(tmp_path / "s.tif", a)
    pred = Predictor(FakeBackend(), tile=128, overlap=32)
    segment_scene(pred, src, tmp_path / "c.tif", polygons=False)
    out = quicklook(src, tmp_path / "c.tif", tmp_path / "q.png", pred.meta, max_size=250)
    with Image.open(out) as im:
        assert im.size == (250, 150) and im.mode == "RGB"
