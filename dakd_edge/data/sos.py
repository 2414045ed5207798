"""SOS, the Deep-SAR Oil Spill dataset (Zhu et al. 2022; ALOS-PALSAR and Sentinel-1A patches).

Release layout: ``train/{palsar,sentinel}/{ID}_sat.jpg`` + ``{ID}_mask.png`` side by side, and
``test/{palsar,sentinel}/sat/{ID}_sat.jpg`` + ``test/.../gt/{ID}_mask.png``. Masks are black/white RGB:
white = oil (1), black = background (0). Binary by nature, so ``classes="binary"`` changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dakd_edge.data.folder import PairDataset, list_images, pair_by_stem, unique_stems, warn_unpaired
from dakd_edge.errors import DatasetError
from dakd_edge.meta import BINARY_CLASSES

SENSORS = ("palsar", "sentinel")
MAX_GREY_FRACTION = 0.25  # anti-aliased edges stay far below this; a grey image does not


def decode_black_white(arr: np.ndarray, path: Path) -> np.ndarray:
    """Black/white mask -> {0, 1} by thresholding at 128.

    The real release anti-aliases slick edges (up to ~9 % grey pixels in a patch), so grey is expected;
    a mask that is mostly mid-grey, or coloured, is not an SOS mask (e.g. an image passed as a mask), and
    one whose brightest pixel is 1 holds class ids, not black/white.
    """
    grey = arr.astype(np.float32).mean(axis=2) if arr.ndim == 3 else arr.astype(np.float32)
    if grey.max() == 1:  # ids 0/1 would all threshold to background: every slick lost, silently
        raise DatasetError(
            f"{path}: class-id mask (values 0/1) in an SOS folder; expected black/white (white = oil)"
        )
    if arr.ndim == 3 and np.abs(arr.astype(np.int16) - arr[..., :1].astype(np.int16)).max() > 48:
        raise DatasetError(f"{path}: coloured pixels in a black/white SOS mask")
    unsure = (grey > 64) & (grey < 192)
    if unsure.mean() > MAX_GREY_FRACTION:
        raise DatasetError(f"{path}: {100 * unsure.mean():.1f}% of pixels are neither black nor white")
    return (grey >= 128).astype(np.int64)


def _sensor_pairs(base: Path, split: str, sensor: str) -> list[tuple[Path, Path]]:
    folder = base / split / sensor
    if (folder / "sat").is_dir():  # test layout: sat/ + gt/
        return pair_by_stem(
            folder / "sat", folder / "gt", mask_stem=lambda s: s.removesuffix("_sat") + "_mask"
        )
    if not folder.is_dir():
        raise DatasetError(f"SOS folder not found: {folder}")
    files = list_images(folder)
    masks = unique_stems([p for p in files if p.stem.endswith("_mask")], "mask")
    pairs, missing = [], []
    for img in unique_stems([p for p in files if p.stem.endswith("_sat")], "image").values():
        m = masks.get(img.stem.removesuffix("_sat") + "_mask")
        if m is None:
            missing.append(img.name)
        else:
            pairs.append((img, m))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) in {folder} have no _mask file (first: {missing[0]})")
    if not pairs:
        raise DatasetError(f"{folder}: no {{ID}}_sat / {{ID}}_mask pairs")
    used = {b for _, b in pairs}
    warn_unpaired([m for m in masks.values() if m not in used], "mask", folder)
    return pairs


def open_sos(
    root: str | os.PathLike, split: str = "train", sensor: str | None = None, classes: str = "native"
) -> PairDataset:
    """SOS split for one sensor, or both sensors concatenated when ``sensor`` is None."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"SOS folder not found: {root}")
    if sensor is not None and sensor not in SENSORS:
        raise DatasetError(f"unknown SOS sensor {sensor!r}; choose {' or '.join(SENSORS)}")
    if not (root / split).is_dir():
        raise DatasetError(f"{root}: no SOS split {split!r}")
    sensors = [sensor] if sensor else [s for s in SENSORS if (root / split / s).is_dir()]
    if not sensors:
        raise DatasetError(f"{root / split}: no palsar/ or sentinel/ folder")
    pairs = [p for s in sensors for p in _sensor_pairs(root, split, s)]
    return PairDataset(
        pairs, decode_black_white, BINARY_CLASSES, root / split, binary=classes == "binary", kind="sos",
        source="black/white masks, white = oil (grey edges thresholded at 128)",
    )  # fmt: skip
