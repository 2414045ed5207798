"""GeoTIFF input and Cloud-Optimized GeoTIFF output, windowed so scenes never load whole.

Reading: :class:`SceneReader` validates a scene once (readable, non-empty, band choice vs the model)
and then serves raw windows; every read goes through :meth:`SceneReader.read`, which turns damage
found at any point (header, sampling, mid-scene) into one :class:`InputError` line. Writing:
:class:`CogWriter` streams finished strips into a tiled, deflated GTiff staging file and, on
:meth:`CogWriter.finish`, copies it with GDAL's COG driver (overviews, tiles in the COG order) to a
temporary of the caller's :class:`~dakd_edge.atomic.Transaction`, which renames all of a scene's
outputs together, so an interrupted run leaves no file under any final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from dakd_edge.atomic import reason, remove_temp
from dakd_edge.data.rasterinfo import is_mask_band, open_raster
from dakd_edge.data.scaling import scale_from_name, scale_from_unit, valid_mask
from dakd_edge.errors import InputError, Notice, OutputError, quiet, user_stacklevel
from dakd_edge.gtiff import gtiff_profile
from dakd_edge.inference.tiling import argmax0
from dakd_edge.meta import ModelMeta

BLOCK = 512


def _check_placement(p: Path, ds: Any) -> None:
    """Refuse a geotransform that places the scene nowhere: non-finite coefficients, or, in a geographic
    CRS, corners beyond the poles (areas, polygons and the land mask would all be NaN)."""
    t = ds.transform
    if not all(math.isfinite(v) for v in (t.a, t.b, t.c, t.d, t.e, t.f)):
        raise InputError(f"{p}: its geotransform is not finite ({tuple(t)[:6]})")
    if ds.crs is not None and ds.crs.is_geographic:
        lats = [
            t.d * x + t.e * y + t.f for x, y in ((0, 0), (ds.width, 0), (0, ds.height), (ds.width, ds.height))
        ]
        if max(abs(v) for v in lats) > 90.0 + 1e-9:
            raise InputError(
                f"{p}: its geotransform places pixels at latitude {max(lats, key=abs):.6g} "
                f"(beyond the pole) in {ds.crs.to_string()}"
            )


class NoGeoreferenceWarning(Notice):
    """The scene has no CRS/transform: outputs are written in pixel coordinates without a CRS."""


@dataclass
class SceneInfo:
    path: Path
    height: int
    width: int
    bands: tuple[int, ...]  # 1-based band indexes fed to the model, in order
    dtype: str
    nodata: float | None
    crs: Any  # rasterio CRS or None (None also for GCP-georeferenced scenes: see gcps_crs)
    transform: Any  # affine.Affine (identity for GCP-georeferenced scenes)
    georeferenced: bool
    gcps: tuple[Any, ...] | None = None  # rasterio GroundControlPoints when georeferenced by GCPs
    gcps_crs: Any = None
    native_scale: str | None = None  # scaling the source defines (Sentinel-1: calibrated linear sigma0)
    scale_source: str | None = None  # why, when a file name states it ("its ASF HyP3 RTC file name says")
    pixel_size_m: tuple[float, float] | None = None  # (row, col) metres when the source says
    product: dict[str, Any] | None = None  # product metadata (Sentinel-1) for the report
    # Rational polynomial coefficients of a scene placed by them alone (no transform, no GCPs): not used
    # for areas or land (they need a DEM), but carried into the output rasters so a GIS can place them.
    rpcs: Any = None


def raster_info(
    p: Path, ds: Any, bands: tuple[int, ...] = (1,), dtype: str | None = None, nodata: float | None = None
) -> SceneInfo:
    """The :class:`SceneInfo` of an open raster: its GCPs (a transform-less raster that has them), else
    its geotransform and CRS (checked by :func:`_check_placement`); a CRS without a geotransform places
    nothing. ``dtype`` / ``nodata`` default to the first band's (a class map's)."""
    common = (p, ds.height, ds.width, bands, dtype or ds.dtypes[0], ds.nodata if dtype is None else nodata)
    gcps, gcps_crs = ds.gcps
    if ds.transform.is_identity and gcps:
        return SceneInfo(*common, None, ds.transform, True, gcps=tuple(gcps), gcps_crs=gcps_crs)
    if ds.transform.is_identity:
        return SceneInfo(*common, None, ds.transform, False, rpcs=ds.rpcs)
    _check_placement(p, ds)
    return SceneInfo(*common, ds.crs, ds.transform, True)


# A band description naming calibrated co-polarised backscatter, as SNAP exports name them (Sigma0_VV,
# Sigma0_VV_db, Gamma0_HH, Sigma0_VV_mst_01Jan2021) or Google Earth Engine and Sentinel Hub (VV, HH):
# the band a one-band model is meant for.
# (a free suffix only after SNAP's prefix: a bare "VV_angle" or "HH_mask" is no backscatter band).
_CO_POL = re.compile(r"(sigma|gamma|beta)0?_(vv|hh)(_db)?(_.*)?|(vv|hh)(_db)?", re.IGNORECASE)
# Cross-polarised backscatter by band description (VH, Sigma0_VH_db) or file name (..._VH.tif, IMG-HV-...).
_SIGMA0 = re.compile(r"sigma0?_(vv|hh)(_db)?(_.*)?", re.IGNORECASE)
_SIGMA0_LINEAR = re.compile(r"sigma0?_(vv|hh)", re.IGNORECASE)
_CROSS_POL_BAND = re.compile(r"(?:sigma|gamma|beta)0?_(vh|hv)(?:_db)?(?:_.*)?|(vh|hv)(?:_db)?", re.IGNORECASE)
_CROSS_POL_NAME = re.compile(r"(^|[_.-])(VH|HV)([_.-]|$)", re.IGNORECASE)
_CO_POL_NAME = re.compile(r"(^|[_.-])(VV|HH)([_.-]|$)", re.IGNORECASE)


def cross_pol(description: str | None, name: str, one_band: bool = True) -> tuple[str, str] | None:
    """``("VH", "description")`` / ``("HV", "file name")`` when a band's description or its file's name
    says the band is cross-polarised, else None. The name speaks only for a one-band file that names no
    co-polarisation too (``scene_VV_VH.tif`` holds both)."""
    if m := _CROSS_POL_BAND.fullmatch((description or "").strip()):
        return (m.group(1) or m.group(2)).upper(), "description"
    if _CO_POL.fullmatch((description or "").strip()):  # a band described as VV / HH is what it says
        return None
    stem = Path(name).stem
    if one_band and (m := _CROSS_POL_NAME.search(stem)) and not _CO_POL_NAME.search(stem):
        return m.group(2).upper(), "file name"
    return None


def co_pol_band(ds: Any, bands: tuple[int, ...]) -> int | None:
    """The one band of ``bands`` whose description names calibrated VV or HH backscatter (of
    ``Sigma0_VV`` and its ``Sigma0_VV_db``, the linear one), or None (no such band, or several)."""
    found = [b for b in bands if _CO_POL.fullmatch((ds.descriptions[b - 1] or "").strip())]
    if len(found) == 2:  # Sigma0_VV beside Sigma0_VV_db (SNAP's linear-to-dB band): one image, twice
        names = [(ds.descriptions[b - 1] or "").strip().lower() for b in found]
        for i in (0, 1):
            if names[1 - i] == names[i] + "_db":
                return found[i]  # the linear one
    if len(found) > 1:  # Sigma0_VV beside Gamma0_VV (SNAP's Terrain-Flattening keeps both): sigma0,
        # the backscatter the model's training images are (a lone linear one; else its dB band)
        for pattern in (_SIGMA0_LINEAR, _SIGMA0):
            sigma = [b for b in found if pattern.fullmatch((ds.descriptions[b - 1] or "").strip())]
            if len(sigma) == 1:
                return sigma[0]
    return found[0] if len(found) == 1 else None


def band_list(ds: Any, bands: tuple[int, ...]) -> str:
    """``"1 Sigma0_VH, 2 Sigma0_VV, 3 incidence"`` (band numbers with their descriptions)."""
    return ", ".join(f"{b} {ds.descriptions[b - 1]}" if ds.descriptions[b - 1] else str(b) for b in bands)


_S = TypeVar("_S", bound="Scene")


class Scene(ABC):
    """An opened input (:func:`~dakd_edge.inference.readers.open_scene`): ``info``, windows of its values
    and a sample of its valid ones; a context manager that closes it."""

    info: SceneInfo

    @property
    def path(self) -> Path:
        return self.info.path

    @abstractmethod
    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Values of ``[y0:y1, x0:x1]`` as ``(C, y1 - y0, x1 - x0)``."""

    @abstractmethod
    def valid_sample(self) -> np.ndarray:
        """Valid values ``(C, n)`` from across the scene (empty: no valid pixel)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SceneReader(Scene):
    """A GDAL raster as a scene: :meth:`window` reads raw ``(C, h, w)`` values."""

    def __init__(self, path: str | os.PathLike, in_chans: int = 1, band: int | None = None) -> None:
        p = Path(path)
        self.ds = open_raster(path)  # a regular, readable, non-empty raster (a PNG checked complete)
        try:
            self.info = self._validate(p, in_chans, band)
        except Exception:
            self.ds.close()
            raise

    def _validate(self, p: Path, in_chans: int, band: int | None) -> SceneInfo:
        ds = self.ds
        # An alpha band (grey + alpha, RGBA) is the validity mask GDAL applies (read_masks), not data;
        # so is a band described dataMask (Sentinel Hub / openEO exports: 0 outside the data), which
        # GDAL does not know as one: :meth:`values` applies it.
        self._mask_band = next(
            (b for b in range(1, ds.count + 1) if is_mask_band(ds.descriptions[b - 1])),
            None,
        )
        data = tuple(
            b
            for b in range(1, ds.count + 1)
            if ds.colorinterp[b - 1] != ColorInterp.alpha and b != self._mask_band
        )
        if band is not None:
            if in_chans != 1:
                raise InputError(f"--band picks one band, but the model takes {in_chans} bands")
            if not 1 <= band <= ds.count:
                raise InputError(f"{p}: band {band} does not exist (the scene has {ds.count} band(s))")
            if band == self._mask_band:
                raise InputError(
                    f"{p}: band {band} is its dataMask (validity) band; choose another with --band"
                )
            if band not in data:
                raise InputError(f"{p}: band {band} is an alpha (mask) band; choose another with --band")
            bands: tuple[int, ...] = (band,)
        elif len(data) == in_chans:
            bands = data
        elif in_chans == 1 and self._bands_identical(data):
            warnings.warn(
                Notice(f"{p}: its {len(data)} bands are identical (grey stored as RGB); using band 1"),
                stacklevel=user_stacklevel(),
            )
            bands = (data[0],)
        elif in_chans == 1 and (pick := co_pol_band(ds, data)) is not None:
            warnings.warn(
                Notice(
                    f"{p}: using band {pick} ({ds.descriptions[pick - 1]}) of its {len(data)} bands "
                    f"({band_list(ds, data)}); choose another with --band N"
                ),
                stacklevel=user_stacklevel(),
            )
            bands = (pick,)
        elif in_chans == 1:
            raise InputError(
                f"{p}: {len(data)} different bands ({band_list(ds, data)}) but the model takes 1; "
                "choose one with --band N"
            )
        else:
            raise InputError(f"{p}: {len(data)} band(s) but the model takes {in_chans}")
        cross = cross_pol(ds.descriptions[bands[0] - 1], p.name, one_band=len(data) == 1)
        if in_chans == 1 and cross is not None:
            warnings.warn(
                Notice(
                    f"{p}: band {bands[0]} is {cross[0]} (cross-polarised) backscatter, by its {cross[1]}; "
                    "oil-spill models (the bundled one too) learn slicks on co-polarised (VV / HH) images, where "
                    "they show far better: expect false alarms"
                ),
                stacklevel=user_stacklevel(),
            )
        dtypes = {ds.dtypes[b - 1] for b in bands}
        if any("complex" in d for d in dtypes):  # complex_int16 (CInt16 SLC) is no numpy dtype
            raise InputError(
                f"{p}: complex-valued bands ({', '.join(sorted(dtypes))}, e.g. SLC) are not supported; "
                "calibrate and detect them to sigma0 intensity first"
            )
        if any(ds.colorinterp[b - 1] == ColorInterp.palette for b in bands):
            raise InputError(
                f"{p}: a palette (colour-table) image holds colour indices, not SAR intensity; "
                "convert it to grey values first"
            )
        nodatas = {ds.nodatavals[b - 1] for b in bands}
        nodata = nodatas.pop() if len(nodatas) == 1 else None
        self._raw_nodata = nodata
        # GDAL per-band scale/offset (e.g. int16 dB x 100 with scale 0.01) and per-dataset (internal or
        # external) masks: :meth:`values` applies them, so windows are physical values, NaN = masked.
        gain = np.array([ds.scales[b - 1] for b in bands], np.float64)
        offset = np.array([ds.offsets[b - 1] for b in bands], np.float64)
        self._affine_values = (gain, offset) if (gain != 1).any() or (offset != 0).any() else None
        self._masked = any(MaskFlags.per_dataset in ds.mask_flag_enums[b - 1] for b in bands)
        named = scale_from_name(p.name, ds.dtypes[bands[0] - 1]) or scale_from_unit(
            ds.descriptions[bands[0] - 1], ds.units[bands[0] - 1]
        )
        if named is not None:  # said by segment when it reads the scale so (--input-scale auto)
            if named.gain is not None and self._affine_values is None:
                self._affine_values = (np.full(len(bands), named.gain), np.zeros(len(bands)))
                if nodata is None:  # DN 0 is the fill outside JAXA's image frame
                    nodata = self._raw_nodata = 0
        if nodata is None and self._affine_values is None and not self._masked and self._mask_band is None:
            nodata = self._fill_nodata(p, bands)
            self._raw_nodata = nodata
        dtype = dtypes.pop() if len(dtypes) == 1 else np.result_type(*dtypes).name
        if self._affine_values is not None:
            dtype, nodata = "float32", None  # nodata is masked as NaN before scaling
        info = raster_info(p, ds, bands, dtype, nodata)
        if named is not None:
            info.native_scale, info.scale_source = named.scale, named.why
        return info

    def _fill_nodata(self, p: Path, bands: tuple[int, ...], per_side: int = 32) -> float | None:
        """A fill value on the scene's edge when the file declares no nodata (a common export).

        ``per_side`` points along each edge (one block read each) are read. When most of them hold one
        value that no backscatter takes (-9999, -32768, -3.4e38: at most -100, or 1e30 and beyond),
        it is the nodata value, with a notice: read as data, a fill frame was called oil. An edge of
        exact zeros is ambiguous (linear sigma0 after noise removal is 0 in places; 8-bit black is
        the darkest sea): a notice says how to declare it, and it stays data; in a scene of float dB
        values exact 0.0 is fill, also along one side only (5 % of the edge points or more)."""
        h, w = self.ds.height, self.ds.width
        t = np.linspace(0, 1, per_side)
        rows = np.r_[np.zeros(per_side), np.full(per_side, h - 1), t * (h - 1), t * (h - 1)].astype(int)
        cols = np.r_[t * (w - 1), t * (w - 1), np.zeros(per_side), np.full(per_side, w - 1)].astype(int)
        order = np.lexsort((cols, rows))  # top to bottom: a PNG / JPEG (no blocks) is decoded once
        rows, cols = rows[order], cols[order]
        try:
            edge = np.array(
                [
                    self.read([bands[0]], window=Window(int(c), int(r), 1, 1))[0, 0, 0]
                    for r, c in zip(rows, cols, strict=True)
                ]
            )
        except InputError:  # a damaged file: said where its pixels are read
            return None
        finite = edge[np.isfinite(edge)] if np.issubdtype(edge.dtype, np.floating) else edge
        if finite.size < edge.size / 2:
            return None
        values, counts = np.unique(finite, return_counts=True)
        v, share = values[counts.argmax()].item(), counts.max() / edge.size
        zeros = float(np.count_nonzero(finite == 0)) / edge.size
        if share < 0.5 and zeros >= 0.05 and np.issubdtype(edge.dtype, np.floating):
            v, share = 0.0, zeros  # fill along one side only: exactly 0.0 is no dB sea (checked below)
        if share < 0.5 and not (
            v == 0 and np.issubdtype(edge.dtype, np.floating) and self._looks_db(bands[0])
        ):
            return None
        if v <= -100 or abs(v) >= 1e30:
            warnings.warn(
                Notice(
                    f"{p}: no nodata value is set, but {100 * share:.0f} % of its edge is {v:.9g}, which no "
                    f"backscatter reads: taken as nodata (set it on the file to silence this: "
                    f"gdal_edit.py -a_nodata {v:.9g} FILE)"
                ),
                stacklevel=user_stacklevel(),
            )
            return float(v)
        if v == 0 and np.issubdtype(edge.dtype, np.floating) and self._looks_db(bands[0]):
            warnings.warn(
                Notice(
                    f"{p}: no nodata value is set, but {100 * share:.0f} % of its edge is exactly 0, which in a "
                    "scene of dB values is fill (0 dB is brighter than any sea; Google Earth Engine exports fill "
                    "with it): taken as nodata (set it on the file to silence this: gdal_edit.py -a_nodata 0 "
                    "FILE)"
                ),
                stacklevel=user_stacklevel(),
            )
            return 0.0
        if v == 0:
            warnings.warn(
                Notice(
                    f"{p}: no nodata value is set and {100 * share:.0f} % of its edge is exactly 0: read as "
                    "the darkest sea (called oil); if it is fill outside the swath, declare it: "
                    "gdal_edit.py -a_nodata 0 FILE"
                ),
                stacklevel=user_stacklevel(),
            )
        return None

    def _looks_db(self, band: int, grid: int = 4, size: int = 64) -> bool:
        """Whether the scene holds dB values: the non-zero finite values of a grid of windows have a
        median below -1 (sea is -30..-5 dB; linear power and 8-bit luminance are never negative). A grid,
        not the centre alone: an export clipped to an area of interest has fill in the middle too."""
        vals = []
        for win in self._grid_windows(grid, size):
            try:
                a = self.read([band], window=win)[0]
            except InputError:
                return False
            vals.append(a[np.isfinite(a) & (a != 0)])
        a = np.concatenate(vals)
        return a.size > 0 and float(np.median(a)) < -1.0

    def read(self, bands: list[int] | None = None, **kw: Any) -> np.ndarray:
        """``DatasetReader.read`` for every read of the scene: damage (truncated file, corrupt
        compressed block) becomes one :class:`InputError` line naming the file and GDAL's reason."""
        try:
            return self.ds.read(list(self.info.bands) if bands is None else bands, **kw)
        except (RasterioError, OSError) as e:
            raise InputError(f"{self.path}: damaged or truncated raster ({reason(e)})") from None

    def values(self, **kw: Any) -> np.ndarray:
        """:meth:`read` of the model's bands as values: when the file has a GDAL scale/offset or a
        per-dataset mask, float with the scale applied and NaN where the mask or nodata says no data
        (the raw dtype otherwise, so scale detection still sees e.g. uint8)."""
        a = self.read(**kw)
        if self._affine_values is None and not self._masked and self._mask_band is None:
            return a
        bad = ~valid_mask(a, self._raw_nodata)
        if self._masked:
            try:
                bad |= (self.ds.read_masks(list(self.info.bands), **kw) == 0).any(0)
            except (RasterioError, OSError) as e:
                raise InputError(f"{self.path}: damaged mask band ({reason(e)})") from None
        if self._mask_band is not None:
            m = self.read([self._mask_band], **kw)[0]
            bad |= np.nan_to_num(m) == 0  # NaN flags count as no data too
        out = a.astype(np.result_type(a.dtype, np.float32))
        if self._affine_values is not None:
            gain, offset = self._affine_values
            out = (out * gain[:, None, None] + offset[:, None, None]).astype(np.float32)
        out[:, bad] = np.nan
        return out

    def _bands_identical(self, bands: tuple[int, ...], grid: int = 4, size: int = 64) -> bool:
        """All ``bands`` equal on a grid of windows (grey stored as RGB, as the OSD/SOS JPEGs are)."""
        for win in self._grid_windows(grid, size):
            a = self.read(list(bands), window=win)
            if not all(np.array_equal(a[0], b, equal_nan=True) for b in a[1:]):
                return False
        return True

    def _grid_windows(self, grid: int, size: int) -> list[Window]:
        """``grid x grid`` windows of ``size`` px (less on a smaller scene) spread over the whole file."""
        h, w = self.ds.height, self.ds.width
        return [
            Window(int(x), int(y), min(size, w), min(size, h))
            for y in np.linspace(0, max(h - size, 0), grid).astype(int)
            for x in np.linspace(0, max(w - size, 0), grid).astype(int)
        ]

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Values of ``[y0:y1, x0:x1]``, shape ``(C, y1 - y0, x1 - x0)`` (:meth:`values`)."""
        return self.values(window=Window(x0, y0, x1 - x0, y1 - y0))

    def sample(self, max_pixels: int = 1 << 20) -> np.ndarray:
        """Decimated whole-scene read (GDAL uses overviews when present) for scale detection/quicklook."""
        h, w = self.info.height, self.info.width
        f = max(1.0, float(np.sqrt(h * w / max_pixels)))
        shape = (len(self.info.bands), max(1, int(h / f)), max(1, int(w / f)))
        return self.values(out_shape=shape, resampling=rasterio.enums.Resampling.nearest)

    def valid_sample(self, grid: int = 8, size: int = 128) -> np.ndarray:
        """Valid values ``(C, n)`` for scale detection (see :meth:`_valid_values`), in the file's dtype
        unless a GDAL scale/offset makes them float: a masked uint8 scene is still detected as uint8."""
        vals = self._valid_values(grid, size)
        return vals if self._affine_values is not None else vals.astype(self.info.dtype, copy=False)

    def _valid_values(self, grid: int, size: int) -> np.ndarray:
        """Valid values ``(C, n)`` for scale detection, at a cost independent of the scene size.

        Reads ``grid x grid`` windows spread over the scene (the whole scene, decimated, when it is
        small or when the windows hold no valid pixel). When even that finds nothing, the scene is
        scanned in full-resolution row blocks, so a small valid area is not taken for an empty scene;
        an empty result means the scene is all nodata.
        """
        h, w = self.info.height, self.info.width
        if h * w > 4 * grid * grid * size * size:
            parts = []
            for y in np.linspace(0, h - size, grid).astype(int):
                for x in np.linspace(0, w - size, grid).astype(int):
                    a = self.values(window=Window(int(x), int(y), size, size))
                    parts.append(a[:, valid_mask(a, self.info.nodata)])
            vals = np.concatenate(parts, axis=1)
            if vals.size:
                return vals
        a = self.sample()
        vals = a[:, valid_mask(a, self.info.nodata)]
        rows = max(1, (1 << 24) // max(w, 1))
        for y in range(0, h, rows) if vals.size == 0 else ():
            a = self.window(y, min(y + rows, h), 0, w)
            vals = a[:, valid_mask(a, self.info.nodata)]
            if vals.size:
                return vals[:, :: max(1, vals.shape[1] // (size * size))]
        return vals

    @property
    def path(self) -> Path:  # also while validating, before ``info`` is known
        return self.info.path if hasattr(self, "info") else Path(self.ds.name)

    def close(self) -> None:
        self.ds.close()


def colormap(meta: ModelMeta) -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (*rgb, 255) for i, rgb in enumerate(meta.palette)}
    return cmap


PROB_SCALE = 250.0  # uint8 probabilities: stored value / 250 = probability (255 = nodata)


class CogWriter:
    """Streams strips into a tiled GTiff ``staging`` file, then copies it as a COG by :meth:`finish`.

    ``kind``: ``"classes"`` (uint8 class ids, nodata 255, colour table), ``"probs_uint8"`` (K bands,
    probability * 250 rounded, nodata 255, with GDAL scale 1/250 so GIS software reads 0-1) or
    ``"probs_float16"`` (K bands, half floats, nodata NaN). Paths come from the caller's
    :class:`~dakd_edge.atomic.Transaction`; nothing here writes under a final name.
    """

    KINDS = ("classes", "probs_uint8", "probs_float16")

    def __init__(
        self,
        staging: str | os.PathLike,
        info: SceneInfo,
        meta: ModelMeta,
        kind: str = "classes",
        tags: dict[str, str] | None = None,
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown raster kind {kind!r}")
        self.kind, self.meta, self.info = kind, meta, info
        self.staging = Path(staging)
        self.count = 1 if kind == "classes" else meta.num_classes
        # Sparse: GDAL fills never-written blocks when a GTiff closes, and rasterio's close holds the
        # GIL, so on an interrupt (float16: no short-cut) the signal watchdog stood still for minutes.
        # Missing blocks read back as nodata, so the COG copy is unchanged.
        profile = gtiff_profile(info.height, info.width, count=self.count, block=BLOCK, SPARSE_OK=True)
        if info.gcps:
            profile["gcps"], profile["crs"] = list(info.gcps), info.gcps_crs
        elif info.rpcs is not None and not info.georeferenced:
            profile["rpcs"] = info.rpcs
        else:
            if info.crs is not None:
                profile["crs"] = info.crs
            if info.georeferenced:
                profile["transform"] = info.transform
        if kind == "probs_float16":
            profile.update(dtype="float32", nodata=float("nan"), NBITS=16, predictor=3, interleave="band")
        else:
            profile.update(dtype="uint8", nodata=255, interleave="band")
        with quiet(NotGeoreferencedWarning):
            self.ds = rasterio.open(self.staging, "w", **profile)
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
                self.ds.update_tags(i + 1, class_name=name)
            if kind == "probs_uint8":
                self.ds.scales = (1.0 / PROB_SCALE,) * self.count
                self.ds.offsets = (0.0,) * self.count

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
            q = np.rint(np.clip(probs, 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
            q[:, ~valid] = 255
            self.ds.write(q, window=win)
        else:
            f = probs.astype(np.float32, copy=True)
            f[:, ~valid] = np.nan
            self.ds.write(f, window=win)
        return None

    def finish(self, dest: str | os.PathLike) -> Path:
        """Close the staging file and copy it as a COG to ``dest`` (a transaction temporary)."""
        self.ds.close()
        cog_copy(self.staging, dest, self.kind)
        self.discard()
        return Path(dest)

    def verify(self, path: str | os.PathLike) -> None:
        """Check a finished COG before it is renamed: shape, and every band's last block and smallest
        overview decode (a file cut short by a full disk fails here, not in the user's GIS)."""
        verify_raster(path, self.count, self.info.height, self.info.width)

    def discard(self) -> None:
        """Drop the staging file (on errors, or after :meth:`finish`)."""
        with contextlib.suppress(Exception):
            self.ds.close()
        remove_temp(self.staging)


def cog_copy(src: str | os.PathLike, dest: str | os.PathLike, kind: str) -> None:
    """Copy a tiled GTiff as a Cloud-Optimized GeoTIFF (overviews by ``kind``: nearest for class ids)."""
    opts: dict[str, Any] = dict(driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK, BIGTIFF="IF_SAFER")
    if kind == "classes":
        opts.update(OVERVIEW_RESAMPLING="NEAREST")
    elif kind == "probs_uint8":
        opts.update(OVERVIEW_RESAMPLING="AVERAGE")
    else:
        opts.update(OVERVIEW_RESAMPLING="AVERAGE", PREDICTOR="FLOATING_POINT", NBITS=16)
    with quiet(NotGeoreferencedWarning):
        rasterio.shutil.copy(src, dest, **opts)


def verify_raster(path: str | os.PathLike, count: int, height: int, width: int) -> None:
    """Open ``path`` and decode the last block and the smallest overview of every band."""
    with quiet(NotGeoreferencedWarning):
        with rasterio.open(path) as ds:
            if (ds.count, ds.height, ds.width) != (count, height, width):
                raise OutputError(f"{path}: written with the wrong shape {ds.count}x{ds.height}x{ds.width}")
            bh, bw = ds.block_shapes[0]
            last = Window((width - 1) // bw * bw, (height - 1) // bh * bh, 0, 0)
            last = Window(last.col_off, last.row_off, width - last.col_off, height - last.row_off)
            for b in range(1, count + 1):
                ds.read(b, window=last)
                ovr = ds.overviews(b)
                if ovr:
                    f = ovr[-1]
                    ds.read(b, out_shape=(max(1, height // f), max(1, width // f)))
