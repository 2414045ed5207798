"""Segment a GeoTIFF scene of any size: stream, write COGs, vectorise spills, report.

This is the library side of ``dakd-edge segment``. Memory is bounded by one row of tiles (see
:mod:`dakd_edge.inference.tiling`) during inference; the polygon pass afterwards reads the finished
class map as a 1-byte oil mask and the oil probability only inside each spill's bounding box.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from dakd_edge._atomic import check_output
from dakd_edge.errors import InputError, OutputError
from dakd_edge.inference.base import Backend
from dakd_edge.inference.geotiff import BLOCK, CogWriter, NoGeoreferenceWarning, SceneReader
from dakd_edge.inference.predictor import Predictor, resolve_scale
from dakd_edge.inference.tiling import Band, TileStats
from dakd_edge.inference.vectorize import VECTOR_FORMATS, Measurer, spills_from_mask, write_vector
from dakd_edge.meta import ModelMeta

PROBS_DTYPES = ("uint8", "float16")
# progress(rows_done, height, stats): called after every row of tiles
Progress = Callable[[int, int, TileStats], None]


def oil_class_ids(meta: ModelMeta) -> list[int]:
    """Class ids that mean oil: names 'oil'/'oil spill'; class 1 for models without such a name."""
    ids = [
        i
        for i, n in enumerate(meta.class_names)
        if n.lower().replace("_", " ").replace("-", " ") in ("oil", "oil spill", "oilspill")
    ]
    return ids or [1]


def _row_pixel_area(transform: Any, crs: Any, y0: int, h: int) -> np.ndarray | None:
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


def gdal_cache_bytes(width: int, num_classes: int, prob_bytes: int) -> int:
    """GDAL block cache for one scene: two block rows of every output, plus 16 MB for reads.

    Two block rows let every output block fill up before it is flushed (bands are ``tile - overlap``
    rows, not block-aligned). GDAL's default (5% of RAM) lets the cache, not our buffers, set the peak
    memory on big scenes, and a large read allowance grows with nothing useful: input windows are read
    once per tile row, their overlap rows again at most once (the null-backend pipeline was no faster
    with 64 MB than with 16, and 16384^2 peaked ~80 MB higher).
    """
    row_bytes = width * BLOCK * (2 + num_classes * prob_bytes)  # classes + staging + probabilities
    return 16 * 2**20 + 2 * row_bytes  # rasterio passes GDAL_CACHEMAX on in bytes


class _Staging:
    """A plain tiled uint8 GTiff for the oil probability (x250) that the polygon pass reads back."""

    def __init__(self, folder: Path, height: int, width: int) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".dakd-oilprob.", suffix=".tif", dir=folder)
        os.close(fd)
        self.path = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.ds = rasterio.open(self.path, "w", **self.profile(height, width))

    @staticmethod
    def profile(height: int, width: int) -> dict[str, Any]:
        return dict(
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            BIGTIFF="IF_SAFER",
        )

    def reopen(self) -> None:
        self.ds.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.ds = rasterio.open(self.path)

    def write(self, y0: int, x0: int, p: np.ndarray) -> None:
        q = np.rint(np.clip(p, 0.0, 1.0) * 250.0).astype(np.uint8)
        self.ds.write(q[None], window=Window(x0, y0, q.shape[1], q.shape[0]))

    def __getitem__(self, idx: tuple[slice, slice]) -> np.ndarray:
        rows, cols = idx
        win = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        return self.ds.read(1, window=win).astype(np.float32) / 250.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.close()
        self.path.unlink(missing_ok=True)


class _MaskFile:
    """Windowed reader of the committed class COG as an oil mask (for block-wise polygon tracing)."""

    def __init__(self, path: Path, oil_ids: list[int]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.ds = rasterio.open(path)
        self.oil_ids = oil_ids

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.isin(self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)), self.oil_ids)


def consume_behind(items: Iterable[Any], consume: Callable[[Any], None]) -> None:
    """``consume(item)`` for every item, in order, on a worker thread one item behind the producer.

    Inference (ONNX Runtime, PyTorch) leaves part of the cores idle between operators; writing a
    finished band (COG blocks, class counts, the polygon staging file) meanwhile fills them. An item
    is handed over only once the previous one is consumed, so at most two are alive: the one being
    consumed and the one being produced. The first error of either side stops both and is raised here.
    """
    pending: queue.Queue[Any] = queue.Queue()
    errors: list[BaseException] = []
    done = object()

    def work() -> None:
        while True:
            item = pending.get()
            if item is done:
                return
            if not errors:
                try:
                    consume(item)
                except BaseException as e:  # re-raised in the caller's thread
                    errors.append(e)
            del item
            pending.task_done()

    worker = threading.Thread(target=work, name="dakd-edge-writer", daemon=True)
    worker.start()
    try:
        for item in items:
            pending.join()  # the previous item is consumed (and freed)
            if errors:
                break
            pending.put(item)
            del item  # the worker holds the only reference
    finally:
        pending.put(done)
        worker.join()
    if errors:
        raise errors[0]


def segment_scene(
    model: Backend | Predictor,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    probs: str | os.PathLike | None = None,
    probs_dtype: str = "uint8",
    vector: str | os.PathLike | None = None,
    band: int | None = None,
    scale: str = "auto",
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int = 64,
    batch: int = 8,
    polygons: bool = True,
    polygon_block: int = 256,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment the scene ``src`` into a class-id COG ``out``; returns the JSON-able report.

    Optional outputs: ``probs`` (per-class probability COG, uint8 x250 or float16) and ``vector``
    (.geojson / .gpkg oil-spill polygons). ``polygons=False`` skips the polygon pass (no spill count);
    it traces the class map in blocks of ``polygon_block`` rows (whole spills, bounded memory; 256 rows
    keep the polygon pass below the inference peak on a 16384-wide scene, at no extra CPU time).
    A scene without georeference runs with a :class:`NoGeoreferenceWarning`; its outputs carry no CRS.
    ``tile``/``overlap``/``batch`` apply when ``model`` is a bare :class:`Backend` (a
    :class:`Predictor` brings its own). ``progress(rows_done, height, stats)`` follows the tile rows.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, tile, overlap, batch)
    meta = predictor.meta
    if probs_dtype not in PROBS_DTYPES:
        raise InputError(f"unknown probability dtype {probs_dtype!r}; choose {' or '.join(PROBS_DTYPES)}")
    targets = [Path(p) for p in (out, probs, vector) if p is not None]
    if len({p.resolve() for p in targets}) != len(targets):
        raise OutputError("output paths must differ: " + ", ".join(map(str, targets)))
    for p in targets:
        check_output(p, overwrite)
    if vector is not None and Path(vector).suffix.lower() not in VECTOR_FORMATS:
        raise OutputError(f"{vector}: unknown vector format; use one of {', '.join(VECTOR_FORMATS)}")

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        scene = stack.enter_context(SceneReader(src, meta.in_chans, band))
        info = scene.info
        pbytes = 0 if probs is None else (1 if probs_dtype == "uint8" else 4)
        stack.enter_context(
            rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(info.width, meta.num_classes, pbytes))
        )
        if not info.georeferenced:
            warnings.warn(
                f"{info.path}: no georeference (CRS/transform); outputs have no CRS and areas are in pixels",
                NoGeoreferenceWarning,
                stacklevel=2,
            )
        scale = resolve_scale(scene.valid_sample(), scale)
        convert = predictor.normalizer(scale, info.nodata)
        tags = {"input_scale": scale, "source": info.path.name}
        writers: list[Any] = []
        staging = None
        try:
            cls_w = CogWriter(out, info, meta, "classes", overwrite, tags)
            writers.append(cls_w)
            if probs is not None:
                writers.append(CogWriter(probs, info, meta, f"probs_{probs_dtype}", overwrite, tags))
            oil_ids = oil_class_ids(meta)
            if polygons:
                staging = _Staging(cls_w.path.parent, info.height, info.width)
            stats = TileStats()
            counts = np.zeros(meta.num_classes + 1, np.int64)
            oil_area = 0.0

            def on_row(st: TileStats, rows_done: int) -> None:
                if progress is not None:
                    progress(rows_done, info.height, st)

            def reader(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
                return convert(scene.window(y0, y1, x0, x1))

            def write_band(b: Band) -> None:
                nonlocal counts, oil_area
                cls = cls_w.write(b.y0, b.probs, b.valid, b.x0)
                for w in writers[1:]:
                    w.write(b.y0, b.probs, b.valid, b.x0)
                if staging is not None:
                    staging.write(b.y0, b.x0, b.probs[oil_ids].sum(0))
                counts += np.bincount(np.minimum(cls.ravel(), meta.num_classes), minlength=len(counts))
                row_area = _row_pixel_area(info.transform, info.crs, b.y0, cls.shape[0])
                if row_area is not None:
                    oil_area += float(np.isin(cls, oil_ids).sum(1) @ row_area)

            bands = predictor.stream(reader, info.height, info.width, stats, on_row)
            consume_behind(bands, write_band)
            if stats.tiles_run == 0:
                raise InputError(f"{info.path}: no valid pixels (the scene is all nodata/NaN)")
            infer_s = time.perf_counter() - t0
            paths = {"classes": str(cls_w.commit())}
            if probs is not None:
                paths["probs"] = str(writers[1].commit())
            spills = None
            if staging is not None:
                staging.reopen()
                masks = _MaskFile(cls_w.path, oil_ids)
                with masks.ds:
                    found = spills_from_mask(
                        masks, info.height, info.width, masks.ds.transform, info.crs, staging, polygon_block
                    )
                spills = len(found)
                if vector is not None:
                    paths["vector"] = str(write_vector(vector, found, info.crs, overwrite))
        finally:
            for w in writers:
                w.discard()
            if staging is not None:
                staging.close()
    total_s = time.perf_counter() - t0
    valid_px = int(counts[: meta.num_classes].sum())
    return {
        "scene": str(info.path),
        "outputs": paths,
        "width": info.width,
        "height": info.height,
        "megapixels": round(info.width * info.height / 1e6, 3),
        "valid_fraction": round(valid_px / (info.width * info.height), 6),
        "bands": list(info.bands),
        "crs": info.crs.to_string() if info.crs is not None else None,
        "georeferenced": info.georeferenced,
        "input_scale": scale,
        "tiles": {
            "total": stats.tiles_total,
            "run": stats.tiles_run,
            "skipped_nodata": stats.tiles_skipped,
            "batches": stats.batches,
            "tile": predictor.config.tile,
            "overlap": predictor.config.overlap,
            "batch": predictor.config.batch,
        },
        "time_s": round(total_s, 3),
        "inference_s": round(infer_s, 3),
        "mpix_per_s": round(info.width * info.height / 1e6 / max(infer_s, 1e-9), 3),
        "spills": spills,
        "oil_pixels": int(counts[oil_ids].sum()),
        "oil_area_m2": round(oil_area, 1) if info.crs is not None else None,
        "class_fraction": {
            n: round(int(counts[i]) / max(valid_px, 1), 6) for i, n in enumerate(meta.class_names)
        },
        "peak_buffer_mb": round(stats.peak_buffer_bytes / 2**20, 1),
        "model": meta.name,
        "backend": predictor.backend.name,
        "device": predictor.backend.device,
    }
