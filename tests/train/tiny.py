"""Tiny registered segmentation models, in-memory datasets and a tiny SAR-JointNet run configuration for
fast trainer / evaluation tests; ``one_thread``, an autouse fixture to import where tiny models run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from dakd_edge.models.base import SegmentationModel
from dakd_edge.registry import _REGISTRY, register_model

TINY = "test-tiny-seg"
JOINT_CROP = 16  # the tiny SAR-JointNet runs' crop


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are op-bound: one thread avoids OpenMP spin contention on a busy 2-core box.

    Import it into a test module (``from tests.train.tiny import one_thread  # noqa: F401``) to use it
    for every test there."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def jointnet_config(out, **kw):
    """A few CPU steps of every stage of a ``tiny`` SAR-JointNet on binary synthetic data (``kw`` override)."""
    from dakd_edge.train.jointnet import JointNetTrainConfig

    base = dict(
        out=str(out), preset="tiny", crop=JOINT_CROP, batch_size=2, stage_steps=(2, 2, 2), warmup=0, lr=2e-3,
        sample_steps=2, device="cpu", synthetic_classes=2,
    )  # fmt: skip
    return JointNetTrainConfig(**{**base, **kw})


@dataclass
class _Config:
    num_classes: int = 2
    in_chans: int = 1


def _register(name: str, model: type, config: type) -> None:
    """Register ``model(config(num_classes, in_chans, **cfg))`` under ``name`` (once per process)."""
    if name not in _REGISTRY:
        register_model(name)(
            lambda num_classes=2, in_chans=1, **cfg: model(config(num_classes, in_chans, **cfg))
        )


@dataclass
class TinyConfig(_Config):
    width: int = 8


class TinySeg(SegmentationModel):
    """Two 3x3 convs: learns intensity-threshold segmentation in a few steps."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(nn.Conv2d(config.in_chans, config.width, 3, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(nn.Conv2d(config.width, config.width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(config.width, config.num_classes, 1)


_register(TINY, TinySeg, TinyConfig)


def blob_sample(seed: int, size: int = 32, num_classes: int = 2) -> dict[str, np.ndarray]:
    """Bright background with a dark elliptical 'slick' (class 1); noise so it is not trivial."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.15, size * 0.3)
    mask = (((yy - cy) / r) ** 2 + ((xx - cx) / (1.5 * r)) ** 2 < 1).astype(np.int64)
    image = np.where(mask == 1, 0.25, 0.7) + rng.normal(0, 0.05, (size, size))
    return {"image": np.clip(image, 0, 1).astype(np.float32)[None], "mask": mask}


class BlobDataset:
    num_classes = 2
    class_names = ["background", "oil"]

    def __init__(self, n: int, size: int = 32, seed: int = 0, teacher: bool = False) -> None:
        self.items = [blob_sample(seed + i, size) for i in range(n)]
        self.files = [f"blob{seed + i:04d}.png" for i in range(n)]
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        s = dict(self.items[i])
        if self.teacher:
            m = s["mask"]
            s["logits"] = np.stack([np.where(m == 0, 2.0, -2.0), np.where(m == 1, 2.0, -2.0)]).astype(
                np.float32
            )
        return s


THRESHOLD = "test-threshold-seg"


@dataclass
class ThresholdConfig(_Config):
    gain: float = 10.0


class ThresholdSeg(SegmentationModel):
    """Exact, known predictions: oil (class 1) where the normalised input is below 0 (darker than mean)."""

    def __init__(self, config: ThresholdConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()
        self.head = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([config.gain, -config.gain]).view(2, 1, 1, 1))
            self.head.bias.zero_()


_register(THRESHOLD, ThresholdSeg, ThresholdConfig)


def save_threshold_model(path, tile: int):
    """A :data:`THRESHOLD` model file (normalisation 0.5 / 0.25: oil where luminance < 0.5) at ``tile``."""
    from dakd_edge import create_model
    from dakd_edge.meta import ModelMeta, Normalization
    from dakd_edge.models.checkpoint import save_model

    meta = ModelMeta.default_for(THRESHOLD, 2, normalization=Normalization(mean=0.5, std=0.25), tile=tile)
    save_model(path, create_model(THRESHOLD, 2, 1), meta)
    return path


def write_folder(root, samples: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """An images/ + masks/ dataset from (uint8 image, uint8 class-id mask) pairs."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (img, mask) in enumerate(samples):
        Image.fromarray(img).save(root / "images" / f"s{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i:03d}.png")


def write_blob_folder(root, n: int, size: int) -> None:
    """:func:`write_folder` of ``n`` :func:`blob_sample` pairs of ``size`` px (8-bit images, class ids)."""
    pairs = []
    for i in range(n):
        s = blob_sample(i, size)
        pairs.append((np.rint(s["image"][0] * 255).astype(np.uint8), s["mask"].astype(np.uint8)))
    write_folder(root, pairs)
