"""Training utilities shared by SAR-JointNet and SAROSS-Net training, and their common skeleton.

:class:`Trainer` is the loop both trainers run (set-up, step, validation, checkpoint, resume);
:class:`~dakd_edge.train.jointnet.JointNetTrainer` and :class:`~dakd_edge.train.saross.DakdTrainer`
fill in its hooks. Around it, everything a run needs to stop and continue *bit for bit*: seeding and
full RNG state capture, an EMA of the weights, atomic checkpoints that load with
``torch.load(weights_only=True)`` (so their content is restricted to tensors, dicts, lists, tuples,
numbers and strings), a NaN/inf guard, torchrun/DDP set-up, AMP on CUDA only, a JSON-lines log, a
rich progress bar and the synthetic-patch training source.

Determinism recipe used by the trainers: the data for step ``s`` is drawn from
``step_rng(seed, s, rank)`` (a fresh numpy Generator per step), so data order never depends on how far
a previous run got; the diffusion noise and timesteps come from the global torch RNG, whose state is
saved in every checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dakd_edge import jsonout
from dakd_edge.atomic import atomic_path, check_room, describe_write_error
from dakd_edge.errors import DatasetError, ModelFileError, OutputError, TrainingError

if TYPE_CHECKING:  # typing.Self is Python 3.11+: annotations only (Jetson runs 3.10)
    from typing import Self

CHECKPOINT_FORMAT = "dakd-train-checkpoint"
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    """Seed python, numpy's legacy global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may use the legacy global RNG)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def step_rng(seed: int, *keys: int) -> np.random.Generator:
    """A numpy Generator that depends only on ``(seed, *keys)``, e.g. ``(seed, step, rank)``.

    Drawing each step's data from its own generator makes the data stream independent of restarts.
    """
    return np.random.default_rng([int(seed) % 2**63, *(int(k) for k in keys)])


