"""Land masks (dakd_edge.data.landmask): georeferences, GLOBE / vector / raster sources, coast buffer."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.data.landmask import (
    GLOBE_LAND_WATER,
    GCPGeoref,
    GlobeLandSource,
    LandMasker,
    _clip_ring,
    land_mask,
    make_georef,
)
from dakd_edge.data.sentinel1 import open_product, write_minimal_safe
from dakd_edge.errors import InputError

try:
    GlobeLandSource.package_file()
    HAVE_GLOBE = True
except InputError:
    HAVE_GLOBE = False
needs_globe = pytest.mark.skipif(not HAVE_GLOBE, reason="global-land-mask is not installed")

H, W = 300, 400  # 10 m pixels: 3 x 4 km


def _safe_gcps(tmp_path: Path, **kw):
    import xml.etree.ElementTree as ET

    from rasterio.control import GroundControlPoint

    safe = write_minimal_safe(tmp_path, H, W, pols=("VV",), **kw)
    ann = next((safe / "annotation").glob("s1*.xml"))
    pts = ET.parse(ann).getroot().findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    return [
        GroundControlPoint(
            row=float(e.find("line").text), col=float(e.find("pixel").text),
            x=float(e.find("longitude").text), y=float(e.find("latitude").text),
        )
        for e in pts
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gcps(tmp_path_factory: pytest.TempPathFactory):
    return _safe_gcps(tmp_path_factory.mktemp("lm"))


def _rect_truth(georef, box, shape=(H, W)) -> np.ndarray:
    rr, cc = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    lon, lat = georef.lonlat(rr, cc)
    return (lon >= box[0]) & (lon <= box[2]) & (lat >= box[1]) & (lat <= box[3])


def _rect_distance_m(georef, box, shape=(H, W)) -> np.ndarray:
    rr, cc = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    lon, lat = georef.lonlat(rr, cc, wrap=False)
    lon0, lon1 = box[0], box[2]
    if georef.wrapped:
        lon0, lon1 = georef.unwrap_lon(np.array(lon0)), georef.unwrap_lon(np.array(lon1))
    dx = np.maximum.reduce([lon0 - lon, np.zeros_like(lon), lon - lon1]) * 111320.0 * np.cos(np.radians(lat))
    dy = np.maximum.reduce([box[1] - lat, np.zeros_like(lat), lat - box[3]]) * 111320.0
    return np.hypot(dx, dy)


def _box_in_scene(georef, fr=(0.3, 0.25, 0.7, 0.6)) -> tuple[float, float, float, float]:
    """A lon/lat box spanning fractions of the scene's lon/lat extent."""
    lon, lat = georef.lonlat(np.array([0, 0, H - 1, H - 1.0]), np.array([0, W - 1.0, 0, W - 1]), wrap=False)
    lo0, lo1, la0, la1 = lon.min(), lon.max(), lat.min(), lat.max()
    return (
        lo0 + fr[0] * (lo1 - lo0),
        la0 + fr[1] * (la1 - la0),
        lo0 + fr[2] * (lo1 - lo0),
        la0 + fr[3] * (la1 - la0),
    )


def _geojson(path: Path, boxes) -> Path:
    polys = [[[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]] for b in boxes]
    geom = {"type": "MultiPolygon", "coordinates": polys}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                                           "geometry": geom}]}))  # fmt: skip
    return path


# ---- georeferences -----------------------------------------------------------------------------
def test_gcp_georef_grid_round_trip(gcps) -> None:
    g = make_georef(gcps)
    assert isinstance(g, GCPGeoref) and g.grid is not None and not g.wrapped
    rows = np.array([p.row for p in gcps])
    cols = np.array([p.col for p in gcps])
    lon, lat = g.lonlat(rows, cols)
    np.testing.assert_allclose(lon, [p.x for p in gcps], atol=1e-12)
    np.testing.assert_allclose(lat, [p.y for p in gcps], atol=1e-12)
    rng = np.random.default_rng(0)
    r, c = rng.uniform(-50, H + 50, 500), rng.uniform(-50, W + 50, 500)
    r2, c2 = g.rowcol(*g.lonlat(r, c, wrap=False))
    assert np.abs(r2 - r).max() < 1e-6 and np.abs(c2 - c).max() < 1e-6
    assert g.pixel_size_m == pytest.approx((10.0, 10.0), rel=0.01)


