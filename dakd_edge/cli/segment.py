"""`dakd-edge segment` (scenes of any size -> class COG, probabilities, spill polygons, report) and
`dakd-edge demo` (synthetic scene -> the same outputs + a PNG quicklook)."""

from __future__ import annotations

import json
import math
import os
import re
import string
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from dakd_edge.atomic import (
    atomic_path,
    check_distinct,
    check_free_space,
    check_not_bundled,
    check_output,
    make_dirs,
    remove_made_dirs,
)
from dakd_edge.cli.choices import keywords
from dakd_edge.cli.notices import scene_notices, warning_line
from dakd_edge.cli.signals import Interrupted
from dakd_edge.cli.streams import STDOUT, stderr_is_terminal, stdout_alias
from dakd_edge.data.border_noise import BORDER_NOISE
from dakd_edge.data.landmask import DEFAULT_COAST_BUFFER_M
from dakd_edge.data.scaling import SCALES
from dakd_edge.errors import BackendUnavailable, DakdError, InputError, OutputError
from dakd_edge.formats import AUTO, BACKEND_CHOICES
from dakd_edge.inference.predictor import MIN_TILE
from dakd_edge.inference.segment import MIN_SPECK_PIXELS, PROBS_DTYPES, Progress, parse_min_area

POLS = ("VV", "VH", "HH", "HV")
# inference.predictor.default_batch, in words (segment and batch share the option)
BATCH_HELP = (
    "Tiles per backend call [default: 8 on CUDA; on CPU the tiles of one 512^2 tile: 4 at 256 px, 1 at "
    "512 px]."
)
# --backend of segment, batch, demo and evaluate (dakd_edge.formats.backend_for, weights.bundled_path)
DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when the backend that runs can use a GPU)."
BACKEND_HELP = (
    "Runtime. auto: from the model file's suffix (.onnx: onnxruntime, .engine/.plan/.trt: tensorrt, "
    ".safetensors/.pt: torch); the bundled model runs on onnxruntime when it is installed."
)
# --input-scale of segment and batch (dakd_edge.data.scaling): what the input-domain warning points to
INPUT_SCALE_HELP = (
    "What the pixel values are. uint8: 8-bit luminance (value / 255, as the OSD/SOS images); db: "
    "sigma0 in dB; linear: sigma0 in linear power; amplitude: its square root (all clipped to -35..+5 "
    "dB); auto: guessed from the dtype and sampled values, or as the file says (Sentinel-1 products: "
    "linear; ASF HyP3 RTC names; ALOS PALSAR IMG- names: amplitude DN, calibrated)."
)
# --land-mask of segment and batch
LAND_MASK_HELP = (
    "auto (GLOBE for Sentinel-1/GCP scenes), globe (any georeferenced scene), none, or a vector/raster file."
)
# The land masker's buffer pass costs about the 4th power of the buffer: 0.3 s per 256 px tile at
# 20 km, 4.7 s at 50 km (any pixel size); a wider buffer is a typo, not a coastline.
MAX_COAST_BUFFER_M = 20_000.0
RASTER_SUFFIXES = (".tif", ".tiff")
# Files read along with a raster (GDAL) or a shapefile, beside it.
GDAL_SIDECARS = (".aux.xml", ".ovr", ".msk")
SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def check_coast_buffer(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """``inf``/``nan`` would crash the land masker, and a huge buffer would run for days."""
    if not (math.isfinite(value) and 0 <= value <= MAX_COAST_BUFFER_M):
        raise click.BadParameter(f"{value:g} is not a distance from 0 to {MAX_COAST_BUFFER_M:.0f} metres")
    return value


# One --coast-buffer for segment and batch (batch passes it on to segment's scenes).
coast_buffer_option = click.option(
    "--coast-buffer",
    type=float,
    callback=check_coast_buffer,
    default=DEFAULT_COAST_BUFFER_M,
    show_default=True,
    help=f"Metres of sea next to land masked with it (0 to {MAX_COAST_BUFFER_M:.0f}).",
)

# One --flatten for segment and batch (dakd_edge.data.level).
flatten_option = click.option(
    "--flatten",
    is_flag=True,
    help="Remove the scene's smooth backscatter trend (incidence angle, wind) before tiling "
    "(experimental: see the README).",
)
# One --border-noise for segment and batch (dakd_edge.data.border_noise.BorderNoiseMask).
border_noise_option = click.option(
    "--border-noise",
    type=keywords(BORDER_NOISE),
    default="auto",
    show_default=True,
    help="Sentinel-1: mask the low-valued no-data border of products processed before IPF 2.90 "
    "(auto: those only; mask: any product; keep: never).",
)
match_level_option = click.option(
    "--match-level",
    is_flag=True,
    help="Also move the scene's sea level to the training images' (calibrated scenes; implies the "
    "trend removal of --flatten; experimental: see the README).",
)
# One --input-scale and one --pol for segment and batch.
input_scale_option = click.option(
    "--input-scale", type=keywords(SCALES), default="auto", show_default=True, help=INPUT_SCALE_HELP
)
pol_option = click.option(
    "--pol",
    type=keywords(POLS),
    help="Sentinel-1 polarisation [default: VV; HH for HH/HV products].",
)
OVERLAP_HELP = (
    "Pixels shared by neighbouring tiles, at most half the tile [default: the model's at its own tile, "
    "else 64, or half a tile under 128]."
)


def check_land_mask_file(value: str | None) -> None:
    """``--land-mask FILE``: an existing regular file (a folder or a FIFO is named as such)."""
    if value in (None, "auto", "globe", "none"):
        return
    p = Path(value)  # type: ignore[arg-type]
    if p.is_file():
        return
    what = "no such file" if not p.exists() else "a directory" if p.is_dir() else "not a regular file"
    raise InputError(f"--land-mask {value}: {what} (give a vector or raster file, or auto, globe, none)")


def load_predictor(
    model: str | None,
    backend: str,
    device: str,
    tile: int | None,
    overlap: int | None,
    batch: int | None,
    threads: int | None = None,
) -> Any:
    """One model load for all scenes: :func:`dakd_edge.inference.load` + our tiling settings."""
    try:
        from dakd_edge.inference import load
    except ImportError as e:
        raise BackendUnavailable(f"model backends are not available in this installation ({e})") from None
    return load(
        model, backend=backend, device=device, tile=tile, overlap=overlap, batch=batch, threads=threads
    )


# --threads of segment, demo and evaluate (batch splits the CPUs between its workers itself)
threads_option = click.option(
    "--threads",
    type=click.IntRange(1),
    help="CPU threads for inference (ONNX Runtime's pool, or PyTorch's) [default: all physical cores].",
)


def scene_stem(scene: Path) -> str:
    """Name outputs are derived from: the file stem, or the product name of a Sentinel-1 product
    (``S1A_IW_GRDH_..._ABCD`` for its ``.SAFE`` folder, ``.zip`` or ``manifest.safe``, a zip by the
    product inside it, as a ``<uuid>.zip`` download names none; ``PRODUCT-iw-vv`` for a measurement TIFF
    of a flattened copy, whose ``iw-vv.tiff`` names no product)."""
    from dakd_edge.data.gdalnames import dataset_stem, is_gdal_name, is_vsi
    from dakd_edge.data.sentinel1 import is_flattened_name, is_sentinel1_product, product_name

    if is_gdal_name(scene) and not is_vsi(scene):
        return dataset_stem(scene)
    if scene.name.lower() == "manifest.safe":
        scene = scene.parent
    if is_sentinel1_product(scene):
        if is_flattened_name(scene.name):
            return f"{scene_stem(scene.resolve().parent.parent)}-{scene.stem}"
        if scene.suffix.lower() in (".tif", ".tiff"):  # a measurement TIFF: its own stem
            return scene.stem
        return product_name(scene)
    if _GENERIC_STEM.fullmatch(scene.stem):  # iw-vv.rtc.tiff, vv.tif: the folder names the scene
        named = next((q.name for q in scene.resolve().parents if q.name.lower() not in _GENERIC_DIRS), "")
        named = re.sub(r"\.(safe|zip)$", "", named, flags=re.IGNORECASE)  # my.scene.v2 stays whole
        return f"{named}-{scene.stem}" if named else scene.stem
    return scene.stem


# File stems that name a polarisation, not a scene: Planetary Computer's sentinel-1-rtc
# measurement/iw-vv.rtc.tiff and its assets saved as vv.tif; two products' outputs would collide.
_GENERIC_STEM = re.compile(r"((iw|ew|s[1-6])-)?(vv|vh|hh|hv)(\.rtc)?", re.IGNORECASE)
_GENERIC_DIRS = frozenset({"measurement", "measurements", "data", ""})


def has_stem(opt: str, template: str) -> bool:
    """Whether ``template`` holds ``{stem}``; any other placeholder (or a lone brace) is refused
    rather than written as a literal file name."""
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise OutputError(f"{opt} {template}: {e} (write a literal brace as {{{{ or }}}})") from None
    if any(spec or conv for _, spec, conv in parts):  # {stem!r} would write quotes, {stem:>9} spaces
        raise OutputError(f"{opt} {template}: write the placeholder as plain {{stem}}")
    fields = {f for f, _, _ in parts}
    unknown = sorted(fields - {"stem"})
    if unknown:
        raise OutputError(
            f"{opt} {template}: unknown placeholder {{{unknown[0]}}}; only {{stem}} is supported"
        )
    return "stem" in fields


def template_stem(stem: str) -> str:
    """``stem`` as one file-name component: a scene's stem comes from names inside its files (a zip
    may hold its product under ``../``: stem ``..``), and ``out/{stem}/x.tif`` must stay in ``out``."""
    stem = stem.replace("/", "_").replace("\\", "_")
    return stem if stem.strip(".") else "scene"


def resolve_output(opt: str, template: str | None, scene: Path, default: str, many: bool) -> Path | None:
    """Output path for ``scene`` from option ``opt``: a ``{stem}`` template, an existing folder
    (``default`` inside it), or a file. A name ending in ``/`` must be an existing folder."""
    if template is None:
        return None
    stem = template_stem(scene_stem(scene))
    templated = has_stem(opt, template)
    name = template.format(stem=stem)
    if Path(name).is_dir():
        return Path(name) / default.format(stem=stem)
    if name.endswith(("/", os.sep)):
        raise OutputError(f"{opt} {template}: not an existing folder (create it first)")
    if many and not templated:
        raise OutputError(f"{opt} {template}: with several scenes, use a {{stem}} placeholder or a directory")
    return Path(name)


def check_raster_name(opt: str, p: Path) -> None:
    """Rasters are always GeoTIFF: ``-o map.png`` would be a GeoTIFF under a PNG name."""
    if p.suffix.lower() not in RASTER_SUFFIXES:
        raise OutputError(f"{opt} {p}: rasters are written as GeoTIFF; use a .tif or .tiff name")


def _with_sidecars(label: str, p: Path) -> list[tuple[str, Path]]:
    """``p`` and the files read with it, named ``"land mask's .dbf file"`` and so on."""
    parts = [(s, p.with_suffix(s)) for s in SHAPEFILE_PARTS] if p.suffix.lower() == ".shp" else []
    parts += [(s, p.with_name(p.name + s)) for s in GDAL_SIDECARS]
    return [(label, p)] + [(f"{label}'s {s} file", q) for s, q in parts]


def _product_root(scene: Path) -> Path | None:
    """The SAFE folder whose files a Sentinel-1 input reads (None for a zip or a plain raster)."""
    from dakd_edge.data.sentinel1 import is_sentinel1_product

    if scene.suffix.lower() == ".zip" or not is_sentinel1_product(scene):
        return None
    if scene.is_dir():
        return scene
    # manifest.safe sits in the SAFE folder, a measurement TIFF one level further down
    return scene.resolve().parents[0 if scene.name.lower() == "manifest.safe" else 1]


def input_files(scenes: tuple[Path, ...], model: str | None, land_mask: str | None) -> list[tuple[str, Path]]:
    """Every file the run reads, by a name for messages: no output may be (or link to) one of them,
    ``--overwrite`` or not. The bundled model is refused separately (:func:`check_not_bundled`)."""
    from dakd_edge.formats import engine_sidecar

    files = [f for s in scenes for f in _with_sidecars("input scene", s)]
    for s in scenes:
        root = _product_root(s)
        if root is not None:
            files += [("input product file", f) for f in sorted(root.rglob("*")) if f.is_file()]
    if model is not None and Path(model).is_file():
        files += [("model", Path(model)), ("model metadata", engine_sidecar(model))]
    if land_mask not in (None, "auto", "globe", "none") and Path(land_mask).is_file():
        files += _with_sidecars("land mask", Path(land_mask))
    return [(name, p) for name, p in files if p.exists()]


@contextmanager
def progress_bar(enabled: bool, label: str, width: int) -> Iterator[Progress | None]:
    """A rich progress bar over rows with MPix/s; yields the callback for ``segment_scene``."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),  # flexible: the figures keep their room on a narrow terminal
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[tiles]}"),
        TextColumn("{task.fields[rate]} MPix/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    # a product name is 67 characters: on an 80-column terminal it squeezed the figures to "153/15..."
    room = max(12, console.width - 60)
    short = label if len(label) <= room else label[: room - 1] + "…"
    with Progress(*cols, console=console, transient=False) as bar:
        task = bar.add_task(short, total=None, tiles="", rate="-")
        t0 = time.perf_counter()

        def update(rows_done: int, height: int, stats: Any) -> None:
            mpix = rows_done * width / 1e6
            rate = mpix / max(time.perf_counter() - t0, 1e-9)
            tiles = f"{stats.tiles_run + stats.tiles_skipped}/{stats.tiles_total} tiles"
            bar.update(task, completed=rows_done, total=height, tiles=tiles, rate=f"{rate:.2f}")

        yield update


def _size(r: dict[str, Any]) -> str:
    """A scene's size as ``info`` says it: rows (height) first, as ``synth --size HxW`` takes it."""
    return f"{r['height']} rows x {r['width']} cols"


def _summary(r: dict[str, Any]) -> str:
    if r.get("all_nodata"):
        lm = r.get("land_mask") or {}
        what = "all land to the land mask" if lm.get("tiles_skipped") == r["tiles"]["total"] else "all nodata"
        return f"{r['scene']}: {_size(r)}, no valid pixels ({what}): outputs are all nodata"
    area = r.get("oil_area_m2")
    area_s = f"oil {area / 1e6:.3f} km^2" if area is not None else f"oil {r['oil_pixels']} px"
    t = r["tiles"]
    spills = "" if r["spills"] is None else f", {r['spills']} spill(s)"
    if r.get("spills_filtered"):
        spills += f" (+{r['spills_filtered']} below --min-area)"
    trend = r.get("level_trend") or {}
    if trend.get("applied") and "across_columns_db" in trend:
        spills += f", {abs(trend['across_columns_db']) + abs(trend['across_rows_db']):.1f} dB trend flattened"
    if trend.get("applied") and "level_shift_db" in trend:
        spills += f", sea level moved {trend['level_shift_db']:+.1f} dB"
    return (
        f"{r['scene']}: {_size(r)}, {t['run']}/{t['total']} tiles "
        f"({t['skipped_nodata']} nodata, {t.get('skipped_land', 0)} land skipped), "
        f"{r['time_s']:.1f} s, {r['mpix_per_s']:.2f} MPix/s"
        f"{spills}, {area_s} -> {', '.join(r['outputs'].values())}"
    )


def unwrap_scene(scene: Path) -> Path:
    """:func:`~dakd_edge.data.sentinel1.unwrap_product` (a folder around one .SAFE: that product), its
    note printed as the other scene warnings are."""
    from dakd_edge.data.sentinel1 import unwrap_product

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = unwrap_product(scene)
    for w in caught:
        warning_line(w.message)
    return scene


def scene_shape(
    predictor: Any, scene: Path, band: int | None = None, pol: str | None = None
) -> tuple[int, int]:
    """(height, width) of ``scene`` as ``segment_scene`` reads it (its notes are said by the run)."""
    from dakd_edge.inference.readers import open_scene

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_scene(scene, predictor.meta.in_chans, band, pol, False) as s:
            return s.info.height, s.info.width


def _run_scene(
    predictor: Any, scene: Path, quiet: bool, shape: tuple[int, int] | None = None, **kw: Any
) -> dict[str, Any]:
    """``segment_scene`` with its notes printed as they are raised (not after a scene that may fail or
    be interrupted) and a progress bar on a terminal (segment, demo, ``evaluate --scene``)."""
    from dakd_edge.inference.segment import segment_scene

    show = not quiet and stderr_is_terminal()
    width = 0  # the bar's; evaluate --scene gives the shape it has read already
    if show:
        width = (shape or scene_shape(predictor, scene, kw.get("band"), kw.get("pol")))[1]
    with scene_notices(), progress_bar(show, scene.name, width) as cb:
        return segment_scene(predictor, scene, progress=cb, **kw)


def _write_report(path: Path, data: Any, overwrite: bool) -> None:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


OPTIONS = {"out": "-o", "probs": "--probs", "vector": "--vector", "report": "--report"}


def plan_outputs(
    scenes: tuple[Path, ...],
    templates: dict[str, str | None],
    inputs: list[tuple[str, Path]],
    overwrite: bool,
) -> tuple[list[tuple[Path, dict[str, Path | None]]], Path | None]:
    """Every scene's output paths, checked before any model load or tile read.

    Refuses a missing or directory scene, an output that exists (without ``--overwrite``), is not a
    regular file or cannot be created, a raster not named .tif/.tiff, two outputs on one path
    (``--report`` = ``-o``, two scenes with one stem into one folder) and any output that is, or links
    to, one of ``inputs`` (:func:`input_files`). ``--report -`` (stdout) is not a path: returns None.
    """
    from dakd_edge.inference.vectorize import check_vector_path

    many = len(scenes) > 1
    report = templates["report"]
    single_report = (
        report is not None
        and report != STDOUT
        and not has_stem("--report", report)
        and not Path(report).is_dir()
    )
    jobs = []
    from dakd_edge.data.gdalnames import is_gdal_name

    for scene in scenes:
        if not scene.exists() and not is_gdal_name(scene):  # GDAL checks /vsizip/..., NETCDF:"f.nc":VV
            raise InputError(f"{scene}: no such file")
        paths = {
            "out": resolve_output("-o", templates["out"], scene, "{stem}_classes.tif", many)
            or Path(f"{template_stem(scene_stem(scene))}_classes.tif"),
            "probs": resolve_output("--probs", templates["probs"], scene, "{stem}_probs.tif", many),
            "vector": resolve_output("--vector", templates["vector"], scene, "{stem}_spills.geojson", many),
            "report": None
            if single_report or report == STDOUT
            else resolve_output("--report", report, scene, "{stem}_report.json", False),
        }
        jobs.append((scene, paths))
    names = {k: opt if templates[k] is not None else "default output" for k, opt in OPTIONS.items()}
    outputs = [(names[k], p) for _, ps in jobs for k, p in ps.items() if p is not None]
    # with several scenes, say whose output it is: two scenes of one stem name the same outputs
    whose = [
        (f"{names[k]} of {scene}" if many else names[k], p) for scene, ps in jobs for k, p in ps.items() if p
    ]
    # one report for all scenes: the same name checks (a trailing "/" is a missing folder)
    single = resolve_output("--report", report, scenes[0], "", False) if single_report else None
    if single is not None:
        outputs.append(("--report", single))
        whose.append(("--report", single))
    check_distinct(whose, inputs)
    for _, p in outputs:  # the gravest refusal first, before any naming nit
        check_not_bundled(p)
    for opt, p in outputs:
        if opt in ("-o", "--probs"):  # (a default output is always .tif)
            check_raster_name(opt, p)
        elif opt == "--vector":
            check_vector_path(p)
    for _, p in outputs:
        check_output(p, overwrite)
    return jobs, single


@click.command("segment")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    help="Class-id COG (.tif/.tiff); {stem} or an existing folder for many scenes "
    "[default: ./{stem}_classes.tif].",
)
@click.option(
    "--model", help="Checkpoint (.safetensors/.pt), ONNX file or TensorRT engine [default: bundled model]."
)
@click.option("--backend", type=keywords(BACKEND_CHOICES), default=AUTO, show_default=True, help=BACKEND_HELP)
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@threads_option
@click.option(
    "--tile",
    type=click.IntRange(MIN_TILE),
    help="Tile size in pixels [default: the model's tile; 512 for a model without one].",
)
@click.option(
    "--overlap",
    type=click.IntRange(0),
    help=OVERLAP_HELP,
)
@click.option(
    "--batch",
    type=click.IntRange(1),
    help=BATCH_HELP,
)
@click.option("--probs", help="Also write per-class probabilities (COG, .tif/.tiff).")
@click.option(
    "--probs-dtype",
    type=keywords(PROBS_DTYPES),
    default="uint8",
    show_default=True,
    help="uint8: probability x 250 (255 = nodata; a GDAL scale of 1/250 gives 0-1); float16: 0-1 as "
    "computed, twice the size.",
)
@click.option("--vector", help="Also write oil-spill polygons (.geojson WGS84 or .gpkg scene CRS).")
@click.option(
    "--min-area",
    help=f"Drop polygons smaller than this: m^2 (e.g. 2000) or pixels (e.g. 10px) "
    f"[default: {MIN_SPECK_PIXELS}px].",
)
@click.option("--band", type=click.IntRange(1), help="Band of a multi-band scene fed to a 1-band model.")
@pol_option
@click.option("--no-denoise", is_flag=True, help="Sentinel-1: skip thermal noise removal.")
@border_noise_option
@click.option("--land-mask", default="auto", show_default=True, help=LAND_MASK_HELP)
@click.option("--no-land-mask", is_flag=True, help="Do not mask land.")
@click.option(
    "--geocode",
    is_flag=True,
    help="GCP scenes (Sentinel-1): write rasters on a UTM grid instead of keeping the GCPs.",
)
@coast_buffer_option
@flatten_option
@match_level_option
@input_scale_option
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input or the model).")
@click.option(
    "--report",
    is_flag=False,
    flag_value=STDOUT,
    callback=stdout_alias,
    help="Write the JSON report here ({stem}, a folder, or one file for all scenes; - or alone: stdout).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def segment(
    scenes: tuple[Path, ...],
    output: str | None,
    model: str | None,
    backend: str,
    device: str,
    threads: int | None,
    tile: int | None,
    overlap: int | None,
    batch: int | None,
    probs: str | None,
    probs_dtype: str,
    vector: str | None,
    min_area: str | None,
    band: int | None,
    pol: str | None,
    no_denoise: bool,
    border_noise: str,
    land_mask: str,
    no_land_mask: bool,
    geocode: bool,
    coast_buffer: float,
    flatten: bool,
    match_level: bool,
    input_scale: str,
    overwrite: bool,
    report: str | None,
    quiet: bool,
) -> None:
    """Segment SAR SCENES into oil-spill class maps, streaming in tiles.

    A scene is a GeoTIFF (any size) or a Sentinel-1 GRD product (.SAFE folder, .zip, manifest.safe or
    a measurement TIFF), calibrated to sigma0 on the fly, with land masked.

    All outputs of a scene are written as temporaries and renamed together once the scene is done:
    an error, a full disk or an interrupt leaves no file under any final name.
    """
    parse_min_area(min_area)
    if no_land_mask and land_mask not in ("auto", "none"):
        raise click.UsageError(f"--land-mask {land_mask} and --no-land-mask contradict each other")
    if not no_land_mask:
        check_land_mask_file(land_mask)
    scenes = tuple(unwrap_scene(s) for s in scenes)
    templates = {"out": output, "probs": probs, "vector": vector, "report": report}
    inputs = input_files(scenes, model, None if no_land_mask else land_mask)
    jobs, single_report = plan_outputs(scenes, templates, inputs, overwrite)
    predictor = load_predictor(model, backend, device, tile, overlap, batch, threads)
    # segment_scene checks its own scene; these are the files every scene reads (unique names)
    protect: dict[str, str | os.PathLike] = dict(input_files((), model, None if no_land_mask else land_mask))
    reports = []
    for i, (scene, paths) in enumerate(jobs):
        try:
            r = _run_scene(
                predictor,
                scene,
                quiet,
                out=paths["out"],
                probs=paths["probs"],
                probs_dtype=probs_dtype,
                vector=paths["vector"],
                report=paths["report"],
                min_area=min_area,
                band=band,
                pol=pol.upper() if pol else None,
                denoise=not no_denoise,
                border_noise=border_noise,
                land_mask=None if no_land_mask else land_mask,
                coast_buffer=coast_buffer,
                geocode=geocode,
                flatten=flatten,
                match_level=match_level,
                scale=input_scale,
                overwrite=overwrite,
                protect=protect,
            )
        except DakdError as e:
            if len(jobs) == 1:
                raise
            raise type(e)(
                f"{e} (scene {i + 1} of {len(jobs)}: {i} written before it, the rest not run; "
                "`dakd-edge batch` goes on past a failed scene)"
            ) from None
        except Interrupted:  # which scenes are done: run again, those need --overwrite or leaving out
            if len(jobs) > 1:
                click.echo(f"dakd-edge: {i} of {len(jobs)} scenes written before the interrupt", err=True)
            raise
        reports.append(r)
        click.echo(_summary(r), err=report == STDOUT)  # stdout carries only the JSON then
    doc = reports[0] if len(reports) == 1 else reports
    if report == STDOUT:
        click.echo(json.dumps(doc, indent=2))
    elif single_report is not None:
        _write_report(single_report, doc, overwrite)
        # one file for the run: not among any scene's outputs, so it was named nowhere
        click.echo(
            f"report -> {single_report}"
            if len(reports) == 1
            else f"report of {len(reports)} scenes -> {single_report}"
        )


