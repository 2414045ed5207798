"""The backscatter-trend fit behind ``segment --flatten`` (dakd_edge.data.level)."""

from __future__ import annotations

import numpy as np
import pytest

from dakd_edge.data import level
from tests.data.conftest import SHARED


def _points(b: float, c: float, h: int = 2000, w: int = 8000, seed: int = 0):
    rng = np.random.default_rng(seed)
    wins = level.window_grid(h, w)
    rows = np.array([(y0 + y1) / 2 for y0, y1, _, _ in wins])
    cols = np.array([(x0 + x1) / 2 for _, _, x0, x1 in wins])
    vals = 0.5 + b * (cols - w / 2) / w + c * (rows - h / 2) / h + rng.normal(0, 0.005, rows.size)
    return rows, cols, vals


def test_fit_recovers_the_plane_despite_slick_and_land_windows() -> None:
    rows, cols, vals = _points(-0.2, 0.05)
    rng = np.random.default_rng(1)
    bad = rng.choice(vals.size, vals.size * 3 // 10, replace=False)  # 30 % of the windows
    vals[bad[: bad.size // 2]] -= 0.2  # slicks, low wind
    vals[bad[bad.size // 2 :]] += 0.3  # land, ships
    t = level.fit_trend(rows, cols, vals, 2000, 8000)
    assert t is not None
    assert t.b == pytest.approx(-0.2, abs=0.01) and t.c == pytest.approx(0.05, abs=0.01)
    assert t.points <= vals.size - bad.size + 5 and t.windows == vals.size
    # without trimming, the outliers would pull the plane: the plain least squares is further off
    a = np.column_stack([np.ones_like(vals), (cols - 4000) / 8000, (rows - 1000) / 2000])
    plain = np.linalg.lstsq(a, vals, rcond=None)[0]
    assert abs(plain[1] + 0.2) + abs(plain[2] - 0.05) > abs(t.b + 0.2) + abs(t.c - 0.05)


def test_offset_flattens_the_plane_and_keeps_the_mean_level() -> None:
    h, w = 64, 256
    t = level.LevelTrend(b=0.2, c=-0.1, height=h, width=w, points=10, windows=10)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = 0.5 + 0.2 * (xx + 0.5 - w / 2) / w - 0.1 * (yy + 0.5 - h / 2) / h
    flat = scene + t.offset(0, h, 0, w)
    np.testing.assert_allclose(flat, 0.5, atol=1e-6)
    # a window's offset is the same slice of the whole scene's
    np.testing.assert_array_equal(t.offset(10, 30, 100, 180), t.offset(0, h, 0, w)[10:30, 100:180])
    assert t.offset(0, 1, 0, 1).dtype == np.float32 and t.span == pytest.approx(0.3)
    d = t.as_dict(40.0)
    assert d["applied"] and d["across_columns_db"] == pytest.approx(8.0) and d["across_rows_db"] == -4.0


def test_too_few_windows_give_no_trend() -> None:
    rows, cols, vals = _points(0.1, 0.0)
    assert level.fit_trend(rows[:5], cols[:5], vals[:5], 2000, 8000) is None
    vals[:] = np.nan
    assert level.fit_trend(rows, cols, vals, 2000, 8000) is None


def test_window_grid_stays_inside_the_scene() -> None:
    wins = level.window_grid(1500, 30000)
    assert len(wins) == 144
    assert all(0 <= y0 < y1 <= 1500 and 0 <= x0 < x1 <= 30000 and y1 - y0 == 64 for y0, y1, x0, x1 in wins)
    small = level.window_grid(40, 1000)  # windows shrink to the scene; rows collapse to one
    assert {(y0, y1) for y0, y1, _, _ in small} == {(0, 40)}


def test_window_median_needs_a_quarter_valid() -> None:
    u = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    ok = np.zeros((10, 10), bool)
    ok[:2] = True  # 20 %
    assert np.isnan(level.window_median(u, ok))
    ok[:3] = True  # 30 %
    assert level.window_median(u, ok) == pytest.approx(float(np.median(u[:3])))


def test_target_moves_the_level_and_keeps_the_flattening() -> None:
    h, w = 64, 256
    t = level.LevelTrend(b=0.2, c=-0.1, height=h, width=w, points=10, windows=10, a=0.6, target=0.45)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = 0.6 + 0.2 * (xx + 0.5 - w / 2) / w - 0.1 * (yy + 0.5 - h / 2) / h
    np.testing.assert_allclose(scene + t.offset(0, h, 0, w), 0.45, atol=1e-6)
    d = t.as_dict(40.0)
    assert d["level"] == 0.6 and d["target_level"] == 0.45 and d["level_shift_db"] == pytest.approx(-6.0)
    assert "target_level" not in level.LevelTrend(0.0, 0.0, h, w, 10, 10, a=0.6).as_dict(40.0)


def test_fit_returns_the_level_and_can_fit_it_alone() -> None:
    rows, cols, vals = _points(-0.2, 0.05)
    assert level.fit_trend(rows, cols, vals, 2000, 8000).a == pytest.approx(0.5, abs=0.005)
    flat = level.fit_trend(rows, cols, vals, 2000, 8000, tilt=False)
    assert flat.b == 0.0 and flat.c == 0.0 and flat.a == pytest.approx(0.5, abs=0.01)


def test_fit_scene_matches_the_level_of_small_scenes_but_does_not_tilt_them() -> None:
    yy, xx = np.mgrid[0:512, 0:512]
    unit = (0.6 + 0.1 * (xx - 256) / 512).astype(np.float32)

    def window(y0: int, y1: int, x0: int, x1: int):
        return unit[y0:y1, x0:x1], np.ones((y1 - y0, x1 - x0), bool)

    assert level.fit_scene(512, 512, window) == (None, f"scene under {level.MIN_FLATTEN_SIDE} px")
    t, why = level.fit_scene(512, 512, window, target=0.435)
    assert why is None and t.b == 0.0 and t.target == 0.435 and t.a == pytest.approx(0.6, abs=0.005)
    np.testing.assert_allclose((unit + t.offset(0, 512, 0, 512)).mean(), 0.435, atol=0.005)


def test_sea_level_comes_from_the_model_or_sos() -> None:
    assert level.sea_level_of(None) == level.SOS_SEA_LEVEL
    assert level.sea_level_of({"median_p01": 0.1, "median_p99": 0.7}) == level.SOS_SEA_LEVEL
    assert level.sea_level_of({"sea_level": 0.5}) == 0.5


SOS_SENTINEL = SHARED / "sos" / "train" / "sentinel"


@pytest.mark.skipif(not SOS_SENTINEL.is_dir(), reason="../shared/data/sos not present")
def test_sos_sea_level_is_the_sentinel_training_patches_sea() -> None:
    from PIL import Image

    meds = []
    for f in sorted(SOS_SENTINEL.glob("*_sat.jpg")):
        im = np.asarray(Image.open(f).convert("L"), np.float32) / 255.0
        sea = np.asarray(Image.open(f.with_name(f.name.replace("_sat.jpg", "_mask.png"))).convert("L")) <= 127
        if sea.sum() > 500:
            meds.append(np.median(im[sea]))
    assert len(meds) > 900
    assert float(np.median(meds)) == pytest.approx(level.SOS_SEA_LEVEL, abs=0.005)
