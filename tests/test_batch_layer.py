"""The merged layer of `dakd-edge batch` at archive scale: what a rebuild may skip, and that the fast
paths build the same features as the plain ones. No Ray: layer and runner's ``_Layer`` alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

shapely = pytest.importorskip("shapely")

from dakd_edge.batch import layer as layer_mod  # noqa: E402
from dakd_edge.batch import runner  # noqa: E402
from dakd_edge.batch.layer import Memo, Part, merge, read_layer, read_parts  # noqa: E402
from dakd_edge.batch.manifest import scene_outputs  # noqa: E402
from dakd_edge.errors import OutputError  # noqa: E402

box = shapely.geometry.box
PROPS = {"area_m2": 100.0, "mean_prob": 0.8, "max_prob": 0.9}


def _part(sid: str, geom, fid: int) -> Part:
    return Part(sid, None, "S1A", geom, {"id": fid, **PROPS})


def _counting_features(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = layer_mod._feature

    def counted(group, *args):
        calls.append([p.scene_id for p in group])
        return real(group, *args)

    monkeypatch.setattr(layer_mod, "_feature", counted)
    return calls


def test_a_rebuild_computes_only_the_groups_its_new_scenes_make(monkeypatch) -> None:
    a, b, c = _part("a", box(0, 0, 1, 1), 1), _part("b", box(0.5, 0, 2, 1), 1), _part("c", box(5, 5, 6, 6), 1)
    calls = _counting_features(monkeypatch)
    memo = Memo()
    first = merge([a, b, c], memo)
    assert calls == [["a", "b"], ["c"]]
    d, e = _part("d", box(5.5, 5, 7, 6), 1), _part("e", box(9, 9, 10, 10), 1)  # d joins c; e alone
    second = merge([a, b, c, d, e], memo)
    assert calls[2:] == [["c", "d"], ["e"]]
    assert second[0] is first[0]  # a-b: kept from the first merge
    assert [f["scene_ids"] for f in second] == ["a,b", "c,d", "e"]
    assert len(memo.features) == 3  # the group {c} alone is gone from the memo
    plain = merge([a, b, c, d, e])
    assert [{k: v for k, v in f.items() if k != "geometry"} for f in plain] == [
        {k: v for k, v in f.items() if k != "geometry"} for f in second
    ]
    assert all(
        shapely.equals_exact(f["geometry"], g["geometry"], 0) for f, g in zip(plain, second, strict=True)
    )


def _scene(out: Path, sid: str, geoms: list, sha: str) -> dict:
    path = scene_outputs(out, sid)["vector"]
    path.parent.mkdir(parents=True, exist_ok=True)
    feats = [
        {
            "type": "Feature",
            "id": i,
            "geometry": shapely.geometry.mapping(g),
            "properties": {"id": i, **PROPS},
        }
        for i, g in enumerate(geoms, 1)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return {"id": sid, "status": "ok", "sha256": {"vector": sha}}


@pytest.fixture()
def writes(monkeypatch) -> list[int]:
    """Features of each write_layer call of the runner."""
    calls: list[int] = []
    real = runner.write_layer

    def counted(path, features, *args):
        calls.append(len(features))
        real(path, features, *args)

    monkeypatch.setattr(runner, "write_layer", counted)
    return calls


def test_unchanged_scenes_are_not_written_again_and_a_rerun_scene_replaces_its_parts(
    tmp_path, writes
) -> None:
    out = tmp_path / "batch"
    finished = {
        "a": _scene(out, "a", [box(0, 0, 1, 1), box(3, 0, 4, 1)], "sha-a"),
        "b": _scene(out, "b", [box(0.5, 0, 2, 1)], "sha-b"),
    }
    layer = runner._Layer(out, out / "spills.parquet")
    assert layer.build(finished) == 2 and writes == [2]
    assert layer.build(dict(finished)) == 2 and writes == [2]  # the layer on disk is this one
    (out / "spills.parquet").unlink()
    assert layer.build(finished) == 2 and writes == [2, 2]  # ... unless it is gone
    finished["a"] = _scene(out, "a", [box(5, 5, 6, 6)], "sha-a2")  # run again: other polygons
    assert layer.build(finished) == 2 and writes == [2, 2, 2]
    assert sorted(layer.cache) == [("a", "sha-a2"), ("b", "sha-b")]
    assert [f["scene_ids"] for f in read_layer(out / "spills.parquet")] == ["a", "b"]


def test_a_layer_file_replaced_since_the_last_build_is_written_again(tmp_path, writes) -> None:
    """The unchanged-skip trusts only the file this run wrote: one copied over it (another layer, an
    older one) is replaced by the build, as a fresh build would."""
    import os
    import shutil

    out = tmp_path / "batch"
    finished = {
        "a": _scene(out, "a", [box(0, 0, 1, 1)], "sha-a"),
        "b": _scene(out, "b", [box(0.5, 0, 2, 1)], "sha-b"),
    }
    layer = runner._Layer(out, out / "spills.gpkg")
    assert layer.build(finished) == 1 and writes == [1]
    other = runner._Layer(out, tmp_path / "other.gpkg")
    other.build({"a": finished["a"]})
    before = os.stat(out / "spills.gpkg")
    shutil.copyfile(tmp_path / "other.gpkg", out / "spills.gpkg")  # in place: the same inode
    os.utime(out / "spills.gpkg", ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert layer.build(finished) == 1 and writes == [1, 1, 1]
    assert [f["scene_ids"] for f in read_layer(out / "spills.gpkg")] == ["a,b"]
    assert layer.build(finished) == 1 and writes == [1, 1, 1]  # now it is this build's file again


def test_a_periodic_rebuild_waits_four_times_as_long_as_the_last_one_took(
    tmp_path, writes, monkeypatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    real = runner.merge

    def slow_merge(*args):  # a rebuild of 10 s
        clock[0] += 10.0
        return real(*args)

    monkeypatch.setattr(runner, "merge", slow_merge)
    out = tmp_path / "batch"
    layer = runner._Layer(out, out / "spills.gpkg")
    finished = {}
    for i, (at, built) in enumerate([(29.0, 0), (30.0, 1), (75.0, 1), (80.0, 2), (120.0, 2), (130.0, 3)]):
        finished[f"s{i}"] = _scene(out, f"s{i}", [box(i, 0, i + 0.5, 1)], f"sha{i}")
        clock[0] = at
        layer.maybe(finished, 30.0)
        assert len(writes) == built, (at, writes)
    assert layer.took == 10.0


def _geojson(tmp_path: Path, geometries: list[dict]) -> Path:
    feats = [{"type": "Feature", "geometry": g, "properties": {"id": i}} for i, g in enumerate(geometries, 1)]
    p = tmp_path / "s_spills.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return p


def test_read_parts_builds_the_geometries_shape_builds(tmp_path) -> None:
    """The vectorised reader gives the geometry ``shape`` (then the cut at 180, then make_valid) gives."""
    ring = [[10.0, 60.0], [10.001, 60.0], [10.001, 60.001], [10.0, 60.001], [10.0, 60.0]]
    hole = [
        [10.0002, 60.0002],
        [10.0002, 60.0004],
        [10.0004, 60.0004],
        [10.0004, 60.0002],
        [10.0002, 60.0002],
    ]
    geoms = [
        {"type": "Polygon", "coordinates": [ring, hole]},
        {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 2]]]},  # integers
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # bow-tie: invalid
        {"type": "Polygon", "coordinates": [[[179.9, 1], [-179.9, 1], [-179.9, 2], [179.9, 2], [179.9, 1]]]},
        {"type": "MultiPolygon", "coordinates": [[[[179, 0], [180, 0], [180, 1], [179, 0]]]]},
    ]
    parts, unplaced = read_parts(_geojson(tmp_path, geoms), {"id": "s"})
    want = [layer_mod._cut_wide(shapely.geometry.shape(g)) for g in geoms]
    want = [g if g.is_valid else shapely.make_valid(g) for g in want]
    assert unplaced == 0 and [p.props["id"] for p in parts] == [1, 2, 3, 4, 5]
    assert [shapely.to_wkb(p.geom) for p in parts] == [shapely.to_wkb(g) for g in want]
    assert [p.geom.geom_type for p in parts] == [
        "Polygon",
        "Polygon",
        "MultiPolygon",
        "MultiPolygon",
        "MultiPolygon",
    ]


def test_a_malformed_polygon_fails_as_shape_fails(tmp_path) -> None:
    geoms = [
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0]]]},  # 2 points: no ring
    ]
    with pytest.raises(ValueError) as shape_error:
        shapely.geometry.shape(geoms[1])
    with pytest.raises(OutputError) as e:
        read_parts(_geojson(tmp_path, geoms), {"id": "s"})
    assert str(e.value) == f"{tmp_path / 's_spills.geojson'}: cannot read (ValueError: {shape_error.value})"


def test_geodesic_area_is_pyprojs_to_the_last_bit() -> None:
    from pyproj import Geod

    outer = shapely.geometry.polygon.orient(box(10, 60, 10.01, 60.01) - box(10.002, 60.002, 10.004, 60.004))
    geom = shapely.MultiPolygon([outer, box(10.02, 60.0, 10.03, 60.005)])  # with a hole; two pieces
    assert layer_mod._geodesic_area(geom) == abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    assert round(layer_mod._geodesic_area(geom), 3) == 907539.214


def test_joined_longitude_spans_give_lon_span_of_all() -> None:
    """GeoParquet's bbox: ``lon_span`` of the intervals joined in numpy is ``lon_span`` of them all."""
    import numpy as np

    from dakd_edge.lonlat import lon_span

    spans = [(170.0, 175.0), (-180.0, -170.0), (174.0, 180.0), (10.0, 20.0), (12.0, 15.0), (20.0, 21.0)]
    west, east = (np.array(v) for v in zip(*spans, strict=True))
    joined = layer_mod._overlapping_spans(west, east)
    assert joined == [(-180.0, -170.0), (10.0, 21.0), (170.0, 180.0)]
    assert lon_span(joined) == lon_span(spans) == (10.0, -170.0)  # west > east: across 180
    rng = np.random.default_rng(3)
    for _ in range(50):
        w = rng.uniform(-180, 170, 40).round(1)
        e = np.minimum(w + rng.uniform(0, 30, 40).round(1), 180.0)
        want = lon_span(list(zip(w.tolist(), e.tolist(), strict=True)))
        assert lon_span(layer_mod._overlapping_spans(w, e)) == want


