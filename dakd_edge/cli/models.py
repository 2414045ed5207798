"""``dakd-edge models``: list the registered architectures with their size and export support."""

from __future__ import annotations

import json
from typing import Any

import click

from dakd_edge.errors import DakdError
from dakd_edge.extras import require_extra


def describe(name: str, num_classes: int = 2, in_chans: int = 1) -> dict[str, Any]:
    """Registry entry as data: name, parameter count, export support, description, config."""
    from dataclasses import asdict, is_dataclass

    import torch

    from dakd_edge.registry import create_model

    try:  # meta device: no memory, no init cost (the 100M-parameter variants build instantly)
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    except (RuntimeError, NotImplementedError):  # third-party init code that reads values (SMP MiT)
        model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    cfg = model.config
    if hasattr(cfg, "encoder"):
        summary = f"SAROSS-Net: {cfg.encoder} encoder, UNet++ decoder, skip={cfg.skip}"
        if cfg.decoder_block != "double" or cfg.head_stride != 1:
            summary += f", {cfg.decoder_block} nodes, head at stride {cfg.head_stride}"
    elif hasattr(cfg, "arch") and hasattr(cfg, "encoder_name"):
        summary = f"SMP {cfg.arch}: {cfg.encoder_name} encoder"
    else:  # a model a user registered: its class and the first line of its docstring
        doc = (type(model).__doc__ or "").strip().splitlines()
        summary = type(model).__name__ + (f": {doc[0]}" if doc else "")
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters()),
        "exportable": bool(type(model).exportable),
        "export_shapes": getattr(model, "export_shapes", None),  # fixed shapes only (pspnet)
        "description": summary,
        "config": json.loads(json.dumps(asdict(cfg) if is_dataclass(cfg) else {}, default=str)),
    }


@click.command("models")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON list).")
@click.option(
    "--num-classes",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Classes used to count params.",
)
def models(pattern: str | None, as_json: bool, num_classes: int) -> None:
    """List registered model architectures (PATTERN: glob such as 'saross-*')."""
    require_extra("torch", "models")  # the registry builds the models to count their parameters
    from dakd_edge.registry import list_models

    names = list_models(pattern)
    if not names and as_json and pattern is not None and pattern.lower().endswith(".json"):
        raise click.UsageError(
            f"--json is a flag here (the list goes to stdout): dakd-edge models --json > {pattern}"
        )
    if not names:
        raise DakdError(f"no model matches {pattern!r}; available: {', '.join(list_models())}")
    rows = [describe(n, num_classes=num_classes) for n in names]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dakd-edge models ({num_classes} classes, 1 input channel)")
    table.add_column("name", style="bold", no_wrap=True, min_width=13)  # a name to copy, never cut
    table.add_column("params", justify="right", no_wrap=True, min_width=7)
    table.add_column("export", justify="center")
    table.add_column("description")
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['params'] / 1e6:.2f}M",
            ("fixed shape" if r["export_shapes"] else "yes") if r["exportable"] else "no",
            r["description"],
        )
    Console().print(table)
