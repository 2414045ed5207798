"""One entry point for every input ``segment`` reads: :func:`open_scene`.

A GeoTIFF (any GDAL raster) opens as :class:`~dakd_edge.inference.geotiff.SceneReader`; a Sentinel-1
GRD product (``.SAFE`` folder, ``.zip``, ``manifest.safe`` or a measurement TIFF inside a SAFE tree)
opens as :class:`Sentinel1Reader`, which serves windows of calibrated, thermal-noise-corrected
sigma0 (linear, NaN = no data) computed window by window by :mod:`dakd_edge.data.sentinel1`. Both
give the same interface: ``info`` (:class:`SceneInfo`), ``window``, ``valid_sample``, ``close``.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.atomic import reason
from dakd_edge.data.landmask import Georef, make_georef
from dakd_edge.data.products import auxiliary_layer, is_co_pol_file, is_hyp3_rtc_name
from dakd_edge.errors import InputError, Notice, user_stacklevel
from dakd_edge.inference.geotiff import Scene, SceneInfo, SceneReader

# Pixel (i, j) covers GDAL pixel/line [j, j + 1] x [i, i + 1] (GCPs, geotransforms, polygon vertices):
# its centre, where ESA's annotation line/pixel and a Georef's indices put it, is at (j + 0.5, i + 0.5).
GDAL_CENTRE = 0.5


def co_pol_member(path: Path) -> str | None:
    """The co-polarised GeoTIFF (``*_VV.tif`` / ``*_HH.tif``) of an ASF HyP3 RTC product folder (and its
    subfolders) or zip, as a path GDAL opens; None when there is none. Several are refused, listed.
    Callers check the product's name first (:func:`~dakd_edge.data.products.is_hyp3_rtc_name`): any
    other folder or zip holding one ``*_VV.tif`` is not a product."""
    if path.is_dir():
        found = [str(f) for f in sorted([*path.glob("*"), *path.glob("*/*")]) if is_co_pol_file(f.name)]
    elif path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return None  # non_product_zip says how it is damaged
        # GDAL's braced archive name: it survives Path() (which folds /vsizip//abs/a.zip into a path
        # GDAL reads relative to the working folder), so notices and reports show one to copy
        found = [f"/vsizip/{{{path.resolve()}}}/{n}" for n in names if is_co_pol_file(n.rsplit("/", 1)[-1])]
    else:
        return None
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} co-polarised images ({', '.join(found)}); give one of them")
    return found[0] if found else None


def is_rtc_product_folder(path: Path) -> bool:
    """An extracted ASF HyP3 RTC product (``..._RTC30_G_gpuned_ABCD/``, its co-polarised image beside
    VH, layover, DEM and RGB rasters): one scene, its co-polarised image (:func:`co_pol_member`)."""
    return path.is_dir() and is_hyp3_rtc_name(path.name) and co_pol_member(path) is not None


def open_scene(
    path: str | os.PathLike,
    in_chans: int = 1,
    band: int | None = None,
    pol: str | None = None,
    denoise: bool = True,
    border_noise: str = "auto",
) -> Scene:
    """Open ``path`` as a Sentinel-1 product when it is one, else as a GDAL raster (a ``.zip`` that is
    no product is refused, saying whether it is damaged)."""
    from dakd_edge.data.sentinel1 import (
        LOOSE_MEASUREMENT,
        is_loose_measurement,
        is_sentinel1_product,
        non_product_zip,
        unwrap_product,
    )

    p = unwrap_product(path)  # a folder around one .SAFE (an unzip tool's): that product
    if is_loose_measurement(p):
        raise InputError(f"{p} {LOOSE_MEASUREMENT}")
    if is_sentinel1_product(p):
        if band is not None:
            raise InputError(f"{p}: --band does not apply to a Sentinel-1 product; choose --pol instead")
        return Sentinel1Reader(p, in_chans, pol, denoise, border_noise)
    source: str | Path = p
    if p.is_dir() and not is_hyp3_rtc_name(p.name):  # the folder an unzip tool makes around a product
        inner = [q for q in p.iterdir() if not q.name.startswith(".")]
        if len(inner) == 1 and inner[0].is_dir() and is_hyp3_rtc_name(inner[0].name):
            p = inner[0]
    if is_hyp3_rtc_name(p.name) and (member := co_pol_member(p)) is not None:
        warnings.warn(
            Notice(f"{p}: segmenting its co-polarised image {member}"), stacklevel=user_stacklevel()
        )
        p, source = Path(member), member
    elif p.suffix.lower() == ".zip" and p.is_file():
        raise non_product_zip(p)
    elif (aux := auxiliary_layer(p.name)) is not None:  # a mask or an angle read as SAR is all "oil"
        raise InputError(f"{p}: {aux}")
    if pol is not None:
        raise InputError(f"{p}: --pol applies to Sentinel-1 products only (this is not one)")
    if border_noise == "mask":
        raise InputError(f"{p}: --border-noise mask applies to Sentinel-1 products only (this is not one)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a raster file or a Sentinel-1 .SAFE product")
    if p.suffix.lower() == ".json" and p.is_file():  # GDAL would call it an unsupported raster
        raise InputError(f"{p}: a JSON file, not a raster (dakd-edge batch reads STAC catalogues and items)")
    return SceneReader(source, in_chans, band)


class Sentinel1Reader(Scene):
    """A Sentinel-1 GRD product as a scene: sigma0 windows, GCP georeference, product metadata.

    ``info.gcps`` are the geolocation grid in GDAL's convention (line + 0.5, pixel + 0.5: ESA's
    line/pixel index pixel centres), so the outputs that carry them register with the annotation in
    GDAL and QGIS. GDAL's own SAFE driver keeps the raw indices, half a pixel off that.
    """

    def __init__(
        self,
        path: Path,
        in_chans: int = 1,
        pol: str | None = None,
        denoise: bool = True,
        border_noise: str = "auto",
    ) -> None:
        from dakd_edge.data.sentinel1 import open_product

        if in_chans != 1:
            raise InputError(
                f"{path}: a Sentinel-1 product gives one band (one polarisation), the model takes {in_chans}"
            )
        self.product = open_product(path, pol, noise=denoise, border_noise=border_noise)
        self.denoise = denoise
        m = self.product.meta
        if pol is None and m.polarisation in ("VH", "HV"):  # a partial copy: no VV/HH to default to
            warnings.warn(
                Notice(
                    f"{path}: this copy has no co-polarised (VV/HH) measurement, so {m.polarisation} is "
                    "segmented; oil-spill models (the bundled one too) learn slicks on co-polarised images, "
                    "where they show far better"
                ),
                stacklevel=user_stacklevel(),
            )
        from affine import Affine

        self.info = SceneInfo(
            path=path,
            height=self.product.height,
            width=self.product.width,
            bands=(1,),
            dtype="float32",
            nodata=None,
            crs=None,
            transform=Affine.identity(),
            georeferenced=True,
            gcps=shift_gcps(self.product.gcps, GDAL_CENTRE),  # annotation indices -> GDAL pixel/line
            gcps_crs=self.product.crs,
            native_scale="linear",
            pixel_size_m=(m.azimuth_pixel_spacing, m.range_pixel_spacing),
            product={**m.to_dict(), "denoised": denoise, "border_noise": self.product.border_noise},
        )

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Calibrated sigma0 (linear) of ``[y0:y1, x0:x1]`` as ``(1, h, w)`` float32, NaN = no data."""
        try:
            return self.product.read_sigma0(y0, y1, x0, x1, denoise=self.denoise)[None]
        except InputError:
            raise
        except Exception as e:  # RasterioError from a damaged measurement TIFF
            raise InputError(f"{self.path}: damaged measurement TIFF ({reason(e)})") from None

    def valid_sample(self, grid: int = 8, size: int = 128) -> np.ndarray:
        """Finite sigma0 values ``(1, n)`` from ``grid x grid`` windows (empty: no valid pixel)."""
        h, w = self.info.height, self.info.width
        parts = []
        for y in np.linspace(0, max(h - size, 0), grid).astype(int):
            for x in np.linspace(0, max(w - size, 0), grid).astype(int):
                a = self.window(int(y), min(int(y) + size, h), int(x), min(int(x) + size, w))
                parts.append(a[:, np.isfinite(a[0])])
        return np.concatenate(parts, axis=1)

    def close(self) -> None:
        self.product.close()


