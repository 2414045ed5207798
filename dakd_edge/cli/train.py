"""`dakd-edge train` (DAKD student training) and `dakd-edge evaluate` (the paper's metric table)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from dakd_edge.errors import InputError
from dakd_edge.extras import require_extra


def _model_cfg(items: tuple[str, ...]) -> dict:
    """``--model-cfg key=value`` pairs; values parsed as JSON when possible (numbers, lists, ...)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--model-cfg expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _weights(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError as e:
        raise InputError(f"bad --class-weights {text!r}: {e}") from e


@click.command("train")
@click.option(
    "--data", required=True, type=click.Path(), help="Original dataset root (OSD, SOS or a folder)."
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--model", default="saross-edge", show_default=True, help="Registry name (`dakd-edge models`).")
@click.option(
    "--model-cfg", multiple=True, help="Architecture override key=value (repeatable), e.g. skip=conv."
)
@click.option(
    "--kind", default="auto", show_default=True, type=click.Choice(["auto", "osd", "sos", "folder"])
)
@click.option("--sensor", type=click.Choice(["palsar", "sentinel"]), help="SOS sensor (default: both).")
@click.option(
    "--classes", default="native", show_default=True, type=click.Choice(["native", "binary"]),
    help="binary: oil vs everything else.",
)  # fmt: skip
@click.option("--aug", type=click.Path(), help="Augmented set from `dakd-edge jointnet generate` (DAKD).")
@click.option(
    "--labels", default="soft", show_default=True, type=click.Choice(["soft", "hard"]),
    help="Generated images: soft = CE on teacher argmax + KD (DAKD); hard = CE on argmax only.",
)  # fmt: skip
@click.option(
    "--mix", default=0.5, show_default=True, help="Share of batch slots filled by generated mosaics."
)
@click.option(
    "--synthetic", default=0, show_default=True, help="Number of synthetic patches to pre-generate."
)
@click.option(
    "--synthetic-ratio", default=0.0, show_default=True, help="Share of slots for synthetic patches."
)
@click.option("--crop", default=256, show_default=True, help="Training crop size.")
@click.option("--batch", default=8, show_default=True, help="Batch size per process.")
@click.option("--steps", default=2000, show_default=True, help="Optimiser steps.")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--weight-decay", default=0.05, show_default=True)
@click.option("--warmup", default=100, show_default=True, help="Linear warm-up steps (then cosine).")
@click.option("--ema", "ema_decay", default=0.999, show_default=True, help="EMA decay (0 = off).")
@click.option("--ce-weight", default=1.0, show_default=True, help="l1 (cross-entropy).")
@click.option("--kd-weight", default=1.0, show_default=True, help="l2 (distillation, generated images only).")
@click.option("--dice-weight", default=1.0, show_default=True, help="l3 (soft Dice).")
@click.option("--temperature", default=2.0, show_default=True, help="KD temperature T.")
@click.option("--class-weights", help="Comma list of CE class weights, e.g. 1,3.")
@click.option(
    "--val-fraction", default=0.1, show_default=True, help="Training images held out for validation."
)
@click.option("--val-every", default=200, show_default=True)
@click.option("--ckpt-every", default=200, show_default=True)
@click.option("--log-every", default=10, show_default=True, help="Steps between metrics.jsonl records.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue from a last.pt checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(**o: object) -> None:
    """Train a segmentation model; DAKD when --aug is given.

    Writes OUT/model.safetensors (best EMA weights on the validation split carved from the training
    data), OUT/last.pt (resumable), OUT/metrics.jsonl and OUT/config.json. Multi-GPU / multi-process:
    `torchrun --nproc-per-node N -m dakd_edge train ...`.
    """
    require_extra("torch", "train")
    from dakd_edge.train.saross import TrainConfig
    from dakd_edge.train.saross import train as run

    try:
        cfg = TrainConfig(
            model=o["model"], model_cfg=_model_cfg(o["model_cfg"]), data=o["data"], kind=o["kind"],
            sensor=o["sensor"], classes=o["classes"], aug=o["aug"], labels=o["labels"],
            mix=o["mix"] if o["aug"] else 0.0,
            synthetic=o["synthetic"], synthetic_ratio=o["synthetic_ratio"], crop=o["crop"], batch=o["batch"],
            steps=o["steps"], lr=o["lr"], weight_decay=o["weight_decay"], warmup=o["warmup"],
            ema_decay=o["ema_decay"], ce_weight=o["ce_weight"], kd_weight=o["kd_weight"],
            dice_weight=o["dice_weight"], temperature=o["temperature"],
            class_weights=_weights(o["class_weights"]), val_fraction=o["val_fraction"],
            val_every=o["val_every"], ckpt_every=o["ckpt_every"], log_every=o["log_every"], seed=o["seed"], device=o["device"],
            amp=not o["no_amp"], workers=o["workers"],
        )  # fmt: skip
    except ValueError as e:
        raise InputError(str(e)) from e
    summary = run(cfg, o["out_dir"], resume=o["resume"], progress=not o["quiet"])
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        msg = f"model: {summary['model']}  steps {summary['steps']}  {summary['seconds']:.0f} s"
        if best["step"] >= 0:
            msg += f"  best val mIoU {100 * best['miou']:.2f}% at step {best['step']}"
        click.echo(msg)


@click.command("evaluate")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Model file (default: bundled).")
@click.option("--data", required=True, type=click.Path(), help="Dataset root (OSD, SOS or a folder).")
@click.option("--split", default="test", show_default=True)
@click.option(
    "--kind", default="auto", show_default=True, type=click.Choice(["auto", "osd", "sos", "folder"])
)
@click.option("--sensor", type=click.Choice(["palsar", "sentinel"]), help="SOS sensor (default: both).")
@click.option(
    "--backend", default="auto", show_default=True,
    type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]),
)  # fmt: skip
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--tile", type=int, help="Sliding-window tile (default: the model's).")
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Write the metrics JSON ('-' = stdout)."
)
@click.option("--save-png", type=click.Path(file_okay=False), help="Write coloured prediction PNGs here.")
@click.option("--limit", type=int, help="Evaluate only the first N images.")
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
) -> None:
    """Per-class IoU, mIoU, F1, precision, recall and pixel accuracy over a dataset split."""
    from rich.console import Console

    from dakd_edge.atomic import check_output
    from dakd_edge.evaluate import evaluate as run
    from dakd_edge.evaluate import render_table
    from dakd_edge.inference import load

    if json_out and json_out != "-":
        check_output(json_out, overwrite=True)
    predictor = load(model_path, backend=backend, device=device, tile=tile)
    try:
        result = run(
            predictor, data, split=split, kind=kind, sensor=sensor, save_png=save_png, limit=limit,
            progress=sys.stderr.isatty(),
        )  # fmt: skip
    finally:
        predictor.close()
    result["model_file"] = model_path or "bundled"
    console = Console(stderr=json_out == "-")
    console.print(render_table(result))
    if json_out == "-":
        click.echo(json.dumps(result, indent=2))
    elif json_out:
        from dakd_edge.atomic import atomic_path

        with atomic_path(json_out, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=2))