def test_only_scenes_of_one_pass_merge() -> None:
    """Consecutive products of a datatake (25 s apart) and a reprocessed twin merge; the same slick 12
    days later, or on the next orbit, is another observation; scenes without a time merge as before."""
    g1, g2 = box(0, 0, 1, 1), box(0.5, 0, 2, 1)

    def at(sid: str, t: str | None, g) -> Part:
        return Part(sid, t, "S1A", g, {"id": 1, **PROPS})

    def scene_ids(a: str | None, b: str | None) -> list[str]:
        return [f["scene_ids"] for f in merge([at("a", a, g1), at("b", b, g2)])]

    assert scene_ids("2021-12-23T05:11:22.5", "2021-12-23T05:11:47.1") == ["a,b"]  # next product
    assert scene_ids("2021-12-23T05:11:22", "2021-12-23T05:11:22") == ["a,b"]  # a twin
    assert scene_ids("2021-12-23T05:11:22", "2022-01-04T05:11:20") == ["a", "b"]  # 12 days later
    assert scene_ids("2021-12-23T05:11:22Z", "2021-12-23T06:49:30+00:00") == ["a", "b"]  # next orbit
    assert scene_ids(None, "2021-12-23T05:11:22") == ["a,b"]  # a GeoTIFF without a time
    assert scene_ids("not a time", "2022-01-04T05:11:20") == ["a,b"]
    # a chain: a-b one pass, c on another date over both: two features, c alone
    parts = [at("a", "2021-12-23T05:11:22", g1), at("b", "2021-12-23T05:11:47", g2),
             at("c", "2022-01-04T05:11:22", box(0, 0, 2, 1))]  # fmt: skip
    assert [f["scene_ids"] for f in merge(parts)] == ["a,b", "c"]


