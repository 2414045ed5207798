"""Land masks for windows of a scene: offline GLOBE coastline or a user's vector / raster, coast buffer.

A scene is georeferenced either by ground control points (Sentinel-1 GRD: the annotation's geolocation
grid, EPSG:4326) or by a CRS + affine transform (plain GeoTIFFs): :func:`make_georef` turns either into
a :class:`Georef` that maps pixel indices (row, col; the centre of pixel (i, j) is (i, j)) to lon/lat and
back. :class:`LandMasker` then answers ``mask(y0, y1, x0, x1) -> bool (h, w)`` (True = land or within
``coast_buffer`` metres of land) window by window, with memory bounded by the window:

- the source is evaluated on a coarse grid of pixel indices around the window (``step_m``, default
  200 m; the GLOBE source has 1 km cells, so nothing is lost), extended by the buffer so that land just
  outside the window still buffers into it, dilated by an ellipse of ``coast_buffer`` metres in pixel
  units (GRD pixels are metric: ground range x azimuth) and upsampled to the window by nearest
  neighbour. The buffer edge is therefore accurate to about one coarse step (+-100 m by default).
- a user vector (``land_mask=FILE``: GeoJSON natively, any other OGR format through ``pyogrio`` when it
  is installed) is transformed once into pixel coordinates and rasterised exactly at full resolution per
  window (``rasterio.features.rasterize``), ORed with the coarse buffered layer.
- a user raster (any GDAL raster with a CRS: non-zero = land, nodata = sea) is sampled at the window's
  lon/lat (nearest neighbour) on a grid as fine as its own cells (at most full resolution).

Sources: ``"globe"`` is the 30 arc-second GLOBE land/sea grid shipped in the ``global-land-mask``
package (offline). That package loads its whole 21600 x 43200 grid (930 MB) at import, so we never
import it: we stream-decompress only the latitude rows a scene needs from its ``.npz`` (about 10 MB per
2 degrees of latitude, 0.2-3 s once per process and latitude band) and index it exactly as
``global_land_mask.is_land`` does. GLOBE counts most lakes as land, and inland seas too: the Caspian Sea
and the Great Lakes are land to it (and to GSHHG level 1, behind ``roaring-landmask``), so a scene over
them would run no tile at all. :meth:`LandMasker.water_counted_as_land` names such water bodies in a
scene (``segment`` warns and says so in its report); masking them needs the user's shoreline.

Antimeridian: GCP longitudes that span more than 180 degrees are unwrapped to [0, 360) before
interpolation, and wrapped back to [-180, 180) for look-ups; vectors are unwrapped the same way.
numpy + rasterio + pyproj (torch-free).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge import jsonin
from dakd_edge.atomic import reason
from dakd_edge.errors import InputError, Notice, user_stacklevel
from dakd_edge.lonlat import wrap_lon

EARTH_M_PER_DEG = 111_320.0
EARTH_RADIUS_M = 6_371_008.8  # mean radius: distances between n-vectors (a few metres per km at worst)
# Irregular GCPs given to GDAL's thin-plate spline at most: its fit costs the cube of their count and
# each point it maps their count (6000 GCPs in an annotation: minutes per scene); more are subsampled.
MAX_TPS_GCPS = 500
SPHERICAL_TOL_PX = 1.0  # GCPGeoref interpolates n-vectors where bilinear lon/lat is off by more
DEFAULT_COAST_BUFFER_M = 1000.0
DEFAULT_STEP_M = 200.0
# Water that the GLOBE grid counts as land (it counts nearly every lake as land): points well inside
# each large body (the Caspian's checked against Natural Earth's shoreline, at least ~30 km in; the
# lakes' from their charted centres and axes, 10-30 km from shore in the narrow ones). A scene that
# holds one of them warns; a scene over part of a long lake between its points does not.
GLOBE_LAND_WATER: dict[str, tuple[tuple[float, float], ...]] = {  # name: ((lon, lat), ...)
    "the Caspian Sea": ((51.0, 42.5), (50.5, 41.0), (51.0, 39.0), (51.5, 37.8), (49.3, 45.2), (52.0, 40.0),
                        (49.0, 44.0), (50.0, 38.2), (51.5, 45.8), (48.5, 43.3)),
    "Lake Superior": ((-87.0, 47.8),),
    "Lake Michigan": ((-87.0, 43.9), (-87.1, 42.8)),
    "Lake Huron": ((-82.4, 44.8),),
    "Lake Erie": ((-81.2, 42.2),),
    "Lake Ontario": ((-77.9, 43.6),),
    "Lake Victoria": ((33.0, -1.0),),
    "Lake Ladoga": ((31.3, 60.8),),
    "Lake Onega": ((35.42, 61.7),),
    "the Kara-Bogaz-Gol": ((53.5, 41.3),),
    "Lake Baikal": ((105.0, 51.7), (107.95, 53.0), (109.0, 54.6)),
    "Lake Balkhash": ((74.9, 46.6),),
    "Lake Issyk-Kul": ((77.25, 42.42),),
    "Lake Tanganyika": ((29.4, -4.6), (29.83, -6.5)),
    "Lake Malawi": ((34.42, -10.6), (34.37, -12.18)),
    "Lake Albert": ((30.92, 1.68),),
    "Lake Turkana": ((36.1, 3.6),),
    "Lake Vanern": ((13.4, 58.9),),
    "Lake Winnipeg": ((-98.0, 53.0),),
    "Great Bear Lake": ((-120.75, 65.83),),
    "Great Slave Lake": ((-114.0, 61.67),),
    "Lake Nicaragua": ((-85.25, 11.45),),
    "Lake Titicaca": ((-69.33, -15.83),),
}  # fmt: skip

__all__ = [
    "AffineGeoref",
    "GCPGeoref",
    "Georef",
    "GlobeLandSource",
    "LandMasker",
    "land_mask",
    "make_georef",
]


def _transformer(src, dst, what: str, hint: str = ""):
    """``pyproj.Transformer.from_crs(src, dst)``, or one InputError line saying that ``what`` (whose CRS
    it is) cannot be placed on the Earth: PROJ knows no way from a local / engineering CRS to WGS84."""
    from pyproj import CRS as PCRS
    from pyproj import Transformer
    from pyproj.exceptions import ProjError

    try:
        return Transformer.from_crs(src, dst, always_xy=True)
    except ProjError:
        local = PCRS.from_user_input(dst if str(src) == "EPSG:4326" else src)
        raise InputError(
            f"{what} is in CRS {local.name!r}, which has no transformation to WGS84 longitude/latitude "
            f"(a local or engineering CRS): land cannot be located on it{hint}"
        ) from None


# ---- georeferences -----------------------------------------------------------------------------
def spread_indices(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Indices of at most ``n`` of the points (rows, cols) spread over their extent, its corners first
    (farthest-point sampling: each next point is the one farthest from those already taken)."""
    pts = np.c_[rows, cols]
    first = int(np.argmax(np.hypot(*(pts - pts.mean(axis=0)).T)))
    taken = [first]
    d = np.hypot(*(pts - pts[first]).T)
    while len(taken) < n:
        i = int(np.argmax(d))
        if d[i] <= 0:  # only duplicates of taken points are left
            break
        taken.append(i)
        d = np.minimum(d, np.hypot(*(pts - pts[i]).T))
    return np.sort(np.array(taken))