def test_irregular_gcps_use_tps(gcps) -> None:
    sub = [p for i, p in enumerate(gcps) if i % 11 != 3]  # no longer a full grid
    g = make_georef(sub)
    assert g.grid is None
    ref = make_georef(gcps)
    r, c = np.array([10.0, 150.0, 290.0]), np.array([20.0, 200.0, 390.0])
    lon, lat = g.lonlat(r, c)
    lon2, lat2 = ref.lonlat(r, c)
    assert np.abs(lon - lon2).max() * 85000 < 5 and np.abs(lat - lat2).max() * 111000 < 5  # metres
    r3, c3 = g.rowcol(lon, lat)
    np.testing.assert_allclose(r3, r, atol=0.05)
    np.testing.assert_allclose(c3, c, atol=0.05)


def test_affine_georef_and_errors() -> None:
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    g = make_georef(None, CRS.from_epsg(32633), from_origin(290000, 4650000, 10, 10))
    lon, lat = g.lonlat(np.array([0.0]), np.array([0.0]))
    assert 12.0 < lon[0] < 12.8 and 41.8 < lat[0] < 42.1
    r, c = g.rowcol(lon, lat)
    assert abs(r[0]) < 1e-6 and abs(c[0]) < 1e-6
    assert g.pixel_size_m == (10.0, 10.0)
    geo = make_georef(None, CRS.from_epsg(4326), from_origin(12.0, 42.0, 0.001, 0.001))
    assert geo.pixel_size_m[0] == pytest.approx(111.3, rel=0.01) and geo.pixel_size_m[1] < 90
    with pytest.raises(InputError, match="georeferenced"):
        make_georef(None, None, None)
    with pytest.raises(InputError, match="EPSG:4326 expected"):
        make_georef([object()] * 3, CRS.from_epsg(32633))


def test_clip_ring() -> None:
    ring = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], float)
    out = _clip_ring(ring, (2, -5, 5, 5))
    assert out[:, 0].min() == 2 and out[:, 0].max() == 5 and out[:, 1].min() == 0 and out[:, 1].max() == 5
    assert len(_clip_ring(ring, (20, 20, 30, 30))) == 0


# ---- user vector / raster masks ----------------------------------------------------------------
def test_vector_mask_matches_polygon(gcps, tmp_path: Path) -> None:
    g = make_georef(gcps)
    box = _box_in_scene(g)
    path = _geojson(tmp_path / "land.geojson", [box])
    truth = _rect_truth(g, box)
    m = LandMasker(g, H, W, source=path, coast_buffer=0).mask(0, H, 0, W)
    assert 0.05 < truth.mean() < 0.5
    assert (m == truth).mean() > 0.995
    # Windows agree with the whole.
    part = LandMasker(g, H, W, source=path, coast_buffer=0).mask(100, 200, 50, 333)
    np.testing.assert_array_equal(part, m[100:200, 50:333])


@pytest.mark.parametrize("buffer_m", [300.0, 1000.0])
def test_coast_buffer_distance(gcps, tmp_path: Path, buffer_m: float) -> None:
    g = make_georef(gcps)
    box = _box_in_scene(g, (0.4, 0.4, 0.55, 0.55))
    path = _geojson(tmp_path / "land.geojson", [box])
    masker = LandMasker(g, H, W, source=path, coast_buffer=buffer_m)
    m = masker.mask(0, H, 0, W)
    d = _rect_distance_m(g, box)
    tol = 2.0 * masker.buffer_step * 10.0  # two buffer-grid steps (100 m each for a 1000 m buffer)
    assert m[d <= buffer_m - tol].all()
    assert not m[d > buffer_m + tol].any()