@pytest.mark.parametrize(
    ("text", "fraction"),
    [
        ("2021-12-23T05:11:22.123456", 0.123456),  # a Sentinel-1 annotation
        ("2021-12-23T05:11:22.123Z", 0.123),
        ("2021-12-23T05:11:22.5", 0.5),
        ("2021-12-23T05:11:22.1234567Z", 0.123456),
        ("2021-12-23T05:11:22,25+00:00", 0.25),
        ("2021-12-23T06:11:22.5+0100", 0.5),
        ("2021-12-23T00:41:22-0430", 0.0),
        ("2021-12-23 05:11:22.1", 0.1),
    ],
)
def test_start_times_read_alike_on_every_python(text: str, fraction: float) -> None:
    """Python 3.10's ``fromisoformat`` reads only 3 or 6 digits of a second and no ``+hhmm``: such a
    time read as "none" would merge two dates (fails there before the fix; 3.11 reads them all)."""
    assert layer_mod._seconds(text) == pytest.approx(1640236282.0 + fraction, abs=1e-6)


def test_a_merged_feature_starts_at_its_earliest_time() -> None:
    """By time, not by string: 06:11+01:00 is 05:11 UTC, before 05:15:00 (UTC); written in UTC."""
    a = Part("a", "2021-12-23T05:15:00", "S1A", box(0, 0, 1, 1), {"id": 1, **PROPS})
    b = Part("b", "2021-12-23T06:11:00+01:00", "S1A", box(0.5, 0, 2, 1), {"id": 1, **PROPS})
    (f,) = merge([a, b])
    assert f["scene_ids"] == "a,b" and f["start_time"] == "2021-12-23T05:11:00.000000Z"


