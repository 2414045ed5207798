"""Oil-spill polygons: whole across tile borders, areas from the CRS, GeoJSON and GeoPackage output."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene
from dakd_edge.inference.vectorize import Measurer, connected_groups, oil_spills, write_vector

from .fake import FakeBackend, write_tif

UTM = CRS.from_epsg(32633)
UTM_T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
# A 10 m UTM pixel on the central meridian covers 100 / 0.9996^2 m^2 of the ellipsoid (scale k0 there)
UTM_PX_M2 = 100.0 / 0.9996**2


@pytest.mark.parametrize("polygon_block", [2048, 40])
def test_polygon_whole_across_tile_borders(tmp_path: Path, polygon_block: int) -> None:
    """A long slick spanning many 64-px tiles (and polygon blocks) comes out as exactly one polygon."""
    img = np.full((200, 300), 150, np.uint8)
    img[90:110, 10:290] = 30  # crosses 5 vertical tile borders
    img[20:180, 140:150] = 30  # and 3 horizontal ones (a cross: one connected region)
    src = write_tif(tmp_path / "s.tif", img)
    pred = Predictor(FakeBackend(radius=2), tile=64, overlap=16)
    r = segment_scene(
        pred, src, tmp_path / "c.tif", vector=tmp_path / "v.geojson", polygon_block=polygon_block
    )
    assert r["tiles"]["total"] > 12
    feats = json.loads((tmp_path / "v.geojson").read_text())["features"]
    assert len(feats) == r["spills"] == 1
    props = feats[0]["properties"]
    assert props["area_px"] == r["oil_pixels"]
    assert props["area_m2"] == pytest.approx(r["oil_pixels"] * UTM_PX_M2)
    assert 0.5 < props["mean_prob"] <= props["max_prob"] <= 1.0
    lon, lat = np.array(feats[0]["geometry"]["coordinates"][0]).T  # GeoJSON is WGS84 lon/lat
    assert 14.9 < lon.min() < 15.2 and 54.0 < lat.min() < 54.2


def test_spills_stats_holes_and_pixel_area() -> None:
    cls = np.zeros((40, 50), np.uint8)
    cls[5:15, 5:25] = 1  # 200 px with a 4 px hole
    cls[8:10, 10:12] = 0
    cls[30:33, 40:44] = 1  # 12 px
    cls[20:22, 20:22] = 2  # look-alike: not oil
    prob = np.where(cls == 1, 0.8, 0.1).astype(np.float32)
    prob[5, 5] = 0.95
    spills = oil_spills(cls, 1, UTM_T, UTM, oil_prob=prob)
    assert [s.area_px for s in spills] == [196, 12]
    big = spills[0]
    assert len(big.rings) == 2  # exterior + hole
    assert big.area_m2 == pytest.approx(196 * UTM_PX_M2)
    assert big.perimeter_m == pytest.approx((2 * (10 + 20) + 2 * (2 + 2)) * 10.0 / 0.9996)
    assert big.max_prob == pytest.approx(0.95) and 0.8 < big.mean_prob < 0.81
    assert oil_spills(np.zeros((5, 5), np.uint8), 1) == []
    assert oil_spills(cls, [1, 2], UTM_T, UTM)[-1].area_px == 4  # several oil classes


def test_projected_areas_are_on_the_ellipsoid() -> None:
    """A 2 km x 1 km UTM rectangle has the geodesic area of its corners in lon/lat (2e6 m^2 flat, 0.08 %
    more on the ellipsoid at the central meridian); in a polar stereographic CRS, whose flat areas are
    off by several per cent away from its true-scale latitude, likewise."""
    from pyproj import Proj

    for epsg, x0, y0 in ((32633, 500000.0, 6000000.0), (32633, 300000.0, 6000000.0), (3413, 0.0, -500000.0)):
        ring = [(x0, y0), (x0 + 2000, y0), (x0 + 2000, y0 + 1000), (x0, y0 + 1000)]
        ring.append(ring[0])
        area, perim = Measurer(CRS.from_epsg(epsg))([ring])
        tr = Transformer.from_crs(epsg, 4326, always_xy=True)
        area_geo, perim_geo = Measurer(CRS.from_epsg(4326))([[tr.transform(x, y) for x, y in ring]])
        assert area == pytest.approx(area_geo, rel=1e-9) and perim == pytest.approx(perim_geo, rel=1e-9)
        lon, lat = tr.transform(x0 + 1000, y0 + 500)
        k = Proj(CRS.from_epsg(epsg)).get_factors(lon, lat).areal_scale
        assert area == pytest.approx(2e6 / k, rel=1e-6)  # flat area / the map's areal scale
    assert Measurer(CRS.from_epsg(3413))([ring])[0] == pytest.approx(2e6 * 1.06, rel=0.01)  # 6 % at 85 N
    assert Measurer(None)([ring]) == (None, None)


def test_scene_in_epsg4326_geodesic_area(tmp_path: Path) -> None:
    img = np.full((128, 128), 150, np.uint8)
    img[40:80, 30:100] = 30
    # ~10 m pixels at 54 N: 1e-4 deg latitude ~ 11.1 m, 1.5e-4 deg longitude ~ 9.8 m
    t = Affine(1.5e-4, 0.0, 15.0, 0.0, -1e-4, 54.1)
    src = write_tif(tmp_path / "ll.tif", img, crs="EPSG:4326", transform=t)
    r = segment_scene(Predictor(FakeBackend(radius=2), tile=64, overlap=16), src, tmp_path / "c.tif")
    px_area = 1.5e-4 * 111320 * np.cos(np.radians(54.096)) * 1e-4 * 111250
    assert r["oil_area_m2"] == pytest.approx(r["oil_pixels"] * px_area, rel=0.01)


def _read_gpkg(path: Path) -> tuple[list[tuple], dict]:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        gc = con.execute(
            "SELECT table_name, column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns"
        )
        ((table, col, gtype, srs_id),) = gc.fetchall()
        srs = dict(con.execute("SELECT srs_id, organization FROM gpkg_spatial_ref_sys").fetchall())
        rows = con.execute(f"SELECT {col}, area_m2, area_px, mean_prob FROM {table}").fetchall()
    finally:
        con.close()
    assert gtype == "POLYGON" and srs_id == 32633 and srs[32633] == "EPSG"
    return rows, {"table": table}


def test_geopackage_layout(tmp_path: Path) -> None:
    cls = np.zeros((40, 50), np.uint8)
    cls[5:15, 5:25] = 1
    cls[30:33, 40:44] = 1
    spills = oil_spills(cls, 1, UTM_T, UTM, oil_prob=np.full(cls.shape, 0.7, np.float32))
    out = write_vector(tmp_path / "s.gpkg", spills, UTM)
    rows, _ = _read_gpkg(out)
    assert [r[2] for r in rows] == [200, 12]
    blob = rows[0][0]
    assert blob[:2] == b"GP" and blob[3] == 0b011
    (srs,) = struct.unpack("<i", blob[4:8])
    minx, maxx, miny, maxy = struct.unpack("<4d", blob[8:40])
    assert srs == 32633 and (minx, maxx) == (500050.0, 500250.0) and (miny, maxy) == (5999850.0, 5999950.0)
    order, gtype, nrings = struct.unpack("<BII", blob[40:49])
    assert (order, gtype, nrings) == (1, 3, 1)
    with pytest.raises(Exception, match="exists"):
        write_vector(tmp_path / "s.gpkg", spills, UTM)


def test_geopackage_reads_with_gdal(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio", reason="pyogrio (GDAL/OGR) not installed; sqlite check only")
    cls = np.zeros((40, 50), np.uint8)
    cls[5:15, 5:25] = 1
    cls[8:10, 10:12] = 0
    out = write_vector(tmp_path / "s.gpkg", oil_spills(cls, 1, UTM_T, UTM), UTM)
    info = pyogrio.read_info(out)
    assert info["features"] == 1 and info["geometry_type"] == "Polygon" and "32633" in info["crs"]
    meta, fids, geoms, fields = pyogrio.raw.read(out)
    assert list(meta["fields"][:3]) == ["area_m2", "area_px", "perimeter_m"]
    assert fields[1][0] == 196
    gj = write_vector(tmp_path / "s.geojson", oil_spills(cls, 1, UTM_T, UTM), UTM)
    assert pyogrio.read_info(gj)["features"] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block", [5, 16, 33])
def test_blocked_tracing_equals_whole(seed: int, block: int) -> None:
    """Tracing in row blocks (bounded memory) gives the same polygons as tracing the whole mask."""
    rng = np.random.default_rng(seed)
    # clustered random mask: many regions cross block cuts, some only diagonally, some with holes
    noise = rng.random((90, 70))
    k = np.ones(5) / 5
    smooth = np.apply_along_axis(
        np.convolve, 0, np.apply_along_axis(np.convolve, 1, noise, k, "same"), k, "same"
    )
    cls = (smooth > np.quantile(smooth, 0.6)).astype(np.uint8)
    cls[rng.random(cls.shape) < 0.03] ^= 1
    prob = rng.random(cls.shape).astype(np.float32)
    whole = oil_spills(cls, 1, UTM_T, UTM, oil_prob=prob)
    blocked = oil_spills(cls, 1, UTM_T, UTM, oil_prob=prob, block=block)

    def sig(spills):
        return sorted((s.area_px, len(s.rings), round(s.area_m2), round(s.mean_prob, 6)) for s in spills)

    assert len(whole) > 20
    assert sig(blocked) == sig(whole)
    assert sum(s.area_px for s in blocked) == int(cls.sum())


def test_connected_groups_transitive_and_ordered() -> None:
    """One union-find for the block-cut pieces here and the batch layer's overlapping scenes."""
    assert connected_groups(6, [(4, 1), (1, 5), (2, 3)]) == [[0], [1, 4, 5], [2, 3]]
    assert connected_groups(3, iter([(np.int64(2), np.int64(0))])) == [[0, 2], [1]]
    assert connected_groups(0, []) == []


