"""GDAL's own names for what it reads (virtual paths ``/vsizip/...``, driver dataset names
``NETCDF:"f.nc":VV``) and the safety checks of GDAL VRTs: a leaf module (no dakd_edge.data imports),
so every reader of rasters (scenes, land masks, truth rasters) can check them without import circles.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path

from dakd_edge.atomic import reason
from dakd_edge.errors import InputError

_VSI = re.compile(r"^((?:/vsi[a-z0-9_]+/)+)(.*)$", re.DOTALL)


def is_vsi(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a GDAL virtual path (``/vsizip/``, ``/vsitar/``, ``/vsigzip/``, ...)."""
    return bool(_VSI.match(os.fspath(path)))


# A driver's dataset name: NETCDF:"f.nc":VV, HDF5:"f.h5"://S01/SBI, RADARSAT_2_CALIB:SIGMA0:product.xml,
# ZARR:"f.zarr" (two or more letters before the colon; a URL's "://" is no such name).
_DATASET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")
# Subdataset prefixes that are no driver's name (GDAL matches both without regard to case).
_SUBDATASET_PREFIXES = frozenset({
    "RADARSAT_2_CALIB", "RCM_CALIB", "SENTINEL1_CALIB", "SENTINEL1_DS", "HDF4_SDS", "HDF4_EOS", "HDF4_GR",
    "HDF5", "NETCDF", "ZARR", "GTIFF_DIR", "NITF_IM", "DERIVED_SUBDATASET", "GPKG", "PDS4", "PCIDSK",
})  # fmt: skip


@functools.cache
def _driver_prefixes() -> frozenset[str]:
    """Upper-cased names a dataset name may start with: GDAL's raster drivers and subdataset prefixes."""
    import rasterio

    with rasterio.Env() as env:
        return frozenset(d.upper() for d in env.drivers()) | _SUBDATASET_PREFIXES


def is_gdal_name(path: str | os.PathLike) -> bool:
    """Whether GDAL, not the file system, resolves ``path``: a virtual path (:func:`is_vsi`) or a
    driver's dataset name such as ``NETCDF:"f.nc":VV`` (a subdataset) that is no existing file."""
    s = os.fspath(path)
    if is_vsi(s):
        return True
    m = _DATASET_NAME.match(s)  # a driver's name, any case ("netCDF:"): not a time ("T10:20:30.tif")
    return bool(m) and m.group(0)[:-1].upper() in _driver_prefixes() and not os.path.lexists(s)


def dataset_stem(path: str | os.PathLike) -> str:
    """A file stem for a GDAL dataset name, so two variables of one file, or one variable of two files,
    get outputs of their own: ``NETCDF:"/d/f.nc":VV`` -> ``f_VV``; ``HDF5:"/d/CSK.h5"://S01/SBI`` ->
    ``CSK_S01_SBI``; ``RADARSAT_2_CALIB:SIGMA0:/d/RS2_X/product.xml`` -> ``RS2_X_SIGMA0`` (a product's
    ``product.xml`` is named by its folder). The driver is left out."""
    rest = _DATASET_NAME.sub("", os.fspath(path), count=1)
    if '"' in rest:  # OPTIONS:"file":subdataset
        pre, file, sub = (rest.split('"', 2) + ["", ""])[:3]
        options = [q for q in pre.split(":") if q]
    else:  # OPTIONS:file:subdataset, the file being the first part that looks like one
        parts = rest.split(":")
        i = next((k for k, q in enumerate(parts) if "." in q or "/" in q), 0)
        options, file, sub = parts[:i], parts[i], ":".join(parts[i + 1 :])
    f = Path(file)
    base = f.parent.name if f.stem.lower() in ("product", "manifest") and f.parent.name else f.stem
    tokens = [base, *options, *(q for q in re.split(r"[:/]+", sub) if q)]
    stem = "_".join(t for t in tokens if t)
    return re.sub(r"[^\w.+=@-]", "_", stem) or "scene"


def gdal_name(path: str | os.PathLike) -> str:
    """``path`` as GDAL must see it. ``Path`` folds ``/vsizip//data/a.zip/b.tif`` (an absolute archive)
    into ``/vsizip/data/a.zip/b.tif``, which GDAL reads relative to the working folder: the ``//`` is
    put back when only the absolute archive exists; likewise the ``://`` of an HDF5 dataset name."""
    s = os.fspath(path)
    if s[:5].upper() == "HDF5:" and "://" not in s and ":/" in s:  # HDF5:"f.h5"://S01/SBI, folded too
        i = s.rindex(":/")
        return s[: i + 1] + "/" + s[i + 1 :]
    m = _VSI.match(s)
    if not m:
        return s
    prefix, rest = m.groups()
    first = rest.split("/", 1)[0]
    if first and not Path(first).exists() and Path("/" + first).exists():
        return f"{prefix}/{rest}"
    return s