def _nvector(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) of the ellipsoid at geodetic lon/lat (degrees); ECEF axes."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _lerp(V: np.ndarray, i: np.ndarray, j: np.ndarray, t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Grid values ``V`` (grid rows, grid columns, ...) interpolated bilinearly in cells (i, j) at
    fractions (t, u) (:meth:`GCPGeoref._cell`)."""
    a = V[i, j] + (V[i, j + 1] - V[i, j]) * u
    b = V[i + 1, j] + (V[i + 1, j + 1] - V[i + 1, j]) * u
    return a + (b - a) * t


class Georef:
    """Pixel indices <-> WGS84. ``pixel_size_m`` is (row, col) metres (approximate for degrees)."""

    pixel_size_m: tuple[float, float]
    wrapped: bool = False  # longitudes were unwrapped to [0, 360) (antimeridian scene)

    def lonlat(self, rows: np.ndarray, cols: np.ndarray, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """lon, lat (degrees) of pixel indices (any broadcastable shapes). ``wrap``: lon in [-180, 180)."""
        raise NotImplementedError

    def rowcol(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel indices (row, col) of lon/lat (lon unwrapped like the scene when ``wrapped``)."""
        raise NotImplementedError

    def unwrap_lon(self, lon: np.ndarray) -> np.ndarray:
        lon = np.asarray(lon, dtype=np.float64)
        return np.where(lon < 0, lon + 360.0, lon) if self.wrapped else lon


