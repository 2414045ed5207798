"""What a segmented scene writes, as its readers see it: the probabilities of its polygons, the report
file beside the returned report, the polygons' total area of a scene without any."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene

from .fake import FakeBackend, blob_scene, write_tif


def _pred() -> Predictor:
    return Predictor(FakeBackend(num_classes=2), tile=64, overlap=16, batch=4)


def test_polygon_probabilities_have_six_decimals_and_the_report_file_lists_itself(tmp_path: Path) -> None:
    """GeoJSON and GeoPackage give mean/max probability rounded to 6 decimals (multiples of 1/250, and
    means of them), not float32 noise; the report file's ``outputs`` names the report, as the report
    that segment_scene returns does."""
    import sqlite3

    src = tmp_path / "s.tif"
    write_tif(src, blob_scene(200, 260, seed=4))
    rep = tmp_path / "r.json"
    got = segment_scene(_pred(), src, tmp_path / "c.tif", vector=tmp_path / "v.geojson", report=rep)
    probs = [
        (f["properties"]["mean_prob"], f["properties"]["max_prob"])
        for f in json.loads((tmp_path / "v.geojson").read_text())["features"]
    ]
    segment_scene(_pred(), src, tmp_path / "c2.tif", vector=tmp_path / "v.gpkg")
    con = sqlite3.connect(tmp_path / "v.gpkg")
    try:
        table = con.execute("SELECT table_name FROM gpkg_contents").fetchone()[0]
        probs += con.execute(f"SELECT mean_prob, max_prob FROM {table}").fetchall()
    finally:
        con.close()
    assert len(probs) >= 4
    for mean, top in probs:
        assert mean == round(mean, 6) and top == round(top, 6)
        assert round(top * 250) == pytest.approx(top * 250, abs=1e-9)  # a multiple of 1/250
    written = json.loads(rep.read_text())
    assert written["outputs"] == got["outputs"] and written["outputs"]["report"] == str(rep)


def test_spills_area_is_a_float_without_spills(tmp_path: Path) -> None:
    """``round(sum([]), 1)`` is the integer 0: the report said 0 for no spills and 12.5 for some."""
    src = tmp_path / "s.tif"
    write_tif(src, np.full((128, 128), 150, np.uint8))
    rep = tmp_path / "r.json"
    got = segment_scene(_pred(), src, tmp_path / "c.tif", vector=tmp_path / "v.geojson", report=rep)
    assert got["spills"] == 0
    assert isinstance(got["spills_area_m2"], float) and got["spills_area_m2"] == 0.0
    assert '"spills_area_m2": 0.0,' in rep.read_text()


def test_a_sentinel1_reports_utc_times_and_its_footprint_cut_at_180(tmp_path: Path) -> None:
    """The report's ``product`` gave the annotation's times without a zone (2021-06-01T04:30:00.000000,
    local time to any ISO reader) and, on the antimeridian, only the raw footprint ring (longitudes
    jumping 179.99 / -179.99): now its times end in Z, and ``footprint_geojson`` is that ring cut at
    180 as the GeoJSON outputs cut polygons (the raw ring stays, for compatibility)."""
    shapely = pytest.importorskip("shapely")
    from dakd_edge.data.sentinel1 import build_synthetic_product

    p = build_synthetic_product(
        tmp_path / "src", shape=(160, 240), seed=0, pols=("VV",), center=(55.0, 179.9995)
    )
    got = segment_scene(_pred(), p.path, tmp_path / "c.tif")
    product = got["product"]
    assert product["start_time"] == "2021-06-01T04:30:00.000000Z"
    assert product["stop_time"].endswith("Z") and product["stop_time"] > product["start_time"]
    lons = [x for x, _ in product["footprint"]]
    assert max(lons) > 179.99 and min(lons) < -179.99  # the raw ring, as before
    foot = product["footprint_geojson"]
    geom = shapely.geometry.shape(foot)
    assert foot["type"] == "MultiPolygon" and geom.is_valid and len(geom.geoms) == 2
    assert (
        sorted(g.bounds[0] for g in geom.geoms)[0] == -180.0 and max(g.bounds[2] for g in geom.geoms) == 180.0
    )
    ring = shapely.Polygon([(x % 360.0, y) for x, y in product["footprint"]])
    back = shapely.union_all(
        [shapely.affinity.translate(g, 360.0 if g.bounds[2] <= 0 else 0.0) for g in geom.geoms]
    )
    assert back.symmetric_difference(ring).area < 1e-6 * ring.area  # at 1e-9 degree
    json.dumps(got)  # the report is still plain JSON
