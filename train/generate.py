"""Generate the augmented set D^a with a trained SAR-JointNet (DDIM, logit rescaling of Eq. 21).

At every DDIM step both branches predict the clean sample: SAR-Net gives ``x0_hat`` (clipped to
[-1, 1]), Label-Net gives logits ``l_hat`` that are mapped into the mask range with
``y0_hat = b * (2 * softmax(l_hat) - 1)``; then one deterministic DDIM update (eta = 0) is applied to
both. The outputs are the image ``x0`` and the logits of the last step (the teacher's soft labels).

Determinism: sample ``i`` starts from noise drawn by its own generator seeded with ``(seed, i)``, and
batches are the fixed ranges ``[k * batch, (k + 1) * batch)``, so the same seed gives the same samples
whatever was generated before; a resumed run regenerates only batches with missing samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from dakd_edge.errors import BackendUnavailable, ModelFileError, OutputError
from dakd_edge.models.jointnet import (
    SARJointNet,
    build_jointnet,
    image_from_model,
    logits_to_mask_range,
)
from dakd_edge.train.common import ProgressBar, autocast, load_checkpoint

NUM_TRAIN_TIMESTEPS = 1000
# Training settings of the teacher copied into an augmented set's manifest (provenance of D^a).
TEACHER_KEYS = (
    "data", "data_kind", "sensor", "classes", "synthetic", "preset", "crop", "stage_steps", "batch_size",
    "lr", "lr_stage3", "warmup", "ema_decay", "balancing_factor", "seed",
)  # fmt: skip


def make_train_scheduler() -> DDPMScheduler:
    """The training noise schedule: squared-cosine betas, 1000 steps, x0 (``sample``) prediction."""
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        clip_sample=False,
    )


def make_ddim(steps: int) -> DDIMScheduler:
    """DDIM over the training schedule; "trailing" spacing so sampling starts at t = 999 (pure noise)."""
    if steps < 1 or steps > NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"DDIM steps must be in [1, {NUM_TRAIN_TIMESTEPS}], got {steps}")
    ddim = DDIMScheduler.from_config(make_train_scheduler().config, timestep_spacing="trailing")
    ddim.set_timesteps(steps)
    return ddim


def initial_noise(
    seed: int, indices: Sequence[int], shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Per-sample Gaussian noise: sample ``i`` uses ``torch.Generator().manual_seed(hash(seed, i))``."""
    out = []
    for i in indices:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, int(i)]).generate_state(1)[0]))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