class GCPGeoref(Georef):
    """Georeference by GCPs (EPSG:4326), e.g. a GRD geolocation grid.

    GCP ``row``/``col`` are pixel indices, centre-based like ESA's annotation line/pixel. GDAL's GCPs
    (a GeoTIFF's, the outputs') are corner-based pixel/line, 0.5 more:
    :func:`dakd_edge.inference.readers.georef_of` shifts them before they come here. A regular grid of
    GCPs (all GRD products) is interpolated bilinearly, extrapolated linearly past its border; the
    inverse is Newton's method on that same bilinear map, so forward and inverse agree to 1e-6 px.
    Irregular GCP sets fall back to GDAL's thin-plate-spline transformer.

    Bilinear in lon/lat bends straight ground lines into parallels and meridians: by about L^2 tan(lat)
    / 8R over a grid cell of L metres, which is a few metres at 40 degrees but tens to hundreds of
    metres (2 to 50 pixels) between 70 degrees and the pole, and nonsense for a grid around the pole.
    Where it departs from the same interpolation of the GCPs' 3-D unit vectors (n-vectors, normalised
    back onto the ellipsoid's geodetic lon/lat) by more than :data:`SPHERICAL_TOL_PX` pixel at any
    cell centre, that one is used instead (``spherical``), inverted by Newton's method in gnomonic
    coordinates around the scene centre: exact to a few centimetres at any latitude, poles and the
    antimeridian included. Other scenes keep the lon/lat interpolation unchanged.
    """

    def __init__(self, gcps: Sequence, pixel_size_m: tuple[float, float] | None = None) -> None:
        if len(gcps) < 3:
            raise InputError(f"need at least 3 GCPs to georeference a window, got {len(gcps)}")
        rows = np.array([g.row for g in gcps], dtype=np.float64)
        cols = np.array([g.col for g in gcps], dtype=np.float64)
        lon = np.array([g.x for g in gcps], dtype=np.float64)
        lat = np.array([g.y for g in gcps], dtype=np.float64)
        if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 360):
            raise InputError("GCPs are not in degrees of longitude/latitude (EPSG:4326 expected)")
        lon = wrap_lon(lon)
        self.wrapped = bool(lon.max() - lon.min() > 180.0)
        lon = self.unwrap_lon(lon)
        self._gcps = (rows, cols, lon, lat)
        ur, uc = np.unique(rows), np.unique(cols)
        self.grid = None
        if len(ur) >= 2 and len(uc) >= 2 and len(ur) * len(uc) == len(rows):
            ir, ic = np.searchsorted(ur, rows), np.searchsorted(uc, cols)
            LON = np.full((len(ur), len(uc)), np.nan)
            LAT = np.full((len(ur), len(uc)), np.nan)
            LON[ir, ic], LAT[ir, ic] = lon, lat
            if np.isfinite(LON).all():
                self.grid = (ur, uc, LON, LAT)
        self.spherical = False
        if self.grid is not None:
            self._nv = _nvector(LON, LAT)
            self.spherical = self._lonlat_bends()
        if self.spherical:
            c = self._nv.reshape(-1, 3).mean(axis=0)
            c /= np.linalg.norm(c)
            e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0.0, 0.0], c)
            e1 /= np.linalg.norm(e1)
            self._frame = np.stack([e1, np.cross(c, e1), c])  # gnomonic x, y axes and the centre
            gx, gy = self._gnomonic(self._nv.reshape(-1, 3))
            ir, ic = np.meshgrid(ur, uc, indexing="ij")
            A = np.c_[gx, gy, np.ones_like(gx)]
            self._gn_fit = np.linalg.lstsq(A, np.c_[ir.ravel(), ic.ravel()], rcond=None)[0]
        self._tps = None
        if self.grid is None:
            from rasterio.control import GroundControlPoint
            from rasterio.transform import GCPTransformer

            keep = spread_indices(rows, cols, MAX_TPS_GCPS) if len(rows) > MAX_TPS_GCPS else slice(None)
            g2 = [
                GroundControlPoint(row=r, col=c, x=x, y=y)
                for r, c, x, y in zip(rows[keep], cols[keep], lon[keep], lat[keep], strict=True)
            ]
            self._tps = GCPTransformer(g2, tps=True)
            if len(g2) < len(rows):
                lo, la = self.lonlat(rows, cols, wrap=False)
                k = np.cos(np.radians(lat))
                off = float(np.nanmax(np.hypot((lo - lon) * k, la - lat))) * EARTH_M_PER_DEG
                warnings.warn(
                    Notice(
                        f"{len(rows)} GCPs off a regular grid: georeferencing fits a thin-plate spline to {len(g2)} "
                        f"of them spread over the scene (its cost grows with the cube of the count); it departs "
                        f"from the others by up to {off:.3g} m"
                    ),
                    stacklevel=user_stacklevel(),
                )
        # Affine least-squares fit lon/lat -> row/col: the inverse's first guess.
        A = np.c_[lon, lat, np.ones_like(lon)]
        self._inv_fit = np.linalg.lstsq(A, np.c_[rows, cols], rcond=None)[0]
        if pixel_size_m is None:
            pixel_size_m = self._estimate_pixel_size()
        self.pixel_size_m = (float(pixel_size_m[0]), float(pixel_size_m[1]))

    def _lonlat_bends(self) -> bool:
        """Whether bilinear lon/lat departs by more than :data:`SPHERICAL_TOL_PX` pixel, at a grid
        cell's centre, from the bilinear n-vector (see the class docstring)."""
        ur, uc, LON, LAT = self.grid  # type: ignore[misc]
        nv = self._nv
        step_m = (
            min(
                float(np.min(np.linalg.norm(np.diff(nv, axis=0), axis=-1) / np.diff(ur)[:, None])),
                float(np.min(np.linalg.norm(np.diff(nv, axis=1), axis=-1) / np.diff(uc)[None, :])),
            )
            * EARTH_RADIUS_M
        )  # metres per pixel index (the smaller of rows and columns)
        lo = (LON[:-1, :-1] + LON[1:, :-1] + LON[:-1, 1:] + LON[1:, 1:]) / 4
        la = (LAT[:-1, :-1] + LAT[1:, :-1] + LAT[:-1, 1:] + LAT[1:, 1:]) / 4
        v = nv[:-1, :-1] + nv[1:, :-1] + nv[:-1, 1:] + nv[1:, 1:]
        cos = np.sum(_nvector(lo, la) * v, axis=-1) / np.linalg.norm(v, axis=-1)
        off = np.arccos(np.clip(cos, -1.0, 1.0)) * EARTH_RADIUS_M
        return bool(np.max(off) > SPHERICAL_TOL_PX * step_m) or not np.isfinite(step_m) or step_m <= 0

    def _gnomonic(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gnomonic coordinates around the scene centre of (unnormalised) vectors ``v`` (..., 3); the
        hemisphere facing away from the scene ends up far outside it (never NaN)."""
        p = v @ self._frame.T
        d = np.maximum(p[..., 2], 1e-6 * np.linalg.norm(p, axis=-1))
        return p[..., 0] / d, p[..., 1] / d

    def _estimate_pixel_size(self) -> tuple[float, float]:
        rows, cols, _, _ = self._gcps
        r0, r1 = float(rows.min()), float(rows.max())
        c0, c1 = float(cols.min()), float(cols.max())
        rm, cm = (r0 + r1) / 2, (c0 + c1) / 2

        def dist(ra: float, ca: float, rb: float, cb: float) -> float:
            if self.spherical:  # great circle: lon/lat differences mean nothing near a pole
                v = self._bilinear_nv(np.array([ra, rb]), np.array([ca, cb]))
                v /= np.linalg.norm(v, axis=-1, keepdims=True)
                return math.acos(min(1.0, float(v[0] @ v[1]))) * EARTH_RADIUS_M
            lo, la = self.lonlat(np.array([ra, rb]), np.array([ca, cb]), wrap=False)
            k = math.cos(math.radians(float(la.mean())))
            return math.hypot((lo[1] - lo[0]) * k, la[1] - la[0]) * EARTH_M_PER_DEG

        dy = dist(r0, cm, r1, cm) / max(r1 - r0, 1.0)
        dx = dist(rm, c0, rm, c1) / max(c1 - c0, 1.0)
        return (dy if r1 > r0 else dx), (dx if c1 > c0 else dy)

    def _cell(self, rows: np.ndarray, cols: np.ndarray):
        """Each point's grid cell (i, j) and fractions (t, u) across it (linear past the grid's border)."""
        ur, uc = self.grid[0], self.grid[1]  # type: ignore[index]
        i = np.clip(np.searchsorted(ur, rows, side="right") - 1, 0, len(ur) - 2)
        j = np.clip(np.searchsorted(uc, cols, side="right") - 1, 0, len(uc) - 2)
        return i, j, (rows - ur[i]) / (ur[i + 1] - ur[i]), (cols - uc[j]) / (uc[j + 1] - uc[j])

    def _bilinear(self, rows: np.ndarray, cols: np.ndarray):
        _, _, LON, LAT = self.grid  # type: ignore[misc]
        cell = self._cell(rows, cols)
        return _lerp(LON, *cell), _lerp(LAT, *cell)

    def _bilinear_nv(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Bilinear n-vectors (..., 3), not normalised."""
        i, j, t, u = self._cell(rows, cols)
        return _lerp(self._nv, i, j, t[..., None], u[..., None])

    def lonlat(self, rows, cols, wrap: bool = True):
        rows, cols = np.broadcast_arrays(
            np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
        )
        if self.spherical:
            v = self._bilinear_nv(rows, cols)
            lon = wrap_lon(np.degrees(np.arctan2(v[..., 1], v[..., 0])))
            lat = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
            return (lon if wrap else self.unwrap_lon(lon)), lat
        if self.grid is not None:
            lon, lat = self._bilinear(rows, cols)
        else:
            xs, ys = self._tps.xy(rows.ravel(), cols.ravel(), offset="ul")  # type: ignore[union-attr]
            lon, lat = np.asarray(xs).reshape(rows.shape), np.asarray(ys).reshape(rows.shape)
        return (wrap_lon(lon) if wrap else lon), lat

    def rowcol(self, lon, lat):
        lon, lat = np.broadcast_arrays(self.unwrap_lon(lon), np.asarray(lat, dtype=np.float64))
        if self.grid is None:
            r, c = self._tps.rowcol(lon.ravel(), lat.ravel(), op=lambda v: v)  # type: ignore[union-attr]
            return np.asarray(r, dtype=np.float64).reshape(lon.shape), np.asarray(
                c, dtype=np.float64
            ).reshape(lon.shape)
        if self.spherical:  # Newton in gnomonic coordinates around the scene centre (see the class)
            lo_t, la_t = self._gnomonic(_nvector(lon.ravel(), lat.ravel()))

            def fwd(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return self._gnomonic(self._bilinear_nv(r, c))

            rc = np.c_[lo_t, la_t, np.ones(lon.size)] @ self._gn_fit
        else:
            lo_t, la_t = lon.ravel(), lat.ravel()
            fwd = self._bilinear
            rc = np.c_[lo_t, la_t, np.ones(lon.size)] @ self._inv_fit
        r, c = rc[:, 0].copy(), rc[:, 1].copy()
        h = 1.0
        for _ in range(8):
            x0, y0 = fwd(r, c)
            xr, yr = fwd(r + h, c)
            xc, yc = fwd(r, c + h)
            a, b, cc, d = (xr - x0) / h, (xc - x0) / h, (yr - y0) / h, (yc - y0) / h
            det = a * d - b * cc
            ex, ey = lo_t - x0, la_t - y0
            dr = (d * ex - b * ey) / det
            dc = (a * ey - cc * ex) / det
            r += dr
            c += dc
            if np.nanmax(np.abs(dr) + np.abs(dc), initial=0.0) < 1e-7:
                break
        return r.reshape(lon.shape), c.reshape(lon.shape)


class AffineGeoref(Georef):
    """Georeference by CRS + affine transform (pixel (i, j) centre = transform * (j + 0.5, i + 0.5))."""

    def __init__(self, crs, transform) -> None:
        from pyproj import CRS as PCRS

        if crs is None:
            raise InputError("a land mask needs a georeferenced scene (CRS + transform, or GCPs)")
        self.crs = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        self.transform = transform
        hint = " (use --no-land-mask)"
        self._fwd = _transformer(self.crs, "EPSG:4326", "the scene", hint)
        self._inv = _transformer("EPSG:4326", self.crs, "the scene", hint)
        px = math.hypot(transform.a, transform.d)
        py = math.hypot(transform.b, transform.e)
        if self.crs.is_geographic:
            _, lat = self.lonlat(np.array([0.0]), np.array([0.0]))
            k = EARTH_M_PER_DEG
            self.pixel_size_m = (py * k, px * k * max(math.cos(math.radians(float(lat[0]))), 0.01))
        else:
            f = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
            self.pixel_size_m = (py * f, px * f)
        self.wrapped = False

    def lonlat(self, rows, cols, wrap: bool = True):
        rows, cols = np.broadcast_arrays(
            np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
        )
        T = self.transform
        x = T.a * (cols + 0.5) + T.b * (rows + 0.5) + T.c
        y = T.d * (cols + 0.5) + T.e * (rows + 0.5) + T.f
        lon, lat = self._fwd.transform(x, y)
        lon = np.asarray(lon, dtype=np.float64)
        return (wrap_lon(lon) if wrap else lon), np.asarray(lat, dtype=np.float64)

    def rowcol(self, lon, lat):
        x, y = self._inv.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        inv = ~self.transform
        x, y = np.asarray(x), np.asarray(y)
        c = inv.a * x + inv.b * y + inv.c - 0.5
        r = inv.d * x + inv.e * y + inv.f - 0.5
        return r, c


def make_georef(gcps: Sequence | None = None, crs=None, transform=None,
                pixel_size_m: tuple[float, float] | None = None) -> Georef:  # fmt: skip
    """A :class:`Georef` from GCPs (EPSG:4326, row/col as pixel indices: see :class:`GCPGeoref`; ``crs``
    of the GCPs must be geographic WGS84 if given) or from ``crs`` + ``transform``."""
    if gcps:
        if crs is not None:
            from pyproj import CRS as PCRS

            c = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
            if not c.is_geographic:
                raise InputError(f"GCPs in {c.name} are not supported for land masking (EPSG:4326 expected)")
        return GCPGeoref(gcps, pixel_size_m)
    if crs is None or transform is None:
        raise InputError("a land mask needs a georeferenced scene (CRS + transform, or GCPs)")
    return AffineGeoref(crs, transform)


# ---- sources -----------------------------------------------------------------------------------
_GLOBE_LOCK = threading.Lock()
_GLOBE_CACHE: dict[str, object] = {}


class GlobeLandSource:
    """The ``global-land-mask`` GLOBE grid (30", ~1 km), loaded by latitude band without its 930 MB."""

    N_LAT, N_LON = 21600, 43200

    def __init__(self, npz_path: str | os.PathLike | None = None) -> None:
        if npz_path is None:
            npz_path = self.package_file()
        self.path = Path(npz_path)
        self.res = 180.0 / self.N_LAT  # degrees per cell
        self.rows: tuple[int, int] | None = None
        self.band: np.ndarray | None = None  # (rows, 43200) bool, True = ocean (as in the package)

    @staticmethod
    def package_file() -> Path:
        import importlib.util

        spec = importlib.util.find_spec("global_land_mask")
        if spec is None or not spec.submodule_search_locations:
            raise InputError("the land mask needs the 'global-land-mask' package (pip install global-land-mask), "
                             "or pass --land-mask FILE / --no-land-mask")  # fmt: skip
        p = Path(list(spec.submodule_search_locations)[0]) / "globe_combined_mask_compressed.npz"
        if not p.is_file():
            raise InputError(f"global-land-mask is installed but {p.name} is missing; reinstall it")
        return p

    def _row_index(self, lat: np.ndarray) -> np.ndarray:
        # global_land_mask.lat_to_index: int((lat - 90) / (-res)) after clipping to the grid's range.
        lat = np.clip(lat, -90.0 + self.res, 90.0)
        return np.minimum(((90.0 - lat) / self.res).astype(np.int64), self.N_LAT - 1)

    def _col_index(self, lon: np.ndarray) -> np.ndarray:
        lon = wrap_lon(lon)
        return np.minimum(((lon + 180.0) / self.res).astype(np.int64), self.N_LON - 1)

    def load_rows(self, r0: int, r1: int) -> None:
        """Make rows r0..r1-1 available (stream-decompressed from the npz; cached per process)."""
        if self.rows is not None and self.rows[0] <= r0 and r1 <= self.rows[1]:
            return
        key = str(self.path)
        with _GLOBE_LOCK:
            cached = _GLOBE_CACHE.get(key)
            if cached is not None and cached[0] <= r0 and r1 <= cached[1]:  # type: ignore[index]
                self.rows, self.band = (cached[0], cached[1]), cached[2]  # type: ignore[index]
                return
            r0, r1 = max(0, r0 - 60), min(self.N_LAT, r1 + 60)  # half a degree of slack
            try:
                with zipfile.ZipFile(self.path) as z, z.open("mask.npy") as f:
                    version = np.lib.format.read_magic(f)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}[version]  # fmt: skip
                    shape, fortran, dtype = reader(f)
                    if tuple(shape) != (self.N_LAT, self.N_LON) or fortran or dtype != np.bool_:
                        raise InputError(f"{self.path}: unexpected GLOBE mask layout {shape} {dtype}")
                    f.seek(f.tell() + r0 * self.N_LON)
                    buf = f.read((r1 - r0) * self.N_LON)
            except (OSError, KeyError, zipfile.BadZipFile, ValueError) as e:
                raise InputError(f"{self.path}: cannot read the GLOBE land mask ({e})") from None
            band = np.frombuffer(buf, dtype=np.bool_).reshape(r1 - r0, self.N_LON)
            _GLOBE_CACHE[key] = (r0, r1, band)
            self.rows, self.band = (r0, r1), band

    def is_land(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        ri = self._row_index(lat)
        self.load_rows(int(ri.min()), int(ri.max()) + 1)
        assert self.rows is not None and self.band is not None
        return ~self.band[ri - self.rows[0], self._col_index(np.asarray(lon, dtype=np.float64))]


def _ring_coords(geom: dict) -> list[list[list[tuple[float, float]]]]:
    """Polygons (list of rings) of a GeoJSON geometry (Polygon, MultiPolygon, GeometryCollection)."""
    t = geom.get("type")
    if t == "Polygon":
        return [geom["coordinates"]]
    if t == "MultiPolygon":
        return list(geom["coordinates"])
    if t == "GeometryCollection":
        return [p for g in geom.get("geometries", []) for p in _ring_coords(g)]
    return []


def _geojson_polygons(d: Any) -> tuple[list, object | None]:
    """(polygons as lists of (N, 2) float rings, the ``crs`` member's name or None) of a parsed GeoJSON.
    Malformed structures (rings of fewer than 3 positions included) raise the Python error
    (AttributeError, TypeError, ValueError, ...) that :func:`_read_vector` names."""
    if not isinstance(d, dict):
        raise TypeError(f"the file holds a JSON {type(d).__name__}, not a GeoJSON object")
    feats = d.get("features") if d.get("type") == "FeatureCollection" else [d]
    polys = []
    for f in feats or []:
        g = f.get("geometry") if f.get("type") == "Feature" else f
        for p in _ring_coords(g or {}):
            rings = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in p]
            if any(r.shape[1] < 2 for r in rings):
                raise ValueError("a position with fewer than two coordinates")
            if any(len(r) < 3 for r in rings):
                raise ValueError("a polygon ring with fewer than 3 positions")
            if rings:
                polys.append([r[:, :2] for r in rings])
    crs = d.get("crs")
    if crs is not None and not isinstance(crs, dict):
        raise TypeError('its "crs" member is no object (GeoJSON names one as {"type": "name", "properties": '
                        '{"name": "EPSG:..."}})')  # fmt: skip
    return polys, None if crs is None else (crs.get("properties") or {}).get("name")


