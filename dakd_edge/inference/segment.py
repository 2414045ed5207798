"""Segment a GeoTIFF scene of any size: stream, write COGs, vectorise spills, report.

This is the library side of ``dakd-edge segment``. Memory is bounded by one row of tiles (see
:mod:`dakd_edge.inference.tiling`) during inference; the polygon pass afterwards reads the finished
class map as a 1-byte oil mask and the oil probability only inside each spill's bounding box.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from dakd_edge.atomic import Transaction, check_distinct
from dakd_edge.data import level
from dakd_edge.data.landmask import DEFAULT_COAST_BUFFER_M
from dakd_edge.data.scaling import (
    SCALE_MEANINGS,
    InputDomainWarning,
    domain_warning,
    guessed_scale_line,
    resolve_scale,
    to_unit,
    valid_mask,
)
from dakd_edge.errors import InputError, Notice, quiet, user_stacklevel
from dakd_edge.inference.base import Backend
from dakd_edge.inference.geotiff import NoGeoreferenceWarning, Scene, SceneInfo
from dakd_edge.inference.outputs import (
    SceneOutputs,
    check_disk,
    check_geocodable,
    check_raster_path,
    estimate_output_bytes,
    gdal_cache_bytes,
)
from dakd_edge.inference.readers import georef_of, open_scene, world_of
from dakd_edge.inference.report import Clock, Tally, scene_report
from dakd_edge.inference.tiling import Strip, TileStats
from dakd_edge.inference.vectorize import (
    Spill,
    check_vector_path,
    filter_spills,
    flag_spills,
    measures_m2,
    spills_from_mask,
)
from dakd_edge.meta import ModelMeta, land_ids_of, oil_ids_of

if TYPE_CHECKING:  # the predictor calls this module (Predictor.segment): no import back at run time
    from dakd_edge.inference.predictor import Predictor

PROBS_DTYPES = ("uint8", "float16")
# progress(rows_done, height, stats): called after every row of tiles
Progress = Callable[[int, int, TileStats], None]


def oil_class_ids(meta: ModelMeta) -> list[int]:
    """Class ids that mean oil (:func:`dakd_edge.meta.oil_ids_of` of the model's class names)."""
    return oil_ids_of(meta.class_names)


class _MaskFile:
    """Windowed reader of the committed class COG as an oil mask (for block-wise polygon tracing)."""

    def __init__(self, path: Path, oil_ids: list[int]) -> None:
        with quiet(NotGeoreferencedWarning):
            self.ds = rasterio.open(path)
        self.oil_ids = oil_ids

    def classes(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.isin(self.classes(r0, r1, c0, c1), self.oil_ids)


def consume_behind(items: Iterable[Any], consume: Callable[[Any], None]) -> None:
    """``consume(item)`` for every item, in order, on a worker thread one item behind the producer.

    Inference (ONNX Runtime, PyTorch) leaves part of the cores idle between operators; writing a
    finished strip (COG blocks, class counts, the polygon staging file) meanwhile fills them. An item
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
            if 0 <= m2 < float("inf"):  # inf / 1e400 would drop every spill without a word
                return m2, 0
    except ValueError:
        pass
    raise InputError(f"--min-area {value!r}: expected square metres (e.g. 2000) or pixels (e.g. 5px)")


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
    polygons: bool = True,
    polygon_block: int = 256,
    min_area: str | float | None = None,
    pol: str | None = None,
    denoise: bool = True,
    border_noise: str = "auto",
    land_mask: str | os.PathLike | None = "auto",
    coast_buffer: float = DEFAULT_COAST_BUFFER_M,
    geocode: bool = False,
    flatten: bool = False,
    match_level: bool = False,
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
    valid pixel gives all-nodata outputs and a report that says so. ``model`` is a :class:`Predictor`
    (or any object with its ``meta``, ``tiling``, ``backend``, ``normalizer`` and ``stream``), which
    brings its own tiling (``Predictor(backend, tile, overlap, batch)``); a bare :class:`Backend` is
    refused (this module sits below the predictor and builds none; wrap it in a Predictor first).
    ``progress(rows_done, height, stats)`` follows the tile rows.

    ``src`` may also be a Sentinel-1 GRD product (``.SAFE``, ``.zip``, ``manifest.safe`` or a
    measurement TIFF; polarisation ``pol``): it is calibrated to sigma0 window by window (thermal
    noise removed unless ``denoise=False``) and its outputs keep the product's GCPs. ``border_noise``:
    ``"auto"`` masks the low-valued no-data border of products processed before IPF 2.90 (their dark
    edges would be called oil), ``"mask"`` of any product, ``"keep"`` never
    (:class:`~dakd_edge.data.border_noise.BorderNoiseMask`); the report's ``product`` says which. ``land_mask``:
    ``"auto"`` masks land (GLOBE, offline) for Sentinel-1 products and GCP-georeferenced scenes,
    ``"globe"`` for any georeferenced scene, a vector/raster file for the user's own coastline, and
    ``None``/``"none"`` not at all; land plus ``coast_buffer`` metres is nodata in every output.
    ``geocode=True`` writes the rasters of a GCP-georeferenced scene on a north-up UTM grid at the
    product's pixel spacing instead of keeping the GCPs (:mod:`dakd_edge.inference.geocode`).

    ``flatten=True`` removes the scene's smooth backscatter trend (incidence angle, wind gradient)
    before tiling (:mod:`dakd_edge.data.level`), keeping its mean level; off by default, because on
    wide synthetic scenes it helped one of three and cost the other two (``benchmarks/flatten.py``,
    README). Scenes under :data:`~dakd_edge.data.level.MIN_FLATTEN_SIDE` pixels are not flattened.
    ``match_level=True`` also moves the scene's fitted sea level to the model's training sea level
    (:func:`~dakd_edge.data.level.sea_level_of`), for calibrated scenes whose fixed dB stretch leaves
    the sea brighter than the training images' (scenes of any size; the tilt only from
    ``MIN_FLATTEN_SIDE`` up). The report's ``level_trend`` says what was removed.
    """
    predictor = _predictor_of(model)
    meta = predictor.meta
    if not isinstance(src, str | os.PathLike):  # Path(ds) said "expected str, bytes or os.PathLike"
        raise TypeError(
            f"segment_scene reads the scene itself: pass its path, not a {type(src).__name__} "
            "(an open rasterio dataset: its .name; an array: Predictor.predict)"
        )
    if probs_dtype not in PROBS_DTYPES:
        raise InputError(f"unknown probability dtype {probs_dtype!r}; choose {' or '.join(PROBS_DTYPES)}")
    least = parse_min_area(min_area)  # (m^2 or None, pixels)
    if vector is not None:
        check_vector_path(vector)
    check_raster_path(out, "class ids")
    if probs is not None:
        check_raster_path(probs, "probabilities")
    finals = {"classes": out, "probs": probs, "vector": vector, "report": report}
    finals = {k: Path(v) for k, v in finals.items() if v is not None}
    check_distinct(finals, {"input scene": Path(src), **{k: Path(v) for k, v in (protect or {}).items()}})

    clock = Clock()
    with Transaction(finals, overwrite) as tx, contextlib.ExitStack() as stack:
        scene = stack.enter_context(open_scene(src, meta.in_chans, band, pol, denoise, border_noise))
        info = scene.info
        pbytes = 0 if probs is None else (1 if probs_dtype == "uint8" else 2)
        check_disk(tx.finals, estimate_output_bytes(info.height, info.width, meta.num_classes, pbytes))
        stack.enter_context(
            rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(info.width, meta.num_classes, 2 * pbytes))
        )
        if geocode:  # before any tile runs, not after the whole scene
            check_geocodable(info)
        if not info.georeferenced:
            rpc = info.rpcs is not None
            warnings.warn(
                NoGeoreferenceWarning(
                    f"{info.path}: no georeference (no geotransform, or no CRS)"
                    + (
                        "; its RPCs are carried into the output rasters, but"
                        if rpc
                        else "; outputs have no CRS and"
                    )
                    + " areas are in pixels"
                ),
                stacklevel=user_stacklevel(),
            )
        if least[0] is not None and not measures_m2(info):
            raise InputError(
                f"{info.path}: --min-area {least[0]:g} is in m^2, which needs a georeferenced scene; "
                "use --min-area Npx"
            )
        sample = scene.valid_sample()  # read once: the scale checks and the domain check share it
        if scale == "auto" and info.native_scale is not None:
            scale = info.native_scale
            if info.scale_source is not None:
                _say_named_scale(info, sample)
        masker = _land_masker(info, land_mask, coast_buffer)
        water = [] if masker is None else masker.water_counted_as_land()
        if water:
            warnings.warn(
                Notice(
                    f"{info.path}: the GLOBE land mask counts {' and '.join(water)} as land, so that water "
                    "is not searched for oil; give --land-mask FILE with its shoreline, or --no-land-mask"
                ),
                stacklevel=user_stacklevel(),
            )
        scale, all_nodata, domain = _input_scale(scene, meta, scale, sample)
        trend, trend_report = _level_trend(scene, meta, scale, masker, flatten, all_nodata, match_level)
        tags = {"input_scale": str(scale), "source": info.path.name}
        oil_ids = oil_class_ids(meta)
        outputs = stack.enter_context(
            SceneOutputs(tx, info, meta, tags, probs_dtype, oil_ids if polygons else None)
        )
        world = world_of(info)  # pixel -> world mapping and CRS: oil area and polygons share it
        tally = Tally(meta.num_classes, oil_ids, info, world=world)

        def write_strip(s: Strip) -> None:
            tally.add(outputs.write(s), s.y0, s.x0)

        def on_row(st: TileStats, rows_done: int) -> None:
            if progress is not None:
                progress(rows_done, info.height, st)

        stats = TileStats()
        convert = predictor.normalizer(scale or "uint8", info.nodata)
        reader = _Windows(scene, convert, masker, clock, trend, predictor.meta.in_chans)
        consume_behind(predictor.stream(reader, info.height, info.width, stats, on_row), write_strip)
        clock.inference_done()
        if masker is not None and masker.name == "globe" and not water and stats.tiles_run == 0:
            _warn_all_globe_land(info.path, stats)
        outputs.finish_rasters()
        spills = dropped = None
        if polygons:
            spills, dropped, world_crs = _trace_spills(
                tx.temp("classes"), outputs.oilprob, info, world, oil_ids, polygon_block, least, masker,
                land_ids_of(meta.class_names),
            )  # fmt: skip
            if vector is not None:
                outputs.write_vector(spills, world_crs)
        elif vector is not None:
            raise InputError("a vector output needs the polygon pass (polygons=True)")
        if geocode:
            outputs.geocode()
        result = scene_report(
            info, predictor, stats, tally, clock,
            scale=scale, all_nodata=all_nodata, domain=domain, masker=masker, spills=spills, dropped=dropped,
            min_area=least, geocoded=geocode, level_trend=trend_report, world_crs=world[1],
            outputs={k: str(p) for k, p in tx.finals.items() if k != "report"},
        )  # fmt: skip
        outputs.write_report(result)
        outputs.commit()
    return result


def _warn_all_globe_land(path: Path, stats: TileStats) -> None:
    """Say why a scene that GLOBE calls all land may not be: it counts lakes and reservoirs as land,
    and only the large ones it names (``landmask.GLOBE_LAND_WATER``) warn by name. Not where some tiles
    were skipped as nodata alone (a product of zeros read as 'all land')."""
    if stats.tiles_skipped_land and stats.tiles_skipped_land == stats.tiles_total:
        warnings.warn(
            Notice(
                f"{path}: every tile is land to the GLOBE land mask, so nothing was searched for oil; GLOBE "
                "counts most lakes and reservoirs as land: for inland water give --land-mask FILE with its "
                "shoreline, or --no-land-mask"
            ),
            stacklevel=user_stacklevel(),
        )


def _predictor_of(model: Any) -> Predictor:
    """``model`` when it tiles (a :class:`Predictor` or any object with its interface).

    A bare :class:`Backend` is refused: the predictor calls this module (``Predictor.segment``), so
    building one here would import it back (an import circle).
    """
    if isinstance(model, Backend) or not hasattr(model, "stream"):
        raise TypeError(
            f"segment_scene needs a Predictor, not {type(model).__name__}: "
            "wrap a backend as dakd_edge.inference.predictor.Predictor(backend, tile, overlap, batch)"
        )
    return model


def _say_named_scale(info: SceneInfo, sample: np.ndarray) -> None:
    """The notice for a scale a file's name states, and a warning when its values say otherwise (a HyP3
    power file converted to dB that kept its name was read as power)."""
    from dakd_edge.data.scaling import detect_scale

    line = f"{info.path}: read as {SCALE_MEANINGS[info.native_scale]}, as {info.scale_source} (--input-scale overrides it)"
    if sample.size and np.issubdtype(sample.dtype, np.floating):
        with contextlib.suppress(InputError):
            seen = detect_scale(sample)
            # only dB against power / amplitude is told apart by the values (8-bit is a fallback guess)
            if (seen == "db") != (info.native_scale == "db") and "uint8" not in (seen, info.native_scale):
                line += (
                    f"; but its values look like {SCALE_MEANINGS[seen]}: if the file was converted, pass "
                    f"--input-scale {seen}"
                )
    warnings.warn(Notice(line), stacklevel=user_stacklevel())


def _input_scale(
    scene: Scene, meta: ModelMeta, scale: str, sample: np.ndarray
) -> tuple[str | None, bool, str | None]:
    """(resolved input scale, whether the scene has no valid pixel, input-domain warning or None).

    Looks at the scene's sample of valid pixels (:meth:`valid_sample`); warns with
    :class:`InputDomainWarning` when the scaled input is far from the model's training data.
    """
    all_nodata = sample.size == 0
    if all_nodata:  # no tile runs: any scale serves for the (unused) conversion
        return (None if scale == "auto" else scale), True, None
    guessed = scale == "auto"
    try:
        scale = resolve_scale(sample, scale)
    except InputError as e:
        raise InputError(f"{scene.info.path}: {e}") from None
    if guessed and np.issubdtype(sample.dtype, np.floating):  # 8-bit / integer input is unambiguous
        warnings.warn(
            Notice(f"{scene.info.path}: {guessed_scale_line(sample, scale)}"), stacklevel=user_stacklevel()
        )
    domain = domain_warning(to_unit(sample, scale, meta.normalization), meta.input_stats, scale=scale)
    if domain is not None:
        warnings.warn(InputDomainWarning(f"{scene.info.path}: {domain}"), stacklevel=user_stacklevel())
    return scale, False, domain


def _level_trend(
    scene: Scene,
    meta: ModelMeta,
    scale: str | None,
    masker: Any,
    flatten: bool,
    all_nodata: bool,
    match_level: bool = False,
) -> tuple[level.LevelTrend | None, dict[str, Any]]:
    """The scene's backscatter trend to remove (or None) and the report's ``level_trend`` entry.

    Fitted on the medians of :func:`~dakd_edge.data.level.window_grid` windows of valid sea pixels
    (nodata and land left out), in the model's unit luminance.
    """
    info = scene.info
    if not (flatten or match_level):
        return None, {"applied": False, "reason": "off"}
    if all_nodata or scale is None:
        return None, {"applied": False, "reason": "no valid pixel"}
    norm = meta.normalization

    def window(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        raw = scene.window(y0, y1, x0, x1)
        ok = valid_mask(raw, info.nodata)
        if masker is not None:
            ok &= ~masker.mask(y0, y1, x0, x1)
        return to_unit(raw, scale, norm).mean(axis=0), ok

    target = level.sea_level_of(meta.input_stats) if match_level else None
    trend, why = level.fit_scene(info.height, info.width, window, target)
    if trend is None:
        return None, {"applied": False, "reason": why}
    lo, hi = norm.db_range
    return trend, trend.as_dict(None if scale == "uint8" else hi - lo)


class _Windows:
    """The tiler's reader: ``(y0, y1, x0, x1)`` -> (normalised input, valid[, land]) of that window.

    ``convert`` turns raw values (plus ``trend``'s offset, when given) into network input and a
    validity mask; land (``masker``) is not valid and is handed on so that tiles of only land count as
    such. A window that is all land is not read at all (on a coastal Sentinel-1 product most windows
    are: calibration and scaling of pixels no tile runs on). The time spent reading and masking goes
    to ``clock``.
    """

    def __init__(
        self,
        scene: Scene,
        convert: Callable[..., Any],
        masker: Any,
        clock: Clock,
        trend: level.LevelTrend | None = None,
        channels: int = 1,
    ) -> None:
        self.scene, self.convert, self.masker, self.clock = scene, convert, masker, clock
        self.trend, self.channels = trend, channels

    def __call__(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, ...]:
        land = None
        if self.masker is not None:
            t = time.perf_counter()
            land = self.masker.mask(y0, y1, x0, x1)
            self.clock.add("land_mask", t)
            if land.all():  # nothing to read or scale: every tile here is skipped as land either way
                shape = (y1 - y0, x1 - x0)
                return np.zeros((self.channels, *shape), np.float32), np.zeros(shape, bool), land
        t = time.perf_counter()
        raw = self.scene.window(y0, y1, x0, x1)
        self.clock.add("read", t)
        if self.trend is None:
            x, ok = self.convert(raw)
        else:
            x, ok = self.convert(raw, self.trend.offset(y0, y1, x0, x1))
        if land is None:
            return x, ok
        return x, ok & ~land, land


def _trace_spills(
    classes: Path,
    oilprob: Any,
    info: SceneInfo,
    world: tuple[Any, Any],
    oil_ids: list[int],
    block: int,
    min_area: tuple[float | None, int],
    masker: Any,
    land_ids: list[int] | None = None,
) -> tuple[list[Spill], list[Spill], Any]:
    """The polygon pass over the finished class map ``classes``: (kept spills, filtered ones, their CRS).

    Traces the oil regions in blocks of ``block`` rows (:func:`spills_from_mask`) with their oil
    probability from ``oilprob``, drops those under ``min_area`` (m^2 or None, pixels) and flags
    spills at the scene's edge or at the coast: the land mask's (``masker``) or the model's own land
    classes (``land_ids``). ``world``: :func:`world_of` ``info``.
    """
    oilprob.reopen()
    masks = _MaskFile(classes, oil_ids)
    to_world, world_crs = world
    with masks.ds:
        found = spills_from_mask(masks, info.height, info.width, to_world, world_crs, oilprob, block)
        spills, dropped = filter_spills(found, *min_area)
        land = masker and masker.mask
        flag_spills(spills, masks.classes, oil_ids, info.height, info.width, land, land_ids=land_ids or ())
    return spills, dropped, world_crs
