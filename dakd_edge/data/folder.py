"""Image/mask pair datasets: the shared reader, and the generic ``images/ + masks/`` folder.

Images are read with Pillow as unit luminance (SAR releases store grey as RGB: the channel mean is
taken, exact when R = G = B). Masks are decoded by a per-dataset function into int64 class ids
(255 = ignore). Pairs are listed and their sizes checked when the dataset is opened, so a broken
folder fails at once with a :class:`~dakd_edge.errors.DatasetError` naming the file. numpy + pillow.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dakd_edge.errors import DatasetError, Notice
from dakd_edge.meta import BINARY_CLASSES, IGNORE_INDEX, MAX_CLASSES, OSD_CLASSES, oil_ids_of

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

MaskDecoder = Callable[[np.ndarray, Path], np.ndarray]


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` by extension (any case); hidden files (``.DS_Store``, macOS ``._x.png``)
    and sub-folders (even one named ``x.png``) are not images."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and not p.is_dir()
    )


def open_image(path: Path) -> Image.Image:
    """``Image.open(path)``, refusing a FIFO, socket or device first: opening a FIFO waits for a writer
    forever, and a device (/dev/zero) reads without end."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG  # Image.open names the reason (missing file, dangling link, ...)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise DatasetError(f"cannot read image {path}: not a regular file (a FIFO, socket or device)")
    return Image.open(path)