def test_a_scene_without_a_time_never_joins_two_dates() -> None:
    """A GeoTIFF without a time over a slick seen on two dates joins the first date (in scene order),
    not both: the two observations stay two features, whatever the pair order of the index."""
    g = box(0, 0, 1, 1)
    parts = [Part("a", "2021-12-23T05:11:22", "S1A", g, {"id": 1, **PROPS}),
             Part("c", "2022-01-04T05:11:22", "S1A", g, {"id": 1, **PROPS}),
             Part("x", None, None, g, {"id": 1, **PROPS})]  # fmt: skip
    assert [f["scene_ids"] for f in merge(parts)] == ["a,x", "c"]
    assert [f["scene_ids"] for f in merge(parts[::-1])] == ["a,x", "c"]
    untimed = [Part(s, None, None, g, {"id": 1, **PROPS}) for s in "pqr"]
    assert [f["scene_ids"] for f in merge(untimed)] == ["p,q,r"]  # no times at all: as before


# --- touches_edge of features merged across a seam ------------------------------------------------


def _edge_part(sid: str, geom, fid: int, touches: bool) -> Part:
    return Part(sid, None, "S1A", geom, {"id": fid, **PROPS, "touches_edge": touches})


def test_a_merged_feature_touches_the_edge_only_off_the_seam() -> None:
    """Two scenes overlapping in x 1.5-2: a slick cut by both edges inside the overlap touches no edge
    of the union (it was the OR of its parts); one reaching the top edge across the seam does, and so
    does a part flagged without reaching its raster edge (nodata inside its scene)."""
    outlines = {
        "a": layer_mod.Outline(box(0, 0, 2, 1), 0.01),
        "b": layer_mod.Outline(box(1.5, 0, 3.5, 1), 0.01),
    }
    seam = [
        _edge_part("a", box(1.0, 0.4, 2.0, 0.6), 1, True),
        _edge_part("b", box(1.5, 0.4, 2.5, 0.6), 1, True),
    ]
    top = [
        _edge_part("a", box(1.6, 0.8, 2.0, 1.0), 2, True),
        _edge_part("b", box(1.5, 0.8, 1.9, 1.0), 2, True),
    ]
    hole = [
        _edge_part("a", box(1.0, 0.1, 1.8, 0.3), 3, True),
        _edge_part("b", box(1.6, 0.1, 2.4, 0.3), 3, True),
    ]
    calm = [_edge_part("a", box(0.2, 0.1, 0.4, 0.3), 4, False)]
    for group, want in ((seam, False), (top, True), (hole, True), (calm, False)):
        (f,) = merge(group, outline=outlines.get)
        assert f["touches_edge"] is want, group
        (f,) = merge(group)  # without outlines: the OR of the parts, as before
        assert f["touches_edge"] is any(p.props["touches_edge"] for p in group)
    (f,) = merge(seam, outline={"a": outlines["a"]}.get)  # b has no outline (no georeference)
    assert f["touches_edge"] is True
    (f,) = merge(seam[:1], outline=outlines.get)  # one scene: its own flag (b saw no oil there)
    assert f["touches_edge"] is True
    (f,) = merge(seam, memo=Memo(), outline=outlines.get)
    assert f["touches_edge"] is False


