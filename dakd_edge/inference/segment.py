"""Segment a GeoTIFF scene of any size: stream, write COGs, vectorise spills, report.

This is the library side of ``dakd-edge segment``. Memory is bounded by one row of tiles (see
:mod:`dakd_edge.inference.tiling`) during inference; the polygon pass afterwards reads the finished
class map as a 1-byte oil mask and the oil probability only inside each spill's bounding box.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
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

from dakd_edge.atomic import Transaction, check_distinct, check_free_space, remove_temp
from dakd_edge.data.landmask import DEFAULT_COAST_BUFFER_M
from dakd_edge.data.scaling import domain_warning, resolve_scale, to_unit
from dakd_edge.errors import InputError, Notice
from dakd_edge.inference.base import Backend
from dakd_edge.inference.geotiff import BLOCK, CogWriter, NoGeoreferenceWarning, cog_copy, verify_raster
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.readers import georef_of, open_scene, world_of
from dakd_edge.inference.tiling import Strip, TileStats
from dakd_edge.inference.vectorize import (
    Measurer,
    check_vector_path,
    filter_spills,
    flag_spills,
    spills_from_mask,
    verify_vector,
    write_vector_file,
)
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

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.path = path
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
        remove_temp(self.path)


class _MaskFile:
    """Windowed reader of the committed class COG as an oil mask (for block-wise polygon tracing)."""

    def __init__(self, path: Path, oil_ids: list[int]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.ds = rasterio.open(path)
        self.oil_ids = oil_ids

    def classes(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.isin(self.classes(r0, r1, c0, c1), self.oil_ids)


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


MIN_SPECK_PIXELS = 5  # default --min-area: regions smaller than this many pixels are specks, not spills


def parse_min_area(value: str | float | None) -> tuple[float | None, int]:
    """``--min-area`` -> (m^2 or None, pixels): ``"2000"`` is 2000 m^2, ``"5px"`` five pixels.

    ``None`` means the default, :data:`MIN_SPECK_PIXELS` pixels (whatever the pixel size).
    """
    if value is None:
        return None, MIN_SPECK_PIXELS
    text = str(value).strip().lower()
    try:
        if text.endswith("px"):
            n = int(text[:-2])
            if n >= 0:
                return None, n
        else:
            m2 = float(text.removesuffix("m2"))
            if m2 >= 0:
                return m2, 0
    except ValueError:
        pass
    raise InputError(f"--min-area {value!r}: expected square metres (e.g. 2000) or pixels (e.g. 5px)")


def estimate_output_bytes(height: int, width: int, num_classes: int, prob_bytes: int) -> dict[str, int]:
    """Disk each output needs at its peak (staging file + COG copy), assuming deflate halves it.

    A lower bound used to refuse a run before any work when the disk is clearly too small; a disk
    that fills up anyway is still caught while writing (one line, nothing left behind).
    """
    px = height * width
    return {
        "classes": px + px // 2,  # class staging + COG, and the polygon pass's oil-probability staging
        "probs": px * num_classes * prob_bytes,
        "vector": 1 << 20,
        "report": 1 << 16,
    }


def check_disk(outputs: dict[str, Path], need: dict[str, int]) -> None:
    """Sum the needs of outputs sharing a filesystem and compare with its free space."""
    by_dev: dict[int, tuple[Path, int, list[str]]] = {}
    for key, p in outputs.items():
        folder = p.parent if str(p.parent) else Path(".")
        dev = os.stat(folder).st_dev
        f, n, names = by_dev.get(dev, (folder, 0, []))
        by_dev[dev] = (f, n + need.get(key, 0), [*names, str(p)])
    for folder, n, names in by_dev.values():
        check_free_space(folder, n, ", ".join(names))


def _geocode_output(tx: Transaction, key: str, kind: str, info: Any) -> Callable[[Path], None]:
    """Replace output ``key``'s GCP raster by its UTM-grid COG; returns its verifier."""
    from dakd_edge.inference.geocode import geocode

    if not info.gcps:
        raise InputError(f"{info.path}: --geocode applies to GCP-georeferenced scenes (this one has a grid)")
    staged = tx.scratch_path(key, "geocoded")
    geocode(tx.temp(key), staged, info)
    tx.temp(key).unlink()
    cog_copy(staged, tx.temp(key), kind)
    remove_temp(staged)
    with rasterio.open(tx.temp(key)) as ds:
        dims = (ds.count, ds.height, ds.width)
    return lambda p: verify_raster(p, *dims)


