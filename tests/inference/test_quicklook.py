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


def _legend_rows(img: np.ndarray) -> int:
    """Rows of the legend box (white at 200/255 over black SAR) at its left margin, x = 7."""
    return int((np.abs(img[:, 7].astype(int) - 200) <= 1).all(1).sum())


def test_oil_as_class_0_is_tinted_and_the_background_is_found_by_name() -> None:
    """A model whose classes are ("oil", "background"): oil (class 0) is tinted cyan, the background
    (class 1) stays grey SAR, and the legend lists oil only (no swatch for an undrawn class)."""
    meta = ModelMeta("m", 2, class_names=("oil", "background"), palette=((0, 255, 255), (0, 0, 0)))
    sar = np.ma.masked_array(np.tile(np.linspace(0, 255, 200), (120, 1)), mask=np.zeros((120, 200), bool))
    cls = np.ones((120, 200), np.uint8)
    cls[40:60, 150:190] = 0
    img = np.asarray(render(sar, cls, meta, alpha=0.5)).astype(int)
    grey = int(img[30, 170, 0])
    assert tuple(img[30, 170]) == (grey, grey, grey) and grey > 200  # background: the SAR, untouched
    assert abs(img[50, 170, 0] - grey / 2) <= 1  # oil: half grey, half cyan (0, 255, 255)
    assert abs(img[50, 170, 1] - (grey + 255) / 2) <= 1 and abs(img[50, 170, 2] - (grey + 255) / 2) <= 1
    from dakd_edge.meta import background_ids_of

    assert background_ids_of(meta.class_names) == [1]
    assert background_ids_of(("Open_Sea", "oil", "ship")) == [0]
    assert background_ids_of(("class0", "class1", "class2")) == [0]  # unnamed: class 0, as oil is 1


def test_legend_lists_only_the_classes_drawn() -> None:
    """OSD: sea is not tinted, so the legend has 4 entries (oil, look-alike, ship, land), not 5: its box is
    6 + 4 * 18 px high (+1 for the outline row)."""
    black = np.ma.masked_array(np.zeros((150, 120)), mask=np.zeros((150, 120), bool))
    img = np.asarray(render(black, np.zeros((150, 120), np.uint8), ModelMeta.default_for("m", 5)))
    assert _legend_rows(img) == 6 + 4 * 18 + 1
    img = np.asarray(render(black, np.zeros((150, 120), np.uint8), ModelMeta.default_for("m", 2)))
    assert _legend_rows(img) == 6 + 1 * 18 + 1
