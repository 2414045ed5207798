"""Describe a raster or a Sentinel-1 product without reading all of it (``dakd-edge info``).

Value statistics come from a grid of sample windows, so a 20000 x 20000 scene is described in the time
it takes to read a few hundred kilopixels. Sentinel-1 products (SAFE folder, zip, manifest.safe or a
measurement TIFF inside a SAFE) are described from their XML: their pixels are uncalibrated DN, and
what an analyst needs first is the acquisition (mission, mode, time, orbit, footprint).
rasterio + numpy only.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.atomic import reason
from dakd_edge.data.gdalnames import (
    file_head,
    gdal_name,
    is_gdal_name,
    refuse_unsafe_vrt,
    vrt_named,
)
from dakd_edge.errors import InputError, Notice, quiet, user_stacklevel


def open_raster(path: str | os.PathLike):
    """``rasterio.open`` with typed, one-line errors for missing, unreadable and empty rasters.

    GDAL virtual paths (``/vsizip/a.zip/b.tif``) are opened as they are; a BEAM-DIMAP product's
    ``.dim`` (SNAP's default format) as its bands (:func:`dimap_vrt`), a SNAP GeoTIFF with its band
    names, units, nodata and placement (:func:`_snap_tiff`); a gzip-compressed file is refused with what
    to do."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    p = Path(path)
    name = gdal_name(path)
    if not is_gdal_name(name):
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if p.is_dir():
            raise InputError(f"{p}: is a directory, not a raster")
        if not p.is_file():  # GDAL would block forever reading a FIFO
            raise InputError(f"{p}: not a regular file (a FIFO, socket or device), not a raster")
        if p.suffix.lower() == ".dim" and b"<Dimap_Document" in file_head(p):
            name = dimap_vrt(p)
        else:
            refuse_unsafe_vrt(p)
    try:
        with quiet(NotGeoreferencedWarning):  # "not georeferenced" is reported by describe_raster itself
            ds = rasterio.open(name)
    except (RasterioError, OSError) as e:
        if not is_gdal_name(name) and file_head(p)[:2] == b"\x1f\x8b":
            raise InputError(
                f"{p}: a gzip-compressed file, which GDAL does not open as a raster; decompress it first "
                f"(gunzip -k), or give /vsigzip/{p.resolve()} (slow: no random access)"
            ) from None
        raise InputError(f"{p}: cannot read as a raster ({reason(e)})") from None
    if ds.driver == "VRT" and is_gdal_name(name):
        ds.close()  # inside an archive (a deflated zip hides its XML from the scan above): unchecked
        raise InputError(
            f"{p}: a GDAL VRT inside an archive or virtual path is not opened (its sources cannot be checked); extract it"
        )
    if ds.driver == "VRT" and name == gdal_name(path) and p.suffix.lower() != ".vrt":
        ds.close()  # a VRT the sniff above missed (XML past the first KB)
        raise InputError(vrt_named(p))
    if ds.driver == "HDF5Image" and ds.crs is None and ds.transform.is_identity and not ds.gcps[0]:
        ds = _hdf5_placed(ds, name)
    if ds.driver == "SNAP_TIFF" or (
        ds.driver == "GTiff" and not is_gdal_name(name) and not any(ds.descriptions)
    ):
        ds = _snap_tiff(ds, name, p)
    if ds.width == 0 or ds.height == 0 or ds.count == 0:
        count, height, width, subdatasets = ds.count, ds.height, ds.width, list(ds.subdatasets)
        ds.close()
        if subdatasets:  # a NetCDF / HDF5 / Zarr container of several variables
            subdatasets = co_pol_first(subdatasets)
            shown = ", ".join(subdatasets[:6]) + (
                f" and {len(subdatasets) - 6} more" if len(subdatasets) > 6 else ""
            )
            raise InputError(
                f"{p}: a container of {len(subdatasets)} rasters (subdatasets) and no band of its own; give "
                f"one of them as the scene, quoted for the shell: {shown}"
            )
        raise InputError(f"{p}: empty raster ({count} band(s) of {height} x {width})")
    try:
        if not is_gdal_name(name):
            check_complete(p, ds.driver)
    except InputError:
        ds.close()
        raise
    return ds


# A container's co-polarised variable (NISAR GCOV's HHHH / VVVV, OPERA's VV / HH), listed first.
_CO_POL_VAR = re.compile(r"[/:](VV|HH|VVVV|HHHH)\W*$", re.IGNORECASE)


def co_pol_first(names: list[str]) -> list[str]:
    """A container's subdataset names with the co-polarised backscatter ones first (the scene to give,
    as NISAR GCOV lists HHHH after nothing in particular), else in their order."""
    return sorted(names, key=lambda n: not _CO_POL_VAR.search(n))


def _hdf5_placed(ds: Any, name: str) -> Any:
    """An HDF5 dataset the HDF5 driver gives no georeference, opened through GDAL's netCDF driver
    where that places it (CF ``grid_mapping`` and x / y coordinates, as NISAR GCOV and OPERA HDF5 grids
    carry them); else ``ds`` as it is. Without this, outputs were in pixel units and areas unknown."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    m = re.match(r"HDF5:(\"[^\"]+\"|[^:]+):/?(/.*)$", name, re.IGNORECASE)
    if m is None:
        return ds
    alt = f"NETCDF:{m.group(1)}:{m.group(2)}"
    try:
        with quiet(NotGeoreferencedWarning):
            nc = rasterio.open(alt)
    except (RasterioError, OSError):
        return ds
    if nc.crs is None or nc.transform.is_identity or (nc.width, nc.height) != (ds.width, ds.height):
        nc.close()
        return ds
    ds.close()
    warnings.warn(Notice(f"{name}: placed by GDAL's netCDF driver ({alt}): the HDF5 driver reads no georeference"), stacklevel=user_stacklevel())  # fmt: skip
    return nc


def _snap_tiff(ds: Any, name: str, p: Path) -> Any:
    """A GeoTIFF written by SNAP as one in-memory VRT of its bands with their SNAP names, no-data value
    and scaling (from the DIMAP header SNAP keeps in its private TIFF tag 65000); else ``ds`` as it is.

    GDAL's GTiff driver reads none of that header: a SNAP export of ``Sigma0_VH`` and ``Sigma0_VV`` was
    two unnamed bands (refused until ``--band``), its 0 outside the swath data. GDAL 3.10's SNAP_TIFF
    driver, which claims SNAP's one-band files, reads the name but no geotransform: a terrain-corrected
    ``Sigma0_VV.tif`` lost its place (outputs in pixels, no land mask, no areas). So such a file is
    reopened with the GTiff driver, which reads its georeference (or its tie-point grid as GCPs)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    infos = _snap_band_infos(p) if not is_gdal_name(name) else None
    if infos is None and ds.driver == "SNAP_TIFF":  # inside an archive: what SNAP_TIFF read of band 1
        infos = [{"BAND_NAME": ds.descriptions[0] or "", "PHYSICAL_UNIT": ds.units[0] or "", "NO_DATA_VALUE_USED": "true" if ds.nodata is not None else "",
                  "NO_DATA_VALUE": repr(ds.nodata), "SCALING_FACTOR": repr(ds.scales[0]),
                  "SCALING_OFFSET": repr(ds.offsets[0])}]  # fmt: skip
    if infos is None:
        return ds
    try:
        with quiet(NotGeoreferencedWarning):
            tif = ds if ds.driver == "GTiff" else rasterio.open(name, driver="GTiff")
    except (RasterioError, OSError):
        return ds
    vrt = None
    if len(infos) == tif.count:  # else virtual bands left out, still not the file's bands: names unknown
        source = str(Path(name).resolve()) if not is_gdal_name(name) else name
        infos = [_checked_fields(info, tif.nodatavals[i]) for i, info in enumerate(infos)]
        bands = [_vrt_band(i, tif.dtypes[i - 1], source, i, info) for i, info in enumerate(infos, 1)]
        xml = f'<VRTDataset rasterXSize="{tif.width}" rasterYSize="{tif.height}">{_vrt_place(tif)}{"".join(bands)}</VRTDataset>'
        with contextlib.suppress(RasterioError, OSError):  # a header GDAL cannot take: the file as it is
            vrt = rasterio.open(xml)
    if tif is not ds:
        tif.close()
    if vrt is None:
        return ds
    ds.close()
    return vrt


def _checked_fields(info: dict[str, str], gdal_nodata: float | None) -> dict[str, str]:
    """A SNAP band's fields with numbers that parse (a damaged ``SCALING_FACTOR`` is 1, a ``NO_DATA_VALUE``
    that is no number is not used), and the file's own GDAL no-data value where the header declares
    none (``gdal_edit -a_nodata`` after SNAP)."""

    def number(key: str, default: str | None) -> str | None:
        try:
            float(info.get(key) or "")
        except ValueError:
            return default
        return info[key]

    out = dict(info)
    out["SCALING_FACTOR"], out["SCALING_OFFSET"] = (
        number("SCALING_FACTOR", "1"),
        number("SCALING_OFFSET", "0"),
    )
    used = (info.get("NO_DATA_VALUE_USED") or "").strip().lower() == "true" and number("NO_DATA_VALUE", None)
    if not used and gdal_nodata is not None:
        out["NO_DATA_VALUE_USED"], out["NO_DATA_VALUE"] = "true", repr(gdal_nodata)
    elif not used:
        out["NO_DATA_VALUE_USED"] = "false"
    return out


def _snap_band_infos(p: Path) -> list[dict[str, str]] | None:
    """The stored bands' ``Spectral_Band_Info`` fields (name, no-data, scaling) in band order, from the
    DIMAP header of a SNAP GeoTIFF's tag 65000 (virtual bands, which SNAP does not write, left out); None
    for any other TIFF or a header that cannot be read."""
    import xml.etree.ElementTree as ET

    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            tag = tif.pages[0].tags.get(65000)
            text = tag.value if tag is not None else None
    except Exception:  # not a TIFF tifffile reads (GDAL opened it): no SNAP names
        return None
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not isinstance(text, str) or "<Dimap_Document" not in text[:4096] or len(text) > MAX_DIMAP_HEADER:
        return None
    try:
        root = ET.fromstring(text.encode("latin-1", "replace"))
    except ET.ParseError:
        return None
    infos = []
    for b in root.iter("Spectral_Band_Info"):
        if _text(b, "VIRTUAL_BAND").lower() == "true" or _text(b, "EXPRESSION"):
            continue
        index = _text(b, "BAND_INDEX")
        infos.append(
            (int(index) if index.isdigit() else len(infos), {e.tag: (e.text or "").strip() for e in b})
        )
    return [info for _, info in sorted(infos, key=lambda t: t[0])] or None


MAX_DIMAP_HEADER = 64 << 20  # a DIMAP header is kilobytes to a few MB of metadata; more is not SNAP's


def _vrt_place(ds: Any) -> str:
    """VRT XML for ``ds``'s georeference: CRS and geotransform, or its GCPs with their CRS."""
    from xml.sax.saxutils import escape, quoteattr

    if ds.crs is not None and not ds.transform.is_identity:
        gt = ", ".join(repr(v) for v in ds.transform.to_gdal())
        return f"<SRS>{escape(ds.crs.to_wkt())}</SRS><GeoTransform>{gt}</GeoTransform>"
    gcps, crs = ds.gcps
    if not gcps:
        return ""
    proj = f" Projection={quoteattr(crs.to_wkt())}" if crs is not None else ""
    pts = "".join(
        f'<GCP Id={quoteattr(str(g.id or i))} Pixel="{g.col!r}" Line="{g.row!r}" X="{g.x!r}" Y="{g.y!r}" Z="{(g.z or 0.0)!r}"/>'
        for i, g in enumerate(gcps, 1)
    )
    return f"<GCPList{proj}>{pts}</GCPList>"


def _vrt_band(i: int, dtype: str, source: str, source_band: int, info: Any, name: str = "") -> str:
    """One VRT band of ``source``'s band ``source_band`` with a DIMAP ``Spectral_Band_Info``'s name,
    unit, no-data value and scaling (``info``: its element or a dict of its fields; None: ``name`` only)."""
    from xml.sax.saxutils import escape

    def field(key: str) -> str:
        return (info.get(key) or "").strip() if isinstance(info, dict) else _text(info, key)

    band = [f'<VRTRasterBand dataType="{_VRT_TYPES.get(dtype, "Float32")}" band="{i}">']
    band.append(f"<Description>{escape(field('BAND_NAME') or name)}</Description>")
    if field("PHYSICAL_UNIT"):
        band.append(f"<UnitType>{escape(field('PHYSICAL_UNIT'))}</UnitType>")
    if field("NO_DATA_VALUE_USED").lower() == "true" and field("NO_DATA_VALUE"):
        band.append(f"<NoDataValue>{escape(field('NO_DATA_VALUE'))}</NoDataValue>")
    scale, offset = field("SCALING_FACTOR") or "1", field("SCALING_OFFSET") or "0"
    if float(scale) != 1.0 or float(offset) != 0.0:
        band.append(f"<Scale>{escape(scale)}</Scale><Offset>{escape(offset)}</Offset>")
    band.append(
        f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(source)}'
        f"</SourceFilename><SourceBand>{source_band}</SourceBand></SimpleSource></VRTRasterBand>"
    )
    return "".join(band)


