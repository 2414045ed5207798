"""GeoTIFF input and Cloud-Optimized GeoTIFF output, windowed so scenes never load whole.

Reading: :class:`SceneReader` validates a scene once (readable, non-empty, band choice vs the model)
and then serves raw row bands. Writing: :class:`CogWriter` streams row bands into a tiled, deflated
GTiff beside the target and, on :meth:`CogWriter.commit`, copies it with GDAL's COG driver (overviews,
tiles in the COG order) onto a temporary name that is renamed onto the target (``dakd_edge._atomic``),
so an interrupted run leaves no half file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from dakd_edge._atomic import atomic_path, check_output
from dakd_edge.errors import InputError, OutputError
from dakd_edge.inference.tiling import argmax0
from dakd_edge.meta import ModelMeta

BLOCK = 512


class NoGeoreferenceWarning(UserWarning):
    """The scene has no CRS/transform: outputs are written in pixel coordinates without a CRS."""


@dataclass
class SceneInfo:
    path: Path
    height: int
    width: int
    bands: tuple[int, ...]  # 1-based band indexes fed to the model, in order
    dtype: str
    nodata: float | None
    crs: Any  # rasterio CRS or None
    transform: Any  # affine.Affine
    georeferenced: bool


class SceneReader:
    """Opened input scene. Use as a context manager; :meth:`rows` reads raw ``(C, h, W)`` bands."""

    def __init__(self, path: str | os.PathLike, in_chans: int = 1, band: int | None = None) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(p)
        except RasterioError as e:
            raise InputError(f"{p}: cannot read as a raster ({_one_line(e)})") from None
        try:
            self.info = self._validate(p, in_chans, band)
        except Exception:
            self.ds.close()
            raise

    def _validate(self, p: Path, in_chans: int, band: int | None) -> SceneInfo:
        ds = self.ds
        if ds.width == 0 or ds.height == 0 or ds.count == 0:
            raise InputError(f"{p}: empty raster ({ds.count} band(s) of {ds.height} x {ds.width})")
        if band is not None:
            if in_chans != 1:
                raise InputError(f"--band picks one band, but the model takes {in_chans} bands")
            if not 1 <= band <= ds.count:
                raise InputError(f"{p}: band {band} does not exist (the scene has {ds.count} band(s))")
            bands: tuple[int, ...] = (band,)
        elif ds.count == in_chans:
            bands = tuple(range(1, ds.count + 1))
        elif in_chans == 1:
            raise InputError(f"{p}: {ds.count} bands but the model takes 1; choose one with --band N")
        else:
            raise InputError(f"{p}: {ds.count} band(s) but the model takes {in_chans}")
        dtypes = {ds.dtypes[b - 1] for b in bands}
        if any(np.issubdtype(np.dtype(d), np.complexfloating) for d in dtypes):
            raise InputError(f"{p}: complex-valued bands are not supported (calibrate to sigma0 first)")
        nodatas = {ds.nodatavals[b - 1] for b in bands}
        nodata = nodatas.pop() if len(nodatas) == 1 else None
        georef = ds.crs is not None or not ds.transform.is_identity
        return SceneInfo(p, ds.height, ds.width, bands, dtypes.pop(), nodata, ds.crs, ds.transform, georef)

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Raw values of ``[y0:y1, x0:x1]``, shape ``(C, y1 - y0, x1 - x0)``, in the file's dtype."""
        return self.ds.read(list(self.info.bands), window=Window(x0, y0, x1 - x0, y1 - y0))

    def sample(self, max_pixels: int = 1 << 20) -> np.ndarray:
        """Decimated whole-scene read (GDAL uses overviews when present) for scale detection/quicklook."""
        h, w = self.info.height, self.info.width
        f = max(1.0, float(np.sqrt(h * w / max_pixels)))
        shape = (len(self.info.bands), max(1, int(h / f)), max(1, int(w / f)))
        return self.ds.read(
            list(self.info.bands), out_shape=shape, resampling=rasterio.enums.Resampling.nearest
        )

    def valid_sample(self, grid: int = 8, size: int = 128) -> np.ndarray:
        """Valid raw values ``(C, n)`` for scale detection, at a cost independent of the scene size.

        Reads ``grid x grid`` windows spread over the scene (the whole scene, decimated, when it is
        small or when the windows hold no valid pixel).
        """
        from dakd_edge.inference.predictor import valid_mask

        h, w = self.info.height, self.info.width
        if h * w > 4 * grid * grid * size * size:
            parts = []
            for y in np.linspace(0, h - size, grid).astype(int):
                for x in np.linspace(0, w - size, grid).astype(int):
                    a = self.ds.read(list(self.info.bands), window=Window(int(x), int(y), size, size))
                    parts.append(a[:, valid_mask(a, self.info.nodata)])
            vals = np.concatenate(parts, axis=1)
            if vals.size:
                return vals
        a = self.sample()
        return a[:, valid_mask(a, self.info.nodata)]

    def close(self) -> None:
        self.ds.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def colormap(meta: ModelMeta) -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (*rgb, 255) for i, rgb in enumerate(meta.palette)}
    return cmap


