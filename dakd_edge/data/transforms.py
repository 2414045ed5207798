"""Augmentations on sample dicts, applied identically to ``image`` (C,H,W), ``mask`` (H,W) and optional
``logits`` (K,H,W) / ``kd_mask`` (H,W). Seeded by a ``numpy.random.Generator``; numpy only.

The one implementation both trainers use (SAROSS-Net / DAKD and SAR-JointNet), so the order of the
random draws below *is* their data stream: a seeded run draws the same batch at step ``s`` only while
that order stays as it is (``tests/train/test_batch_checksums.py`` pins it).

- :func:`random_crop`: a random window; a smaller sample is padded first (image 0 or by reflection,
  mask 255 = ignore, logits 0 = uniform). Draws: top, left.
- :func:`random_flip_rot`: one of the 8 symmetries of the square (SAR has no canonical orientation at
  this scale). Draws: quarter turns, horizontal flip.
- :func:`mosaic`: YOLOv4-style mosaic of four samples around a random centre (the generated set).
- :func:`grid_mosaic`: ``n`` x ``n`` real samples side by side, then a random crop (whole-scene
  robustness); :func:`grid_cut` is its deterministic twin for validation.
- :func:`shift_level`: one additive offset on the whole image (the sea level of a calibrated scene;
  the training loop draws it, only when ``level_shift`` > 0, so other runs keep their stream).
- :func:`regrain`: coarser, stronger speckle and a steeper stretch around the image's median (another
  processing chain's rendering). Draws (only when the loop's ``regrain`` > 0): grain, amplitude,
  contrast, then the noise field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dakd_edge.meta import IGNORE_INDEX

Sample = dict[str, np.ndarray]
_SPATIAL_3D = ("image", "logits")
_SPATIAL_2D = ("mask", "kd_mask")
PAD_MODES = ("constant", "reflect")


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


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def pad_to(sample: Sample, height: int, width: int, mode: str = "constant") -> Sample:
    """Pad bottom/right up to (height, width): mask ignore, logits 0, kd_mask 0, and the image with 0
    (``mode="constant"``) or by reflection (``"reflect"``; edge values for a one-pixel side)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    h, w = _hw(sample)
    ph, pw = max(0, height - h), max(0, width - w)
    if not ph and not pw:
        return sample
    out = dict(sample)
    for k in _SPATIAL_3D:
        if k in sample:
            how = "constant" if k != "image" or mode == "constant" else "reflect" if min(h, w) > 1 else "edge"
            out[k] = np.pad(sample[k], ((0, 0), (0, ph), (0, pw)), mode=how)
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


def random_crop(
    sample: Sample, size: int | tuple[int, int], rng: np.random.Generator, pad: str = "constant"
) -> Sample:
    """A random ``size`` window; samples smaller than that are padded first (``pad``: see :func:`pad_to`)."""
    ch, cw = _pair(size)
    sample = pad_to(sample, ch, cw, pad)
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
    """Uniform over the 8 symmetries of the square (or the enabled subset).

    Draws, in this order: quarter turns ``integers(4)`` (with ``rotations``), a horizontal flip
    ``integers(2)`` (with ``flips``), and without rotations a vertical flip ``integers(2)``.
    """
    k = int(rng.integers(4)) if rotations else 0
    h = flips and bool(rng.integers(2))
    v = flips and not rotations and bool(rng.integers(2))
    if rotations:
        sample = rot90(sample, k)
    if h:
        sample = hflip(sample)
    if v:
        sample = vflip(sample)
    return sample


