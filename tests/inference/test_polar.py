"""Sentinel-1 scenes at high latitudes (Svalbard, the Northern Sea Route, near the North Pole, the
Southern Ocean), against an exact reference computed independently with pyproj: the GCP georeference
(bilinear in lon/lat bends by 2-50 pixels there on a real-sized EW grid), polygons, areas and
``--geocode`` of a small crop of such a product, the GLOBE land mask, and a scene around the pole."""

from __future__ import annotations

import json
import math
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod, Transformer
from rasterio.control import GroundControlPoint

from dakd_edge.data.landmask import GCPGeoref, GlobeLandSource, LandMasker
from dakd_edge.data.rasterinfo import lon_lat_bounds
from dakd_edge.data.sentinel1 import (
    EARTH_M_PER_DEG_,
    build_synthetic_product,
    open_product,
    parse_geolocation_grid,
    write_minimal_safe,
)
from dakd_edge.inference.segment import segment_scene
from dakd_edge.lonlat import geojson_geometry
from tests.inference.test_sentinel1_segment import _pred

shapely = pytest.importorskip("shapely")

GEOD = Geod(ellps="WGS84")
EW = (10400, 10000, 40.0)  # lines, samples, metres: an EW GRDM product (its 10 x 21 grid: 47 x 20 km cells)
CROP = (160, 240)
SQUARE = (60, 100, 90, 150)  # dark rows, cols in the crop (40 x 60 px)


