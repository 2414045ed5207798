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

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dakd_edge.atomic import atomic_path
from dakd_edge.data import transforms
from dakd_edge.errors import DatasetError, TrainingError
from dakd_edge.meta import ModelMeta
from dakd_edge.models.jointnet import (
    IGNORE_INDEX,
    JointNetConfig,
    SARJointNet,
    balance_labels,
    compute_balancing_factor,
    image_to_model,
    jointnet_config,
)
from dakd_edge.train import common
from dakd_edge.train.config import JointNetTrainConfig
from dakd_edge.train.generate import make_train_scheduler, sample_joint

KIND = "jointnet"


# ------------------------------------------------------------------------------------------------ data
class SyntheticPatches:
    """``n`` synthetic SAR patches with labels (dakd_edge.data.synthetic.generate_patch), made on demand."""

    def __init__(self, n: int, size: int, num_classes: int = 2, seed: int = 0) -> None:
        from dakd_edge.data.synthetic import generate_patch

        self._gen = generate_patch
        self.n, self.size, self.num_classes, self.seed = int(n), int(size), int(num_classes), int(seed)
        self.class_names = list(ModelMeta.default_for("x", num_classes).class_names)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:  # rendering costs ~0.1-1 s per patch: keep them (uint8, ~5 B/pixel)
            image, mask = self._gen(
                seed=self.seed * 1_000_003 + i, size=self.size, num_classes=self.num_classes
            )
            self._cache[i] = (np.round(np.asarray(image) * 255).astype(np.uint8), np.asarray(mask, np.uint8))
        img8, mask8 = self._cache[i]
        return {"image": (img8.astype(np.float32) / 255.0)[None], "mask": mask8.astype(np.int64)}


def open_training_data(cfg: JointNetTrainConfig) -> Any:
    """The training set named by the config: synthetic patches or ``open_dataset(cfg.data, "train")``."""
    if cfg.synthetic > 0:
        return SyntheticPatches(cfg.synthetic, cfg.crop, cfg.synthetic_classes, cfg.seed)
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


