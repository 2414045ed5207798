"""Creation options of the plain GeoTIFFs dakd-edge writes (staging files, generated products).

A profile for ``rasterio.open(path, "w", **profile)``; no rasterio import here, so any layer may use it.
"""

from __future__ import annotations

from typing import Any


def gtiff_profile(
    height: int,
    width: int,
    dtype: str | None = None,
    *,
    count: int = 1,
    block: int | None = 256,
    compress: str = "deflate",
    **extra: Any,
) -> dict[str, Any]:
    """A GTiff of ``count`` bands, tiled in ``block`` x ``block`` squares (``None``: strips), compressed,
    BigTIFF when it could pass 4 GB. ``extra`` adds or overrides options (``crs``, ``nodata``, ...)."""
    profile: dict[str, Any] = dict(driver="GTiff", width=width, height=height, count=count)
    if dtype is not None:
        profile["dtype"] = dtype
    if block is None:
        profile["tiled"] = False
    else:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    profile.update(compress=compress, BIGTIFF="IF_SAFER", **extra)
    return profile
