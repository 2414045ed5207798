"""Recipe of the bundled default model: ``python -m dakd_edge.train.recipes.bundled``.

SAROSS-Net edge (MambaVision-nano encoder, light UNet++ decoder with CAFT skips, ~2.6 M parameters,
~11 MB in float32), oil vs background, in three stages. The bundled model, version 2.2, is stage 3
(:data:`REGRAIN`, in ``RUN/regrain``): stage 2's model, 1500 more steps with 30 % of the crops
re-rendered with a coarser, stronger speckle and a steeper stretch (``docs/bundled-v22.json``).
Stage 2 (:data:`FINE_TUNE`, in ``RUN/tile256``; ``--no-regrain`` stops there, version 2.1) is stage
1's model fine-tuned 1500 steps on 256 px crops, the inference tile, 80 % of the real ones mosaics,
its checkpoint picked on 256 px cuts of the validation mosaics (``docs/bundled-v2.md``).
``--no-fine-tune`` stops after stage 1, which gave version 2.

Stage 1 (:data:`RECIPE`, version 2) fine-tunes version 1
(:data:`RECIPE_V1`, the model bundled up to commit 88e9d3e) on all the real SOS training pairs now in
``../shared/data/sos/train`` (1000 ALOS-PALSAR + 1000 Sentinel-1A; 10 % held out for validation,
seeded) plus synthetic patches from :mod:`dakd_edge.data.synthetic` (20 % of the batch slots: open
sea, look-alikes and low-wind areas labelled background). For whole scenes:

- half the real slots are YOLOv4-style mosaics of several *real* patches (a random crop of a grid of
  them, so one crop holds unrelated sea states with borders anywhere, as a tile of a scene does);
- the last :data:`RECIPE` ``final_steps`` steps use 512-pixel crops (the inference tile when the run
  was made; :data:`INFERENCE_TILING`, chosen after it, is 256 px, which those crops contain), which are
  always mosaics of nine real patches (or one synthetic scene);
- the checkpoint is picked on the validation pairs by the mean of the per-patch mIoU and the mIoU on
  3 x 3 mosaics of validation pairs cut to one 512 tile.

AdamW, warm-up + cosine, EMA; soft Dice + CE. Seeded and deterministic on the CPU with one thread;
``--threads`` may change the last bits. The start weights are version 1's, read from git history
(``git show 88e9d3e:dakd_edge/weights/saross-edge-sos.safetensors``, checked by SHA-256) into
``RUN/init-v1.safetensors``, or from ``--init``.

Version 1 (:data:`RECIPE_V1`, for the record): 3600 steps of 8 random 128-pixel crops from scratch on
the 400 pairs the folder held then (360 train / 40 validation), 40 minutes on one CPU thread; its
schedule won on validation mIoU among four runs (1800 or 3600 steps at 128 px, 900 or 1800 at 192
px: 77.6, 78.8, 75.5, 77.4).

Wall time on one CPU thread: about 100 minutes for stage 1, 23 each for stages 2 and 3. ``--resume``
continues any stage. A finished run can be installed without retraining: ``--run RUN --from-run``
(stage 3 in ``RUN/regrain``; with ``--no-regrain`` stage 2 in ``RUN/tile256``; with
``--no-fine-tune``, stage 1 in ``RUN``); ``--retile`` only
writes :data:`INFERENCE_TILING` into the installed weights and re-exports them. After training the
weights go to ``dakd_edge/weights/`` (:data:`dakd_edge.weights.BUNDLED`) and the model is evaluated,
for the record only, on the SOS *test* subset per sensor (never used for any choice). The numbers land
in ``dakd_edge/weights/`` :data:`dakd_edge.weights.BUNDLED_METRICS`. Last, the weights are exported
to the matching ONNX file beside them (``saross-edge-sos.onnx``: what ``segment`` runs by default;
``tests/test_weights.py`` keeps the two equal).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dakd_edge.train.saross import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]

RECIPE_V1 = TrainConfig(
    model="saross-edge", kind="sos", classes="binary", tile=512,
    synthetic=240, synthetic_ratio=0.15,
    crop=128, batch=8, steps=3600, lr=2e-3, weight_decay=0.05, warmup=50, ema_decay=0.995,
    ce_weight=1.0, dice_weight=1.0,
    val_fraction=0.1, val_every=100, ckpt_every=50, log_every=10, seed=20241122,
)  # fmt: skip

# Version 1's weights, the start of version 2: where git keeps them and their SHA-256.
INIT_COMMIT = "88e9d3e"
INIT_PATH = "dakd_edge/weights/saross-edge-sos.safetensors"
INIT_SHA256 = "a6650373ccaca6351be8b10632a01f75828d6d335aee67613ef85b75a429d432"
INIT_NAME = "init-v1.safetensors"

RECIPE = replace(
    RECIPE_V1,
    synthetic=120, synthetic_ratio=0.2,
    crop=256, batch=4, steps=2600, lr=1e-3, warmup=100,
    real_mosaic=0.5, final_steps=700, final_crop=512, final_batch=2,
    val_mosaic=3, val_every=200, ckpt_every=25, seed=20261202,
    init=INIT_NAME,
)  # fmt: skip

# Stage 2 (version 2.1): stage 1's model at the 256 px inference tile. Its ``init`` is stage 1's model,
# set when the stage starts; the run lies in RUN/FINE_TUNE_DIR.
FINE_TUNE = replace(
    RECIPE,
    crop=256, batch=4, steps=1500, lr=5e-4, warmup=50, real_mosaic=0.8,
    final_steps=0, final_crop=0, final_batch=0, tile=256, val_every=250, ckpt_every=25,
    init="model.safetensors",
)  # fmt: skip
FINE_TUNE_DIR = "tile256"

# Stage 3 (version 2.2): stage 2's model, 1500 more steps with 30 % of the crops re-rendered with a
# coarser, stronger speckle and a steeper stretch (TrainConfig.regrain): a model that took isolated
# dark speckle grains for oil called clean sea oil in scenes rendered that way. Run in RUN/REGRAIN_DIR.
REGRAIN = replace(FINE_TUNE, regrain=0.3)
REGRAIN_DIR = "regrain"

# The tiling the installed model asks `segment` for (ModelMeta.tile / .overlap), chosen after training
# with benchmarks/mosaic.py (test mosaics, held-out validation mosaics) and benchmarks/scene.py (CPU time
# against version 1): 256/16 loses least against per-patch prediction of all the measured settings
# and, with 20 % fewer pixels than 256/32, runs the 4096^2 scene faster than version 1 at 512/64
# (docs/bundled-v2.md). Not part of the run: it changes no weight (``--retile`` rewrites it in place).
INFERENCE_TILING = (256, 16)

# Not part of what a run means: where the data and the start weights lie on this machine.
LOCAL_KEYS = ("data", "init")


def install(model_file: Path, target: Path) -> None:
    """Copy the run's weights to ``target`` with :data:`INFERENCE_TILING` in their metadata."""
    from dakd_edge.models.checkpoint import load_model_file, save_model

    model, meta = load_model_file(model_file)
    tile, overlap = INFERENCE_TILING
    save_model(target, model, replace(meta, tile=tile, overlap=overlap))