def dimap_vrt(dim: Path) -> str:
    """A BEAM-DIMAP product (``X.dim`` + ``X.data/*.img`` ENVI files, SNAP's default format) as one
    in-memory VRT (XML): one band per stored band, with its name as the band description and the
    no-data value and scaling of the ``.dim`` (the ENVI headers carry neither: SNAP's 0 outside the
    swath would be read as data). Georeference is the first band file's (ENVI ``map info``, written
    for map-projected products); virtual (expression) bands, stored nowhere, are left out."""
    import xml.etree.ElementTree as ET

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        root = ET.parse(dim).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{dim}: damaged BEAM-DIMAP header ({e})") from None
    info = {}
    for b in root.iter("Spectral_Band_Info"):
        info[(b.findtext("BAND_INDEX") or "").strip()] = b
    bands = []
    for df in root.iter("Data_File"):
        el = df.find("DATA_FILE_PATH")
        img = (dim.parent / ("" if el is None else el.get("href", ""))).with_suffix(".img")
        if not img.is_file():
            raise InputError(f"{dim}: its band file {img} is missing (copy the whole {dim.stem}.data folder)")
        bands.append((img, info.get((df.findtext("BAND_INDEX") or "").strip())))
    if not bands:
        raise InputError(f"{dim}: a BEAM-DIMAP header that lists no band file")
    parts = []
    try:
        with quiet(NotGeoreferencedWarning):
            with rasterio.open(bands[0][0]) as first:
                h, w, geo = first.height, first.width, _vrt_place(first)
            for i, (img, b) in enumerate(bands, 1):
                with rasterio.open(img) as ds:
                    if (ds.height, ds.width) != (h, w):
                        raise InputError(f"{dim}: its bands differ in size ({img.name}); export one band")
                    dtype = ds.dtypes[0]
                parts.append(_vrt_band(i, dtype, str(img.resolve()), 1, b, name=img.stem))
    except (RasterioError, OSError, ValueError) as e:
        raise InputError(f"{dim}: cannot read its band files ({reason(e)})") from None
    return f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{geo}{"".join(parts)}</VRTDataset>'


