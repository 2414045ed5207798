"""`dakd-edge jointnet`: balancing factor, 3-stage training, DDIM generation and quality report.

A thin click layer over :mod:`dakd_edge.models.jointnet` and ``dakd_edge.train.{jointnet,generate,report}``;
torch is imported only inside the commands.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import click

from dakd_edge.cli.choices import SENSORS, both_is_none, keywords
from dakd_edge.cli.fields import config_from, field_option, flags_of, given
from dakd_edge.cli.streams import STDOUT, json_out_option, stderr_is_terminal
from dakd_edge.cli.train import CLASSES_HELP, DEVICE_HELP
from dakd_edge.errors import DatasetError, InputError
from dakd_edge.extras import require_extra
from dakd_edge.train.config import JointNetTrainConfig

_KINDS = keywords(["auto", "osd", "sos", "folder", "augmented"])
_CLASSES = keywords(["native", "binary"])
_JOINTNET_NEEDS = ("torch", "safetensors", "diffusers")  # the teacher is a diffusers UNet


def _kind_help(opt: str) -> str:
    return (
        f"Layout of {opt}: an OSD or SOS release, a folder of images/ + masks/, or a set written by "
        "`jointnet generate`; auto: detected."
    )


def _split_help(opt: str) -> str:
    return f"Split of {opt}: its train or test part (a plain images/ + masks/ folder is read whole)."


# --no-progress, with the -q/--quiet of the other commands
no_progress_option = click.option(
    "--no-progress", "--quiet", "-q", "no_progress", is_flag=True, help="No progress bar."
)


@click.group("jointnet")
def jointnet() -> None:
    """SAR-JointNet, the DAKD teacher: joint diffusion of SAR images and soft labels.

    \b
    Typical use:
      dakd-edge jointnet balance --data SOS/ --sensor palsar
      dakd-edge jointnet train --data SOS/ --sensor palsar --out runs/jn
      dakd-edge jointnet generate runs/jn/last.pt --n 4480 --out aug/
      dakd-edge jointnet report aug/ --real SOS/ --real-sensor palsar
    """


def _open(data: str, split: str, kind: str, sensor: str | None, classes: str) -> Any:
    from dakd_edge.data import open_dataset

    return open_dataset(data, split=split, kind=kind, sensor=sensor, classes=classes)


# ---------------------------------------------------------------------------------------------- balance
@jointnet.command("balance", short_help="Measure the balancing factor b of a training set (Eq. 4).")
@click.option("--data", type=click.Path(file_okay=False), help="Training set folder (OSD, SOS, folder).")
@click.option("--kind", default="auto", show_default=True, type=_KINDS, help=_kind_help("--data"))
@click.option(
    "--sensor", type=SENSORS, callback=both_is_none, help="SOS subset (one b per sensor) [default: both]."
)
@click.option("--classes", default="native", show_default=True, type=_CLASSES, help=CLASSES_HELP)
@click.option("--split", default="train", show_default=True, help=_split_help("--data"))
@click.option("--synthetic", type=int, default=0, help="Measure on N synthetic patches instead of --data.")
@click.option(
    "--size", type=click.IntRange(min=1), default=256, show_default=True, help="Synthetic patch size."
)
@click.option(
    "--num-classes",
    type=keywords(["2", "5"]),
    default="5",
    show_default=True,
    help="Synthetic label space (5 OSD classes or binary).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def balance(data, kind, sensor, classes, split, synthetic, size, num_classes, limit, as_json) -> None:
    """Measure the balancing factor b = sqrt(P(x) / P(y_n)) (Eq. 4) of a training set."""
    require_extra("torch", "jointnet balance", *_JOINTNET_NEEDS)
    from dakd_edge.models.jointnet import compute_balancing_factor

    if synthetic > 0:
        from dakd_edge.train.common import SyntheticPatches

        ds = SyntheticPatches(synthetic, size, int(num_classes))
        source = f"{synthetic} synthetic {size}px patches, {num_classes} classes"
    elif data:
        ds = _open(data, split, kind, sensor, classes)
        source = (
            f"{data} ({split}{', ' + sensor if sensor else ''}, {len(ds)} images, {ds.num_classes} classes)"
        )
    else:
        raise InputError("pass --data DIR or --synthetic N")
    try:
        stats = compute_balancing_factor(ds, limit=limit)
    except ValueError as e:
        raise DatasetError(str(e)) from e
    if as_json:
        click.echo(
            json.dumps(
                {
                    "b": stats.b,
                    "images": stats.count,
                    "P_x": stats.power_x / stats.count,
                    "P_y": stats.power_y / stats.count,
                    "source": source,
                }
            )
        )
    else:
        click.echo(f"{source}")
        click.echo(
            f"images {stats.count}  mean P(x) {stats.power_x / stats.count:.6g}  "
            f"mean P(y_n) {stats.power_y / stats.count:.6g}"
        )
        click.echo(f"b = {stats.b:.4f}")


# ------------------------------------------------------------------------------------------------ train
def _design_steps(o: dict[str, Any]) -> tuple[int, int, int]:
    """The paper's stage iterations for the training data's kind (OSD's differ from SOS's)."""
    from dakd_edge.data import detect_kind
    from dakd_edge.train.config import STAGE_STEPS

    kind = o["data_kind"]
    if kind == "auto" and o["data"] and o["synthetic"] <= 0:
        kind = detect_kind(o["data"])
    return STAGE_STEPS.get(kind, STAGE_STEPS["sos"])


def _steps(text: str) -> tuple[int, int, int]:
    try:
        v = tuple(int(s) for s in text.split(","))
    except ValueError as e:
        raise InputError(f"--stage-steps {text!r}: {e}") from e
    if len(v) != 3 or min(v) < 0:
        raise InputError(
            f"--stage-steps needs three non-negative counts like 50000,150000,50000, got {text!r}"
        )
    return v  # type: ignore[return-value]


_opt = partial(field_option, JointNetTrainConfig)
# What a resumed run may set anew (the rest comes from its checkpoint).
_OPERATIONAL = ("out", "workers", "device", "log_every", "ckpt_every", "sample_every", "sample_steps")


@jointnet.command("train", short_help="Train SAR-JointNet in three stages (torchrun: several GPUs).")
@_opt(
    "out",
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder (checkpoints, log).",
)
@_opt("data", type=click.Path(file_okay=False), help="Training set folder.")
@_opt("data_kind", "--kind", type=_KINDS, help=_kind_help("--data"))
@_opt("sensor", type=SENSORS, callback=both_is_none, help="SOS sensor [default: both].")
@_opt("classes", type=_CLASSES, help=CLASSES_HELP)
@_opt("synthetic", type=int, help="Train on N synthetic patches instead of --data.")
# The command line's synthetic label space is OSD's five classes (the library's default is binary).
@_opt(
    "synthetic_classes", type=keywords(["2", "5"]), default="5", show_default=True,
    help="Classes of the --synthetic patches: 5 (OSD's) or 2 (oil against the rest).",
)  # fmt: skip
@_opt(
    "preset", type=keywords(["tiny", "small", "base"]),
    help="Teacher size: base (DDPM-style UNet, ~26M parameters per branch), small, or tiny (tests).",
)  # fmt: skip
@_opt("crop", help="Random crop size (= generated size).")
@_opt("batch_size", help="Per process.")
@_opt(
    "stage_steps", default=None,
    help="Steps of stages 1,2,3 [default: the paper's for the data: 50000,250000,100000 for OSD, else "
    "50000,150000,50000].",
)  # fmt: skip
@_opt("lr", type=float, help="AdamW learning rate of stages 1 and 2.")
@_opt("lr_stage3", type=float, help="AdamW learning rate of stage 3.")
@_opt("warmup", help="Linear LR warm-up steps at each stage start.")
@_opt("ema_decay", type=float, help="Decay of the weights' EMA (what generate uses by default).")
@_opt("grad_clip", type=float, help="Clip the gradient norm to this (0: no clipping).")
@_opt("balancing_factor", "--b", type=float, help="Balancing factor [default: measured on the data].")
@_opt("seed", help="Seed of the initial weights, the training crops and the sample grids.")
@_opt("workers", help="DataLoader worker processes.")
@_opt("device", type=keywords(["auto", "cpu", "cuda"]), help=DEVICE_HELP)
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@_opt("log_every", help="Steps between OUT/log.jsonl records.")
@_opt("ckpt_every", help="Steps between OUT/last.pt checkpoints (and at the end).")
@_opt("sample_every", help="Sample grid PNG every N steps (0: off).")
@_opt("sample_steps", help="DDIM steps for the sample grids.")
@click.option(
    "--resume",
    type=click.Path(dir_okay=False),
    help="Continue from this checkpoint, bit for bit, with its settings (only --out, --workers, "
    "--device, --log-every, --ckpt-every, --sample-every and --sample-steps apply).",
)
@click.option(
    "--stop-after", type=click.IntRange(min=1), help="Stop (with a checkpoint) after this global step."
)
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out (its files are removed).")
@no_progress_option
def train(**o: Any) -> None:
    """Train SAR-JointNet in three stages (run under torchrun for several GPUs or nodes)."""
    require_extra("torch", "jointnet train", *_JOINTNET_NEEDS)
    from dakd_edge.cli.train import option_error
    from dakd_edge.train.jointnet import train_jointnet

    try:
        if o["resume"]:
            ctx = click.get_current_context()
            names = [p.name for p in ctx.command.params if p.name and p.name not in _NOT_SETTINGS]
            settings = [k for k in names if given(ctx, k)]  # in the order of --help
            refused = [k for k in settings if k not in _OPERATIONAL]
            if refused:
                flags = ", ".join(flags_of(ctx, refused))
                raise InputError(
                    f"{flags}: a resumed run keeps its checkpoint's settings (only --out, --workers, "
                    "--device, --log-every, --ckpt-every, --sample-every and --sample-steps apply); "
                    "other settings need a new run"
                )
            cfg = _config_from(o["resume"], {k: o[k] for k in _OPERATIONAL if k in settings})
        elif not o["data"] and o["synthetic"] <= 0:
            raise InputError("pass --data DIR or --synthetic N")
        else:
            cfg = config_from(
                JointNetTrainConfig, o, synthetic_classes=int(o["synthetic_classes"]),
                stage_steps=_steps(o["stage_steps"]) if o["stage_steps"] else _design_steps(o),
                amp=not o["no_amp"],
            )  # fmt: skip
    except ValueError as e:
        raise option_error(e) from e
    progress = not o["no_progress"] and stderr_is_terminal()
    last = train_jointnet(
        cfg, resume=o["resume"], stop_after=o["stop_after"], progress=progress, overwrite=o["overwrite"]
    )
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: report once
        click.echo(f"checkpoint: {last}  (b = {cfg.balancing_factor:.4f})")


# Options of `jointnet train` that are not run settings (how to start, stop, report). On --resume only
# the settings given count: it passed every operational default over the saved run (its --ckpt-every 3
# became 1000, --device cpu became auto) and silently dropped --lr and the other settings.
_NOT_SETTINGS = frozenset({"resume", "stop_after", "overwrite", "no_progress"})


def _config_from(resume: str, ops: dict[str, Any]) -> Any:
    """On resume the run's settings come from the checkpoint; only the operational options given apply."""
    from dakd_edge.train.common import load_checkpoint

    saved = load_checkpoint(resume, kind="jointnet")["config"]
    return JointNetTrainConfig.from_dict({**saved, **ops})