def retile(target: Path) -> None:
    """Give the installed weights :data:`INFERENCE_TILING` in place: same tensors, new metadata."""
    if not target.is_file():
        raise SystemExit(f"--retile: {target} is not installed")
    install(target, target)


def default_data() -> Path:
    env = os.environ.get("DAKD_SHARED_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "sos"


def fetch_init(dest: Path) -> Path:
    """Version 1's weights (the start of version 2) from git history, checked by SHA-256."""
    import hashlib
    import subprocess

    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{INIT_COMMIT}:{INIT_PATH}"], capture_output=True, check=False
        )
        if blob.returncode:
            raise SystemExit(
                f"cannot read {INIT_PATH} at {INIT_COMMIT} from git ({blob.stderr.decode().strip()}); "
                "pass --init with version 1's weights"
            )
        dest.write_bytes(blob.stdout)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    if digest != INIT_SHA256:
        raise SystemExit(f"{dest}: SHA-256 {digest} is not version 1's ({INIT_SHA256})")
    return dest


def evaluate_test(model_path: Path, data: Path) -> dict[str, Any]:
    """Per-sensor metrics on the SOS test subset (reported, never used for choices)."""
    from dakd_edge.evaluate import evaluate
    from dakd_edge.inference import load

    out: dict[str, Any] = {}
    predictor = load(str(model_path), backend="torch")
    for sensor in ("palsar", "sentinel"):
        r = evaluate(predictor, data, split="test", kind="sos", sensor=sensor)
        out[sensor] = {
            "miou": r["miou"],
            "oil_iou": r["iou"][1],
            "background_iou": r["iou"][0],
            "mf1": r["mf1"],
            "mprecision": r["mprecision"],
            "mrecall": r["mrecall"],
            "pixel_accuracy": r["pixel_accuracy"],
            "images": r["images"],
            "mpix_per_s_torch": r["mpix_per_s"],
        }
    predictor.close()
    return out


def export_bundled_onnx(model_file: Path, onnx_path: Path) -> None:
    """The parity-checked ONNX export of ``model_file``, metadata included, at ``onnx_path``."""
    from dakd_edge.export.onnx import export_onnx
    from dakd_edge.models.checkpoint import load_model_file

    model, meta = load_model_file(model_file)
    export_onnx(model, meta, onnx_path, overwrite=True, bundled_ok=True)
    print(f"exported {onnx_path}")


