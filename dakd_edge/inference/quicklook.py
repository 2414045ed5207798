"""PNG quicklook: the SAR scene (percentile stretch) with a translucent overlay of every class but the
background (sea, found by name) and a legend of the classes drawn."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from dakd_edge.atomic import atomic_path
from dakd_edge.errors import quiet
from dakd_edge.meta import ModelMeta, background_ids_of

NODATA_RGB = (40, 40, 40)


def _read_small(path: Path, band: int, max_size: int, resampling: Resampling) -> np.ndarray:
    with quiet(NotGeoreferencedWarning):
        with rasterio.open(path) as ds:
            f = max(1.0, max(ds.height, ds.width) / max_size)
            shape = (max(1, round(ds.height / f)), max(1, round(ds.width / f)))
            a = ds.read(band, out_shape=shape, resampling=resampling, masked=True)
    return np.ma.masked_invalid(a.astype(np.float64)) if a.dtype.kind == "f" else a


def stretch(a: np.ma.MaskedArray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    """Valid values -> uint8 with a percentile stretch (SAR has a long bright tail)."""
    vals = a.compressed() if np.ma.isMaskedArray(a) else np.asarray(a).ravel()
    if vals.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(vals, [lo_pct, hi_pct])
    g = (np.ma.filled(a.astype(np.float64), lo) - lo) / max(hi - lo, 1e-12)
    return np.clip(np.rint(g * 255), 0, 255).astype(np.uint8)


def render(sar: np.ma.MaskedArray, classes: np.ndarray, meta: ModelMeta, alpha: float = 0.45) -> Image.Image:
    """RGB image: grey SAR, every class but the background (sea, by name) tinted with the model palette;
    the legend lists the tinted classes."""
    grey = stretch(sar).astype(np.float64)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    pal = np.array(meta.palette, np.float64)
    tinted = _tinted(meta)
    for k in tinted:
        m = classes == k
        rgb[m] = (1 - alpha) * rgb[m] + alpha * pal[k]
    nodata = (classes == 255) | np.ma.getmaskarray(sar)
    rgb[nodata] = NODATA_RGB
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    _legend(img, [(meta.class_names[k], meta.palette[k]) for k in tinted])
    return img


def _tinted(meta: ModelMeta) -> list[int]:
    """The classes a quicklook colours: all but the background."""
    background = set(background_ids_of(meta.class_names))
    return [k for k in range(meta.num_classes) if k not in background]


def _legend(img: Image.Image, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    if not entries:
        return
    draw = ImageDraw.Draw(img, "RGBA")
    font = ImageFont.load_default()
    sw, pad = 12, 6
    widths = [draw.textlength(n, font=font) for n, _ in entries]
    box_w = int(pad * 3 + sw + max(widths))
    box_h = int(pad + len(entries) * (sw + pad))
    x0, y0 = pad, img.height - box_h - pad
    draw.rectangle([x0, y0, x0 + box_w, y0 + box_h], fill=(255, 255, 255, 200))
    for i, (name, rgb) in enumerate(entries):
        y = y0 + pad + i * (sw + pad)
        draw.rectangle([x0 + pad, y, x0 + pad + sw, y + sw], fill=(*rgb, 255), outline=(0, 0, 0, 255))
        draw.text((x0 + 2 * pad + sw, y), name, fill=(0, 0, 0, 255), font=font)


def quicklook(
    scene: str | os.PathLike,
    classes: str | os.PathLike,
    out: str | os.PathLike,
    meta: ModelMeta,
    band: int = 1,
    max_size: int = 1024,
    alpha: float = 0.45,
    overwrite: bool = False,
) -> Path:
    """Write a PNG (longest side ``max_size``) of ``scene`` with the ``classes`` raster overlaid."""
    sar = _read_small(Path(scene), band, max_size, Resampling.average)
    cls = _read_small(Path(classes), 1, max_size, Resampling.nearest)
    cls = np.ma.filled(cls, 255).astype(np.uint8)
    if cls.shape != sar.shape:  # rounding differences between the two reads
        h, w = min(cls.shape[0], sar.shape[0]), min(cls.shape[1], sar.shape[1])
        sar, cls = sar[:h, :w], cls[:h, :w]
    img = render(np.ma.asarray(sar), cls, meta, alpha)
    with atomic_path(out, overwrite) as tmp:
        img.save(tmp, format="PNG")
    return Path(out)
