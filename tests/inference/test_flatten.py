"""``segment_scene(flatten=True)``: a scene's backscatter trend is removed before tiling (opt-in).

The numpy fake reads absolute darkness as oil, as the bundled model partly does: on a scene whose sea
darkens by 16 dB across range (far range at -22 dB) it calls the far-range sea oil unless the trend
is flattened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene
from tests.inference.fake import FakeBackend, write_tif

H, W = 512, 2048


def _ramp_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """sigma0 in dB: sea -14 dB at mid-range, +8 dB near range (left) to -8 dB far range (right),
    with dark slicks 9 dB below the sea around them; (image, oil truth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    sea = -14.0 + 8.0 * (W / 2 - xx) / (W / 2)
    oil = np.zeros((H, W), bool)
    for _ in range(10):
        cy, cx = rng.uniform(40, H - 40), rng.uniform(100, W - 100)
        oil |= ((yy - cy) / 18) ** 2 + ((xx - cx) / 70) ** 2 < 1
    img = sea - 9.0 * oil + rng.normal(0, 0.8, (H, W))
    return img.astype(np.float32), oil


def _pred() -> Predictor:
    return Predictor(FakeBackend(num_classes=2, radius=3, tile=128), 128, 16, batch=4)


def _run(tmp_path: Path, src: Path, name: str, **kw) -> tuple[dict, np.ndarray]:
    out = tmp_path / f"{name}.tif"
    r = segment_scene(_pred(), src, out, polygons=False, land_mask=None, **kw)
    with rasterio.open(out) as ds:
        return r, ds.read(1)


def test_flattened_db_scene_no_longer_calls_far_range_sea_oil(tmp_path: Path) -> None:
    img, oil = _ramp_scene()
    src = write_tif(tmp_path / "ramp.tif", np.concatenate([img, img], axis=0))  # 1024 rows: flattened
    truth = np.concatenate([oil, oil], axis=0)
    r_flat, flat = _run(tmp_path, src, "flat", flatten=True)
    r_raw, raw = _run(tmp_path, src, "raw")  # off by default
    t = r_flat["level_trend"]
    assert t["applied"] is True
    assert t["across_columns_db"] == pytest.approx(-16.0, abs=1.0)
    assert t["across_rows_db"] == pytest.approx(0.0, abs=0.5)
    assert r_raw["level_trend"] == {"applied": False, "reason": "off"}
    sea_fa = {k: float((m[~truth] == 1).mean()) for k, m in (("flat", flat), ("raw", raw))}
    recall = {k: float((m[truth] == 1).mean()) for k, m in (("flat", flat), ("raw", raw))}
    assert sea_fa["raw"] > 0.08  # the darkest eighth of the swath (12.5 % when written)
    assert sea_fa["flat"] < 0.01 and recall["flat"] > 0.9


def test_eight_bit_scenes_are_flattened_in_unit_luminance(tmp_path: Path) -> None:
    img, _ = _ramp_scene()
    u8 = np.clip((np.concatenate([img, img]) + 35) / 40 * 255, 0, 255).astype(np.uint8)
    src = write_tif(tmp_path / "u8.tif", u8)
    r, _ = _run(tmp_path, src, "b", flatten=True)
    assert r["level_trend"]["applied"] is True
    assert "across_columns_db" not in r["level_trend"]  # 8-bit luminance has no dB scale
    assert r["level_trend"]["across_columns"] == pytest.approx(-0.4, abs=0.03)


def test_small_and_empty_scenes_are_left_alone(tmp_path: Path) -> None:
    img, _ = _ramp_scene()
    src = write_tif(tmp_path / "small.tif", img[:, :1000])
    r, _ = _run(tmp_path, src, "s", flatten=True)
    assert r["level_trend"] == {"applied": False, "reason": "scene under 1024 px"}
    empty = write_tif(tmp_path / "empty.tif", np.full((1100, 1100), np.nan, np.float32))
    r, _ = _run(tmp_path, empty, "e", scale="db", flatten=True)
    assert r["level_trend"]["applied"] is False and r["level_trend"]["reason"] == "no valid pixel"


def test_mostly_nodata_scene_reports_too_little_sea(tmp_path: Path) -> None:
    img, _ = _ramp_scene()
    big = np.full((1024, W), np.nan, np.float32)
    big[:40, :300] = img[:40, :300]  # one corner valid: fewer than 6 windows
    src = write_tif(tmp_path / "corner.tif", big)
    r, _ = _run(tmp_path, src, "c", scale="db", flatten=True)
    assert r["level_trend"]["applied"] is False
    assert r["level_trend"]["reason"].startswith("too little valid sea to fit a trend")


def test_predictor_predict_flattens_arrays_like_segment(tmp_path: Path) -> None:
    """``Predictor.predict(flatten=True)`` on an in-memory array gives the class map ``segment_scene``
    writes for the same scene with ``flatten=True``."""
    img, _ = _ramp_scene(seed=2)
    img = np.concatenate([img, img], axis=0)
    src = write_tif(tmp_path / "ramp.tif", img)
    _, from_file = _run(tmp_path, src, "f", flatten=True)
    from_array = _pred().predict(img, scale="db", flatten=True)
    np.testing.assert_array_equal(from_array, from_file)
    assert (from_array != _pred().predict(img, scale="db")).mean() > 0.05  # flattening changed it


def _level_scene(sea_db: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 512 px scene of flat sea at ``sea_db`` with slicks 9 dB darker; (sigma0 dB, oil truth)."""
    _, oil = _ramp_scene(seed)
    oil = oil[:, :512]
    rng = np.random.default_rng(seed)
    return (np.where(oil, sea_db - 9.0, sea_db) + rng.normal(0, 0.8, oil.shape)).astype(np.float32), oil


@pytest.mark.parametrize("sea_db", [-22.0, -8.0])
def test_match_level_moves_calm_and_windy_sea_to_the_training_level(tmp_path: Path, sea_db: float) -> None:
    """The fake calls oil below unit 0.375 (-20 dB): calm sea (-22 dB) is all 'oil' and slicks on windy
    sea (-8 dB, slicks at -17) are missed, until the sea is moved to the training level (0.435)."""
    img, oil = _level_scene(sea_db)
    src = write_tif(tmp_path / "sea.tif", img)
    r, matched = _run(tmp_path, src, "m", match_level=True)
    _, raw = _run(tmp_path, src, "r")
    t = r["level_trend"]
    assert t["applied"] is True and t["target_level"] == pytest.approx(0.435)
    assert t["level"] == pytest.approx((sea_db + 35) / 40, abs=0.01)
    assert t["level_shift_db"] == pytest.approx(0.435 * 40 - 35 - sea_db, abs=0.4)
    assert t["across_columns"] == 0.0  # 512 px: the level alone, no tilt
    sea_fa = {k: float((m[~oil] == 1).mean()) for k, m in (("m", matched), ("r", raw))}
    recall = {k: float((m[oil] == 1).mean()) for k, m in (("m", matched), ("r", raw))}
    if sea_db < -20:
        assert sea_fa["r"] > 0.9
    else:
        assert recall["r"] < 0.1
    assert sea_fa["m"] < 0.01 and recall["m"] > 0.85


def test_predictor_match_level_equals_segment(tmp_path: Path) -> None:
    img, _ = _level_scene(-22.0, seed=1)
    src = write_tif(tmp_path / "calm.tif", img)
    _, from_file = _run(tmp_path, src, "f", match_level=True)
    np.testing.assert_array_equal(_pred().predict(img, scale="db", match_level=True), from_file)