def test_pixel_to_world_mapping_runs_once_per_window() -> None:
    """A GCP scene's mapping (bilinear lookup + PROJ) runs once per traced window, not once per ring
    (3 s for 20k spills), and gives every vertex exactly what mapping it alone gives."""
    from dakd_edge.inference.vectorize import spills_from_mask, to_world_many

    def to_world(mapping, ring):  # one ring alone
        return to_world_many(mapping, [[ring]])[0][0]

    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    calls = []

    def mapping(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(cols))
        return to_utm.transform(15.0 + cols * 1e-4 + rows * 2e-5, 60.0 - rows * 9e-5)

    cls = np.zeros((40, 40), np.uint8)
    cls[2:5, 3:6] = cls[10:20, 10:20] = cls[30:33, 30:39] = 1
    cls[14:16, 14:16] = 0  # a hole: two rings
    spills = oil_spills(cls, 1, mapping, UTM, block=40)  # type: ignore[arg-type]
    assert len(spills) == 3 and len(calls) == 1 and calls[0] == sum(len(r) for s in spills for r in s.rings)
    calls.clear()
    pixel = spills_from_mask(lambda r0, r1, c0, c1: cls[r0:r1, c0:c1] == 1, 40, 40)
    by_box = [sorted(found, key=lambda s: s.bbox_px) for found in (pixel, spills)]
    for px, s in zip(*by_box, strict=True):
        for ring_px, ring in zip(px.rings, s.rings, strict=True):
            one = [to_world(mapping, [v])[0] for v in ring_px]  # each vertex mapped alone
            assert np.array_equal(np.asarray(one), np.asarray(ring))
        assert s.area_m2 == Measurer(UTM)(s.rings)[0]
    flat = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6600000.0)
    assert to_world(flat, [(1.0, 2.0), (3.0, 4.0)]) == [flat @ (1.0, 2.0), flat @ (3.0, 4.0)]