VRT_MARK = b"<VRTDataset"
# Sources a VRT may not read: network file systems and URLs (this tool reads local files only).
_NETWORK = re.compile(
    r"/vsi(?:curl|s3|gs|az|adls|oss|swift|hdfs|webhdfs)|\b(?:https?|ftps?)://|^(?!vrt://)(?:[A-Za-z][\w+.-]*)://",
    re.I,
)
_VRT_SOURCE = re.compile(r"<(SourceFilename|SourceDataset)\b([^>]*)>(.*?)</\1\s*>", re.S)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)
# How much of a VRT is scanned for its sources, and how deep VRTs naming VRTs are followed.
VRT_SCAN_BYTES, VRT_SCAN_DEPTH = 16 << 20, 8


def vrt_named(p: Path) -> str:
    return (
        f"{p}: a GDAL VRT (XML naming other files to read) under another name; a VRT is opened only "
        "when named .vrt, so that you know it reads other files"
    )


def refuse_unsafe_vrt(path: str | os.PathLike) -> None:
    """:func:`check_vrt` for a local file GDAL would open as a VRT: ``<VRTDataset`` in its first KB
    is GDAL's own sniff, whatever the file's name."""
    p = Path(path)
    if not is_gdal_name(p) and p.is_file() and VRT_MARK in file_head(p, 1024):
        check_vrt(p)


def check_vrt(p: Path, depth: int = 0) -> None:
    """Refuse a VRT that is not named ``.vrt`` (GDAL opens one under any name: a ``scene.tif`` could
    read any file the user can), and a ``.vrt`` whose sources would hang (a FIFO, a device) or reach
    the network; VRTs among its local sources are checked likewise. :class:`InputError` saying why."""
    import html

    if p.suffix.lower() != ".vrt":
        raise InputError(vrt_named(p))
    try:
        with open(p, "rb") as f:
            text = f.read(VRT_SCAN_BYTES).decode("utf-8", "replace")
    except OSError as e:
        raise InputError(f"{p}: cannot read the VRT ({reason(e)})") from None
    if re.search(r"<PixelFunctionLanguage>\s*Python", text, re.I):
        raise InputError(f"{p}: a VRT with Python pixel functions (code run on reading) is not opened")
    for m in _VRT_SOURCE.finditer(text):
        src = html.unescape(_CDATA.sub(r"\1", m[3])).strip()
        if _NETWORK.search(src):
            raise InputError(
                f"{p}: the VRT reads {src!r} over the network; this tool reads local files only (download "
                "the source and point the VRT at it)"
            )
        if _VSI.match(src) and re.search(r"\.vrt\b", src, re.I):  # its own sources cannot be scanned
            raise InputError(
                f"{p}: the VRT reads the VRT {src!r} inside an archive, whose sources are not checked; extract it"
            )
        relative = re.search(r"relativeToVRT\s*=\s*[\"']1", m[2]) is not None
        local = _local_file(src, p.parent if relative else None)
        if local is None:
            continue
        try:
            mode = os.stat(local).st_mode
        except OSError:
            continue  # GDAL names a missing source itself
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(
                f"{p}: the VRT reads {src!r}, which is not a regular file (a FIFO, socket or device: "
                "reading it would hang or never end)"
            )
        if stat.S_ISREG(mode) and VRT_MARK in file_head(local, 1024):
            if depth >= VRT_SCAN_DEPTH:
                raise InputError(f"{p}: VRTs naming VRTs more than {VRT_SCAN_DEPTH} deep")
            check_vrt(local, depth + 1)


def _local_file(src: str, base: Path | None) -> Path | None:
    """The local file a VRT source reads (inside a ``/vsizip/`` path, a ``vrt://`` or a driver's
    dataset name such as ``NETCDF:"f.nc":VV``), or None when no part of it exists."""
    s = re.sub(r"^vrt://", "", src, flags=re.I).split("?", 1)[0]
    s = _VSI.sub(r"\2", s)
    quoted = re.search(r'"([^"]+)"', s)
    if quoted:
        s = quoted[1]
    elif _DATASET_NAME.match(s) and not os.path.lexists(s):  # NETCDF:f.nc:VV: the part naming a file
        parts = _DATASET_NAME.sub("", s, count=1).split(":")
        s = next((q for q in parts if "/" in q or "." in q), parts[0])
    if not s:
        return None
    q = Path(s)
    if base is not None and not q.is_absolute():
        q = base / q
    while not os.path.lexists(q):  # /vsizip/a.zip/b.tif: the archive a.zip is the file read
        if q.parent == q:
            return None
        q = q.parent
    return q


def file_head(p: Path, n: int = 4096) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError:
        return b""
