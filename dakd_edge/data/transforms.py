"""Augmentations on sample dicts, applied identically to ``image`` (C,H,W), ``mask`` (H,W) and optional
``logits`` (K,H,W) / ``kd_mask`` (H,W). Seeded by a ``numpy.random.Generator``; numpy only.

Random crop (padding when the sample is smaller: image 0, mask 255 = ignore, logits 0 = uniform),
flips, rotations by 90 degrees (SAR has no canonical orientation at this scale) and the YOLOv4-style
mosaic of four samples used for the low-resolution generated set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dakd_edge.meta import IGNORE_INDEX

Sample = dict[str, np.ndarray]
_SPATIAL_3D = ("image", "logits")
_SPATIAL_2D = ("mask", "kd_mask")


def _apply(sample: Sample, fn3, fn2) -> Sample:
    """Apply ``fn3`` to (C,H,W) entries and ``fn2`` to (H,W) entries; other keys are copied."""
    out = dict(sample)
    for k in _SPATIAL_3D:
        if k in sample:
            out[k] = np.ascontiguousarray(fn3(sample[k]))
    for k in _SPATIAL_2D:
        if k in sample:
            out[k] = np.ascontiguousarray(fn2(sample[k]))
    return out


def _hw(sample: Sample) -> tuple[int, int]:
    return sample["mask"].shape[-2], sample["mask"].shape[-1]


def pad_to(sample: Sample, height: int, width: int) -> Sample:
    """Pad bottom/right up to (height, width): image 0, mask ignore, logits 0, kd_mask 0."""
    h, w = _hw(sample)
    ph, pw = max(0, height - h), max(0, width - w)
    if not ph and not pw:
        return sample
    out = dict(sample)
    for k in _SPATIAL_3D:
        if k in sample:
            out[k] = np.pad(sample[k], ((0, 0), (0, ph), (0, pw)))
    if "mask" in sample:
        out["mask"] = np.pad(sample["mask"], ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
    if "kd_mask" in sample:
        out["kd_mask"] = np.pad(sample["kd_mask"], ((0, ph), (0, pw)))
    return out


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    return _apply(
        sample,
        lambda a: a[:, top : top + height, left : left + width],
        lambda a: a[top : top + height, left : left + width],
    )


def random_crop(sample: Sample, size: int | tuple[int, int], rng: np.random.Generator) -> Sample:
    """A random ``size`` window; samples smaller than that are padded first."""
    ch, cw = (size, size) if isinstance(size, int) else size
    sample = pad_to(sample, ch, cw)
    h, w = _hw(sample)
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop(sample, top, left, ch, cw)


def hflip(sample: Sample) -> Sample:
    return _apply(sample, lambda a: a[:, :, ::-1], lambda a: a[:, ::-1])


def vflip(sample: Sample) -> Sample:
    return _apply(sample, lambda a: a[:, ::-1, :], lambda a: a[::-1, :])


def rot90(sample: Sample, k: int) -> Sample:
    """Rotate by k * 90 degrees counter-clockwise."""
    return _apply(sample, lambda a: np.rot90(a, k, axes=(1, 2)), lambda a: np.rot90(a, k))


def random_flip_rot(
    sample: Sample, rng: np.random.Generator, flips: bool = True, rotations: bool = True
) -> Sample:
    """Uniform over the 8 symmetries of the square (or the enabled subset)."""
    if rotations:
        sample = rot90(sample, int(rng.integers(0, 4)))
    if flips and rng.random() < 0.5:
        sample = hflip(sample)
    if flips and not rotations and rng.random() < 0.5:
        sample = vflip(sample)
    return sample


def mosaic(samples: Sequence[Sample], size: int | tuple[int, int], rng: np.random.Generator) -> Sample:
    """YOLOv4-style mosaic: four samples fill the four quadrants around a random centre.

    Each quadrant gets a random crop of one sample (padded if the sample is smaller). ``logits`` are
    kept when every sample has them; when only some do, the result carries zero logits where a sample
    had none plus ``kd_mask`` (1 where teacher logits are valid), so distillation can skip those pixels.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    h, w = (size, size) if isinstance(size, int) else size
    cy = int(rng.integers(h // 4, h - h // 4 + 1))
    cx = int(rng.integers(w // 4, w - w // 4 + 1))
    channels = {s["image"].shape[0] for s in samples}
    if len(channels) != 1:
        raise ValueError(f"mosaic samples have different channel counts {sorted(channels)}")
    has_logits = ["logits" in s for s in samples]
    k_set = {s["logits"].shape[0] for s in samples if "logits" in s}
    if len(k_set) > 1:
        raise ValueError(f"mosaic samples have different logit class counts {sorted(k_set)}")
    image = np.zeros((channels.pop(), h, w), dtype=np.float32)
    mask = np.full((h, w), IGNORE_INDEX, dtype=np.int64)
    logits = np.zeros((k_set.pop(), h, w), dtype=np.float32) if k_set else None
    kd = np.zeros((h, w), dtype=np.float32) if any(has_logits) and not all(has_logits) else None
    quads = [(0, 0, cy, cx), (0, cx, cy, w - cx), (cy, 0, h - cy, cx), (cy, cx, h - cy, w - cx)]
    for s, (y0, x0, qh, qw) in zip(samples, quads, strict=True):
        if qh == 0 or qw == 0:
            continue
        piece = random_crop(s, (qh, qw), rng)
        image[:, y0 : y0 + qh, x0 : x0 + qw] = piece["image"]
        mask[y0 : y0 + qh, x0 : x0 + qw] = piece["mask"]
        if logits is not None and "logits" in piece:
            logits[:, y0 : y0 + qh, x0 : x0 + qw] = piece["logits"]
            if kd is not None:
                kd[y0 : y0 + qh, x0 : x0 + qw] = piece.get("kd_mask", 1.0)
    out: Sample = {"image": image, "mask": mask}
    if logits is not None:
        out["logits"] = logits
    if kd is not None:
        out["kd_mask"] = kd
    return out


def augment(
    sample: Sample,
    rng: np.random.Generator,
    crop_size: int | tuple[int, int] | None = None,
    flips: bool = True,
) -> Sample:
    """Random crop (optional) followed by a random flip/rotation: the default training augmentation."""
    if crop_size is not None:
        sample = random_crop(sample, crop_size, rng)
    if flips:
        h, w = _hw(sample)
        sample = random_flip_rot(sample, rng, rotations=h == w)
    return sample