@click.command("demo")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dakd-demo"),
    show_default=True,
    help="Folder for the scene, its labels, the maps, polygons, quicklook and report (made if missing).",
)
@click.option("--size", type=click.IntRange(64), default=2048, show_default=True, help="Scene side (px).")
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Scene seed (same seed = same scene).",
)
@click.option("--model", help="Model file [default: bundled model].")
@click.option("--backend", type=keywords(BACKEND_CHOICES), default=AUTO, show_default=True, help=BACKEND_HELP)
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace outputs of an earlier demo.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print only the report, as JSON (no file list).")
def demo(
    out_dir: Path,
    size: int,
    seed: int,
    model: str | None,
    backend: str,
    device: str,
    threads: int | None,
    overwrite: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Synthesise a georeferenced SAR scene, segment it, write maps, polygons and a quicklook PNG."""
    from dakd_edge.inference.outputs import estimate_output_bytes
    from dakd_edge.inference.quicklook import quicklook
    from dakd_edge.scene_eval import score_scene

    predictor = load_predictor(model, backend, device, None, None, None, threads)
    try:
        top = make_dirs(out_dir)  # the topmost folder made: a failed demo removes them all again
    except OSError as e:
        raise OutputError(f"cannot create the demo folder {out_dir} ({e.strerror or e})") from None
    paths = {
        "scene": out_dir / "scene.tif",
        "labels": out_dir / "scene_labels.tif",
        "classes": out_dir / "classes.tif",
        "probs": out_dir / "probs.tif",
        "vector": out_dir / "spills.geojson",
        "quicklook": out_dir / "quicklook.png",
        "report": out_dir / "report.json",
    }
    before = {name: _stamp(p) for name, p in paths.items()}
    k = predictor.meta.num_classes
    t0 = time.perf_counter()
    try:
        for p in paths.values():
            check_output(p, overwrite)
        # the whole demo up front (scene, maps, quicklook): a disk filling after the scene was written
        # used to leave it behind, and the retry then stopped at "output exists: scene.tif"
        need = size * size // 2 + sum(estimate_output_bytes(size, size, k, 1).values()) + min(size, 1024) ** 2
        check_free_space(out_dir, need, f"the demo in {out_dir}")
        write_demo_scene(paths["scene"], paths["labels"], size, seed, overwrite, binary=k == 2)
        synth_s = time.perf_counter() - t0
        r = _run_scene(
            predictor,
            paths["scene"],
            quiet,
            out=paths["classes"],
            probs=paths["probs"],
            vector=paths["vector"],
            overwrite=overwrite,
        )
        quicklook(paths["scene"], paths["classes"], paths["quicklook"], predictor.meta, overwrite=overwrite)
        r["synthesis_s"] = round(synth_s, 3)
        r["vs_synthetic_truth"] = label_agreement(
            paths["labels"], paths["classes"], predictor.meta.class_names
        )
        spills = score_scene(paths["classes"], paths["labels"])["spills"]  # as `evaluate --scene` counts
        r["vs_synthetic_truth"].update(
            slicks=spills["truth"], slicks_detected=spills["detected"], false_alarms=spills["false_alarms"]
        )
        r["outputs"].update(
            scene=str(paths["scene"]), labels=str(paths["labels"]), quicklook=str(paths["quicklook"]),
            report=str(paths["report"]),
        )  # fmt: skip
        _write_report(paths["report"], r, overwrite)
    except BaseException:  # no half demo: remove what this run wrote (earlier files stay as they were)
        for name, p in paths.items():
            if _stamp(p) != before[name]:
                p.unlink(missing_ok=True)
        remove_made_dirs(out_dir, top)
        raise
    click.echo(json.dumps(r, indent=2))
    if as_json:  # stdout is the JSON alone (for jq)
        return
    click.echo("")
    for name in ("scene", "labels", "classes", "probs", "vector", "quicklook", "report"):
        click.echo(f"{name:>10}: {paths[name]}")


def _stamp(p: Path) -> tuple[int, int] | None:
    """Identity of the file at ``p`` now (inode, mtime), None when there is none."""
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def write_demo_scene(scene: Path, labels: Path, size: int, seed: int, overwrite: bool, binary: bool) -> None:
    """The demo scene from the foundation's synthetic generator (georeferenced, windowed write)."""
    try:
        from dakd_edge.data import synthetic
    except ImportError as e:
        raise BackendUnavailable(f"the synthetic scene generator is not available ({e})") from None
    synthetic.write_scene_geotiff(
        scene, seed=seed, height=size, width=size, labels_path=labels, binary=binary, overwrite=overwrite
    )


def label_agreement(labels: Path, classes: Path, class_names: Sequence[str]) -> dict[str, Any]:
    """mIoU / pixel accuracy of the demo prediction against the generator's ground truth.

    The generator's labels (OSD classes, or background / oil; named by the labels' ``DAKD_CLASSES``
    tag) are mapped to the model's ``class_names`` by name: oil to the model's oil class
    (``oil_ids_of``), every other class to the model's class of the same name (sea and background
    alike). When a label class has no model class of its name, or the model has several oil classes, the
    two are compared as oil against the rest. ``classes`` says which: the model's class names, or
    ``["rest", "oil"]``.
    """
    import numpy as np
    import rasterio

    from dakd_edge.metrics import ConfusionMatrix

    model_names = list(class_names)
    with rasterio.open(labels) as lab, rasterio.open(classes) as cls:
        label_names = _label_names(lab.tags())
        lut, model_oil, label_oil = _label_map(label_names, model_names)
        k = len(model_names) if lut is not None else 2
        cm = ConfusionMatrix(k, ignore_index=255)
        for _, win in cls.block_windows(1):
            pred = cls.read(1, window=win)
            target = lab.read(1, window=win)
            if lut is not None:
                target = lut[target].astype(np.int64)
            else:  # oil against the rest on both sides
                target = np.where(target == 255, 255, np.isin(target, label_oil)).astype(np.int64)
                pred = np.where(pred == 255, 255, np.isin(pred, model_oil)).astype(np.uint8)
            target[pred == 255] = 255
            cm.update(np.where(pred == 255, 0, pred), target)
    m = cm.compute()
    return {
        "miou": round(float(m["miou"]), 4),
        "pixel_accuracy": round(float(m["pixel_accuracy"]), 4),
        "classes": model_names if lut is not None else ["rest", "oil"],
    }


def _label_names(tags: dict[str, str]) -> list[str]:
    """The generator's class names from its labels' ``DAKD_CLASSES`` tag (OSD's when it has none)."""
    from dakd_edge.meta import OSD_CLASSES

    names = [n.strip() for n in tags.get("DAKD_CLASSES", "").split(",") if n.strip()]
    return names or list(OSD_CLASSES)


def _label_map(label_names: list[str], model_names: list[str]) -> tuple[Any, list[int], list[int]]:
    """(256-entry table from label values to the model's class ids, or None when the names do not all
    match; the model's oil ids; the labels' oil ids). 255 (unlabelled) stays 255."""
    import numpy as np

    from dakd_edge.meta import class_meaning, oil_ids_of

    with warnings.catch_warnings():  # a model without an oil name: segment said so already
        warnings.simplefilter("ignore")
        model_oil, label_oil = oil_ids_of(model_names), oil_ids_of(label_names)

    index: dict[str, int] = {}
    for i, n in enumerate(model_names):
        if i not in model_oil:
            index.setdefault(class_meaning(n), i)
    lut = np.full(256, 255, np.uint8)
    for i, n in enumerate(label_names):
        if i in label_oil and len(model_oil) == 1:
            lut[i] = model_oil[0]
        elif i not in label_oil and class_meaning(n) in index:
            lut[i] = index[class_meaning(n)]
        else:
            return None, model_oil, label_oil
    return lut, model_oil, label_oil
