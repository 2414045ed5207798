"""``dakd-edge synth`` (write a synthetic georeferenced scene) and ``dakd-edge info`` (describe a raster).

Both are torch-free: they run on the ONNX Runtime / TensorRT edge install.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import click

from dakd_edge import jsonout
from dakd_edge.cli.choices import keywords
from dakd_edge.errors import InputError, OutputError

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*$")


class FiniteRange(click.FloatRange):
    """A float range that also refuses NaN, which compares false with both bounds and so passes
    ``click.FloatRange``."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        rv = super().convert(value, param, ctx)
        if math.isnan(rv):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return rv


def parse_size(text: str) -> tuple[int, int]:
    """'8192x4096' -> (height, width) = (4096, 8192)? No: HEIGHTxWIDTH, rows first; '2048' -> square."""
    m = _SIZE.match(text)
    if not m:
        raise click.BadParameter(
            f"{text!r} is not a size: use HEIGHTxWIDTH (e.g. 8192x8192) or one number", param_hint="--size"
        )
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h <= 0 or w <= 0:
        raise InputError(f"--size must be positive, got {h}x{w}")
    if h * w > 2_000_000_000:
        raise InputError(f"--size {h}x{w} is too large (limit: 2 gigapixels)")
    return h, w


WINDOW_STEP = 16  # what data.synthetic.write_scene_geotiff takes (GeoTIFF blocks are multiples of 16)


def check_window(window: int) -> None:
    """``--window``: a positive multiple of 16 pixels, refused by its option name before anything runs."""
    if window <= 0 or window % WINDOW_STEP:
        raise InputError(f"--window must be a positive multiple of {WINDOW_STEP} pixels, got {window}")


