"""`dakd-edge train`: DAKD student training (``evaluate`` lives in :mod:`dakd_edge.cli.evaluate`)."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any

import click

from dakd_edge.cli.choices import SENSORS, both_is_none, keywords
from dakd_edge.cli.fields import config_from, field_default, field_option, flags_of, given
from dakd_edge.cli.streams import stderr_is_terminal
from dakd_edge.errors import InputError
from dakd_edge.extras import require_extra
from dakd_edge.train.config import TrainConfig


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


def option_error(e: ValueError) -> InputError:
    """A config's ValueError as the user's error, naming the option (``ema_decay ...`` -> ``--ema ...``)."""
    msg = str(e)
    for p in click.get_current_context().command.params:
        if p.name and p.opts and msg.startswith(p.name + " "):
            return InputError(p.opts[0] + msg[len(p.name) :])
    return InputError(msg)


def _no_effect(o: dict[str, Any]) -> list[str]:
    """Options the user set that this run ignores (said once, so a silent no-op is not mistaken for a
    result)."""
    ctx = click.get_current_context()
    out = []
    if not o["aug"]:
        unused = flags_of(ctx, [n for n in ("mix", "labels", "kd_weight") if given(ctx, n)])
        if unused:
            out.append(f"{', '.join(unused)} act on generated images only and have no effect without --aug")
    if given(ctx, "synthetic_ratio") and not o["synthetic"]:
        out.append("--synthetic-ratio has no effect without --synthetic N")
    elif o["synthetic"] and not o["synthetic_ratio"]:
        out.append("--synthetic has no effect with --synthetic-ratio 0")
    return out


_opt = partial(field_option, TrainConfig)
# Shared with `jointnet` (dakd_edge.data.open_dataset; train.common.init_distributed).
KIND_HELP = "Layout of --data: an OSD or SOS release, or a folder of images/ + masks/; auto: detected."
CLASSES_HELP = "native: the data's own classes; binary: oil against everything else."
DEVICE_HELP = "auto: cuda when a GPU is usable, else cpu."


@click.command("train")
@click.option(
    "--data", required=True, type=click.Path(), help="Original dataset root (OSD, SOS or a folder)."
)
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory."
)
@_opt("model", help="Registry name (`dakd-edge models`); with --init, the file's architecture.")
@_opt(
    "init", type=click.Path(dir_okay=False),
    help="Start from a model's weights (fine-tuning): 'bundled' or a .safetensors file. Its architecture, "
    "input normalisation and inference tiling are kept; classes are matched by name.",
)  # fmt: skip
@click.option(
    "--model-cfg", multiple=True, help="Architecture override key=value (repeatable), e.g. skip=conv."
)
@_opt("kind", type=keywords(["auto", "osd", "sos", "folder"]), help=KIND_HELP)
@_opt("sensor", type=SENSORS, callback=both_is_none, help="SOS sensor [default: both].")
@_opt("classes", type=keywords(["native", "binary"]), help=CLASSES_HELP)
@_opt("aug", type=click.Path(), help="Augmented set from `dakd-edge jointnet generate` (DAKD).")
@_opt(
    "labels", type=keywords(["soft", "hard"]),
    help="Generated images: soft = CE on teacher argmax + KD (DAKD); hard = CE on argmax only.",
)  # fmt: skip
@_opt("mix", type=click.FloatRange(0.0, 1.0), help="Share of batch slots filled by generated mosaics.")
@_opt("synthetic", help="Number of synthetic patches to pre-generate.")
@_opt("synthetic_ratio", help="Share of slots for synthetic patches.")
@_opt("crop", help="Training crop size.")
@_opt("batch", help="Batch size per process.")
@_opt("steps", help="Optimiser steps.")
@_opt(
    "lr",
    help="Peak AdamW learning rate (after the warm-up; cosine decay to "
    f"{100 * field_default(TrainConfig, 'min_lr_ratio'):g}% of it).",
)
@_opt("weight_decay", help="AdamW weight decay (not on biases and norm weights).")
@_opt("warmup", help="Linear warm-up steps (then cosine).")
@_opt("ema_decay", "--ema", help="EMA decay (0 = off).")
@_opt("ce_weight", help="l1 (cross-entropy).")
@_opt("kd_weight", help="l2 (distillation, generated images only).")
@_opt("dice_weight", help="l3 (soft Dice).")
@_opt("temperature", help="KD temperature T.")
@click.option("--class-weights", help="Comma list of CE class weights, e.g. 1,3.")
@_opt("val_fraction", help="Training images held out for validation.")
@_opt("val_every", help="Steps between validations; the best one gives OUT/model.safetensors.")
@_opt("ckpt_every", help="Steps between OUT/last.pt checkpoints (and at the end).")
@_opt("log_every", help="Steps between metrics.jsonl records.")
@_opt("seed", help="Seed of the initial weights, the validation hold-out and every step's data.")
@_opt("device", type=keywords(["auto", "cpu", "cuda"]), help=DEVICE_HELP)
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@_opt("workers", help="DataLoader worker processes.")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue from a last.pt checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out (its files are removed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(**o: Any) -> None:
    """Train a segmentation model; DAKD when --aug is given.

    Writes OUT/model.safetensors (best EMA weights on the validation split carved from the training
    data), OUT/last.pt (resumable), OUT/metrics.jsonl and OUT/config.json. Multi-GPU / multi-process:
    `torchrun --nproc-per-node N -m dakd_edge train ...`.
    """
    require_extra("torch", "train")
    from dakd_edge.train.saross import train as run

    ctx = click.get_current_context()
    if o["init"] and not given(ctx, "model"):
        from dakd_edge.models.checkpoint import read_meta
        from dakd_edge.train.finetune import resolve_init

        o["model"] = read_meta(resolve_init(o["init"])).name  # the file's architecture
    try:
        cfg = config_from(
            TrainConfig, o, model_cfg=_model_cfg(o["model_cfg"]), class_weights=_weights(o["class_weights"]),
            mix=o["mix"] if o["aug"] else 0.0, amp=not o["no_amp"],
        )  # fmt: skip
    except ValueError as e:
        raise option_error(e) from e
    for line in _no_effect(o):
        click.echo(f"dakd-edge: warning: {line}", err=True)
    progress = not o["quiet"] and stderr_is_terminal()
    summary = run(cfg, o["out_dir"], resume=o["resume"], progress=progress, overwrite=o["overwrite"])
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        msg = f"model: {summary['model']}  steps {summary['steps']}  {summary['seconds']:.0f} s"
        if best["step"] >= 0:
            msg += f"  best val mIoU {100 * best['miou']:.2f}% at step {best['step']}"
        click.echo(msg)
