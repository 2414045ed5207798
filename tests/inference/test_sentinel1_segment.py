"""`segment` on Sentinel-1 GRD products: every input form, GCP georeference kept, polygons located
against the annotation's geolocation grid, the antimeridian, land masking on the real product."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Geod

from dakd_edge.cli import segment as seg_cli
from dakd_edge.cli.app import main
from dakd_edge.data.sentinel1 import build_synthetic_product, open_product, zip_product
from dakd_edge.errors import InputError
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene
from tests.inference.fake import FakeBackend

REAL = "s1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
SQUARE = (300, 340, 500, 560)  # rows, cols of the dark patch (a 40 x 60 px "slick")


class ThresholdBackend(FakeBackend):
    """Oil exactly where the normalised input is below its mean (pixel-exact, no context)."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = batch[:, 0]
        return np.stack([20 * x, -20 * x], 1).astype(np.float32)


def _pred() -> Predictor:
    return Predictor(ThresholdBackend(tile=128), tile=128, overlap=16)


def product_with_square(root: Path, **minimal) -> Path:
    """A generated SAFE whose VV measurement is uniform sea (sigma0 0.1) with one dark square (0.002),
    written through the product's own calibration LUT (DN = sqrt(sigma0) * A)."""
    p = build_synthetic_product(root, shape=(640, 960), seed=0, **minimal)
    with open_product(p.path) as prod:
        a = prod.calibration.window(0, prod.height, 0, prod.width)
        tif = next((p.path / "measurement").glob("*-vv-*.tiff"))
    sigma0 = np.full(a.shape, 0.1, np.float64)
    r0, r1, c0, c1 = SQUARE
    sigma0[r0:r1, c0:c1] = 0.002
    dn = np.clip(np.rint(np.sqrt(sigma0) * a), 1, 65535).astype(np.uint16)
    dn[:, :8] = 0  # a no-data border, as GRD products have
    with rasterio.open(tif, "r+") as ds:
        ds.write(dn, 1)
    zip_product(p.path)
    return p.path


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return product_with_square(tmp_path_factory.mktemp("s1"))


