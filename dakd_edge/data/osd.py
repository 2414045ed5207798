"""OSD, the Oil Spill Detection dataset (Krestenitis et al. 2019, Sentinel-1).

Release layout: ``{train,test}/images/*.jpg`` with ``labels/*.png`` (RGB palette: black sea, cyan oil,
red look-alike, brown ship, green land) and/or ``labels_1D/*.png`` (class ids). Palette labels are
mapped to the nearest palette colour (the release has a few off-palette pixels next to class borders);
a colour farther than ``max_colour_distance`` from every palette entry is an error, not a guess.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dakd_edge.data.folder import PairDataset, decode_class_ids, pair_by_stem, refuse_lossy
from dakd_edge.errors import DatasetError
from dakd_edge.meta import OSD_CLASSES, OSD_PALETTE

# The nearest pair of palette colours (brown, red) is 127 apart; the release's stray pixels sit <= 66
# from their colour. Farther than this from every colour means the file is not an OSD label.
MAX_COLOUR_DISTANCE = 100.0
PALETTE_WORDS = "black sea, cyan oil, red look-alike, brown ship, green land"


def decode_palette(
    palette: tuple[tuple[int, int, int], ...] = OSD_PALETTE, max_distance: float = MAX_COLOUR_DISTANCE
):
    """RGB label -> class ids by nearest palette colour (computed once per distinct colour)."""
    pal = np.asarray(palette, dtype=np.float64)

    def decode(arr: np.ndarray, path: Path) -> np.ndarray:
        if arr.ndim != 3 or arr.shape[2] < 3:
            raise DatasetError(
                f"{path}: single-channel label in {path.parent.name}/, but OSD labels/ are RGB colour images "
                f"({PALETTE_WORDS}); class-id masks belong in labels_1D/ (OSD) or masks/ (images/ + masks/)"
            )
        rgb = arr[..., :3].astype(np.int64)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        colours, inverse = np.unique(packed.ravel(), return_inverse=True)
        cols = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(
            np.float64
        )
        dist = np.sqrt(((cols[:, None, :] - pal[None]) ** 2).sum(-1))
        nearest, best = dist.argmin(1), dist.min(1)
        if (best > max_distance).any():
            bad = cols[best.argmax()].astype(int).tolist()
            n = int(np.isin(inverse, np.nonzero(best > max_distance)[0]).sum())
            raise DatasetError(
                f"{path}: {n} pixel(s) with colours far from the OSD palette (e.g. RGB {tuple(bad)}, "
                f"{best.max():.0f} away); is this an OSD label?"
            )
        return nearest[inverse].reshape(arr.shape[:2]).astype(np.int64)

    return decode


def osd_split_dir(root: Path, split: str) -> Path:
    """``root/split`` of an OSD release, or ``root`` itself when it is already a split folder."""
    if (root / split / "images").is_dir():
        return root / split
    if (root / "images").is_dir() and ((root / "labels").is_dir() or (root / "labels_1D").is_dir()):
        return root
    found = sorted(p.name for p in root.iterdir() if (p / "images").is_dir()) if root.is_dir() else []
    hint = f" (splits present: {', '.join(found)})" if found else ""
    raise DatasetError(f"{root}: no OSD split {split!r} with images/ and labels/{hint}")


def open_osd(
    root: str | os.PathLike, split: str = "train", classes: str = "native", labels: str = "auto"
) -> PairDataset:
    """OSD split as a dataset of 5 classes (or oil vs rest with ``classes="binary"``).

    ``labels``: "auto" (labels_1D when present, else the RGB labels), "rgb" or "1d".
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"OSD folder not found: {root}")
    base = osd_split_dir(root, split)
    use_1d = (base / "labels_1D").is_dir() if labels == "auto" else labels == "1d"
    if labels not in ("auto", "rgb", "1d"):
        raise DatasetError(f"labels must be 'auto', 'rgb' or '1d', got {labels!r}")
    label_dir = base / ("labels_1D" if use_1d else "labels")
    decode = decode_class_ids(len(OSD_CLASSES)) if use_1d else decode_palette()
    pairs = pair_by_stem(base / "images", label_dir)
    source = f"labels/ colours read as the OSD palette ({PALETTE_WORDS})"
    if use_1d:  # ids only: labels/ colours go to the nearest palette colour (one far from all is refused)
        refuse_lossy(pairs, label_dir)
        source = "class ids in labels_1D/"
    return PairDataset(
        pairs, decode, OSD_CLASSES, base, binary=classes == "binary", kind="osd", source=source,
        mask_colours=not use_1d,
    )  # fmt: skip
