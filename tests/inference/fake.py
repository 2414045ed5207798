"""A deterministic numpy Backend for tiling/segment tests: oil = locally dark.

Its logits are a smooth function of the local mean darkness (box filter of radius ``radius`` with
*zero padding*, like a conv net), so tile borders really do change its output: naive tiling shows
seams, correct blending does not.
"""

from __future__ import annotations

import numpy as np

from dakd_edge.inference.base import Backend
from dakd_edge.meta import ModelMeta


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 box with zero padding, for (N, H, W) arrays (integral image)."""
    n, h, w = x.shape
    p = np.zeros((n, h + 2 * r + 1, w + 2 * r + 1), np.float64)
    p[:, r + 1 : r + 1 + h, r + 1 : r + 1 + w] = x
    s = p.cumsum(1).cumsum(2)
    k = 2 * r + 1
    out = s[:, k:, k:] - s[:, :-k, k:] - s[:, k:, :-k] + s[:, :-k, :-k]
    return (out / (k * k)).astype(np.float32)


class FakeBackend(Backend):
    name = "fake"
    device = "cpu"

    def __init__(self, num_classes: int = 2, in_chans: int = 1, radius: int = 6, tile: int = 64) -> None:
        self.meta = ModelMeta.default_for("fake", num_classes, in_chans=in_chans, tile=tile)
        self.radius = radius
        self.calls: list[tuple[int, ...]] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.ndim == 4 and np.isfinite(batch).all()
        self.calls.append(batch.shape)
        dark = -box_mean(batch.mean(axis=1), self.radius)  # normalised: 0 = mean luminance
        k = self.meta.num_classes
        logits = np.zeros((batch.shape[0], k, *batch.shape[2:]), np.float32)
        logits[:, 1] = 8.0 * (dark - 0.5)  # oil where locally darker than the mean
        if k > 2:  # the last class (land in OSD) where locally very bright
            logits[:, k - 1] = 8.0 * (-dark - 1.2)
        return logits


def blob_scene(height: int, width: int, seed: int = 0, noise: float = 12.0) -> np.ndarray:
    """uint8 sea (~150) with dark elongated slicks (~40): smooth, with speckle-like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    img = np.full((height, width), 150.0, np.float32)
    for _ in range(max(2, height * width // 12000)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(8, 40), rng.uniform(20, 90)
        img -= 110.0 * np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
    img += rng.normal(0.0, noise, img.shape)
    return np.clip(img, 1, 255).astype(np.uint8)


def write_tif(
    path, data: np.ndarray, crs: str | None = "EPSG:32633", transform=None, nodata: float | None = None, **kw
):
    """Write a (H, W) or (C, H, W) array as a GeoTIFF (UTM 10 m pixels by default)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_origin

    a = data if data.ndim == 3 else data[None]
    if transform is None and crs is not None:
        transform = from_origin(500000.0, 6000000.0, 10.0, 10.0)
    prof = dict(driver="GTiff", height=a.shape[1], width=a.shape[2], count=a.shape[0], dtype=a.dtype)
    if crs is not None:
        prof["crs"] = crs
    if transform is not None:
        prof["transform"] = transform
    if nodata is not None:
        prof["nodata"] = nodata
    prof.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof) as ds:
            ds.write(a)
    return path