def test_the_antimeridian_cut_of_a_scene_is_no_edge() -> None:
    """Scene a spans 179..181 (its outline and its parts cut at +-180): a slick across the cut and the
    seam with b (178.5..179.5) touches no edge."""
    multi = shapely.geometry.MultiPolygon
    a = layer_mod.Outline(multi([box(179, 0, 180, 1), box(-180, 0, -179, 1)]), 0.01)
    b = layer_mod.Outline(box(178.5, 0, 179.5, 1), 0.01)
    parts = [
        _edge_part("a", multi([box(179, 0.4, 180, 0.6), box(-180, 0.4, -179.8, 0.6)]), 1, True),
        _edge_part("b", box(178.8, 0.4, 179.5, 0.6), 1, True),
    ]
    (f,) = merge(parts, outline={"a": a, "b": b}.get)
    assert f["touches_edge"] is False and f["scene_ids"] == "a,b"


def test_scene_outline_follows_the_class_maps_georeference(tmp_path) -> None:
    """The raster's edge in lon/lat, mapped as its polygons are: the affine transform + CRS, or the
    GCPs; None without georeference or readable file."""
    import numpy as np
    import rasterio
    from pyproj import Transformer
    from rasterio.control import GroundControlPoint
    from rasterio.transform import from_origin

    from dakd_edge.data.landmask import make_georef
    from tests.inference.fake import write_tif

    data = np.zeros((120, 160), np.uint8)
    o = layer_mod.scene_outline(
        write_tif(tmp_path / "utm.tif", data, transform=from_origin(5e5, 6e6, 10.0, 10.0))
    )
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        [5e5, 5e5 + 1600, 5e5 + 1600, 5e5], [6e6, 6e6, 6e6 - 1200, 6e6 - 1200]
    )
    assert shapely.equals_exact(
        shapely.normalize(shapely.Polygon(o.geom.exterior.coords[::256])),
        shapely.normalize(shapely.Polygon(list(zip(lon, lat, strict=True)))),
        1e-9,
    )
    assert 10 / 111320 < o.pixel < 2 * 10 / 111320 / np.cos(np.radians(54.2))  # one pixel, in degrees
    gcps = [
        GroundControlPoint(row=r, col=c, x=14.0 + c * 1e-4 + r * 2e-5, y=41.0 - r * 9e-5 + c * 1e-5)
        for r in (0, 60, 120) for c in (0, 80, 160)
    ]  # fmt: skip
    path = tmp_path / "gcps.tif"
    prof = dict(driver="GTiff", height=120, width=160, count=1, dtype="uint8")
    with rasterio.open(path, "w", **prof, gcps=gcps, crs="EPSG:4326") as ds:
        ds.write(data, 1)
    o = layer_mod.scene_outline(path)
    lon, lat = make_georef(gcps=gcps).lonlat(np.array([0, 0, 120, 120]), np.array([0, 160, 160, 0]))
    assert np.allclose(np.asarray(o.geom.exterior.coords)[[0, 256, 512, 768]], np.c_[lon, lat], atol=1e-9)
    # the same GCPs in UTM metres (as co-registration tools write them): the same outline (was None)
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    utm = [GroundControlPoint(row=g.row, col=g.col, x=to_utm.transform(g.x, g.y)[0], y=to_utm.transform(g.x, g.y)[1])
           for g in gcps]  # fmt: skip
    with rasterio.open(tmp_path / "utm_gcps.tif", "w", **prof, gcps=utm, crs="EPSG:32633") as ds:
        ds.write(data, 1)
    o_utm = layer_mod.scene_outline(tmp_path / "utm_gcps.tif")
    assert o_utm is not None
    assert np.allclose(np.asarray(o_utm.geom.exterior.coords)[[0, 256, 512, 768]], np.c_[lon, lat], atol=1e-8)
    assert layer_mod.scene_outline(write_tif(tmp_path / "plain.tif", data, crs=None)) is None
    assert layer_mod.scene_outline(tmp_path / "missing.tif") is None


