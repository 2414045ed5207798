"""`dakd-edge evaluate`: the paper's metric table for a model over a dataset split.

Options are checked as ``segment`` checks its own (tile >= 32, a device name, outputs refused when
they exist unless ``--overwrite``) before the model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dakd_edge.cli import jsonout
from dakd_edge.formats import BACKEND_CHOICES
from dakd_edge.inference.predictor import MIN_TILE


@click.command("evaluate")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Model file (default: bundled).")
@click.option("--data", required=True, type=click.Path(), help="Dataset root (OSD, SOS or a folder).")
@click.option("--split", default="test", show_default=True)
@click.option(
    "--kind", default="auto", show_default=True, type=click.Choice(["auto", "osd", "sos", "folder"])
)
@click.option("--sensor", type=click.Choice(["palsar", "sentinel"]), help="SOS sensor (default: both).")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKEND_CHOICES))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--tile", type=click.IntRange(MIN_TILE), help="Sliding-window tile (default: the model's).")
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Write the metrics JSON ('-' = stdout)."
)
@click.option("--save-png", type=click.Path(file_okay=False), help="Write coloured prediction PNGs here.")
@click.option("--limit", type=click.IntRange(1), help="Evaluate only the first N images.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def evaluate(
    model_path: str | None,
    data: str,
    split: str,
    kind: str,
    sensor: str | None,
    backend: str,
    device: str,
    tile: int | None,
    json_out: str | None,
    save_png: str | None,
    limit: int | None,
    overwrite: bool,
) -> None:
    """Per-class IoU, mIoU, F1, precision, recall and pixel accuracy over a dataset split."""
    from rich.console import Console

    from dakd_edge.atomic import atomic_path, check_distinct, check_output
    from dakd_edge.evaluate import evaluate as run
    from dakd_edge.evaluate import png_folder, render_table
    from dakd_edge.inference import load

    to_file = json_out is not None and json_out != "-"
    if to_file:
        check_output(json_out, overwrite)
        if model_path:
            check_distinct({"--json": Path(json_out)}, {"model": Path(model_path)})
    png_folder(save_png)  # before the model loads: a folder that cannot take the PNGs fails first
    predictor = load(model_path, backend=backend, device=device, tile=tile)
    try:
        result = run(
            predictor, data, split=split, kind=kind, sensor=sensor, save_png=save_png, limit=limit,
            progress=sys.stderr.isatty(),
        )  # fmt: skip
    finally:
        predictor.close()
    result["model_file"] = model_path or "bundled"
    Console(stderr=json_out == "-").print(render_table(result))
    if json_out == "-":
        click.echo(jsonout.dumps(result, indent=2))  # undefined metrics (NaN) are null
    elif to_file:
        with atomic_path(json_out, overwrite) as tmp:
            Path(tmp).write_text(jsonout.dumps(result, indent=2))