def _centre(n: int, fit: int, rng: np.random.Generator) -> int:
    """A mosaic centre on an axis of length ``n``: in ``[n/4, 3n/4]``, narrowed so that quadrants of
    samples covering ``fit`` pixels need no padding; central when no position avoids it."""
    lo, hi = max(n // 4, n - fit), min(3 * n // 4, fit)
    if lo > hi:
        lo = hi = n // 2
    return int(rng.integers(lo, hi + 1))


def mosaic(samples: Sequence[Sample], size: int | tuple[int, int], rng: np.random.Generator) -> Sample:
    """YOLOv4-style mosaic: four samples fill the four quadrants around a random centre.

    Generated images are small (pixel-domain diffusion), so four of them make one training crop. The
    centre is drawn from ``[size/4, 3 size/4]`` narrowed so that every quadrant fits inside its sample
    (generated at half the crop: a fixed 2 x 2 grid); only samples too small for that leave padding, as
    little as possible. Each quadrant is a random flip/rotation of its sample, then a random square crop
    cut to the quadrant. Draws: centre row, centre column, then per non-empty quadrant the flip/rotation
    and the crop. ``logits`` are kept when every sample has them; when only some do, the result carries
    zero logits where a sample had none plus ``kd_mask`` (1 where teacher logits are valid), so
    distillation can skip those pixels.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    h, w = _pair(size)
    fit = min(min(_hw(s)) for s in samples)  # any rotation of any sample covers fit x fit
    cy, cx = _centre(h, fit, rng), _centre(w, fit, rng)
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
        piece = random_crop(random_flip_rot(s, rng), max(qh, qw), rng)
        piece = crop(piece, 0, 0, qh, qw)
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


def _canvas(pieces: Sequence[Sample], n: int, p: int) -> Sample:
    """``n`` x ``n`` pieces of ``p`` x ``p`` pixels side by side (image and mask; row-major order)."""
    c = pieces[0]["image"].shape[0]
    image = np.zeros((c, n * p, n * p), np.float32)
    mask = np.full((n * p, n * p), IGNORE_INDEX, np.int64)
    for j, s in enumerate(pieces):
        y0, x0 = (j // n) * p, (j % n) * p
        image[:, y0 : y0 + p, x0 : x0 + p] = s["image"][:, :p, :p]
        mask[y0 : y0 + p, x0 : x0 + p] = s["mask"][:p, :p]
    return {"image": image, "mask": mask}


# Share of labelled pixels outside class 0 (background / sea) below which ``grid_mosaic(calm=...)``
# treats a sample as slick-free sea.
CALM_MAX_FOREGROUND = 0.05


def grid_mosaic(
    samples: Sequence[Sample], size: int, rng: np.random.Generator, gain: float = 0.0, calm: float = 0.0
) -> Sample:
    """YOLOv4-style mosaic of *real* images: ``n`` x ``n`` samples side by side, then a random crop.

    ``len(samples)`` must be a square ``n * n``. Each sample gets its own flip/rot90 and a random crop
    to the common patch size ``p`` (the smallest side of the samples); the ``n p`` x ``n p`` canvas is
    then cropped at a random place to ``size`` (padded with ignore where the canvas is smaller), so
    patch borders, and brightness steps between unrelated sea states, fall anywhere in the crop, as
    they do in a tile of a scene mosaic. :func:`mosaic_grid_size` gives the ``n`` that covers ``size``
    with borders at every offset. Hard labels only (logits are dropped).

    ``gain`` > 0 multiplies each sample's luminance by its own ``exp(U(-gain, gain))`` (clipped to
    [0, 1]; labels unchanged): a whole patch darker or brighter than its neighbours, as a calmer or
    windier sea is, so that a region's level against unrelated neighbours is no evidence of oil.
    Within a patch, a slick keeps its contrast to its own sea (the factor is multiplicative).
    ``calm`` > 0 darkens only the nearly background-only samples (under :data:`CALM_MAX_FOREGROUND` of
    their labelled pixels not class 0) by ``exp(-U(0, calm))``: a calm, slick-free sea beside a windier
    one, a look-alike the releases barely hold, labelled background as it is.
    """
    n = int(round(math.sqrt(len(samples))))
    if n < 1 or n * n != len(samples):
        raise ValueError(f"grid_mosaic needs a square number of samples, got {len(samples)}")
    p = min(min(_hw(s)) for s in samples)
    pieces = []
    for s in samples:
        s = {"image": np.asarray(s["image"], np.float32), "mask": np.asarray(s["mask"])}
        if gain > 0:
            factor = math.exp(float(rng.uniform(-gain, gain)))
            s["image"] = np.clip(s["image"] * np.float32(factor), 0.0, 1.0)
        if calm > 0:
            factor = math.exp(-float(rng.uniform(0.0, calm)))
            labelled = s["mask"] != IGNORE_INDEX
            if labelled.any() and (s["mask"][labelled] != 0).mean() < CALM_MAX_FOREGROUND:
                s["image"] = s["image"] * np.float32(factor)
        pieces.append(random_crop(random_flip_rot(s, rng), p, rng))
    return random_crop(_canvas(pieces, n, p), size, rng)


def shift_level(sample: Sample, offset: float) -> Sample:
    """``offset`` added to the unit-luminance image, clipped to [0, 1]; labels unchanged.

    Luminance is linear in dB (:mod:`dakd_edge.data.scaling`), so this is one dB shift of the whole
    crop: a windier or calmer sea, or another incidence angle, with every slick's contrast kept.
    """
    out = dict(sample)
    out["image"] = np.clip(np.asarray(sample["image"], np.float32) + np.float32(offset), 0.0, 1.0)
    return out


REGRAIN_GRAIN = (1.5, 4.0)  # speckle grain size, pixels
REGRAIN_AMPLITUDE = (0.03, 0.15)  # added grain, unit luminance (linear in dB: multiplicative speckle)
REGRAIN_CONTRAST = (1.0, 1.6)  # display stretch around the median


def regrain(sample: Sample, rng: np.random.Generator) -> Sample:
    """The crop as another processing chain renders it: speckle with a coarser grain and a steeper
    display stretch (some archives' images, resampled and stretched, turn clean sea into near-black
    grains that a model trained on smoother patches calls oil). Labels unchanged: grains are sea.

    A unit-variance Gaussian field on a grid ``grain`` pixels apart, bilinearly interpolated and
    rescaled to unit variance, times ``amplitude``, is added to the luminance (linear in dB, so this
    is multiplicative speckle); then ``median + contrast * (x - median)``, clipped to [0, 1].
    """
    grain = float(rng.uniform(*REGRAIN_GRAIN))
    amplitude = float(rng.uniform(*REGRAIN_AMPLITUDE))
    contrast = float(rng.uniform(*REGRAIN_CONTRAST))
    img = np.asarray(sample["image"], np.float32)
    h, w = img.shape[-2:]
    field = rng.standard_normal((int(math.ceil((h - 1) / grain)) + 2, int(math.ceil((w - 1) / grain)) + 2))
    ys, xs = np.arange(h) / grain, np.arange(w) / grain
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    ty, tx = (ys - y0)[:, None], (xs - x0)[None, :]
    f = (field[y0][:, x0] * (1 - ty) * (1 - tx) + field[y0 + 1][:, x0] * ty * (1 - tx)
         + field[y0][:, x0 + 1] * (1 - ty) * tx + field[y0 + 1][:, x0 + 1] * ty * tx)  # fmt: skip
    f = (f - f.mean()) / max(float(f.std()), 1e-6)
    m = np.float32(np.median(img))
    out = dict(sample)
    out["image"] = np.clip(
        m + np.float32(contrast) * (img + np.float32(amplitude) * f.astype(np.float32) - m), 0, 1
    )
    return out


def mosaic_grid_size(size: int, patch: int) -> int:
    """Grid side ``n`` whose canvas exceeds a ``size`` crop by at least one patch (random borders)."""
    return max(2, -(-size // patch) + 1)


def grid_cut(samples: Sequence[Sample], grid: int, size: int) -> Sample:
    """``grid`` x ``grid`` samples side by side, cut to ``size`` from half a patch in (no randomness).

    With 256-pixel patches, ``grid`` 3 and ``size`` 512 the cut holds one whole patch and parts of
    eight others, with borders off the cut's centre lines, as a 512 tile of a scene mosaic does.
    """
    p = min(min(_hw(s)) for s in samples)
    pieces = [{"image": np.asarray(s["image"], np.float32), "mask": np.asarray(s["mask"])} for s in samples]
    off = min(p // 2, max(0, grid * p - size))
    return crop(_canvas(pieces, grid, p), off, off, size, size)


def augment(
    sample: Sample,
    rng: np.random.Generator,
    crop_size: int | tuple[int, int] | None = None,
    flips: bool = True,
    pad: str = "constant",
) -> Sample:
    """Random crop (optional) followed by a random flip/rotation: the default training augmentation."""
    if crop_size is not None:
        sample = random_crop(sample, crop_size, rng, pad)
    if flips:
        h, w = _hw(sample)
        sample = random_flip_rot(sample, rng, rotations=h == w)
    return sample