class Truth:
    """The generator's geometry, independently: its plane (lines along the heading, pixels to the right,
    ``ps`` metres apart) through pyproj's azimuthal equidistant map on its sphere."""

    def __init__(self, center: tuple[float, float], heading: float, lines: int, samples: int, ps: float):
        self.lines, self.samples, self.ps = lines, samples, ps
        h = math.radians(heading)
        self.along = (math.cos(h), math.sin(h))  # (north, east)
        self.right = (math.cos(h + math.pi / 2), math.sin(h + math.pi / 2))
        crs = f"+proj=aeqd +lat_0={center[0]} +lon_0={center[1]} +R={EARTH_M_PER_DEG_ * 180 / math.pi}"
        self.fwd = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        self.inv = Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    def lonlat(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dl = (np.asarray(rows, float) - (self.lines - 1) / 2) * self.ps
        dp = (np.asarray(cols, float) - (self.samples - 1) / 2) * self.ps
        east, north = dl * self.along[1] + dp * self.right[1], dl * self.along[0] + dp * self.right[0]
        lon, lat = self.fwd.transform(east, north)
        return np.asarray(lon), np.asarray(lat)

    def rowcol(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, n = (np.asarray(v) for v in self.inv.transform(lon, lat))
        dl, dp = n * self.along[0] + e * self.along[1], n * self.right[0] + e * self.right[1]
        return dl / self.ps + (self.lines - 1) / 2, dp / self.ps + (self.samples - 1) / 2


def _ew(root: Path, center: tuple[float, float], heading: float) -> tuple[Path, Truth]:
    """A real-sized EW product's XML (no measurement: cheap) and its exact geometry."""
    lines, samples, ps = EW
    safe = write_minimal_safe(root, lines, samples, mode="EW", pixel_spacing=ps, pols=("HH", "HV"),
                              center=center, heading_deg=heading)  # fmt: skip
    return safe, Truth(center, heading, lines, samples, ps)


def _georef(safe: Path) -> GCPGeoref:
    ann = next((safe / "annotation").glob("*-hh-*.xml"))
    g = parse_geolocation_grid(ET.parse(ann).getroot(), str(ann))
    gcps = [
        GroundControlPoint(row=r, col=c, x=x, y=y)
        for r, c, x, y in zip(g.lines, g.pixels, g.lon, g.lat, strict=True)
    ]
    return GCPGeoref(gcps, pixel_size_m=(EW[2], EW[2]))


@pytest.mark.parametrize(
    ("center", "heading"),
    [
        ((78.0, 15.0), -166.0),
        ((85.0, -30.0), -100.0),
        ((87.0, 100.0), -166.0),
        ((-70.0, 20.0), -100.0),
        ((-78.0, -170.0), -166.0),
    ],  # fmt: skip
)
def test_gcp_georef_accurate_near_poles(tmp_path: Path, center: tuple[float, float], heading: float) -> None:
    """Between the grid points of a real-sized EW grid, lon/lat and its inverse are exact to 0.05 px
    (bilinear in lon/lat was 3.3 px off at 70 S, 6 at 78 N, 20 at 85 N, 40 at 87 N), the inverse
    converges everywhere, -78 S across 180 included."""
    safe, truth = _ew(tmp_path, center, heading)
    g = _georef(safe)
    assert g.spherical
    rr, cc = np.meshgrid(np.linspace(0, EW[0] - 1, 61), np.linspace(0, EW[1] - 1, 61), indexing="ij")
    lon, lat = g.lonlat(rr, cc)
    tlon, tlat = truth.lonlat(rr, cc)
    assert GEOD.inv(lon, lat, tlon, tlat)[2].max() < 0.05 * EW[2]
    r, c = g.rowcol(tlon, tlat)
    assert np.hypot(r - rr, c - cc).max() < 0.05
    r2, c2 = g.rowcol(*g.lonlat(rr, cc, wrap=False))  # forward and inverse agree
    assert np.hypot(r2 - rr, c2 - cc).max() < 1e-6


def test_mid_latitude_georef_unchanged(tmp_path: Path) -> None:
    """An IW scene at 42 N keeps plain bilinear lon/lat (the grid bends by well under a pixel)."""
    safe = write_minimal_safe(tmp_path, 16705, 26102, center=(41.8, 13.6), pols=("HH", "HV"))
    g = _georef(safe)
    assert not g.spherical
    ur, uc, LON, LAT = g.grid
    t, u = 0.37, 0.61
    r = ur[3] + t * (ur[4] - ur[3])
    c = uc[7] + u * (uc[8] - uc[7])
    want = [
        (1 - t) * ((1 - u) * V[3, 7] + u * V[3, 8]) + t * ((1 - u) * V[4, 7] + u * V[4, 8])
        for V in (LON, LAT)
    ]
    lon, lat = g.lonlat(np.array([r]), np.array([c]))
    assert abs(lon[0] - want[0]) < 1e-12 and abs(lat[0] - want[1]) < 1e-12


def _crop(
    root: Path, center: tuple[float, float], heading: float, offset: tuple[int, int]
) -> tuple[Path, Truth]:
    """A 160 x 240 px crop (at ``offset``) of a real-sized EW product: the crop's own grid comes from the
    whole product's, uniform sea (sigma0 0.1) with a dark 40 x 60 px square (0.002)."""
    src, truth = _ew(root / "src", center, heading)
    p = build_synthetic_product(root / "crop", source=src, shape=CROP, offset=offset, seed=0, pols=("HH",))
    with open_product(p.path) as prod:
        a = prod.calibration.window(0, prod.height, 0, prod.width)
    sigma0 = np.full(a.shape, 0.1)
    r0, r1, c0, c1 = SQUARE
    sigma0[r0:r1, c0:c1] = 0.002
    with rasterio.open(next((p.path / "measurement").glob("*-hh-*.tiff")), "r+") as ds:
        ds.write(np.clip(np.rint(np.sqrt(sigma0) * a), 1, 65535).astype(np.uint16), 1)
    return p.path, truth


def _square(truth: Truth, offset: tuple[int, int], n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The dark square's outline (pixel edges; pixel i spans i - 0.5 .. i + 0.5 in the grid's
    line/pixel, which ESA's annotation gives at pixel centres)."""
    r0, r1, c0, c1 = (v - 0.5 for v in SQUARE)
    e = np.linspace(0, 1, n, endpoint=False)
    rr = np.r_[np.full(n, r0), r0 + e * (r1 - r0), np.full(n, r1), r1 - e * (r1 - r0)] + offset[0]
    cc = np.r_[c0 + e * (c1 - c0), np.full(n, c1), c1 - e * (c1 - c0), np.full(n, c0)] + offset[1]
    return truth.lonlat(rr, cc)


def test_segment_near_north_pole(tmp_path: Path) -> None:
    """A crop of an EW product at 85 N (grid cells 47 x 20 km): the GeoJSON slick lies on the true
    square (IoU > 0.99; it was 0.81, 231 m off), its ``area_m2`` is the geodesic area to 0.1 % (it
    was 0.6 % short), the GeoPackage is in the UTM zone of the scene centre (which distorts areas by
    at most 0.1 % across a whole 400 km EW scene, even at the pole: UPS or polar stereographic
    distort by 1-6 %), and ``--geocode`` places the square within a pixel."""
    offset = (4700, 5100)
    safe, truth = _crop(tmp_path, (85.0, -30.0), -100.0, offset)
    kw = dict(land_mask="none", min_area="100px")
    segment_scene(_pred(), safe, tmp_path / "c.tif", vector=tmp_path / "v.geojson", **kw)
    segment_scene(_pred(), safe, tmp_path / "g.tif", vector=tmp_path / "v.gpkg", geocode=True, **kw)
    (f,) = json.loads((tmp_path / "v.geojson").read_text())["features"]
    tlon, tlat = _square(truth, offset)
    clon, clat = tlon.mean(), tlat.mean()
    local = Transformer.from_crs("EPSG:4326", f"+proj=aeqd +lat_0={clat} +lon_0={clon}", always_xy=True)
    want = shapely.Polygon(np.c_[local.transform(tlon, tlat)])
    ring = np.asarray(f["geometry"]["coordinates"][0])
    got = shapely.Polygon(np.c_[local.transform(ring[:, 0], ring[:, 1])])
    assert got.intersection(want).area / got.union(want).area > 0.99
    assert got.centroid.distance(want.centroid) < 2.0
    true_area = abs(GEOD.polygon_area_perimeter(tlon, tlat)[0])
    assert f["properties"]["area_m2"] == pytest.approx(true_area, rel=1e-3)
    con = sqlite3.connect(tmp_path / "v.gpkg")
    try:
        (srs,) = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()
    finally:
        con.close()
    assert srs == 32626  # UTM zone of -30.x E, north
    with rasterio.open(tmp_path / "g.tif") as ds:
        oil = ds.read(1) == 1
        T, crs = ds.transform, ds.crs
    assert crs.to_epsg() == 32626
    ys, xs = np.nonzero(oil)
    x, y = T * (xs.mean() + 0.5, ys.mean() + 0.5)
    tx, ty = Transformer.from_crs("EPSG:4326", "EPSG:32626", always_xy=True).transform(clon, clat)
    assert math.hypot(x - tx, y - ty) < EW[2]


def test_land_mask_svalbard(tmp_path: Path) -> None:
    """Svalbard (79.5 N): the GLOBE mask of a window is the GLOBE grid at the true position of each
    pixel (coasts were a few pixels off: 0.6 % of the pixels disagreed)."""
    safe, truth = _ew(tmp_path, (79.5, 20.0), -100.0)
    masker = LandMasker(_georef(safe), EW[0], EW[1], coast_buffer=0.0)
    y0, x0, n = 3000, 3000, 4000
    got = masker.mask(y0, y0 + n, x0, x0 + n)[::20, ::20]
    rr, cc = np.meshgrid(np.arange(y0, y0 + n, 20), np.arange(x0, x0 + n, 20), indexing="ij")
    src = GlobeLandSource()
    lon, lat = truth.lonlat(rr, cc)
    ri = src._row_index(lat)
    src.load_rows(int(ri.min()), int(ri.max()) + 1)
    want = src.is_land(lon, lat)
    assert 0.3 < want.mean() < 0.9  # land and sea
    assert np.mean(got != want) < 5e-4


def test_scene_around_the_pole(tmp_path: Path) -> None:
    """An EW product whose footprint encloses the North Pole, and a slick on the pole in a crop of it:
    the footprint's bounds reach 90 N across every longitude, the slick's GeoJSON is one valid polygon
    closed along 90 N (not a band of garbage at 89.99 N), its ``area_m2`` the geodesic area, ``--geocode``
    covers the crop."""
    center, heading = (88.5, 0.0), -100.0
    lines, samples, ps = EW
    src, truth = _ew(tmp_path / "src", center, heading)
    ann = next((src / "annotation").glob("*-hh-*.xml"))
    ring = parse_geolocation_grid(ET.parse(ann).getroot(), str(ann)).outer_ring()
    west, south, east, north = lon_lat_bounds(ring)
    assert (west, east, north) == (-180.0, 180.0, 90.0) and 85.5 < south < 86.5
    pr, pc = truth.rowcol(np.array([0.0]), np.array([90.0]))
    offset = (int(pr[0]) - 80, int(pc[0]) - 120)  # the pole at the square's centre
    safe, truth = _crop(tmp_path, center, heading, offset)
    with open_product(safe) as p:  # `info`'s footprint of the crop around the pole: closed along 90 N
        wkt, low = p.meta.footprint_wkt(), min(lat for _, lat in p.meta.footprint)
    foot = shapely.from_wkt(wkt)
    assert wkt.startswith("POLYGON") and foot.is_valid
    assert foot.bounds == pytest.approx((-180, low, 180, 90))
    report = segment_scene(_pred(), safe, tmp_path / "c.tif", vector=tmp_path / "v.geojson", land_mask="auto",
                           min_area="100px", geocode=True)  # fmt: skip
    (f,) = json.loads((tmp_path / "v.geojson").read_text())["features"]
    geom = shapely.geometry.shape(f["geometry"])
    assert f["geometry"]["type"] == "Polygon" and geom.is_valid
    assert f["bbox"][0] == -180.0 and f["bbox"][2] == 180.0 and f["bbox"][3] == 90.0
    tlon, tlat = _square(truth, offset)
    true_area = abs(GEOD.polygon_area_perimeter(tlon, tlat)[0])
    assert f["properties"]["area_m2"] == pytest.approx(true_area, rel=2e-3)
    assert report["land_mask"]["tiles_skipped"] == 0
    with rasterio.open(tmp_path / "c.tif") as ds:
        valid = int((ds.read(1) != ds.nodata).sum())
    assert abs(valid - CROP[0] * CROP[1]) < 0.02 * CROP[0] * CROP[1]


def test_ring_around_pole_units() -> None:
    """A ring winding once around either pole becomes one polygon closed along +-90, whichever vertex
    it starts at and whichever way it winds; geodesic area that of the cap."""
    for start in (0.0, 5.0, 180.0):
        t = np.linspace(0, 360, 721)[:-1] + start  # 0.5 degree edges: lon/lat chords are geodesics
        ring = np.c_[(t + 180) % 360 - 180, np.full(t.size, 89.0)]
        ring = np.vstack([ring, ring[:1]])
        for r, sign in ((ring, 1), (ring[::-1], 1), (ring * [1, -1], -1)):
            geom, box = geojson_geometry([r])
            assert geom["type"] == "Polygon" and shapely.geometry.shape(geom).is_valid
            assert box[0] == -180.0 and box[2] == 180.0 and (box[3] if sign > 0 else box[1]) == 90.0 * sign
            ext = np.asarray(geom["coordinates"][0])
            cap = abs(GEOD.polygon_area_perimeter(r[:, 0], r[:, 1])[0])
            assert abs(GEOD.polygon_area_perimeter(ext[:, 0], ext[:, 1])[0]) == pytest.approx(cap, rel=1e-6)
