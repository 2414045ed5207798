"""The trainers' run configurations: typed, JSON-like, saved in every checkpoint (torch-free).

:class:`TrainConfig` defines a DAKD student run (:mod:`dakd_edge.train.saross`),
:class:`JointNetTrainConfig` a SAR-JointNet teacher run (:mod:`dakd_edge.train.jointnet`). Both share
:class:`RunConfig`: ``to_dict`` / ``from_dict`` and the check that a resumed run is the saved one. The
command line takes its option defaults from these classes (:mod:`dakd_edge.cli.train`,
:mod:`dakd_edge.cli.jointnet`), so this module imports neither torch nor the trainers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from dakd_edge.errors import TrainingError

if TYPE_CHECKING:  # typing.Self is Python 3.11+: annotations only (Jetson runs 3.10)
    from typing import Self

    from dakd_edge.train.losses import LossConfig


class RunConfig:
    """``to_dict`` / ``from_dict`` and the resume check, for the trainers' config dataclasses.

    ``RESUME_KEYS`` names the settings a resumed run must share with its checkpoint (``None``: all of
    them but ``RESUME_FREE``, the operational ones that do not change what the run computes).
    """

    RESUME_KEYS: ClassVar[tuple[str, ...] | None] = None
    RESUME_FREE: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-like dict (tuples become lists, as in a checkpoint)."""
        return _lists(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Rebuild from ``to_dict`` output; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The JSON-like default of every setting that has one."""
        out: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
        return json.loads(json.dumps(_lists(out)))

    @classmethod
    def completed(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """A saved config (``config.json``, a checkpoint's) with the settings added since it was written
        at their defaults: new options default to the old behaviour, so older runs still resume and
        still count as the same run."""
        return {**cls.defaults(), **saved}

    def check_resume(self, saved: Mapping[str, Any], path: object = "the checkpoint") -> None:
        """Raise :class:`TrainingError` when ``saved`` (a checkpoint's config) is another run than this."""
        now = json.loads(json.dumps(self.to_dict()))
        saved = self.completed(saved)
        keys = self.RESUME_KEYS if self.RESUME_KEYS is not None else sorted(now)
        diff = [k for k in keys if k not in self.RESUME_FREE and saved.get(k) != now.get(k)]
        if diff:
            shown = ", ".join(f"{k} differs: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff[:4])
            raise TrainingError(
                f"cannot resume {path}: the run's configuration changed ({shown}); "
                "resume with the original settings"
            )


def _lists(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples as lists, as JSON (and so every checkpoint) stores them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


@dataclass
class TrainConfig(RunConfig):
    """Everything that defines a run (saved in every checkpoint; ``resume`` must match it).

    Data: ``data`` root of an OSD/SOS/folder dataset (``kind``, ``sensor``, ``classes`` as in
    ``open_dataset``); ``aug`` an augmented set written by ``dakd-edge jointnet generate``; ``mix`` the
    fraction of batch slots filled with generated mosaics; ``synthetic``/``synthetic_ratio``: number of
    pre-generated synthetic patches and their share of the slots. ``val_fraction`` of the training
    images (at least one) are held out for validation, chosen with ``seed``.

    Whole-scene robustness: ``real_mosaic`` is the probability that a slot of real data is a random
    crop of a grid of several real images (:func:`~dakd_edge.data.transforms.grid_mosaic`, YOLOv4-style,
    so that one crop holds unrelated sea states and patch borders at random places) instead of a crop
    of one image; crops larger than the images are then always mosaics. ``mosaic_gain`` > 0 scales each
    patch of such a mosaic by its own brightness factor ``exp(U(-mosaic_gain, mosaic_gain))`` (labels
    unchanged: a calmer sea beside a windier one is not oil); ``mosaic_calm`` > 0 darkens only its
    nearly slick-free patches, by ``exp(-U(0, mosaic_calm))``. ``level_shift`` > 0 adds one offset
    ``U(-level_shift, level_shift)`` to the unit luminance of every whole crop (clipped to [0, 1]; labels
    unchanged): on calibrated input that is a shift of ``40 * level_shift`` dB of the whole sea, as
    wind speed and incidence angle move it across a real scene, while a slick keeps its contrast to
    the sea around it. ``regrain`` is the probability that a crop is rendered with a coarser, stronger
    speckle and a steeper stretch (:func:`~dakd_edge.data.transforms.regrain`; labels unchanged).
    The last ``final_steps`` steps
    use ``final_crop`` pixel crops (e.g. the inference tile) and ``final_batch`` slots (0: ``batch``).
    ``val_mosaic`` > 1 also validates on ``val_mosaic`` x ``val_mosaic`` grids
    of validation images, cut to one ``tile`` (or ``final_crop``), and picks the best checkpoint by
    the mean of the per-image and the mosaic mIoU. ``init``: a model file (``.safetensors``, or
    ``"bundled"``) whose weights start the run (fine-tuning); its architecture (``model`` must name it;
    ``model_cfg`` may change options that change no weight), input normalisation and inference tiling
    are kept, and classifier rows are matched to the data's classes by name
    (:mod:`dakd_edge.train.finetune`).
    """

    # Options that may differ on resume without changing the run's meaning.
    RESUME_FREE: ClassVar[frozenset[str]] = frozenset(
        {"steps", "val_every", "ckpt_every", "log_every", "workers", "device", "amp"}
    )

    model: str = "saross-edge"
    model_cfg: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    kind: str = "auto"
    sensor: str | None = None
    classes: str = "native"
    aug: str | None = None
    labels: str = "soft"
    mix: float = 0.5
    synthetic: int = 0
    synthetic_ratio: float = 0.0
    crop: int = 256
    batch: int = 8
    steps: int = 2000
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_fraction: float = 0.1
    val_every: int = 200
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    workers: int = 0
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    dice_weight: float = 1.0
    temperature: float = 2.0
    class_weights: tuple[float, ...] | None = None
    normalization: str = "dataset"  # "dataset": mean/std of the training images; "default": 0.5 / 0.25
    tile: int = 512
    real_mosaic: float = 0.0
    mosaic_gain: float = 0.0
    mosaic_calm: float = 0.0
    level_shift: float = 0.0
    regrain: float = 0.0
    final_steps: int = 0
    final_crop: int = 0
    final_batch: int = 0
    val_mosaic: int = 0
    init: str | None = None

    def __post_init__(self) -> None:
        if self.labels not in ("hard", "soft"):
            raise ValueError(f"labels must be 'hard' or 'soft', got {self.labels!r}")
        _unit(mix=self.mix, synthetic_ratio=self.synthetic_ratio)
        if self.mix + self.synthetic_ratio > 1.0:
            raise ValueError("mix + synthetic_ratio must not exceed 1")
        if self.crop < 16 or self.crop % 2:
            raise ValueError(f"crop must be an even size >= 16, got {self.crop}")
        _positive(batch=self.batch, steps=self.steps)
        _unit(real_mosaic=self.real_mosaic)
        if not 0.0 <= self.mosaic_gain <= 2.0:
            raise ValueError(f"mosaic_gain must be in [0, 2] (a log factor), got {self.mosaic_gain}")
        if not 0.0 <= self.mosaic_calm <= 3.0:
            raise ValueError(f"mosaic_calm must be in [0, 3] (a log factor), got {self.mosaic_calm}")
        if not 0.0 <= self.level_shift <= 0.5:
            raise ValueError(f"level_shift must be in [0, 0.5] (unit luminance), got {self.level_shift}")
        if not 0.0 <= self.regrain <= 1.0:
            raise ValueError(f"regrain must be in [0, 1] (a probability), got {self.regrain}")
        if self.final_steps < 0 or self.final_steps > self.steps:
            raise ValueError(f"final_steps must be in [0, steps = {self.steps}], got {self.final_steps}")
        if self.final_steps and (self.final_crop < 16 or self.final_crop % 2):
            raise ValueError(f"final_crop must be an even size >= 16, got {self.final_crop}")
        _non_negative(final_batch=self.final_batch, val_mosaic=self.val_mosaic)
        if self.normalization not in ("dataset", "default"):
            raise ValueError("normalization must be 'dataset' or 'default'")
        if not (math.isfinite(self.val_fraction) and 0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1) (0: no validation), got {self.val_fraction}")
        _positive(lr=self.lr, temperature=self.temperature)
        _at_least(0, synthetic=self.synthetic, warmup=self.warmup, seed=self.seed, workers=self.workers)
        _at_least(1, val_every=self.val_every, ckpt_every=self.ckpt_every, log_every=self.log_every)
        _non_negative(
            weight_decay=self.weight_decay, grad_clip=self.grad_clip, ce_weight=self.ce_weight,
            kd_weight=self.kd_weight, dice_weight=self.dice_weight,
        )  # fmt: skip
        _unit(min_lr_ratio=self.min_lr_ratio)
        _ema(self.ema_decay)
        # kd_weight acts on generated images only: without --aug it adds nothing to the loss
        if self.ce_weight + self.dice_weight + (self.kd_weight if self.aug else 0.0) <= 0:
            raise ValueError(
                "every loss weight is 0 (ce_weight, dice_weight; kd_weight counts only with aug): "
                "nothing would be trained"
            )
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
            if not all(math.isfinite(w) and w >= 0 for w in self.class_weights) or not any(
                self.class_weights
            ):
                raise ValueError(
                    f"class_weights must be finite, >= 0 and not all 0, got {list(self.class_weights)}"
                )

    @property
    def total_steps(self) -> int:
        return self.steps

    def loss_config(self) -> LossConfig:
        from dakd_edge.train.losses import LossConfig

        return LossConfig(
            ce_weight=self.ce_weight,
            kd_weight=self.kd_weight,
            dice_weight=self.dice_weight,
            temperature=self.temperature,
            labels=self.labels,
            class_weights=self.class_weights,
        )


# The paper's iterations of the three SAR-JointNet stages per dataset (the paper trains OSD's Label-Net
# stage longer): the CLI's default for the data it is given; other data take SOS's.
STAGE_STEPS: dict[str, tuple[int, int, int]] = {
    "osd": (50_000, 250_000, 100_000),
    "sos": (50_000, 150_000, 50_000),
}


@dataclass
class JointNetTrainConfig(RunConfig):
    """Everything that defines a run; saved in every checkpoint and as ``config.json``.

    Learning rates were lost from the paper's text; 1e-4 (stages 1-2) and 2e-5 (stage 3) are the usual
    values for pixel-space DDPM UNets of this size.
    """

    # What a resumed run must share with its checkpoint (the rest may be set anew).
    RESUME_KEYS: ClassVar[tuple[str, ...] | None] = (
        "model", "stage_steps", "seed", "crop", "batch_size", "balancing_factor", "synthetic",
    )  # fmt: skip

    out: str = "runs/jointnet"
    # data
    data: str | None = None
    data_kind: str = "auto"
    sensor: str | None = None
    classes: str = "native"
    synthetic: int = 0  # > 0: train on this many synthetic patches instead of --data
    synthetic_classes: int = 2
    crop: int = 256
    flips: bool = True
    # model
    preset: str = "base"
    model: dict[str, Any] = field(default_factory=dict)  # JointNetConfig as a dict (filled in)
    balancing_factor: float | None = None  # None: measured on the training set before training
    balance_limit: int | None = None  # images used to measure b (None: all)
    # optimisation
    stage_steps: tuple[int, int, int] = (50_000, 150_000, 50_000)  # SOS's; OSD's in STAGE_STEPS
    batch_size: int = 16  # per process
    lr: float = 1e-4
    lr_stage3: float = 2e-5
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    amp: bool = True
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    # bookkeeping
    log_every: int = 50
    ckpt_every: int = 1000
    sample_every: int = 5000
    sample_count: int = 4
    sample_steps: int = 50

    def __post_init__(self) -> None:
        self.stage_steps = tuple(int(s) for s in self.stage_steps)  # type: ignore[assignment]
        if len(self.stage_steps) != 3 or min(self.stage_steps) < 0:
            raise ValueError(f"stage_steps needs three non-negative counts, got {self.stage_steps}")
        if sum(self.stage_steps) < 1:
            raise ValueError("stage_steps are all 0: nothing to train")
        if self.crop < 8:
            raise ValueError(f"crop must be >= 8, got {self.crop}")
        _positive(lr=self.lr, lr_stage3=self.lr_stage3)
        _at_least(1, batch_size=self.batch_size, log_every=self.log_every, ckpt_every=self.ckpt_every)
        _at_least(1, sample_count=self.sample_count, sample_steps=self.sample_steps)
        _at_least(0, warmup=self.warmup, workers=self.workers, seed=self.seed, synthetic=self.synthetic)
        _at_least(0, sample_every=self.sample_every)
        _non_negative(weight_decay=self.weight_decay, grad_clip=self.grad_clip)
        _ema(self.ema_decay)
        if self.balancing_factor is not None:
            _positive(balancing_factor=self.balancing_factor)
        if self.balance_limit is not None:
            _at_least(1, balance_limit=self.balance_limit)

    @property
    def total_steps(self) -> int:
        return sum(self.stage_steps)

    def stage_at(self, step: int) -> int:
        """Stage (1, 2, 3) that trains global step ``step`` (0-based)."""
        s1, s2, _ = self.stage_steps
        return 1 if step < s1 else 2 if step < s1 + s2 else 3

    def stage_start(self, stage: int) -> int:
        return sum(self.stage_steps[: stage - 1])


def _positive(**values: float) -> None:
    for k, v in values.items():
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v}")


def _non_negative(**values: float) -> None:
    for k, v in values.items():
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{k} must be a finite number >= 0, got {v}")


def _unit(**values: float) -> None:
    for k, v in values.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {v}")


def _at_least(low: int, **values: int) -> None:
    for k, v in values.items():
        if v < low:
            raise ValueError(f"{k} must be >= {low}, got {v}")


def _ema(decay: float) -> None:
    """The EMA decay: 0 (off) up to, not including, 1 (1 would freeze the initial weights)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