def grid_lonlat(safe: Path, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent geolocation: bilinear interpolation of the annotation grid (parsed here, with
    ElementTree; regular in line and pixel for GRD products) at (line, pixel)."""
    import xml.etree.ElementTree as ET

    ann = next(p for p in (safe / "annotation").glob("*-vv-*.xml"))
    pts = ET.parse(ann).getroot().findall(".//geolocationGridPoint")
    lp = np.array([[float(p.findtext("line")), float(p.findtext("pixel"))] for p in pts])
    lon = np.array([float(p.findtext("longitude")) for p in pts])
    lat = np.array([float(p.findtext("latitude")) for p in pts])
    lon = np.where(lon < 0, lon + 360, lon) if np.ptp(lon) > 180 else lon
    lines, pixels = np.unique(lp[:, 0]), np.unique(lp[:, 1])
    grid = np.full((len(lines), len(pixels), 2), np.nan)
    grid[np.searchsorted(lines, lp[:, 0]), np.searchsorted(pixels, lp[:, 1])] = np.stack([lon, lat], 1)
    assert np.isfinite(grid).all(), "GRD geolocation grid is regular"
    out = []
    for r, c in zip(rows, cols, strict=True):
        i = int(np.clip(np.searchsorted(lines, r) - 1, 0, len(lines) - 2))
        j = int(np.clip(np.searchsorted(pixels, c) - 1, 0, len(pixels) - 2))
        t = (r - lines[i]) / (lines[i + 1] - lines[i])
        u = (c - pixels[j]) / (pixels[j + 1] - pixels[j])
        g = grid[i : i + 2, j : j + 2]
        out.append((1 - t) * ((1 - u) * g[0, 0] + u * g[0, 1]) + t * ((1 - u) * g[1, 0] + u * g[1, 1]))
    a = np.array(out)
    return a[:, 0], a[:, 1]


def ring_centroid(ring: list[list[float]]) -> tuple[float, float]:
    a = np.asarray(ring, np.float64)
    x, y = a[:, 0], a[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]
    area = cross.sum() / 2
    return float(((x[:-1] + x[1:]) * cross).sum() / (6 * area)), float(
        ((y[:-1] + y[1:]) * cross).sum() / (6 * area)
    )


def test_input_forms_agree_and_keep_gcps(product: Path, tmp_path: Path) -> None:
    zip_path = product.with_suffix(".zip")
    tif = next((product / "measurement").glob("*-vv-*.tiff"))
    forms = {"safe": product, "zip": zip_path, "manifest": product / "manifest.safe", "tiff": tif}
    maps = {}
    for name, src in forms.items():
        r = segment_scene(_pred(), src, tmp_path / f"{name}.tif", land_mask="none", polygons=False)
        assert r["georeference"] == "gcps" and r["input_scale"] == "linear"
        assert r["product"]["mission"] == "S1A" and r["product"]["polarisation"] == "VV"
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            gcps, crs = ds.gcps
            assert len(gcps) >= 4 and crs.to_epsg() == 4326
            maps[name] = ds.read(1)
    for name in forms:
        np.testing.assert_array_equal(maps[name], maps["safe"])
    r0, r1, c0, c1 = SQUARE
    cls = maps["safe"]
    assert (cls[r0 + 2 : r1 - 2, c0 + 2 : c1 - 2] == 1).all()
    assert (cls[:, :8] == 255).all(), "DN = 0 border is nodata"
    assert (cls[:, 8:] != 255).all()


def test_polygon_centroid_matches_geolocation_grid(product: Path, tmp_path: Path) -> None:
    r = segment_scene(
        _pred(),
        product,
        tmp_path / "c.tif",
        vector=tmp_path / "v.geojson",
        land_mask="none",
        min_area="100px",
    )
    feats = json.loads((tmp_path / "v.geojson").read_text())["features"]
    assert r["spills"] == 1 and len(feats) == 1
    lon, lat = ring_centroid(feats[0]["geometry"]["coordinates"][0])
    r0, r1, c0, c1 = SQUARE
    # the square's centre in annotation line/pixel (pixel centres): rows r0..r1-1 centre on (r0 + r1 - 1) / 2
    want_lon, want_lat = grid_lonlat(product, np.array([(r0 + r1 - 1) / 2]), np.array([(c0 + c1 - 1) / 2]))
    _, _, dist = Geod(ellps="WGS84").inv(lon, lat, float(want_lon[0]), float(want_lat[0]))
    assert dist < 0.05 * 10.0, f"centroid {dist:.2f} m from the grid's location (0.05 px = 0.5 m)"
    area = feats[0]["properties"]["area_m2"]
    assert area == pytest.approx((r1 - r0) * (c1 - c0) * 10.0 * 10.0, rel=0.03)
    # the GeoPackage is in the UTM zone of the scene centre (projected; areas in m^2)
    segment_scene(_pred(), product, tmp_path / "c2.tif", vector=tmp_path / "v.gpkg", land_mask="none")
    import sqlite3

    con = sqlite3.connect(tmp_path / "v.gpkg")
    srs = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()[0]
    con.close()
    assert 32601 <= srs <= 32660  # northern UTM zones (centre 40 N, 25 E: zone 35)
    assert srs == 32635


def test_antimeridian_polygons_stay_compact(tmp_path: Path) -> None:
    safe = product_with_square(tmp_path, center=(55.0, 179.97))
    r = segment_scene(
        _pred(), safe, tmp_path / "c.tif", vector=tmp_path / "v.gpkg", land_mask="none", min_area="100px"
    )
    assert r["spills"] == 1
    import sqlite3

    con = sqlite3.connect(tmp_path / "v.gpkg")
    area, minx, maxx = con.execute("SELECT area_m2, min_x, max_x FROM oil_spills, gpkg_contents").fetchone()
    con.close()
    r0, r1, c0, c1 = SQUARE
    assert area == pytest.approx((r1 - r0) * (c1 - c0) * 100.0, rel=0.03)
    assert maxx - minx < 2000, "a polygon straddling 180 degrees must not span the globe"


def test_errors_and_pol(product: Path, tmp_path: Path) -> None:
    r = segment_scene(_pred(), product, tmp_path / "vh.tif", pol="VH", land_mask="none", polygons=False)
    assert r["product"]["polarisation"] == "VH"
    with pytest.raises(InputError, match="HH"):
        segment_scene(_pred(), product, tmp_path / "hh.tif", pol="HH", land_mask="none")
    with pytest.raises(InputError, match="--band"):
        segment_scene(_pred(), product, tmp_path / "b.tif", band=1)
    assert not list(tmp_path.glob("*.tif"))[1:]


def test_cli_product_zip(product: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: _pred())
    with pytest.raises(SystemExit) as e:
        main([
            "segment", str(product.with_suffix(".zip")), "-o", str(tmp_path), "--vector", str(tmp_path),
            "--no-land-mask", "--report", str(tmp_path / "r.json"), "-q",
        ])  # fmt: skip
    out, err = capsys.readouterr()
    assert e.value.code == 0, err
    stem = product.name.removesuffix(".SAFE")
    assert (tmp_path / f"{stem}_classes.tif").is_file() and (tmp_path / f"{stem}_spills.geojson").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["spills"] >= 1


def test_gcp_geotiff_keeps_its_georeference(product: Path, tmp_path: Path) -> None:
    """Any GeoTIFF with GCPs (not only Sentinel-1) keeps them, without a no-georeference warning."""
    with open_product(product) as prod:
        sigma0 = prod.read_sigma0(0, prod.height, 0, prod.width)
        gcps, crs = prod.gcps, prod.crs
    src = tmp_path / "gcp.tif"
    prof = dict(driver="GTiff", height=sigma0.shape[0], width=sigma0.shape[1], count=1, dtype="float32")
    with rasterio.open(src, "w", **prof, gcps=gcps, crs=crs) as ds:
        ds.write(sigma0[None])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = segment_scene(
            _pred(), src, tmp_path / "c.tif", vector=tmp_path / "v.geojson", land_mask="none", scale="linear"
        )
    assert r["georeference"] == "gcps" and r["spills"] >= 1
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert len(ds.gcps[0]) == len(gcps)


def test_real_product_land_is_masked(shared_data: Path, tmp_path: Path) -> None:
    """The real product's metadata with synthetic pixels: its sea corner (Tyrrhenian, top left) is
    segmented, its inland block is land (all nodata, every tile skipped and counted as land)."""
    safe = shared_data / REAL
    if not safe.is_dir():
        pytest.skip("no Sentinel-1 product in the shared data")
    sea = build_synthetic_product(tmp_path / "sea", source=safe, shape=(512, 1024), offset=(0, 0), seed=1)
    r = segment_scene(_pred(), sea.path, tmp_path / "sea.tif", polygons=False)
    assert r["land_mask"]["source"] == "globe" and r["valid_fraction"] > 0.95
    inland = build_synthetic_product(tmp_path / "land", source=safe, shape=(512, 1024), offset=(7000, 10000))
    r = segment_scene(_pred(), inland.path, tmp_path / "land.tif", vector=tmp_path / "l.geojson")
    assert r["all_nodata"] and r["tiles"]["run"] == 0
    assert r["land_mask"]["tiles_skipped"] == r["tiles"]["total"]
    assert r["spills"] == 0


def _square_on_grid(path: Path) -> tuple[float, float, int, Any]:
    """(x, y) centroid of the oil pixels of a geocoded class map, their count, and its CRS."""
    with rasterio.open(path) as ds:
        cls, t, crs = ds.read(1), ds.transform, ds.crs
    rows, cols = np.nonzero(cls == 1)
    x, y = t @ (cols.mean() + 0.5, rows.mean() + 0.5)
    return float(x), float(y), int(rows.size), crs


@pytest.mark.parametrize("center", [(40.0, 25.0), (55.0, 179.97)])
def test_geocode_onto_utm_grid(tmp_path: Path, center: tuple[float, float]) -> None:
    """--geocode: a north-up UTM grid at the product's spacing; the square keeps its size and lands
    where the annotation's geolocation grid puts it (within 0.2 px), also across the antimeridian."""
    from pyproj import Transformer

    safe = product_with_square(tmp_path, center=center)
    r = segment_scene(
        _pred(), safe, tmp_path / "g.tif", probs=tmp_path / "p.tif", land_mask="none", geocode=True
    )
    assert r["geocoded"] is True
    x, y, n, crs = _square_on_grid(tmp_path / "g.tif")
    with rasterio.open(tmp_path / "g.tif") as ds:
        assert ds.res == (10.0, 10.0) and not ds.gcps[0] and crs.to_epsg() in (32635, 32660, 32601)
        assert ds.width * ds.height < 2 * 640 * 960, "compact grid (no globe-spanning extent)"
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.crs == crs and ds.scales[0] == pytest.approx(1 / 250)
    r0, r1, c0, c1 = SQUARE
    assert n == pytest.approx((r1 - r0) * (c1 - c0), rel=0.05)
    lon, lat = grid_lonlat(safe, np.array([(r0 + r1 - 1) / 2]), np.array([(c0 + c1 - 1) / 2]))
    wx, wy = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True).transform(lon[0], lat[0])
    assert np.hypot(x - wx, y - wy) < 2.0  # 0.2 px: resampled by nearest neighbour


