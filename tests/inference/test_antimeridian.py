"""Sentinel-1 scenes on the antimeridian (Bering Sea, Chukchi Sea, Fiji), end to end: the per-scene
GeoJSON cuts polygons at +-180 (RFC 7946) instead of spanning the globe, the GeoPackage stays in UTM,
areas stay geodesic, ``--geocode`` places every pixel, and the batch layer merges two overlapping
antimeridian scenes into compact polygons with the right geodesic area."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Transformer

from dakd_edge.data.sentinel1 import build_synthetic_product, open_product
from dakd_edge.inference.segment import segment_scene
from dakd_edge.inference.vectorize import oil_spills, write_vector
from tests.inference.test_sentinel1_segment import _pred, grid_lonlat

shapely = pytest.importorskip("shapely")

GEOD = Geod(ellps="WGS84")
SHAPE = (160, 240)  # 1.6 x 2.4 km at 10 m; heading -166: columns run (almost) west
# dark 30 x 30 px squares (rows, cols): at the scene centre, ~850 m west of it, ~1 km east of it
SQUARES = {"mid": (65, 95, 105, 135), "west": (65, 95, 190, 220), "east": (65, 95, 20, 50)}
CENTERS = {"a": (55.0, 179.9995), "b": (55.0, -179.9995)}  # 64 m apart; both cross 180


def _product(root: Path, center: tuple[float, float]) -> Path:
    """A small generated SAFE: uniform sea (sigma0 0.1) with dark squares (0.002), written through the
    product's own calibration LUT (as ``product_with_square`` does, at a tenth of its size)."""
    p = build_synthetic_product(root, shape=SHAPE, seed=0, pols=("VV",), center=center)
    with open_product(p.path) as prod:
        a = prod.calibration.window(0, prod.height, 0, prod.width)
    sigma0 = np.full(a.shape, 0.1)
    for r0, r1, c0, c1 in SQUARES.values():
        sigma0[r0:r1, c0:c1] = 0.002
    dn = np.clip(np.rint(np.sqrt(sigma0) * a), 1, 65535).astype(np.uint16)
    with rasterio.open(next((p.path / "measurement").glob("*-vv-*.tiff")), "r+") as ds:
        ds.write(dn, 1)
    return p.path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Two overlapping antimeridian products, each segmented to GeoJSON and GeoPackage."""
    out = {}
    for sid, center in CENTERS.items():
        d = tmp_path_factory.mktemp(f"am_{sid}")
        safe = _product(d, center)
        kw = dict(land_mask="none", min_area="100px")
        report = segment_scene(_pred(), safe, d / "c.tif", vector=d / "v.geojson", report=d / "r.json", **kw)
        segment_scene(_pred(), safe, d / "c2.tif", vector=d / "v.gpkg", **kw)
        out[sid] = {"safe": safe, "report": report, "geojson": d / "v.geojson", "gpkg": d / "v.gpkg"}
    return out


def _polygons(geometry: dict[str, Any]) -> list[list[np.ndarray]]:
    coords = geometry["coordinates"]
    polys = [coords] if geometry["type"] == "Polygon" else coords
    return [[np.asarray(r, np.float64) for r in poly] for poly in polys]


def _geodesic_area(polys: list[list[np.ndarray]]) -> float:
    """m^2 of lon/lat polygons (exterior minus holes), on the WGS84 ellipsoid."""
    total = 0.0
    for poly in polys:
        for i, r in enumerate(poly):
            a = abs(GEOD.polygon_area_perimeter(r[:, 0], r[:, 1])[0])
            total += a if i == 0 else -a
    return total


def _signed(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _unwrapped_centroid(polys: list[list[np.ndarray]]) -> tuple[float, float]:
    """Area-weighted centroid of exteriors whose longitudes are moved to [0, 360)."""
    acc = np.zeros(3)
    for poly in polys:
        r = poly[0].copy()
        r[:, 0] = np.where(r[:, 0] < 0, r[:, 0] + 360.0, r[:, 0])
        x, y = r[:, 0], r[:, 1]
        cross = x[:-1] * y[1:] - x[1:] * y[:-1]
        acc += [((x[:-1] + x[1:]) * cross).sum() / 6, ((y[:-1] + y[1:]) * cross).sum() / 6, cross.sum() / 2]
    return acc[0] / acc[2], acc[1] / acc[2]


def _gpkg_polygons(path: Path) -> tuple[list[Any], int]:
    con = sqlite3.connect(path)
    try:
        blobs = [bytes(b) for (b,) in con.execute("SELECT geom FROM oil_spills ORDER BY fid")]
        (srs,) = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()
    finally:
        con.close()
    return [shapely.from_wkb(b[8 + 32 :]) for b in blobs], srs


def _utm_union_geodesic(polys: list[Any], srs: int) -> float:
    """Independent reference: union in UTM (never cut), densified to 5 m, then its geodesic area with
    longitudes unwrapped to [0, 360) (pyproj's Geod takes them)."""
    tr = Transformer.from_crs(f"EPSG:{srs}", "EPSG:4326", always_xy=True)
    total = 0.0
    for p in shapely.get_parts(shapely.union_all(polys).segmentize(5.0)):
        for i, ring in enumerate([p.exterior, *p.interiors]):
            lon, lat = tr.transform(*np.asarray(ring.coords).T)
            a = abs(GEOD.polygon_area_perimeter(np.where(lon < 0, lon + 360.0, lon), lat)[0])
            total += a if i == 0 else -a
    return total


def test_segment_geojson_cut_at_antimeridian(scenes: dict[str, dict[str, Any]]) -> None:
    """A slick straddling 180 is a MultiPolygon cut at +-180 with an RFC 7946 bbox (west > east);
    slicks wholly on either side of it in the same (crossing) scene stay compact Polygons."""
    s = scenes["a"]
    feats = json.loads(s["geojson"].read_text())["features"]
    assert len(feats) == s["report"]["spills"] == 3
    with open_product(s["safe"]) as prod:
        lons = np.array([g.x for g in prod.gcps])
    assert lons.max() > 179.98 and lons.min() < -179.98, "the scene itself crosses 180"
    found = []
    for f in feats:
        polys = _polygons(f["geometry"])
        for r in (r for poly in polys for r in poly):
            assert r[:, 0].min() >= -180.0 and r[:, 0].max() <= 180.0
            assert np.ptp(r[:, 0]) < 0.01, "no ring spans the globe"
        found.append((f, polys, *_unwrapped_centroid(polys)))
    for _, polys, _, _ in found:
        assert all(_signed(poly[0]) > 0 for poly in polys), "exteriors counterclockwise (right-hand rule)"
    by_side = {}
    for name, (r0, r1, c0, c1) in SQUARES.items():  # each square: the polygon nearest to it
        # pixel centres at annotation line/pixel: rows r0..r1-1 centre on (r0 + r1 - 1) / 2
        want_lon, want_lat = grid_lonlat(
            s["safe"], np.array([(r0 + r1 - 1) / 2]), np.array([(c0 + c1 - 1) / 2])
        )
        dist = [GEOD.inv(lon, lat, float(want_lon[0]), float(want_lat[0]))[2] for *_, lon, lat in found]
        print(f"{name}: centroid {min(dist):.3f} m from the geolocation grid's square")
        assert min(dist) < 2.0, f"{name}: centroid {min(dist):.1f} m from the geolocation grid's square"
        by_side[name] = found[int(np.argmin(dist))]
    assert len({id(v[0]) for v in by_side.values()}) == 3
    for name, (f, polys, _, _) in by_side.items():
        area = f["properties"]["area_m2"]  # UTM of the scene centre
        assert _geodesic_area(polys) == pytest.approx(area, rel=2e-3)
        assert area == pytest.approx(30 * 30 * 100.0, rel=0.01)
        west, south, east, north = f["bbox"]
        assert south == pytest.approx(min(p[0][:, 1].min() for p in polys), abs=1e-9)
        assert north == pytest.approx(max(p[0][:, 1].max() for p in polys), abs=1e-9)
        if name == "mid":
            assert f["geometry"]["type"] == "MultiPolygon" and len(polys) == 2
            xs = sorted((p[0][:, 0].min(), p[0][:, 0].max()) for p in polys)
            assert xs[0][0] == -180.0 and xs[1][1] == 180.0, "pieces meet at -180 and +180 exactly"
            assert 179.99 < west < 180.0 and -180.0 < east < -179.99, "bbox crosses: west > east"
        else:
            assert f["geometry"]["type"] == "Polygon"
            assert west < east and np.sign(west) == np.sign(east) == (1 if name == "west" else -1)
    total = sum(f["properties"]["area_m2"] for f in feats)
    assert s["report"]["oil_area_m2"] == pytest.approx(total, rel=5e-3)


def test_segment_gpkg_stays_in_utm(scenes: dict[str, dict[str, Any]]) -> None:
    """The GeoPackage is in the UTM zone of the scene centre (-179.9995: zone 1), continuous across 180:
    compact, with the same areas as the GeoJSON's properties."""
    polys, srs = _gpkg_polygons(scenes["b"]["gpkg"])
    assert srs == 32601 and len(polys) == 3
    for p in polys:
        x0, y0, x1, y1 = p.bounds
        assert x1 - x0 < 400 and y1 - y0 < 400
        assert p.area == pytest.approx(30 * 30 * 100.0, rel=0.01)
    from pyproj import Proj, Transformer

    feats = json.loads(scenes["b"]["geojson"].read_text())["features"]
    got = sorted(f["properties"]["area_m2"] for f in feats)
    # area_m2 is on the ellipsoid: the flat UTM area over the zone's areal scale there
    tr, proj = Transformer.from_crs(32601, 4326, always_xy=True), Proj("EPSG:32601")
    flat = sorted(
        p.area / proj.get_factors(*tr.transform(p.centroid.x, p.centroid.y)).areal_scale for p in polys
    )
    assert got == pytest.approx(flat, rel=1e-6)


def test_batch_layer_merges_antimeridian_scenes(scenes: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Two overlapping antimeridian scenes (64 m apart): each square of one overlaps its twin in the
    other, so the layer holds 3 features of 2 scenes each, compact, cut at +-180, with the geodesic
    area of the union (reference: the union of the UTM polygons, never cut)."""
    import pyarrow.parquet as pq

    from dakd_edge.batch.layer import merge, read_layer, read_parts, write_layer

    parts = []
    for sid, s in scenes.items():
        got, unplaced = read_parts(s["geojson"], {"id": sid, "platform": "S1A"})
        assert unplaced == 0 and len(got) == 3
        parts += got
    feats = merge(parts)
    assert len(feats) == 3 and all(f["scene_ids"] == "a,b" and f["n_parts"] == 2 for f in feats)
    (pa, srs_a), (pb, srs) = _gpkg_polygons(scenes["a"]["gpkg"]), _gpkg_polygons(scenes["b"]["gpkg"])
    assert (srs_a, srs) == (32660, 32601), "the two scenes' centres lie in different UTM zones"
    to_b = Transformer.from_crs(f"EPSG:{srs_a}", f"EPSG:{srs}", always_xy=True)
    pa = [shapely.transform(p.segmentize(5.0), lambda xy: np.column_stack(to_b.transform(*xy.T))) for p in pa]
    refs = []
    for p in pa:
        twin = next(q for q in pb if p.intersects(q))
        refs.append(_utm_union_geodesic([p, twin], srs))
    assert sorted(f["area_m2"] for f in feats) == pytest.approx(sorted(refs), rel=1e-4)
    assert all(30 * 30 * 100 * 1.1 < a < 30 * 30 * 100 * 1.5 for a in refs), "overlapping, not equal"
    cut = [f for f in feats if len(f["geometry"].geoms) == 2]
    assert len(cut) == 1
    for f in feats:
        for p in f["geometry"].geoms:
            x0, _, x1, _ = p.bounds
            assert -180.0 <= x0 and x1 <= 180.0 and x1 - x0 < 0.01
    bounds = sorted(p.bounds[0] for p in cut[0]["geometry"].geoms)
    assert bounds[0] < -179.99 and bounds[1] > 179.99
    for fmt in ("gpkg", "parquet"):
        path = tmp_path / f"spills.{fmt}"
        write_layer(path, feats)
        back = read_layer(path)
        assert [round(r["area_m2"], 3) for r in back] == [round(f["area_m2"], 3) for f in feats]
        for r, f in zip(back, feats, strict=True):
            assert shapely.equals(shapely.from_wkb(r["geometry"]), f["geometry"])
    geo = json.loads(pq.read_schema(tmp_path / "spills.parquet").metadata[b"geo"])
    west, south, east, north = geo["columns"]["geometry"]["bbox"]
    assert 179.98 < west < 180.0 and -180.0 < east < -179.98, "RFC 7946 bbox across 180: west > east"
    assert 54.9 < south < north < 55.1


def test_layer_cuts_polygons_written_across_the_globe(tmp_path: Path) -> None:
    """A per-scene GeoJSON written before the cut (a ring jumping +179.99 -> -179.99, or longitudes
    past 180) is read as the small polygon it is: cut at +-180, with its geodesic area."""
    from dakd_edge.batch.layer import merge, read_parts

    lon = np.array([179.995, -179.995, -179.995, 179.995, 179.995])  # 0.01 deg x 0.01 deg at 55 N
    lat = np.array([55.0, 55.0, 55.01, 55.01, 55.0])
    want = abs(GEOD.polygon_area_perimeter(np.where(lon < 0, lon + 360, lon), lat)[0])
    assert want == pytest.approx(0.01 * 63_900 * 0.01 * 111_300, rel=0.01)
    for name, xs in (("wrapped", lon), ("past180", np.where(lon < 0, lon + 360, lon))):
        ring = np.column_stack([xs, lat]).tolist()
        doc = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
             "properties": {"id": 1, "area_m2": want, "mean_prob": 0.9, "max_prob": 0.95}},
        ]}  # fmt: skip
        (tmp_path / f"{name}.geojson").write_text(json.dumps(doc))
        parts, _ = read_parts(tmp_path / f"{name}.geojson", {"id": name})
        g = parts[0].geom
        assert g.geom_type == "MultiPolygon" and len(g.geoms) == 2
        assert sorted(p.bounds[0] for p in g.geoms) == pytest.approx([-180.0, 179.995], abs=1e-9)
        assert all(p.bounds[2] - p.bounds[0] == pytest.approx(0.005, abs=1e-9) for p in g.geoms)
        (f,) = merge(parts)
        assert f["area_m2"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("lon0", [-179.9785, 179.9785], ids=["east_of_180", "west_of_180"])
def test_geocode_scene_near_but_not_across(tmp_path: Path, lon0: float) -> None:
    """A scene that ends just short of 180 but whose north-up UTM grid reaches past it: every grid
    pixel samples the source pixel its own centre falls in (the lattice interpolation matches an
    exact per-pixel mapping), and its polygons stay compact Polygons on their side."""
    import dakd_edge.inference.geocode as gc

    safe = _product(tmp_path, (55.0, lon0))
    with open_product(safe) as prod:
        lons = np.array([g.x for g in prod.gcps])
    assert np.all(np.sign(lons) == np.sign(lon0)) and np.abs(lons).max() > 179.999, "near, not across"
    kw = dict(land_mask="none", geocode=True, min_area="100px")
    segment_scene(_pred(), safe, tmp_path / "g.tif", vector=tmp_path / "v.geojson", **kw)
    with rasterio.open(tmp_path / "g.tif") as ds:
        got, t, crs = ds.read(1), ds.transform, ds.crs
    x, y = t @ (np.array([0, ds.width, ds.width, 0]), np.array([0, 0, ds.height, ds.height]))
    corners, _ = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    assert np.any(np.sign(corners) != np.sign(lon0)), "the UTM grid itself reaches past 180"
    exact = tmp_path / "exact.tif"
    lattice = gc.LATTICE
    try:
        gc.LATTICE = 1  # every output pixel located on its own
        segment_scene(_pred(), safe, exact, land_mask="none", geocode=True, polygons=False)
    finally:
        gc.LATTICE = lattice
    with rasterio.open(exact) as ds:
        want = ds.read(1)
    assert (want != 255).sum() == pytest.approx(SHAPE[0] * SHAPE[1], rel=0.01)
    assert int((got != want).sum()) <= 3, "lattice interpolation = per-pixel mapping (rounding aside)"
    assert (got == 1).sum() == pytest.approx(3 * 30 * 30, rel=0.05)
    for f in json.loads((tmp_path / "v.geojson").read_text())["features"]:
        assert f["geometry"]["type"] == "Polygon"
        ring = np.asarray(f["geometry"]["coordinates"][0])
        assert np.all(np.sign(ring[:, 0]) == np.sign(lon0)) and np.ptp(ring[:, 0]) < 0.01


@pytest.mark.parametrize(
    "crs",
    ["EPSG:4326", "EPSG:32660", "EPSG:3832"],
    ids=["lonlat_past_180", "utm60", "pdc_mercator"],
)
def test_geojson_from_any_crs_across_180(tmp_path: Path, crs: str) -> None:
    """Polygons of a GeoTIFF scene whose grid crosses 180 (lon/lat past 180, UTM, a Pacific-centred
    Mercator) are cut at +-180 in the GeoJSON, with a hole that itself straddles 180 kept as holes,
    and the geodesic area of the uncut polygon."""
    res = 0.0002 if crs == "EPSG:4326" else 12.0
    x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(180.0, 55.0)
    t = Affine(res, 0.0, x - 25.3 * res, 0.0, -res, y + 20 * res)  # 180 degrees at column 25.3
    cls = np.zeros((40, 60), np.uint8)
    cls[5:35, 5:55] = 1  # straddles 180
    cls[15:25, 15:35] = 0  # a hole that straddles it too
    (spill,) = oil_spills(cls, 1, t, crs)
    doc = json.loads(write_vector(tmp_path / "v.geojson", [spill], crs).read_text())
    f = doc["features"][0]
    polys = _polygons(f["geometry"])
    assert f["geometry"]["type"] == "MultiPolygon" and len(polys) == 2
    for poly in polys:
        assert len(poly) == 1, "the straddling hole becomes a notch in each piece"
        assert -180.0 <= poly[0][:, 0].min() and poly[0][:, 0].max() <= 180.0 and np.ptp(poly[0][:, 0]) < 0.02
        assert shapely.Polygon(poly[0]).is_valid
    uncut = 0.0  # reference: the uncut rings, longitudes unwrapped to [0, 360)
    tr = Transformer.from_crs(crs, 4326, always_xy=True)
    for i, ring in enumerate(spill.rings):
        lon, lat = tr.transform(*np.asarray(ring).T)
        a = abs(GEOD.polygon_area_perimeter(np.where(lon < 0, lon + 360.0, lon), lat)[0])
        uncut += a if i == 0 else -a
    assert _geodesic_area(polys) == pytest.approx(uncut, rel=1e-6)  # a cut vertex on a 600 m edge
    if crs == "EPSG:4326":  # geographic CRS: the spill's own area is geodesic too
        assert spill.area_m2 == pytest.approx(uncut, rel=1e-7)
    assert spill.area_px == 30 * 50 - 10 * 20
    assert f["bbox"][0] > f["bbox"][2]


def test_footprint_wkt_is_cut_at_180(scenes: dict[str, dict[str, Any]]) -> None:
    """``info``'s footprint WKT of an antimeridian product: two pieces on either side of 180, not a
    ring spanning the globe; a product away from 180 keeps its plain POLYGON."""
    with open_product(scenes["a"]["safe"]) as prod:
        wkt = prod.meta.footprint_wkt()
    g = shapely.from_wkt(wkt)
    assert wkt.startswith("MULTIPOLYGON") and len(g.geoms) == 2
    assert all(np.ptp(np.asarray(p.exterior.coords)[:, 0]) < 0.05 for p in g.geoms)
    assert {round(b) for p in g.geoms for b in (p.bounds[0], p.bounds[2])} >= {-180, 180}
    with open_product(build_synthetic_product(scenes["a"]["safe"].parent / "off", shape=SHAPE, seed=0,
                                              pols=("VV",), center=(55.0, 170.0)).path) as prod:  # fmt: skip
        assert prod.meta.footprint_wkt().startswith("POLYGON ((")


def test_report_names_the_outputs_crs(scenes: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A GCP product's input ``crs`` is null; ``output_crs`` says where its outputs are: rasters on the
    GCPs (or, geocoded, on the UTM grid of the polygons), the GeoPackage in the UTM zone of its centre (60: 179.9995 E)."""
    r = scenes["a"]["report"]
    assert r["crs"] is None
    assert r["output_crs"] == {"rasters": "EPSG:4326 (GCPs)", "gpkg": "EPSG:32660", "geojson": "EPSG:4326"}
    g = segment_scene(_pred(), scenes["a"]["safe"], tmp_path / "g.tif", geocode=True, land_mask="none")
    assert g["output_crs"]["rasters"] == "EPSG:32660"
    with rasterio.open(tmp_path / "g.tif") as ds:
        assert ds.crs.to_epsg() == 32660