def _wkb_polygons(wkb: bytes) -> list:
    """Polygons of a (Multi)Polygon WKB / ISO WKB / EWKB geometry, as lists of (x, y) rings."""
    import struct

    out: list = []

    def geom(off: int) -> int:
        bo = "<" if wkb[off] == 1 else ">"
        (t,) = struct.unpack_from(bo + "I", wkb, off + 1)
        off += 5
        if t & 0x20000000:  # EWKB SRID
            off += 4
        code = t & 0x0FFFFFFF
        dim, base = code // 1000, code % 1000
        has_z = bool(t & 0x80000000) or dim in (1, 3)
        has_m = bool(t & 0x40000000) or dim in (2, 3)
        nd = 2 + int(has_z) + int(has_m)
        if base == 3:
            (nr,) = struct.unpack_from(bo + "I", wkb, off)
            off += 4
            rings = []
            for _ in range(nr):
                (npt,) = struct.unpack_from(bo + "I", wkb, off)
                off += 4
                a = np.frombuffer(wkb, dtype=np.dtype(float).newbyteorder(bo), count=npt * nd, offset=off)
                rings.append(a.reshape(npt, nd)[:, :2].astype(np.float64))
                off += 8 * npt * nd
            out.append(rings)
            return off
        if base in (6, 7):
            (n,) = struct.unpack_from(bo + "I", wkb, off)
            off += 4
            for _ in range(n):
                off = geom(off)
            return off
        raise InputError(f"land mask vector: geometry type {base} is not a polygon")

    geom(0)
    return out


