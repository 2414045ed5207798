"""`dakd-edge evaluate`: the paper's metric table for a model over a dataset split, or a whole scene
against its ground truth (``--scene`` / ``--pred`` with ``--truth``: :mod:`dakd_edge.scene_eval`).

Options are checked as ``segment`` checks its own (tile >= 32, a device name, outputs refused when
they exist unless ``--overwrite``) before the model loads.
"""

from __future__ import annotations

from pathlib import Path

import click

from dakd_edge import jsonout
from dakd_edge.cli.choices import SENSORS, both_is_none, keywords
from dakd_edge.cli.segment import BACKEND_HELP, DEVICE_HELP, threads_option
from dakd_edge.cli.streams import STDOUT, json_out_option, stderr_is_terminal
from dakd_edge.formats import BACKEND_CHOICES
from dakd_edge.inference.predictor import MIN_TILE


@click.command("evaluate")
@click.option(
    "--model", "model_path", type=click.Path(dir_okay=False), help="Model file [default: bundled model]."
)
@click.option("--data", type=click.Path(), help="Dataset root (OSD, SOS or a folder).")
@click.option(
    "--scene", type=click.Path(), help="A whole scene (GeoTIFF or Sentinel-1 product) to segment and score."
)
@click.option(
    "--pred", type=click.Path(dir_okay=False), help="A class map `segment` wrote, to score as it is."
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False),
    help="Ground truth of --scene / --pred: a raster on its grid or oil polygons (.geojson / .gpkg).",
)
@click.option(
    "--truth-oil",
    help="Values of oil in a truth raster (comma list; 255 for 0/255 masks) [default: those its "
    "class-name tag calls oil, else 1].",
)
@click.option(
    "--truth-ignore",
    help="Values of a truth raster left out like nodata (comma list), e.g. 4 for the land of OSD labels "
    "without class names [default: those its class-name tag calls land].",
)
@click.option(
    "--min-area",
    help="Spills smaller than this (m^2, or e.g. 10px) are left out, as in segment [default: 5px].",
)
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="Split of --data: its train or test part (a plain images/ + masks/ folder is read whole).",
)
@click.option(
    "--kind",
    default="auto",
    show_default=True,
    type=keywords(["auto", "osd", "sos", "folder"]),
    help="Layout of --data: an OSD or SOS release, or a folder of images/ + masks/; auto: detected.",
)
@click.option("--sensor", type=SENSORS, callback=both_is_none, help="SOS sensor [default: both].")
@click.option(
    "--backend", default="auto", show_default=True, type=keywords(BACKEND_CHOICES), help=BACKEND_HELP
)
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@threads_option
@click.option("--tile", type=click.IntRange(MIN_TILE), help="Sliding-window tile [default: the model's].")
@json_out_option("Write the metrics JSON ('-' or alone: stdout).")
@click.option("--save-png", type=click.Path(file_okay=False), help="Write coloured prediction PNGs here.")
@click.option("--limit", type=click.IntRange(1), help="Evaluate only the first N images.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file or --save-png PNGs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def evaluate(
    model_path: str | None,
    data: str | None,
    scene: str | None,
    pred: str | None,
    truth: str | None,
    truth_oil: str | None,
    truth_ignore: str | None,
    min_area: str | None,
    split: str,
    kind: str,
    sensor: str | None,
    backend: str,
    device: str,
    threads: int | None,
    tile: int | None,
    json_out: str | None,
    save_png: str | None,
    limit: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Per-class IoU, mIoU, F1, precision, recall and pixel accuracy over a dataset split.

    With --scene (or an existing --pred class map) and --truth: oil IoU / precision / recall over the
    whole scene, truth slicks detected and false alarms per 10,000 km^2 of sea; land (masked, a class the
    model or the truth names land, or --truth-ignore) is left out, but truth oil the model calls land
    counts as missed.
    """
    from rich.console import Console

    from dakd_edge.atomic import atomic_path, check_distinct, check_output
    from dakd_edge.evaluate import evaluate as run
    from dakd_edge.evaluate import png_folder, render_table
    from dakd_edge.inference import load

    if sum(x is not None for x in (data, scene, pred)) != 1:
        raise click.UsageError("give one of --data (a dataset), --scene or --pred (with --truth)")
    if truth is None and data is None:
        raise click.UsageError(
            f"--{'pred' if pred else 'scene'} needs --truth (a raster or polygons of the oil)"
        )
    if truth is not None and data is not None:
        raise click.UsageError(
            "--truth goes with --scene or --pred, not with --data (its masks are the truth)"
        )
    if data is None:
        given = {"--save-png": save_png, "--limit": limit}
        if pred is not None:  # no model runs on a class map
            given.update({"--model": model_path, "--tile": tile, "--threads": threads})
        extra = [k for k, v in given.items() if v is not None]
        if extra:
            raise click.UsageError(
                f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} nothing with --{'pred' if pred else 'scene'}: --model, "
                "--tile and --threads go with --scene, --save-png and --limit with --data"
            )
        _score_scene(
            model_path, scene, pred, truth, truth_oil, truth_ignore, min_area, backend, device, tile,
            json_out, overwrite, threads, quiet,
        )  # fmt: skip
        return
    to_file = json_out is not None and json_out != STDOUT
    if to_file:
        check_output(json_out, overwrite)
        if model_path:
            check_distinct({"--json": Path(json_out)}, {"model": Path(model_path)})
    png_folder(save_png, data)  # before the model loads: a folder that cannot take the PNGs fails first
    predictor = load(model_path, backend=backend, device=device, tile=tile, threads=threads)
    try:
        result = run(
            predictor, data, split=split, kind=kind, sensor=sensor, save_png=save_png, limit=limit,
            progress=not quiet and stderr_is_terminal(), overwrite=overwrite,
        )  # fmt: skip
    finally:
        predictor.close()
    result["model_file"] = model_path or "bundled"
    for line in result["data_read_as"]:
        click.echo(line, err=json_out == STDOUT)
    Console(stderr=json_out == STDOUT).print(render_table(result))
    if json_out == STDOUT:
        click.echo(jsonout.dumps(result, indent=2))  # undefined metrics (NaN) are null
    elif to_file:
        with atomic_path(json_out, overwrite) as tmp:
            Path(tmp).write_text(jsonout.dumps(result, indent=2))


def _score_scene(
    model_path: str | None,
    scene: str | None,
    pred: str | None,
    truth: str,
    truth_oil: str | None,
    truth_ignore: str | None,
    min_area: str | None,
    backend: str,
    device: str,
    tile: int | None,
    json_out: str | None,
    overwrite: bool,
    threads: int | None = None,
    quiet: bool = False,
) -> None:
    """``--scene`` (segmented first, into a temporary folder) or ``--pred`` against ``--truth``."""

    from rich.console import Console

    from dakd_edge.atomic import atomic_path, check_distinct, check_output, work_dir
    from dakd_edge.errors import InputError
    from dakd_edge.inference.segment import parse_min_area
    from dakd_edge.scene_eval import render_scene, score_scene

    oil = _values("--truth-oil", truth_oil, "1 or 255")
    ignore = _values("--truth-ignore", truth_ignore, "4 or 3,4")
    if oil and ignore and set(oil) & set(ignore):
        v = sorted(set(oil) & set(ignore))[0]
        raise InputError(
            f"--truth-oil and --truth-ignore both name {v}: a value is oil or left out, not both"
        )
    parse_min_area(min_area)  # a bad value fails before anything runs
    if not Path(truth).exists():
        raise InputError(f"{truth}: truth file not found")
    to_file = json_out is not None and json_out != STDOUT
    if to_file:
        check_output(json_out, overwrite)
        inputs = {"truth": Path(truth), "class map": Path(pred) if pred else None,
                  "scene": Path(scene) if scene else None, "model": Path(model_path) if model_path else None}  # fmt: skip
        check_distinct({"--json": Path(json_out)}, {k: v for k, v in inputs.items() if v is not None})
    report = None
    with work_dir("dakd-evaluate-") as tmp:
        if scene is not None:
            from dakd_edge.cli.segment import _run_scene, scene_shape, unwrap_scene
            from dakd_edge.inference import load
            from dakd_edge.scene_eval import check_truth_raster

            src = unwrap_scene(Path(scene))  # a folder around one .SAFE: that product, as segment reads it
            predictor = load(model_path, backend=backend, device=device, tile=tile, threads=threads)
            try:
                # a truth that cannot be scored is refused before the minutes of inference
                height, width = scene_shape(predictor, src)
                check_truth_raster(Path(truth), f"{Path(scene).name}'s class map", height, width)
                pred = str(Path(tmp) / "classes.tif")
                # segment's notes (land mask, ...) one line each when raised, and its progress bar
                report = _run_scene(
                    predictor, src, quiet, (height, width), out=pred, min_area=min_area, polygons=False
                )
            finally:
                predictor.close()
        assert pred is not None
        try:
            result = score_scene(pred, truth, truth_oil=oil, truth_ignore=ignore, min_area=min_area)
        except InputError as e:  # name the scene, not its class map in a folder about to vanish
            if scene is None:
                raise
            text = str(e).replace(str(pred), f"{scene} (its class map)")
            raise InputError(text.replace(Path(pred).name, f"{Path(scene).name}'s class map")) from None
    if scene is not None:
        result["pred"] = None
        result["scene"] = scene
        result["model_file"] = model_path or "bundled"
        result["segment"] = {k: report[k] for k in ("tiles", "timing") if report and k in report}
    Console(stderr=json_out == STDOUT).print(render_scene(result))
    if json_out == STDOUT:
        click.echo(jsonout.dumps(result, indent=2))
    elif to_file:
        with atomic_path(json_out, overwrite) as tmp_json:
            Path(tmp_json).write_text(jsonout.dumps(result, indent=2))


def _values(opt: str, text: str | None, example: str) -> list[int] | None:
    """A comma list of truth pixel values 0-255 (None when the option is not given)."""
    from dakd_edge.errors import InputError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= v <= 255 for v in values):
        raise InputError(f"{opt} {text!r}: expected pixel values 0-255, e.g. {example}")
    return values