@torch.no_grad()
def sample_joint(
    model: SARJointNet,
    b: float,
    indices: Sequence[int],
    size: tuple[int, int],
    steps: int = 200,
    seed: int = 0,
    device: torch.device | str = "cpu",
    amp: bool = True,
    joint: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """DDIM-sample images (unit luminance, (N, 1, H, W)) and logits ((N, K, H, W) float32).

    ``joint=False`` samples SAR-Net alone (training stage 1; logits are None).
    """
    device = torch.device(device)
    model.eval()
    k = model.config.num_classes
    h, w = size
    ddim = make_ddim(steps)
    x = initial_noise(seed, indices, (1, h, w), device)
    y = initial_noise(seed + 1_000_003, indices, (k, h, w), device) if joint else None
    logits = None
    for t in ddim.timesteps:
        tt = torch.full((x.shape[0],), int(t), device=device, dtype=torch.long)
        with autocast(device, amp):
            out = model(x, tt, y) if joint else model(x, tt)
        x0_hat = (out[0] if joint else out).float().clamp(-1.0, 1.0)
        x = ddim.step(x0_hat, int(t), x, eta=0.0).prev_sample
        if joint:
            logits = out[1].float()
            y0_hat = logits_to_mask_range(logits, b)  # Eq. 21
            y = ddim.step(y0_hat, int(t), y, eta=0.0).prev_sample
    return image_from_model(x), logits


# ---------------------------------------------------------------------------------------- from a file
@dataclass
class LoadedJointNet:
    model: SARJointNet
    balancing_factor: float
    class_names: list[str]
    sample_size: int
    step: int
    stage: int
    path: Path
    train_config: dict[str, Any] = field(default_factory=dict)


def load_jointnet(
    path: str | os.PathLike, weights: str = "ema", device: torch.device | str = "cpu"
) -> LoadedJointNet:
    """Rebuild SAR-JointNet from a training checkpoint (EMA weights by default)."""
    ck = load_checkpoint(path, kind="jointnet")
    cfg = ck["config"]
    model = build_jointnet(cfg["model"])
    if weights == "ema":
        if ck.get("ema") is None:
            raise ModelFileError(f"{path}: no EMA weights in this checkpoint; use --weights raw")
        state = ck["ema"]["shadow"]
    elif weights == "raw":
        state = ck["model"]
    else:
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not fit the stored config: {str(e).splitlines()[0]}") from e
    extra = ck.get("extra", {})
    return LoadedJointNet(
        model=model.to(device).eval(),
        balancing_factor=float(cfg["balancing_factor"]),
        class_names=list(extra.get("class_names") or [f"class{i}" for i in range(model.config.num_classes)]),
        sample_size=int(cfg.get("crop", model.config.sample_size)),
        step=int(ck["step"]),
        stage=int(extra.get("stage", 0)),
        path=Path(path),
        train_config=dict(cfg),
    )


def generate_augmented(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    n: int,
    steps: int = 200,
    batch: int = 16,
    seed: int = 0,
    size: int | None = None,
    device: str = "auto",
    weights: str = "ema",
    amp: bool = True,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``n`` (image, logits) pairs to ``out`` (dakd-augmented format); resumable.

    ``shard=(k, m)``: this process makes only batches ``j`` with ``j % m == k``, so ``m`` GPUs can fill
    one folder in parallel (samples are seeded per index, the union equals a single-process run).
    ``out`` may hold a set of the same generator settings (resumed); one of other settings is refused
    unless ``overwrite`` (its samples are removed first). Returns a summary dict (written, skipped, path
    of the manifest).
    """
    from dakd_edge.data.augmented import AugmentedWriter

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    if not 1 <= steps <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"--steps must be in [1, {NUM_TRAIN_TIMESTEPS}] (DDIM steps), got {steps}")
    if size is not None and size < 1:
        raise ValueError(f"--size must be >= 1 (or left out for the training crop), got {size}")
    k, m = shard
    if m < 1 or not 0 <= k < m:
        raise ValueError(f"--shard must be K/M with 0 <= K < M, got {k}/{m}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("--device cuda requested but no CUDA device is visible to torch")
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    net = load_jointnet(checkpoint, weights=weights, device=dev)
    if net.stage < 2:
        raise ModelFileError(
            f"{checkpoint}: checkpoint is from training stage {net.stage}; the label branch is trained from "
            "stage 2 on, generate from a stage-2 or stage-3 checkpoint"
        )
    hw = int(size or net.sample_size)
    f = net.model.config.downsample_factor
    if hw % f:
        raise ValueError(f"--size {hw} must be a multiple of {f} for this model")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    info = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": net.step,
        "stage": net.stage,
        "weights": weights,
        "ddim_steps": steps,
        "seed": seed,
        "size": hw,
        "model": net.model.config.to_dict(),
        "teacher": {k: net.train_config[k] for k in TEACHER_KEYS if k in net.train_config},
    }
    writer = AugmentedWriter(
        out, net.model.config.num_classes, net.class_names, net.balancing_factor, info, overwrite=overwrite
    )
    ids = [f"{i:06d}" for i in range(n)]
    written = skipped = 0
    manifest = out / "manifest.json"
    try:
        starts = [s for j, s in enumerate(range(0, n, batch)) if j % m == k]
        total = sum(min(s + batch, n) - s for s in starts)
        with ProgressBar(total, "generate", enabled=progress) as bar:
            for start in starts:
                chunk = list(range(start, min(start + batch, n)))
                todo = [i for i in chunk if not writer.has(ids[i])]
                if not todo:
                    skipped += len(chunk)
                    bar.update(len(chunk))
                    continue
                # Whole fixed batch, so the numbers match a run that was never interrupted.
                images, logits = sample_joint(
                    net.model, net.balancing_factor, chunk, (hw, hw), steps, seed, dev, amp
                )
                assert logits is not None
                img8 = (images[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
                lg = logits.cpu().numpy()
                for j, i in enumerate(chunk):
                    if i in todo:
                        writer.add(ids[i], img8[j], lg[j].astype(np.float16))
                        written += 1
                    else:
                        skipped += 1
                bar.update(len(chunk))
    finally:
        if writer.sample_ids():  # no manifest for a set that holds nothing (a failed first batch)
            manifest = writer.close()
    return {"written": written, "skipped": skipped, "manifest": str(manifest), "n": n, "shard": f"{k}/{m}"}
