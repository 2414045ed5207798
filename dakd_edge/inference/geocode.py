"""Geocode a GCP-georeferenced output raster onto a regular UTM grid (``segment --geocode``), by blocks.

The default keeps a product's GCPs on every output (no resampling of the detection). ``--geocode``
instead writes the class map and probabilities on a north-up grid in the UTM zone of the scene centre
at the product's pixel spacing, as GIS layers and web maps want them.

Each output block maps its pixel centres to the source through the same GCP geolocation the polygons
use (:func:`dakd_edge.inference.readers.georef_of`: bilinear on the annotation grid, inverted by
Newton's method; GCPs in a projected CRS interpolated in that CRS), evaluated on a coarse lattice and interpolated in between, then samples the source
by nearest neighbour (class ids must not be blended). Memory: one block plus the source window under
it. Longitudes are unwrapped for scenes on the antimeridian, so the grid never spans the globe, and
every lattice point's longitude is taken the short way from the scene centre before it is located in
the scene: a grid corner past +-180 of a scene that ends just short of it is then merely outside the
scene, not 360 degrees away (which, interpolated to its neighbours, misplaced pixels inside it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.windows import Window

from dakd_edge.errors import InputError, quiet
from dakd_edge.gtiff import gtiff_profile
from dakd_edge.inference.geotiff import SceneInfo
from dakd_edge.inference.readers import georef_of, world_of
from dakd_edge.lonlat import near

BLOCK = 512
LATTICE = 32  # output pixels between exactly geolocated points (bilinear in between: << 0.1 px error)


def utm_grid(info: SceneInfo, spacing: float | None = None) -> tuple[Any, Any, int, int]:
    """(UTM CRS, transform, width, height) of the north-up grid covering a GCP scene at ``spacing`` m:
    the polygons' UTM zone (:func:`~dakd_edge.inference.readers.world_of`), around the scene's edge."""
    if not info.gcps:
        raise InputError(f"{info.path}: --geocode applies to GCP-georeferenced scenes")
    h, w = info.height, info.width
    if spacing is None:
        spacing = float(min(info.pixel_size_m or georef_of(info).pixel_size_m))
    to_world, crs = world_of(info)  # pixel corners -> UTM
    n = 65
    t = np.linspace(0, 1, n)
    rows = np.concatenate([t * h, np.full(n, h), t[::-1] * h, np.zeros(n)])
    cols = np.concatenate([np.zeros(n), t * w, np.full(n, w), t[::-1] * w])
    x, y = to_world(cols, rows)
    x0, y1 = math.floor(x.min() / spacing) * spacing, math.ceil(y.max() / spacing) * spacing
    width = int(math.ceil((x.max() - x0) / spacing))
    height = int(math.ceil((y1 - y.min()) / spacing))
    return crs, from_origin(x0, y1, spacing, spacing), width, height


def _lerp2(coarse: np.ndarray, ys: np.ndarray, xs: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear interpolation of values on the lattice (ys x xs offsets) onto ``out_h x out_w``."""
    yy, xx = np.arange(out_h), np.arange(out_w)
    tmp = np.stack([np.interp(xx, xs, row) for row in coarse])  # (len(ys), out_w)
    return np.stack([np.interp(yy, ys, tmp[:, j]) for j in range(out_w)], axis=1)


def geocode(src: str | os.PathLike, dst: str | os.PathLike, info: SceneInfo, block: int = BLOCK) -> Path:
    """Write ``src`` (an output raster with the scene's GCPs) onto the UTM grid as a tiled GTiff ``dst``."""
    from pyproj import Transformer

    georef = georef_of(info)
    crs, transform, width, height = utm_grid(info)
    c_lon = float(georef.lonlat(np.array([info.height / 2]), np.array([info.width / 2]), wrap=False)[0][0])
    to_lonlat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    with quiet(NotGeoreferencedWarning):
        sds = rasterio.open(src)
    with sds:
        nodata = sds.nodata
        profile = gtiff_profile(
            height, width, sds.dtypes[0], count=sds.count, block=block,
            crs=crs, transform=transform, nodata=nodata, interleave="band",
        )  # fmt: skip
        fill = np.nan if nodata is not None and np.isnan(nodata) else (nodata if nodata is not None else 0)
        with rasterio.open(dst, "w", **profile) as out:
            out.update_tags(**sds.tags())
            for b in range(1, sds.count + 1):
                out.set_band_description(b, sds.descriptions[b - 1] or "")
                out.update_tags(b, **sds.tags(b))
            if sds.count == 1 and sds.dtypes[0] == "uint8":
                try:
                    out.write_colormap(1, sds.colormap(1))
                except ValueError:  # no colour table on the source
                    pass
            if any(s != 1.0 for s in sds.scales):
                out.scales, out.offsets = sds.scales, sds.offsets
            for by in range(0, height, block):
                for bx in range(0, width, block):
                    bh, bw = min(block, height - by), min(block, width - bx)
                    ys = np.unique(np.r_[np.arange(0, bh, LATTICE), bh - 1])
                    xs = np.unique(np.r_[np.arange(0, bw, LATTICE), bw - 1])
                    gx, gy = np.meshgrid(xs + bx + 0.5, ys + by + 0.5)
                    px, py = transform @ (gx, gy)
                    lon, lat = to_lonlat.transform(px, py)
                    lon = near(lon, c_lon)  # the scene's frame
                    r, c = georef.rowcol(lon, lat)  # pixel indices: pixel i spans i - 0.5 .. i + 0.5
                    rr = np.floor(_lerp2(np.asarray(r), ys, xs, bh, bw) + 0.5).astype(np.int64)
                    cc = np.floor(_lerp2(np.asarray(c), ys, xs, bh, bw) + 0.5).astype(np.int64)
                    inside = (rr >= 0) & (rr < info.height) & (cc >= 0) & (cc < info.width)
                    data = np.full((sds.count, bh, bw), fill, dtype=sds.dtypes[0])
                    if inside.any():
                        r0, r1 = int(rr[inside].min()), int(rr[inside].max()) + 1
                        c0, c1 = int(cc[inside].min()), int(cc[inside].max()) + 1
                        win = sds.read(window=Window(c0, r0, c1 - c0, r1 - r0))
                        data[:, inside] = win[:, rr[inside] - r0, cc[inside] - c0]
                    out.write(data, window=Window(bx, by, bw, bh))
    return Path(dst)
