"""The merged spill layer of a batch: every scene's polygons in one file, seams merged.

Consecutive Sentinel-1 products of one datatake overlap by a few km, and a pass may be given twice
(a product and its reprocessed twin): a slick seen in both would appear twice. Polygons of
*different* scenes whose interiors overlap are unioned (transitively: a slick across three products is
one feature) and keep all their scene ids; polygons of one scene never overlap (they are connected
components of one class map) and are left as they are. Only scenes of one pass merge (start times at
most :data:`SAME_PASS_S` apart, or unknown): in an archive, a slick seen in the same place on two dates
is two observations, each its own feature with its own time.

Frame: WGS84 longitude/latitude. A batch can span UTM zones (a pass runs thousands of km; the GRD
polygons of each scene are in the UTM zone of *its* centre), so no single projected CRS fits all, and
reprojecting every part into a per-cluster zone would add a second resampling of the vertices. Overlap
and union are topological: they depend only on the vertices, which the per-scene GeoJSON gives in
WGS84 already, and on straight edges between vertices at most a pixel (10-40 m) apart, where a
lon/lat line and a UTM line differ by far less than a millimetre. Areas are computed geodesically
(``pyproj.Geod`` on WGS84), never in square degrees. Coordinates are snapped to 1e-9 degree (0.1 mm,
the precision the GeoJSON is written at) during the union so that shared pixel edges of two scenes
match exactly.

Antimeridian: the per-scene GeoJSON cuts polygons that straddle 180 degrees at +-180 into
MultiPolygons (:func:`~dakd_edge.lonlat.split_antimeridian`), so overlap and union work
piece by piece on each side, and a merged slick stays a MultiPolygon cut at +-180 (what RFC 7946 and
planar GIS tools expect); its geodesic area is the sum of its pieces. A polygon read with a longitude
span over 180 degrees or past +-180 (a GeoJSON written before the cut, or by another tool) is cut the
same way first. The GeoParquet ``bbox`` follows RFC 7946 (west > east when the layer crosses 180 degrees); the
GeoPackage's extents are plain minima and maxima, as that format defines them.

The layer is rebuilt from the per-scene files and the manifest (never appended to), in scene-id
order, so a resumed run writes the same features as an uninterrupted one. An archive of 2000 scenes
holds a million polygons: a rebuild costs O(n log n) in GEOS (one STRtree), and a :class:`Memo` kept
between the rebuilds of a run spares the per-feature work (union, geodesic area) of every group of
parts already merged before, so a periodic rebuild mostly pays for the file it writes.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dakd_edge.atomic import atomic_path, describe_write_error
from dakd_edge.errors import InputError, OutputError

FORMATS = ("gpkg", "parquet")
# what a layer built by this version holds, for a layer on disk to be kept by a resumed run: raised
# when the features built from the same scene files change (2: touches_edge of merged features; 3: one
# form of start_time and platform, max_prob rounded, polygons around a pole)
LAYER_VERSION = 3
GRID = 1e-9  # degrees: the precision of the per-scene GeoJSON
# Scenes whose start times lie further apart are different observations (another pass: 6-12 days, or
# the next orbit: 98 minutes), never one slick: consecutive products of a datatake start ~25 s (IW) to
# ~60 s (EW) apart, a reprocessed twin at the same time. Scenes without a time merge as before.
SAME_PASS_S = 600.0
TABLE = "oil_spills"
COLUMNS = (  # name, GeoPackage type, Arrow type name
    ("scene_ids", "TEXT", "string"),
    ("n_scenes", "INTEGER", "int32"),
    ("n_parts", "INTEGER", "int32"),
    # utc_time's text: GeoPackage's DATETIME is ISO 8601 to the millisecond, which would drop digits
    ("start_time", "TEXT", "timestamp"),
    ("platform", "TEXT", "string"),
    ("area_m2", "REAL", "float64"),
    ("mean_prob", "REAL", "float64"),
    ("max_prob", "REAL", "float64"),
    ("touches_edge", "BOOLEAN", "bool_"),
    ("near_coast", "BOOLEAN", "bool_"),
)


@dataclass(slots=True)  # a million of them in an archive's layer
class Part:
    """One polygon of one scene, as read from that scene's GeoJSON."""

    scene_id: str
    start_time: str | None
    platform: str | None
    geom: Any  # shapely Polygon, WGS84
    props: dict[str, Any]