@click.command("synth")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--size", default="2048x2048", show_default=True, help="HEIGHTxWIDTH in pixels (or one number)."
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Scene seed (same seed = same scene).",
)
@click.option(
    "--labels", type=click.Path(dir_okay=False, path_type=Path), help="Also write the label GeoTIFF."
)
@click.option(
    "--dtype",
    "output",
    type=keywords(["uint8", "db", "linear"]),
    default="uint8",
    show_default=True,
    help="uint8 luminance (OSD-like), float32 sigma0 in dB, or float32 linear sigma0.",
)
@click.option("--binary", is_flag=True, help="Labels oil=1 / rest=0 instead of the 5 OSD classes.")
@click.option(
    "--pixel-size",
    default=10.0,
    show_default=True,
    type=FiniteRange(0, 1000, min_open=True),
    help="Metres per pixel.",
)
@click.option(
    "--looks",
    default=4.4,
    show_default=True,
    type=FiniteRange(1, 1000),
    help="Speckle equivalent number of looks.",
)
@click.option("--crs", default="EPSG:32634", show_default=True, help="Projected CRS of the output.")
@click.option(
    "--window",
    default=1024,
    show_default=True,
    type=int,
    help=f"Side of the square window rendered at a time, in pixels; a multiple of {WINDOW_STEP} "
    "(bounds memory).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth(
    out: Path,
    size: str,
    seed: int,
    labels: Path | None,
    output: str,
    binary: bool,
    pixel_size: float,
    looks: float,
    crs: str,
    window: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a synthetic Sentinel-1-VV-like scene OUT (tiled, deflate GeoTIFF) window by window.

    Sea clutter with speckle, oil slicks, look-alikes, ships and land, with OSD labels
    (0 sea, 1 oil, 2 look-alike, 3 ship, 4 land) when --labels is given.
    """
    from dataclasses import replace

    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    from dakd_edge.data.synthetic import SceneConfig, write_scene_geotiff

    h, w = parse_size(size)
    check_window(window)
    try:
        crs_obj = CRS.from_user_input(crs)
    except CRSError as e:
        raise InputError(f"unknown CRS {crs!r}: {e}") from None
    if not crs_obj.is_projected:
        raise InputError(f"--crs must be a projected CRS in metres (e.g. a UTM zone), got {crs}")
    for opt, p in (("OUT", out), ("--labels", labels)):
        if p is not None and p.suffix.lower() not in (".tif", ".tiff"):  # a GeoTIFF under a PNG name
            raise OutputError(f"{opt} {p}: rasters are written as GeoTIFF; use a .tif or .tiff name")
    if labels is not None and labels.resolve() == out.resolve():
        raise InputError("--labels must differ from the image path")
    cfg = replace(SceneConfig(), pixel_size=pixel_size, looks=looks)
    t0 = time.perf_counter()
    if quiet:
        info = write_scene_geotiff(
            out, cfg, seed, h, w, labels, output, binary, window, crs, overwrite=overwrite
        )
    else:
        from rich.progress import Progress

        console = _stderr_console()
        # off without a terminal: a transient bar there leaves a blank line on stderr (before an error too)
        with Progress(transient=True, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task(f"synth {h}x{w}", total=h * w)
            info = write_scene_geotiff(
                out, cfg, seed, h, w, labels, output, binary, window, crs, overwrite=overwrite,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
    fr = ", ".join(f"{k} {100 * v:.2f}%" for k, v in info["class_fractions"].items())
    click.echo(f"wrote {out} ({h}x{w}, {output}, {crs}) in {time.perf_counter() - t0:.1f}s; classes: {fr}")
    if labels is not None:
        click.echo(f"wrote {labels}")


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@click.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--samples",
    default=9,
    show_default=True,
    type=click.IntRange(1),
    help="Windows sampled for value statistics.",
)
def info(path: Path, as_json: bool, samples: int) -> None:
    """Describe a raster or a Sentinel-1 product.

    A raster: size, bands, dtype, CRS, transform or GCPs, nodata, value range (sampled windows). A
    Sentinel-1 GRD product (.SAFE folder, .zip, manifest.safe or a measurement TIFF inside a SAFE):
    mission, mode, product type, polarisations, start/stop time, orbit, pass, size, pixel spacing and
    footprint (WGS84).
    """
    from dakd_edge.cli.segment import unwrap_scene
    from dakd_edge.data.rasterinfo import describe

    d = describe(unwrap_scene(path), samples=max(1, samples))
    if as_json:
        click.echo(jsonout.dumps(d, str, indent=2, default=str))
        return
    click.echo("\n".join(_product_lines(d) if d["kind"] == "sentinel1" else _raster_lines(d)))


def _raster_lines(d: dict) -> list[str]:
    """Text report of ``describe_raster``."""
    lines = [
        f"{d['path']}  ({d['driver']})",
        f"  size       {d['height']} rows x {d['width']} cols, {d['count']} band(s), {', '.join(sorted(set(d['dtypes'])))}",
        *_georef_lines(d),
        f"  nodata     {d['nodata']}",
        f"  tiling     blocks {d['block_shapes'][0]}, compression {d['compression'] or 'none'}",
        f"  sampled    {d['sampled_windows']} window(s), {100 * d['sampled_fraction']:.1f}% of pixels",
    ]
    for b in d["bands"]:
        desc = f" ({b['description']})" if b.get("description") else ""
        if "min" in b:
            lines.append(
                f"  band {b['band']}{desc}: min {b['min']:.4g}  max {b['max']:.4g}  mean {b['mean']:.4g}  "
                f"p2-p98 {b['p2']:.4g}..{b['p98']:.4g}  valid {100 * b['valid_fraction']:.1f}% of the sample  scale {b['scale']}"
                + (" (as the file name says)" if b.get("scale_from") else "")
                + (f", DN {b['nodata_from_name']} is nodata" if "nodata_from_name" in b else "")
            )
        else:
            lines.append(f"  band {b['band']}{desc}: no valid pixels in the sampled windows")
    return lines


def _georef_lines(d: dict) -> list[str]:
    """CRS + transform, or the GCPs of a GCP-georeferenced raster (its identity transform means none)."""
    g = d.get("gcps")
    if d.get("georeference") == "gcps":
        e = g["extent"]
        return [
            f"  crs        {g['crs'] or 'unknown'} (of the GCPs)",
            f"  georef     {g['count']} GCPs, no geotransform; GCP extent x {e[0]:.4f}..{e[2]:.4f}, "
            f"y {e[1]:.4f}..{e[3]:.4f}",
        ]
    t = d["transform"]
    lines = [
        f"  crs        {d['crs'] or 'none (not georeferenced)'}{'' if d['crs_projected'] or not d['crs'] else ' (geographic)'}",
        f"  transform  origin ({t[2]:.3f}, {t[5]:.3f}), pixel {d['pixel_size'][0]:g} x {d['pixel_size'][1]:g}",
    ]
    if g:
        lines.append(f"  gcps       {g['count']} ({g['crs'] or 'no CRS'}), besides the geotransform")
    return lines


_RESOLUTIONS = {"H": " high resolution", "M": " medium resolution", "F": " full resolution"}


def _product_lines(d: dict) -> list[str]:
    """Text report of ``describe_product``."""
    pols = "+".join(d["polarisations"])
    if d["polarisations_present"] != d["polarisations"]:
        pols += f" (in this copy: {'+'.join(d['polarisations_present'])})"
    res = _RESOLUTIONS.get(d["resolution"], "")
    name = "" if Path(d["path"]).name == d["name"] else f" {d['name']}"
    w, s, e, n = d["bounds"]
    sp = d["pixel_spacing"]
    return [
        f"{d['path']}  (Sentinel-1 {d['product_type']} product{name})",
        f"  mission        {d['mission']}",
        f"  mode           {d['mode']}",
        f"  product type   {d['product_type']}{d['resolution']}{res}",
        f"  polarisations  {pols}",
        f"  start          {d['start_time'].removesuffix('Z')} UTC",
        f"  stop           {d['stop_time'].removesuffix('Z')} UTC",
        f"  orbit          {d['absolute_orbit']} (absolute), {d['pass_direction'].lower() or 'unknown pass'}",
        f"  size           {d['lines']} lines x {d['samples']} samples",
        f"  pixel spacing  {sp['range']:g} m range x {sp['azimuth']:g} m azimuth",
        f"  footprint      lat {_deg(s, 'NS')}..{_deg(n, 'NS')}, lon {_deg(w, 'EW')}..{_deg(e, 'EW')} (WGS84)",
        f"  corners        {'; '.join(f'{lat:.4f} {lon:.4f}' for lon, lat in d['corners'][:4])} (lat lon)",
        f"  georef         {d['gcps']['count']} GCPs ({d['gcps']['crs']}), IPF {d['ipf_version'] or 'unknown'}",
        f"  border noise   {d['border_noise']} (what segment does by default)",
    ]


def _deg(v: float, hemi: str) -> str:
    """40.877 -> '40.877 N', -3.2 -> '3.200 W'."""
    return f"{abs(v):.3f} {hemi[0] if v >= 0 else hemi[1]}"


@click.command("synth-product")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, path_type=Path),
    help="A real .SAFE product (or its manifest.safe) whose XML (LUTs, geolocation) is used "
    "[default: a small generated one].",
)
@click.option("--size", help="HEIGHTxWIDTH crop of the source (lines x samples) [default: whole product].")
@click.option("--offset", default="0,0", show_default=True, help="LINE,PIXEL of the crop's first pixel.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Scene seed.")
@click.option(
    "--center",
    help="LAT,LON of a generated product's centre (not with --from), e.g. 60.5,179.9 for one that "
    "crosses the antimeridian [default: 40,25].",
)
@click.option(
    "--ipf",
    help="IPF version a generated product claims (not with --from); below 002.90 it has the old noise "
    "XML layout and is border-noise masked by segment [default: 003.40].",
)
@click.option(
    "--border-noise",
    "border_noise",
    help="NEAR,FAR: pixels of pre-IPF-2.90 border noise (DNs low but not zero) at the range edges "
    "[default: none].",
)
@click.option("--zip", "make_zip", is_flag=True, help="Also write PRODUCT.zip beside the .SAFE folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing PRODUCT.SAFE (and PRODUCT.zip).")
def synth_product(
    out_dir: Path,
    source: Path | None,
    size: str | None,
    offset: str,
    seed: int,
    center: str | None,
    ipf: str | None,
    border_noise: str | None,
    make_zip: bool,
    overwrite: bool,
) -> None:
    """Write a Sentinel-1 GRD product (.SAFE, optionally .zip) with synthetic sea/oil/land pixels.

    The pixels are a synthetic sigma0 scene converted to digital numbers through the product's own
    calibration and noise LUTs (DN = sqrt(sigma0 A^2 + noise)), so `dakd-edge segment` calibrates it
    back like a real product. With --from, the real product's metadata (and coastline) are used.
    The product appears under its final name only once complete (OUT is created when needed).
    """
    from dakd_edge.data.sentinel1 import MIN_PRODUCT_SIDE, build_synthetic_product

    if source is not None and source.is_file():  # segment takes a product's manifest.safe too
        if source.name.lower() != "manifest.safe":
            raise click.BadParameter(
                f"{source}: give a .SAFE folder or its manifest.safe", param_hint="--from"
            )
        source = source.parent

    try:
        line, pixel = (int(v) for v in offset.split(","))
    except ValueError:
        raise click.BadParameter(f"{offset!r}: use LINE,PIXEL", param_hint="--offset") from None
    shape = parse_size(size) if size else None
    if shape is not None and min(shape) < MIN_PRODUCT_SIDE:
        raise click.BadParameter(
            f"{size!r} is too small: a product is at least {MIN_PRODUCT_SIDE}x{MIN_PRODUCT_SIDE}",
            param_hint="--size",
        )
    where = {}
    if center is not None:
        if source is not None:
            raise click.BadParameter("applies to a generated product, not with --from", param_hint="--center")
        try:
            lat, lon = (float(v) for v in center.split(","))
        except ValueError:
            raise click.BadParameter(f"{center!r}: use LAT,LON in degrees", param_hint="--center") from None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise click.BadParameter(
                f"{center!r}: latitude -90..90, longitude -180..180", param_hint="--center"
            )
        where["center"] = (lat, lon)
    if ipf is not None:
        if source is not None:
            raise click.BadParameter("applies to a generated product, not with --from", param_hint="--ipf")
        if not re.fullmatch(r"\d{3}\.\d{2}", ipf):
            raise click.BadParameter(f"{ipf!r}: use NNN.NN, e.g. 002.72", param_hint="--ipf")
        where["ipf"] = ipf
    widths = (0, 0)
    if border_noise is not None:
        try:
            near, far = (int(v) for v in border_noise.split(","))
        except ValueError:
            raise click.BadParameter(
                f"{border_noise!r}: use NEAR,FAR pixels", param_hint="--border-noise"
            ) from None
        if near < 0 or far < 0:
            raise click.BadParameter(f"{border_noise!r}: pixels must be >= 0", param_hint="--border-noise")
        widths = (near, far)
    p = build_synthetic_product(
        out_dir, source=source, shape=shape, offset=(line, pixel), seed=seed, make_zip=make_zip,
        overwrite=overwrite, border_noise=widths, **where,
    )  # fmt: skip
    click.echo(str(p.zip_path or p.path))