def _text(el: Any, key: str) -> str:
    """The stripped text of ``el``'s child ``key`` ("" when either is missing)."""
    return "" if el is None else (el.findtext(key) or "").strip()


_VRT_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64", "complex_int16": "CInt16",
              "complex64": "CFloat32", "complex128": "CFloat64"}  # fmt: skip


def check_complete(path: Path, driver: str) -> None:
    """Refuse a truncated PNG: GDAL reads its missing rows as zeros without an error or a warning
    (dark rows a model would call oil). Pillow's ``verify`` walks every chunk with its CRC, without
    decoding. JPEG needs no check: GDAL fails on a premature end of file itself."""
    if driver != "PNG":
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # Pillow raises OSError, SyntaxError or ValueError for damaged chunks
        raise InputError(f"{path}: damaged or truncated PNG ({e})") from None


def sample_windows(height: int, width: int, n: int = 9, size: int = 256) -> list[tuple[int, int, int, int]]:
    """(row, col, h, w) of up to ``n`` non-overlapping windows spread evenly over the raster."""
    k = max(1, int(math.isqrt(n)))
    h, w = min(size, height), min(size, width)
    kr, kc = max(1, min(k, height // h)), max(1, min(k, width // w))
    rows = [round(i * (height - h) / max(kr - 1, 1)) for i in range(kr)]
    cols = [round(j * (width - w) / max(kc - 1, 1)) for j in range(kc)]
    return [(r, c, h, w) for r in rows for c in cols]


# A band of validity flags by its description (Sentinel Hub / openEO's dataMask: 0 = no data).
_MASK_BAND = re.compile(r"data_?mask", re.IGNORECASE)


def is_mask_band(description: str | None) -> bool:
    """Whether a band's description makes it a validity mask (``dataMask``), not data."""
    return _MASK_BAND.fullmatch((description or "").strip()) is not None


def describe_raster(path: str | os.PathLike, samples: int = 9, window: int = 256) -> dict[str, Any]:
    """Size, bands, dtype, CRS, transform, nodata, tiling and sampled value statistics of a raster."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    from dakd_edge.data.scaling import detect_scale, scale_from_name, scale_from_unit

    with open_raster(path) as ds:
        named = [  # as segment reads them: the file's name, else the band's unit (SNAP's Sigma0 in intensity)
            scale_from_name(Path(path).name, dt) or scale_from_unit(d, u)
            for dt, d, u in zip(ds.dtypes, ds.descriptions, ds.units, strict=True)
        ]
        wins = sample_windows(ds.height, ds.width, samples, window)
        try:
            data = [ds.read(window=Window(c, r, w, h), masked=True) for r, c, h, w in wins]
        except (RasterioError, OSError) as e:
            raise InputError(f"{path}: damaged or truncated raster ({reason(e)})") from None
        mask_band = next((b for b in range(ds.count) if is_mask_band(ds.descriptions[b])), None)
        if mask_band is not None:  # dataMask 0 (or NaN) is no data in every other band, as segment reads it
            for d in data:
                d.mask |= (np.nan_to_num(np.ma.getdata(d[mask_band])) == 0)[None]
        bands = []
        for b in range(ds.count):
            vals = np.ma.concatenate([d[b].ravel() for d in data])
            valid = vals.compressed()
            if np.issubdtype(valid.dtype, np.floating):
                valid = valid[np.isfinite(valid)]
            stats: dict[str, Any] = {"band": b + 1, "description": ds.descriptions[b]}
            if named[b] is not None and named[b].gain is not None and ds.nodatavals[b] is None:
                valid = valid[valid != 0]  # DN 0 is the fill outside the image frame, as segment reads it
                stats["nodata_from_name"] = 0
            complex_ = np.iscomplexobj(valid)
            if complex_:  # percentiles need real numbers: describe the amplitude |z|
                valid = np.abs(valid[np.isfinite(valid)])
                stats["values"] = "amplitude of complex values"
            stats["valid_fraction"] = float(valid.size / max(vals.size, 1))
            if valid.size:
                stats.update(
                    min=float(valid.min()),
                    max=float(valid.max()),
                    mean=float(valid.mean()),
                    p2=float(np.percentile(valid, 2)),
                    p98=float(np.percentile(valid, 98)),
                )
                if b == mask_band:
                    stats["scale"] = "mask (dataMask: 0 = no data in the other bands)"
                elif complex_:
                    stats["scale"] = "complex (not supported by segment)"
                elif named[b] is not None:
                    stats["scale"], stats["scale_from"] = named[b].scale, named[b].why
                else:
                    try:
                        stats["scale"] = detect_scale(valid)
                    except InputError:
                        stats["scale"] = "unknown"
            bands.append(stats)
        sampled = sum(h * w for _, _, h, w in wins)
        crs = ds.crs
        gcps = _gcp_info(ds)
        by_gcps = gcps is not None and ds.transform.is_identity  # an identity transform here means "none"
        by_transform = crs is not None and not ds.transform.is_identity  # a bare CRS places nothing
        return {
            "kind": "raster",
            "path": str(path),
            "driver": ds.driver,
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": list(ds.dtypes),
            "crs": crs.to_string() if crs else None,
            "crs_projected": bool(crs and crs.is_projected),
            "georeference": "gcps" if by_gcps else "transform" if by_transform else "none",
            "gcps": gcps,
            "transform": None if by_gcps else list(ds.transform)[:6],
            "pixel_size": None if by_gcps else [abs(ds.transform.a), abs(ds.transform.e)],
            "bounds": None if by_gcps else list(ds.bounds),
            "nodata": ds.nodata,
            "block_shapes": [list(s) for s in ds.block_shapes],
            "compression": ds.compression.name.lower() if ds.compression else None,
            "tags": ds.tags(),
            "sampled_windows": len(wins),
            "sampled_fraction": float(sampled / (ds.width * ds.height)),
            "bands": bands,
        }


def _gcp_info(ds) -> dict[str, Any] | None:
    """Count, CRS and extent of a raster's ground control points (None without GCPs)."""
    points, crs = ds.gcps
    if not points:
        return None
    xs, ys = [g.x for g in points], [g.y for g in points]
    return {
        "count": len(points),
        "crs": crs.to_string() if crs else None,
        "extent": [min(xs), min(ys), max(xs), max(ys)],
    }


# ---- Sentinel-1 products ------------------------------------------------------------------------
_POL_CODE = re.compile(r"_\d[SA](SH|SV|DH|DV|HH|HV|VV|VH)_\d{8}T", re.IGNORECASE)
_POLS_OF_CODE = {"SH": ("HH",), "SV": ("VV",), "DH": ("HH", "HV"), "DV": ("VV", "VH")}


def product_polarisations(name: str) -> tuple[str, ...] | None:
    """Polarisations acquired, from the SAFE name's code (1SDV -> VV, VH): a copy may hold fewer TIFFs."""
    m = _POL_CODE.search(name)
    if not m:
        return None
    code = m.group(1).upper()
    return _POLS_OF_CODE.get(code, (code,))


def lon_lat_bounds(ring: list[tuple[float, float]]) -> list[float]:
    """[west, south, east, north] of a (lon, lat) ring; west > east when it crosses the antimeridian
    (RFC 7946, as the GeoJSON outputs give it: :func:`dakd_edge.lonlat.geojson_geometry`)."""
    from dakd_edge.lonlat import geojson_geometry

    return geojson_geometry([np.asarray(ring, np.float64)])[1]


def _corners(grid) -> list[tuple[float, float]]:
    """(lon, lat) of the first/last line x first/last pixel grid points, image order (closed ring)."""
    lines, pixels = grid.lines, grid.pixels
    out = []
    for line, pixel in ((lines.min(), pixels.min()), (lines.min(), pixels.max()),
                        (lines.max(), pixels.max()), (lines.max(), pixels.min())):  # fmt: skip
        i = int(np.argmin(np.abs(lines - line) + np.abs(pixels - pixel)))
        out.append((float(grid.lon[i]), float(grid.lat[i])))
    return [*out, out[0]]


def describe_product(path: str | os.PathLike) -> dict[str, Any]:
    """Acquisition metadata of a Sentinel-1 GRD product (XML only: no pixel is read)."""
    from dakd_edge.data.sentinel1 import open_product

    with open_product(path) as prod:
        m = prod.meta
        d: dict[str, Any] = {"kind": "sentinel1", "path": str(path), **m.to_dict()}
        acquired = product_polarisations(m.name) or m.polarisations
        d.update(
            polarisations=list(acquired),
            polarisations_present=list(m.polarisations),
            width=m.samples,
            height=m.lines,
            pixel_spacing={"range": m.range_pixel_spacing, "azimuth": m.azimuth_pixel_spacing},
            footprint_wkt=m.footprint_wkt(),
            bounds=lon_lat_bounds(m.footprint),
            corners=[list(p) for p in _corners(prod.grid)],
            gcps={"count": len(prod.grid.lines), "crs": "EPSG:4326"},
            measurement=prod.measurement,
            border_noise=prod.border_noise,  # what segment does with its border (by default)
        )
    return d


def describe(path: str | os.PathLike, samples: int = 9, window: int = 256) -> dict[str, Any]:
    """``describe_product`` for a Sentinel-1 product, ``describe_raster`` for anything else."""
    from dakd_edge.data.sentinel1 import is_sentinel1_product, non_product_zip, unwrap_product

    path = unwrap_product(path)  # a folder around one .SAFE (an unzip tool's): that product
    if is_sentinel1_product(path):
        return describe_product(path)
    p = Path(path)
    if p.suffix.lower() == ".zip" and p.is_file():
        raise non_product_zip(p)
    return describe_raster(path, samples=samples, window=window)