def test_border_noise_of_old_products_is_nodata(tmp_path: Path, monkeypatch, capsys) -> None:
    """A product processed before IPF 2.90 has low non-zero DNs along its range edges: after noise
    removal a -35 dB band that a detector calls oil. By default it is nodata; --border-noise keep
    gives the old behaviour (the band is oil); the rest of the map is the same either way."""
    p = build_synthetic_product(tmp_path / "p", shape=(256, 384), seed=4, ipf="002.72", border_noise=(40, 30))
    maps = {}
    for mode in ("auto", "keep"):
        monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: _pred())
        with pytest.raises(SystemExit) as e:
            main(["segment", str(p.path), "-o", str(tmp_path / f"{mode}.tif"), "--no-land-mask", "-q",
                  "--border-noise", mode, "--report", str(tmp_path / f"{mode}.json")])  # fmt: skip
        assert e.value.code == 0, capsys.readouterr().err
        rep = json.loads((tmp_path / f"{mode}.json").read_text())
        assert rep["product"]["border_noise"] == ("masked" if mode == "auto" else "kept") + " (IPF 002.72)"
        with rasterio.open(tmp_path / f"{mode}.tif") as ds:
            maps[mode] = ds.read(1)
    near, far = maps["keep"][:, :34], maps["keep"][:, -24:]  # the narrowest border: 0.9 x 0.95 x 40 / 30
    assert (near == 1).mean() > 0.95 and (far == 1).mean() > 0.95
    assert (maps["auto"][:, :34] == 255).all() and (maps["auto"][:, -24:] == 255).all()
    inside = maps["auto"][:, 60:-60]
    np.testing.assert_array_equal(inside, maps["keep"][:, 60:-60])
    assert (inside != 255).all()