def _check_recipe(run: Path, cfg: TrainConfig) -> None:
    """Refuse a run whose ``config.json`` is another configuration than ``cfg`` (local paths aside)."""
    got = type(cfg).completed(json.loads((run / "config.json").read_text()))
    want = json.loads(json.dumps(cfg.to_dict()))
    diff = sorted(k for k in set(got) | set(want) if k not in LOCAL_KEYS and got.get(k) != want.get(k))
    if diff:
        raise SystemExit(f"--from-run: {run} was trained with another configuration (differs in {diff})")


def finished_run(run: Path, cfg: TrainConfig) -> dict[str, Any]:
    """The summary of a finished run of ``cfg`` in ``run``; refuses a run of another configuration."""
    files = [run / "config.json", run / "summary.json"]
    if not all(f.is_file() for f in files):
        raise SystemExit(f"--from-run: {run} has no finished run (config.json and summary.json needed)")
    _check_recipe(run, cfg)
    summary = json.loads(files[1].read_text())
    summary["model"] = str(run / Path(summary["model"]).name)
    return summary


def stopped_run(run: Path, cfg: TrainConfig, data: Path) -> dict[str, Any]:
    """A summary for the best checkpoint of a run of ``cfg`` stopped before its last step.

    For a session that ran out of time: ``best.safetensors`` was picked on validation like a finished
    run's model, but the schedule stopped early; ``steps`` says how far it got, ``scheduled_steps``
    how far it was meant to go, and ``wall_seconds`` is the time from the run's start to its last
    checkpoint (restarts included).
    """
    from dakd_edge.data import open_dataset
    from dakd_edge.train import common
    from dakd_edge.train.saross import CHECKPOINT_KIND, split_indices

    needed = [run / "config.json", run / "last.pt", run / "best.safetensors"]
    if not all(f.is_file() for f in needed):
        raise SystemExit(f"--best-so-far: {run} needs config.json, last.pt and best.safetensors")
    _check_recipe(run, cfg)
    ck = common.load_checkpoint(needed[1], kind=CHECKPOINT_KIND)
    n = len(open_dataset(data, split="train", kind=cfg.kind, classes=cfg.classes))
    train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    return {
        "steps": int(ck["step"]),
        "scheduled_steps": cfg.steps,
        "stopped": True,
        "best": ck["extra"]["best"],
        "model": str(needed[2]),
        "num_train": len(train_idx),
        "num_val": len(val_idx),
        "wall_seconds": needed[1].stat().st_mtime - needed[0].stat().st_mtime,
    }


