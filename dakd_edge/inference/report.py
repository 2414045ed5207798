"""The JSON report of one segmented scene: ``segment_scene``'s return value and its ``--report`` file.

Three parts, filled while the scene runs: :class:`Tally` counts the written class map strip by strip
(pixels per class, oil area in m^2), :class:`Clock` times the run and its stages, and
:func:`scene_report` turns them, the tiling counters and the polygon pass into the report, its keys
always in the same order.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dakd_edge.inference.geotiff import SceneInfo
from dakd_edge.inference.tiling import TileStats
from dakd_edge.inference.vectorize import Measurer, geojson_crs, measures_m2


def _cell_sums(a: np.ndarray, row_starts: np.ndarray, col_starts: np.ndarray) -> np.ndarray:
    """Sums of ``a`` over the cells starting at ``row_starts`` x ``col_starts``."""
    return np.add.reduceat(np.add.reduceat(a, row_starts, 0), col_starts, 1)


class _GeographicArea:
    """m^2 of pixels of an affine grid in a geographic CRS, pixel by pixel: the pixel's parallelogram in
    longitude/latitude times the ellipsoid's area element at its centre's latitude (exact to 1e-7 for
    pixels up to a kilometre), as the polygons' areas are on that ellipsoid (:class:`Measurer`). Pixel
    by pixel, not row by row: a rotated grid's latitude changes along a row."""

    CELL = 64  # pixels per side of a cell of a rotated grid, at most
    MAX_SPAN = 1.0e-4  # radians of latitude a cell may span (0.006 degrees: 64 pixels of 10 m)

    def __init__(self, transform: Any, crs: Any) -> None:
        from dakd_edge.inference.vectorize import _pyproj_crs

        c = _pyproj_crs(crs)
        self.transform = transform
        self.rad = float(c.axis_info[0].unit_conversion_factor)  # radians per unit (degree, grad)
        geod = c.get_geod()
        self.a2, self.es = geod.a**2, geod.es

    def _per_rad2(self, lat: np.ndarray) -> np.ndarray:
        """The ellipsoid's m^2 per square radian of longitude and latitude, M N cos(lat)."""
        return self.a2 * (1 - self.es) * np.cos(lat) / (1 - self.es * np.sin(lat) ** 2) ** 2

    def __call__(self, oil: np.ndarray, y0: int, x0: int) -> float:
        t = self.transform
        px_rad2 = abs(t.a * t.e - t.b * t.d) * self.rad**2
        if t.d == 0:  # north-up: each row has one latitude (one evaluation a row, not a pixel)
            lat = (t.e * (np.arange(oil.shape[0]) + y0 + 0.5) + t.f) * self.rad
            return float(np.count_nonzero(oil, axis=1) @ self._per_rad2(lat)) * px_rad2
        # A rotated grid: latitude changes along rows too. Per cell of up to CELL x CELL pixels spanning
        # at most MAX_SPAN of latitude, the element at the oil's mean latitude times its count: the
        # element is smooth, so the error is second order in that span (< 1e-8), and the transcendental
        # functions run once a cell, not once a pixel (2.1 -> 0.1 s per 256-row strip of an all-oil
        # 26000-pixel-wide scene).
        h, w = oil.shape
        span = (abs(t.d) + abs(t.e)) * self.rad  # radians of latitude per pixel, at most
        cell = int(max(1, min(self.CELL, self.MAX_SPAN // span))) if span > 0 else self.CELL
        re, ce = np.r_[0:h:cell], np.r_[0:w:cell]
        o = oil.astype(np.float64)
        n = _cell_sums(o, re, ce)
        if not n.any():
            return 0.0
        sr = _cell_sums(o * np.arange(h, dtype=np.float64)[:, None], re, ce)
        sc = _cell_sums(o * np.arange(w, dtype=np.float64)[None, :], re, ce)
        with np.errstate(invalid="ignore", divide="ignore"):
            mr, mc = sr / n, sc / n
        lat = (t.d * (mc + x0 + 0.5) + t.e * (mr + y0 + 0.5) + t.f) * self.rad
        return float((n * np.where(n > 0, self._per_rad2(np.nan_to_num(lat)), 0.0)).sum()) * px_rad2


def _quad_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Areas of the quadrilaterals of a grid of corner points ``(m + 1, n + 1)`` -> ``(m, n)``."""
    dx1, dy1 = x[1:, 1:] - x[:-1, :-1], y[1:, 1:] - y[:-1, :-1]  # diagonal 00 -> 11
    dx2, dy2 = x[1:, :-1] - x[:-1, 1:], y[1:, :-1] - y[:-1, 1:]  # diagonal 01 -> 10
    return 0.5 * np.abs(dx1 * dy2 - dy1 * dx2)


class _ProjectedArea:
    """m^2 of pixels in a projected world (a GCP scene's UTM, or an affine scene's own CRS), cell by
    cell: each cell holding oil measured on the ellipsoid (``pyproj.Geod`` on its corners' longitude /
    latitude), as the polygons are (:class:`Measurer`). Not PROJ's areal scale factors: they are on
    the projection's own sphere where it has one (EPSG:3857: 0.35 % off at 61 N)."""

    CELL = 64  # pixels per side of a cell (the mapping and the scale are smooth)

    def __init__(self, to_world: Any, crs: Any) -> None:
        from dakd_edge.inference.vectorize import _pyproj_crs, projected_geod

        self.to_world = to_world
        c = _pyproj_crs(crs)
        self.unit2 = float(c.axis_info[0].unit_conversion_factor) ** 2
        self.geod, self.to_lonlat = projected_geod(c)

    def _world(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from affine import Affine

        if isinstance(self.to_world, Affine):
            x, y = self.to_world @ (cols, rows)
            return np.asarray(x, np.float64), np.asarray(y, np.float64)
        return self.to_world(cols, rows)  # a GCP scene's mapping

    def __call__(self, oil: np.ndarray, y0: int, x0: int) -> float:
        if not oil.any():
            return 0.0
        h, w = oil.shape
        re, ce = np.r_[0 : h : self.CELL, h], np.r_[0 : w : self.CELL, w]
        cols, rows = np.meshgrid(ce + x0, re + y0)
        x, y = self._world(cols.ravel().astype(np.float64), rows.ravel().astype(np.float64))
        x, y = np.reshape(x, cols.shape), np.reshape(y, cols.shape)
        cell = _quad_area(x, y) * self.unit2  # flat: where the CRS cannot be inverted
        n = _cell_sums(oil.astype(np.int64), re[:-1], ce[:-1])
        if self.to_lonlat is not None:
            with np.errstate(all="ignore"):
                lon, lat = (np.asarray(v, np.float64) for v in self.to_lonlat.transform(x, y))
            di, dj = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0])  # a cell's corners, in turn
            for i, j in zip(*np.nonzero(n), strict=True):
                lo, la = lon[i + di, j + dj], lat[i + di, j + dj]
                if np.isfinite(lo).all() and np.isfinite(la).all():
                    cell[i, j] = abs(self.geod.polygon_area_perimeter(lo, la)[0])
        px = np.diff(re)[:, None] * np.diff(ce)[None, :]
        return float((n * cell / px).sum())


def class_counts(cls: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels of each class id ``0 .. num_classes - 1`` in ``cls``, then of every other value (nodata).

    One ``count_nonzero`` per class on the uint8 map: ``np.bincount`` first converts the map to int64
    (8 bytes a pixel), 18x slower on a 256-row strip of a Sentinel-1 product (7 s of the whole run)."""
    out = np.zeros(num_classes + 1, np.int64)
    for k in range(num_classes):
        out[k] = np.count_nonzero(cls == k)
    out[num_classes] = cls.size - out[:num_classes].sum()
    return out


class Tally:
    """Class counts and oil area of the written class map, strip by strip.

    ``counts[k]`` is the number of pixels of class ``k``; the last entry counts nodata (class ids at
    or above ``num_classes``). The oil area (m^2, on the ellipsoid) comes from the same geolocation as
    the polygons (:func:`~dakd_edge.inference.readers.world_of`): a geographic CRS pixel by pixel
    (:class:`_GeographicArea`), a projected one (or a GCP scene's geolocation projected to UTM) on
    cells of :attr:`_ProjectedArea.CELL` pixels; else the source's ``info.pixel_size_m``.
    ``oil_area`` is None when the scene cannot be measured.
    """

    def __init__(self, num_classes: int, oil_ids: list[int], info: SceneInfo, world: Any = None) -> None:
        """``world``: the scene's ``world_of`` (mapping, CRS) when the caller has it (made here otherwise)."""
        from affine import Affine

        from dakd_edge.inference.readers import world_of

        self.counts = np.zeros(num_classes + 1, np.int64)
        self.num_classes, self.oil_ids, self.info = num_classes, oil_ids, info
        self.cells: _ProjectedArea | _GeographicArea | None = None
        if info.gcps or info.georeferenced:
            to_world, crs = world or world_of(info)
            measure = Measurer(crs) if to_world is not None and crs is not None else None
            if measure is not None and measure.unit is not None:
                self.cells = _ProjectedArea(to_world, crs)
            elif measure is not None and measure.geod is not None and isinstance(to_world, Affine):
                self.cells = _GeographicArea(to_world, crs)
        measurable = measures_m2(info) or info.pixel_size_m is not None
        self.oil_area: float | None = 0.0 if measurable else None

    def add(self, cls: np.ndarray, y0: int, x0: int = 0) -> None:
        """Count the class ids ``cls`` (h, w) of the strip whose top left pixel is ``(y0, x0)``."""
        self.counts += class_counts(cls, self.num_classes)
        if self.oil_area is None:
            return
        oil = np.isin(cls, self.oil_ids)
        if self.cells is not None:
            self.oil_area += self.cells(oil, y0, x0)
        else:
            dy, dx = self.info.pixel_size_m
            self.oil_area += float(np.count_nonzero(oil)) * dy * dx


class Clock:
    """Wall time of one run: in total, in inference (from the start to the last strip written), and in
    the stages of inference that are not the model: reading the input (Sentinel-1: + calibration) and
    land masking."""

    STAGES = ("read", "land_mask")

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages = dict.fromkeys(self.STAGES, 0.0)
        self.inference_s = 0.0

    def add(self, stage: str, since: float) -> None:
        """Count the time from ``since`` (a ``time.perf_counter()``) to now towards ``stage``."""
        self.stages[stage] += time.perf_counter() - since

    def inference_done(self) -> None:
        self.inference_s = time.perf_counter() - self.t0

    def report(self, megapixels: float) -> dict[str, Any]:
        return {
            "time_s": round(time.perf_counter() - self.t0, 3),
            "inference_s": round(self.inference_s, 3),
            # of inference_s: reading the input (Sentinel-1: + calibration) and land masking
            "stage_s": {k: round(v, 3) for k, v in self.stages.items()},
            "mpix_per_s": round(megapixels / max(self.inference_s, 1e-9), 3),
        }


def scene_report(
    info: SceneInfo,
    predictor: Any,
    stats: TileStats,
    tally: Tally,
    clock: Clock,
    *,
    scale: str | None,
    all_nodata: bool,
    domain: str | None,
    masker: Any,
    spills: list[Any] | None,
    dropped: list[Any] | None,
    min_area: tuple[float | None, int],
    geocoded: bool,
    outputs: dict[str, str],
    level_trend: dict[str, Any] | None = None,
    world_crs: Any = None,
) -> dict[str, Any]:
    """The report of one scene (JSON-able).

    ``predictor`` gives the model, backend and tiling; ``spills``/``dropped`` are the kept and the
    filtered polygons (None without a polygon pass); ``min_area`` is ``(m^2 or None, pixels)``;
    ``masker`` the scene's land masker or None; ``outputs`` the final paths by output name;
    ``level_trend`` what :func:`~dakd_edge.inference.segment.segment_scene` flattened; ``world_crs`` the
    CRS of the polygons (the scene's, or the UTM zone of a GCP scene's centre), for ``output_crs``.
    """
    meta, counts, oil_ids = predictor.meta, tally.counts, tally.oil_ids
    valid_px = int(counts[: meta.num_classes].sum())
    tiling = predictor.tiling
    report = {
        "scene": str(info.path),
        "width": info.width,
        "height": info.height,
        "megapixels": round(info.width * info.height / 1e6, 3),
        "valid_fraction": round(valid_px / (info.width * info.height), 6),
        "all_nodata": all_nodata or valid_px == 0,
        "bands": list(info.bands),
        "crs": info.crs.to_string() if info.crs is not None else None,
        "georeferenced": info.georeferenced,
        "georeference": "gcps" if info.gcps else ("affine" if info.georeferenced else None),
        "input_scale": scale,
        "tiles": {
            "total": stats.tiles_total,
            "run": stats.tiles_run,
            "skipped_nodata": stats.tiles_skipped - stats.tiles_skipped_land,
            "skipped_land": stats.tiles_skipped_land,
            "batches": stats.batches,
            "tile": tiling.tile,
            "overlap": tiling.overlap,
            "batch": tiling.batch,
        },
        "spills": None if spills is None else len(spills),
        "spills_filtered": None if dropped is None else len(dropped),
        "filtered_area_px": None if dropped is None else int(sum(s.area_px for s in dropped)),
        "min_area": {"m2": min_area[0], "pixels": min_area[1]},
        "oil_pixels": int(counts[oil_ids].sum()),
        "oil_area_m2": None if tally.oil_area is None else round(tally.oil_area, 1),
        # the kept polygons' total: oil_area_m2 less the spills --min-area dropped (the class map keeps them)
        "spills_area_m2": _spills_area(spills),
        "class_fraction": {
            n: round(int(counts[i]) / max(valid_px, 1), 6) for i, n in enumerate(meta.class_names)
        },
        "peak_buffer_mb": round(stats.peak_buffer_bytes / 2**20, 1),
        "model": meta.name,
        "backend": predictor.backend.name,
        "device": predictor.backend.device,
        "input_domain_warning": domain,
        "level_trend": level_trend,
        "land_mask": None
        if masker is None
        else {
            "source": masker.name,
            "coast_buffer_m": masker.coast_buffer,
            "tiles_skipped": stats.tiles_skipped_land,
            "water_counted_as_land": masker.water_counted_as_land(),  # GLOBE's inland seas in the scene
        },  # fmt: skip
    }
    if info.product is not None:
        report["product"] = info.product
    report["geocoded"] = geocoded
    report["output_crs"] = output_crs(info, geocoded, world_crs)
    report["outputs"] = outputs
    return report | clock.report(info.width * info.height / 1e6)


def _crs_name(crs: Any) -> str | None:
    return None if crs is None else crs.to_string()


def output_crs(info: Any, geocoded: bool, world_crs: Any) -> dict[str, str | None]:
    """Where the outputs are: the rasters (the scene's grid, its GCPs in their own CRS (read as
    EPSG:4326 when they have none), or with ``--geocode`` the UTM grid of the polygons), the GeoPackage
    polygons (``world_crs``) and the GeoJSON (WGS84, or a local CRS's own coordinates). A GCP product's
    input ``crs`` is null, which said nothing about its outputs."""
    if geocoded:
        rasters = _crs_name(world_crs)
    elif info.gcps:
        rasters = f"{_crs_name(info.gcps_crs) or 'EPSG:4326'} (GCPs)"
    else:
        rasters = _crs_name(info.crs)
    return {
        "rasters": rasters,
        "gpkg": _crs_name(world_crs),
        "geojson": geojson_crs(world_crs),
    }


def _spills_area(spills: list[Any] | None) -> float | None:
    """Total area (m^2) of the kept spill polygons, a float even when there are none (``sum([])`` is
    the integer 0); None without polygons or without m^2 areas."""
    if spills is None or any(s.area_m2 is None for s in spills):
        return None
    return round(float(sum(s.area_m2 for s in spills)), 1)
