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

import numpy as np

from dakd_edge.errors import DatasetError
from dakd_edge.meta import IGNORE_INDEX, oil_ids_of

KINDS = ("auto", "osd", "sos", "folder", "augmented")
CLASSES = ("native", "binary")

__all__ = ["CLASSES", "KINDS", "describe", "detect_kind", "open_dataset"]


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


def class_shares(dataset: Any, limit: int = 64) -> tuple[np.ndarray, float, int]:
    """Share of each class among the labelled pixels, the share of ignored (255) pixels, and how many
    masks they were counted on: all, or ``limit`` evenly spaced (cheap enough before every training)."""
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)) if n else []
    counts = np.zeros(dataset.num_classes + 1, np.int64)  # the last bin: ignore
    for i in picks:
        mask = dataset.read_mask(int(i)) if hasattr(dataset, "read_mask") else dataset[int(i)]["mask"]
        ids = np.where(mask == IGNORE_INDEX, dataset.num_classes, mask).ravel()
        counts += np.bincount(ids, minlength=counts.size)[: counts.size]
    labelled = counts[:-1].sum()
    shares = counts[:-1] / labelled if labelled else np.zeros(dataset.num_classes)
    return shares, float(counts[-1] / max(counts.sum(), 1)), len(picks)


def describe(dataset: Any, limit: int = 64) -> tuple[list[str], list[str]]:
    """What a dataset was read as: summary lines (kind, pairs, how masks are read, each class's pixel
    share) and warnings (no oil in the masks, one class covering every labelled pixel). Shown before
    training, since a set read by the wrong rule (own colours read as OSD's, 255 as ignore) trains
    without an error."""
    shares, ignored, read = class_shares(dataset, limit)
    names, n = list(dataset.class_names), len(dataset)
    kind = getattr(dataset, "kind", "augmented")
    source = getattr(dataset, "source", "")
    lines = [f"data: {getattr(dataset, 'root', '')} ({kind}), {n} pair{'s' * (n != 1)}"]
    lines += [f"masks: {source}"] if source else []
    of = f"{read} masks" if read == n else f"{read} of {n} masks, evenly spaced"
    shown = ", ".join(f"{i} {name} {_pct(s)}" for i, (name, s) in enumerate(zip(names, shares, strict=True)))
    ignore = f"; ignore (255) {_pct(ignored)}" if ignored else ""
    lines.append(f"classes (pixel share of {of}): {shown}{ignore}")
    warns = []
    if not shares.any():
        warns.append(f"every pixel of {of} is 255 (ignore): nothing to train on")
        return lines, warns
    oil = oil_ids_of(names)
    if not shares[oil].any():
        hint = (
            "; labels/ colours are read as the OSD palette: own colours must be converted to class ids "
            "in masks/ (with classes.json)"
            if kind == "osd" and "colours" in source
            else ""
        )
        warns.append(
            f"no oil in the data: class {', '.join(repr(names[i]) for i in oil)} covers 0% of the labelled "
            f"pixels of {of}; check how the masks store oil (README, Data){hint}"
        )
    elif shares.max() == 1.0:
        top = int(shares.argmax())
        warns.append(f"class {names[top]!r} covers every labelled pixel of {of}: no other class to learn")
    return lines, warns


def _pct(share: float) -> str:
    """A share as a percentage; a class that is present never shows as 0.0%."""
    return "<0.1%" if 0 < share < 0.0005 else f"{100 * share:.1f}%"
