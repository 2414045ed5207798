"""GCPs in a projected CRS are interpolated in that CRS (as GDAL and QGIS map the class map that keeps
them), then taken to longitude/latitude; GCPs in EPSG:4326 keep their interpolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from dakd_edge.data.landmask import make_georef
from dakd_edge.inference.geotiff import SceneInfo
from dakd_edge.inference.readers import GDAL_CENTRE, georef_of, shift_gcps, world_of
from dakd_edge.inference.report import output_crs

N = 2048  # pixels a side, 30 m, rotated 20 degrees in UTM 33N


def _truth() -> Affine:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(12.5, 40.5)
    return Affine.translation(x, y) * Affine.rotation(20) * Affine.scale(30, -30)


def _info(pts: list[tuple[float, float]], aff: Affine, crs: str) -> SceneInfo:
    gcps = tuple(GroundControlPoint(row=r, col=c, x=(aff * (c, r))[0], y=(aff * (c, r))[1]) for r, c in pts)
    return SceneInfo(
        Path("s.tif"), N, N, (1,), "uint8", None, None, Affine.identity(), True,
        gcps=gcps, gcps_crs=CRS.from_user_input(crs),
    )  # fmt: skip


@pytest.mark.parametrize(
    "pts",
    [[(0, 0), (0, N), (N, 0)], [(0, 0), (0, N), (N, 0), (N, N)]],
    ids=["3 GCPs", "4 GCPs"],
)
def test_sparse_utm_gcps_map_as_gdal_does(pts: list[tuple[float, float]]) -> None:
    """Pixel corners land where the GCPs' affine (GDAL's first-order polynomial) puts them, in metres
    and in lon/lat (were up to 13.4 px (402 m) off with 3 GCPs, interpolated in lon/lat)."""
    aff = _truth()
    info = _info(pts, aff, "EPSG:32633")
    rng = np.random.default_rng(0)
    cols, rows = rng.uniform(0, N, (2, 500))
    to_world, crs = world_of(info)
    assert crs == CRS.from_epsg(32633)
    x, y = to_world(cols, rows)
    tx, ty = aff * (cols, rows)
    assert np.hypot(x - tx, y - ty).max() < 1e-3  # metres (30 m pixels)
    georef = georef_of(info)  # pixel indices: centre-based
    lon, lat = georef.lonlat(rows - GDAL_CENTRE, cols - GDAL_CENTRE)
    elon, elat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(tx, ty)
    assert np.abs(lon - elon).max() < 1e-8 and np.abs(lat - elat).max() < 1e-8  # < 1 mm
    r, c = georef.rowcol(elon, elat)
    assert np.abs(r + GDAL_CENTRE - rows).max() < 1e-6 and np.abs(c + GDAL_CENTRE - cols).max() < 1e-6
    assert georef.pixel_size_m == pytest.approx((30.0, 30.0), rel=1e-9)


def test_dense_wgs84_grid_is_unchanged() -> None:
    """A Sentinel-1-like geolocation grid in EPSG:4326 still goes through the lon/lat grid georeference."""
    aff = Affine(0.00012, 0.00003, 12.5, 0.00002, -0.0001, 40.5)
    v = np.linspace(0, N, 11)
    info = _info([(r, c) for r in v for c in v], aff, "EPSG:4326")
    ref = make_georef(gcps=list(shift_gcps(info.gcps, -GDAL_CENTRE)), crs=info.gcps_crs)
    rows, cols = np.random.default_rng(1).uniform(0, N, (2, 500))
    lon, lat = georef_of(info).lonlat(rows, cols)
    rlon, rlat = ref.lonlat(rows, cols)
    assert np.abs(lon - rlon).max() <= 1e-9 and np.abs(lat - rlat).max() <= 1e-9


def test_output_crs_names_the_gcps_crs() -> None:
    """The class map keeps the GCPs in their own CRS: the report names it (said EPSG:4326)."""
    utm = _info([(0, 0), (0, N), (N, 0)], _truth(), "EPSG:32633")
    assert output_crs(utm, False, CRS.from_epsg(32633))["rasters"] == "EPSG:32633 (GCPs)"
    aff = Affine(0.0001, 0, 12.5, 0, -0.0001, 40.5)
    wgs = _info([(0, 0), (0, N), (N, 0)], aff, "EPSG:4326")
    assert output_crs(wgs, False, CRS.from_epsg(32633))["rasters"] == "EPSG:4326 (GCPs)"


def test_collinear_projected_gcps_fall_back_to_lonlat() -> None:
    """Three collinear UTM GCPs: GDAL cannot fit its polynomial ('Transform is not solvable', which
    stopped the run after inference as a write error); they are read in lon/lat, as before."""
    from dakd_edge.data.landmask import GCPGeoref
    from dakd_edge.inference.readers import gcp_georef

    aff = _truth()
    info = _info([(0, 0), (N // 2, N // 2), (N, N)], aff, "EPSG:32633")
    georef = gcp_georef(list(info.gcps), info.gcps_crs)
    assert isinstance(georef, GCPGeoref)
    lon, lat = georef.lonlat(np.array([10.0]), np.array([10.0]))
    assert np.isfinite(lon).all() and np.isfinite(lat).all()


def test_many_projected_gcps_follow_gdal_s_polynomial() -> None:
    """From 6 GCPs GDAL draws a GCP raster with its order-2 polynomial (order 3 from 10), not a thin-plate
    spline: polygons must land where QGIS draws the class map."""
    from rasterio.transform import GCPTransformer

    aff = _truth()
    pts = [
        (0, 0),
        (0, N),
        (N, 0),
        (N, N),
        (N // 2, N // 3),
        (N // 3, N // 2),
        (N // 4, 3 * N // 4),
        (3 * N // 4, N // 5),
    ]
    info = _info(pts, aff, "EPSG:32633")
    gcps = list(info.gcps)
    gcps[4] = type(gcps[4])(
        row=gcps[4].row, col=gcps[4].col, x=gcps[4].x + 40.0, y=gcps[4].y - 25.0
    )  # not a plane
    rng = np.random.default_rng(1)
    rows, cols = rng.uniform(0, N, (2, 200))
    ours = georef_of(
        SceneInfo(
            Path("s.tif"),
            N,
            N,
            (1,),
            "uint8",
            None,
            None,
            Affine.identity(),
            True,
            gcps=tuple(gcps),
            gcps_crs=info.gcps_crs,
        )  # fmt: skip
    )
    x, y = ours.xy(rows - GDAL_CENTRE, cols - GDAL_CENTRE)
    gx, gy = GCPTransformer(gcps).xy(rows, cols, offset="ul")
    assert np.hypot(x - np.asarray(gx), y - np.asarray(gy)).max() < 1e-6


def test_gcps_on_two_rows_stay_in_their_crs() -> None:
    """Second review: 6 GCPs on two rows defeat GDAL's order-2 polynomial; they fell back to lon/lat
    (1.2 px off on an 8192 px scene): a spline in the GCPs' own CRS keeps them exact."""
    aff = _truth()
    pts = [(0, 0), (0, N // 2), (0, N), (N, 0), (N, N // 2), (N, N)]
    info = _info(pts, aff, "EPSG:32633")
    to_world, _ = world_of(info)
    rng = np.random.default_rng(2)
    cols, rows = rng.uniform(0, N, (2, 300))
    x, y = to_world(cols, rows)
    tx, ty = aff * (cols, rows)
    assert np.hypot(x - tx, y - ty).max() < 1e-3