def shift_gcps(gcps: Any, d: float) -> tuple[Any, ...]:
    """``gcps`` with ``d`` added to their row and column (a change of pixel/line convention)."""
    from rasterio.control import GroundControlPoint

    return tuple(
        GroundControlPoint(row=g.row + d, col=g.col + d, x=g.x, y=g.y, z=g.z, id=g.id, info=g.info)
        for g in gcps
    )


def gcps_lonlat(gcps: list[Any], crs: Any) -> tuple[list[Any], Any]:
    """``gcps`` with x/y in WGS84 longitude/latitude (EPSG:4326), as the georeference takes them: GCPs
    in a projected CRS (UTM metres, as a co-registration or GCP tool may write them) or in another
    geographic datum are transformed; WGS84 ones and GCPs without a CRS are returned as they are."""
    if crs is None:
        return gcps, crs
    from pyproj import CRS as PCRS
    from pyproj import Transformer
    from pyproj.exceptions import ProjError
    from rasterio.control import GroundControlPoint

    src = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    wgs84 = PCRS.from_epsg(4326)
    if src.is_geographic and src.ellipsoid == wgs84.ellipsoid:
        return gcps, crs  # WGS84 (or a realisation of it): lon/lat already
    try:
        to_ll = Transformer.from_crs(src, wgs84, always_xy=True)
        lon, lat = to_ll.transform([g.x for g in gcps], [g.y for g in gcps], errcheck=True)
    except ProjError as e:
        raise InputError(f"its GCPs in {src.name} cannot be placed on the globe ({e})") from None
    moved = [
        GroundControlPoint(row=g.row, col=g.col, x=float(x), y=float(y), z=g.z, id=g.id, info=g.info)
        for g, x, y in zip(gcps, lon, lat, strict=True)
    ]
    from rasterio.crs import CRS

    return moved, CRS.from_epsg(4326)