@pytest.mark.parametrize("buffer_m", [-1.0, float("nan"), float("inf")])
def test_coast_buffer_must_be_finite(gcps, buffer_m: float) -> None:
    with pytest.raises(InputError, match="coast buffer"):
        LandMasker(make_georef(gcps), H, W, source="globe", coast_buffer=buffer_m)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_raster_mask(gcps, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    g = make_georef(gcps)
    box = _box_in_scene(g)
    res = 0.0002  # ~20 m
    x0, y1 = box[0] - 0.01, box[3] + 0.01
    nx, ny = int((box[2] - x0 + 0.01) / res) + 1, int((y1 - box[1] + 0.01) / res) + 1
    T = from_origin(x0, y1, res, res)
    cx = x0 + (np.arange(nx) + 0.5) * res
    cy = y1 - (np.arange(ny) + 0.5) * res
    arr = (
        (cx[None, :] >= box[0]) & (cx[None, :] <= box[2]) & (cy[:, None] >= box[1]) & (cy[:, None] <= box[3])
    )
    path = tmp_path / "land.tif"
    with rasterio.open(path, "w", driver="GTiff", height=ny, width=nx, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=T, nodata=255) as dst:  # fmt: skip
        dst.write(arr.astype(np.uint8), 1)
    m = LandMasker(g, H, W, source=path, coast_buffer=0).mask(0, H, 0, W)
    assert (m == _rect_truth(g, box)).mean() > 0.99
    with pytest.raises(InputError, match="not found"):
        LandMasker(g, H, W, source=tmp_path / "missing.tif")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", height=4, width=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((4, 4), np.uint8), 1)
    with pytest.raises(InputError, match="no CRS"):
        LandMasker(g, H, W, source=nocrs)


def _wkb_polygon(box) -> bytes:
    ring = [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3]), (box[0], box[1])]
    return (
        struct.pack("<BII", 1, 3, 1)
        + struct.pack("<I", len(ring))
        + b"".join(struct.pack("<dd", *p) for p in ring)
    )


