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
from dakd_edge.inference.vectorize import Measurer


def row_pixel_area(transform: Any, crs: Any, y0: int, h: int) -> np.ndarray | None:
    """m^2 of one pixel for each row ``y0 .. y0 + h`` (varies with latitude in geographic CRSs)."""
    measure = Measurer(crs)
    if measure.unit is not None:
        return np.full(h, abs(transform.a * transform.e - transform.b * transform.d) * measure.unit**2)
    if measure.geod is None:
        return None
    out = np.empty(h)
    for i in range(h):
        y = y0 + i
        ring = [transform @ p for p in ((0, y), (1, y), (1, y + 1), (0, y + 1), (0, y))]
        out[i] = measure([ring])[0]
    return out


class Tally:
    """Class counts and oil area of the written class map, strip by strip.

    ``counts[k]`` is the number of pixels of class ``k``; the last entry counts nodata (class ids at
    or above ``num_classes``). The oil area needs a pixel size: from the CRS, else from the source
    (``info.pixel_size_m``, Sentinel-1); without either it stays 0.
    """

    def __init__(self, num_classes: int, oil_ids: list[int], info: SceneInfo) -> None:
        self.counts = np.zeros(num_classes + 1, np.int64)
        self.num_classes, self.oil_ids, self.info = num_classes, oil_ids, info
        self.oil_area = 0.0

    def add(self, cls: np.ndarray, y0: int) -> None:
        """Count the class ids ``cls`` (h, w) of the strip starting at row ``y0``."""
        self.counts += np.bincount(np.minimum(cls.ravel(), self.num_classes), minlength=len(self.counts))
        row_area = row_pixel_area(self.info.transform, self.info.crs, y0, cls.shape[0])
        if row_area is None and self.info.pixel_size_m is not None:
            row_area = np.full(cls.shape[0], self.info.pixel_size_m[0] * self.info.pixel_size_m[1])
        if row_area is not None:
            self.oil_area += float(np.isin(cls, self.oil_ids).sum(1) @ row_area)


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
) -> dict[str, Any]:
    """The report of one scene (JSON-able).

    ``predictor`` gives the model, backend and tiling; ``spills``/``dropped`` are the kept and the
    filtered polygons (None without a polygon pass); ``min_area`` is ``(m^2 or None, pixels)``;
    ``masker`` the scene's land masker or None; ``outputs`` the final paths by output name.
    """
    meta, counts, oil_ids = predictor.meta, tally.counts, tally.oil_ids
    valid_px = int(counts[: meta.num_classes].sum())
    georef = info.crs is not None or bool(info.gcps)
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
            "skipped_nodata": stats.tiles_skipped,
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
        "oil_area_m2": round(tally.oil_area, 1) if georef else None,
        "class_fraction": {
            n: round(int(counts[i]) / max(valid_px, 1), 6) for i, n in enumerate(meta.class_names)
        },
        "peak_buffer_mb": round(stats.peak_buffer_bytes / 2**20, 1),
        "model": meta.name,
        "backend": predictor.backend.name,
        "device": predictor.backend.device,
        "input_domain_warning": domain,
        "land_mask": None
        if masker is None
        else {
            "source": masker.name,
            "coast_buffer_m": masker.coast_buffer,
            "tiles_skipped": stats.tiles_skipped_land,
        },  # fmt: skip
    }
    if info.product is not None:
        report["product"] = info.product
    report["geocoded"] = geocoded
    report["outputs"] = outputs
    return report | clock.report(info.width * info.height / 1e6)
