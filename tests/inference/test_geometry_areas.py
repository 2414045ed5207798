"""Areas on the ellipsoid: polygons (``Measurer``) and the report's oil area (``Tally``) in CRSs whose
angular unit is not the degree, on rotated geographic grids and in Web Mercator. Expected values are
``pyproj.Geod`` areas of every pixel's corners taken to longitude/latitude in degrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.crs import GeographicCRS
from rasterio.crs import CRS as RCRS

from dakd_edge.inference.geotiff import SceneInfo
from dakd_edge.inference.report import Tally
from dakd_edge.inference.vectorize import Measurer


def _info(crs: str, transform: Affine, h: int, w: int) -> SceneInfo:
    return SceneInfo(Path("s.tif"), h, w, (1,), "uint8", None, RCRS.from_user_input(crs), transform, True)


def _geod_pixels(crs: str, transform: Affine, rows: np.ndarray, cols: np.ndarray) -> float:
    """Sum of the geodesic areas of pixels (rows, cols), their corners in degrees on the CRS's ellipsoid."""
    c = CRS.from_user_input(crs)
    geo = c if c.is_geographic else c.geodetic_crs
    to_deg = Transformer.from_crs(c, GeographicCRS(datum=geo.datum.to_json_dict()), always_xy=True)
    geod = c.get_geod()
    total = 0.0
    for r, k in zip(rows.tolist(), cols.tolist(), strict=True):
        x, y = transform * (np.array([k, k + 1, k + 1, k]), np.array([r, r, r + 1, r + 1]))
        lon, lat = to_deg.transform(x, y)
        total += abs(geod.polygon_area_perimeter(lon, lat)[0])
    return total


def _tally_area(info: SceneInfo, oil: np.ndarray) -> float:
    t = Tally(2, [1], info)
    t.add(oil.astype(np.uint8), 0, 0)
    return float(t.oil_area)


def test_in_degrees_converts_grads_only() -> None:
    from dakd_edge.inference.vectorize import in_degrees

    assert in_degrees(CRS.from_epsg(4326)) == CRS.from_epsg(4326)
    deg = in_degrees(CRS.from_epsg(4807))  # NTF (Paris), grads
    lon, lat = Transformer.from_crs(CRS.from_epsg(4807), deg, always_xy=True).transform(0.1, 52.0)
    assert (lon, lat) == pytest.approx((0.09, 46.8), abs=1e-12)


@pytest.mark.parametrize(
    ("crs", "transform"),
    [
        ("EPSG:4807", Affine(0.0005, 0, -6.15, 0, -0.0005, 52.11)),  # geographic, grads (was +11.1 %)
        ("EPSG:27572", Affine(30, 0, 120000, 0, -30, 2330000)),  # Lambert II on NTF (Paris, grads)
    ],
)
def test_grads_areas_are_on_the_ellipsoid_in_degrees(crs: str, transform: Affine) -> None:
    """Polygons and the report's oil area in CRSs whose angular unit is the grad (were 11.1 % too large
    for polygons, and the report off by -0.87 % (EPSG:27572) to +11.1 % (EPSG:4807))."""
    oil = np.zeros((8, 8), bool)
    oil[2:6, 1:7] = True
    rows, cols = np.nonzero(oil)
    expected = _geod_pixels(crs, transform, rows, cols)
    ring = [transform * p for p in [(1, 2), (7, 2), (7, 6), (1, 6), (1, 2)]]
    area, _ = Measurer(crs)([ring])
    assert area == pytest.approx(expected, rel=1e-7)
    assert _tally_area(_info(crs, transform, 8, 8), oil) == pytest.approx(expected, rel=1e-7)


def test_rotated_geographic_oil_area_per_pixel() -> None:
    """EPSG:4326, 40 degrees of rotation at 72.5 N: latitude changes along a row, so each pixel has its
    own area (column 0's for the whole row was +0.57 % on a 1024-pixel scene; here +0.55 %)."""
    t = Affine.translation(20.0, 72.5) * Affine.rotation(40) * Affine.scale(0.003, -0.001)
    oil = np.zeros((16, 64), bool)
    oil[3:12, 40:64] = True  # far from column 0
    rows, cols = np.nonzero(oil)
    expected = _geod_pixels("EPSG:4326", t, rows, cols)
    assert _tally_area(_info("EPSG:4326", t, 16, 64), oil) == pytest.approx(expected, rel=1e-6)


def test_rotated_geographic_area_by_cells_matches_pixel_by_pixel() -> None:
    """Fine rotated grids are measured per cell of up to 64 pixels at the oil's mean latitude (the
    element per pixel took 2.1 s per strip of an all-oil 26000-pixel-wide scene): within 1e-8 of the
    element summed pixel by pixel, for patchy oil and 10 m to 100 m pixels."""
    from dakd_edge.inference.report import _GeographicArea

    rng = np.random.default_rng(4)
    oil = rng.random((300, 520)) < 0.3
    oil[:, 200:260] = True
    rows, cols = np.nonzero(oil)
    for px in (1e-4, 1e-3):
        t = Affine.translation(20.0, 72.5) * Affine.rotation(40) * Affine.scale(px, -px)
        g = _GeographicArea(t, RCRS.from_epsg(4326))
        lat = np.radians(t.d * (cols + 5.5) + t.e * (rows + 7.5) + t.f)
        exact = float(g._per_rad2(lat).sum()) * abs(t.a * t.e - t.b * t.d) * g.rad**2
        assert g(oil, 7, 5) == pytest.approx(exact, rel=1e-8)
        assert g(np.zeros_like(oil), 7, 5) == 0.0


def test_web_mercator_oil_area_on_the_ellipsoid() -> None:
    """EPSG:3857 at 61 N: PROJ's areal scale is on the sphere, 0.36 % off the WGS84 ellipsoid that the
    polygons are measured on (was -0.35 %)."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(3.0, 61.0)
    t = Affine(20, 0, x, 0, -20, y)
    oil = np.ones((64, 64), bool)
    rows, cols = np.nonzero(oil)
    expected = _geod_pixels("EPSG:3857", t, rows, cols)
    assert _tally_area(_info("EPSG:3857", t, 64, 64), oil) == pytest.approx(expected, rel=1e-6)
    ring = [t * p for p in [(0, 0), (64, 0), (64, 64), (0, 64), (0, 0)]]
    assert Measurer("EPSG:3857")([ring])[0] == pytest.approx(expected, rel=1e-6)