def test_measurer_many_equals_one_by_one() -> None:
    """``Measurer.many`` (one PROJ call for all polygons) measures each polygon as a call of its own
    does; a polygon PROJ cannot take to lon/lat falls back to its flat area alone."""
    m = Measurer(UTM)
    sq = [(5e5, 6e6), (502000.0, 6e6), (502000.0, 6001000.0), (5e5, 6001000.0), (5e5, 6e6)]
    hole = [(500500.0, 6000200.0), (500600.0, 6000200.0), (500600.0, 6000300.0), (500500.0, 6000200.0)]
    bad = [(1e8, 0.0), (1e8 + 10, 0.0), (1e8 + 10, 10.0), (1e8, 0.0)]  # beyond PROJ's inverse: inf
    polys = [[sq], [sq, hole], [bad], [[(x - 2e5, y) for x, y in sq]]]
    many = m.many(polys)
    assert many == [m(p) for p in polys]
    assert many[1][0] == pytest.approx(many[0][0] - m([hole])[0], rel=1e-12)
    assert many[2] == (50.0, pytest.approx(34.142, abs=1e-3))  # flat, for that polygon only
    assert many[0][0] == pytest.approx(2e6 / 0.9996**2, rel=1e-3) and m.many([]) == []


def test_spill_beside_the_models_land_class_is_near_coast() -> None:
    """``near_coast`` counts the model's own land class (OSD ``land``, any id, found by name) next to a
    spill, as it counts masked land (255 that ``land`` says is land); land elsewhere flags nothing."""
    from dakd_edge.inference.vectorize import flag_spills, spills_from_mask
    from dakd_edge.meta import OSD_CLASSES, land_ids_of

    assert land_ids_of(OSD_CLASSES) == [4]
    assert land_ids_of(["Land_Mask", "oil", "sea"]) == [0] and land_ids_of(["background", "oil"]) == []
    cls = np.zeros((20, 30), np.uint8)
    cls[5:9, 5:10] = 1  # spill A: land class 4 right beside it (diagonal neighbour)
    cls[9:12, 10:14] = 4
    cls[5:9, 20:25] = 1  # spill B: land class 4 two pixels away (not adjacent)
    cls[5:9, 27:30] = 4
    cls[14:17, 5:10] = 1  # spill C: masked land (255, land) next to it
    cls[17:19, 5:10] = 255

    def read(r0, r1, c0, c1):
        return cls[r0:r1, c0:c1]

    def masked_land(r0, r1, c0, c1):
        return cls[r0:r1, c0:c1] == 255

    spills = spills_from_mask(lambda r0, r1, c0, c1: read(r0, r1, c0, c1) == 1, 20, 30)
    spills.sort(key=lambda s: (s.bbox_px[0], s.bbox_px[2]))
    assert [s.bbox_px for s in spills] == [(5, 9, 5, 10), (5, 9, 20, 25), (14, 17, 5, 10)]
    flag_spills(spills, read, [1], 20, 30, masked_land, land_ids=land_ids_of(OSD_CLASSES))
    assert [s.near_coast for s in spills] == [True, False, True]
    assert [s.touches_edge for s in spills] == [False, False, False]
    flag_spills(spills, read, [1], 20, 30, masked_land)  # no land class named: as before
    assert [s.near_coast for s in spills] == [False, False, True]
