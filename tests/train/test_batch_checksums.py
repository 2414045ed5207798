"""Seeded batches stay bit for bit what they were: SHA-256 of every array of fixed steps of both trainers.

The digests were computed with the trainers' own crop / flip / mosaic code before it moved into
:mod:`dakd_edge.data.transforms`; a refactor that changes one random draw, its order or a padding value
changes them. Recompute only for an intended change of the data stream (and say so in the commit).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from dakd_edge.meta import Normalization
from dakd_edge.train.jointnet import CropBatches, SyntheticPatches
from dakd_edge.train.saross import SlotBatches, TrainConfig, synthetic_source
from tests.train.tiny import TINY, BlobDataset


def _digest(batches: list[dict[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for b in batches:
        for k in sorted(b):
            a = b[k].numpy()
            h.update(f"{k}{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _saross(**kw) -> TrainConfig:
    return TrainConfig(**{"model": TINY, "crop": 32, "batch": 3, "steps": 8, **kw})


NORM = Normalization(mean=0.4, std=0.2)
SAROSS_CASES = {
    # generated mosaics of four + real crops, two ranks
    "mix": (dict(mix=0.5), (6, 40), True, False, "dffb75b860bcb769"),
    # synthetic patches, real grid mosaics, a final phase of larger crops
    "syn-grid-final": (
        dict(synthetic=3, synthetic_ratio=0.3, real_mosaic=0.5, final_steps=3, final_crop=48, final_batch=2),
        (9, 40), False, True, "9346556167cc1e31",
    ),
    # images smaller than the crop: padding with the ignore label
    "pad": (dict(mix=0.0), (4, 24), False, False, "399c8f60d29c9180"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SAROSS_CASES))
def test_saross_batches_unchanged(case: str) -> None:
    kw, (n, size), aug, syn, want = SAROSS_CASES[case]
    cfg = _saross(**kw)
    orig = BlobDataset(n, size)
    augmented = BlobDataset(4, 20, seed=50, teacher=True) if aug else None
    synthetic = synthetic_source(cfg, 2) if syn else None
    got = []
    for rank in (0, 1):
        sb = SlotBatches(cfg, orig, list(range(n)), NORM, 2, augmented, synthetic, rank)
        got += [sb[s] for s in range(cfg.steps)]
    assert _digest(got) == want


JOINT_CASES = {
    "flips": (16, 16, True, "38b9e985117aeab4"),
    "no-flips": (16, 12, False, "bb8a48845d1b3fa0"),
    "reflect-pad": (12, 16, True, "aac298dd7998d589"),
}


@pytest.mark.parametrize("case", sorted(JOINT_CASES))
def test_jointnet_batches_unchanged(case: str) -> None:
    size, crop, flips, want = JOINT_CASES[case]
    data = SyntheticPatches(4, size, num_classes=2, seed=3)
    got = []
    for rank in (0, 1):
        sb = CropBatches(data, 3, crop, seed=5, rank=rank, flips=flips)
        got += [sb[s] for s in range(4)]
    assert _digest(got) == want
