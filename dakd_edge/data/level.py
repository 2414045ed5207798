"""The smooth backscatter trend of a scene, and the offset that removes it (``segment --flatten``, opt-in).

Sea backscatter falls with incidence angle: across a Sentinel-1 IW swath (30-46 degrees) the VV sea
is some 8 dB darker in far range than in near range, at one wind speed. Through the fixed
-35..+5 dB input stretch that is 0.2 of unit luminance, and the bundled model reads absolute darkness
as oil (``benchmarks/level.py``: a whole-patch shift of 0.1 costs it up to 11 mIoU). With ``--flatten``
the scene is flattened before it is tiled: a plane ``a + b x + c y`` in unit luminance is fitted to the
medians of windows spread over the scene's valid sea pixels (robustly: windows holding slicks, ships
or leftover land are trimmed), and its tilt is subtracted, so that every tile sees the sea at the
scene's mean level. The level itself is kept: only the trend goes.

A plane, not the annotated incidence angles, so that it serves any calibrated GeoTIFF as well as a
GRD product (whose incidence angle is close to linear in the column), and follows a wind gradient too.
numpy only (used by the torch-free runtime).

Off by default: the mean level it keeps is not the level the model reads best. On three 256 km wide
synthetic scenes (``benchmarks/flatten.py``) it stopped the bundled model calling look-alikes oil on
one (+14 mIoU) but, on the other two, lifted the far-range sea so that slicks there were no longer
dark enough (-14 and -4 mIoU).

``segment --match-level`` (also off by default) moves the fitted level too, to the training images'
sea level (:data:`SOS_SEA_LEVEL`): calibrated sea read through the fixed dB stretch sits ~6 dB brighter
than SOS sea. It makes the model's output independent of a scene's level, but the fitted level of a
scene rich in slicks is pulled down by them (window medians of oil), so such scenes are brightened
and their slicks missed; see the README for the measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# The smallest scene side (pixels) worth flattening: over a 1024 px / 10 km scene the incidence
# trend is ~0.3 dB, below what window medians resolve against wind and slicks.
MIN_FLATTEN_SIDE = 1024
MIN_POINTS = 6  # window medians needed for a fit (three parameters, half may be trimmed)
TRIM_MAD = 2.5  # windows further than this many robust sigmas from the plane are left out
TRIM_ROUNDS = 3
# The training sea level (unit luminance) ``--match-level`` moves a scene's sea to: the median over the
# SOS Sentinel-1 training patches of each patch's median sea luminance (its mask's background; 985 of
# the 1000 patches have enough sea), measured once over ../shared/data/sos/train/sentinel (ALOS-PALSAR:
# 0.518). tests/data/test_level.py recomputes it when the data is present. Sentinel-1's, because
# calibrated input (what the level is matched for) is C-band GRD in practice.
SOS_SEA_LEVEL = 0.435


@dataclass(frozen=True)
class LevelTrend:
    """A fitted plane over a ``height`` x ``width`` scene: level ``a`` at the scene centre, tilt ``b``
    per scene width across columns and ``c`` per scene height down rows, in unit luminance.

    The correction removes the tilt; with ``target`` set it also moves the level ``a`` to ``target``."""

    b: float
    c: float
    height: int
    width: int
    points: int  # windows the fit kept
    windows: int  # windows with enough valid pixels
    a: float = 0.0
    target: float | None = None

    def offset(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The additive unit-luminance correction of window ``[y0:y1, x0:x1]`` (float32, (h, w))."""
        xs = (np.arange(x0, x1, dtype=np.float64) + 0.5 - self.width / 2) / self.width
        ys = (np.arange(y0, y1, dtype=np.float64) + 0.5 - self.height / 2) / self.height
        shift = 0.0 if self.target is None else self.target - self.a
        return (shift - (self.b * xs[None, :] + self.c * ys[:, None])).astype(np.float32)

    @property
    def span(self) -> float:
        """Peak-to-peak of the trend over the scene (unit luminance)."""
        return abs(self.b) + abs(self.c)

    def as_dict(self, db_per_unit: float | None) -> dict[str, Any]:
        """For the report: the trend across columns / rows (and its span) in unit luminance and dB."""
        d: dict[str, Any] = {
            "applied": True,
            "across_columns": round(self.b, 4),
            "across_rows": round(self.c, 4),
            "windows": self.windows,
            "windows_used": self.points,
            "level": round(self.a, 4),
        }
        if self.target is not None:
            d["target_level"] = round(self.target, 4)
        if db_per_unit is not None:
            d["across_columns_db"] = round(self.b * db_per_unit, 2)
            d["across_rows_db"] = round(self.c * db_per_unit, 2)
            if self.target is not None:
                d["level_shift_db"] = round((self.target - self.a) * db_per_unit, 2)
        return d


