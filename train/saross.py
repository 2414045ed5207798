"""DAKD training of SAROSS-Net (or any registered segmentation model): the student of the paper.

Data per step: each batch slot is, by a draw from the step's own RNG, either an original image (random
crop + flips/rot90, hard labels, no KD), a *mosaic of four* generated images with their teacher logits
(``--aug``; CE against the teacher's argmax, plus KD with ``--labels soft``), or a synthetic patch
(hard labels, used by the bundled-model recipe). Because step ``s`` draws from ``step_rng(seed, s,
rank)``, the data stream does not depend on restarts and a resumed run continues bit for bit on the CPU.

Optimisation: AdamW, linear warm-up then cosine decay, AMP on CUDA, an EMA of the weights (validated
and shipped), gradient clipping, NaN/inf guard, periodic atomic checkpoints (``last.pt``) and the best
model on validation mIoU. The validation split is carved from the *training* data (never the test set).
Under ``torchrun`` every rank draws its own slots, gradients are averaged by DDP and the validation
confusion matrix is summed over ranks.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dakd_edge.atomic import atomic_path
from dakd_edge.data import transforms
from dakd_edge.data.scaling import normalize
from dakd_edge.errors import DatasetError, InputError, Notice, TrainingError, user_stacklevel
from dakd_edge.meta import IGNORE_INDEX, ModelMeta, Normalization
from dakd_edge.train import common
from dakd_edge.train.config import TrainConfig
from dakd_edge.train.losses import DAKDLoss

CHECKPOINT_KIND = "saross"


# ------------------------------------------------------------------------------------------------ data
def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split of ``n`` training images (validation >= 1 when n >= 2; at
    least one image is always left to train on)."""
    if n == 0:
        raise DatasetError("the training set is empty")
    order = np.random.default_rng([int(seed), 7919]).permutation(n)
    n_val = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * val_fraction)))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class SlotBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``s`` is the whole batch of step ``s`` (for one rank): each slot an
    original crop, a generated mosaic or a synthetic patch, normalised for the network.

    Deterministic in ``(seed, s, rank)``, so it can run in DataLoader workers and survive restarts.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        originals: Any,
        train_idx: list[int],
        norm: Normalization,
        num_classes: int,
        augmented: Any | None = None,
        synthetic: Any | None = None,
        rank: int = 0,
    ) -> None:
        self.cfg, self.originals, self.train_idx = cfg, originals, train_idx
        self.norm, self.k = norm, num_classes
        self.augmented, self.synthetic = augmented, synthetic or []
        self.rank = rank
        self.patch = 0
        if cfg.real_mosaic > 0 and len(train_idx):
            self.patch = int(min(originals[train_idx[0]]["mask"].shape))

    def step_shape(self, step: int) -> tuple[int, int]:
        """``(crop, batch)`` of step ``step``: the final phase's for the last ``final_steps`` steps."""
        cfg = self.cfg
        if cfg.final_steps and step >= cfg.steps - cfg.final_steps:
            return cfg.final_crop, cfg.final_batch or cfg.batch
        return cfg.crop, cfg.batch

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = common.step_rng(self.cfg.seed, step, self.rank)
        cfg = self.cfg
        size, nb = self.step_shape(step)
        mix = cfg.mix if self.augmented is not None else 0.0
        syn = cfg.synthetic_ratio if self.synthetic else 0.0
        images, masks, logits, generated = [], [], [], []
        for _ in range(nb):
            u = float(rng.random())
            if u < mix:
                picks = rng.integers(0, len(self.augmented), 4)
                s = transforms.mosaic([self.augmented[int(j)] for j in picks], size, rng)
            elif u < mix + syn:
                s = transforms.random_crop(self.synthetic[int(rng.integers(len(self.synthetic)))], size, rng)
            elif cfg.real_mosaic > 0 and (size > self.patch or float(rng.random()) < cfg.real_mosaic):
                # crops larger than one image are always mosaics (never mostly padding)
                n = transforms.mosaic_grid_size(size, self.patch)
                picks = rng.integers(0, len(self.train_idx), n * n)
                s = transforms.grid_mosaic(
                    [self.originals[self.train_idx[int(j)]] for j in picks],
                    size,
                    rng,
                    gain=cfg.mosaic_gain,
                    calm=cfg.mosaic_calm,
                )
            else:
                s = self.originals[self.train_idx[int(rng.integers(len(self.train_idx)))]]
                s = transforms.random_crop(s, size, rng)
            generated.append(u < mix)
            s = transforms.random_flip_rot(s, rng)
            images.append(s["image"])
            masks.append(s["mask"])
            logits.append(s["logits"] if "logits" in s else np.zeros((self.k, size, size), np.float32))
        if cfg.level_shift > 0:  # drawn after the crops: the same crops as without it, at other levels
            offsets = rng.uniform(-cfg.level_shift, cfg.level_shift, nb)
            images = [
                transforms.shift_level({"image": im}, float(o))["image"]
                for im, o in zip(images, offsets, strict=True)
            ]
        if cfg.regrain > 0:  # drawn last: the same crops and levels as without it
            images = [
                transforms.regrain({"image": im}, rng)["image"] if float(rng.random()) < cfg.regrain else im
                for im in images
            ]
        x = normalize(np.stack(images).astype(np.float32), self.norm)
        return {
            "image": torch.from_numpy(x),
            "mask": torch.from_numpy(np.stack(masks).astype(np.int64)),
            "logits": torch.from_numpy(np.stack(logits).astype(np.float32)),
            "generated": torch.tensor(generated, dtype=torch.bool),
        }