def test_scene_outline_of_an_affine_scene_across_the_antimeridian(tmp_path) -> None:
    """A UTM zone 60 raster across 180 degrees: its outline is cut at +-180 and its pixel step is one
    pixel in degrees (PROJ's wrapped longitudes made it a 360-degree jump: a tolerance of ~230 degrees,
    under which no seam contact could be told from the edge)."""
    import numpy as np
    from pyproj import Transformer
    from rasterio.transform import from_origin

    from tests.inference.fake import write_tif

    path = write_tif(
        tmp_path / "am.tif", np.zeros((400, 400), np.uint8),
        transform=from_origin(650000.0, 6650000.0, 100.0, 100.0), crs="EPSG:32660",
    )  # fmt: skip
    o = layer_mod.scene_outline(path)
    assert o.geom.geom_type == "MultiPolygon"
    assert 100 / 111320 < o.pixel < 2 * 100 / 111320 / np.cos(np.radians(60.0))
    to_ll = Transformer.from_crs("EPSG:32660", "EPSG:4326", always_xy=True)
    for x in (652000.0, 688000.0):  # inside the raster, west and east of 180
        assert o.geom.contains(shapely.Point(*to_ll.transform(x, 6630000.0)))


def test_a_layer_an_earlier_run_built_from_the_same_scenes_is_kept(tmp_path, writes, monkeypatch) -> None:
    """A resumed finished batch rebuilt its layer from every scene's GeoJSON (~15 s per 100 000
    polygons): ``layer.json`` now says what the layer on disk was built from, so a new run keeps it
    (and its warnings) while nothing changed, and rebuilds it when anything did."""
    out = tmp_path / "batch"
    finished = {
        "a": _scene(out, "a", [box(0, 0, 1, 1)], "sha-a"),
        "b": _scene(out, "b", [box(0.5, 0, 2, 1)], "sha-b"),
        "c": _scene(out, "c", [box(5, 5, 6, 6)], "sha-c"),
    }
    doc = json.loads(scene_outputs(out, "c")["vector"].read_text())
    scene_outputs(out, "c")["vector"].write_text(json.dumps({**doc, "note": "no georeference"}))
    path = out / "spills.gpkg"
    first = runner._Layer(out, path)
    assert first.build(finished) == 1 and writes == [1]
    reads: list[str] = []
    real = runner._Layer._read
    monkeypatch.setattr(
        runner._Layer, "_read", staticmethod(lambda v, r: reads.append(r["id"]) or real(v, r))
    )
    again = runner._Layer(out, path)
    assert again.build(finished) == 1 and writes == [1] and reads == []
    assert again.warnings == first.warnings and "no georeference" in again.warnings["c"]
    path.write_bytes(path.read_bytes())  # the file written since (by a GIS, a copy): rebuilt
    assert runner._Layer(out, path).build(finished) == 1 and writes == [1, 1] and len(reads) == 3
    assert runner._Layer(out, path).build(finished) == 1 and writes == [1, 1]
    monkeypatch.setattr(runner, "LAYER_VERSION", runner.LAYER_VERSION + 1)  # other merge rules
    assert runner._Layer(out, path).build(finished) == 1 and writes == [1, 1, 1]
    finished["b"] = _scene(out, "b", [box(3, 0, 4, 1)], "sha-b2")  # a scene run again
    assert runner._Layer(out, path).build(finished) == 2 and writes == [1, 1, 1, 2]
    assert runner._Layer(out, out / "spills.parquet").build(finished) == 2 and writes[-1] == 2  # --format


