"""Image/mask pair datasets: the shared reader, and the generic ``images/ + masks/`` folder.

Images are read with Pillow as unit luminance (SAR releases store grey as RGB: the channel mean is
taken, exact when R = G = B). Masks are decoded by a per-dataset function into int64 class ids
(255 = ignore). Pairs are listed and their sizes checked when the dataset is opened, so a broken
folder fails at once with a :class:`~dakd_edge.errors.DatasetError` naming the file. numpy + pillow.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dakd_edge import jsonin
from dakd_edge.errors import DatasetError, Notice, user_stacklevel
from dakd_edge.meta import (
    BINARY_CLASSES,
    IGNORE_INDEX,
    OSD_CLASSES,
    OSD_PALETTE,
    class_names_problem,
    oil_ids_of,
)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
LOSSY_EXTS = (".jpg", ".jpeg")
# Names of split folders: ``--data`` pointed at one of them has the dataset root as its parent.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")

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
    try:
        return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # neither is an OSError
        raise DatasetError(_bomb_message(path, e)) from None


def _bomb_message(path: Path, e: Exception) -> str:
    """One line for an image whose header claims more pixels than Pillow decodes (a few bytes of PNG
    can claim 20000 x 20000: decoding would take gigabytes)."""
    m = re.search(r"\((\d+) pixels\).*?(\d+) pixels", str(e))
    if not m:
        return f"cannot read image {path}: {e}"
    return (
        f"cannot read image {path}: its header claims {int(m[1]):,} pixels, over Pillow's limit of "
        f"{int(m[2]):,} (a decompression bomb, or a scene too large for a dataset image: tile it first)"
    )


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


def decode_luminance(
    arr: np.ndarray, path: Path, float_scale: str | None = None, u16_divisor: float = 65535.0
) -> np.ndarray:
    """Image-file pixels -> float32 (H, W) unit luminance (mean over colour channels; exact for R = G =
    B): 8-bit / 255, 16-bit / 65535, float sigma0 as ``segment`` reads it
    (:func:`~dakd_edge.data.scaling.to_unit`: in dB, linear or amplitude), so chips calibrated like the
    scenes the model will segment train it. ``float_scale``: the dataset's scale (one for all its chips:
    guessed chip by chip, a bright linear chip read as 8-bit); None: as the file name states or its values
    show. ``u16_divisor``: 65535, or 255 for a set whose 16-bit chips never pass 255 (8-bit values
    stored in 16 bits, which ``segment`` reads as 8-bit). No-data values (NaN, -9999 and the like: at most -100, or 1e30 and beyond) become NaN, which the
    sample's mask ignores."""
    if arr.dtype.kind == "f":
        from dakd_edge.data.scaling import to_unit

        grey = float_grey(arr)
        return to_unit(grey, float_scale or float_scale_of(grey, path))
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = u16_divisor
    else:
        raise DatasetError(
            f"{path}: unsupported image type {arr.dtype} (use 8-bit or 16-bit grey / RGB, or float sigma0 in "
            "dB or linear power)"
        )
    a = arr.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return a / np.float32(scale)


def float_grey(arr: np.ndarray) -> np.ndarray:
    """A float chip as float32 (H, W) values, no-data values (at most -100, or 1e30 and beyond: no
    backscatter reads them) as NaN."""
    grey = arr.astype(np.float32).mean(axis=2) if arr.ndim == 3 else arr.astype(np.float32)
    with np.errstate(invalid="ignore"):
        grey[(grey <= -100) | (np.abs(grey) >= 1e30)] = np.nan
    return grey


def float_scale_of(grey: np.ndarray, path: Path) -> str:
    """The scale of a float chip: the one its file name states, else the one its finite values show."""
    from dakd_edge.data.scaling import detect_scale, scale_from_name
    from dakd_edge.errors import InputError

    named = scale_from_name(path.name, str(grey.dtype))
    try:  # exact 0 is left out: the fill of Earth Engine / SNAP exports, not a level of the sea
        return named.scale if named is not None else detect_scale(grey[np.isfinite(grey) & (grey != 0)])
    except InputError as e:
        raise DatasetError(f"{path}: {e}") from None


