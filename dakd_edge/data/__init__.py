"""SAR data: synthetic scenes, real dataset loaders (OSD, SOS, generic, augmented) and transforms.

Every dataset yields samples as dicts of numpy arrays:
``image``: float32 (1, H, W) *unit luminance* in [0, 1] (see :mod:`dakd_edge.data.scaling`; consumers
apply the model's normalisation, JointNet uses 2 * unit - 1); ``mask``: int64 (H, W) class ids
(255 = ignore); optional ``logits``: float32 (K, H, W) teacher logits (augmented set only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dakd_edge.errors import DatasetError

KINDS = ("auto", "osd", "sos", "folder", "augmented")
CLASSES = ("native", "binary")

__all__ = ["CLASSES", "KINDS", "detect_kind", "open_dataset"]


def detect_kind(root: str | os.PathLike, split: str = "train") -> str:
    """Which layout ``root`` has: augmented (manifest), osd, sos or a generic images/+masks/ folder."""
    from dakd_edge.data.augmented import is_augmented

    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"dataset folder not found: {r}")
    if is_augmented(r):
        return "augmented"
    for base in (r / split, r, r / "train", r / "test"):
        if (base / "images").is_dir() and ((base / "labels").is_dir() or (base / "labels_1D").is_dir()):
            return "osd"
        if (base / "images").is_dir() and (base / "masks").is_dir():
            return "folder"
    if any((r / sp / s).is_dir() for sp in (split, "train", "test") for s in ("palsar", "sentinel")):
        return "sos"
    raise DatasetError(
        f"{r}: unknown dataset layout (expected an OSD release {{train,test}}/images+labels, SOS "
        "{train,test}/{palsar,sentinel}, images/+masks/, or an augmented set with manifest.json)"
    )


def open_dataset(
    root: str | os.PathLike,
    split: str = "train",
    kind: str = "auto",
    sensor: str | None = None,
    classes: str = "native",
) -> Any:
    """Open a dataset folder; samples are dicts (see the module docstring).

    Args:
        root: dataset folder (an OSD/SOS release root, a split folder, images/+masks/, or an augmented set).
        split: "train" or "test" (ignored by augmented sets).
        kind: "auto" (detect), "osd", "sos", "folder" or "augmented".
        sensor: SOS only: "palsar", "sentinel" or None (both).
        classes: "native" (the dataset's own classes) or "binary" (OSD oil -> 1, everything else -> 0;
            augmented logits are folded into (rest, oil)).

    The result has ``len``, indexing, ``num_classes``, ``class_names`` and ``files``.
    """
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if classes not in CLASSES:
        raise DatasetError(f"classes must be 'native' or 'binary', got {classes!r}")
    if sensor is not None and kind not in ("auto", "sos"):
        raise DatasetError("--sensor applies to SOS datasets only")
    if kind == "auto":
        kind = detect_kind(root, split)
    if sensor is not None and kind != "sos":
        raise DatasetError(f"--sensor applies to SOS datasets only, {root} is {kind}")
    if kind == "augmented":
        from dakd_edge.data.augmented import AugmentedDataset

        return AugmentedDataset(root, classes=classes)
    if kind == "osd":
        from dakd_edge.data.osd import open_osd

        return open_osd(root, split=split, classes=classes)
    if kind == "sos":
        from dakd_edge.data.sos import open_sos

        return open_sos(root, split=split, sensor=sensor, classes=classes)
    from dakd_edge.data.folder import open_folder

    return open_folder(root, split=split, classes=classes)