def test_scene_outline_of_sparse_utm_gcps_is_their_plane(tmp_path) -> None:
    """Three GCPs in UTM metres: the outline is the plane they span in UTM, as segment maps the polygons
    (it interpolated their longitude/latitude, off by ~13 px on a 2048 px 30 m scene)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from pyproj import Transformer
    from rasterio.control import GroundControlPoint

    n = 2048
    aff = Affine.translation(5.4e5, 4.48e6) * Affine.rotation(20) * Affine.scale(30, -30)
    gcps = [
        GroundControlPoint(row=r, col=c, x=(aff * (c, r))[0], y=(aff * (c, r))[1])
        for r, c in ((0, 0), (0, n), (n, 0))
    ]
    path = tmp_path / "sparse.tif"
    prof = dict(driver="GTiff", height=n, width=n, count=1, dtype="uint8", sparse_ok=True, tiled=True)
    with rasterio.open(path, "w", **prof, gcps=gcps, crs="EPSG:32633"):
        pass
    o = layer_mod.scene_outline(path)
    corners = np.array([aff * (c, r) for c, r in ((0, 0), (n, 0), (n, n), (0, n))])
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(*corners.T)
    got = np.asarray(o.geom.exterior.coords)[[0, 256, 512, 768]]
    assert np.abs(got - np.c_[lon, lat]).max() < 1e-8  # < 1 mm; was ~1e-3 degrees


# --- polygons around a pole, one scene the cut fails on ------------------------------------------


def _polar_cap(lat: float) -> dict:
    """The per-scene GeoJSON geometry of a slick around a pole: -180 to 180, closed along +-90, its
    vertices in irregular steps (summed step by step from -180 they end at 179.9999999999999)."""
    import numpy as np

    from dakd_edge.lonlat import geojson_geometry

    rng = np.random.default_rng(7)
    lon = np.concatenate([[0.0], np.cumsum(rng.uniform(0.2, 1.0, 600))])
    lon = lon[lon < 360.0]
    ring = np.c_[(lon + 180.0) % 360.0 - 180.0, np.full(lon.size, lat)]
    geom, _ = geojson_geometry([np.vstack([ring, ring[:1]])])
    assert geom["type"] == "Polygon" and abs(geom["coordinates"][0][0][0]) == 180.0
    return geom


def test_a_polygon_around_a_pole_is_read_as_it_was_written(tmp_path) -> None:
    """`batch` died with IndexError on a scene whose slick contains a pole: the layer took the cap
    (360 degrees wide) for a polygon wrapped across 180 and cut it again."""
    from pyproj import Geod

    caps = [_polar_cap(89.5), _polar_cap(-89.5)]
    parts, _ = read_parts(_geojson(tmp_path, caps), {"id": "s"})
    for part, cap in zip(parts, caps, strict=True):
        assert part.geom.is_valid and shapely.equals_exact(part.geom, shapely.geometry.shape(cap), 0)
    features = merge(parts)
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.geometry.shape(caps[0]))[0])
    assert [f["area_m2"] for f in features] == [pytest.approx(area, rel=1e-9)] * 2


def test_a_scene_the_cut_fails_on_is_left_out_not_the_run(tmp_path, writes, monkeypatch) -> None:
    """A geometry error while cutting one scene's polygons at 180 is that scene's warning (as a file
    that cannot be read is), not a traceback that stops the batch."""
    import dakd_edge.lonlat

    def broken(rings):
        raise IndexError("index 0 is out of bounds for axis 0 with size 0")

    monkeypatch.setattr(dakd_edge.lonlat, "split_antimeridian", broken)
    out = tmp_path / "batch"
    wrapped = shapely.Polygon([(179.9, 1), (-179.9, 1), (-179.9, 2), (179.9, 2)])  # needs the cut
    finished = {"a": _scene(out, "a", [wrapped], "sha-a"), "b": _scene(out, "b", [box(0, 0, 1, 1)], "sha-b")}
    layer = runner._Layer(out, out / "spills.gpkg")
    assert layer.build(finished) == 1 and writes == [1]
    assert [f["scene_ids"] for f in read_layer(out / "spills.gpkg")] == ["b"]
    vector = scene_outputs(out, "a")["vector"]
    assert layer.warnings == {
        "a": f"left out of the merged layer: {vector}: cannot place its polygons "
        "(IndexError: index 0 is out of bounds for axis 0 with size 0)"
    }
    # a scene's outline (its raster's edge, cut at 180 alike): none, as for an odd georeference
    import numpy as np
    from rasterio.transform import from_origin

    from tests.inference.fake import write_tif

    path = write_tif(
        tmp_path / "am.tif", np.zeros((40, 40), np.uint8),
        transform=from_origin(650000.0, 6650000.0, 1000.0, 1000.0), crs="EPSG:32660",
    )  # fmt: skip
    assert layer_mod.scene_outline(path) is None


# --- one form of start time and platform, probabilities without float32 noise ---------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2021-06-01T04:30:00.000000", "2021-06-01T04:30:00.000000Z"),  # a Sentinel-1 annotation: UTC
        ("2021-06-01T04:30:00.000000Z", "2021-06-01T04:30:00.000000Z"),  # the report's, now
        ("2021-06-01T04:31:00+00:00", "2021-06-01T04:31:00.000000Z"),  # a HyP3 name
        ("2021-06-01T04:32:22.5Z", "2021-06-01T04:32:22.500000Z"),  # STAC
        ("2021-06-01T06:32:22.1234567+0200", "2021-06-01T04:32:22.123456Z"),
        ("2021-06-01", "2021-06-01T00:00:00.000000Z"),
        ("not a time", None),
        (None, None),
    ],
)
def test_start_times_are_written_in_one_utc_form(text, want) -> None:
    assert layer_mod.utc_time(text) == want


def test_a_layer_gives_one_form_of_time_and_platform(tmp_path) -> None:
    """The layer mixed `2021-06-01T04:30:00.000000` (an annotation), `...+00:00` (a HyP3 name) and
    `...Z` (STAC), `S1A` with `sentinel-1b`; and a scene file's float32 noise in max_prob. GeoParquet's
    start_time is a UTC timestamp, the GeoPackage's the same instant as text."""
    import pyarrow.parquet as pq

    noisy = {**PROPS, "max_prob": 0.9959999918937683}
    parts = [
        Part("a", "2021-06-01T04:30:00.000000", "S1A", box(0, 0, 1, 1), {"id": 1, **noisy}),
        Part("b", "2021-06-01T04:31:00+00:00", "sentinel-1b", box(0.5, 0, 2, 1), {"id": 1, **PROPS}),
        Part("c", "2021-06-01T04:29:30.5Z", "Sentinel-1A", box(10, 0, 11, 1), {"id": 1, **PROPS}),
        Part("d", None, "ALOS2", box(20, 0, 21, 1), {"id": 1, **PROPS}),
    ]
    features = merge(parts)
    got = [(f["scene_ids"], f["start_time"], f["platform"], f["max_prob"]) for f in features]
    assert got == [
        ("a,b", "2021-06-01T04:30:00.000000Z", "sentinel-1a,sentinel-1b", 0.996),
        ("c", "2021-06-01T04:29:30.500000Z", "sentinel-1a", 0.9),
        ("d", None, "alos-2", 0.9),
    ]
    for name in ("spills.gpkg", "spills.parquet"):
        layer_mod.write_layer(tmp_path / name, features)
        assert [(f["scene_ids"], f["start_time"]) for f in read_layer(tmp_path / name)] == [
            g[:2] for g in got
        ]
    field = pq.read_schema(tmp_path / "spills.parquet").field("start_time")
    assert str(field.type) == "timestamp[us, tz=UTC]"