def binary_from_native(mask: np.ndarray, oil_ids: Sequence[int] = (1,)) -> np.ndarray:
    """Native class ids -> oil (1) vs everything else (0); ignore stays ignore. ``oil_ids``: the native
    ids that mean oil (OSD's and SOS's: 1; a folder's: by name, :func:`dakd_edge.meta.oil_ids_of`)."""
    out = np.isin(mask, oil_ids).astype(np.int64)
    out[mask == IGNORE_INDEX] = IGNORE_INDEX
    return out


class PairDataset:
    """A list of (image, mask) files with a mask decoder. Samples follow the package contract:
    ``image`` float32 (1, H, W) unit luminance, ``mask`` int64 (H, W) with 255 = ignore.

    ``kind`` and ``source`` (how the masks are read, e.g. "labels/ colours by the OSD palette") are
    shown in the training summary, so a set read by the wrong rule is seen before it is trained on.
    ``mask_colours``: read palette (mode P) masks as their colours, for colour-coded labels.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        decode: MaskDecoder,
        class_names: Sequence[str],
        root: Path,
        binary: bool = False,
        check_sizes: bool = True,
        kind: str = "folder",
        source: str = "",
        mask_colours: bool = False,
    ) -> None:
        if not pairs:
            raise DatasetError(f"{root}: no image/mask pairs found")
        self.root = Path(root)
        self.kind, self.source, self._mask_colours = kind, source, mask_colours
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
        self._image_scales()
        image = decode_luminance(
            read_array(img_path, palette=True), img_path, self._float_scale, self._u16_divisor
        )
        mask = self.read_mask(index)
        if mask.shape != image.shape:
            raise DatasetError(
                f"size mismatch: image {img_path} is {image.shape}, mask {mask_path} is {mask.shape}"
            )
        bad = ~np.isfinite(image)  # a calibrated chip's no-data: nothing to learn or score there
        if bad.any():  # filled with the chip's median, so the stored normalisation barely moves
            image[bad] = float(np.median(image[~bad])) if (~bad).any() else 0.5
            mask[bad] = IGNORE_INDEX
        return {"image": image[None], "mask": mask}

    SAMPLE_CHIPS = 8  # chips, spread through the set, that decide its image scale

    def float_scale(self) -> str | None:
        """The scale of the set's float chips (None: no float chip, or none with a valid value), one for
        every chip and every loader worker, not a guess chip by chip: the scale the first sampled chip's
        name states, else the one the pooled valid values of :attr:`SAMPLE_CHIPS` chips show (exact 0 and
        fill left out: a first chip outside the swath, all fill, decided nothing)."""
        self._image_scales()
        return self._float_scale

    def _image_scales(self) -> None:
        if hasattr(self, "_float_scale"):
            return
        from dakd_edge.data.scaling import scale_from_name

        picks = np.unique(
            np.linspace(0, len(self.files) - 1, min(self.SAMPLE_CHIPS, len(self.files))).astype(int)
        )
        pooled, u16_max, named = [], None, None
        for i in picks:
            path = self.files[int(i)][0]
            arr = read_array(path, palette=True)
            if arr.dtype.kind == "f":
                named = named or scale_from_name(path.name, str(arr.dtype))
                grey = float_grey(arr)
                pooled.append(grey[np.isfinite(grey) & (grey != 0)][::7])
            elif arr.dtype == np.uint16:
                u16_max = max(u16_max or 0, int(arr.max(initial=0)))
        values = np.concatenate(pooled) if pooled else np.empty(0, np.float32)
        scale = named.scale if named is not None else None
        if scale is None and values.size:
            scale = float_scale_of(values, self.files[int(picks[0])][0])
        self._u16_divisor = 255.0 if u16_max is not None and u16_max <= 255 else 65535.0
        self._float_scale = scale

    def read_mask(self, index: int) -> np.ndarray:
        """The mask of sample ``index`` alone (int64 class ids of :attr:`class_names`, 255 = ignore),
        without reading its image: what the class shares of a summary are counted on."""
        mask_path = self.files[index][1]
        mask = self._decode(read_array(mask_path, palette=self._mask_colours), mask_path)
        return binary_from_native(mask, self._oil_ids) if self.binary else mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}, {len(self)} samples, classes={self.class_names})"


def class_ids(arr: np.ndarray, path: Path) -> np.ndarray:
    """Mask pixels -> int64 (H, W) values, refusing what is no class id: colours (a grey RGB mask is
    read as its one channel) and fractions (soft or resampled labels would truncate to 0: no oil)."""
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise DatasetError(colour_mask_problem(arr, path))
        arr = arr[..., 0]
    if arr.dtype.kind == "f":
        frac = ~np.isfinite(arr) | (arr != np.round(arr))
        if frac.any():
            seen = ", ".join(f"{v:g}" for v in np.unique(arr[frac])[:3].tolist())
            raise DatasetError(
                f"{path}: mask values {seen} are not integers ({100 * frac.mean():.1f}% of pixels; soft or "
                "resampled labels?); masks hold class ids 0, 1, ... (255 = ignore): threshold or round "
                "them (e.g. oil where the value is >= 0.5) and resample masks with nearest neighbour"
            )
    return arr.astype(np.int64)


def colour_mask_problem(arr: np.ndarray, path: Path) -> str:
    """Why a colour mask cannot be read as class ids, and how to fix it (OSD colours: the OSD layout)."""
    colours = np.unique(arr[..., :3].reshape(-1, 3), axis=0)
    osd = len(colours) <= len(OSD_PALETTE) and {tuple(c) for c in colours.tolist()} <= set(OSD_PALETTE)
    ids = "store each pixel's class id (0, 1, ...) in one channel (8-bit PNG or TIFF)"
    if osd:
        ids = f"if its colours mean the OSD classes, name the folder labels/ (OSD layout), else {ids}"
    return f"{path}: colour (RGB) mask, but {path.parent.name}/ holds class ids in one channel; {ids}"


def refuse_lossy(pairs: Sequence[tuple[Path, Path]], folder: Path) -> None:
    """DatasetError when class-id masks are JPEG: its compression changes values along class borders
    and so invents classes (a 0/1 mask gains 2s: read as 5 OSD classes)."""
    lossy = [m for _, m in pairs if m.suffix.lower() in LOSSY_EXTS]
    if lossy:
        raise DatasetError(
            f"{len(lossy)} mask(s) in {folder} are JPEG (first: {lossy[0].name}); JPEG compression alters "
            "class ids along every border: save the masks losslessly, as PNG or TIFF"
        )


def decode_class_ids(num_classes: int) -> MaskDecoder:
    """Single-channel masks whose values are class ids (255 = ignore); other values are an error."""

    def decode(arr: np.ndarray, path: Path) -> np.ndarray:
        mask = class_ids(arr, path)
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
    nested = nested_images(images)
    where = f"sub-folders of {images} ({', '.join(nested)}) are not searched"
    if not pairs:
        move = f"put the images directly in {images.name}/, their masks in {masks.name}/"
        raise DatasetError(f"no images found in {images}" + (f"; {where}: {move}" if nested else ""))
    if nested:
        warnings.warn(
            Notice(f"{where}: only the {len(pairs)} image(s) directly in it are used"),
            stacklevel=user_stacklevel(),
        )
    used = {m for _, m in pairs}
    warn_unpaired([p for p in by_stem.values() if p not in used], "mask", images)
    return pairs


def nested_images(folder: Path) -> list[str]:
    """Names of the (non-hidden) sub-folders of ``folder`` that hold image files at any depth: they are
    not read, which must be said (sensor folders images/palsar/, ... would be left out in silence)."""
    return [
        d.name
        for d in sorted(folder.iterdir())
        if d.is_dir()
        and not d.name.startswith(".")
        and any(f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".") for f in d.rglob("*"))
    ]


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
            Notice(f"{len(files)} {what}(s) without an image in {other} are not used (first: {first})"),
            stacklevel=user_stacklevel(),
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

    Masks are single-channel class-id images with the same stems (255 = ignore), stored losslessly (JPEG
    masks are refused). The label set comes from an optional ``classes.json`` ({"class_names": [...]})
    (see :func:`classes_file` for where); without one the masks are scanned: ids <= 1 -> binary
    (background, oil), ids up to 4 -> the 5 OSD classes. A folder whose masks hold only 0 and 255 is
    refused: black/white masks, whose oil (255) would be read as ignore and never trained.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    base = folder_root(root, split)
    pairs = pair_by_stem(base / "images", base / "masks")
    refuse_lossy(pairs, base / "masks")
    found = classes_file(base, root)
    if found is not None:
        names, source = _read_class_names(found), f"class ids in masks/, named by {found}"
    else:
        names = _guess_class_names(base, pairs)
        source = "class ids in masks/, classes guessed from them (no classes.json)"
    return PairDataset(
        pairs, decode_class_ids(len(names)), names, base, binary=classes == "binary", source=source
    )


def classes_file(base: Path, root: Path) -> Path | None:
    """The ``classes.json`` naming a folder's classes: in the split folder ``base``, else in the dataset
    root (``root``, or its parent when ``--data`` is a split folder such as ``test/``), else in another
    split folder of that root, said in a warning: ``train/classes.json`` alone must still name test/'s
    classes (guessed from its masks, a test set stopped matching the model trained on train/)."""
    top = root.parent if base == root and root.name.lower() in SPLIT_NAMES else root
    for cand in (base / "classes.json", top / "classes.json"):
        if cand.is_file():
            return cand
    if top == base:
        return None
    for d in sorted(top.iterdir(), key=lambda d: (d.name != "train", d.name)):
        cand = d / "classes.json"
        # only another split of this dataset (train/, val/, ...): not any project beside a lone test/
        if d != base and d.name.lower() in SPLIT_NAMES and (d / "images").is_dir() and cand.is_file():
            warnings.warn(
                Notice(
                    f"{base} has no classes.json: using {cand} (move it to {top} to name every split's classes)"
                ),
                stacklevel=user_stacklevel(),
            )
            return cand
    return None


def _read_class_names(path: Path) -> list[str]:
    """``class_names`` of a classes.json; DatasetError naming the file if malformed or ambiguous."""
    try:
        names = jsonin.loads(path.read_text())["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f'{path}: expected {{"class_names": [...]}} ({e})') from None
    problem = class_names_problem(names)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    return [str(n) for n in names]


def _guess_class_names(base: Path, pairs: list[tuple[Path, Path]]) -> list[str]:
    """Class names from the values of every mask (no classes.json), refusing what would be misread."""
    values: set[int] = set()
    bw: list[Path] = []  # masks of 0 and 255 alone: black/white, or no oil beside a nodata border
    bw_ignored = bw_pixels = 0
    for _, m in pairs:
        ids = class_ids(read_array(m), m)
        u, counts = np.unique(ids, return_counts=True)
        values.update(u.tolist())
        if u.tolist() == [0, IGNORE_INDEX]:
            bw.append(m)
            bw_ignored += int(counts[-1])
            bw_pixels += ids.size
    labelled = sorted(values - {IGNORE_INDEX})
    top = labelled[-1] if labelled else 0
    if top == 0 and IGNORE_INDEX in values:
        # Black/white masks saved as 0/255: 255 is the ignore value here, so oil would never be trained.
        raise DatasetError(
            f"{base / 'masks'}: every mask holds only 0 and 255, but 255 means 'ignore' in a class-id "
            "folder; store oil as 1 (class ids 0 = background, 1 = oil)"
        )
    if labelled == [0, top] and top >= len(OSD_CLASSES):  # 0/65535 16-bit, 0/128, ...: two-valued masks
        raise DatasetError(
            f"{base / 'masks'}: the masks hold only the values 0 and {top}: black/white masks, not class "
            "ids; store oil as 1 (class ids 0 = background, 1 = oil, 255 = ignore)"
        )
    if top >= len(OSD_CLASSES):
        raise DatasetError(
            f"{base}: mask ids up to {top} and no classes.json; name the classes in a classes.json "
            '({"class_names": [...]}) in this folder or the dataset root'
        )
    if bw:
        warnings.warn(
            Notice(
                f"{len(bw)} of {len(pairs)} masks in {base / 'masks'} hold only 0 and 255 (first: {bw[0]}) "
                "while the others hold class ids: 255 is read as 'ignore' there "
                f"({100 * bw_ignored / bw_pixels:.1f}% of their pixels); if it marks oil, store oil as 1"
            ),
            stacklevel=user_stacklevel(),
        )
    if top <= 1:
        return list(BINARY_CLASSES)
    # ids 2-4 without names: read as OSD's, which must be said
    warnings.warn(
        Notice(
            f"{base}: no classes.json and mask ids up to {top}: read as the OSD classes "
            f"{', '.join(f'{i} {n}' for i, n in enumerate(OSD_CLASSES))}; add classes.json "
            '({"class_names": [...]}) if they mean something else'
        ),
        stacklevel=user_stacklevel(),
    )
    return list(OSD_CLASSES)