def read_array(path: Path, palette: bool = False) -> np.ndarray:
    """Pixels of an image file as a numpy array (H, W) or (H, W, C); DatasetError if unreadable.

    A palette image gives its indices (class-id masks are often stored this way), or with ``palette``
    its colours (an image: the indices of a quantised grey or colour image are no luminance).
    """
    try:
        with open_image(path) as im:
            if im.mode in ("P", "PA") and palette:
                im = im.convert("RGB")
            if im.mode == "P":
                return np.asarray(im)  # palette indices (class-id masks are often stored this way)
            if im.mode in ("RGBA", "LA"):
                im = im.convert(im.mode[:-1])
            if im.mode == "1":
                im = im.convert("L")
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header only."""
    try:
        with open_image(path) as im:
            return im.size[1], im.size[0]
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from None


def decode_luminance(arr: np.ndarray, path: Path) -> np.ndarray:
    """Image-file pixels (8 or 16 bit) -> float32 (H, W) unit luminance (mean over colour channels; exact
    for R = G = B). Not :func:`dakd_edge.data.scaling.to_unit`, which maps raster values by a named scale."""
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise DatasetError(f"{path}: unsupported image type {arr.dtype} (use 8-bit grey or RGB)")
    a = arr.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return a / np.float32(scale)


def binary_from_native(mask: np.ndarray, oil_ids: Sequence[int] = (1,)) -> np.ndarray:
    """Native class ids -> oil (1) vs everything else (0); ignore stays ignore. ``oil_ids``: the native
    ids that mean oil (OSD's and SOS's: 1; a folder's: by name, :func:`dakd_edge.meta.oil_ids_of`)."""
    out = np.isin(mask, oil_ids).astype(np.int64)
    out[mask == IGNORE_INDEX] = IGNORE_INDEX
    return out


class PairDataset:
    """A list of (image, mask) files with a mask decoder. Samples follow the package contract:
    ``image`` float32 (1, H, W) unit luminance, ``mask`` int64 (H, W) with 255 = ignore."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        decode: MaskDecoder,
        class_names: Sequence[str],
        root: Path,
        binary: bool = False,
        check_sizes: bool = True,
    ) -> None:
        if not pairs:
            raise DatasetError(f"{root}: no image/mask pairs found")
        self.root = Path(root)
        self.files = [(Path(a), Path(b)) for a, b in pairs]
        self._decode = decode
        self._native_classes = list(class_names)
        self.binary = binary and len(class_names) != 2
        self._oil_ids = oil_ids_of(class_names) if self.binary else [1]
        self.class_names = list(BINARY_CLASSES) if binary else list(class_names)
        self.num_classes = len(self.class_names)
        if check_sizes:
            for img, msk in self.files:
                if image_size(img) != image_size(msk):
                    raise DatasetError(
                        f"size mismatch: image {img} is {image_size(img)}, its mask {msk} is {image_size(msk)}"
                    )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        img_path, mask_path = self.files[index]
        image = decode_luminance(read_array(img_path, palette=True), img_path)
        mask = self._decode(read_array(mask_path), mask_path)
        if mask.shape != image.shape:
            raise DatasetError(
                f"size mismatch: image {img_path} is {image.shape}, mask {mask_path} is {mask.shape}"
            )
        if self.binary:
            mask = binary_from_native(mask, self._oil_ids)
        return {"image": image[None], "mask": mask}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}, {len(self)} samples, classes={self.class_names})"


def decode_class_ids(num_classes: int) -> MaskDecoder:
    """Single-channel masks whose values are class ids (255 = ignore); other values are an error."""

    def decode(arr: np.ndarray, path: Path) -> np.ndarray:
        if arr.ndim == 3:
            if not (arr == arr[..., :1]).all():
                raise DatasetError(f"{path}: colour mask in a class-id folder (expected one channel of ids)")
            arr = arr[..., 0]
        mask = arr.astype(np.int64)
        bad = (mask >= num_classes) & (mask != IGNORE_INDEX) | (mask < 0)
        if bad.any():
            raise DatasetError(
                f"{path}: mask values {sorted(np.unique(mask[bad]).tolist())[:5]} are not class ids "
                f"0..{num_classes - 1} (or 255 = ignore)"
            )
        return mask

    return decode


def pair_by_stem(
    images: Path, masks: Path, mask_stem: Callable[[str], str] = lambda s: s
) -> list[tuple[Path, Path]]:
    """Pair ``images/X.*`` with ``masks/mask_stem(X).*``; DatasetError if any image has no mask."""
    if not images.is_dir():
        raise DatasetError(f"image folder not found: {images}")
    if not masks.is_dir():
        raise DatasetError(f"mask folder not found: {masks}")
    by_stem = unique_stems(list_images(masks), "mask")
    pairs, missing = [], []
    for img in unique_stems(list_images(images), "image").values():  # 1_sat.jpg + 1_sat.png: refused
        m = by_stem.get(mask_stem(img.stem))
        if m is None:
            missing.append(img.name)
        else:
            pairs.append((img, m))
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) in {images} have no mask in {masks} (first: {missing[0]})"
        )
    if not pairs:
        raise DatasetError(f"no images found in {images}")
    used = {m for _, m in pairs}
    warn_unpaired([p for p in by_stem.values() if p not in used], "mask", images)
    return pairs


def unique_stems(files: Sequence[Path], what: str) -> dict[str, Path]:
    """``{stem: file}``; DatasetError when two files share a stem (``a.png`` and ``a.tif``): which one is
    meant cannot be told, and picking one silently could train on the wrong labels."""
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.stem in by_stem:
            raise DatasetError(f"two {what}s with one name: {by_stem[p.stem]} and {p.name}; keep one of them")
        by_stem[p.stem] = p
    return by_stem


def warn_unpaired(files: Sequence[Path], what: str, other: Path) -> None:
    """Say (once, with a count) that some files have no partner and are not used."""
    if files:
        first = sorted(files)[0]
        warnings.warn(
            f"{len(files)} {what}(s) without an image in {other} are not used (first: {first})",
            Notice,
            stacklevel=3,
        )


def folder_root(root: Path, split: str | None) -> Path:
    """``root/split`` when it holds images/ + masks/, else ``root`` itself."""
    if split and (root / split / "images").is_dir():
        return root / split
    if (root / "images").is_dir():
        return root
    raise DatasetError(f"{root}: no images/ folder (looked in {root / (split or '')} and {root})")


def open_folder(root: str | os.PathLike, split: str | None = "train", classes: str = "native") -> PairDataset:
    """Generic ``images/ + masks/`` folder (optionally under ``train/``/``test/``).

    Masks are single-channel class-id images with the same stems (255 = ignore). The label set comes
    from an optional ``classes.json`` ({"class_names": [...]}) beside images/; without one the masks are
    scanned: ids <= 1 -> binary (background, oil), otherwise the 5 OSD classes. Masks holding only 0 and
    255 are refused: black/white masks, whose oil (255) would be read as ignore and never trained.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    base = folder_root(root, split)
    pairs = pair_by_stem(base / "images", base / "masks")
    names = _class_names(base, root, pairs)
    return PairDataset(pairs, decode_class_ids(len(names)), names, base, binary=classes == "binary")


def _class_names(base: Path, root: Path, pairs: list[tuple[Path, Path]]) -> list[str]:
    for cand in (base / "classes.json", root / "classes.json"):
        if cand.is_file():
            try:
                names = json.loads(cand.read_text())["class_names"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DatasetError(f'{cand}: expected {{"class_names": [...]}} ({e})') from None
            if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES:
                raise DatasetError(f"{cand}: class_names must list 2 to {MAX_CLASSES} classes")
            return [str(n) for n in names]
    top, ignore = 0, False
    for _, m in pairs:
        arr = read_array(m)
        vals = arr[arr != IGNORE_INDEX]
        top = max(top, int(vals.max()) if vals.size else 0)
        ignore = ignore or vals.size < arr.size
    if top == 0 and ignore:
        # Black/white masks saved as 0/255: 255 is the ignore value here, so oil would never be trained.
        raise DatasetError(
            f"{base / 'masks'}: every mask holds only 0 and 255, but 255 means 'ignore' in a class-id "
            "folder; store oil as 1 (class ids 0 = background, 1 = oil)"
        )
    if top <= 1:
        return list(BINARY_CLASSES)
    if top < len(OSD_CLASSES):  # ids 2-4 without names: read as OSD's, which must be said
        warnings.warn(
            f"{base}: no classes.json and mask ids up to {top}: read as the OSD classes "
            f"{', '.join(f'{i} {n}' for i, n in enumerate(OSD_CLASSES))}; add classes.json "
            '({"class_names": [...]}) if they mean something else',
            Notice,
            stacklevel=3,
        )
        return list(OSD_CLASSES)
    raise DatasetError(f"{base}: mask ids up to {top}; add classes.json with the class names")
