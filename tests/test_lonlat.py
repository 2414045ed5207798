"""The antimeridian cut of lon/lat polygons (:mod:`dakd_edge.lonlat`), against shapely's clip."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

shapely = pytest.importorskip("shapely")
pytest.importorskip("shapely.affinity")  # loads shapely.affinity


def test_split_and_lon_span_units() -> None:
    """The cut itself: a C-shaped polygon (two arms across 180) with holes on both sides, one across,
    one with a side on 180, vertices exactly on 180, and the rings given wrapped or reversed; compared
    with shapely's clip of the uncut polygon."""
    from dakd_edge.lonlat import lon_span, split_antimeridian

    ext = [(179.0, 0.0), (181.0, 0.0), (181.0, 1.0), (180.0, 1.0), (179.8, 1.0), (179.8, 2.0),
           (181.0, 2.0), (181.0, 3.0), (179.0, 3.0), (179.0, 0.0)]  # fmt: skip
    holes = [
        [(179.1, 0.2), (179.1, 0.4), (179.3, 0.4), (179.3, 0.2), (179.1, 0.2)],  # west
        [(180.6, 2.2), (180.6, 2.5), (180.8, 2.5), (180.8, 2.2), (180.6, 2.2)],  # east
        [(179.9, 0.3), (179.9, 0.6), (180.2, 0.6), (180.2, 0.3), (179.9, 0.3)],  # across
        [(180.0, 2.6), (180.0, 2.8), (180.1, 2.8), (180.1, 2.6), (180.0, 2.6)],  # a side on 180
    ]
    full = shapely.Polygon(ext, holes)
    assert full.is_valid
    wrapped = [[(x - 360.0 if x > 180 else x, y) for x, y in r] for r in [ext, *holes]]
    for rings in ([ext, *holes], wrapped, [r[::-1] for r in [ext, *holes]]):
        polys = [shapely.Polygon(p[0], p[1:]) for p in split_antimeridian(rings)]
        assert all(p.is_valid and p.exterior.is_ccw for p in polys)
        assert all(not ring.is_ccw for p in polys for ring in p.interiors)
        west = shapely.union_all([p for p in polys if p.bounds[0] >= 0])
        east = shapely.union_all([p for p in polys if p.bounds[2] <= 0])
        assert west.symmetric_difference(full.intersection(shapely.box(170, -1, 180, 4))).area < 1e-12
        want_east = shapely.affinity.translate(full.intersection(shapely.box(180, -1, 190, 4)), -360.0)
        assert east.symmetric_difference(want_east).area < 1e-12
        assert len(polys) == 3  # the C's two arms east of 180 are separate pieces
    # a ring wholly on one side is kept (wrapped into range), not cut
    (only,) = split_antimeridian([[(180.2, 0.0), (180.4, 0.0), (180.4, 1.0), (180.2, 0.0)]])
    assert [x for x, _ in only[0]] == pytest.approx([-179.8, -179.6, -179.6, -179.8])
    assert lon_span([(10.0, 20.0), (-5.0, 12.0)]) == (-5.0, 20.0)
    assert lon_span([(179.0, 180.0), (-180.0, -179.0)]) == (179.0, -179.0)
    assert lon_span([(170.0, 175.0), (-175.0, -170.0), (0.0, 1.0)]) == (0.0, -170.0)
    assert lon_span([(-170.0, 170.0)]) == (-170.0, 170.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_split_matches_shapely_on_random_pixel_polygons(seed: int) -> None:
    """Traced pixel regions (holes, 8-connected touches) on rotated grids across 180, and on grids whose
    pixel edges lie exactly on 180: the pieces cover exactly the shapely clip of each side."""
    import rasterio.features

    from dakd_edge.lonlat import split_antimeridian

    rng = np.random.default_rng(seed)
    cut_polys = 0
    for trial in range(20):
        smooth = rng.random((24, 24))
        for axis in (0, 1):
            smooth = (smooth + np.roll(smooth, 1, axis) + np.roll(smooth, -1, axis)) / 3
        mask = (smooth > np.quantile(smooth, rng.uniform(0.3, 0.7))).astype(np.uint8)
        cut = 180.0 if trial % 2 else -180.0
        if trial % 4 < 2:  # pixel edges exactly on the cut
            t = Affine(0.001, 0.0, cut - 0.012, 0.0, -0.001, 55.0)
        else:
            t = Affine(0.001, 0.0, cut - 0.012, 0.0, -0.001, 55.0) * Affine.rotation(rng.uniform(0, 90))
        for geom, _ in rasterio.features.shapes(mask, mask=mask.astype(bool), connectivity=8, transform=t):
            rings = geom["coordinates"]
            full = shapely.Polygon(rings[0], rings[1:])
            polys = split_antimeridian(rings)
            cut_polys += len(polys) > 1
            pieces = [shapely.Polygon(p[0], p[1:]) for p in polys]
            assert all(-180.0 <= p.bounds[0] and p.bounds[2] <= 180.0 and p.exterior.is_ccw for p in pieces)
            # back in the polygon's own frame: pieces shifted by 360 towards its first vertex
            back = [
                shapely.affinity.translate(p, 360.0 * round((rings[0][0][0] - p.bounds[0]) / 360.0))
                for p in pieces
            ]
            assert shapely.union_all(back).symmetric_difference(full).area < 1e-12
            # what the batch layer reads back (it make_valid's an invalid piece) is that region too
            valid = shapely.union_all([shapely.make_valid(b) for b in back])
            assert valid.symmetric_difference(shapely.make_valid(full)).area < 1e-12
            assert sum(p.area for p in pieces) == pytest.approx(full.area, rel=1e-9)
    assert cut_polys >= 5


@pytest.mark.parametrize("hole", [(179.995, 180.0), (180.0, 180.001)], ids=["hole-west", "hole-east"])
@pytest.mark.parametrize("start", [0, 1], ids=["from-west", "from-east"])
def test_a_hole_touching_the_cut_along_an_edge_opens_onto_it(hole: tuple[float, float], start: int) -> None:
    """Pixel edges on 180 (an EPSG:4326 grid): a hole with a side on 180 stayed a hole of its piece,
    with that side on the piece's own edge along the cut: an invalid polygon ("Self-intersection"),
    whose make_valid (the batch layer's) changed its area. West of 180 it always did; east of it when
    the ring started east of 180 (180.0 taken the short way from 180.002, i.e. -179.998, is
    -179.99999999999994: off the cut). The hole is a notch of the piece on its side of the cut."""
    from dakd_edge.lonlat import split_antimeridian

    ext = [(179.99, 0.0), (180.002, 0.0), (180.002, 0.01), (179.99, 0.01)]
    ext = [*ext[start:], *ext[:start], ext[start]]
    (x0, x1) = hole
    rings = [ext, [(x0, 0.004), (x0, 0.006), (x1, 0.006), (x1, 0.004), (x0, 0.004)]]
    full = shapely.Polygon(rings[0], rings[1:])
    assert full.is_valid
    pieces = [shapely.Polygon(p[0], p[1:]) for p in split_antimeridian(rings)]
    assert len(pieces) == 2
    assert all(p.is_valid and not p.interiors for p in pieces), [shapely.is_valid_reason(p) for p in pieces]
    west = shapely.union_all([p for p in pieces if p.bounds[0] >= 0])
    east = shapely.affinity.translate(shapely.union_all([p for p in pieces if p.bounds[2] <= 0]), 360.0)
    assert west.union(east).symmetric_difference(full).area < 1e-12
    assert sum(p.area for p in pieces) == pytest.approx(full.area, rel=1e-9)


def test_many_polygons_at_once_match_one_by_one() -> None:
    """The whole-array path of the GeoJSON writer gives exactly what the per-polygon cut gives: pixel
    polygons (holes, either winding) far from 180, across it and past it, mixed in one call."""
    import rasterio.features

    from dakd_edge.lonlat import geojson_geometries, geojson_geometry

    rng = np.random.default_rng(3)
    polys = []
    for x0 in (10.0, 179.995, -180.005, 179.9):
        mask = (rng.random((30, 30)) > 0.6).astype(np.uint8)
        t = Affine(0.001, 0.0, x0, 0.0, -0.001, 55.0)
        for geom, _ in rasterio.features.shapes(mask, mask=mask.astype(bool), connectivity=8, transform=t):
            rings = [np.asarray(r, np.float64) for r in geom["coordinates"]]
            polys.append([r[::-1] if rng.random() < 0.5 else r for r in rings])  # any winding
    pts = np.concatenate([r for p in polys for r in p])
    got = geojson_geometries(pts, [len(r) for p in polys for r in p], [len(p) for p in polys])
    want = [geojson_geometry(p) for p in polys]
    assert got == want
    assert sum(g["type"] == "MultiPolygon" for g, _ in got) >= 3 and len(got) > 100


def _cap(lat: float, start: float, seed: int) -> np.ndarray:
    """A closed ring once around the pole at ``lat``, from longitude ``start`` eastwards in irregular
    steps of at most a degree (their running sum is not exactly 360), wrapped into [-180, 180]."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.2, 1.0, 600)
    lon = start + np.concatenate([[0.0], np.cumsum(steps)])
    lon = lon[lon < start + 360.0]
    ring = np.c_[(lon + 180.0) % 360.0 - 180.0, np.full(lon.size, lat)]
    ring[0, 0] = start
    return np.vstack([ring, ring[:1]])


@pytest.mark.parametrize("seed", range(4))
def test_a_polygon_cut_at_a_pole_already_is_kept(seed: int) -> None:
    """The per-scene GeoJSON of a slick on the pole: -180 to 180, closed along 90. The batch layer cut
    it again: summed step by step from its first vertex (-180) its longitudes ended at
    179.9999999999999, no edge crossed 180, and the cut raised IndexError (or closed it along the pole
    a second time)."""
    from dakd_edge.lonlat import geojson_geometry, split_antimeridian

    for lat in (89.5, -89.5):
        geom, _ = geojson_geometry([_cap(lat, 0.0, seed)])
        (ext,) = geom["coordinates"]
        assert geom["type"] == "Polygon" and (ext[0][0] == -180.0 or ext[0][0] == 180.0)
        (again,) = split_antimeridian([ext])
        assert [list(p) for p in again[0]] == ext
    for lat in (89.5, -89.5):  # a ring that starts on 180, not yet cut
        (poly,) = split_antimeridian([_cap(lat, 180.0, seed)])
        p = shapely.Polygon(poly[0])
        assert p.is_valid and p.exterior.is_ccw and p.bounds[::2] == (-180.0, 180.0)
        assert (p.bounds[3] if lat > 0 else -p.bounds[1]) == 90.0


@pytest.mark.parametrize("pole", [1.0, -1.0], ids=["north", "south"])
@pytest.mark.parametrize("given", ["wrapped", "unwrapped-east", "unwrapped-west"])
def test_holes_of_a_polygon_around_a_pole_across_180_become_notches(pole: float, given: str) -> None:
    """A slick around the pole with a hole across 180 (pole_n2.tif: polar stereographic, lon_0 -175):
    its holes were taken as near 0 degrees, and one across 180 became a band with its longitudes
    jumping 179 / -179 (invalid GeoJSON). Each side of it is a notch of the cap's edge along +-180."""
    from pyproj import Geod

    from dakd_edge.lonlat import split_antimeridian

    t = np.linspace(0.0, 360.0, 721)  # 0.5 degree edges at one latitude: the planar cap is a box
    ext = np.c_[(t + 180.0) % 360.0 - 180.0, np.full(t.size, 88.0 * pole)]
    across = np.array([(179.0, 89.0), (181.0, 89.0), (181.0, 89.4), (179.0, 89.4), (179.0, 89.0)])
    near_0 = np.array([(10.0, 88.5), (12.0, 88.5), (12.0, 88.8), (10.0, 88.5)])
    if given == "wrapped":
        across[:, 0] = (across[:, 0] + 180.0) % 360.0 - 180.0
    elif given == "unwrapped-west":
        across = np.roll(across[:-1], 1, axis=0) - [360.0, 0.0]  # starts at -179, reaches -181
        across = np.vstack([across, across[:1]])
    holes = [h * [1.0, pole] for h in (across, near_0)]
    pieces = [shapely.Polygon(p[0], p[1:]) for p in split_antimeridian([ext, *holes])]
    assert all(p.is_valid and p.exterior.is_ccw for p in pieces), [shapely.is_valid_reason(p) for p in pieces]
    assert all(not r.is_ccw for p in pieces for r in p.interiors)
    assert all(-180.0 <= p.bounds[0] and p.bounds[2] <= 180.0 for p in pieces)
    hole = shapely.Polygon([(x % 360.0, y * pole) for x, y in across])  # 179..181
    cap = shapely.box(-180.0, 88.0, 180.0, 90.0) if pole > 0 else shapely.box(-180.0, -90.0, 180.0, -88.0)
    want = cap.difference(hole).difference(shapely.affinity.translate(hole, -360.0))
    want = want.difference(shapely.Polygon(holes[1]))
    got = shapely.union_all(pieces)
    assert got.symmetric_difference(want).area < 1e-12
    geod = Geod(ellps="WGS84")
    area = [abs(geod.polygon_area_perimeter(r[:, 0], r[:, 1])[0]) for r in (ext, *holes)]
    got_m2 = abs(geod.geometry_area_perimeter(shapely.MultiPolygon(pieces))[0])
    assert got_m2 == pytest.approx(area[0] - area[1] - area[2], rel=1e-6)  # geodesic edges: 2e-7
