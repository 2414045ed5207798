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


def row_pixel_area(transform: Any, crs: Any, y0: int, h: int) -> np.ndarray | None:
    """m^2 of one pixel for each row ``y0 .. y0 + h`` of a geographic CRS (varies with latitude)."""
    measure = Measurer(crs)
    if measure.geod is None or measure.to_lonlat is not None:
        return None
    out = np.empty(h)
    for i in range(h):
        y = y0 + i
        ring = [transform @ p for p in ((0, y), (1, y), (1, y + 1), (0, y + 1), (0, y))]
        out[i] = measure([ring])[0]
    return out


def _quad_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Areas of the quadrilaterals of a grid of corner points ``(m + 1, n + 1)`` -> ``(m, n)``."""
    dx1, dy1 = x[1:, 1:] - x[:-1, :-1], y[1:, 1:] - y[:-1, :-1]  # diagonal 00 -> 11
    dx2, dy2 = x[1:, :-1] - x[:-1, 1:], y[1:, :-1] - y[:-1, 1:]  # diagonal 01 -> 10
    return 0.5 * np.abs(dx1 * dy2 - dy1 * dx2)


class _ProjectedArea:
    """m^2 of pixels in a projected world (a GCP scene's UTM, or an affine scene's own CRS), cell by
    cell: the flat cell area divided by the CRS's areal scale there (``pyproj`` factors at the cell's
    corners), so areas are on the ellipsoid as the polygons' are (:class:`Measurer`)."""

    CELL = 64  # pixels per side of a cell (the mapping and the scale are smooth)

    def __init__(self, to_world: Any, crs: Any) -> None:
        from pyproj import Proj

        from dakd_edge.inference.vectorize import _pyproj_crs, projected_geod

        self.to_world = to_world
        c = _pyproj_crs(crs)
        self.unit2 = float(c.axis_info[0].unit_conversion_factor) ** 2
        self.to_lonlat = projected_geod(c)[1]
        self.proj = Proj(c) if self.to_lonlat is not None else None

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
        cell = _quad_area(np.reshape(x, cols.shape), np.reshape(y, cols.shape)) * self.unit2
        if self.proj is not None:
            with np.errstate(all="ignore"):
                lon, lat = self.to_lonlat.transform(x, y)
                k = np.reshape(self.proj.get_factors(lon, lat).areal_scale, cols.shape)
            k = (k[1:, 1:] + k[:-1, :-1] + k[1:, :-1] + k[:-1, 1:]) / 4
            cell = np.where(np.isfinite(k) & (k > 0), cell / np.where(k > 0, k, 1.0), cell)
        px = np.diff(re)[:, None] * np.diff(ce)[None, :]
        n = np.add.reduceat(np.add.reduceat(oil.astype(np.int64), re[:-1], 0), ce[:-1], 1)
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
    the polygons (:func:`~dakd_edge.inference.readers.world_of`): a geographic CRS row by row, a
    projected one (or a GCP scene's geolocation projected to UTM) on cells of
    :attr:`_ProjectedArea.CELL` pixels; else the source's ``info.pixel_size_m``. ``oil_area`` is None
    when the scene cannot be measured.
    """

    def __init__(self, num_classes: int, oil_ids: list[int], info: SceneInfo, world: Any = None) -> None:
        """``world``: the scene's ``world_of`` (mapping, CRS) when the caller has it (made here otherwise)."""
        from dakd_edge.inference.readers import world_of

        self.counts = np.zeros(num_classes + 1, np.int64)
        self.num_classes, self.oil_ids, self.info = num_classes, oil_ids, info
        self.cells: _ProjectedArea | None = None
        if info.gcps or info.georeferenced:
            to_world, crs = world or world_of(info)
            if to_world is not None and crs is not None and Measurer(crs).unit is not None:
                self.cells = _ProjectedArea(to_world, crs)
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
            return
        row_area = None
        if self.info.georeferenced:
            row_area = row_pixel_area(self.info.transform, self.info.crs, y0, cls.shape[0])
        if row_area is None:
            row_area = np.full(cls.shape[0], self.info.pixel_size_m[0] * self.info.pixel_size_m[1])
        self.oil_area += float(oil.sum(1) @ row_area)


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
    """Where the outputs are: the rasters (the scene's grid, its GCPs in EPSG:4326, or with
    ``--geocode`` the UTM grid of the polygons), the GeoPackage polygons (``world_crs``) and the GeoJSON
    (WGS84, or a local CRS's own coordinates). A GCP product's input ``crs`` is null, which said nothing
    about its outputs."""
    if geocoded:
        rasters = _crs_name(world_crs)
    elif info.gcps:
        rasters = "EPSG:4326 (GCPs)"
    else:
        rasters = _crs_name(info.crs)
    return {
        "rasters": rasters,
        "gpkg": _crs_name(world_crs),
        "geojson": geojson_crs(world_crs),
    }


def _spills_area(spills: list[Any] | None) -> float | None:
    """Total area (m^2) of the kept spill polygons; None without polygons or without m^2 areas."""
    if spills is None or any(s.area_m2 is None for s in spills):
        return None
    return round(sum(s.area_m2 for s in spills), 1)