class ProjectedGCPGeoref(Georef):
    """Georeference by GCPs in a projected CRS (UTM metres, as a co-registration or GCP tool writes
    them): mapped in that CRS by GDAL's own GCP polynomial (its default order: 1 under 6 GCPs, 2 under
    10, 3 from 10), as GDAL and QGIS draw the class map that keeps these GCPs, and only then taken to
    WGS84; GCPs that polynomial cannot fit (on two rows or columns) by a thin-plate spline in that CRS. Interpolating their longitude/latitude instead bends the plane: 3 GCPs on a 2048-pixel 30 m
    scene put polygons up to 13 pixels off.

    ``row``/``col`` are pixel indices (centre-based), as :func:`gcp_georef` passes them."""

    def __init__(self, gcps: list[Any], crs: Any, pixel_size_m: tuple[float, float] | None = None) -> None:
        from pyproj import CRS as PCRS
        from pyproj import Transformer
        from rasterio.transform import GCPTransformer

        pixels = np.array([[g.row, g.col, 1.0] for g in gcps])
        if len(gcps) < 3 or np.linalg.matrix_rank(pixels) < 3:
            raise InputError(f"{len(gcps)} GCPs span no plane of pixels (fewer than 3, or on one line)")
        c = PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        try:
            self._plane = GCPTransformer(list(gcps))
            self.xy(np.zeros(1), np.zeros(1))  # GDAL fits the polynomial here
        except Exception:  # its order 2 / 3 needs GCPs off two rows or columns: a spline, still in this CRS
            from dakd_edge.data.landmask import MAX_TPS_GCPS, spread_indices

            # a spline's cost is cubic in its points: a spread subset, as GCPGeoref fits
            rc = np.array([[g.row, g.col] for g in gcps], np.float64)
            keep = (
                spread_indices(rc[:, 0], rc[:, 1], MAX_TPS_GCPS)
                if len(gcps) > MAX_TPS_GCPS
                else range(len(gcps))
            )
            self._plane = GCPTransformer([gcps[int(i)] for i in keep], tps=True)
            self.xy(np.zeros(1), np.zeros(1))
        self._to_ll = Transformer.from_crs(c, "EPSG:4326", always_xy=True)
        self._from_ll = Transformer.from_crs("EPSG:4326", c, always_xy=True)
        lon, _ = self._to_ll.transform([g.x for g in gcps], [g.y for g in gcps])
        self.wrapped = bool(np.ptp(np.asarray(lon, np.float64)) > 180.0)  # across the antimeridian
        if pixel_size_m is None:  # map metres between the GCPs' extremes: approximate, as a Georef's
            rows, cols = np.array([g.row for g in gcps]), np.array([g.col for g in gcps])
            r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
            x, y = self.xy(
                np.array([r0, r1, (r0 + r1) / 2, (r0 + r1) / 2]), np.array([(c0 + c1) / 2] * 2 + [c0, c1])
            )
            unit = float(c.axis_info[0].unit_conversion_factor)
            dy = math.hypot(x[1] - x[0], y[1] - y[0]) * unit / max(r1 - r0, 1.0)
            dx = math.hypot(x[3] - x[2], y[3] - y[2]) * unit / max(c1 - c0, 1.0)
            pixel_size_m = (dy if r1 > r0 else dx), (dx if c1 > c0 else dy)
        self.pixel_size_m = (float(pixel_size_m[0]), float(pixel_size_m[1]))

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The GCPs' CRS coordinates of pixel indices."""
        rows, cols = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
        x, y = self._plane.xy(rows.ravel(), cols.ravel(), offset="ul")
        return np.asarray(x, np.float64).reshape(rows.shape), np.asarray(y, np.float64).reshape(rows.shape)

    def lonlat(self, rows: np.ndarray, cols: np.ndarray, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._to_ll.transform(*self.xy(rows, cols))
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        return (lon if wrap else self.unwrap_lon(lon)), lat

    def rowcol(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        x, y = self._from_ll.transform(lon.ravel(), lat.ravel())
        r, c = self._plane.rowcol(np.asarray(x), np.asarray(y), op=lambda v: v)
        return np.asarray(r, np.float64).reshape(lon.shape), np.asarray(c, np.float64).reshape(lon.shape)


def gcp_georef(gcps: list[Any], crs: Any, pixel_size_m: tuple[float, float] | None = None) -> Any:
    """The Georef of GCPs (row/col as pixel indices, centre-based): in a projected CRS interpolated in
    that CRS (:class:`ProjectedGCPGeoref`), else in WGS84 longitude/latitude
    (:class:`~dakd_edge.data.landmask.GCPGeoref`, after :func:`gcps_lonlat`)."""
    from pyproj import CRS as PCRS

    if crs is not None and PCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs).is_projected:
        try:
            return ProjectedGCPGeoref(gcps, crs, pixel_size_m)
        except Exception:  # GCPs GDAL cannot fit (collinear, too few distinct): read as before, in lon/lat
            pass
    gcps, crs = gcps_lonlat(gcps, crs)
    return make_georef(gcps=gcps, crs=crs, pixel_size_m=pixel_size_m)


def georef_of(info: SceneInfo) -> Any:
    """A :class:`dakd_edge.data.landmask.Georef` (pixel <-> WGS84) of the scene, or None.

    ``info.gcps`` are GDAL pixel/line (corner-based); a Georef takes pixel indices (centre-based)."""
    if info.gcps:
        return gcp_georef(list(shift_gcps(info.gcps, -GDAL_CENTRE)), info.gcps_crs, info.pixel_size_m)
    if info.crs is not None and info.georeferenced:
        return make_georef(crs=info.crs, transform=info.transform)
    return None


def utm_crs(lon: float, lat: float) -> Any:
    """The UTM zone CRS (WGS84) of a point; longitudes past 180 (unwrapped scenes) wrap."""
    from rasterio.crs import CRS

    from dakd_edge.lonlat import wrap_lon

    lon = float(wrap_lon(lon))
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def world_of(info: SceneInfo) -> tuple[Any, Any]:
    """(pixel -> world mapping, CRS) for polygons (pixel-corner coordinates, as GDAL's pixel/line): the
    scene's own affine transform and CRS, or for a GCP-georeferenced scene, the GCP geolocation
    projected to the UTM zone of the scene centre (so areas are in m^2 and GeoPackages are in a
    projected CRS)."""
    if not info.gcps:
        return (info.transform if info.georeferenced else None), info.crs
    from pyproj import Transformer

    georef = georef_of(info)
    c_lon, c_lat = georef.lonlat(np.array([info.height / 2]), np.array([info.width / 2]), wrap=False)
    crs = utm_crs(float(c_lon[0]), float(c_lat[0]))
    to_utm = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True)

    def to_world(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # polygon vertices are pixel corners; the georef takes pixel indices (centres)
        lon, lat = georef.lonlat(rows - GDAL_CENTRE, cols - GDAL_CENTRE, wrap=False)
        return to_utm.transform(lon, lat)

    return to_world, crs
