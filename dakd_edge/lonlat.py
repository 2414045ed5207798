"""Polygons in WGS84 longitude/latitude across the antimeridian (RFC 7946), in plain numpy.

A reprojected polygon that straddles 180 degrees comes back with longitudes jumping from +179.9 to
-179.9, which every planar GIS tool draws as a band around the globe. RFC 7946 (section 3.1.9) asks
for such polygons to be cut at +-180 into a MultiPolygon, and for a ``bbox`` whose west exceeds its
east when it crosses (section 5.2); rings follow the right-hand rule. Used by the per-scene GeoJSON,
the batch's merged layer and the Sentinel-1 footprint. No shapely: it is not a dependency of the edge
runtime, and the cut of a pixel polygon at one meridian is a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Ring = list[tuple[float, float]]


def signed_area(ring: Sequence[tuple[float, float]] | np.ndarray) -> float:
    """Planar signed area of a closed ring (shoelace): positive when counterclockwise."""
    a = np.asarray(ring, np.float64)
    x, y = a[:, 0], a[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def wrap_lon(lon: Any) -> Any:
    """Longitudes in [-180, 180)."""
    return (np.asarray(lon, np.float64) + 180.0) % 360.0 - 180.0


def near(lon: Any, ref: float) -> Any:
    """Longitudes taken the short way round from ``ref``: within 180 degrees of it, unwrapped past
    +-180 when ``ref`` is near there (a scene or polygon on the antimeridian stays one piece)."""
    return ref + wrap_lon(np.asarray(lon, np.float64) - ref)


def _inside(x: float, y: float, ring: np.ndarray) -> bool:
    """Whether (x, y) is inside the closed ``ring`` (even-odd ray casting)."""
    x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    cross = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(cross & (x < at)) % 2)


def _mirror(ring: np.ndarray) -> np.ndarray:
    """``ring`` reflected at x = 0, reversed so that it keeps its winding."""
    return np.column_stack([-ring[::-1, 0], ring[::-1, 1]])


def _clip_west(rings: list[np.ndarray], cut: float) -> list[list[np.ndarray]]:
    """Polygons of the part west of the meridian x = ``cut`` of one polygon (closed rings, exterior
    counterclockwise, holes clockwise, no vertex on the cut).

    Each ring that crosses becomes chains from a crossing into the west back to the cut; following the
    winding, the boundary of a western piece runs up the cut from a chain's exit to the next entry
    above it, which links the chains (of the exterior and of crossing holes alike) into closed rings.
    Rings wholly west stay as they are; holes go to the piece that contains them.
    """
    chains: list[np.ndarray] = []
    whole: list[np.ndarray] = []
    for ring in rings:
        p = ring[:-1]
        west = p[:, 0] < cut
        if west.all():
            whole.append(ring)
            continue
        if not west.any():
            continue
        k = int(np.argmin(west))  # start outside: crossings then alternate entry, exit
        q = np.roll(p, -k, axis=0)
        q = np.vstack([q, q[:1]])
        w = np.append(np.roll(west, -k), west[k])
        edges = np.flatnonzero(w[:-1] != w[1:])

        def at_cut(e: int, q: np.ndarray = q) -> np.ndarray:
            (x0, y0), (x1, y1) = q[e], q[e + 1]
            return np.array([[cut, y0 + (cut - x0) / (x1 - x0) * (y1 - y0)]])

        chains += [np.vstack([at_cut(a), q[a + 1 : b + 1], at_cut(b)]) for a, b in edges.reshape(-1, 2)]
    closed = list(whole)
    if chains:
        entry = np.array([c[0, 1] for c in chains])
        order = np.argsort(entry, kind="stable")
        up = np.searchsorted(entry[order], [c[-1, 1] for c in chains], side="right")
        nxt = [int(order[j]) if j < len(order) else int(order[0]) for j in up]
        seen = [False] * len(chains)
        for start in range(len(chains)):
            parts, i = [], start
            while not seen[i]:
                seen[i] = True
                parts.append(chains[i])
                i = nxt[i]
            if parts:
                r = np.vstack(parts)
                closed.append(np.vstack([r, r[:1]]))
    outer = [r for r in closed if signed_area(r) > 0]
    polys = [[r] for r in outer]
    for hole in (r for r in closed if signed_area(r) <= 0):
        mx, my = (hole[0] + hole[1]) / 2  # an edge midpoint: never on another ring of a valid polygon
        for poly in polys:
            if _inside(float(mx), float(my), poly[0]):
                poly.append(hole)
                break
    return polys


def _off_cut(ring: np.ndarray, cut: float, to: float) -> np.ndarray:
    """``ring`` with its vertices on the meridian ``cut`` (within 1e-12 degree, as :func:`_tidy` puts
    them back: 180.00000000000003 is a pixel edge on it) moved one ulp towards ``to``."""
    out = ring.copy()
    out[np.abs(out[:, 0] - cut) < 1e-12, 0] = np.nextafter(cut, to)
    return out


def _tidy(ring: np.ndarray, cut: float) -> np.ndarray | None:
    """A closed ring of a piece with the vertices moved off the cut (by :func:`split_antimeridian`) back
    on it, and the repeated points and back-and-forth steps along the cut that this leaves (zero-width
    slivers) removed; None when fewer than three points remain."""
    p = ring[:-1].copy()
    p[np.abs(p[:, 0] - cut) < 1e-12, 0] = cut
    while len(p) >= 3:
        prev, nxt = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
        on = (prev[:, 0] == cut) & (p[:, 0] == cut) & (nxt[:, 0] == cut)
        drop = (p == prev).all(1) | (on & ((p[:, 1] - prev[:, 1]) * (nxt[:, 1] - p[:, 1]) < 0))
        if not drop.any():
            return np.vstack([p, p[:1]])
        p = np.delete(p, int(np.argmax(drop)), axis=0)  # one at a time: neighbours change
    return None


def split_antimeridian(rings: Sequence[Ring]) -> list[list[Ring]]:
    """One lon/lat polygon (closed rings, exterior first) as RFC 7946 polygons: longitudes in
    [-180, 180], cut at +-180 when it straddles the antimeridian, rings wound by the right-hand rule.

    Longitudes are first taken the short way round from the exterior's first vertex, so a ring written
    wrapped (179.9 -> -179.9, as a reprojection gives it) or unwrapped (180.1) is the same small polygon,
    never one spanning the globe. Edges are straight in lon/lat (vertices are a pixel apart). Vertices
    on the cut (within 1e-12 degree) count, for each side's pieces, as on the other side (moved off by
    one ulp, then back: :func:`_tidy`), so a hole touching the cut along an edge becomes a notch of
    its piece; pieces narrower than 1e-9 degree (the GeoJSON's precision) are dropped.
    """
    return [[[tuple(v) for v in r.tolist()] for r in poly] for poly in _split(rings)]


def _around_pole(ring: np.ndarray) -> np.ndarray | None:
    """A closed ``ring`` that winds once around a pole (its longitudes, taken step by step the short
    way, add up to +-360) as a planar ring: started where it first crosses the antimeridian, unwrapped
    from -180 to 180 (or back), and closed along the nearer pole's latitude (+-90). None for any other
    ring.

    Unwrapped by whole turns from the vertex nearest to longitude 0 (vertices on +-180 stay exactly on
    it: a ring starting there, summed step by step, ended at 179.9999999999999 and crossed nothing)."""
    step = wrap_lon(np.diff(ring[:, 0]))
    total = float(step.sum())
    if abs(abs(total) - 360.0) > 1e-6:
        return None
    k = int(np.argmin(np.abs(wrap_lon(ring[:-1, 0]))))
    ring = np.vstack([ring[k:-1], ring[: k + 1]])
    total = 360.0 if total > 0 else -360.0
    lon = _whole_turns(ring[:, 0], float(wrap_lon(ring[0, 0])))
    turn = np.floor((lon + 180.0) / 360.0)  # which copy of [-180, 180) each vertex is in
    i = int(np.flatnonzero(turn[1:] != turn[:-1])[0])  # the first edge across +-180 (+ k 360)
    x = 360.0 * max(turn[i], turn[i + 1]) - 180.0
    t = (x - lon[i]) / (lon[i + 1] - lon[i])
    y = ring[i, 1] + t * (ring[i + 1, 1] - ring[i, 1])
    shift = -180.0 - x if total > 0 else 180.0 - x
    lon = np.r_[x, lon[i + 1 : -1], lon[: i + 1] + total, x + total] + shift
    lat = np.r_[y, ring[i + 1 : -1, 1], ring[: i + 1, 1], y]
    keep = np.r_[True, (np.diff(lon) != 0) | (np.diff(lat) != 0)]  # a vertex on the cut was repeated
    lon, lat = lon[keep], lat[keep]
    pole = 90.0 if float(np.mean(lat)) >= 0 else -90.0
    return np.column_stack([np.r_[lon, lon[-1], lon[0], lon[0]], np.r_[lat, pole, pole, lat[0]]])


def _cut_at_pole(ring: np.ndarray) -> bool:
    """Whether ``ring`` is a polygon around a pole cut already (as :func:`_split` writes it): longitudes
    from exactly -180 to 180, closed along latitude +-90. Cut again, it would be taken for a ring
    wrapped across 180 and its edges along the cut and the pole for steps of the ring."""
    tol = 1e-9
    x, y = ring[:, 0], ring[:, 1]
    return (
        abs(float(x.min()) + 180.0) <= tol
        and abs(float(x.max()) - 180.0) <= tol
        and bool(np.any(np.abs(np.abs(y) - 90.0) <= tol))
    )


def _unwrap_ring(a: np.ndarray) -> np.ndarray:
    """Longitudes of ``a`` taken step by step the short way from its first vertex (kept as it is when in
    [-180, 180]): a hole of a polygon around a pole, which has no one reference longitude."""
    x0 = float(a[0, 0]) if -180.0 <= a[0, 0] <= 180.0 else float(wrap_lon(a[0, 0]))
    return _whole_turns(a[:, 0], x0)


def _whole_turns(lon: np.ndarray, x0: float) -> np.ndarray:
    """``lon`` taken step by step the short way from ``x0`` (its first vertex, wrapped or not), each
    moved by whole turns only: a vertex on +-180, or one in range that needs no turn, keeps its exact
    value (a running sum of the steps drifts by 1e-14, which can make a hole touching the exterior at
    a vertex cross it)."""
    run = x0 + np.concatenate([[0.0], np.cumsum(wrap_lon(np.diff(lon)))])
    return lon + 360.0 * np.round((run - lon) / 360.0)


def _keep_inside(rings: list[np.ndarray], cut: float) -> list[list[np.ndarray]]:
    """The polygons of one polygon's part on the [-180, 180] side of the meridian ``cut`` (+-180), with
    the vertices on the cut counted as outside (:func:`_off_cut`) and put back on it (:func:`_tidy`)."""
    if cut > 0:
        polys = _clip_west([_off_cut(a, cut, np.inf) for a in rings], cut)
    else:
        mirrored = [_mirror(_off_cut(a, cut, -np.inf)) for a in rings]
        polys = [[_mirror(r) for r in poly] for poly in _clip_west(mirrored, -cut)]
    out = []
    for poly in polys:
        ext = _tidy(poly[0], cut)
        if ext is None or np.ptp(ext[:, 0]) < 1e-9:  # a sliver along the cut
            continue
        out.append([ext, *(h for h in (_tidy(r, cut) for r in poly[1:]) if h is not None)])
    return out


def _split_polar(arrs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """:func:`_split` of a polygon around a pole whose exterior is planar already (in [-180, 180],
    closed along the pole), its holes unwrapped each from its own first vertex (the exterior's
    longitudes say nothing about where a hole is).

    A hole that crosses +-180 is taken past +180 and cut there with the exterior, then its copy 360
    degrees west is cut at -180 with what is left: each side of it becomes a notch of the exterior's
    edge along the cut (a hole left whole there would stick out of the exterior)."""
    ext, inside, across = arrs[0], [], []
    for h in arrs[1:]:
        lo, hi = float(h[:, 0].min()), float(h[:, 0].max())
        if -180.0 <= lo and hi <= 180.0:
            inside.append(h)
        else:
            across.append(h + [360.0, 0.0] if lo < -180.0 else h)
    if not across:
        return [arrs]
    polys = _keep_inside([ext, *inside, *across], 180.0)
    notched = set()
    for h in across:
        copy = h - [360.0, 0.0]
        x, y = copy[int(np.argmax(copy[:, 0]))]  # a vertex in [-180, 180]: inside its piece
        for k, poly in enumerate(polys):
            if _inside(float(x), float(y), poly[0]):
                poly.append(copy)
                notched.add(k)
                break
    polys = [
        q for k, poly in enumerate(polys) for q in (_keep_inside(poly, -180.0) if k in notched else [poly])
    ]
    return polys or [[np.column_stack([wrap_lon(a[:, 0]), a[:, 1]]) for a in arrs]]


def _split(rings: Sequence[Ring] | Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """:func:`split_antimeridian` with rings as (n, 2) arrays.

    An exterior that winds around a pole (a polygon containing it: longitudes span 360 degrees) is
    closed along that pole's latitude (:func:`_around_pole`), its holes cut with it at +-180 where they
    cross (:func:`_split_polar`); one cut at the pole already is kept as it is."""
    arrs = [np.array(r, np.float64).reshape(-1, 2) for r in rings]
    polar = None
    if len(arrs[0]) > 3:
        polar = arrs[0] if _cut_at_pole(arrs[0]) else _around_pole(arrs[0])
    if polar is not None:
        arrs[0] = polar
        for a in arrs[1:]:
            a[:, 0] = _unwrap_ring(a)
    else:
        ref = float(wrap_lon(arrs[0][0, 0]))
        for a in arrs:
            a[:, 0] = near(a[:, 0], ref)
    for i, a in enumerate(arrs):
        if (signed_area(a) > 0) != (i == 0):  # exterior counterclockwise, holes clockwise
            arrs[i] = a[::-1]
    if polar is not None:
        return _split_polar(arrs)
    lo = min(float(a[:, 0].min()) for a in arrs)
    hi = max(float(a[:, 0].max()) for a in arrs)
    if -180.0 <= lo and hi <= 180.0:
        pieces = [arrs]
    else:
        cut = 180.0 if hi > 180.0 else -180.0
        # Vertices on the cut count, for each side, as on the other one (every copy of a point moves
        # alike: rings touching there still touch): a hole or notch touching the cut along an edge
        # then opens onto it, instead of staying a hole with an edge on the piece's own boundary
        west = _clip_west([_off_cut(a, cut, np.inf) for a in arrs], cut)
        mirrored = [_mirror(_off_cut(a, cut, -np.inf)) for a in arrs]
        east = [[_mirror(r) for r in poly] for poly in _clip_west(mirrored, -cut)]
        shift_west, shift_east = (0.0, -360.0) if cut > 0 else (360.0, 0.0)
        pieces = []
        for polys, shift in ((west, shift_west), (east, shift_east)):
            for poly in polys:
                ext = _tidy(poly[0], cut)
                if ext is None or np.ptp(ext[:, 0]) < 1e-9:  # a sliver along the cut
                    continue
                holes = [h for h in (_tidy(r, cut) for r in poly[1:]) if h is not None]
                pieces.append([r + [shift, 0.0] for r in [ext, *holes]])
        if not pieces:  # nothing linked (not a valid polygon): keep it whole, wrapped
            pieces = [[np.column_stack([wrap_lon(a[:, 0]), a[:, 1]]) for a in arrs]]
    return pieces


def lon_span(intervals: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """(west, east) of the shortest arc of longitude covering ``intervals`` (at least one (west, east)
    pair in [-180, 180], none crossing): west > east when that arc crosses the antimeridian (RFC 7946
    section 5.2)."""
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    best, span = merged[0][0] + 360.0 - merged[-1][1], (merged[0][0], merged[-1][1])
    for prev, cur in zip(merged[:-1], merged[1:], strict=True):
        if cur[0] - prev[1] > best:  # the largest gap is the part of the circle left out
            best, span = cur[0] - prev[1], (cur[0], prev[1])
    return span


def geojson_geometry(rings: Sequence[Ring] | Sequence[np.ndarray]) -> tuple[dict[str, Any], list[float]]:
    """RFC 7946 geometry and bbox of one WGS84 polygon (:func:`split_antimeridian`), at 1e-9 degree."""
    polys = _split(rings)
    coords = [[r.round(9).tolist() for r in poly] for poly in polys]
    ext = [poly[0] for poly in polys]
    if len(ext) == 1:
        west, east = float(ext[0][:, 0].min()), float(ext[0][:, 0].max())
    else:
        west, east = lon_span((float(e[:, 0].min()), float(e[:, 0].max())) for e in ext)
    box = [west, min(float(e[:, 1].min()) for e in ext), east, max(float(e[:, 1].max()) for e in ext)]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}, [round(v, 9) for v in box]
    return {"type": "MultiPolygon", "coordinates": coords}, [round(v, 9) for v in box]


def geojson_geometries(
    points: np.ndarray, ring_sizes: Sequence[int], rings_per_polygon: Sequence[int]
) -> list[tuple[dict[str, Any], list[float]]]:
    """:func:`geojson_geometry` of many polygons at once: ``points`` (n, 2) holds every closed ring of
    every polygon back to back (``ring_sizes`` points each; ``rings_per_polygon`` rings each, exterior
    first). A scene can have tens of thousands of small polygons, nearly all far from 180: those are
    wound, rounded and bounded with whole-array operations; only the ones whose longitudes span 180
    degrees or more, or leave [-180, 180], go through the per-polygon cut."""
    pts = np.asarray(points, np.float64)
    sizes = np.asarray(ring_sizes, np.int64)
    if len(sizes) == 0:
        return []
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    x, y = pts[:, 0], pts[:, 1]
    cross = np.zeros(len(pts))
    cross[:-1] = x[:-1] * y[1:] - x[1:] * y[:-1]
    cross[starts[1:] - 1] = 0.0  # the pair from one ring's last point to the next ring's first
    area2 = np.add.reduceat(cross, starts)  # twice each ring's signed area
    xmin, xmax = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    ymin, ymax = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    first_ring = np.concatenate([[0], np.cumsum(rings_per_polygon)[:-1]]).astype(np.int64)
    pxmin, pxmax = np.minimum.reduceat(xmin, first_ring), np.maximum.reduceat(xmax, first_ring)
    slow = (pxmax - pxmin >= 180.0) | (pxmin < -180.0) | (pxmax > 180.0)
    exterior = np.zeros(len(sizes), bool)
    exterior[first_ring] = True
    flip = (area2 > 0) != exterior  # exteriors counterclockwise, holes clockwise
    coords = pts.round(9)
    for r in np.flatnonzero(flip):
        a, b = starts[r], starts[r] + sizes[r]
        coords[a:b] = coords[a:b][::-1]
    flat = coords.tolist()
    box = np.column_stack([xmin, ymin, xmax, ymax]).round(9).tolist()
    out: list[tuple[dict[str, Any], list[float]]] = []
    for k, (r0, n) in enumerate(zip(first_ring.tolist(), rings_per_polygon, strict=True)):
        if slow[k]:
            rings = [pts[starts[r] : starts[r] + sizes[r]] for r in range(r0, r0 + n)]
            out.append(geojson_geometry(rings))
            continue
        rings_k = [flat[starts[r] : starts[r] + sizes[r]] for r in range(r0, r0 + n)]
        out.append(({"type": "Polygon", "coordinates": rings_k}, box[r0]))
    return out