def _train(
    cfg: TrainConfig, run: Path, resume: bool, overwrite: bool = False, **extra: Any
) -> dict[str, Any]:
    """Train (or with ``resume`` continue) one stage into ``run``; its ``summary.json`` gets ``extra``.
    ``overwrite``: replace a run already there (refused otherwise)."""
    last = run / "last.pt"
    resume_from = last if resume and last.is_file() else None
    t0 = time.time()
    summary = train(cfg, run, resume=resume_from, progress=True, overwrite=overwrite and resume_from is None)
    summary.update(wall_seconds=time.time() - t0, **extra)
    (run / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _stage1_record(summary: dict[str, Any]) -> dict[str, Any]:
    """What stage 2's summary keeps of stage 1's."""
    return {k: summary[k] for k in ("steps", "scheduled_steps", "best", "wall_seconds") if k in summary}


def _stage1(args: argparse.Namespace) -> dict[str, Any]:
    """Stage 1 (:data:`RECIPE`, version 2): trained, or read from a finished or stopped run."""
    cfg = replace(RECIPE, data=str(args.data), steps=args.steps)
    if args.from_run:
        return stopped_run(args.run, cfg, args.data) if args.best_so_far else finished_run(args.run, cfg)
    init = args.init if args.init is not None else fetch_init(args.run / INIT_NAME)
    return _train(replace(cfg, init=str(init)), args.run, args.resume, args.overwrite)


def run_stages(args: argparse.Namespace) -> dict[str, Any]:
    """The summary of the model to install: stage 3's (``RUN/regrain``), or with ``--no-regrain``
    stage 2's (``RUN/tile256``), or with ``--no-fine-tune`` stage 1's; each trained (resumable) or, with
    ``--from-run``, read from a finished or stopped run. Later stages' summaries carry stage 1's steps,
    best validation and wall time as ``stage1``."""
    last = 1 if args.no_fine_tune else 2 if args.no_regrain else 3
    later = {
        2: (args.run / FINE_TUNE_DIR, replace(FINE_TUNE, data=str(args.data), steps=args.fine_tune_steps)),
        3: (args.run / REGRAIN_DIR, replace(REGRAIN, data=str(args.data), steps=args.regrain_steps)),
    }
    if args.from_run and last > 1:
        run, cfg = later[last]
        summary = stopped_run(run, cfg, args.data) if args.best_so_far else finished_run(run, cfg)
        stage1 = args.run / "summary.json"
        if "stage1" not in summary and stage1.is_file():
            summary["stage1"] = _stage1_record(json.loads(stage1.read_text()))
        return summary
    summary = _stage1(args)
    first = _stage1_record(summary)
    for k in range(2, last + 1):
        run, cfg = later[k]
        summary = _train(replace(cfg, init=summary["model"]), run, args.resume, args.overwrite, stage1=first)
    return summary


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data(), help="SOS root (train/ and test/)")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "bundled", help="run directory")
    ap.add_argument("--steps", type=int, default=RECIPE.steps, help="stage 1's steps")
    ap.add_argument("--fine-tune-steps", type=int, default=FINE_TUNE.steps, help="stage 2's steps")
    ap.add_argument("--regrain-steps", type=int, default=REGRAIN.steps, help="stage 3's steps")
    ap.add_argument(
        "--no-fine-tune", action="store_true",
        help="stop after stage 1 (version 2) and install its model instead of stage 3's",
    )  # fmt: skip
    ap.add_argument(
        "--no-regrain", action="store_true",
        help="stop after stage 2 (version 2.1) and install its model instead of stage 3's",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped weights: 1)")
    ap.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    ap.add_argument("--overwrite", action="store_true", help="replace a run already in RUN")
    ap.add_argument(
        "--init", type=Path, default=None,
        help=f"start weights (default: version 1's, from git {INIT_COMMIT}, into RUN/{INIT_NAME})",
    )  # fmt: skip
    ap.add_argument(
        "--from-run", action="store_true",
        help="do not train: install / evaluate / export the finished model of RUN/regrain (stage 3; "
        "with --no-regrain of RUN/tile256, stage 2; with --no-fine-tune of RUN, stage 1); its "
        "config.json must be the recipe's, paths aside",
    )  # fmt: skip
    ap.add_argument(
        "--best-so-far", action="store_true",
        help="with --from-run: take the best checkpoint of a stage stopped before its last step "
        "(metrics.json records the steps run and scheduled)",
    )  # fmt: skip
    ap.add_argument(
        "--retile", action="store_true",
        help="do not train: write INFERENCE_TILING into the installed weights (tensors unchanged) and "
        "re-export their ONNX",
    )  # fmt: skip
    ap.add_argument("--no-install", action="store_true", help="do not copy into dakd_edge/weights/")
    ap.add_argument("--no-eval", action="store_true", help="skip the test-subset evaluation")
    ap.add_argument(
        "--no-onnx", action="store_true",
        help="skip the matching ONNX export beside the weights (parity-checked; what `segment` runs by "
        "default on CPUs); an installed stale one is removed, since bundled_path() prefers it",
    )  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import torch

    import dakd_edge.weights as weights

    torch.set_num_threads(args.threads)
    target = Path(weights.__file__).parent / weights.BUNDLED
    if args.retile:
        retile(target)
        print(f"{target}: tiling {INFERENCE_TILING[0]}/{INFERENCE_TILING[1]}")
        if not args.no_onnx:
            export_bundled_onnx(target, target.with_suffix(".onnx"))
        return
    summary = run_stages(args)
    model_file = Path(summary["model"])
    if not args.no_install:
        install(model_file, target)
        print(f"installed {target} ({target.stat().st_size / 1e6:.1f} MB)")
        model_file = target  # the ONNX export below carries the installed metadata too
    if not args.no_eval:
        metrics = {
            "model": weights.BUNDLED,
            "recipe": "dakd_edge.train.recipes.bundled",
            "train": {
                k: summary[k]
                for k in (
                    "steps",
                    "scheduled_steps",
                    "best",
                    "num_train",
                    "num_val",
                    "wall_seconds",
                    "stage1",
                )
                if k in summary
            },
            "test": evaluate_test(model_file, args.data),
        }
        dest = (
            target.parent / weights.BUNDLED_METRICS if not args.no_install else args.run / "test_metrics.json"
        )
        dest.write_text(json.dumps(metrics, indent=2, default=str))
        for sensor, m in metrics["test"].items():
            print(f"{sensor:9s} mIoU {100 * m['miou']:.2f}  oil IoU {100 * m['oil_iou']:.2f}")
    onnx_path = (target if not args.no_install else args.run / model_file.name).with_suffix(".onnx")
    if not args.no_onnx:
        export_bundled_onnx(model_file, onnx_path)
    elif not args.no_install:
        onnx_path.unlink(missing_ok=True)  # never ship an ONNX file of other weights


if __name__ == "__main__":
    main()