def capture_rng_state(generators: Mapping[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Snapshot every RNG the run touches, in a form ``torch.load(weights_only=True)`` accepts."""
    version, mt, gauss = random.getstate()
    legacy = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *(legacy[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.bit_generator.state for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, np.random.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng_state` (numpy Generators are restored in place)."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            # Resuming on a different GPU count: seed what exists from the saved first device.
            for i in range(torch.cuda.device_count()):
                torch.cuda.set_rng_state(cuda[min(i, len(cuda) - 1)], i)
        else:
            torch.cuda.set_rng_state_all(cuda)
    for key, g in (generators or {}).items():
        if key not in state.get("generators", {}):
            raise TrainingError(f"checkpoint has no state for the RNG {key!r}")
        g.bit_generator.state = state["generators"][key]


# ------------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's floating-point parameters (buffers are copied).

    ``decay`` ramps up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by
    the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in unwrap(model).state_dict().items()
        }

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.num_updates += 1
        for k, v in unwrap(model).state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.lerp_(v.detach().to(s.dtype), 1.0 - d)
            else:
                s.copy_(v)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        unwrap(model).load_state_dict(self.shadow)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily run ``model`` with the EMA weights (for sampling during training)."""
        m = unwrap(model)
        backup = {k: v.detach().clone() for k, v in m.state_dict().items()}
        self.copy_to(m)
        try:
            yield m
        finally:
            m.load_state_dict(backup)

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": dict(self.shadow),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise TrainingError(f"EMA state lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            if k in self.shadow:
                self.shadow[k].copy_(v)


class _Closing:
    """``with obj: ...`` calls ``obj.close()`` at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- logger
class JsonlLogger(_Closing):
    """Append one JSON object per line (flushed), on the main process only.

    On resume (``resume_step`` given) records after that step are dropped first, so the log reads as
    one uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._fh = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if int(rec.get("step", 0)) <= resume_step:
                    kept.append(line)
            with atomic_path(self.path, overwrite=True) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def log(self, record: Mapping[str, Any]) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(jsonout.dumps(_jsonable(record), sort_keys=True) + "\n")  # NaN IoU: null
            self._fh.flush()
        except OSError as e:  # a plain write error has no file name: the CLI named the wrong device
            self.close()
            raise OutputError(describe_write_error(e, self.path)) from None

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # a line cut by a full disk is skipped on resume
                self._fh.close()
            self._fh = None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


# ------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    config: Mapping[str, Any],
    model: nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rng: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint atomically (temporary file + rename; overwrites ``path``).

    Content (all plain, ``weights_only``-loadable): ``format``, ``version``, ``kind`` (e.g.
    ``"jointnet"``), ``config`` (JSON-like dict that rebuilds model and run), ``step``, ``model``,
    ``ema``, ``optimizer``, ``scaler``, ``rng`` and free-form ``extra``.
    """
    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "config": _jsonable(dict(config)),
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "ema": _to_cpu(ema.state_dict()) if ema is not None else None,
        "optimizer": _to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": _to_cpu(dict(rng)) if rng is not None else None,
        "extra": _jsonable(dict(extra or {})),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # Through a Python file: given a path, torch's C++ writer turns ENOSPC into "iostream error"
    with atomic_path(p, overwrite=True) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return p


def checkpoint_bytes(model: nn.Module, ema: bool = True, optimizer_copies: int = 2) -> int:
    """About the size of a checkpoint: the weights, their EMA and the optimiser's moments (AdamW: 2)."""
    weights = sum(v.numel() * v.element_size() for v in unwrap(model).state_dict().values())
    return weights * (1 + int(ema) + optimizer_copies)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (CPU tensors, ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (corrupt/unsafe files raise many types)
        # torch's own text advises weights_only=False, i.e. running whatever the file holds: not shown
        raise ModelFileError(
            f"cannot read checkpoint {p}: not a PyTorch checkpoint, or corrupt ({type(e).__name__})"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{p} is not a dakd-edge training checkpoint")
    if kind is not None and obj.get("kind") != kind:
        raise ModelFileError(f"{p} is a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    return obj


def _to_cpu(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, Mapping):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_to_cpu(x) for x in v)
    return v


# ---------------------------------------------------------------------------------------- NaN/inf guard
def check_finite(loss: torch.Tensor | float, step: int, last_checkpoint: str | os.PathLike | None) -> None:
    """Raise :class:`TrainingError` when ``loss`` is NaN/inf (on any rank, so all ranks stop together).

    Call it *before* the optimiser step: the weights and the last checkpoint on disk stay good.
    """
    t = loss.detach().float().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    bad = (~torch.isfinite(t)).float()
    if is_distributed():
        bad = bad.to(_collective_device())
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item() > 0:
        where = _after_divergence(last_checkpoint)
        value = t.item() if math.isfinite(t.item()) or not is_distributed() else "non-finite on another rank"
        raise TrainingError(f"non-finite loss ({value}) at step {step}; training stopped; {where}")


def check_finite_gradient(grad_norm: torch.Tensor, last_checkpoint: str | os.PathLike | None) -> None:
    """Raise :class:`TrainingError` when the gradient norm is NaN/inf (call before the optimiser step;
    DDP's gradients are already averaged, so every rank stops together)."""
    if bool(torch.isfinite(grad_norm.detach()).all()):
        return
    raise TrainingError(
        f"non-finite gradient ({float(grad_norm):g}) with a finite loss; training stopped before the "
        f"weights were updated; {_after_divergence(last_checkpoint)}"
    )


def _after_divergence(last_checkpoint: str | os.PathLike | None) -> str:
    """What a run stopped by a non-finite loss or gradient can do: its last checkpoint, if written."""
    if last_checkpoint and Path(last_checkpoint).exists():
        return (
            f"last good checkpoint kept: {last_checkpoint} (--resume {last_checkpoint} continues with the "
            "run's settings; if the loss diverges again, start a new run with a lower --lr)"
        )
    return "no checkpoint was written yet"


def gradient_norm(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients of ``params`` (float64: finite gradients give a finite norm)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
    )


# ------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Set up torch.distributed when launched by torchrun (``WORLD_SIZE`` > 1), else a single process.

    Backend: NCCL on CUDA, gloo on the CPU. ``device``: "auto" (CUDA when available), "cpu", "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but no CUDA device is visible to torch")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = None
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        else:
            return model


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity without distribution); returns a new tensor."""
    t = t.detach().clone()
    if is_distributed():
        dev = t.device
        t = t.to(_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = (t / dist.get_world_size()).to(dev)
    return t


def mean_over_ranks(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Scalars averaged over ranks in one collective (as floats; identity without distribution)."""
    stacked = torch.stack([torch.as_tensor(v).detach().float().reshape(()) for v in values.values()])
    return dict(zip(values, all_reduce_mean(stacked).tolist(), strict=True))


def replica_checksums(model: nn.Module) -> list[float]:
    """Sum of all weights on every rank (a collective: call on all ranks). DDP replicas must agree
    exactly; a mismatch raises :class:`TrainingError` (it would be a bug)."""
    local = torch.stack([p.detach().double().sum() for p in unwrap(model).parameters()]).sum().reshape(1)
    if not is_distributed():
        return [float(local)]
    dev = _collective_device()
    parts = [torch.zeros(1, dtype=torch.float64, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.to(dev))
    values = [float(v) for v in parts]
    if len(set(values)) > 1:
        raise TrainingError(f"DDP replicas diverged (weight sums per rank: {values}); this is a bug")
    return values


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else ``model`` itself."""
    if info.world_size <= 1:
        return model
    dev = info.device
    return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -------------------------------------------------------------------------------------------------- AMP
def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU supports it (no loss scaling needed), else float16."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only; on the CPU the run stays in float32 (bit-exact resume)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=amp_dtype(device))
    return contextlib.nullcontext()


def make_grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler active only for float16 autocast on CUDA (bfloat16 and float32 need none)."""
    active = enabled and device.type == "cuda" and amp_dtype(device) == torch.float16
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=active)


# --------------------------------------------------------------------------------------------- progress
class ProgressBar(_Closing):
    """A rich progress bar showing step, losses and ETA; silent on non-main ranks or when disabled."""

    def __init__(self, total: int, description: str = "train", start: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
            console=Console(stderr=True),  # as every command's progress: stdout is for results
        )
        self._task = self._progress.add_task(description, total=total, completed=start, info="")
        self._progress.start()

    def update(self, advance: int = 1, **fields: float | str) -> None:
        if self._progress is None:
            return
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self._progress.update(self._task, advance=advance, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# ---------------------------------------------------------------------------------------------- data
class SyntheticPatches:
    """``n`` synthetic SAR patches with labels (:func:`dakd_edge.data.synthetic.generate_patch`).

    Patch ``i`` is rendered from seed ``seed * stride + i`` on first use and kept (rendering costs
    ~0.1-1 s a patch): as 8-bit luminance like the real releases (``eight_bit``, ~5 B/pixel) or as the
    float32 the generator returns. Items are ``{"image": (1, H, W) float32 unit luminance, "mask": (H, W)
    int64}``; :meth:`render_all` renders every patch at once (before DataLoader workers copy them).
    """

    def __init__(
        self,
        n: int,
        size: int,
        num_classes: int = 2,
        seed: int = 0,
        *,
        stride: int = 1_000_003,
        eight_bit: bool = True,
    ) -> None:
        from dakd_edge.data.synthetic import generate_patch
        from dakd_edge.meta import ModelMeta

        self._gen = generate_patch
        self.n, self.size, self.num_classes, self.seed = int(n), int(size), int(num_classes), int(seed)
        self.stride, self.eight_bit = int(stride), bool(eight_bit)
        self.class_names = list(ModelMeta.default_for("x", num_classes).class_names)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            image, mask = self._gen(
                seed=self.seed * self.stride + i, size=self.size, num_classes=self.num_classes
            )
            image = np.asarray(image)
            image = np.round(image * 255).astype(np.uint8) if self.eight_bit else image.astype(np.float32)
            self._cache[i] = (image.reshape(image.shape[-2:]), np.asarray(mask, np.uint8))
        image, mask = self._cache[i]
        unit = image.astype(np.float32) / 255.0 if self.eight_bit else image
        return {"image": unit[None], "mask": mask.astype(np.int64)}

    def render_all(self) -> SyntheticPatches:
        for i in range(self.n):
            self[i]
        return self


# ------------------------------------------------------------------------------------------- trainer
class Trainer:
    """The loop both trainers share: set-up, step, validation, checkpoint, resume.

    :meth:`run` refuses an ``out`` that already holds a run (unless resuming, or ``overwrite``: its
    files are removed), calls :meth:`setup` (data, seeded model, optimiser), then :meth:`resume` or
    :meth:`start_fresh`; only then, all checked, creates the run folder, writes ``config.json``, and
    trains steps ``start ..
    end`` from :meth:`loader`: per step :meth:`before_step`, :meth:`train_step` (returns the
    rank-averaged losses), a log record every ``cfg.log_every`` steps (:meth:`log_record`),
    :meth:`after_step` (validation, samples), and ``last.pt`` every ``cfg.ckpt_every`` steps and at the
    end. :meth:`finish` makes the return value. A subclass sets ``kind`` (the checkpoint kind),
    ``log_file``, and ``model``, ``optimizer``, ``ema`` (or None), ``scaler`` in :meth:`setup`.

    Checkpoints hold the model, EMA, optimiser, scaler, every RNG state, the config and
    :meth:`checkpoint_extra`, plus the world size and the DDP replica checksums. A resume must
    match the config (:meth:`RunConfig.check_resume`) and the world size (each rank draws its own
    data), then :meth:`load_state` restores what the subclass owns.
    """

    kind = ""
    log_file = "metrics.jsonl"
    config_on_resume = False  # rewrite config.json when resuming (else it keeps the run's start time)

    def __init__(
        self, cfg: Any, out: str | os.PathLike, progress: bool = True, overwrite: bool = False
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.overwrite = overwrite
        self.dist = init_distributed(cfg.device)
        self.device = self.dist.device
        self.main = self.dist.is_main
        self.progress = progress and self.main
        self.model: nn.Module
        self.net: nn.Module  # the model as trained: in DDP when distributed
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: torch.optim.lr_scheduler.LRScheduler | None = None
        self.ema: EMA | None = None
        self.scaler: torch.amp.GradScaler
        self.logger: JsonlLogger | None = None
        self.last_good: Path | None = None
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------------------- subclass hooks
    @property
    def total_steps(self) -> int:
        return int(self.cfg.total_steps)

    def setup(self) -> None:
        raise NotImplementedError

    def start_fresh(self) -> int:
        return 0

    def complete_config(self, saved: Mapping[str, Any]) -> None:
        """Fill settings this run left open from the config ``saved`` in the checkpoint it resumes."""

    def load_state(self, ck: Mapping[str, Any]) -> None:
        """Restore the optimiser and what the subclass owns from checkpoint ``ck``."""
        raise NotImplementedError

    def loader(self, start: int, end: int) -> Any:
        raise NotImplementedError

    def before_step(self, step: int) -> None:
        pass

    def train_step(self, step: int, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def bar_title(self) -> str:
        return "train"

    def bar_fields(self, losses: Mapping[str, float]) -> dict[str, float | str]:
        return {"loss": losses["loss"]}

    def log_record(self, step: int, losses: Mapping[str, float]) -> dict[str, Any]:
        return {"step": step + 1, **losses}

    def after_step(self, done: int) -> None:
        pass

    def extra_checkpoints(self, start: int, end: int) -> int:
        """Checkpoints of the model's size that steps ``start`` to ``end`` keep beside ``last.pt`` (and
        its replacement while it is written): checked for room before the first step."""
        return 0

    def checkpoint_extra(self) -> dict[str, Any]:
        return {}

    def finish(self, done: int, end: int) -> Any:
        return done

    # ------------------------------------------------------------------------------------ the loop
    def run(self, resume: str | os.PathLike | None = None, stop_after: int | None = None) -> Any:
        """Train from scratch or from checkpoint ``resume``; ``stop_after``: end this session (with a
        checkpoint) once that many steps are done, to continue later with ``resume``."""
        if stop_after is not None and stop_after < 1:
            raise TrainingError(f"--stop-after must be >= 1, got {stop_after}")
        if resume is not None and self.overwrite:
            raise TrainingError(
                "--resume continues the run in its folder; it cannot be combined with --overwrite"
            )
        old = self.run_files() if resume is None else []
        if old and not self.overwrite:
            last = self.out / "last.pt"  # a run stopped before its first checkpoint has none to resume
            go_on = (
                f", --resume {last} to continue it" if last.is_file() else " (it has no checkpoint to resume)"
            )
            raise TrainingError(
                f"{self.out} already holds a run ({', '.join(p.name for p in old[:3])}); pass --overwrite "
                f"to replace it{go_on}, or choose another --out"
            )
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"--out {self.out} exists and is not a folder")
        self.setup()
        start = self.resume(resume) if resume is not None else self.start_fresh()
        end = self.total_steps if stop_after is None else min(self.total_steps, stop_after)
        if end <= start:
            raise TrainingError(
                f"nothing to do: the checkpoint is at step {start}, the run "
                + (f"ends at step {self.total_steps}" if end == self.total_steps else f"stops after {end}")
            )
        if self.main:  # each checkpoint is written beside the last one, then renamed over it
            freed = old if resume is None else [self.out / "last.pt"]
            need = (2 + self.extra_checkpoints(start, end)) * checkpoint_bytes(
                self.model, self.ema is not None
            )
            need -= sum(p.stat().st_size for p in freed if p.is_file())
            check_room(self.out, need, f"the checkpoints of {self.out}")
        # Everything is checked: only now touch the run folder (a refused run leaves it as it was).
        if self.main:
            for p in old:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            self.out.mkdir(parents=True, exist_ok=True)
            if resume is None or self.config_on_resume:
                with atomic_path(self.out / "config.json", overwrite=True) as tmp:
                    tmp.write_text(json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True))
        barrier()
        loader = self.loader(start, end)
        self.logger = JsonlLogger(
            self.out / self.log_file, resume_step=start if resume is not None else None, enabled=self.main
        )
        self.last_good = Path(resume) if resume is not None else None
        self.t0 = time.perf_counter()
        done = start
        try:
            with ProgressBar(end, self.bar_title(), start=start, enabled=self.progress) as bar:
                for step, batch in zip(range(start, end), loader, strict=True):
                    self.before_step(step)
                    losses = self.train_step(step, batch)
                    done = step + 1
                    bar.update(1, **self.bar_fields(losses))
                    if done % self.cfg.log_every == 0 or done == end:
                        self.logger.log(self.log_record(step, losses))
                    self.after_step(done)
                    if done % self.cfg.ckpt_every == 0 or done == end:
                        self.checkpoint(done)
        except OutputError as e:  # a full disk: the last checkpoint is intact (atomic writes), say so
            raise OutputError(f"{e}; training stopped at step {done}; {self.resume_hint()}") from None
        except DatasetError as e:  # a file that fails when first read mid-run: fix it, then resume
            # (rstrip: from a DataLoader worker the message is a traceback whose last line is the error)
            raise DatasetError(
                f"{str(e).rstrip()}; training stopped at step {done}; {self.resume_hint()}"
            ) from None
        except BaseException as e:  # Ctrl-C / SIGTERM (not an error): say where the run can go on from
            if not isinstance(e, Exception) and self.main:
                print(f"training stopped after step {done} (steps since the last checkpoint are not kept); "
                      f"{self.resume_hint()}", file=sys.stderr, flush=True)  # fmt: skip
            raise
        finally:
            self.logger.close()
        return self.finish(done, end)

    def run_files(self) -> list[Path]:
        """The files (and sample folder) of a run already in ``out``: what a new run would mix with."""
        if not self.out.is_dir():
            return []
        names = ("config.json", "last.pt", self.log_file, "best.safetensors", "model.safetensors", "samples")
        found = [self.out / n for n in names if (self.out / n).exists()]
        return found + sorted(self.out.glob("stage*.pt"))

    def optimizer_step(
        self, loss: torch.Tensor, params: Iterable[nn.Parameter], clip: float, norm: bool = False
    ) -> torch.Tensor | None:
        """Backward, gradient clipping at ``clip`` (0: none; ``norm``: measure the norm anyway),
        optimiser and scaler step, learning-rate schedule, EMA. Returns the gradient norm if measured.

        Call after :func:`check_finite` so that a bad loss never reaches the weights.
        """
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = None
        if clip > 0 or norm:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        # (a float16 scaler skips steps with NaN/inf gradients and lowers its scale: no check then)
        if not self.scaler.is_enabled():
            # a finite loss can still have NaN/inf gradients: they would reach the weights, the EMA
            # and the next checkpoint, and the stop at the next step would name that checkpoint.
            # Without clipping (--grad-clip 0) no norm was measured: the gradients are checked here.
            check_finite_gradient(
                grad_norm if grad_norm is not None else gradient_norm(params), self.last_good
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.schedule is not None:
            self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return grad_norm

    # ---------------------------------------------------------------------------------- checkpoints
    def save(self, path: Path, step: int, checksums: list[float] | None = None) -> None:
        """Write a checkpoint (main process only)."""
        if not self.main:
            return
        save_checkpoint(
            path,
            kind=self.kind,
            config=self.cfg.to_dict(),
            model=self.model,
            step=step,
            optimizer=self.optimizer,
            ema=self.ema,
            scaler=self.scaler,
            rng=capture_rng_state(),
            extra={
                **self.checkpoint_extra(),
                "world_size": self.dist.world_size,
                "replica_checksums": checksums,
            },
        )

    def checkpoint(self, done: int) -> None:
        """``last.pt`` after ``done`` steps, with the replica checksums (call on every rank)."""
        last = self.out / "last.pt"
        self.save(last, done, replica_checksums(self.model))
        self.last_good = last
        barrier()

    def resume_hint(self) -> str:
        """Where to continue from after a failure: the last checkpoint written, if any."""
        if self.last_good is not None and self.last_good.exists():
            return f"last good checkpoint kept: {self.last_good} (resume with --resume {self.last_good})"
        return "no checkpoint was written yet"

    def resume(self, path: str | os.PathLike) -> int:
        """Load checkpoint ``path`` into the set-up run; returns its step."""
        ck = load_checkpoint(path, kind=self.kind)
        self.complete_config(ck["config"])
        self.cfg.check_resume(ck["config"], path)
        ws = ck["extra"].get("world_size")
        if ws is not None and int(ws) != self.dist.world_size:
            raise TrainingError(
                f"cannot resume {path}: it was trained on {ws} processes, now {self.dist.world_size}"
            )
        unwrap(self.model).load_state_dict(ck["model"])
        if self.ema is not None and ck.get("ema"):
            self.ema.load_state_dict(ck["ema"])
        self.load_state(ck)
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        restore_rng_state(ck["rng"])
        return int(ck["step"])
