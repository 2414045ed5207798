"""Describe a raster without reading all of it (``dakd-edge info``).

Value statistics come from a grid of sample windows, so a 20000 x 20000 scene is described in the time
it takes to read a few hundred kilopixels. rasterio + numpy only.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.errors import InputError


def _one_line(e: BaseException) -> str:
    """GDAL's own words: rasterio's outer error says "see previous exception", the cause says why."""
    from dakd_edge._atomic import deepest

    return " ".join(str(deepest(e)).split()) or type(e).__name__


def open_raster(path: str | os.PathLike):
    """``rasterio.open`` with typed, one-line errors for missing, unreadable and empty rasters."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a raster")
    try:
        with warnings.catch_warnings():  # "not georeferenced" is reported by describe_raster itself
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except (RasterioError, OSError) as e:
        raise InputError(f"{p}: cannot read as a raster ({_one_line(e)})") from None
    if ds.width == 0 or ds.height == 0 or ds.count == 0:
        ds.close()
        raise InputError(f"{p}: empty raster ({ds.count} band(s) of {ds.height} x {ds.width})")
    return ds


def sample_windows(height: int, width: int, n: int = 9, size: int = 256) -> list[tuple[int, int, int, int]]:
    """(row, col, h, w) of up to ``n`` non-overlapping windows spread evenly over the raster."""
    k = max(1, int(math.isqrt(n)))
    h, w = min(size, height), min(size, width)
    kr, kc = max(1, min(k, height // h)), max(1, min(k, width // w))
    rows = [round(i * (height - h) / max(kr - 1, 1)) for i in range(kr)]
    cols = [round(j * (width - w) / max(kc - 1, 1)) for j in range(kc)]
    return [(r, c, h, w) for r in rows for c in cols]


def describe_raster(path: str | os.PathLike, samples: int = 9, window: int = 256) -> dict[str, Any]:
    """Size, bands, dtype, CRS, transform, nodata, tiling and sampled value statistics of a raster."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    from dakd_edge.data.scaling import detect_scale

    with open_raster(path) as ds:
        wins = sample_windows(ds.height, ds.width, samples, window)
        try:
            data = [ds.read(window=Window(c, r, w, h), masked=True) for r, c, h, w in wins]
        except (RasterioError, OSError) as e:
            raise InputError(f"{path}: damaged or truncated raster ({_one_line(e)})") from None
        bands = []
        for b in range(ds.count):
            vals = np.ma.concatenate([d[b].ravel() for d in data])
            valid = vals.compressed()
            if np.issubdtype(valid.dtype, np.floating):
                valid = valid[np.isfinite(valid)]
            stats: dict[str, Any] = {"band": b + 1, "description": ds.descriptions[b]}
            stats["valid_fraction"] = float(valid.size / max(vals.size, 1))
            if valid.size:
                stats.update(
                    min=float(valid.min()),
                    max=float(valid.max()),
                    mean=float(valid.mean()),
                    p2=float(np.percentile(valid, 2)),
                    p98=float(np.percentile(valid, 98)),
                )
                if not np.iscomplexobj(valid):
                    try:
                        stats["scale"] = detect_scale(valid)
                    except InputError:
                        stats["scale"] = "unknown"
            bands.append(stats)
        sampled = sum(h * w for _, _, h, w in wins)
        crs = ds.crs
        return {
            "path": str(path),
            "driver": ds.driver,
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": list(ds.dtypes),
            "crs": crs.to_string() if crs else None,
            "crs_projected": bool(crs and crs.is_projected),
            "transform": list(ds.transform)[:6],
            "pixel_size": [abs(ds.transform.a), abs(ds.transform.e)],
            "bounds": list(ds.bounds),
            "nodata": ds.nodata,
            "block_shapes": [list(s) for s in ds.block_shapes],
            "compression": ds.compression.name.lower() if ds.compression else None,
            "tags": ds.tags(),
            "sampled_windows": len(wins),
            "sampled_fraction": float(sampled / (ds.width * ds.height)),
            "bands": bands,
        }