def test_cross_pol_only_copy_is_segmented_with_a_notice(tmp_path: Path) -> None:
    """A copy holding only VH runs VH (nothing else to read), saying so; asking for VH says nothing."""
    import warnings

    from dakd_edge.errors import Notice

    p = build_synthetic_product(tmp_path / "p", shape=(128, 192), seed=1, pols=("VH",))
    with pytest.warns(Notice, match="no co-polarised .* so VH is segmented"):
        r = segment_scene(_pred(), p.path, tmp_path / "a.tif", land_mask="none", polygons=False)
    assert r["product"]["polarisation"] == "VH"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)
        segment_scene(_pred(), p.path, tmp_path / "b.tif", pol="VH", land_mask="none", polygons=False)


def test_a_scene_over_the_caspian_warns_that_globe_calls_it_land(tmp_path: Path) -> None:
    """The default land mask (GLOBE) counts the Caspian Sea as land: segment ran no tile and said only
    "all nodata". It now warns, naming the sea and the options, and the report lists it."""
    from dakd_edge.errors import Notice

    p = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, center=(42.5, 51.0))
    with pytest.warns(Notice, match="counts the Caspian Sea as land.*--land-mask FILE"):
        r = segment_scene(_pred(), p.path, tmp_path / "a.tif", polygons=False)
    assert r["land_mask"]["water_counted_as_land"] == ["the Caspian Sea"]
    assert r["tiles"]["skipped_land"] == r["tiles"]["total"]
    r = segment_scene(_pred(), p.path, tmp_path / "b.tif", land_mask="none", polygons=False)
    assert r["tiles"]["run"] == r["tiles"]["total"] and r["land_mask"] is None