class JointNetTrainer:
    """Owns model, optimiser, EMA and the stage logic. ``run()`` trains to the end (or ``stop_after``)."""

    def __init__(self, cfg: JointNetTrainConfig, data: Any | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.dist = common.init_distributed(cfg.device)
        self.device = self.dist.device
        self.main = self.dist.is_main
        self.out = Path(cfg.out)
        self.data = data if data is not None else open_training_data(cfg)
        num_classes = int(getattr(self.data, "num_classes", cfg.synthetic_classes))
        self.class_names = list(
            getattr(self.data, "class_names", None) or ModelMeta.default_for("x", num_classes).class_names
        )
        if cfg.crop < 8:
            raise ValueError(f"crop must be >= 8, got {cfg.crop}")
        if not cfg.model:
            cfg.model = jointnet_config(cfg.preset, num_classes=num_classes, sample_size=cfg.crop).to_dict()
        self.model_cfg = JointNetConfig.from_dict(cfg.model)
        if self.model_cfg.num_classes != num_classes:
            raise TrainingError(f"model has {self.model_cfg.num_classes} classes, the data {num_classes}")
        if cfg.crop % self.model_cfg.downsample_factor:
            raise ValueError(f"crop {cfg.crop} must be a multiple of {self.model_cfg.downsample_factor}")
        self.progress = progress and self.main
        self.scheduler = make_train_scheduler()
        self.alphas = self.scheduler.alphas_cumprod.to(self.device)

    # ------------------------------------------------------------------------------------------ set-up
    def _measure_b(self) -> float:
        stats = compute_balancing_factor(self.data, self.model_cfg.num_classes, limit=self.cfg.balance_limit)
        return stats.b

    def _build(self) -> None:
        common.seed_everything(self.cfg.seed)
        self.model = SARJointNet(self.model_cfg).to(self.device)
        self.ema = common.EMA(self.model, self.cfg.ema_decay)
        self.scaler = common.make_grad_scaler(self.device, self.cfg.amp)
        self.stage = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.ddp: nn.Module = self.model

    def _enter_stage(self, stage: int, fresh: bool) -> None:
        """Switch trainable parameters, optimiser and DDP wrapper to ``stage``.

        ``fresh``: the stage starts now (not a resume) - at stage 2 this copies SAR-Net into Label-Net
        (seeded re-initialisation of its input/output layers) and resets their EMA.
        """
        if fresh and stage == 2:
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
        if self.dist.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = self.model
        self.stage = stage

    def _lr(self, step: int) -> float:
        base = self.cfg.lr_stage3 if self.stage == 3 else self.cfg.lr
        into = step - self.cfg.stage_start(self.stage) + 1
        return base * min(1.0, into / self.cfg.warmup) if self.cfg.warmup > 0 else base

    # ---------------------------------------------------------------------------------------- checkpoints
    def _replica_checksums(self) -> list[float]:
        """Sum of all weights on every rank (a collective: call on all ranks). DDP replicas must agree
        exactly; the values go into the checkpoint and a mismatch stops the run."""
        local = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)
        if not common.is_distributed():
            return [float(local)]
        import torch.distributed as dist

        dev = (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )
        parts = [torch.zeros(1, dtype=torch.float64, device=dev) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.to(dev))
        values = [float(v) for v in parts]
        if len(set(values)) > 1:
            raise TrainingError(f"DDP replicas diverged (weight sums per rank: {values}); this is a bug")
        return values

    def _save(self, path: Path, step: int, checksums: list[float] | None = None) -> None:
        if not self.main:
            return
        common.save_checkpoint(
            path,
            kind=KIND,
            config=self.cfg.to_dict(),
            model=self.model,
            step=step,
            optimizer=self.optimizer,
            ema=self.ema,
            scaler=self.scaler,
            rng=common.capture_rng_state(),
            extra={
                "stage": self.stage,
                "class_names": self.class_names,
                "world_size": self.dist.world_size,
                "replica_checksums": checksums,
            },
        )

    def _load(self, path: str | os.PathLike) -> int:
        ck = common.load_checkpoint(path, kind=KIND)
        if self.cfg.balancing_factor is None:
            self.cfg.balancing_factor = ck["config"].get("balancing_factor")
        self.cfg.check_resume(ck["config"], path)
        ws = int(ck["extra"].get("world_size", 1))
        if ws != self.dist.world_size:
            raise TrainingError(
                f"cannot resume {path}: it was trained on {ws} processes, now {self.dist.world_size}"
            )
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self._enter_stage(int(ck["extra"]["stage"]), fresh=False)
        assert self.optimizer is not None
        self.optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        common.restore_rng_state(ck["rng"])
        return int(ck["step"])

    # ----------------------------------------------------------------------------------------------- run
    def run(self, resume: str | os.PathLike | None = None, stop_after: int | None = None) -> Path:
        """Train from scratch or ``resume``; returns the path of the last checkpoint written.

        ``stop_after``: stop (with a checkpoint) once this global step count is reached - for
        time-boxed jobs and the resume test.
        """
        cfg = self.cfg
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        common.barrier()
        self._build()
        last = self.out / "last.pt"
        start = 0
        if resume is not None:
            start = self._load(resume)
        else:
            if cfg.balancing_factor is None:
                cfg.balancing_factor = self._measure_b()
            self._enter_stage(cfg.stage_at(0), fresh=True)
        b = float(cfg.balancing_factor)  # type: ignore[arg-type]
        if self.main:
            with atomic_path(self.out / "config.json", overwrite=True) as tmp:
                tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
        end = cfg.total_steps if stop_after is None else min(cfg.total_steps, stop_after)
        batches = CropBatches(self.data, cfg.batch_size, cfg.crop, cfg.seed, self.dist.rank, cfg.flips)
        loader = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(start, end),
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the loader off the global RNG (bit-exact resume)
        )
        log = common.JsonlLogger(
            self.out / "log.jsonl", resume_step=start if resume else None, enabled=self.main
        )
        last_good = Path(resume) if resume is not None else None
        step = start
        t0 = time.perf_counter()
        try:
            with common.ProgressBar(
                end, f"jointnet stage {self.stage}", start=start, enabled=self.progress
            ) as bar:
                for step, batch in zip(range(start, end), loader, strict=True):
                    stage = cfg.stage_at(step)
                    if stage != self.stage:
                        if self.main:
                            self._save(self.out / f"stage{self.stage}.pt", step)
                        self._enter_stage(stage, fresh=True)
                    losses = self._train_step(step, batch, b, last_good)
                    done = step + 1
                    bar.update(1, stage=self.stage, **{k: v for k, v in losses.items() if k != "grad_norm"})
                    if done % cfg.log_every == 0 or done == end:
                        rec = {
                            "step": done,
                            "stage": self.stage,
                            "lr": self._lr(step),
                            "time": round(time.perf_counter() - t0, 3),
                        }
                        rec.update(losses)
                        log.log(rec)
                    if done % cfg.ckpt_every == 0 or done == end:
                        self._save(last, done, self._replica_checksums())
                        last_good = last
                    if self.main and cfg.sample_every > 0 and done % cfg.sample_every == 0:
                        self.save_samples(self.out / "samples" / f"step{done:07d}.png", b)
            if end == cfg.total_steps and self.main:
                self._save(self.out / f"stage{self.stage}.pt", end)
        finally:
            log.close()
        common.barrier()
        return last

    def _train_step(
        self, step: int, batch: Mapping[str, torch.Tensor], b: float, last_good: Path | None
    ) -> dict[str, float]:
        assert self.optimizer is not None
        dev = self.device
        x0 = image_to_model(batch["image"].to(dev, non_blocking=True))
        mask = batch["mask"].to(dev, non_blocking=True)
        n = x0.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), device=dev)
        a = self.alphas[t].sqrt().view(n, 1, 1, 1)
        s = (1.0 - self.alphas[t]).sqrt().view(n, 1, 1, 1)
        x_t = a * x0 + s * torch.randn_like(x0)  # Eq. 2 (same as DDPMScheduler.add_noise)
        for g in self.optimizer.param_groups:
            g["lr"] = self._lr(step)
        self.ddp.train()
        with common.autocast(dev, self.cfg.amp):
            if self.stage == 1:
                x_hat = self.ddp(x_t, t)
                loss_ce = None
            else:
                y_b = balance_labels(mask, self.model_cfg.num_classes, b)
                y_t = a * y_b + s * torch.randn_like(y_b)
                x_hat, logits = self.ddp(x_t, t, y_t)
                if bool((mask != IGNORE_INDEX).any()):
                    loss_ce = F.cross_entropy(logits.float(), mask, ignore_index=IGNORE_INDEX)  # Eq. 6
                else:  # an all-ignore batch has no CE term (keep the graph for DDP)
                    loss_ce = logits.float().sum() * 0.0
        loss_x = F.mse_loss(x_hat.float(), x0)  # Eq. 5
        loss = loss_x if loss_ce is None else loss_x + loss_ce  # Eq. 7
        common.check_finite(loss, step + 1, last_good)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        out = {"loss": loss, "loss_x": loss_x, "grad_norm": grad_norm}
        if loss_ce is not None:
            out["loss_ce"] = loss_ce
        mean = common.all_reduce_mean(
            torch.stack([v.detach().float() for v in out.values()])
        )  # one collective
        return dict(zip(out, mean.tolist(), strict=True))

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
) -> Path:
    """Train (or resume) SAR-JointNet; returns the last checkpoint path. Cleans up torch.distributed."""
    try:
        return JointNetTrainer(cfg, data, progress).run(resume, stop_after)
    finally:
        common.cleanup_distributed()