def dataset_normalization(dataset: Any, indices: list[int], limit: int = 200) -> Normalization:
    """Mean/std of the unit luminance over (up to ``limit``) training images."""
    total, sq, count = 0.0, 0.0, 0
    for i in indices[:limit]:
        img = np.asarray(dataset[i]["image"], dtype=np.float64)
        total += float(img.sum())
        sq += float((img * img).sum())
        count += img.size
    mean = total / count
    std = math.sqrt(max(sq / count - mean * mean, 1e-8))
    return Normalization(mean=round(mean, 6), std=round(max(std, 1e-3), 6))


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


# ---------------------------------------------------------------------------------------------- trainer
@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: Any,
    indices: list[int],
    norm: Normalization,
    num_classes: int,
    device: torch.device,
    amp: bool = True,
    mosaic_grid: int = 0,
    mosaic_size: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Full-image validation (each rank a shard; confusion matrices summed over ranks).

    ``mosaic_grid`` > 1 adds ``result["mosaic"]``: the same scores on
    :func:`~dakd_edge.data.transforms.grid_cut` cuts of ``mosaic_grid`` x ``mosaic_grid`` validation
    images (``mosaic_size`` pixels).
    """
    from dakd_edge.metrics import ConfusionMatrix

    cm = ConfusionMatrix(
        num_classes, ignore_index=IGNORE_INDEX, class_names=getattr(dataset, "class_names", None)
    )
    world = torch.distributed.get_world_size() if common.is_distributed() else 1
    rank = torch.distributed.get_rank() if common.is_distributed() else 0
    was_training = model.training
    model.eval()
    for i in indices[rank::world]:
        s = dataset[i]
        x = torch.from_numpy(normalize(s["image"], norm))[None].to(device)
        with common.autocast(device, amp):
            logits = model(x)
        cm.update(logits.float().argmax(1)[0].cpu().numpy(), s["mask"])
    cms = [cm]
    if mosaic_grid > 1:
        mcm = ConfusionMatrix(
            num_classes, ignore_index=IGNORE_INDEX, class_names=getattr(dataset, "class_names", None)
        )
        for group in mosaic_groups(indices, mosaic_grid, seed)[rank::world]:
            cut = transforms.grid_cut([dataset[i] for i in group], mosaic_grid, mosaic_size)
            x = torch.from_numpy(normalize(cut["image"], norm))[None].to(device)
            with common.autocast(device, amp):
                logits = model(x)
            mcm.update(logits.float().argmax(1)[0].cpu().numpy(), cut["mask"])
        cms.append(mcm)
    model.train(was_training)
    if common.is_distributed():
        for c in cms:
            t = torch.from_numpy(c.matrix).to(device if device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(t)
            c.matrix = t.cpu().numpy()
    result = cm.compute()
    if mosaic_grid > 1:
        result["mosaic"] = cms[1].compute()
    return result


def mosaic_groups(indices: list[int], grid: int, seed: int) -> list[list[int]]:
    """Validation images in seeded groups of ``grid * grid`` (a remainder too small for one is dropped)."""
    order = np.random.default_rng([int(seed), 104729]).permutation(len(indices))
    g = grid * grid
    return [[indices[int(j)] for j in order[k : k + g]] for k in range(0, len(order) - g + 1, g)]


def data_fingerprint(dataset: Any) -> dict[str, Any] | None:
    """The count and a digest of the names of a dataset's files (None when it lists none): a resumed run
    must see the same images, since its train/validation split is drawn over them."""
    files = getattr(dataset, "files", None)
    if files is None:
        return None
    names = [Path(f[0] if isinstance(f, tuple | list) else f).name for f in files]
    digest = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return {"count": len(names), "sha": digest}


def _open_data(cfg: TrainConfig) -> tuple[Any, Any | None]:
    from dakd_edge.data import open_dataset

    originals = open_dataset(cfg.data, split="train", kind=cfg.kind, sensor=cfg.sensor, classes=cfg.classes)
    augmented = None
    if cfg.aug:
        augmented = open_dataset(cfg.aug, kind="augmented", classes=cfg.classes)
        if augmented.num_classes != originals.num_classes:
            raise DatasetError(
                f"augmented set has {augmented.num_classes} classes, the dataset {originals.num_classes}; "
                "pass --classes binary to fold a 5-class teacher into oil vs background"
            )
        check_augmented_fits(augmented, originals, cfg)
    return originals, augmented


def check_augmented_fits(augmented: Any, originals: Any, cfg: TrainConfig) -> None:
    """Refuse a generated set whose classes are in another order, or whose images are too small for
    this run's crops; say so when its teacher learned from another sensor or from synthetic patches.

    Only the class count was compared: a set with (oil, background) trained oil as background, and
    32 px samples in 256 px crops left 94 % of each mosaic as black padding (the mosaic's four
    quadrants are filled only when samples are at least half the crop)."""
    from dakd_edge.meta import class_meaning

    ours, theirs = list(getattr(originals, "class_names", [])), list(augmented.class_names)
    if ours and [class_meaning(n) for n in theirs] != [class_meaning(n) for n in ours]:
        raise DatasetError(
            f"{cfg.aug}: the augmented set's classes {theirs} do not mean the dataset's {ours}: class i of "
            "the teacher's logits is trained as class i, so they must match in order"
        )
    if cfg.mix <= 0:  # the set is not sampled: its size and teacher do not matter
        return
    generator = augmented.manifest.get("generator") or {}
    size = generator.get("size")
    if size is None and len(augmented):
        size = min(augmented[0]["image"].shape[-2:])
    crop = max(cfg.crop, cfg.final_crop if cfg.final_steps else 0)
    fills = None if size is None else 2 * int(size)  # the mosaic's side without padding
    if fills is not None and fills < crop:
        raise DatasetError(
            f"{cfg.aug}: generated images are {size} px, and a mosaic of four fills only {fills} px "
            f"of this run's {crop} px crops (the rest would be padding); generate at --size {(crop + 1) // 2} "
            f"or more, or train with --crop {fills} or less"
            + (" and without --final-steps" if cfg.final_steps and cfg.final_crop > fills else "")
        )
    teacher = generator.get("teacher") or {}
    if teacher.get("synthetic", 0) > 0 and not teacher.get("data"):
        warnings.warn(
            Notice(
                f"{cfg.aug}: its teacher was trained on {teacher['synthetic']} synthetic patches, not on real "
                "images"
            ),
            stacklevel=user_stacklevel(),
        )
    elif teacher.get("sensor") and cfg.sensor and teacher["sensor"] != cfg.sensor:
        warnings.warn(
            Notice(f"{cfg.aug}: its teacher was trained on {teacher['sensor']}, this run on {cfg.sensor}"),
            stacklevel=user_stacklevel(),
        )


def synthetic_source(cfg: TrainConfig, num_classes: int) -> common.SyntheticPatches | None:
    """The run's synthetic patches, rendered (as float32, big enough for every crop), or None."""
    if not (cfg.synthetic and cfg.synthetic_ratio > 0):
        return None
    size = max(cfg.crop, cfg.final_crop if cfg.final_steps else 0)
    return common.SyntheticPatches(
        cfg.synthetic, size, num_classes, cfg.seed, stride=100_003, eight_bit=False
    ).render_all()