def layer_path(out: Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise InputError(f"unknown layer format {fmt!r}; choose {' or '.join(FORMATS)}")
    return out / ("spills.gpkg" if fmt == "gpkg" else "spills.parquet")


def read_parts(vector: Path, record: dict[str, Any]) -> tuple[list[Part], int]:
    """Polygons of one finished scene, and how many of its polygons cannot be placed on the map (all
    of them for a scene without georeference: pixel coordinates). Raises :class:`OutputError` for a
    file that cannot be read or parsed, or whose polygons cannot be cut at 180 degrees or made valid:
    one damaged scene must not stop the layer of all others."""
    import shapely

    try:
        doc = json.loads(vector.read_text())
        if doc.get("note"):  # "no georeference": cannot be placed on the map
            return [], len(doc["features"])
        feats = doc["features"]
        try:
            geoms = _polygons([f["geometry"] for f in feats])
        except Exception:  # anything unusual: feature by feature, raising as shapely does
            geoms = [shapely.geometry.shape(f["geometry"]) for f in feats]
        try:
            geoms = [_cut_wide(g) for g in geoms]
        except Exception as e:  # a geometry the cut cannot take (a bug of ours): this scene's, not the run's
            raise _GeometryError(f"{type(e).__name__}: {e}") from None
        valid = shapely.is_valid(geoms)
        parts = []
        for f, g, ok in zip(feats, geoms, valid, strict=True):
            parts.append(
                Part(
                    record["id"],
                    record.get("start_time"),
                    record.get("platform"),
                    g if ok else shapely.make_valid(g),
                    f["properties"],
                )
            )
    except _GeometryError as e:
        raise OutputError(f"{vector}: cannot place its polygons ({' '.join(str(e).split())})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, shapely.errors.ShapelyError) as e:
        # ValueError covers JSONDecodeError and UnicodeDecodeError
        raise OutputError(f"{vector}: cannot read ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return parts, 0


class _GeometryError(Exception):
    """A scene's polygon that the cut at 180 degrees failed on (:func:`read_parts`)."""


def _polygons(geometries: list[dict[str, Any]]) -> list[Any]:
    """``shapely.geometry.shape`` of GeoJSON Polygons, built in one call: the same geometries (rings
    of the same float64 vertices), without ``shape``'s Python loop over every vertex, which makes most
    of the time to read a million polygons. MultiPolygons (cut at 180 degrees: few) go through
    ``shape``; anything malformed raises, for the caller to retry with ``shape``."""
    import itertools

    import numpy as np
    import shapely

    polys = [i for i, g in enumerate(geometries) if g["type"] == "Polygon"]
    rings = [r for i in polys for r in geometries[i]["coordinates"]]
    out: list[Any] = [None] * len(geometries)
    if rings:
        sizes = np.fromiter(map(len, rings), np.int64, len(rings))
        coords = np.array(list(itertools.chain.from_iterable(rings)), np.float64)
        if coords.shape != (int(sizes.sum()), 2):
            raise ValueError("not 2-D polygon coordinates")
        ring_of = np.repeat(np.arange(len(rings)), sizes)
        poly_of = np.repeat(np.arange(len(polys)), [len(geometries[i]["coordinates"]) for i in polys])
        made = shapely.polygons(shapely.linearrings(coords, indices=ring_of), indices=poly_of)
        for i, g in zip(polys, made, strict=True):
            out[i] = g
    for i, g in enumerate(geometries):
        if out[i] is None:
            out[i] = shapely.geometry.shape(g)
    return out


def _cut_wide(geom: Any) -> Any:
    """``geom`` with each polygon that spans over 180 degrees of longitude (straddling the antimeridian,
    written wrapped instead of cut) or reaches past +-180 cut at +-180; others, and a polygon around a
    pole already cut there (-180 to 180, closed along +-90), are kept as they are."""
    import shapely

    from dakd_edge.lonlat import split_antimeridian

    def wide(p: Any) -> bool:
        if p.geom_type != "Polygon" or p.is_empty:
            return False
        x0, y0, x1, y1 = p.bounds
        if abs(x0 + 180.0) <= 1e-9 and abs(x1 - 180.0) <= 1e-9 and max(y1, -y0) >= 90.0 - 1e-9:
            return False  # around a pole, cut there already (as the per-scene GeoJSON writes it)
        return x1 - x0 > 180.0 or x0 < -180.0 or x1 > 180.0

    polys = list(getattr(geom, "geoms", [geom]))
    if not any(wide(p) for p in polys):
        return geom
    out = []
    for p in polys:
        if wide(p):
            rings = [list(p.exterior.coords), *(list(r.coords) for r in p.interiors)]
            out += [shapely.Polygon(q[0], q[1:]) for q in split_antimeridian(rings)]
        else:
            out.append(p)
    return shapely.MultiPolygon(out) if len(out) > 1 else out[0]


@dataclass(frozen=True, slots=True)
class Outline:
    """Where a scene looked: the edge of its raster in WGS84 (cut at +-180 like its polygons), and the
    largest step of one pixel along that edge, in degrees (the tolerance of :func:`_seam_only`)."""

    geom: Any
    pixel: float


def scene_outline(classes: Path, per_side: int = 256) -> Outline | None:
    """The :class:`Outline` of a finished scene, from its class map's georeference alone (no pixel is
    read): the raster's edge in pixel-corner coordinates, mapped as the scene's polygons were (GCPs
    through the same :func:`~dakd_edge.inference.readers.gcp_georef`, else the affine transform and CRS),
    ``per_side`` points a side. None when the scene has no georeference or its file cannot be read."""
    import numpy as np
    import rasterio
    import shapely

    try:
        with rasterio.open(classes) as ds:
            h, w, (gcps, gcps_crs), transform, crs = ds.height, ds.width, ds.gcps, ds.transform, ds.crs
    except (OSError, rasterio.errors.RasterioError):
        return None
    t = np.arange(per_side) / per_side
    cols = np.concatenate([t * w, np.full(per_side, w), (1 - t) * w, np.zeros(per_side)])
    rows = np.concatenate([np.zeros(per_side), t * h, np.full(per_side, h), (1 - t) * h])
    try:
        if gcps:
            from dakd_edge.inference.readers import gcp_georef

            # as segment reads them (GCPs in UTM metres interpolated in UTM); GCPs and the edge points
            # here are both corner-based, so no half-pixel shift
            lon, lat = gcp_georef(list(gcps), gcps_crs).lonlat(rows, cols, wrap=False)
        elif crs is not None and not transform.is_identity:
            from pyproj import Transformer

            t = transform
            x, y = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
            to_wgs84 = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
            lon, lat = (np.asarray(v, np.float64) for v in to_wgs84.transform(x, y))
            lon = np.unwrap(lon, period=360.0)  # continuous across 180, as the GCP branch's (wrap=False)
        else:
            return None
    except Exception:  # an odd georeference (PROJ, GCPs) must not stop the layer: no outline
        return None
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None
    step = np.hypot(np.diff(lon, append=lon[:1]), np.diff(lat, append=lat[:1]))
    px = np.concatenate([np.full(per_side, w), np.full(per_side, h)] * 2) / per_side
    try:
        geom = _cut_wide(shapely.make_valid(shapely.Polygon(np.c_[lon, lat])))
    except Exception:  # an edge the cut cannot take (around a pole): no outline, as for an odd georeference
        return None
    return Outline(geom, float(np.max(step / px)))


class Memo:
    """The features of the last merge, for the next rebuild of the same layer in a run.

    Kept by the identity of their group's parts (the memo holds the parts, so their ids name no other
    object): a rebuild after a few more scenes computes only the groups those scenes made or changed
    (union, geodesic area: 70 us a polygon). Each merge keeps only the groups it used. Encoded
    geometries are not kept: they would cost as much memory again as the features, for 1.5 s a
    rebuild of 250 000 features.
    """

    def __init__(self) -> None:
        self.features: dict[tuple[int, ...], tuple[tuple[Part, ...], dict[str, Any]]] = {}


def merge(
    parts: list[Part], memo: Memo | None = None, outline: Callable[[str], Outline | None] | None = None
) -> list[dict[str, Any]]:
    """Features of the layer: overlapping parts of different scenes unioned, in a stable order.

    ``outline(scene_id)`` (:func:`scene_outline`) tells where each scene looked: a feature merged
    from several scenes touches the edge only where its parts' edge contacts are not on another of
    its scenes (:func:`_touches_edge`). Without it, a merged feature touches the edge when a part does.
    """
    parts = sorted(parts, key=lambda p: (p.scene_id, p.props.get("id") or 0))
    times = _times(parts)
    groups = _one_pass_groups(times, _overlaps(parts, times))
    if memo is None:
        return [_feature([parts[i] for i in idx], outline) for idx in groups]
    kept: dict[tuple[int, ...], tuple[tuple[Part, ...], dict[str, Any]]] = {}
    out = []
    for idx in groups:
        group = tuple(parts[i] for i in idx)
        key = tuple(map(id, group))
        hit = memo.features.get(key)
        feature = hit[1] if hit is not None else _feature(list(group), outline)
        kept[key] = (group, feature)
        out.append(feature)
    memo.features = kept
    return out


def _datetime(start_time: str | None) -> datetime | None:
    """An ISO start time as an aware UTC datetime (naive times read as UTC, as Sentinel-1 annotations
    give them); None when there is none or it cannot be read.

    The fraction of a second is cut or padded to 6 digits first: Python 3.10 reads only 3 or 6 (a STAC
    ``start_datetime`` of ``...22.5Z`` or ``...22.1234567Z`` would be "no time" there, and merge
    across dates), 3.11 any number; an offset ``+hhmm`` gets its colon, for the same reason."""
    import re

    if not start_time:
        return None
    text = start_time.strip().replace("Z", "+00:00")
    text = re.sub(r"([T ]\d\d:\d\d:\d\d)[.,](\d+)", lambda m: f"{m[1]}.{(m[2] + '00000')[:6]}", text, count=1)
    text = re.sub(r"(:\d\d(?:\.\d+)?[+-]\d\d)(\d\d)$", r"\1:\2", text)  # +0100: 3.10 wants +01:00
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _seconds(start_time: str | None) -> float:
    """POSIX seconds of an ISO start time (:func:`_datetime`); NaN when there is none or it cannot be
    read."""
    t = _datetime(start_time)
    return float("nan") if t is None else t.timestamp()


def utc_time(start_time: str | None) -> str | None:
    """A start time as the layer writes it, whatever its source wrote: UTC ISO 8601 to the microsecond,
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (a Sentinel-1 annotation's naive time, a HyP3 name's ``+00:00``, a
    STAC item's ``Z`` alike, so that the column sorts and compares as text); None when there is none or
    it cannot be read (no time, rather than one no reader can place)."""
    t = _datetime(start_time)
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def platform_name(platform: str) -> str:
    """One lower-case name per platform, as STAC and the HyP3 names give it (``sentinel-1a``,
    ``alos-2``): a Sentinel-1 annotation says ``S1A``; any other name lower-cased."""
    import re

    name = platform.strip().lower()
    key = re.sub(r"[\s_-]", "", name)
    if m := re.fullmatch(r"(?:s1|sentinel1)([a-d]?)", key):
        return f"sentinel-1{m[1]}"
    if m := re.fullmatch(r"alos(\d)", key):
        return f"alos-{m[1]}"
    return name


def _order(start_time: str) -> float:
    """Sort key of a start time: its POSIX seconds, unreadable ones after every readable one."""
    t = _seconds(start_time)
    return float("inf") if math.isnan(t) else t


def _times(parts: list[Part]) -> Any:
    """POSIX start seconds of each part (NaN: none), each distinct string parsed once."""
    import numpy as np

    seconds = {t: _seconds(t) for t in {p.start_time for p in parts}}
    return np.array([seconds[p.start_time] for p in parts], dtype=np.float64)


def _one_pass_groups(times: Any, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Parts grouped by overlapping ``pairs`` (:func:`~dakd_edge.inference.vectorize.connected_groups`),
    where no join makes a group's known start times span more than :data:`SAME_PASS_S`: a scene without
    a time that overlaps two dates joins the first of them in pair order, never both (it would carry one
    date's slick into the other's). Members in increasing order, groups in the order of their first
    member."""
    import numpy as np

    from dakd_edge.inference.vectorize import connected_groups

    lo, hi = np.array(times, np.float64), np.array(times, np.float64)  # per root, NaN: no time yet

    def join(a: int, b: int) -> bool:
        first, last = np.fmin(lo[a], lo[b]), np.fmax(hi[a], hi[b])  # fmin/fmax skip NaN
        if last - first > SAME_PASS_S:  # NaN (no times at all) compares False: joined
            return False
        lo[b], hi[b] = first, last
        return True

    ordered = sorted((int(i), int(j)) for i, j in pairs)  # sorted: the same groups on every rebuild
    return connected_groups(len(times), ordered, join)


def _overlaps(parts: list[Part], times: Any) -> Iterable[tuple[int, int]]:
    """Pairs (i < j) of parts of different scenes of one pass (``parts`` sorted by scene; ``times``
    their start seconds, at most :data:`SAME_PASS_S` apart, or NaN) whose interiors overlap: a slick in the same place
    on two dates is two observations, two features.

    The STRtree gives every pair of intersecting envelopes, each part with itself included; the
    exact (costly) predicates run only on pairs of different scenes, a few per seam."""
    import numpy as np
    import shapely

    if len(parts) < 2:
        return ()
    geoms = np.array([p.geom for p in parts], dtype=object)
    ids = [p.scene_id for p in parts]
    scene = np.cumsum([False, *(a != b for a, b in zip(ids, ids[1:], strict=False))])
    a, b = shapely.STRtree(geoms).query(geoms)
    keep = (a < b) & (scene[a] != scene[b]) & ~(np.abs(times[a] - times[b]) > SAME_PASS_S)  # NaN: kept
    a, b = a[keep], b[keep]
    hit = shapely.intersects(geoms[a], geoms[b])
    a, b = a[hit], b[hit]
    inner = ~shapely.touches(geoms[a], geoms[b])  # a shared edge or corner is not an overlap
    return zip(a[inner], b[inner], strict=True)


@functools.cache
def _geod() -> Any:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def _geodesic_area(geom: Any) -> float:
    """``abs(Geod.geometry_area_perimeter(geom)[0])`` for a MultiPolygon, summed in the same order (the
    same float), from coordinate arrays instead of pyproj's per-vertex ``.xy`` copies."""
    import shapely

    area = _geod().polygon_area_perimeter
    total = 0.0
    for poly in geom.geoms:
        xy = shapely.get_coordinates(poly.exterior)
        a = area(xy[:, 0], xy[:, 1])[0]
        for hole in poly.interiors:
            xy = shapely.get_coordinates(hole)
            a += area(xy[:, 0], xy[:, 1])[0]
        total += a
    return abs(total)


def _touches_edge(group: list[Part], outline: Callable[[str], Outline | None] | None) -> bool:
    """Whether a feature touches the outer edge (or nodata) of the scenes that saw it.

    Each part's ``touches_edge`` says it reaches its own scene's border or nodata
    (:func:`~dakd_edge.inference.vectorize.flag_spills`). A slick cut by the seam of two consecutive
    scenes reaches each scene's border at the seam, where the other scene looked on: those contacts do
    not count. A part's contact counts unless the part reaches its scene's raster edge (within a
    quarter pixel) and the ground just past it there lies inside another scene of the group
    (:func:`_seam_only`); a part flagged without reaching its raster edge (nodata inside its scene: a
    swath edge, masked border noise), a scene without an outline, and a group of one scene keep the
    part's own flag.

    What the outputs do not tell: where inside its scene a part touched nodata, so a part that reaches
    the seam *and* touches nodata elsewhere counts as reaching the seam only; and nodata inside the
    other scene's raster just past the seam (a geocoded scene's no-data corners: its own part carries
    that flag when it reaches them).
    """
    flagged = [p for p in group if p.props.get("touches_edge")]
    if not flagged:
        return False
    scenes = sorted({p.scene_id for p in group})
    if outline is None or len(scenes) == 1:
        return True
    import shapely

    shapes = {sid: outline(sid) for sid in scenes}
    for p in flagged:
        own = shapes[p.scene_id]
        others = [o.geom for sid, o in shapes.items() if sid != p.scene_id and o is not None]
        if own is None or not others or not _seam_only(p.geom, own, shapely.union_all(others)):
            return True
    return False


def _seam_only(geom: Any, own: Outline, others: Any) -> bool:
    """Whether the part ``geom`` reaches the edge of its scene (``own``) and does so only where the
    other scenes' outlines (``others``) cover the ground just past that edge (one pixel deep)."""
    import shapely

    tol = own.pixel
    # the raster's edge, not where the outline is cut at +-180 (no edge: the scene goes on beyond)
    cuts = shapely.union(
        shapely.box(180.0 - tol, -90.0, 180.0, 90.0), shapely.box(-180.0, -90.0, -180.0 + tol, 90.0)
    )
    edge = shapely.difference(shapely.buffer(shapely.boundary(own.geom), tol / 4), cuts)
    contact = shapely.intersection(geom, edge)
    if shapely.is_empty(contact) or shapely.area(contact) == 0:
        return False  # the flag is for nodata inside its scene: a true edge
    beyond = shapely.difference(shapely.buffer(contact, tol), own.geom)
    beyond = shapely.intersection(beyond, shapely.box(-180.0, -90.0, 180.0, 90.0))  # none past a cut
    area = shapely.area(beyond)
    if area == 0:
        return False
    return bool(shapely.area(shapely.difference(beyond, others)) <= 1e-3 * area)


def _feature(group: list[Part], outline: Callable[[str], Outline | None] | None = None) -> dict[str, Any]:
    import shapely

    if len(group) == 1:
        geom = group[0].geom
    else:
        geom = shapely.union_all([p.geom for p in group], grid_size=GRID)
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    # what MultiPolygon(polys) builds from non-empty Polygons, without its Python checks (15 us each)
    geom = shapely.multipolygons(polys) if polys else shapely.MultiPolygon(polys)
    area = _geodesic_area(geom)
    weights = [p.props.get("area_m2") or p.props.get("area_px") or 0.0 for p in group]
    means = [(p.props.get("mean_prob"), w) for p, w in zip(group, weights, strict=True)]
    means = [(m, w) for m, w in means if m is not None]
    wsum = sum(w for _, w in means)
    maxes = [p.props["max_prob"] for p in group if p.props.get("max_prob") is not None]
    # the earliest by time, not by string: '06:11+01:00' is before '05:15:00' (UTC); unreadable ones last
    starts = sorted({p.start_time for p in group if p.start_time}, key=lambda t: (_order(t), t))
    platforms = sorted({platform_name(p.platform) for p in group if p.platform})
    return {
        "geometry": geom,
        "scene_ids": ",".join(sorted({p.scene_id for p in group})),
        "n_scenes": len({p.scene_id for p in group}),
        "n_parts": len(group),
        "start_time": utc_time(starts[0]) if starts else None,
        "platform": ",".join(platforms) or None,
        "area_m2": round(area, 3),
        "mean_prob": round(sum(m * w for m, w in means) / wsum, 6) if wsum else None,
        "max_prob": round(max(maxes), 6) if maxes else None,  # a scene file of float32 noise (0.99599999)
        "touches_edge": _touches_edge(group, outline),
        "near_coast": any(bool(p.props.get("near_coast")) for p in group),
    }


def write_layer(path: Path, features: list[dict[str, Any]]) -> None:
    """Write the layer atomically (GeoPackage or GeoParquet from the suffix), replacing the old one.

    SQLite's errors are no OSError: they too become one :class:`OutputError` line (a full disk, "no
    space left on ...", already does in :func:`~dakd_edge.atomic.atomic_path`).
    """
    try:
        with atomic_path(path, overwrite=True) as tmp:
            if path.suffix == ".gpkg":
                _write_gpkg(tmp, features)
            else:
                _write_parquet(tmp, features)
    except sqlite3.Error as e:
        raise OutputError(describe_write_error(e, path)) from None


def read_layer(path: Path) -> list[dict[str, Any]]:
    """Features of a written layer (geometry as WKB), in file order: for tests and comparisons."""
    if path.suffix == ".gpkg":
        con = sqlite3.connect(path)
        try:
            names = ["geom", *(c[0] for c in COLUMNS)]
            rows = con.execute(f"SELECT {', '.join(names)} FROM {TABLE} ORDER BY fid").fetchall()
        finally:
            con.close()
        out = []
        for row in rows:
            rec = dict(zip(names, row, strict=True))
            blob = rec.pop("geom")
            rec["geometry"] = bytes(blob[8 + 32 :])  # GeoPackage header + envelope, then WKB
            for k in ("touches_edge", "near_coast"):
                rec[k] = bool(rec[k])
            out.append(rec)
        return out
    import pyarrow.parquet as pq

    out = pq.read_table(path).to_pylist()
    for rec in out:  # the GeoPackage's text, for the two formats to compare
        t = rec.get("start_time")
        rec["start_time"] = None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


# --- writers -------------------------------------------------------------------------------------


def _bbox(features: list[dict[str, Any]], rfc7946: bool = False) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of the features; ``rfc7946``: west, south, east, north on the shortest
    arc of longitude, west > east when it crosses the antimeridian (GeoParquet's ``bbox``)."""
    import shapely

    from dakd_edge.lonlat import lon_span

    if not features:
        return None
    geoms = [f["geometry"] for f in features]
    b = [float(v) for v in shapely.total_bounds(geoms)]
    if rfc7946:
        pieces = shapely.bounds(shapely.get_parts(geoms))
        if len(pieces):
            b[0], b[2] = lon_span(_overlapping_spans(pieces[:, 0], pieces[:, 2]))
    return tuple(b)  # type: ignore[return-value]


def _overlapping_spans(west: Any, east: Any) -> list[tuple[float, float]]:
    """The (west, east) intervals joined as :func:`~dakd_edge.lonlat.lon_span` joins them (sorted, an
    interval starting at or before the running east end is the same one), in numpy: ``lon_span`` of
    the result is that of all intervals, without its Python loop over a million polygons."""
    import numpy as np

    order = np.lexsort((east, west))
    w, reach = west[order], np.maximum.accumulate(east[order])
    first = np.flatnonzero(np.r_[True, w[1:] > reach[:-1]])
    last = np.r_[first[1:] - 1, len(w) - 1]
    return list(zip(w[first].tolist(), reach[last].tolist(), strict=True))


def _blobs(features: list[dict[str, Any]], gpkg: bool, chunk: int = 16384) -> Iterator[bytes]:
    """Each feature's geometry as little-endian ISO WKB, behind a GeoPackage header when ``gpkg``:
    encoded ``chunk`` features a call (one call each is most of a write's time), and given one by one,
    so that a GeoPackage never holds the encoded layer in memory all at once (a GB per million)."""
    import numpy as np
    import shapely

    from dakd_edge.inference.vectorize import gpkg_geometry

    for start in range(0, len(features), chunk):
        geoms = np.array([f["geometry"] for f in features[start : start + chunk]], dtype=object)
        wkbs = shapely.to_wkb(geoms, byte_order=1, flavor="iso").tolist()
        if gpkg:
            boxes = shapely.bounds(geoms).tolist()
            yield from (gpkg_geometry(w, tuple(b), 4326) for w, b in zip(wkbs, boxes, strict=True))
        else:
            yield from wkbs


def _write_gpkg(path: Path, features: list[dict[str, Any]]) -> None:
    from dakd_edge.inference.vectorize import gpkg_begin, srs_row  # as every GeoPackage of ours

    con = sqlite3.connect(path)
    try:
        gpkg_begin(con, [srs_row("EPSG:4326")])
        con.execute(
            "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, "
            "identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT "
            "(strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, "
            "max_y DOUBLE, srs_id INTEGER)"
        )
        con.execute(
            "CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, "
            "geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, "
            "m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name))"
        )
        cols = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
        con.execute(
            f"CREATE TABLE {TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom MULTIPOLYGON, {cols})"
        )
        box = _bbox(features) or (None, None, None, None)
        con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, min_x, min_y, "
            "max_x, max_y, srs_id) VALUES (?, 'features', ?, ?, ?, ?, ?, ?, 4326)",
            (TABLE, TABLE, "oil-spill polygons of a dakd-edge batch, merged across scenes", *box),
        )
        con.execute(
            f"INSERT INTO gpkg_geometry_columns VALUES ('{TABLE}', 'geom', 'MULTIPOLYGON', 4326, 0, 0)"
        )
        names = [n for n, _, _ in COLUMNS]
        blobs = _blobs(features, gpkg=True)
        rows = ((blob, *(f[n] for n in names)) for blob, f in zip(blobs, features, strict=True))
        marks = ", ".join("?" * (len(names) + 1))
        con.executemany(f"INSERT INTO {TABLE} (geom, {', '.join(names)}) VALUES ({marks})", rows)
        con.commit()
    finally:
        con.close()


def _write_parquet(path: Path, features: list[dict[str, Any]]) -> None:
    """GeoParquet 1.1: WKB geometry column and the "geo" metadata (no CRS given = OGC:CRS84 lon/lat);
    ``start_time`` a UTC timestamp to the microsecond."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data: dict[str, Any] = {}
    for n, _, t in COLUMNS:
        values = [f[n] for f in features]
        if t == "timestamp":
            data[n] = pa.array([_datetime(v) for v in values], type=pa.timestamp("us", tz="UTC"))
        else:
            data[n] = pa.array(values, type=getattr(pa, t)())
    data["geometry"] = pa.array(list(_blobs(features, gpkg=False)), type=pa.binary())
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["MultiPolygon"], "edges": "planar"}},
    }
    box = _bbox(features, rfc7946=True)
    if box is not None:
        geo["columns"]["geometry"]["bbox"] = list(box)
    table = pa.table(data).replace_schema_metadata({"geo": json.dumps(geo)})
    pq.write_table(table, path)