def _clip_ring(ring: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sutherland-Hodgman clip of a closed or open ring (N, 2) to a box (x0, y0, x1, y1)."""
    p = ring
    for axis, val, keep_ge in ((0, box[0], True), (0, box[2], False), (1, box[1], True), (1, box[3], False)):
        if len(p) == 0:
            break
        inside = p[:, axis] >= val if keep_ge else p[:, axis] <= val
        if inside.all():
            continue
        q = np.roll(p, -1, axis=0)
        in_next = np.roll(inside, -1)
        d = q[:, axis] - p[:, axis]
        t = np.divide(val - p[:, axis], d, out=np.zeros_like(d), where=d != 0)
        x = p + (q - p) * t[:, None]
        x[:, axis] = val
        emit = np.stack([p, x], axis=1)  # (n, 2, 2): the vertex, then the crossing point
        ok = np.stack([inside, inside != in_next], axis=1)
        p = emit[ok]
    return p


def _read_vector(path: Path, what: str = "land-mask") -> tuple[list, object | None]:
    """(list of polygons as lists of (N, 2) float rings, CRS or None = WGS84); ``what`` names the file
    in messages."""
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            d = jsonin.loads(path.read_text(), max_depth=None)  # large: no walk, RecursionError below
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read the {what} GeoJSON ({e})") from None
        try:
            return _geojson_polygons(d)
        except (AttributeError, TypeError, ValueError, IndexError, KeyError) as e:
            raise InputError(f"{path}: cannot read the {what} GeoJSON ({e})") from None
        except RecursionError:  # GeometryCollections nested hundreds deep
            raise InputError(
                f"{path}: cannot read the {what} GeoJSON (geometries nested too deeply)"
            ) from None
    try:
        import pyogrio
    except ImportError:
        raise InputError(f"{path}: reading {path.suffix or 'this'} {what} vectors needs pyogrio "
                         "(pip install pyogrio); GeoJSON and rasters work without it") from None  # fmt: skip
    try:
        meta, _, geoms, _ = pyogrio.raw.read(path, read_geometry=True, columns=[])
    except Exception as e:  # pyogrio raises its own DataSourceError etc.
        raise InputError(f"{path}: cannot read the {what} vector ({e})") from None
    import struct

    polys = []
    try:
        for wkb in geoms:
            if wkb is not None:
                polys += _wkb_polygons(bytes(wkb))
    except (struct.error, ValueError, RecursionError) as e:  # truncated, or collections nested too deeply
        raise InputError(
            f"{path}: cannot read the {what} vector (damaged geometry: {type(e).__name__})"
        ) from None
    return polys, meta.get("crs")


class VectorLandSource:
    """Polygons (land, or what ``what`` names: ``scene_eval``'s truth slicks) from a vector file, in the
    scene's pixel coordinates."""

    def __init__(
        self, path: str | os.PathLike, georef: Georef, height: int, width: int, margin_px: float,
        what: str = "land-mask",
    ) -> None:  # fmt: skip
        self.path = Path(path)
        polys, crs = _read_vector(self.path, what)
        to_wgs84 = None
        if crs is not None:
            from pyproj import CRS as PCRS
            from pyproj.exceptions import CRSError

            try:
                c = PCRS.from_user_input(crs)
            except CRSError:
                raise InputError(f"{self.path}: unknown CRS {crs!r} in the {what} vector") from None
            if (
                not c.equals(PCRS.from_epsg(4326), ignore_axis_order=True)
                and c.to_epsg() != 4326
                and "CRS84" not in str(crs)
            ):
                to_wgs84 = _transformer(c, "EPSG:4326", f"{self.path}: the {what} vector")
        # The scene's lon/lat box (+ margin) to drop far-away polygons before transforming them.
        n = 16
        rr, cc = np.meshgrid(np.linspace(-margin_px, height - 1 + margin_px, n),
                             np.linspace(-margin_px, width - 1 + margin_px, n), indexing="ij")  # fmt: skip
        blon, blat = georef.lonlat(rr, cc, wrap=False)
        pad = 0.01  # degrees (~1 km) beyond the margin
        box = (blon.min() - pad, blat.min() - pad, blon.max() + pad, blat.max() + pad)
        self.shapes: list[dict] = []
        self.bboxes: list[tuple[float, float, float, float]] = []  # (r0, c0, r1, c1)
        for poly in polys:
            rings = []
            for ring in poly:
                if to_wgs84 is not None:
                    x, y = to_wgs84.transform(ring[:, 0], ring[:, 1])
                    ring = np.c_[x, y]
                lon = georef.unwrap_lon(wrap_lon(ring[:, 0])) if georef.wrapped else ring[:, 0]
                rings.append((lon, ring[:, 1]))
            lon0, lon1 = rings[0][0].min(), rings[0][0].max()
            lat0, lat1 = rings[0][1].min(), rings[0][1].max()
            if lon1 < box[0] or lon0 > box[2] or lat1 < box[1] or lat0 > box[3]:
                continue
            px_rings = []
            for lon, lat in rings:
                # Clip to the scene box first: the GCP map is only trusted near the scene.
                xy = _clip_ring(np.c_[lon, lat], box)
                if len(xy) < 3:
                    continue
                r, c = georef.rowcol(xy[:, 0], xy[:, 1])
                px_rings.append(np.c_[c + 0.5, r + 0.5].tolist())  # x, y in "index + 0.5" space
            if not px_rings:
                continue
            a = np.asarray(px_rings[0])
            self.shapes.append({"type": "Polygon", "coordinates": px_rings})
            self.bboxes.append((a[:, 1].min(), a[:, 0].min(), a[:, 1].max(), a[:, 0].max()))

    def grid(self, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
        """Land at the pixel indices of a regular grid (gy, gx: evenly spaced)."""
        from rasterio.features import rasterize
        from rasterio.transform import Affine

        sy = float(gy[1] - gy[0]) if len(gy) > 1 else 1.0
        sx = float(gx[1] - gx[0]) if len(gx) > 1 else 1.0
        r0, r1 = gy[0] - sy, gy[-1] + sy
        c0, c1 = gx[0] - sx, gx[-1] + sx
        shapes = [s for s, b in zip(self.shapes, self.bboxes, strict=True)
                  if b[0] <= r1 and b[2] >= r0 and b[1] <= c1 and b[3] >= c0]  # fmt: skip
        if not shapes:
            return np.zeros((len(gy), len(gx)), dtype=bool)
        T = Affine(sx, 0.0, gx[0] + 0.5 - sx / 2, 0.0, sy, gy[0] + 0.5 - sy / 2)
        out = rasterize(((s, 1) for s in shapes), out_shape=(len(gy), len(gx)), transform=T, dtype="uint8")
        return out.astype(bool)


class RasterLandSource:
    """A raster mask with a CRS: non-zero = land, nodata / outside = sea. Sampled at lon/lat points."""

    def __init__(self, path: str | os.PathLike) -> None:
        import rasterio
        from rasterio.errors import RasterioError

        from dakd_edge.data.gdalnames import refuse_unsafe_vrt

        self.path = Path(path)
        refuse_unsafe_vrt(self.path)  # a VRT reads other files: only under its own name, local ones
        try:
            self.ds = rasterio.open(self.path)
        except RasterioError as e:
            raise InputError(f"{self.path}: cannot read the land mask ({e})") from None
        if self.ds.crs is None:
            raise InputError(f"{self.path}: the land-mask raster has no CRS")
        self._to = _transformer("EPSG:4326", self.ds.crs.to_wkt(), f"{self.path}: the land-mask raster")
        T = self.ds.transform
        self.res_deg_or_m = min(abs(T.a) or 1.0, abs(T.e) or 1.0)
        self.geographic = self.ds.crs.is_geographic

    @property
    def res_m(self) -> float:
        return self.res_deg_or_m * (EARTH_M_PER_DEG if self.geographic else 1.0)

    def is_land(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        x, y = self._to.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        inv = ~self.ds.transform
        c = np.floor(inv.a * np.asarray(x) + inv.b * np.asarray(y) + inv.c).astype(np.int64)
        r = np.floor(inv.d * np.asarray(x) + inv.e * np.asarray(y) + inv.f).astype(np.int64)
        inside = (r >= 0) & (r < self.ds.height) & (c >= 0) & (c < self.ds.width)
        out = np.zeros(np.shape(lon), dtype=bool)
        if not inside.any():
            return out
        r0, r1 = int(r[inside].min()), int(r[inside].max()) + 1
        c0, c1 = int(c[inside].min()), int(c[inside].max()) + 1
        try:
            a = self.ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
        except RasterioError as e:  # not an output's write error: name the mask file
            raise InputError(f"{self.path}: cannot read the land mask ({reason(e)})") from None
        vals = a.filled(0)[r[inside] - r0, c[inside] - c0]
        out[inside] = vals != 0
        return out

    def close(self) -> None:
        self.ds.close()


# ---- the masker --------------------------------------------------------------------------------
def _dilate(mask: np.ndarray, ry: float, rx: float) -> np.ndarray:
    """Binary dilation by an ellipse of radii (ry, rx) cells (ORing shifted copies; small radii)."""
    if ry < 0.5 and rx < 0.5:
        return mask
    iy, ix = int(math.floor(ry)), int(math.floor(rx))
    h, w = mask.shape
    out = mask.copy()
    for dy in range(-iy, iy + 1):
        for dx in range(-ix, ix + 1):
            if (dy == 0 and dx == 0) or (dy / max(ry, 1e-9)) ** 2 + (dx / max(rx, 1e-9)) ** 2 > 1.0:
                continue
            ya, yb = max(0, dy), min(h, h + dy)
            xa, xb = max(0, dx), min(w, w + dx)
            if ya < yb and xa < xb:
                out[ya:yb, xa:xb] |= mask[ya - dy : yb - dy, xa - dx : xb - dx]
    return out


class LandMasker:
    """Land (+ coast buffer) for windows of one scene. See the module docstring.

    Args:
        georef: :class:`Georef` of the scene (:func:`make_georef`).
        height, width: scene size in pixels.
        source: ``"globe"`` (default: the offline GLOBE grid) or a path to a vector / raster land mask.
        coast_buffer: metres of sea next to land that are masked too (0 = none).
        step_m: coarse grid spacing (metres) for the GLOBE source and the buffer.
    """

    def __init__(self, georef: Georef, height: int, width: int, source: str | os.PathLike = "globe",
                 coast_buffer: float = DEFAULT_COAST_BUFFER_M, step_m: float = DEFAULT_STEP_M) -> None:  # fmt: skip
        if not (math.isfinite(coast_buffer) and coast_buffer >= 0):
            raise InputError(f"coast buffer must be a finite number of metres >= 0, got {coast_buffer}")
        self.georef = georef
        self.height, self.width = int(height), int(width)
        self.coast_buffer = float(coast_buffer)
        py, px = georef.pixel_size_m
        if not (py > 0 and px > 0):
            raise InputError(f"cannot mask land: pixel size {py} x {px} m")
        self.pixel_m = (py, px)
        self.step = max(1, int(round(step_m / min(py, px))))  # coarse grid step, pixels
        # The buffer grid is finer for small buffers (a tenth of the buffer), so its edge stays within
        # about +-1.5 of its steps of the true distance.
        self.buffer_step = max(1, int(round(min(step_m, self.coast_buffer / 10.0) / min(py, px))))
        self.margin = (int(math.ceil(self.coast_buffer / py)) + 2 * self.buffer_step,
                       int(math.ceil(self.coast_buffer / px)) + 2 * self.buffer_step)  # fmt: skip
        self.vector: VectorLandSource | None = None
        self.point_source: GlobeLandSource | RasterLandSource
        self.fine_step = self.step
        if str(source) == "globe":
            self.point_source = GlobeLandSource()
            # One load for the whole scene's latitudes (+ margin), not one per window.
            n = 16
            rr, cc = np.meshgrid(np.linspace(-self.margin[0], self.height - 1 + self.margin[0], n),
                                 np.linspace(-self.margin[1], self.width - 1 + self.margin[1], n), indexing="ij")  # fmt: skip
            _, lat = georef.lonlat(rr, cc)
            ri = self.point_source._row_index(lat)
            self.point_source.load_rows(int(ri.min()), int(ri.max()) + 1)
        else:
            p = Path(source)
            if not p.exists():
                raise InputError(f"{p}: land mask file not found")
            if p.suffix.lower() in (".geojson", ".json", ".shp", ".gpkg", ".fgb", ".kml", ".gml", ".sqlite"):
                self.vector = VectorLandSource(p, georef, self.height, self.width, max(self.margin))
            else:
                rs = RasterLandSource(p)
                self.point_source = rs
                self.fine_step = max(1, min(self.step, int(round(rs.res_m / 2 / min(py, px)))))
        self.name = str(source)
        self._water: tuple[str, ...] | None = None  # water_counted_as_land, once found

    def _grid(self, y0: int, y1: int, x0: int, x1: int, step: int, margin: tuple[int, int]):
        gy = np.arange(y0 - margin[0], y1 + margin[0] + step, step, dtype=np.float64)
        gx = np.arange(x0 - margin[1], x1 + margin[1] + step, step, dtype=np.float64)
        return gy, gx

    def _eval(self, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
        if self.vector is not None:
            return self.vector.grid(gy, gx)
        lon, lat = self.georef.lonlat(gy[:, None], gx[None, :])
        return self.point_source.is_land(lon, lat)

    @staticmethod
    def _upsample(coarse: np.ndarray, gy: np.ndarray, gx: np.ndarray, y0: int, y1: int, x0: int, x1: int):
        sy = gy[1] - gy[0] if len(gy) > 1 else 1.0
        sx = gx[1] - gx[0] if len(gx) > 1 else 1.0
        iy = np.clip(np.rint((np.arange(y0, y1) - gy[0]) / sy).astype(np.int64), 0, len(gy) - 1)
        ix = np.clip(np.rint((np.arange(x0, x1) - gx[0]) / sx).astype(np.int64), 0, len(gx) - 1)
        return coarse[iy[:, None], ix[None, :]]

    def water_counted_as_land(self) -> list[str]:
        """The :data:`GLOBE_LAND_WATER` bodies inside this scene that its GLOBE source counts as land
        (their water is never searched); [] for the user's own mask."""
        if self.name != "globe":
            return []
        if self._water is not None:
            return list(self._water)
        found = []
        for name, points in GLOBE_LAND_WATER.items():
            lon, lat = (np.array(v, dtype=np.float64) for v in zip(*points, strict=True))
            with np.errstate(all="ignore"):
                r, c = self.georef.rowcol(self.georef.unwrap_lon(lon), lat)
            inside = (
                np.isfinite(r) & np.isfinite(c) & (r >= 0) & (r < self.height) & (c >= 0) & (c < self.width)
            )
            if inside.any() and self.point_source.is_land(lon[inside], lat[inside]).any():
                found.append(name)
        self._water = tuple(found)
        return found

    def mask(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """bool (y1 - y0, x1 - x0): True where land or within ``coast_buffer`` of land."""
        if not (y0 < y1 and x0 < x1):
            raise InputError(f"empty window rows {y0}:{y1}, cols {x0}:{x1}")
        out = None
        if self.coast_buffer > 0:
            b = self.buffer_step
            gy, gx = self._grid(y0, y1, x0, x1, b, self.margin)
            # A land sample stands for land up to half a step around it: radius buffer + step / 2.
            ry = (self.coast_buffer + 0.5 * b * self.pixel_m[0]) / (b * self.pixel_m[0])
            rx = (self.coast_buffer + 0.5 * b * self.pixel_m[1]) / (b * self.pixel_m[1])
            out = self._upsample(_dilate(self._eval(gy, gx), ry, rx), gy, gx, y0, y1, x0, x1)
            if self.vector is None and self.fine_step >= b:
                return out
        if self.vector is not None:
            exact = self.vector.grid(np.arange(y0, y1, dtype=np.float64), np.arange(x0, x1, dtype=np.float64))
        else:
            fs = self.fine_step
            gy, gx = self._grid(y0, y1, x0, x1, fs, (fs, fs))
            exact = self._upsample(self._eval(gy, gx), gy, gx, y0, y1, x0, x1)
        return exact if out is None else (out | exact)

    def fraction(self, y0: int, y1: int, x0: int, x1: int) -> float:
        return float(self.mask(y0, y1, x0, x1).mean())


def land_mask(y0: int, y1: int, x0: int, x1: int, *, gcps: Sequence | None = None, crs=None, transform=None,
              height: int | None = None, width: int | None = None, source: str | os.PathLike = "globe",
              coast_buffer: float = DEFAULT_COAST_BUFFER_M,
              pixel_size_m: tuple[float, float] | None = None) -> np.ndarray:  # fmt: skip
    """One-shot: bool land mask of a window (see :class:`LandMasker`; reuse one for many windows)."""
    g = make_georef(gcps, crs, transform, pixel_size_m)
    return LandMasker(g, height or y1, width or x1, source, coast_buffer).mask(y0, y1, x0, x1)
