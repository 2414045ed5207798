"""Three-stage training of SAR-JointNet (the DAKD teacher).

Stage 1: SAR-Net alone, ``L_x = ||x - x0_hat||^2``. Stage 2: Label-Net copied from SAR-Net (input/output
layers re-initialised for K channels), SAR-Net and the shared timestep embedding frozen, only Label-Net
and the interconnections train on ``L = L_x + L_ce``. Stage 3: everything at a lower learning rate.
Squared-cosine DDPM (1000 steps, x0 prediction), AdamW, EMA, gradient clipping, AMP on CUDA.

Runs resume bit for bit: step ``s`` draws its batch from ``step_rng(seed, s, rank)`` and the noise from
the global torch RNG, whose state is in every checkpoint. Launch with ``torchrun`` for several GPUs or
nodes (DistributedDataParallel; gloo on the CPU).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dakd_edge.atomic import atomic_path
from dakd_edge.data import transforms
from dakd_edge.errors import DatasetError, InputError, Notice, TrainingError, user_stacklevel
from dakd_edge.meta import IGNORE_INDEX, ModelMeta
from dakd_edge.models.jointnet import (
    JointNetConfig,
    SARJointNet,
    balance_labels,
    compute_balancing_factor,
    image_to_model,
    jointnet_config,
)
from dakd_edge.train import common
from dakd_edge.train.common import SyntheticPatches  # noqa: F401 (part of this module's API)
from dakd_edge.train.config import JointNetTrainConfig
from dakd_edge.train.generate import make_train_scheduler, sample_joint

KIND = "jointnet"


# ------------------------------------------------------------------------------------------------ data
def open_training_data(cfg: JointNetTrainConfig) -> Any:
    """The training set named by the config: synthetic patches or ``open_dataset(cfg.data, "train")``."""
    if cfg.synthetic > 0:
        return common.SyntheticPatches(cfg.synthetic, cfg.crop, cfg.synthetic_classes, cfg.seed)
    if not cfg.data:
        raise DatasetError("no training data: pass --data DIR or --synthetic N")
    from dakd_edge.data import open_dataset

    return open_dataset(cfg.data, split="train", kind=cfg.data_kind, sensor=cfg.sensor, classes=cfg.classes)


class CropBatches(torch.utils.data.Dataset):
    """Item ``s`` is the whole batch of global step ``s`` for this rank, a pure function of
    ``(seed, s, rank)``: restarts and worker counts cannot change the data stream.

    Each slot is a random ``crop`` of a random image (images smaller than that are padded: the image
    by reflection, the mask with the ignore index), with random flips / 90-degree rotations (SAR has no
    canonical orientation), unnormalised unit luminance (the model maps it to [-1, 1] itself).
    """

    def __init__(self, data: Any, batch: int, crop: int, seed: int, rank: int, flips: bool = True) -> None:
        if len(data) == 0:
            raise DatasetError("the training set is empty")
        self.data, self.batch, self.crop, self.seed, self.rank, self.flips = (
            data,
            batch,
            crop,
            seed,
            rank,
            flips,
        )

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = common.step_rng(self.seed, step, self.rank)
        idx = rng.integers(0, len(self.data), size=self.batch)
        images, masks = [], []
        for i in idx:
            s = self.data[int(i)]
            image = np.asarray(s["image"])
            sample = {"image": image[:1] if image.ndim == 3 else image[None], "mask": np.asarray(s["mask"])}
            sample = transforms.augment(sample, rng, crop_size=self.crop, flips=self.flips, pad="reflect")
            images.append(sample["image"])
            masks.append(sample["mask"])
        return {
            "image": torch.from_numpy(np.stack(images).astype(np.float32)),
            "mask": torch.from_numpy(np.stack(masks).astype(np.int64)),
        }


# --------------------------------------------------------------------------------------------- trainer
def trainable_names(model: SARJointNet, stage: int) -> set[str]:
    """Parameters that train in ``stage``: 1 SAR-Net + time embedding; 2 Label-Net + links; 3 all."""
    g = model.parameter_groups()
    if stage == 1:
        return set(g["sar"])
    if stage == 2:
        return set(g["label"]) | set(g["links"])
    if stage == 3:
        return set(g["sar"]) | set(g["label"]) | set(g["links"])
    raise ValueError(f"stage must be 1, 2 or 3, got {stage}")


def set_stage_trainable(model: SARJointNet, stage: int) -> list[nn.Parameter]:
    names = trainable_names(model, stage)
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
        if n in names:
            params.append(p)
    return params


class JointNetTrainer(common.Trainer):
    """The three stages on :class:`~dakd_edge.train.common.Trainer`: stage switches before a step
    (a ``stageN.pt`` checkpoint, trainable parameters, optimiser and DDP wrapper), sample grids after
    one. ``run()`` returns the path of the last checkpoint written."""

    kind = KIND
    log_file = "log.jsonl"
    config_on_resume = True  # operational options (workers, device, ...) may change on resume

    def __init__(
        self,
        cfg: JointNetTrainConfig,
        data: Any | None = None,
        progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__(cfg, cfg.out, progress, overwrite)
        self.data = data if data is not None else open_training_data(cfg)
        if data is None and not cfg.synthetic and self.main:  # a set opened here: say what it was read as
            self._describe_data()
        num_classes = int(getattr(self.data, "num_classes", cfg.synthetic_classes))
        self.class_names = list(
            getattr(self.data, "class_names", None) or ModelMeta.default_for("x", num_classes).class_names
        )
        if not cfg.model:
            cfg.model = jointnet_config(cfg.preset, num_classes=num_classes, sample_size=cfg.crop).to_dict()
        self.model_cfg = JointNetConfig.from_dict(cfg.model)
        if self.model_cfg.num_classes != num_classes:
            raise TrainingError(f"model has {self.model_cfg.num_classes} classes, the data {num_classes}")
        if cfg.crop % self.model_cfg.downsample_factor:
            raise InputError(f"--crop {cfg.crop} must be a multiple of {self.model_cfg.downsample_factor}")
        self.scheduler = make_train_scheduler()
        self.alphas = self.scheduler.alphas_cumprod.to(self.device)
        self.stage = 0

    def _describe_data(self) -> None:
        """Print what the training set was read as, and warn (Notice) when its masks hold no oil, as
        ``dakd-edge train`` does: the teacher learns the joint image-label distribution of a misread set
        without an error."""
        from dakd_edge.data import describe

        lines, warns = describe(self.data)
        print("\n".join(lines), flush=True)
        for w in warns:
            warnings.warn(Notice(w), stacklevel=user_stacklevel())

    # ------------------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        common.seed_everything(self.cfg.seed)
        self.model = SARJointNet(self.model_cfg).to(self.device)
        self.ema = common.EMA(self.model, self.cfg.ema_decay)
        self.scaler = common.make_grad_scaler(self.device, self.cfg.amp)
        self.stage = 0
        self.optimizer = None
        self.net = self.model

    def start_fresh(self) -> int:
        if self.cfg.balancing_factor is None:  # measured on the training set before training
            stats = compute_balancing_factor(
                self.data, self.model_cfg.num_classes, limit=self.cfg.balance_limit
            )
            self.cfg.balancing_factor = stats.b
        self._enter_stage(self.cfg.stage_at(0), fresh=True)
        return 0

    def complete_config(self, saved: Mapping[str, Any]) -> None:
        if self.cfg.balancing_factor is None:  # not given: the resumed run's measured b
            self.cfg.balancing_factor = saved.get("balancing_factor")

    def load_state(self, ck: Mapping[str, Any]) -> None:
        self._enter_stage(int(ck["extra"]["stage"]), fresh=False)
        assert self.optimizer is not None
        self.optimizer.load_state_dict(ck["optimizer"])

    def loader(self, start: int, end: int) -> Any:
        cfg = self.cfg
        return torch.utils.data.DataLoader(
            CropBatches(self.data, cfg.batch_size, cfg.crop, cfg.seed, self.dist.rank, cfg.flips),
            batch_size=None,
            sampler=range(start, end),
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the loader off the global RNG (bit-exact resume)
        )

    def _enter_stage(self, stage: int, fresh: bool) -> None:
        """Switch trainable parameters, optimiser and DDP wrapper to ``stage``.

        ``fresh``: the stage starts now (not a resume) - on leaving stage 1 (for stage 2, or for stage 3
        when stage 2 has no steps: Label-Net stayed random there) this copies SAR-Net into Label-Net
        (seeded re-initialisation of its input/output layers) and resets their EMA.
        """
        if fresh and stage >= 2 and self.stage < 2:
            g = torch.Generator().manual_seed(self.cfg.seed + 2)
            with torch.no_grad():
                self.model.init_label_from_sar(g)
                groups = self.model.parameter_groups()
                state = self.model.state_dict()
                for n in groups["label"] + groups["links"]:
                    self.ema.shadow[n].copy_(state[n])
        params = set_stage_trainable(self.model, stage)
        lr = self.cfg.lr_stage3 if stage == 3 else self.cfg.lr
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay)
        self.net = common.wrap_ddp(self.model, self.dist)
        self.stage = stage

    def _lr(self, step: int) -> float:
        base = self.cfg.lr_stage3 if self.stage == 3 else self.cfg.lr
        into = step - self.cfg.stage_start(self.stage) + 1
        return base * min(1.0, into / self.cfg.warmup) if self.cfg.warmup > 0 else base

    # -------------------------------------------------------------------------------------------- steps
    def before_step(self, step: int) -> None:
        stage = self.cfg.stage_at(step)
        if stage != self.stage:
            path = self.out / f"stage{self.stage}.pt"
            self.save(path, step)
            self.last_good = path  # a non-finite loss later on names it as the checkpoint to go back to
            self._enter_stage(stage, fresh=True)

    def train_step(self, step: int, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        assert self.optimizer is not None
        dev, b = self.device, float(self.cfg.balancing_factor)
        x0 = image_to_model(batch["image"].to(dev, non_blocking=True))
        mask = batch["mask"].to(dev, non_blocking=True)
        n = x0.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), device=dev)
        a = self.alphas[t].sqrt().view(n, 1, 1, 1)
        s = (1.0 - self.alphas[t]).sqrt().view(n, 1, 1, 1)
        x_t = a * x0 + s * torch.randn_like(x0)  # Eq. 2 (same as DDPMScheduler.add_noise)
        for g in self.optimizer.param_groups:
            g["lr"] = self._lr(step)
        self.net.train()
        with common.autocast(dev, self.cfg.amp):
            if self.stage == 1:
                x_hat = self.net(x_t, t)
                loss_ce = None
            else:
                y_b = balance_labels(mask, self.model_cfg.num_classes, b)
                y_t = a * y_b + s * torch.randn_like(y_b)
                x_hat, logits = self.net(x_t, t, y_t)
                if bool((mask != IGNORE_INDEX).any()):
                    loss_ce = F.cross_entropy(logits.float(), mask, ignore_index=IGNORE_INDEX)  # Eq. 6
                else:  # an all-ignore batch has no CE term (keep the graph for DDP)
                    loss_ce = logits.float().sum() * 0.0
        loss_x = F.mse_loss(x_hat.float(), x0)  # Eq. 5
        loss = loss_x if loss_ce is None else loss_x + loss_ce  # Eq. 7
        common.check_finite(loss, step + 1, self.last_good)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = self.optimizer_step(loss, params, self.cfg.grad_clip, norm=True)
        out = {"loss": loss, "loss_x": loss_x, "grad_norm": grad_norm}
        if loss_ce is not None:
            out["loss_ce"] = loss_ce
        return common.mean_over_ranks(out)

    def bar_title(self) -> str:  # the stage is a field: the title is drawn once, the stage changes
        return "jointnet"

    def bar_fields(self, losses: Mapping[str, float]) -> dict[str, float | str]:
        return {"stage": self.stage, **{k: v for k, v in losses.items() if k != "grad_norm"}}

    def log_record(self, step: int, losses: Mapping[str, float]) -> dict[str, Any]:
        rec = {"step": step + 1, "stage": self.stage, "lr": self._lr(step)}
        return {**rec, "time": round(time.perf_counter() - self.t0, 3), **losses}

    def after_step(self, done: int) -> None:
        if self.main and self.cfg.sample_every > 0 and done % self.cfg.sample_every == 0:
            self.save_samples(self.out / "samples" / f"step{done:07d}.png", float(self.cfg.balancing_factor))

    def extra_checkpoints(self, start: int, end: int) -> int:
        """stage{N}.pt: one written at each stage boundary crossed and one for the last stage at the end
        (the room check counted last.pt alone: a base run keeps four files of 0.65-0.86 GB)."""
        s1, s2, _ = self.cfg.stage_steps
        crossed = sum(start <= b < end for b in {s1, s1 + s2} if 0 < b)
        return crossed + (end == self.cfg.total_steps)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"stage": self.stage, "class_names": self.class_names}

    def finish(self, done: int, end: int) -> Path:
        if end == self.cfg.total_steps:
            self.save(self.out / f"stage{self.stage}.pt", end)
        common.barrier()
        return self.out / "last.pt"

    # --------------------------------------------------------------------------------------------- grids
    def save_samples(self, path: Path, b: float) -> Path:
        """DDIM samples with the EMA weights: images on top, coloured labels below (stage >= 2)."""
        joint = self.stage >= 2
        with self.ema.swapped(self.model) as m:
            images, logits = sample_joint(
                m,
                b,
                list(range(self.cfg.sample_count)),
                (self.cfg.crop, self.cfg.crop),
                steps=self.cfg.sample_steps,
                seed=self.cfg.seed,
                device=self.device,
                amp=self.cfg.amp,
                joint=joint,
            )
        palette = ModelMeta.default_for("x", self.model_cfg.num_classes).palette
        return save_grid(path, images, logits, palette)


def colour_labels(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    return lut[labels.astype(np.uint8)]


def save_grid(
    path: Path, images: torch.Tensor, logits: torch.Tensor | None, palette: Sequence[Sequence[int]]
) -> Path:
    """One PNG: generated images (row 1) and their argmax labels in the dataset palette (row 2)."""
    from PIL import Image

    imgs = (images[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    rows = [np.concatenate([np.repeat(i[..., None], 3, axis=-1) for i in imgs], axis=1)]
    if logits is not None:
        labels = logits.argmax(1).cpu().numpy()
        rows.append(np.concatenate([colour_labels(lb, palette) for lb in labels], axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    return path


def train_jointnet(
    cfg: JointNetTrainConfig,
    data: Any | None = None,
    resume: str | os.PathLike | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Train (or resume) SAR-JointNet; returns the last checkpoint path. Cleans up torch.distributed.

    ``overwrite``: replace a run already in ``cfg.out`` (refused otherwise, unless resuming)."""
    try:
        return JointNetTrainer(cfg, data, progress, overwrite).run(resume, stop_after)
    finally:
        common.cleanup_distributed()