def test_ogr_vector_via_pyogrio(gcps, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    g = make_georef(gcps)
    box = _box_in_scene(g)
    path = tmp_path / "land.gpkg"
    geoms = np.array([_wkb_polygon(box)], dtype=object)
    pyogrio.raw.write(path, geoms, [], [], geometry_type="Polygon", crs="EPSG:4326", driver="GPKG")
    m = LandMasker(g, H, W, source=path, coast_buffer=0).mask(0, H, 0, W)
    ref = LandMasker(g, H, W, source=_geojson(tmp_path / "l.geojson", [box]), coast_buffer=0).mask(0, H, 0, W)
    assert (m == ref).mean() > 0.999


# ---- antimeridian ------------------------------------------------------------------------------
def test_antimeridian(tmp_path: Path) -> None:
    # Scene centred on 180 degrees (Fiji); a land polygon given as two halves either side of it.
    gc = _safe_gcps(tmp_path, center=(-16.5, 179.99))
    lons = np.array([p.x for p in gc])
    assert lons.max() > 179 and lons.min() < -179  # the GCPs straddle the antimeridian
    g = make_georef(gc)
    assert g.wrapped
    lon, lat = g.lonlat(np.array([0.0, H - 1.0]), np.array([0.0, W - 1.0]))
    assert np.all((lon >= -180) & (lon < 180))
    la = (lat.min() + 0.3 * (lat.max() - lat.min()), lat.min() + 0.7 * (lat.max() - lat.min()))
    boxes = [(179.985, la[0], 180.0, la[1]), (-180.0, la[0], -179.99, la[1])]
    path = _geojson(tmp_path / "fiji.geojson", boxes)
    m = LandMasker(g, H, W, source=path, coast_buffer=0).mask(0, H, 0, W)
    rr, cc = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    plon, plat = g.lonlat(rr, cc)
    truth = ((plon >= 179.985) | (plon <= -179.99)) & (plat >= la[0]) & (plat <= la[1])
    assert 0.02 < truth.mean() < 0.6
    assert (m == truth).mean() > 0.995
    if HAVE_GLOBE:  # the GLOBE look-up wraps too (no error, a boolean mask)
        gm = LandMasker(g, H, W).mask(0, H, 0, W)
        assert gm.shape == (H, W) and gm.dtype == bool


@pytest.mark.skipif(not HAVE_GLOBE, reason="global-land-mask is not installed")
def test_globe_names_the_inland_seas_it_counts_as_land(tmp_path: Path) -> None:
    """GLOBE counts the Caspian Sea and the Great Lakes as land: a scene over them ran no tile at all
    and said only "all nodata". The masker names them (segment warns); not the Black Sea, not a
    user mask."""
    for center, expect in (((42.5, 51.0), ["the Caspian Sea"]), ((43.9, -87.0), ["Lake Michigan"]),
                           ((1.68, 30.92), ["Lake Albert"]), ((43.0, 34.0), [])):  # fmt: skip
        g = make_georef(_safe_gcps(tmp_path / f"{center}", center=center))
        masker = LandMasker(g, H, W)
        assert masker.water_counted_as_land() == expect
        assert masker.mask(0, H, 0, W).all() == bool(expect)  # the whole scene is "land" to GLOBE
    path = _geojson(tmp_path / "coast.geojson", [(50.0, 42.0, 50.1, 42.1)])
    assert LandMasker(make_georef(_safe_gcps(tmp_path / "u", center=(42.5, 51.0))), H, W, source=path,
                      coast_buffer=0).water_counted_as_land() == []  # fmt: skip


@pytest.mark.skipif(not HAVE_GLOBE, reason="global-land-mask is not installed")
def test_every_listed_inland_water_point_is_land_to_globe() -> None:
    """Each GLOBE_LAND_WATER point must be land to the GLOBE grid (else it names nothing)."""
    source = GlobeLandSource()
    for name, points in GLOBE_LAND_WATER.items():
        lon, lat = (np.array(v) for v in zip(*points, strict=True))
        assert source.is_land(lon, lat).all(), name


# ---- GLOBE -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def globe_package():
    """global_land_mask itself (loads its 930 MB grid once): the independent reference."""
    if not HAVE_GLOBE:
        pytest.skip("global-land-mask is not installed")
    from global_land_mask import globe

    yield globe


@pytest.mark.slow
def test_globe_source_matches_package(globe_package) -> None:
    rng = np.random.default_rng(1)
    # Latitudes 30-50 N (one band read from the npz), all longitudes, plus the Rome scene's box.
    lat = np.r_[rng.uniform(30.0, 50.0, 3000), rng.uniform(40.5, 43.0, 3000)]
    lon = np.r_[rng.uniform(-180, 179.99, 3000), rng.uniform(11.5, 15.5, 3000)]
    ours = GlobeLandSource().is_land(lon, lat)
    ref = globe_package.is_land(lat, lon)
    np.testing.assert_array_equal(ours, ref)


@needs_globe
def test_affine_scene_near_rome() -> None:
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    # 0.001 deg pixels from 12.0E 42.0N: the Tyrrhenian coast near Civitavecchia/Ostia runs through it.
    m = land_mask(0, 400, 0, 600, crs=CRS.from_epsg(4326), transform=from_origin(12.0, 42.0, 0.001, 0.001),
                  coast_buffer=0)  # fmt: skip
    assert 0.2 < m.mean() < 0.8
    assert m[:50, -50:].all()  # inland north-east (12.55E, 41.97N)
    assert not m[-50:, :50].any()  # open sea south-west (12.02E, 41.62N)


@needs_globe
def test_globe_buffer_grows_land(gcps) -> None:
    # A scene with no land: empty masks; GLOBE cells are loaded once per scene latitude band.
    g = make_georef(gcps)
    masker = LandMasker(g, H, W)
    assert not masker.mask(0, H, 0, W).any()  # 40N 25E: Aegean Sea
    with pytest.raises(InputError, match="coast buffer"):
        LandMasker(g, H, W, coast_buffer=-1)


# ---- the real product near Rome ----------------------------------------------------------------
@needs_globe
def test_real_scene_land_fractions_and_coastline(globe_package, real_s1: Path) -> None:
    from rasterio.transform import GCPTransformer

    with open_product(real_s1) as p:
        gcps, shape = p.gcps, p.shape
        grid = p.grid
    g = make_georef(gcps)
    m0 = LandMasker(g, *shape, coast_buffer=0)
    m1 = LandMasker(g, *shape, coast_buffer=1000)
    # Known areas: the image is descending and right-looking, so column 0 is the east (Adriatic) side.
    areas = {
        "adriatic (upper-left)": ((0, 1500, 0, 2500), 0.0, 0.01),
        "abruzzo/lazio inland (centre)": ((8000, 9000, 12000, 14000), 0.99, 1.0),
        "tyrrhenian (lower-right)": ((15000, 16705, 22000, 26102), 0.0, 0.01),
        "campania inland (lower-left)": ((14000, 16705, 0, 4000), 0.99, 1.0),
    }
    for name, (w, lo, hi) in areas.items():
        assert lo <= m0.fraction(*w) <= hi, name
    # Known places land where the geolocation grid puts them.
    for (lat, lon), land in {(41.9028, 12.4964): True, (41.5, 12.2): False, (42.3, 15.0): False}.items():
        r, c = g.rowcol(np.array([lon]), np.array([lat]))
        r0, c0 = int(round(r[0])), int(round(c[0]))
        assert 0 <= r0 < shape[0] and 0 <= c0 < shape[1]
        assert m0.mask(r0, r0 + 1, c0, c0 + 1)[0, 0] == land, (lat, lon)
    # At every geolocation grid point the mask equals GLOBE at that point's lat/lon (package look-up).
    ref = globe_package.is_land(grid.lat, grid.lon)
    ours = np.array(
        [
            m0.mask(int(r), int(r) + 1, int(c), int(c) + 1)[0, 0]
            for r, c in zip(grid.lines, grid.pixels, strict=True)
        ]
    )
    assert 0.3 < ref.mean() < 0.95
    np.testing.assert_array_equal(ours, ref)
    # Random pixels geolocated by GDAL's thin-plate spline (an independent geolocation): >= 99 % agree.
    rng = np.random.default_rng(3)
    rr, cc = rng.integers(0, shape[0], 1500), rng.integers(0, shape[1], 1500)
    xs, ys = GCPTransformer(gcps, tps=True).xy(rr, cc, offset="ul")
    ref2 = globe_package.is_land(np.asarray(ys), np.asarray(xs))
    ours2 = np.array(
        [m0.mask(int(r), int(r) + 1, int(c), int(c) + 1)[0, 0] for r, c in zip(rr, cc, strict=True)]
    )
    assert (ours2 == ref2).mean() >= 0.99
    # The 1 km buffer only adds sea pixels next to the coast.
    w = (10000, 12000, 20000, 26102)  # the coast south of Rome
    a, b = m0.mask(*w), m1.mask(*w)
    assert (b | ~a).all() and 0.0 < (b & ~a).mean() < 0.2


def test_distance_helper_sanity(gcps) -> None:
    g = make_georef(gcps)
    box = _box_in_scene(g)
    d = _rect_distance_m(g, box)
    assert (d[_rect_truth(g, box)] == 0).all() and d.max() > 500
    assert math.isfinite(float(d.max()))