# --------------------------------------------------------------------------------------------- generate
@jointnet.command("generate", short_help="Generate the augmented set D^a with DDIM.")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--n", "n", default=4480, show_default=True, help="Number of (image, logits) pairs.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Augmented-set folder.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(1, 1000), help="DDIM steps.")
@click.option(
    "--batch",
    default=16,
    show_default=True,
    help="Samples per DDIM run; it changes the results, so --resume needs the same.",
)
@click.option("--seed", default=0, show_default=True, help="Sample i starts from noise seeded by (seed, i).")
@click.option("--size", type=click.IntRange(min=1), help="Generated size [default: the training crop].")
@click.option(
    "--weights",
    default="ema",
    show_default=True,
    type=keywords(["ema", "raw"]),
    help="The checkpoint's EMA weights, or its raw trained ones.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    type=keywords(["auto", "cpu", "cuda"]),
    help=DEVICE_HELP,
)
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    help="K/M: make every M-th batch starting at K (one process per GPU into one folder; joins a set "
    "of the same settings there without --resume).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue or extend the set in --out (stopped, killed, disk full): same checkpoint, --steps, "
    "--seed, --size, --batch, --weights, device and precision required; complete samples are kept.",
)
@click.option("--overwrite", is_flag=True, help="Replace the set in --out.")
@click.option("--no-amp", is_flag=True, help="Disable mixed precision on CUDA.")
@no_progress_option
def generate(checkpoint, n, out, shard, no_amp, no_progress, **opts) -> None:
    """Generate the augmented set D^a: samples 0..N-1, each seeded by (--seed, index).

    An --out holding a set is refused unless --resume or --overwrite. --resume makes only the missing
    samples, and the result equals a one-shot run of the same --n; a larger --n appends samples, a
    smaller one lists only the first N (the rest stay on disk for a later larger --n). Until all N are
    there the set is marked unfinished and `dakd-edge train --aug` refuses it. A run that writes no
    sample leaves --out as it was.
    """
    if not Path(checkpoint).exists():  # at once, not after torch's import (seconds)
        raise InputError(f"{checkpoint}: no such file")
    require_extra("torch", "jointnet generate", *_JOINTNET_NEEDS)
    from dakd_edge.train.generate import generate_augmented

    if opts["resume"] and opts["overwrite"]:
        raise click.UsageError("--resume and --overwrite exclude each other")
    try:
        k, m = (int(v) for v in shard.split("/"))
    except ValueError as e:
        raise InputError(f"--shard must look like 0/4, got {shard!r}") from e
    try:
        # opts: steps, batch, seed, size, weights, device, resume, overwrite (same names)
        progress = not no_progress and stderr_is_terminal()
        res = generate_augmented(checkpoint, out, n, amp=not no_amp, progress=progress, shard=(k, m), **opts)
    except ValueError as e:
        raise InputError(str(e)) from e
    state = "" if res["complete"] else f"; unfinished: {res['count']} of {n} (other shards to run)"
    click.echo(f"{res['written']} written, {res['skipped']} already present -> {res['manifest']}{state}")