class InputDomainWarning(Notice):
    """The scaled input is far from what the model was trained on (wrong --input-scale?)."""


def _land_masker(info: Any, land_mask: str | os.PathLike | None, coast_buffer: float) -> Any:
    """The scene's :class:`~dakd_edge.data.landmask.LandMasker`, or None (see ``segment_scene``)."""
    choice = "none" if land_mask is None else str(land_mask)
    if choice == "none" or (choice == "auto" and not info.gcps):
        return None
    from dakd_edge.data.landmask import LandMasker

    georef = georef_of(info)
    if georef is None:
        raise InputError(f"{info.path}: land masking needs a georeferenced scene (use --no-land-mask)")
    source = "globe" if choice == "auto" else choice
    return LandMasker(georef, info.height, info.width, source=source, coast_buffer=coast_buffer)


def _verify_json(path: Path) -> None:
    json.loads(path.read_text())


def segment_scene(
    model: Backend | Predictor,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    probs: str | os.PathLike | None = None,
    probs_dtype: str = "uint8",
    vector: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    band: int | None = None,
    scale: str = "auto",
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = 8,
    polygons: bool = True,
    polygon_block: int = 256,
    min_area: str | float | None = None,
    pol: str | None = None,
    denoise: bool = True,
    land_mask: str | os.PathLike | None = "auto",
    coast_buffer: float = DEFAULT_COAST_BUFFER_M,
    geocode: bool = False,
    protect: dict[str, str | os.PathLike] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment the scene ``src`` into a class-id COG ``out``; returns the JSON-able report.

    Optional outputs: ``probs`` (per-class probability COG, uint8 x250 or float16), ``vector``
    (.geojson / .gpkg oil-spill polygons) and ``report`` (this function's JSON report). All outputs
    are one transaction (:class:`~dakd_edge.atomic.Transaction`): they are checked (collisions with
    each other, with ``src`` and with ``protect``-ed files such as the model; writability; free space)
    before any tile is read, written as temporaries, verified, and renamed together at the end; an
    error or interrupt leaves no file under any final name.

    ``polygons=False`` skips the polygon pass (no spill count); it traces the class map in blocks of
    ``polygon_block`` rows (whole spills, bounded memory). ``min_area`` drops polygons smaller than
    that many m^2 (or ``"Npx"`` pixels; default :data:`MIN_SPECK_PIXELS` pixels): the report counts
    them. A scene without georeference runs with a :class:`NoGeoreferenceWarning`; a scene with no
    valid pixel gives all-nodata outputs and a report that says so. ``tile``/``overlap``/``batch``
    apply when ``model`` is a bare :class:`Backend` (a :class:`Predictor` brings its own).
    ``progress(rows_done, height, stats)`` follows the tile rows.

    ``src`` may also be a Sentinel-1 GRD product (``.SAFE``, ``.zip``, ``manifest.safe`` or a
    measurement TIFF; polarisation ``pol``): it is calibrated to sigma0 window by window (thermal
    noise removed unless ``denoise=False``) and its outputs keep the product's GCPs. ``land_mask``:
    ``"auto"`` masks land (GLOBE, offline) for Sentinel-1 products and GCP-georeferenced scenes,
    ``"globe"`` for any georeferenced scene, a vector/raster file for the user's own coastline, and
    ``None``/``"none"`` not at all; land plus ``coast_buffer`` metres is nodata in every output.
    ``geocode=True`` writes the rasters of a GCP-georeferenced scene on a north-up UTM grid at the
    product's pixel spacing instead of keeping the GCPs (:mod:`dakd_edge.inference.geocode`).
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, tile, overlap, batch)
    meta = predictor.meta
    if probs_dtype not in PROBS_DTYPES:
        raise InputError(f"unknown probability dtype {probs_dtype!r}; choose {' or '.join(PROBS_DTYPES)}")
    min_area_m2, min_pixels = parse_min_area(min_area)
    if vector is not None:
        check_vector_path(vector)
    finals = {"classes": out, "probs": probs, "vector": vector, "report": report}
    finals = {k: Path(v) for k, v in finals.items() if v is not None}
    check_distinct(finals, {"input scene": Path(src), **{k: Path(v) for k, v in (protect or {}).items()}})

    t0 = time.perf_counter()
    with Transaction(finals, overwrite) as tx, contextlib.ExitStack() as stack:
        scene = stack.enter_context(open_scene(src, meta.in_chans, band, pol, denoise))
        info = scene.info
        pbytes = 0 if probs is None else (1 if probs_dtype == "uint8" else 2)
        check_disk(tx.finals, estimate_output_bytes(info.height, info.width, meta.num_classes, pbytes))
        stack.enter_context(
            rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(info.width, meta.num_classes, 2 * pbytes))
        )
        if not info.georeferenced:
            warnings.warn(
                f"{info.path}: no georeference (CRS/transform); outputs have no CRS and areas are in pixels",
                NoGeoreferenceWarning,
                stacklevel=2,
            )
        if scale == "auto" and info.native_scale is not None:
            scale = info.native_scale
        masker = _land_masker(info, land_mask, coast_buffer)
        sample = scene.valid_sample()
        all_nodata = sample.size == 0
        # a scene with no valid pixel runs no tile: any scale serves for the (unused) conversion
        scale = resolve_scale(sample, scale) if not all_nodata else (None if scale == "auto" else scale)
        convert = predictor.normalizer(scale or "uint8", info.nodata)
        domain = None if all_nodata else domain_warning(
            to_unit(sample, scale, meta.normalization), meta.input_stats, scale=scale
        )  # fmt: skip
        if domain is not None:
            warnings.warn(f"{info.path}: {domain}", InputDomainWarning, stacklevel=2)
        tags = {"input_scale": str(scale), "source": info.path.name}
        writers = {"classes": CogWriter(tx.scratch_path("classes", "partial"), info, meta, "classes", tags)}
        stack.callback(lambda: [w.discard() for w in writers.values()])
        if probs is not None:
            staging = tx.scratch_path("probs", "partial")
            writers["probs"] = CogWriter(staging, info, meta, f"probs_{probs_dtype}", tags)
        oil_ids = oil_class_ids(meta)
        oilprob = None
        if polygons:
            oilprob = _Staging(tx.scratch_path("classes", "oilprob"), info.height, info.width)
            stack.callback(oilprob.close)
        tally = _Tally(meta.num_classes, oil_ids, info)

        def write_strip(b: Strip) -> None:
            cls = writers["classes"].write(b.y0, b.probs, b.valid, b.x0)
            if "probs" in writers:
                writers["probs"].write(b.y0, b.probs, b.valid, b.x0)
            if oilprob is not None:
                oilprob.write(b.y0, b.x0, b.probs[oil_ids].sum(0))
            tally.add(cls, b.y0)

        clock = {"read": 0.0, "land_mask": 0.0}  # seconds in reading/calibration and land masking

        def reader(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, ...]:
            t = time.perf_counter()
            raw = scene.window(y0, y1, x0, x1)
            clock["read"] += time.perf_counter() - t
            x, ok = convert(raw)
            if masker is None:
                return x, ok
            t = time.perf_counter()
            land = masker.mask(y0, y1, x0, x1)
            clock["land_mask"] += time.perf_counter() - t
            return x, ok & ~land, land

        def on_row(st: TileStats, rows_done: int) -> None:
            if progress is not None:
                progress(rows_done, info.height, st)

        stats = TileStats()
        consume_behind(predictor.stream(reader, info.height, info.width, stats, on_row), write_strip)
        infer_s = time.perf_counter() - t0
        verify: dict[str, Callable[[Path], Any]] = {}
        for key, w in writers.items():
            w.finish(tx.temp(key))
            verify[key] = w.verify
        spills = dropped = None
        if oilprob is not None:
            oilprob.reopen()
            masks = _MaskFile(tx.temp("classes"), oil_ids)
            to_world, world_crs = world_of(info)
            with masks.ds:
                found = spills_from_mask(
                    masks, info.height, info.width, to_world, world_crs, oilprob, polygon_block
                )
                spills, dropped = filter_spills(found, min_area_m2, min_pixels)
                flag_spills(spills, masks.classes, oil_ids, info.height, info.width, masker and masker.mask)
            if vector is not None:
                write_vector_file(tx.temp("vector"), spills, world_crs, tx.finals["vector"])
                n = len(spills)
                verify["vector"] = lambda p, n=n: verify_vector(p, n, tx.finals["vector"])
        elif vector is not None:
            raise InputError("a vector output needs the polygon pass (polygons=True)")
        if geocode:
            for key, w in writers.items():
                verify[key] = _geocode_output(tx, key, w.kind, info)
        result = _report(
            info, predictor, stats, tally, scale, all_nodata, spills, dropped, min_area_m2, min_pixels
        )
        result["input_domain_warning"] = domain
        result["land_mask"] = None if masker is None else {
            "source": masker.name,
            "coast_buffer_m": masker.coast_buffer,
            "tiles_skipped": stats.tiles_skipped_land,
        }  # fmt: skip
        if info.product is not None:
            result["product"] = info.product
        result["geocoded"] = geocode
        result["outputs"] = {k: str(p) for k, p in tx.finals.items() if k != "report"}
        result["time_s"] = round(time.perf_counter() - t0, 3)
        result["inference_s"] = round(infer_s, 3)
        # of inference_s: reading the input (Sentinel-1: + calibration) and land masking
        result["stage_s"] = {k: round(v, 3) for k, v in clock.items()}
        result["mpix_per_s"] = round(info.width * info.height / 1e6 / max(infer_s, 1e-9), 3)
        if report is not None:
            tx.temp("report").write_text(json.dumps(result, indent=2) + "\n")
            verify["report"] = _verify_json
            result["outputs"]["report"] = str(tx.finals["report"])
        tx.commit(verify)
    return result


