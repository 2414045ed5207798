"""Generate the augmented set D^a with a trained SAR-JointNet (DDIM, logit rescaling of Eq. 21).

At every DDIM step both branches predict the clean sample: SAR-Net gives ``x0_hat`` (clipped to
[-1, 1]), Label-Net gives logits ``l_hat`` that are mapped into the mask range with
``y0_hat = b * (2 * softmax(l_hat) - 1)``; then one deterministic DDIM update (eta = 0) is applied to
both. The outputs are the image ``x0`` and the logits of the last step (the teacher's soft labels).

Determinism: sample ``i`` starts from noise drawn by its own generator seeded with ``(seed, i)``, and
batches are the fixed ranges ``[k * batch, (k + 1) * batch)``, always sampled whole (the last one too,
past ``n``: the batch composition changes the float results), so the same settings give the same
samples whatever was generated before; a resumed run regenerates only batches with missing samples.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from dakd_edge.atomic import is_disk_full, mount_point
from dakd_edge.errors import BackendUnavailable, DakdError, ModelFileError, OutputError
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


def ddim_step(
    ddim: DDIMScheduler, x0_hat: torch.Tensor, t: int, t_next: int, sample: torch.Tensor
) -> torch.Tensor:
    """One deterministic DDIM update (Song et al. 2021, Eq. 12, eta = 0) from timestep ``t`` to the next
    timestep of the sampling sequence ``t_next`` (-1 after the last: alpha_bar = 1, the clean sample).

    ``DDIMScheduler.step`` steps to ``t - 1000 // steps`` instead, which is the next timestep only when
    ``steps`` divides 1000; otherwise the sample lands on a noise level the next model call is not told
    about (and the last update can stop short of alpha_bar = 1). Same float32 arithmetic as diffusers,
    so where they agree (200 steps, the default) the results are bit for bit the same.
    """
    a_t = ddim.alphas_cumprod[t]
    a_next = ddim.alphas_cumprod[t_next] if t_next >= 0 else ddim.final_alpha_cumprod
    eps = (sample - a_t ** (0.5) * x0_hat) / (1 - a_t) ** (0.5)
    return a_next ** (0.5) * x0_hat + (1 - a_next) ** (0.5) * eps


# How each DDIM update steps, recorded in an augmented set's manifest ("ddim_update"). Sets begun before
# it was recorded used DDIMScheduler.step (to t - 1000 // steps): the same update where the steps divide
# 1000, another one elsewhere, so such a set is not resumed with this sampler (its samples would mix).
DDIM_UPDATE = "next-timestep"
_OLD_DDIM_UPDATE = "t - 1000 // steps"


def ddim_update_of(generator: dict[str, Any]) -> str:
    """The DDIM update an augmented set's samples were made with (from its manifest's ``generator``)."""
    if "ddim_update" in generator:
        return str(generator["ddim_update"])
    steps = generator.get("ddim_steps")
    if isinstance(steps, int) and 1 <= steps <= NUM_TRAIN_TIMESTEPS and NUM_TRAIN_TIMESTEPS % steps:
        return _OLD_DDIM_UPDATE
    return DDIM_UPDATE


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
    timesteps = [int(t) for t in ddim.timesteps]
    for i, t in enumerate(timesteps):
        t_next = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        with autocast(device, amp):
            out = model(x, tt, y) if joint else model(x, tt)
        x0_hat = (out[0] if joint else out).float().clamp(-1.0, 1.0)
        x = ddim_step(ddim, x0_hat, t, t_next, x)
        if joint:
            logits = out[1].float()
            y0_hat = logits_to_mask_range(logits, b)  # Eq. 21
            y = ddim_step(ddim, y0_hat, t, t_next, y)
    return image_from_model(x), logits


def _check_ddim_update(out: Path, overwrite: bool) -> None:
    """Refuse to add samples to a set begun with another DDIM update (one made before the update was
    fixed, with steps that do not divide 1000): the set would hold samples of two samplers."""
    from dakd_edge.data.augmented import MANIFEST, read_manifest

    if overwrite or not (out / MANIFEST).is_file():
        return
    before = ddim_update_of(read_manifest(out).get("generator") or {})
    if before != DDIM_UPDATE:
        raise OutputError(
            f"{out} holds a set begun by an older dakd-edge whose DDIM steps went to {before} "
            f"(not the next timestep when --steps does not divide {NUM_TRAIN_TIMESTEPS}); its samples "
            "would not match new ones: pass --overwrite to remake it, or choose another --out"
        )


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
    resume: bool = True,
) -> dict[str, Any]:
    """Write samples ``0..n-1`` (image, logits) to ``out`` (dakd-augmented format).

    ``out`` holding a set is refused unless ``resume`` (same generator settings required: complete
    samples are kept, missing ones made, so the result equals a one-shot run; a larger ``n`` appends,
    a smaller one lists only the first ``n``) or ``overwrite`` (its samples are removed before the
    first new one is written; it wins over ``resume``). ``resume`` is the default here, so a rerun
    script continues its set; the CLI asks for ``--resume``. ``shard=(k, m)``: this process makes
    only batches ``j`` with ``j % m == k``, so ``m`` GPUs fill one folder in parallel; with ``m > 1`` a
    set of the same settings is always joined (the processes start in any order). A run that writes
    no sample leaves ``out`` as it found it. Returns a summary dict (written, skipped, manifest,
    complete, count).
    """
    from dakd_edge.data.augmented import AugmentedWriter, check_existing, complete_ids

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
    info = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": net.step,
        "stage": net.stage,
        "weights": weights,
        "ddim_steps": steps,
        "ddim_update": DDIM_UPDATE,
        "seed": seed,
        "size": hw,
        "batch": batch,  # sample i is computed in batch [i // batch * batch, +batch): part of its numbers
        "device": dev.type,
        "amp": amp and dev.type == "cuda",  # autocast is CUDA-only
        "model": net.model.config.to_dict(),
        "teacher": {k: net.train_config[k] for k in TEACHER_KEYS if k in net.train_config},
    }
    num_classes = net.model.config.num_classes
    check_existing(out, num_classes, info, resume=resume or m > 1, overwrite=overwrite)
    _check_ddim_update(out, overwrite)
    ids = [f"{i:06d}" for i in range(n)]
    done = set() if overwrite else set(complete_ids(out))
    created = [
        p for p in (*reversed(out.absolute().parents), out, out / "images", out / "logits") if not p.exists()
    ]
    writer: AugmentedWriter | None = None  # made before the first write: a failed first batch leaves nothing
    written = skipped = 0
    try:
        starts = [s for j, s in enumerate(range(0, n, batch)) if j % m == k]
        total = sum(min(s + batch, n) - s for s in starts)
        with ProgressBar(total, "generate", enabled=progress) as bar:
            for start in starts:
                count = min(start + batch, n) - start
                todo = [i for i in range(start, start + count) if ids[i] not in done]
                if todo:
                    # The whole fixed batch, also past n: batch composition changes the numbers, and
                    # this way sample i is the same whatever n, interruptions or resumes there were.
                    chunk = list(range(start, start + batch))
                    images, logits = sample_joint(
                        net.model, net.balancing_factor, chunk, (hw, hw), steps, seed, dev, amp
                    )
                    assert logits is not None
                    img8 = (images[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
                    lg = logits.cpu().numpy().astype(np.float16)
                    if writer is None:
                        writer = AugmentedWriter(
                            out, num_classes, net.class_names, net.balancing_factor, info, overwrite=overwrite
                        )
                        writer.close(ids, done=False)  # provenance first: a killed run is resumable
                    for i in todo:
                        writer.add(ids[i], img8[i - start], lg[i - start])
                    written += len(todo)
                skipped += count - len(todo)
                bar.update(count)
        if writer is None and done:  # nothing to make: the manifest still records this n
            writer = AugmentedWriter(out, num_classes, net.class_names, net.balancing_factor, info)
        manifest = writer.close(ids) if writer is not None else None  # None: a shard with no batch
    except BaseException as e:
        kept = _after_failure(writer, ids, created, len(done))
        if isinstance(e, Exception) and is_disk_full(e):
            raise OutputError(
                f"no space left on {mount_point(out)} (writing {out}); {kept} of {n} samples kept, free some "
                "space and rerun with --resume"
            ) from None
        if not isinstance(e, Exception):  # Ctrl-C / SIGTERM (not an error): say what stays, as train does
            print(
                f"generation stopped: {kept} of {n} samples kept in {out}"
                + ("; the same command with --resume goes on" if kept else ""),
                file=sys.stderr,
                flush=True,
            )
        raise
    count = len(set(complete_ids(out)) & set(ids))
    return {
        "written": written, "skipped": skipped, "manifest": str(manifest) if manifest else None, "n": n,
        "shard": f"{k}/{m}", "complete": count == n, "count": count,
    }  # fmt: skip


def _after_failure(writer: Any, ids: list[str], created: list[Path], before: int) -> int:
    """Leave a resumable set marked unfinished, or nothing at all when this run wrote no sample into a
    folder that held none; returns how many of ``ids`` are on disk (``before``: the run wrote none)."""
    from dakd_edge.data.augmented import MANIFEST

    if writer is None:  # failed before its first write: the samples of earlier runs are all there is
        return before
    if writer.sample_ids():
        with contextlib.suppress(DakdError, OSError):  # a full disk: the manifest written first stays
            writer.close(ids, done=False)
        return len(set(writer.sample_ids()) & set(ids))
    with contextlib.suppress(OSError):
        (writer.root / MANIFEST).unlink(missing_ok=True)
        for p in reversed(created):
            p.rmdir()
    return 0