class DakdTrainer(common.Trainer):
    """DAKD training of a segmentation model on :class:`~dakd_edge.train.common.Trainer`: AdamW with
    warm-up + cosine, the composite loss, validation (EMA weights) and the best / final model files."""

    kind = CHECKPOINT_KIND

    def __init__(
        self,
        cfg: TrainConfig,
        out: str | os.PathLike,
        progress: bool = True,
        datasets: tuple[Any, Any | None] | None = None,
        overwrite: bool = False,
    ) -> None:
        super().__init__(cfg, out, progress, overwrite)
        self.datasets = datasets
        self.best: dict[str, Any] = {"miou": -1.0, "step": -1}
        self.seen = 0

    # ------------------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        from dakd_edge.registry import create_model

        cfg, dev = self.cfg, self.device
        common.seed_everything(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0)
        self.originals, self.augmented = self.datasets if self.datasets is not None else _open_data(cfg)
        k = self.num_classes = self.originals.num_classes
        self.class_names = tuple(
            getattr(self.originals, "class_names", None) or ModelMeta.default_for("x", k).class_names
        )
        self.train_idx, self.val_idx = split_indices(len(self.originals), cfg.val_fraction, cfg.seed)
        if cfg.val_fraction > 0 and not self.val_idx:
            # one image: a run without validation is still useful (smoke tests, one-scene fine-tuning),
            # so say it instead of refusing; --val-fraction 0 is how to ask for none
            warnings.warn(
                Notice(
                    f"the training set has {len(self.originals)} image: no validation split "
                    f"(--val-fraction {cfg.val_fraction:g} needs at least 2); model.safetensors "
                    "will be the last (EMA) weights, not the best on validation"
                ),
                stacklevel=user_stacklevel(),
            )
        self.norm = (
            dataset_normalization(self.originals, self.train_idx)
            if cfg.normalization == "dataset" and not cfg.init
            else Normalization()
        )
        if cfg.class_weights is not None and len(cfg.class_weights) != k:
            raise InputError(
                f"--class-weights has {len(cfg.class_weights)} value(s), the dataset has {k} classes "
                f"({', '.join(self.class_names)})"
            )
        self.tiling = (cfg.tile, None)  # the saved model's inference tile and overlap (None: default)
        if cfg.init:  # fine-tuning: the file's architecture, weights, normalisation and tiling
            from dakd_edge.train.finetune import init_model

            model, init_meta, notes = init_model(cfg.model, cfg.model_cfg, cfg.init, self.class_names)
            self.model = model.to(dev)
            self.norm = init_meta.normalization  # the weights were trained for this input scaling
            self.tiling = (init_meta.tile, init_meta.overlap)
            for note in notes if self.main else ():
                warnings.warn(Notice(note), stacklevel=user_stacklevel())
        else:
            try:
                self.model = create_model(cfg.model, num_classes=k, in_chans=1, **cfg.model_cfg).to(dev)
            except (TypeError, ValueError) as e:
                if not cfg.model_cfg:
                    raise
                shown = " ".join(f"{a}={b}" for a, b in cfg.model_cfg.items())
                raise InputError(f"--model-cfg {shown} does not fit model {cfg.model!r}: {e}") from e
        self.ema = common.EMA(self.model, cfg.ema_decay).to(dev) if cfg.ema_decay > 0 else None
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.schedule = self._lr_schedule(-1)
        self.scaler = common.make_grad_scaler(dev, cfg.amp)
        self.loss_fn = DAKDLoss(cfg.loss_config()).to(dev)
        self.net = common.wrap_ddp(self.model, self.dist)
        if self.main and self.datasets is None:  # ready datasets (library use): the caller built them
            self._describe_data()

    def _describe_data(self) -> None:
        """Say what the training data was read as (stdout; its warnings as notices) before training: a
        set misread without an error (own label colours read as OSD's, oil stored as 255 = ignore) shows
        as 0% oil here."""
        from dakd_edge.data import describe

        lines, warns = describe(self.originals)
        lines[0] += f": {len(self.train_idx)} to train on, {len(self.val_idx)} held out for validation"
        if self.augmented is not None:
            lines.append(f"generated: {self.augmented.root} ({len(self.augmented)} samples)")
        print("\n".join(lines), flush=True)
        for w in warns:
            warnings.warn(Notice(w), stacklevel=user_stacklevel())

    def _lr_schedule(self, last_step: int) -> torch.optim.lr_scheduler.LambdaLR:
        cfg = self.cfg
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_lambda(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio),
            last_epoch=last_step,
        )

    def load_state(self, ck: Mapping[str, Any]) -> None:
        saved, now = ck["extra"].get("data_files"), data_fingerprint(self.originals)
        if saved is not None and now is not None and saved != now:
            # the split is drawn over the file list: another list mixes validation images into training
            raise TrainingError(
                f"cannot resume: the training images changed since the checkpoint ({saved['count']} then, "
                f"{now['count']} now{', other files' if saved['count'] == now['count'] else ''}), so the "
                "train/validation split would change; restore the data, or start a new run"
            )
        self.optimizer.load_state_dict(ck["optimizer"])
        start = int(ck["step"])
        self.schedule = self._lr_schedule(start - 1)
        self.best = dict(ck["extra"].get("best", self.best))
        self.norm = Normalization.from_dict(ck["extra"]["normalization"])
        if start >= self.cfg.steps:
            raise TrainingError(f"nothing to do: the checkpoint is at step {start} of {self.cfg.steps}")
        if self.best["step"] >= 0 and not (self.out / "best.safetensors").is_file():
            # the end of the run copies it to model.safetensors: refuse now, not after the last step
            raise TrainingError(
                f"cannot resume into {self.out}: the run's best model so far (step {self.best['step']}, "
                "best.safetensors) is not there; resume in the folder that holds the checkpoint's run"
            )

    def loader(self, start: int, end: int) -> Any:
        batches = SlotBatches(
            self.cfg,
            self.originals,
            self.train_idx,
            self.norm,
            self.num_classes,
            self.augmented,
            synthetic_source(self.cfg, self.num_classes),
            self.dist.rank,
        )
        # No generator of its own: the loader draws its base seed from the global torch RNG once per
        # session, as this trainer always did (the same numbers as earlier runs for the same seed).
        return torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(start, end),
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
        )

    # -------------------------------------------------------------------------------------------- steps
    def train_step(self, step: int, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        dev = self.device
        x = batch["image"].to(dev, non_blocking=True)
        y = batch["mask"].to(dev, non_blocking=True)
        t = batch["logits"].to(dev, non_blocking=True)
        g = batch["generated"].to(dev)
        with common.autocast(dev, self.cfg.amp):
            logits = self.net(x)
        parts = self.loss_fn(logits.float(), y, t, g)
        common.check_finite(parts["loss"], step + 1, self.last_good)
        self.optimizer_step(parts["loss"], self.model.parameters(), self.cfg.grad_clip)
        self.seen += x.shape[0]
        return common.mean_over_ranks(parts)

    def bar_fields(self, losses: Mapping[str, float]) -> dict[str, float | str]:
        return {"loss": losses["loss"], "best": max(self.best["miou"], 0.0)}

    def log_record(self, step: int, losses: Mapping[str, float]) -> dict[str, Any]:
        assert self.schedule is not None
        dt = time.perf_counter() - self.t0
        lr = self.schedule.get_last_lr()[0]
        return {"step": step + 1, **losses, "lr": lr, "img_s": self.seen / max(dt, 1e-9)}

    def after_step(self, done: int) -> None:
        if self.val_idx and (done % self.cfg.val_every == 0 or done == self.cfg.steps):
            self._validate(done)

    def _validate(self, step: int) -> None:
        """Validate the EMA weights; a better score writes ``best.safetensors``."""
        cfg = self.cfg
        args = (self.originals, self.val_idx, self.norm, self.num_classes, self.device, cfg.amp)
        vkw = {"mosaic_grid": cfg.val_mosaic, "mosaic_size": cfg.final_crop or cfg.tile, "seed": cfg.seed}
        with self._shipped() as m:
            r = validate(m, *args, **vkw)
        rec = {"step": step, "val_miou": r["miou"], "val_iou": r["iou"], "val_acc": r["pixel_accuracy"]}
        score = float(r["miou"])
        if "mosaic" in r:
            rec["val_mosaic_miou"] = r["mosaic"]["miou"]
            score = 0.5 * (score + float(r["mosaic"]["miou"]))
            rec["val_score"] = score
        assert self.logger is not None
        self.logger.log(rec)
        if score > self.best.get("score", self.best["miou"]) and self.main:
            self.best = {"miou": float(r["miou"]), "step": step, "iou": r["iou"]}
            if "mosaic" in r:
                self.best.update(score=score, mosaic_miou=float(r["mosaic"]["miou"]))
            self._save_model(self.out / "best.safetensors", {"step": step, "val": r})

    # ---------------------------------------------------------------------------------------- model files
    def checkpoint_extra(self) -> dict[str, Any]:
        extra = {"best": self.best, "normalization": asdict(self.norm)}
        files = data_fingerprint(self.originals)
        return extra if files is None else {**extra, "data_files": files}

    def _shipped(self) -> contextlib.AbstractContextManager[nn.Module]:
        """The weights that are validated and shipped: the EMA's when there is one."""
        if self.ema is None:
            return contextlib.nullcontext(common.unwrap(self.model))
        return self.ema.swapped(self.model)

    def _save_model(self, path: Path, extra: dict[str, Any]) -> None:
        from dakd_edge.models.checkpoint import save_model

        cfg = self.cfg
        meta = ModelMeta.default_for(
            cfg.model,
            self.num_classes,
            1,
            class_names=self.class_names,
            normalization=self.norm,
            tile=self.tiling[0],
            overlap=self.tiling[1],
        )
        meta.extra = {"train": {"config": _shareable(cfg.to_dict()), **extra}}
        with self._shipped() as m:
            save_model(path, m, meta)

    def finish(self, done: int, end: int) -> dict[str, Any]:
        last = self.out / "last.pt"
        if done < self.cfg.steps:
            return {"steps": done, "best": self.best, "stopped": True, "checkpoint": str(last)}
        final = self.out / "model.safetensors"
        if self.main:
            if self.best["step"] >= 0:  # atomic: a full disk must not leave half a model file
                with atomic_path(final, overwrite=True) as tmp:
                    shutil.copyfile(self.out / "best.safetensors", tmp)
            else:
                self._save_model(final, {"step": done})
        common.barrier()
        return {
            "steps": done,
            "stopped": False,
            "best": self.best,
            "model": str(final),
            "seconds": time.perf_counter() - self.t0,
            "normalization": asdict(self.norm),
            "num_train": len(self.train_idx),
            "num_val": len(self.val_idx),
        }


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    datasets: tuple[Any, Any | None] | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a training; returns a summary dict. Writes into ``out_dir``:

    ``last.pt`` (training checkpoint), ``best.safetensors`` (best EMA model on validation mIoU),
    ``model.safetensors`` (the final model: best if a validation split exists, else the last EMA),
    ``metrics.jsonl`` and ``config.json``. ``datasets``: ready ``(originals, augmented)`` dataset objects
    to use instead of opening ``cfg.data`` / ``cfg.aug`` (library use: ablations, tests).
    ``stop_after``: end this session after that step (checkpoint written; resume later to continue
    the same schedule); the summary then says ``stopped: True`` and no final model is written.
    ``overwrite``: replace a run already in ``out_dir`` (refused otherwise, unless resuming).
    """
    try:
        return DakdTrainer(cfg, out_dir, progress, datasets, overwrite).run(resume, stop_after)
    finally:
        common.cleanup_distributed()


def _shareable(config: dict[str, Any]) -> dict[str, Any]:
    """The training config as the model file records it: a path (the data folder, --init, --aug, the run
    folder) by its last component, so a model a team ships or exports does not carry its folder layout
    (`/home/analyst/cases/2026-...`) into every ONNX file and engine sidecar. The run folder's own
    config.json keeps the full paths (resume reads them there)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if (
            isinstance(value, str)
            and ("/" in value or "\\" in value)
            and not value.startswith(("http:", "https:"))
        ):
            out[key] = Path(value).name or value
        else:
            out[key] = value
    return out
