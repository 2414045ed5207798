"""Registration: every georeferenced output lines up with the input and with each other, to 0.05 px.

The convention (ESA and GDAL agree on it once written out): pixel (i, j) covers GDAL pixel/line
[j, j + 1] x [i, i + 1]; a Sentinel-1 annotation's (line, pixel) is a pixel *centre*, GDAL pixel/line
(line + 0.5, pixel + 0.5). Each output is drawn here the way GDAL / QGIS place it (its geotransform, or
its GCPs through GDAL's own thin-plate-spline transformer) and compared with the class raster's pixels,
and for Sentinel-1 with the annotation's geolocation grid (bilinear, at pixel centres).
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.features
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import GCPTransformer, from_origin
from rasterio.warp import Resampling, reproject

from dakd_edge.data.landmask import GCPGeoref, GlobeLandSource, LandMasker
from dakd_edge.data.sentinel1 import open_product
from dakd_edge.errors import InputError
from dakd_edge.inference import vectorize
from dakd_edge.inference.readers import georef_of, open_scene
from dakd_edge.inference.segment import segment_scene
from dakd_edge.inference.vectorize import oil_spills, write_vector
from tests.inference.fake import write_tif
from tests.inference.test_sentinel1_segment import _pred, product_with_square

TOL_PX = 0.05
H, W = 400, 600
UTM_T = from_origin(500000.0, 6000000.0, 10.0, 10.0)  # EPSG:32633, 54 N


# ---- drawing outputs the way GDAL does ----------------------------------------------------------
def gdal_pixel(path: Path):
    """lon/lat -> fractional GDAL (pixel, line) of raster ``path``, by its geotransform or its GCPs."""
    with rasterio.open(path) as ds:
        gcps, _ = ds.gcps
        crs, inv = ds.crs, ~ds.transform
    if gcps:
        tps = GCPTransformer(gcps, tps=True)

        def by_gcps(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
            r, c = tps.rowcol(np.asarray(lon), np.asarray(lat), op=lambda v: v)
            return np.asarray(c, float), np.asarray(r, float)

        return by_gcps
    to_crs = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True)

    def by_transform(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        x, y = to_crs.transform(np.asarray(lon), np.asarray(lat))
        return inv @ (np.asarray(x), np.asarray(y))

    return by_transform


def gdal_centre_lonlat(path: Path, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat GDAL gives the centre of pixel (row, col) of raster ``path``."""
    with rasterio.open(path) as ds:
        gcps, _ = ds.gcps
        if gcps:
            x, y = GCPTransformer(gcps, tps=True).xy(rows.ravel(), cols.ravel(), offset="center")
            return np.reshape(x, rows.shape), np.reshape(y, rows.shape)
        x, y = ds.transform @ (cols + 0.5, rows + 0.5)
        lon, lat = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
        return np.asarray(lon), np.asarray(lat)


