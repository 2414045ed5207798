"""The merged spill layer of a batch: every scene's polygons in one file, seams merged.

Consecutive Sentinel-1 products of one datatake overlap by a few km, and a pass may be given twice
(a product and its reprocessed twin): a slick seen in both would appear twice. Polygons of
*different* scenes whose interiors overlap are unioned (transitively: a slick across three products is
one feature) and keep all their scene ids; polygons of one scene never overlap (they are connected
components of one class map) and are left as they are.

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
order, so a resumed run writes the same features as an uninterrupted one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dakd_edge.atomic import atomic_path, describe_write_error
from dakd_edge.errors import InputError, OutputError

FORMATS = ("gpkg", "parquet")
GRID = 1e-9  # degrees: the precision of the per-scene GeoJSON
TABLE = "oil_spills"
COLUMNS = (  # name, GeoPackage type, Arrow type name
    ("scene_ids", "TEXT", "string"),
    ("n_scenes", "INTEGER", "int32"),
    ("n_parts", "INTEGER", "int32"),
    ("start_time", "TEXT", "string"),
    ("platform", "TEXT", "string"),
    ("area_m2", "REAL", "float64"),
    ("mean_prob", "REAL", "float64"),
    ("max_prob", "REAL", "float64"),
    ("touches_edge", "BOOLEAN", "bool_"),
    ("near_coast", "BOOLEAN", "bool_"),
)


@dataclass
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
    file that cannot be read or parsed: one damaged scene must not stop the layer of all others."""
    import shapely

    try:
        doc = json.loads(vector.read_text())
        if doc.get("note"):  # "no georeference": cannot be placed on the map
            return [], len(doc["features"])
        parts = []
        for f in doc["features"]:
            g = _cut_wide(shapely.geometry.shape(f["geometry"]))
            if not g.is_valid:
                g = shapely.make_valid(g)
            parts.append(
                Part(record["id"], record.get("start_time"), record.get("platform"), g, f["properties"])
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, shapely.errors.ShapelyError) as e:
        # ValueError covers JSONDecodeError and UnicodeDecodeError
        raise OutputError(f"{vector}: cannot read ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return parts, 0


def _cut_wide(geom: Any) -> Any:
    """``geom`` with each polygon that spans over 180 degrees of longitude (straddling the antimeridian,
    written wrapped instead of cut) or reaches past +-180 cut at +-180; others are kept as they are."""
    import shapely

    from dakd_edge.lonlat import split_antimeridian

    def wide(p: Any) -> bool:
        x0, _, x1, _ = p.bounds
        return p.geom_type == "Polygon" and not p.is_empty and (x1 - x0 > 180.0 or x0 < -180.0 or x1 > 180.0)

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


def merge(parts: list[Part]) -> list[dict[str, Any]]:
    """Features of the layer: overlapping parts of different scenes unioned, in a stable order."""
    import numpy as np
    import shapely

    from dakd_edge.inference.vectorize import connected_groups

    parts = sorted(parts, key=lambda p: (p.scene_id, p.props.get("id") or 0))
    geoms = np.array([p.geom for p in parts], dtype=object)
    overlaps: Iterable[tuple[int, int]] = ()
    if len(parts) > 1:
        a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        keep = (a < b) & np.array([parts[i].scene_id != parts[j].scene_id for i, j in zip(a, b, strict=True)])
        a, b = a[keep], b[keep]
        inner = ~shapely.touches(geoms[a], geoms[b])  # a shared edge or corner is not an overlap
        overlaps = zip(a[inner], b[inner], strict=True)
    return [_feature([parts[i] for i in idx]) for idx in connected_groups(len(parts), overlaps)]


def _feature(group: list[Part]) -> dict[str, Any]:
    import shapely
    from pyproj import Geod

    if len(group) == 1:
        geom = group[0].geom
    else:
        geom = shapely.union_all([p.geom for p in group], grid_size=GRID)
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    geom = shapely.MultiPolygon(polys)
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    weights = [p.props.get("area_m2") or p.props.get("area_px") or 0.0 for p in group]
    means = [(p.props.get("mean_prob"), w) for p, w in zip(group, weights, strict=True)]
    means = [(m, w) for m, w in means if m is not None]
    wsum = sum(w for _, w in means)
    maxes = [p.props["max_prob"] for p in group if p.props.get("max_prob") is not None]
    starts = sorted({p.start_time for p in group if p.start_time})
    platforms = sorted({p.platform for p in group if p.platform})
    return {
        "geometry": geom,
        "scene_ids": ",".join(sorted({p.scene_id for p in group})),
        "n_scenes": len({p.scene_id for p in group}),
        "n_parts": len(group),
        "start_time": starts[0] if starts else None,
        "platform": ",".join(platforms) or None,
        "area_m2": round(area, 3),
        "mean_prob": round(sum(m * w for m, w in means) / wsum, 6) if wsum else None,
        "max_prob": max(maxes) if maxes else None,
        "touches_edge": any(bool(p.props.get("touches_edge")) for p in group),
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

    return pq.read_table(path).to_pylist()


# --- writers -------------------------------------------------------------------------------------


def _bbox(features: list[dict[str, Any]], rfc7946: bool = False) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of the features; ``rfc7946``: west, south, east, north on the shortest
    arc of longitude, west > east when it crosses the antimeridian (GeoParquet's ``bbox``)."""
    import shapely

    from dakd_edge.lonlat import lon_span

    if not features:
        return None
    b = [float(v) for v in shapely.total_bounds([f["geometry"] for f in features])]
    if rfc7946:
        spans = [(p.bounds[0], p.bounds[2]) for p in shapely.get_parts([f["geometry"] for f in features])]
        if spans:
            b[0], b[2] = lon_span(spans)
    return tuple(b)  # type: ignore[return-value]


def _write_gpkg(path: Path, features: list[dict[str, Any]]) -> None:
    import shapely

    from dakd_edge.inference.vectorize import (  # as every GeoPackage of ours
        gpkg_begin,
        gpkg_geometry,
        srs_row,
    )

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
        rows = []
        for f in features:
            wkb = shapely.to_wkb(f["geometry"], byte_order=1, flavor="iso")
            rows.append((gpkg_geometry(wkb, f["geometry"].bounds, 4326), *(f[n] for n in names)))
        marks = ", ".join("?" * (len(names) + 1))
        con.executemany(f"INSERT INTO {TABLE} (geom, {', '.join(names)}) VALUES ({marks})", rows)
        con.commit()
    finally:
        con.close()


def _write_parquet(path: Path, features: list[dict[str, Any]]) -> None:
    """GeoParquet 1.1: WKB geometry column and the "geo" metadata (no CRS given = OGC:CRS84 lon/lat)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    data: dict[str, Any] = {
        n: pa.array([f[n] for f in features], type=getattr(pa, t)()) for n, _, t in COLUMNS
    }
    data["geometry"] = pa.array(
        [shapely.to_wkb(f["geometry"], byte_order=1, flavor="iso") for f in features], type=pa.binary()
    )
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