class CogWriter:
    """Streams row bands into a tiled GTiff, then commits it as a COG under ``path``.

    ``kind``: ``"classes"`` (uint8 class ids, nodata 255, colour table), ``"probs_uint8"`` (K bands,
    probability * 250 rounded, nodata 255) or ``"probs_float16"`` (K bands, half floats, nodata NaN).
    """

    KINDS = ("classes", "probs_uint8", "probs_float16")

    def __init__(
        self,
        path: str | os.PathLike,
        info: SceneInfo,
        meta: ModelMeta,
        kind: str = "classes",
        overwrite: bool = False,
        tags: dict[str, str] | None = None,
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown raster kind {kind!r}")
        self.path = check_output(path, overwrite)
        self.overwrite, self.kind, self.meta, self.info = overwrite, kind, meta, info
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial.tif", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        count = 1 if kind == "classes" else meta.num_classes
        profile: dict[str, Any] = dict(
            driver="GTiff",
            width=info.width,
            height=info.height,
            count=count,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            compress="deflate",
            BIGTIFF="IF_SAFER",
        )
        if info.crs is not None:
            profile["crs"] = info.crs
        if info.georeferenced:
            profile["transform"] = info.transform
        if kind == "probs_float16":
            profile.update(dtype="float32", nodata=float("nan"), NBITS=16, predictor=3, interleave="band")
        else:
            profile.update(dtype="uint8", nodata=255, interleave="band")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(self.tmp, "w", **profile)
        except RasterioError as e:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: cannot write ({_one_line(e)})") from None
        all_tags = {
            "class_names": json.dumps(list(meta.class_names)),
            "model": meta.name,
            "software": "dakd-edge",
            **(tags or {}),
        }
        self.ds.update_tags(**all_tags)
        if kind == "classes":
            self.ds.write_colormap(1, colormap(meta))
            self.ds.set_band_description(1, "class id (" + ", ".join(meta.class_names) + ")")
        else:
            for i, name in enumerate(meta.class_names):
                self.ds.set_band_description(i + 1, f"P({name})")

    def write(self, y0: int, probs: np.ndarray, valid: np.ndarray, x0: int = 0) -> np.ndarray | None:
        """Write probabilities ``(K, h, w)`` at ``(y0, x0)``; returns the class ids (classes kind)."""
        h, w = valid.shape
        win = Window(x0, y0, w, h)
        if self.kind == "classes":
            cls = argmax0(probs)
            cls[~valid] = 255
            self.ds.write(cls[None], window=win)
            return cls
        if self.kind == "probs_uint8":
            q = np.rint(np.clip(probs, 0.0, 1.0) * 250.0).astype(np.uint8)
            q[:, ~valid] = 255
            self.ds.write(q, window=win)
        else:
            f = probs.astype(np.float32, copy=True)
            f[:, ~valid] = np.nan
            self.ds.write(f, window=win)
        return None

    def commit(self) -> Path:
        """Close the staging file and copy it as a COG onto ``path`` atomically."""
        self.ds.close()
        opts: dict[str, Any] = dict(driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK, BIGTIFF="IF_SAFER")
        if self.kind == "classes":
            opts.update(OVERVIEW_RESAMPLING="NEAREST")
        elif self.kind == "probs_uint8":
            opts.update(OVERVIEW_RESAMPLING="AVERAGE")
        else:
            opts.update(OVERVIEW_RESAMPLING="AVERAGE", PREDICTOR="FLOATING_POINT", NBITS=16)
        try:
            with atomic_path(self.path, self.overwrite) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                rasterio.shutil.copy(self.tmp, tmp, **opts)
        except RasterioError as e:
            raise OutputError(f"{self.path}: cannot write ({_one_line(e)})") from None
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        """Drop the staging file (on errors, or after commit)."""
        with contextlib.suppress(Exception):
            self.ds.close()
        self.tmp.unlink(missing_ok=True)
        for side in self.tmp.parent.glob(self.tmp.name + ".*"):
            side.unlink(missing_ok=True)