# ----------------------------------------------------------------------------------------------- report
@jointnet.command("report", short_help="Compare a generated set with real data (+ FID).")
@click.argument("generated", type=click.Path(file_okay=False))
@click.option("--real", required=True, type=click.Path(file_okay=False), help="Real data folder.")
@click.option("--real-kind", default="auto", show_default=True, type=_KINDS, help=_kind_help("--real"))
@click.option(
    "--real-sensor", type=SENSORS, callback=both_is_none, help="SOS sensor of --real [default: both]."
)
@click.option("--real-split", default="train", show_default=True, help=_split_help("--real"))
@click.option("--real-classes", default="native", show_default=True, type=_CLASSES, help=CLASSES_HELP)
@click.option(
    "--inception",
    type=click.Path(dir_okay=False),
    help="Local torchvision Inception-v3 state dict; FID is computed only with it.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most N images per set.")
@json_out_option("Also write the report as JSON ('-' or alone: stdout, the text then goes to stderr).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def report(
    generated, real, real_kind, real_sensor, real_split, real_classes, inception, limit, json_out, overwrite
) -> None:
    """Compare a generated set with real data: speckle, agreement, class frequencies (+ FID)."""
    if inception:  # the rest of the report is numpy-only
        require_extra("torch", "jointnet report --inception", "torch", "torchvision")
    from dakd_edge.atomic import atomic_path, check_output
    from dakd_edge.data.augmented import AugmentedDataset
    from dakd_edge.train.report import format_report, quality_report

    to_file = json_out is not None and json_out != STDOUT
    if to_file:  # before any work; never into a folder the report reads (it replaced a set's manifest)
        target = check_output(json_out, overwrite).resolve()
        for name, folder in (("the generated set", generated), ("--real", real)):
            if target.is_relative_to(Path(folder).resolve()):
                raise InputError(f"--json {json_out} is inside {name} {folder}: write the report elsewhere")
    gen = AugmentedDataset(generated)
    ref = _open(real, real_split, real_kind, real_sensor, real_classes)
    try:
        rep = quality_report(gen, ref, inception=inception, limit=limit)
    except ValueError as e:
        raise InputError(str(e)) from e
    click.echo(format_report(rep), err=json_out == STDOUT)
    if json_out == STDOUT:
        click.echo(json.dumps(rep, indent=1))
    elif to_file:
        with atomic_path(json_out, overwrite) as tmp:
            tmp.write_text(json.dumps(rep, indent=1))
