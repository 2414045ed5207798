"""`dakd-edge batch`: a thin layer over :func:`dakd_edge.batch.run` (options in, summary lines out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dakd_edge.cli.choices import keywords
from dakd_edge.cli.segment import (
    BACKEND_HELP,
    BATCH_HELP,
    LAND_MASK_HELP,
    OVERLAP_HELP,
    border_noise_option,
    check_land_mask_file,
    coast_buffer_option,
    flatten_option,
    input_scale_option,
    match_level_option,
    pol_option,
)
from dakd_edge.cli.streams import stderr_is_terminal
from dakd_edge.formats import AUTO, BACKEND_CHOICES
from dakd_edge.inference.predictor import MIN_TILE
from dakd_edge.inference.segment import MIN_SPECK_PIXELS, parse_min_area


@click.command("batch")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Batch folder.")
@click.option("--workers", type=click.IntRange(1), help="Ray actors, one model each [default: CPUs / 2].")
@click.option(
    "--threads", type=click.IntRange(1), help="Intra-op threads per worker [default: CPUs / workers]."
)
@click.option(
    "--address", help="Ray cluster (e.g. ray://HOST:10001) [default: RAY_ADDRESS, else a local Ray]."
)
@click.option("--resume", is_flag=True, help="Continue a batch folder: skip scenes whose outputs verify.")
@click.option(
    "--retries", type=click.IntRange(0), default=1, show_default=True, help="Retries per failed scene."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="With --resume, also rerun scenes that failed on a damaged input file still unchanged since.",
)
@click.option(
    "--format", "fmt", type=keywords(["gpkg", "parquet"]), default="gpkg", show_default=True,
    help="Merged layer: DIR/spills.gpkg or DIR/spills.parquet (GeoParquet); may change on --resume.",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(0), help="Run at most this many scenes (resume later).")
@click.option(
    "--model", help="Model file, or module:function returning a Predictor [default: bundled model]."
)
@click.option("--backend", type=keywords(BACKEND_CHOICES), default=AUTO, show_default=True, help=BACKEND_HELP)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, or cuda (cuda:N alike): one GPU reserved per worker (its cuda:0).",
)
@click.option(
    "--tile", type=click.IntRange(MIN_TILE), help="Tile size in pixels [default: the model's tile]."
)
@click.option("--overlap", type=click.IntRange(0), help=OVERLAP_HELP)
@click.option("--batch", type=click.IntRange(1), help=BATCH_HELP)
@click.option(
    "--min-area", help=f"Drop polygons below m^2 (2000) or pixels (10px) [default: {MIN_SPECK_PIXELS}px]."
)
@click.option("--band", type=click.IntRange(1), help="Band of multi-band GeoTIFFs fed to a 1-band model.")
@pol_option
@click.option("--no-denoise", is_flag=True, help="Sentinel-1: skip thermal noise removal.")
@border_noise_option
@click.option("--land-mask", default="auto", show_default=True, help=LAND_MASK_HELP)
@click.option("--no-land-mask", is_flag=True, help="Do not mask land.")
@coast_buffer_option
@flatten_option
@match_level_option
@input_scale_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def batch(ctx: click.Context, inputs: tuple[Path, ...], out: Path, **o: Any) -> None:
    """Segment many scenes on Ray into OUT/<scene-id>/, with OUT/manifest.jsonl and one merged layer.

    INPUTS: GeoTIFFs, Sentinel-1 products (.SAFE, .zip), folders (searched recursively), text files
    with one path per line, or local STAC ItemCollection / catalog JSON files.

    Each scene is one transaction (nothing half-written when a worker dies); failed scenes are retried,
    then recorded as failed and the run goes on (exit status 1 at the end). One run at a time per OUT
    (OUT/batch.lock): another one, a cron job's or a CI job's, stops at once (exit status 2) naming the
    run that holds it; after a crash or kill -9, --resume continues. Polygons of overlapping
    scenes (the seam of two products of one datatake) are merged into one feature with both scene ids.
    """
    from dakd_edge.batch import run
    from dakd_edge.batch.runner import check_batch_device

    check_batch_device(o["device"])
    parse_min_area(o["min_area"])
    if o["no_land_mask"] and o["land_mask"] not in ("auto", "none"):
        raise click.UsageError(f"--land-mask {o['land_mask']} and --no-land-mask contradict each other")
    land = None if o.pop("no_land_mask") else o.pop("land_mask")
    o.pop("land_mask", None)
    check_land_mask_file(land)
    pol = o.pop("pol")
    summary = run(
        inputs,
        out,
        progress=not o.pop("quiet") and stderr_is_terminal(),
        land_mask=land,
        pol=pol.upper() if pol else None,
        denoise=not o.pop("no_denoise"),
        scale=o.pop("input_scale"),
        **o,
    )
    for sid, lines in summary["warnings"].items():
        for line in lines:
            click.echo(f"dakd-edge: warning: {sid}: {line}", err=True)
    click.echo(_summary(summary))
    for f in summary["failed"]:
        click.echo(f"failed: {f['id']} ({f['input']}): {f['error']}", err=True)
    if summary["failed"]:
        ctx.exit(1)


def _summary(s: dict[str, Any]) -> str:
    parts = [f"{len(s['ok'])} ok"]
    if s["skipped"]:
        parts.append(f"{len(s['skipped'])} already done")
    if s["failed"]:
        parts.append(f"{len(s['failed'])} failed")
    if s["not_run"]:
        parts.append(f"{len(s['not_run'])} left for --resume")
    if s["retried"]:
        parts.append(f"{len(s['retried'])} retried")
    rate = f", {s['scenes_per_min']:.1f} scenes/min, {s['mpix_per_s']:.2f} MPix/s" if s["ok"] else ""
    return (
        f"{s['scenes']} scene(s): {', '.join(parts)} in {s['time_s']:.1f} s on {s['workers']} worker(s)"
        f"{rate} -> {s['layer']} ({s['features']} spill feature(s))"
        + (f", {s['manifest']}" if s["manifest"] else " (no scene run: no manifest)")
    )