def sea_level_of(input_stats: dict[str, Any] | None) -> float:
    """The training sea level a model's scenes are matched to: its ``input_stats["sea_level"]`` when
    recorded, else :data:`SOS_SEA_LEVEL` (every bundled and recipe model learnt on SOS)."""
    v = (input_stats or {}).get("sea_level")
    return SOS_SEA_LEVEL if v is None else float(v)


def fit_trend(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, height: int, width: int, tilt: bool = True
) -> LevelTrend | None:
    """Robust plane through window medians ``values`` at centres ``(rows, cols)``; None when fewer
    than :data:`MIN_POINTS` windows are given or stay after trimming. ``tilt=False`` fits the level
    alone (a flat plane)."""
    r, c, v = (np.asarray(a, np.float64).ravel() for a in (rows, cols, values))
    ok = np.isfinite(v)
    r, c, v = r[ok], c[ok], v[ok]
    if v.size < MIN_POINTS:
        return None
    a = np.column_stack([np.ones_like(v), (c - width / 2) / width, (r - height / 2) / height])
    if not tilt:
        a[:, 1:] = 0.0
    keep = np.ones(v.size, bool)
    coef = np.zeros(3)
    for _ in range(TRIM_ROUNDS):
        if keep.sum() < MIN_POINTS:
            return None
        coef, *_ = np.linalg.lstsq(a[keep], v[keep], rcond=None)
        res = v - a @ coef
        # about the kept residuals' median, not zero: the first least-squares plane is pulled by the
        # outliers themselves (slicks in every other window would otherwise trim the sea)
        centre = float(np.median(res[keep]))
        mad = 1.4826 * float(np.median(np.abs(res[keep] - centre)))
        new = np.abs(res - centre) <= TRIM_MAD * max(mad, 1e-4)
        if np.array_equal(new, keep):
            break
        keep = new
    if keep.sum() < MIN_POINTS:
        return None
    b, c_ = (float(coef[1]), float(coef[2])) if tilt else (0.0, 0.0)
    return LevelTrend(b, c_, int(height), int(width), int(keep.sum()), int(v.size), a=float(coef[0]))


def window_grid(height: int, width: int, grid: int = 12, size: int = 64) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` windows ``(y0, y1, x0, x1)`` of ``size`` px spread evenly over the scene."""
    size = min(size, height, width)
    ys = np.unique(np.linspace(0, height - size, grid).astype(int))
    xs = np.unique(np.linspace(0, width - size, grid).astype(int))
    return [(int(y), int(y) + size, int(x), int(x) + size) for y in ys for x in xs]


def fit_scene(
    height: int,
    width: int,
    window: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]],
    target: float | None = None,
) -> tuple[LevelTrend | None, str | None]:
    """The trend of a ``height`` x ``width`` scene, from ``window(y0, y1, x0, x1) -> (unit luminance
    (h, w), valid (h, w))`` over :func:`window_grid`; ``(None, why)`` when it is not fitted.

    ``target``: also move the scene's level there (``--match-level``). Scenes under
    :data:`MIN_FLATTEN_SIDE` keep their tilt but, with a target, still have their level matched."""
    tilt = max(height, width) >= MIN_FLATTEN_SIDE
    if not tilt and target is None:
        return None, f"scene under {MIN_FLATTEN_SIDE} px"
    rows, cols, meds = [], [], []
    for y0, y1, x0, x1 in window_grid(height, width):
        unit, ok = window(y0, y1, x0, x1)
        rows.append((y0 + y1) / 2)
        cols.append((x0 + x1) / 2)
        meds.append(window_median(unit, ok))
    trend = fit_trend(np.array(rows), np.array(cols), np.array(meds), height, width, tilt=tilt)
    if trend is None:
        n = int(np.isfinite(meds).sum())
        return None, f"too little valid sea to fit a trend ({n} windows)"
    return (trend if target is None else replace(trend, target=float(target))), None


def window_median(unit: np.ndarray, valid: np.ndarray, min_valid: float = 0.25) -> float:
    """Median unit luminance of a window's valid pixels (NaN when under ``min_valid`` of it is valid)."""
    vals = unit[valid & np.isfinite(unit)]
    return float(np.median(vals)) if vals.size >= min_valid * unit.size else float("nan")