def drawn(polys: list[list[np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """GDAL's rasterisation (pixel centres) of polygons given in GDAL pixel/line."""
    shapes = [({"type": "Polygon", "coordinates": [r.tolist() for r in p]}, 1) for p in polys]
    out = rasterio.features.rasterize(shapes, out_shape=shape, transform=Affine.identity(), dtype="uint8")
    return out.astype(bool)


def centroid(polys: list[list[np.ndarray]]) -> np.ndarray:
    """Area centroid (x, y) of polygons (exterior, holes) in their planar coordinates."""
    total, moment = 0.0, np.zeros(2)
    for rings in polys:
        for k, r in enumerate(rings):
            x, y = np.asarray(r, float).T
            cross = x[:-1] * y[1:] - x[1:] * y[:-1]
            sign = (1.0 if k == 0 else -1.0) * np.sign(cross.sum())
            total += sign * cross.sum() / 2
            moment += (
                sign * np.array([((x[:-1] + x[1:]) * cross).sum(), ((y[:-1] + y[1:]) * cross).sum()]) / 6
            )
    return moment / total


def pixel_centroid(mask: np.ndarray) -> np.ndarray:
    """Mean (x, y) GDAL pixel/line of the centres of the True pixels."""
    r, c = np.nonzero(mask)
    return np.array([c.mean() + 0.5, r.mean() + 0.5])


def to_pixels(polys: list, fn) -> list[list[np.ndarray]]:
    return [[np.column_stack(fn(*np.asarray(r, float).T)) for r in rings] for rings in polys]


def geojson_polys(path: Path) -> list:
    out = []
    for f in json.loads(path.read_text())["features"]:
        g = f["geometry"]
        out += [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
    return out


def gpkg_lonlat_polys(path: Path) -> list:
    """The GeoPackage's polygons (WKB after the 40-byte header), reprojected to lon/lat."""
    con = sqlite3.connect(path)
    try:
        srs = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()[0]
        blobs = [bytes(b[0]) for b in con.execute("SELECT geom FROM oil_spills")]
    finally:
        con.close()
    to_ll = Transformer.from_crs(f"EPSG:{srs}", "EPSG:4326", always_xy=True)
    polys = []
    for b in blobs:
        wkb, off, rings = b[40:], 9, []
        for _ in range(struct.unpack_from("<I", wkb, 5)[0]):
            (n,) = struct.unpack_from("<I", wkb, off)
            xy = np.frombuffer(wkb, "<f8", 2 * n, off + 4).reshape(n, 2)
            rings.append(np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
            off += 4 + 16 * n
        polys.append(rings)
    return polys


# ---- scenes -------------------------------------------------------------------------------------
def _ellipses() -> np.ndarray:
    yy, xx = np.mgrid[:H, :W].astype(float)
    img = np.full((H, W), 150, np.uint8)
    for cy, cx, ry, rx, th in ((120, 150, 30, 90, 0.4), (280, 420, 50, 40, -0.7), (300, 120, 20, 60, 1.1)):
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        img[(u / rx) ** 2 + (v / ry) ** 2 < 1] = 30
    return img


def _gcp_tiff(path: Path, img: np.ndarray) -> list[GroundControlPoint]:
    """``img`` georeferenced by a 6 x 7 grid of GCPs taken from UTM_T in GDAL's pixel/line convention,
    the way ``gdal_translate -gcp`` or rasterio write them."""
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    gl, gp = np.meshgrid(np.linspace(0, H, 6), np.linspace(0, W, 7), indexing="ij")
    lon, lat = to_ll.transform(*(UTM_T @ (gp.ravel(), gl.ravel())))
    gcps = [GroundControlPoint(row=float(a), col=float(b), x=float(c), y=float(d))
            for a, b, c, d in zip(gl.ravel(), gp.ravel(), lon, lat, strict=True)]  # fmt: skip
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8", gcps=gcps,
                       crs="EPSG:4326") as ds:  # fmt: skip
        ds.write(img, 1)
    return gcps


@pytest.fixture(scope="module", params=["affine", "gcp_tiff", "s1"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One scene segmented with GeoJSON and GeoPackage outputs (land not masked)."""
    d = tmp_path_factory.mktemp(request.param)
    if request.param == "s1":
        src = product_with_square(d)
    elif request.param == "affine":
        src = write_tif(d / "scene.tif", _ellipses(), crs="EPSG:32633", transform=UTM_T)
    else:
        src = d / "scene.tif"
        _gcp_tiff(src, _ellipses())
    kw = dict(land_mask="none", min_area="1px")
    segment_scene(_pred(), src, d / "c.tif", vector=d / "v.geojson", probs=d / "p.tif", **kw)
    segment_scene(_pred(), src, d / "c2.tif", vector=d / "v.gpkg", **kw)
    with rasterio.open(d / "c.tif") as ds:
        oil = ds.read(1) == 1
    assert oil.sum() > 1000
    info = open_scene(src).info
    return SimpleNamespace(kind=request.param, src=src, dir=d, classes=d / "c.tif", oil=oil, info=info)


def _annotation_georef(safe: Path) -> GCPGeoref:
    """ESA's georeference: the annotation grid with (line, pixel) at pixel centres (pixel indices)."""
    with open_product(safe) as prod:
        return GCPGeoref(prod.gcps)


# ---- tests --------------------------------------------------------------------------------------
def test_s1_output_gcps_are_gdal_pixel_line(run: SimpleNamespace) -> None:
    """The class and probability COGs of a Sentinel-1 product carry the grid at (line + 0.5, pixel +
    0.5), so GDAL puts each pixel's centre where the annotation puts it (was half a pixel, 7 m, off); a
    GeoTIFF's own GCPs, or geotransform, are kept as they are."""
    with rasterio.open(run.classes) as ds, rasterio.open(run.dir / "p.tif") as probs:
        gcps, _ = ds.gcps
        assert [(g.row, g.col, g.x, g.y) for g in probs.gcps[0]] == [(g.row, g.col, g.x, g.y) for g in gcps]
        assert probs.transform == ds.transform and probs.crs == ds.crs
    if run.kind == "affine":
        assert not gcps
        return
    if run.kind == "gcp_tiff":
        with rasterio.open(run.src) as ds:
            assert [(g.row, g.col, g.x, g.y) for g in gcps] == [(g.row, g.col, g.x, g.y) for g in ds.gcps[0]]
        return
    with open_product(run.src) as prod:
        ann = prod.gcps
    assert [(g.row, g.col) for g in gcps] == [(a.row + 0.5, a.col + 0.5) for a in ann]
    truth = _annotation_georef(run.src)
    rows, cols = np.array([100.0, 333.0, 600.0]), np.array([40.0, 517.0, 901.0])
    lon, lat = gdal_centre_lonlat(run.classes, rows, cols)
    r, c = truth.rowcol(lon, lat)
    off = np.hypot(r - rows, c - cols).max()
    print(f"GDAL pixel centre vs annotation: {off:.4f} px")
    assert off < TOL_PX


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_polygons_cover_the_oil_pixels(run: SimpleNamespace, fmt: str) -> None:
    """Polygons drawn on the class raster's georeference cover exactly its oil pixels (centroids within
    0.05 px); for Sentinel-1 also on the annotation's grid (were 0.5 px off it in both axes)."""
    polys = (
        geojson_polys(run.dir / "v.geojson") if fmt == "geojson" else gpkg_lonlat_polys(run.dir / "v.gpkg")
    )
    px = to_pixels(polys, gdal_pixel(run.classes))
    off = centroid(px) - pixel_centroid(run.oil)
    wrong = int((drawn(px, run.oil.shape) != run.oil).sum())
    print(f"{run.kind} {fmt} on the class raster: offset {off} px, {wrong} pixels differ")
    assert np.abs(off).max() < TOL_PX and wrong == 0
    if run.kind == "s1":
        truth = _annotation_georef(run.src)

        def esa(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
            r, c = truth.rowcol(np.asarray(lon), np.asarray(lat))
            return c + 0.5, r + 0.5

        px = to_pixels(polys, esa)
        off = centroid(px) - pixel_centroid(run.oil)
        print(f"s1 {fmt} on the annotation grid: offset {off} px")
        assert np.abs(off).max() < TOL_PX and (drawn(px, run.oil.shape) == run.oil).all()


def test_geocode_matches_gdal_warp(run: SimpleNamespace) -> None:
    """``--geocode`` puts each pixel where GDAL's own warp of the GCP class raster puts it (nearest
    neighbour, thin-plate spline), and the oil where the georeference says (was 6.8 m off for S1)."""
    if run.kind == "affine":
        with pytest.raises(InputError, match="GCP"):
            segment_scene(_pred(), run.src, run.dir / "g.tif", land_mask="none", geocode=True, polygons=False)
        return
    segment_scene(_pred(), run.src, run.dir / "g.tif", land_mask="none", geocode=True, polygons=False)
    with rasterio.open(run.dir / "g.tif") as ds:
        got, T, crs = ds.read(1), ds.transform, ds.crs
    with rasterio.open(run.classes) as ds:
        cls, (gcps, _) = ds.read(1), ds.gcps
    want = np.full(got.shape, 255, np.uint8)
    reproject(cls, want, gcps=gcps, src_crs="EPSG:4326", dst_transform=T, dst_crs=crs, src_nodata=255,
              dst_nodata=255, resampling=Resampling.nearest, SRC_METHOD="GCP_TPS")  # fmt: skip
    both = (want != 255) & (got != 255)
    wrong = int((want[both] != got[both]).sum())
    off = pixel_centroid(got == 1) - pixel_centroid(want == 1)
    print(f"{run.kind} geocode vs GDAL warp: {wrong} pixels differ, oil centroid offset {off} px")
    assert wrong <= 2 and np.abs(off).max() < TOL_PX
    # against the input's georeference: centres of the oil pixels, mapped to the grid's CRS
    r, c = np.nonzero(run.oil)
    if run.kind == "s1":
        lon, lat = _annotation_georef(run.src).lonlat(r.astype(float), c.astype(float))
    else:
        lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
            *(UTM_T @ (c + 0.5, r + 0.5))
        )
    x, y = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True).transform(lon, lat)
    gx, gy = T @ tuple(pixel_centroid(got == 1))
    dist = math.hypot(gx - np.mean(x), gy - np.mean(y))
    print(f"{run.kind} geocoded oil centroid vs the input's georeference: {dist:.3f} m")
    assert dist < 2.0  # 0.2 px: nearest neighbour onto another grid (9.98 m for the GCP GeoTIFF)


def _land_ring(run: SimpleNamespace) -> np.ndarray:
    """A slanted quadrilateral (lon/lat, densified) over most of the scene: the land of these tests."""
    h, w = run.info.height, run.info.width
    fr = [(0.213, 0.117), (0.318, 0.791), (0.887, 0.703), (0.694, 0.221)]  # edges through few pixel centres
    corners = [(a * h + 0.37, b * w + 0.29) for a, b in [*fr, fr[0]]]
    t = np.linspace(0, 1, 50, endpoint=False)[:, None]
    rc = np.vstack([a + t * (np.subtract(b, a)) for a, b in zip(corners[:-1], corners[1:], strict=True)])
    rc = np.vstack([rc, rc[:1]])
    lon, lat = gdal_centre_lonlat(run.classes, rc[:, 0], rc[:, 1])
    return np.column_stack([lon, lat])


def test_vector_land_mask_matches_the_vector(run: SimpleNamespace, tmp_path: Path) -> None:
    """A land mask from a vector file covers the pixels that vector covers when both are drawn on the
    class raster's georeference (was 0.5 px off for Sentinel-1 and GCP GeoTIFFs)."""
    ring = _land_ring(run)
    path = tmp_path / "land.geojson"
    geom = {"type": "Polygon", "coordinates": [ring.tolist()]}
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": geom}))
    h, w = run.info.height, run.info.width
    mask = LandMasker(georef_of(run.info), h, w, source=path, coast_buffer=0).mask(0, h, 0, w)
    want = drawn(to_pixels([[ring]], gdal_pixel(run.classes)), mask.shape)
    off = pixel_centroid(mask) - pixel_centroid(want)
    wrong = int((want != mask).sum())
    print(f"{run.kind} vector land mask vs the vector: offset {off} px, {wrong} pixels differ")
    assert np.abs(off).max() < TOL_PX and wrong <= 3


def test_raster_land_mask_matches_the_raster(run: SimpleNamespace, tmp_path: Path) -> None:
    """A land mask from a raster file is that raster sampled at each pixel's centre as GDAL places it."""
    ring = _land_ring(run)
    h, w = run.info.height, run.info.width
    rr, cc = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    lon, lat = gdal_centre_lonlat(run.classes, rr, cc)
    res = 3e-5  # degrees: 2-3 m cells, not aligned with the scene's pixels
    west, north = lon.min() - 0.001 + res / 3, lat.max() + 0.001 + res / 7
    t = from_origin(west, north, res, res)
    shape = (int((north - lat.min() + 0.001) / res), int((lon.max() + 0.001 - west) / res))
    land = rasterio.features.rasterize([({"type": "Polygon", "coordinates": [ring.tolist()]}, 1)],
                                       out_shape=shape, transform=t, dtype="uint8")  # fmt: skip
    path = tmp_path / "land.tif"
    with rasterio.open(path, "w", driver="GTiff", height=shape[0], width=shape[1], count=1, dtype="uint8",
                       crs="EPSG:4326", transform=t) as ds:  # fmt: skip
        ds.write(land, 1)
    mask = LandMasker(georef_of(run.info), h, w, source=path, coast_buffer=0).mask(0, h, 0, w)
    col, row = ~t @ (lon, lat)
    want = land[np.floor(row).astype(int), np.floor(col).astype(int)].astype(bool)
    wrong = int((mask != want).sum())
    print(f"{run.kind} raster land mask vs the raster at GDAL's pixel centres: {wrong} pixels differ")
    assert 0.2 < want.mean() < 0.8 and wrong <= 3


def test_land_mask_samples_gdal_pixel_centres(run: SimpleNamespace) -> None:
    """The GLOBE mask (and the coast buffer) look up each pixel at the lon/lat GDAL gives its centre
    (it was 0.5 px off in both axes for GCP GeoTIFFs, and for Sentinel-1 against its outputs' GCPs)."""
    rows, cols = np.array([0.0, 123.0, 399.0]), np.array([0.0, 321.0, 599.0])
    lon, lat = georef_of(run.info).lonlat(rows, cols)
    x, y = gdal_pixel(run.classes)(lon, lat)
    off = np.hypot(x - (cols + 0.5), y - (rows + 0.5)).max()
    print(f"{run.kind} land-mask sample points vs GDAL pixel centres: {off:.5f} px")
    assert off < TOL_PX


def test_globe_mask_is_globe_at_gdal_pixel_centres(tmp_path: Path) -> None:
    """A product on the coast near Rome: the GLOBE mask at full resolution is the GLOBE grid at each
    pixel's centre as GDAL places it through the output's GCPs."""
    try:
        GlobeLandSource.package_file()
    except InputError:
        pytest.skip("global-land-mask is not installed")
    safe = product_with_square(tmp_path, center=(41.74, 12.24))
    segment_scene(_pred(), safe, tmp_path / "c.tif", land_mask="none", polygons=False)
    info = open_scene(safe).info
    h, w = info.height, info.width
    mask = LandMasker(georef_of(info), h, w, coast_buffer=0, step_m=10.0).mask(0, h, 0, w)
    rr, cc = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    want = GlobeLandSource().is_land(*gdal_centre_lonlat(tmp_path / "c.tif", rr, cc))
    wrong = int((mask != want).sum())
    print(f"GLOBE mask vs GLOBE at GDAL pixel centres: {wrong} of {want.size} pixels differ")
    assert 0.05 < want.mean() < 0.95 and wrong <= 3


# ---- GeoJSON edges near the poles ---------------------------------------------------------------
def _square_spills(crs: str, x0: float, y0: float, px: float, n: int, rot: float = 20.0):
    cls = np.zeros((n + 40, n + 40), np.uint8)
    cls[20 : 20 + n, 20 : 20 + n] = 1
    t = Affine.translation(x0, y0) @ Affine.rotation(rot) @ Affine.scale(px, -px)
    return oil_spills(cls, 1, t, CRS.from_user_input(crs))


def _edge_deviation_px(path: Path, spill: Any, crs: str, px: float) -> float:
    """Largest distance (pixels) of the GeoJSON's edges, straight in lon/lat as RFC 7946 reads them,
    from the polygon's straight edges in its own CRS (cut and pole-closing runs left out)."""
    ring = np.asarray(spill.rings[0])
    a, b = ring[:-1], ring[1:]
    to = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    worst = 0.0
    for rings in geojson_polys(path):
        ext = np.asarray(rings[0])
        for p, q in zip(ext[:-1], ext[1:], strict=True):
            if (abs(p[1]) == 90 and abs(q[1]) == 90) or (abs(p[0]) == 180 and abs(q[0]) == 180):
                continue
            t = np.linspace(0, 1, 41)[:, None]
            x, y = to.transform(*(p + t * (q - p)).T)
            pt = np.column_stack([x, y])[:, None, :]
            ab = b - a
            u = np.clip(((pt - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
            d = np.linalg.norm(pt - (a + u[..., None] * ab), axis=-1).min(axis=1)
            worst = max(worst, float(d.max()))
    return worst / px


@pytest.mark.parametrize(("lat", "n", "px"), [(85.0, 240, 10.0), (87.0, 250, 40.0)])
def test_geojson_edges_stay_on_the_crs_edges_near_the_pole(
    tmp_path: Path, lat: float, n: int, px: float
) -> None:
    """Long straight edges near the pole (EPSG:3413) come out within 0.1 px in the GeoJSON: points are
    added where the lon/lat chord bows (it bowed 1.35 m = 0.14 px on a 2.4 km edge at 85 N, 40 m =
    1 px on a 10 km edge at 87 N)."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True).transform(-15.0, lat)
    spills = _square_spills("EPSG:3413", x - 150 * px, y + 150 * px, px, n)
    write_vector(tmp_path / "v.geojson", spills, CRS.from_epsg(3413))
    dev = _edge_deviation_px(tmp_path / "v.geojson", spills[0], "EPSG:3413", px)
    print(f"{lat} N: GeoJSON edges up to {dev:.3f} px off the CRS's")
    assert dev < 1.2 * vectorize.DENSIFY_TOL_PX


def test_geojson_slick_around_the_pole_keeps_its_area(tmp_path: Path) -> None:
    """A 4 km square slick on the North Pole: GeoJSON edges within 0.1 px of the true ones and its
    geodesic area that of the square (it was 1.8 % too large, edges 27 px off)."""
    spills = _square_spills("EPSG:3413", -3000.0, 3000.0, 40.0, 100, rot=10.0)
    write_vector(tmp_path / "v.geojson", spills, CRS.from_epsg(3413))
    dev = _edge_deviation_px(tmp_path / "v.geojson", spills[0], "EPSG:3413", 40.0)
    (f,) = json.loads((tmp_path / "v.geojson").read_text())["features"]
    ext = np.asarray(f["geometry"]["coordinates"][0])
    geod = Geod(ellps="WGS84")
    ring = np.asarray(spills[0].rings[0])
    dense = np.vstack([p + np.linspace(0, 1, 500, endpoint=False)[:, None] * (q - p)
                       for p, q in zip(ring[:-1], ring[1:], strict=True)])  # fmt: skip
    tlon, tlat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True).transform(*dense.T)
    true_area = abs(geod.polygon_area_perimeter(tlon, tlat)[0])
    area = abs(geod.polygon_area_perimeter(ext[:, 0], ext[:, 1])[0])
    print(f"around the pole: edges {dev:.3f} px off, area {area / true_area - 1:+.2e}")
    assert dev < 1.2 * vectorize.DENSIFY_TOL_PX and area == pytest.approx(true_area, rel=1e-4)


def test_geojson_unchanged_at_ordinary_latitudes(run: SimpleNamespace, tmp_path: Path, monkeypatch) -> None:
    """At 40-54 N nothing bows by 0.1 px: the GeoJSON is byte for byte the undensified one."""
    densified, plain = tmp_path / "a" / "v.geojson", tmp_path / "b" / "v.geojson"
    densified.parent.mkdir()
    plain.parent.mkdir()
    kw = dict(land_mask="none", min_area="1px")
    segment_scene(_pred(), run.src, tmp_path / "a.tif", vector=densified, **kw)
    monkeypatch.setattr(vectorize, "DENSIFY_TOL_PX", math.inf)
    segment_scene(_pred(), run.src, tmp_path / "b.tif", vector=plain, **kw)
    assert densified.read_bytes() == plain.read_bytes()