class _Tally:
    """Class counts and oil area of the written class map, band by band."""

    def __init__(self, num_classes: int, oil_ids: list[int], info: Any) -> None:
        self.counts = np.zeros(num_classes + 1, np.int64)
        self.num_classes, self.oil_ids, self.info = num_classes, oil_ids, info
        self.oil_area = 0.0

    def add(self, cls: np.ndarray, y0: int) -> None:
        self.counts += np.bincount(np.minimum(cls.ravel(), self.num_classes), minlength=len(self.counts))
        row_area = _row_pixel_area(self.info.transform, self.info.crs, y0, cls.shape[0])
        if row_area is None and self.info.pixel_size_m is not None:
            row_area = np.full(cls.shape[0], self.info.pixel_size_m[0] * self.info.pixel_size_m[1])
        if row_area is not None:
            self.oil_area += float(np.isin(cls, self.oil_ids).sum(1) @ row_area)


def _report(
    info: Any,
    predictor: Predictor,
    stats: TileStats,
    tally: _Tally,
    scale: str | None,
    all_nodata: bool,
    spills: list[Any] | None,
    dropped: list[Any] | None,
    min_area_m2: float | None,
    min_pixels: int,
) -> dict[str, Any]:
    meta, counts, oil_ids = predictor.meta, tally.counts, tally.oil_ids
    valid_px = int(counts[: meta.num_classes].sum())
    georef = info.crs is not None or bool(info.gcps)
    return {
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
            "tile": predictor.tiling.tile,
            "overlap": predictor.tiling.overlap,
            "batch": predictor.tiling.batch,
        },
        "spills": None if spills is None else len(spills),
        "spills_filtered": None if dropped is None else len(dropped),
        "filtered_area_px": None if dropped is None else int(sum(s.area_px for s in dropped)),
        "min_area": {"m2": min_area_m2, "pixels": min_pixels},
        "oil_pixels": int(counts[oil_ids].sum()),
        "oil_area_m2": round(tally.oil_area, 1) if georef else None,
        "class_fraction": {
            n: round(int(counts[i]) / max(valid_px, 1), 6) for i, n in enumerate(meta.class_names)
        },
        "peak_buffer_mb": round(stats.peak_buffer_bytes / 2**20, 1),
        "model": meta.name,
        "backend": predictor.backend.name,
        "device": predictor.backend.device,
    }