def test_a_scene_over_an_unnamed_lake_says_globe_counts_lakes_as_land(tmp_path: Path) -> None:
    """Lake Constance is not among the named water bodies: segment said only "all land" and exit 0, so
    an operator took an unsearched lake for a clean one. It now warns once, with the two remedies; the
    named-water warning (the Caspian, above) is not doubled by it."""
    import warnings

    from dakd_edge.errors import Notice

    p = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, center=(47.62, 9.37))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = segment_scene(_pred(), p.path, tmp_path / "a.tif", polygons=False)
    said = [str(w.message) for w in caught if issubclass(w.category, Notice)]
    assert r["tiles"]["run"] == 0 and r["tiles"]["skipped_land"] == r["tiles"]["total"]
    assert len([m for m in said if "every tile is land" in m]) == 1
    assert "--no-land-mask" in said[-1] and r["land_mask"]["water_counted_as_land"] == []
    caspian = build_synthetic_product(tmp_path / "c", shape=(64, 96), seed=1, center=(42.5, 51.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segment_scene(_pred(), caspian.path, tmp_path / "b.tif", polygons=False)
    assert not [w for w in caught if "every tile is land" in str(w.message)]


def test_a_scene_of_nodata_at_sea_and_land_is_not_said_to_be_all_land(tmp_path: Path) -> None:
    """A scene whose sea part is nodata (zeros) and whose rest is land: the sea tiles were skipped as
    nodata, the land tiles as land, and the notice said "every tile is land" (the real S1B product of
    zeros in ../shared/data got it too). Only a scene whose every tile has land gets that notice."""
    import warnings

    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "coast.tif"  # lon -10.0..-7.44, lat 40.0..41.28: the Atlantic and the Portuguese coast
    db = np.full((256, 512), -15.0, np.float32)
    db[:, :320] = 0.0  # west of 8.4 W: open sea, the coast and the Aveiro lagoon, no data
    profile = dict(
        driver="GTiff", width=512, height=256, count=1, dtype="float32", crs="EPSG:4326", nodata=0.0
    )
    with rasterio.open(path, "w", transform=from_origin(-10.0, 41.28, 0.005, 0.005), **profile) as d:
        d.write(db, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = segment_scene(_pred(), path, tmp_path / "a.tif", polygons=False, scale="db", land_mask="globe")
    assert r["tiles"]["run"] == 0 and r["tiles"]["skipped_nodata"] > 0 and r["tiles"]["skipped_land"] > 0, r[
        "tiles"
    ]
    assert not [w for w in caught if "every tile is land" in str(w.message)]
