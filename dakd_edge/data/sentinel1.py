"""Sentinel-1 GRD products: open a SAFE folder / zip / manifest / measurement TIFF, calibrate to sigma0.

Reading (:func:`open_product` -> :class:`S1Product`):

- inputs: a ``.SAFE`` folder, a ``.zip`` of one (or of a flattened copy), its ``manifest.safe``, or one
  measurement TIFF inside a SAFE tree (``measurement/s1b-iw-grd-vv-...tiff``; its annotation,
  calibration and noise XML are found by name). :func:`is_sentinel1_product` recognises these paths
  cheaply (names and the zip's directory). A zip is named by the product folder inside it
  (:func:`zip_product_name`): downloads are often saved as ``<uuid>.zip``.
- file naming: ESA's (``s1a-iw-grd-vv-...-001.tiff``), that of the COG products the Copernicus Data
  Space distributes (``NAME_COG.SAFE``, every file ``...-001-cog.tiff`` / ``-cog.xml``), and the
  flattened one of the copies on AWS, Earth Search and Planetary Computer (``measurement/iw-vv.tiff``,
  ``annotation/iw-vv.xml``, ``annotation/calibration/calibration-iw-vv.xml``; their folder needs no
  ``.SAFE`` suffix nor ``manifest.safe``).
- IW and EW GRD, high and medium resolution (``GRDH``/``GRDM``; full resolution ``GRDF`` too), of any
  mission (S1A-S1D), dual or single polarisation. SLC, RAW, OCN products and SM / WV modes (refused by
  the product name first: RAW and OCN have no annotation), a missing polarisation, missing or corrupt
  XML: one-line :class:`~dakd_edge.errors.InputError`.
- polarisation: VV by default, HH for HH/HV products (``pol=`` to choose).

Calibration (:meth:`S1Product.read_sigma0`), windowed, no scene-sized array:

    sigma0 = (DN^2 - noise) / A^2,   noise = range_noise(line, pixel) * azimuth_noise(line, pixel)

``A`` is the ``sigmaNought`` LUT of ``annotation/calibration/calibration-*.xml``, ``range_noise`` the
``noiseRangeLut`` vectors of ``noise-*.xml`` (``noiseLut`` before IPF 2.9) and ``azimuth_noise`` the
``noiseAzimuthVector`` blocks (IPF >= 2.9; 1 where absent). A 0 in a noise vector is a missing value,
not "no noise" (ESA; the product borders, the IW1/IW2 gap of IPF 003.51/003.52 products): it is left
out, and the values around it stand in (:func:`_without_missing`). Every LUT is interpolated bilinearly over
(line, pixel) for the requested window only: each vector that brackets the window's lines is
interpolated linearly along its own pixels at the window's columns (``np.interp``; vectors may have
different pixel lists, as noise vectors do), then linearly along lines between the two vectors around
each row; the azimuth LUTs are linear along lines within their (line, sample) block. Outside the first /
last vector the nearest one is used (no extrapolation). This is the interpolation of ESA's SNAP and of
xarray-sentinel (which uses the same bilinear scheme on the same LUT grid); we implement it ourselves
because it is ~60 lines of numpy, is windowed (xarray-sentinel interpolates whole LUT arrays through
xarray/pandas), and keeps the torch-free runtime free of xarray. It is tested against an independent
pointwise implementation, and was cross-checked once against xarray-sentinel 0.9.6 on the real S1B
product (sigmaNought within 1e-7 relative, range noise within 4e-4 absolute: float32 rounding; that
was before 0 values were read as missing: xarray-sentinel ramps the noise down to them at the far edge);
xarray-sentinel's GRD ``noise_azimuth`` group exposes only the first swath's block, we apply all.

Values <= 0 after noise removal (thermal noise above the signal) become the -35 dB floor
(:data:`SIGMA0_FLOOR`), never NaN. ``DN == 0`` is the no-data border of GRD products: **read_sigma0
returns NaN there** (so ``np.isfinite(s)`` is the valid mask; the segment pipeline masks NaN). Products
processed before IPF 2.90 (March 2018) have low non-zero DNs there instead ("border noise"); their
border is found from the DNs and the noise LUT and is NaN too (:class:`~dakd_edge.data.border_noise.BorderNoiseMask`). Pixel /
line coordinates follow the annotation (and GDAL's SAFE driver): the GCP of annotation (line, pixel) has
``row=line, col=pixel``.

Fixtures (:func:`build_synthetic_product`, :func:`write_minimal_safe`, :func:`zip_product`): copy a real
SAFE's XML (or write a small self-consistent one) and fill the measurement TIFF with a synthetic
sea/oil/look-alike/land scene (:mod:`dakd_edge.data.synthetic`) converted to DN through the LUTs:
``DN = sqrt(sigma0 * A^2 + noise)``. numpy + rasterio + stdlib only (torch-free).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from dakd_edge.data.border_noise import BORDER_NOISE, BorderNoiseMask
from dakd_edge.errors import InputError, Notice, OutputError, quiet, user_stacklevel
from dakd_edge.gtiff import LibtiffErrors, gtiff_profile
from dakd_edge.lonlat import wrap_lon

SIGMA0_FLOOR = float(10.0 ** (-35.0 / 10.0))  # -35 dB: noise-removed values <= 0 become this
POLARISATIONS = ("VV", "VH", "HH", "HV")
SUPPORTED_MODES = ("IW", "EW")
EARTH_M_PER_DEG_ = 111_320.0

_SAFE_RE = re.compile(
    r"^(?P<mission>S1[A-D])_(?P<mode>IW|EW|SM|S[1-6]|WV)_(?P<ptype>GRD|SLC|RAW|OCN|ETA)(?P<res>[FHM_])_"
    r"(?P<level>\d)(?P<cls>[SA])(?P<pols>SH|SV|DH|DV|HH|HV|VV|VH)_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_"
    r"(?P<orbit>\d{6})_(?P<take>[0-9A-F]{6})_(?P<crc>[0-9A-F]{4})",
    re.IGNORECASE,
)
_FILE_RE = re.compile(
    r"^(?:(?P<kind>calibration|noise|rfi)-)?(?P<mission>s1[a-d])-(?P<swath>iw\d?|ew\d?|s[1-6]|wv\d?)-"
    r"(?P<ptype>grd|slc)-(?P<pol>hh|hv|vv|vh)-(?P<start>\d{8}t\d{6})-(?P<stop>\d{8}t\d{6})-(?P<orbit>\d{6})-"
    r"(?P<take>[0-9a-f]{6})-(?P<num>\d{3})(?P<cog>-cog)?\.(?P<ext>tiff?|xml)$",  # -cog: COG products
    re.IGNORECASE,
)
# the flattened names of the copies on AWS (sentinel-s1-l1c), Earth Search and Planetary Computer:
# measurement/iw-vv.tiff, annotation/iw-vv.xml, annotation/calibration/calibration-iw-vv.xml, ...
_SHORT_RE = re.compile(
    r"^(?:(?P<kind>calibration|noise|rfi)-)?(?P<swath>iw|ew)-(?P<pol>hh|hv|vv|vh)\.(?P<ext>tiff?|xml)$",
    re.IGNORECASE,
)


def _match_file(name: str) -> re.Match | None:
    """A product file name in the SAFE naming (``-cog`` too) or the flattened one; ``ptype`` is None
    for flattened names (the annotation's productType is checked when the product is opened)."""
    return _FILE_RE.match(name) or _SHORT_RE.match(name)


def is_flattened_name(name: str) -> bool:
    """``iw-vv.tiff`` and its kin: a file name that does not name its product (see :data:`_SHORT_RE`)."""
    return bool(_SHORT_RE.match(name))


def is_measurement_name(name: str) -> bool:
    """A measurement TIFF's name in any of the namings (``s1a-iw-grd-vv-...-001.tiff``, ``iw-vv.tiff``)."""
    m = _match_file(name)
    return bool(m and not m.group("kind") and m.group("ext").lower() != "xml")


def is_loose_measurement(path: str | os.PathLike) -> bool:
    """A Sentinel-1 measurement TIFF without its SAFE tree around it (a download that put every file in
    one folder, or fetched the TIFFs alone): its name, and raw uint16 DNs on GCPs, or on no georeference
    at all (a copy that lost its GCPs; the product's annotation georeferences it). A calibrated or
    terrain-corrected GeoTIFF that kept the name is not one (float, or a CRS with a transform). Read as
    a plain raster its DNs would never be calibrated."""

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    p = Path(path)
    if not is_measurement_name(p.name) or not p.is_file() or is_sentinel1_product(p):
        return False
    try:
        with quiet(NotGeoreferencedWarning):
            with rasterio.open(p) as ds:
                return ds.dtypes == ("uint16",) and (bool(ds.gcps[0]) or ds.crs is None)
    except rasterio.errors.RasterioError:
        return False  # not readable: it fails where it is opened, with GDAL's reason


LOOSE_MEASUREMENT = (
    "is a Sentinel-1 measurement outside its product folder: its digital numbers cannot be calibrated "
    "without the product's XML; keep the download in its layout (measurement/, annotation/, "
    "annotation/calibration/) and give the product folder"
)


def _ptype(m: re.Match) -> str:
    return (m.groupdict().get("ptype") or "grd").lower()


# ---- recognising inputs ------------------------------------------------------------------------
def _zip_safe_roots(names: list[str]) -> list[str]:
    """Product folders of a zip ("" for the zip's top level), in zip order: those holding a
    manifest.safe, and those holding ``measurement/<a measurement name>`` beside ``annotation/`` (a
    zipped flattened copy, which has no manifest; its folder, like the unzipped one, is recognised).
    Members under ``..`` or an absolute path are no product's: ``..`` would name the outputs (a
    ``{stem}`` template writing outside its folder)."""
    split = [q.parts for q in map(PurePosixPath, names) if not q.is_absolute() and ".." not in q.parts]
    annotated = {
        "/".join(parts[: parts.index("annotation")]) for parts in split if "annotation" in parts[:-1]
    }
    roots: dict[str, None] = {}  # (an ordered set)
    for parts in split:
        if parts and parts[-1].lower() == "manifest.safe":
            roots.setdefault("/".join(parts[:-1]))
        elif len(parts) >= 2 and parts[-2] == "measurement" and is_measurement_name(parts[-1]):
            if "/".join(parts[:-2]) in annotated:
                roots.setdefault("/".join(parts[:-2]))
    return list(roots)


def _zip_label(root: str, zip_path: Path) -> str:
    """The name of the product at ``root`` of a zip: its folder's name (``NAME.SAFE``; a zip saved as
    ``<uuid>.zip`` or ``download.zip`` names nothing), unless that folder is no product name and the
    zip's is; the zip's own name for a product at the zip's top level."""
    inner, own = PurePosixPath(root).name, zip_path.name[: -len(".zip")]
    return inner if inner and (_SAFE_RE.match(inner) or not _SAFE_RE.match(own)) else own


def zip_product_name(path: str | os.PathLike) -> str | None:
    """The name of the one product a zip holds (``NAME.SAFE`` for ``<uuid>.zip`` holding
    ``NAME.SAFE/``; see :func:`_zip_label`), None for a zip without exactly one product or not a zip.
    Outputs and batch ids are named after it, so one product keeps one name in every form."""
    p = Path(path)
    try:
        if not (p.name.lower().endswith(".zip") and p.is_file() and zipfile.is_zipfile(p)):
            return None
        with zipfile.ZipFile(p) as z:
            roots = _zip_safe_roots(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return None
    return _zip_label(roots[0], p) if len(roots) == 1 else None


def non_product_zip(path: str | os.PathLike) -> InputError:
    """Why a ``.zip`` that :func:`is_sentinel1_product` did not take cannot be read (GDAL would call it
    an unknown raster format): damaged, or holding no product."""
    if not zipfile.is_zipfile(path):
        return InputError(
            f"{path}: damaged or truncated zip (no zip directory at its end); download it again"
        )
    try:
        with zipfile.ZipFile(path):
            pass
    except zipfile.BadZipFile as e:  # its end record is there, the directory it points to is not
        return InputError(f"{path}: damaged zip ({e}); download it again")
    return InputError(f"{path}: the zip holds no Sentinel-1 product (no manifest.safe, nor a measurement/ "
                      "folder beside annotation/)")  # fmt: skip


def _has_measurement(folder: Path) -> bool:
    """A ``measurement/`` subfolder holding a product TIFF (a SAFE tree whose folder is not NAME.SAFE)."""
    d = folder / "measurement"
    return d.is_dir() and any(is_measurement_name(f.name) for f in d.iterdir())


def product_name(path: str | os.PathLike) -> str:
    """A product's name in any form: ``NAME`` for ``NAME.SAFE``, ``NAME.zip`` or a zip holding
    ``NAME.SAFE/`` (a ``<uuid>.zip`` download names none itself)."""
    p = Path(path)
    name = zip_product_name(p) or p.name
    for suffix in (".zip", ".safe"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def unwrap_product(path: str | os.PathLike) -> Path:
    """``path``, or the one Sentinel-1 product directly inside a folder that is no product itself (the
    folder an unzip tool makes around a ``.SAFE``: Windows' "Extract All", ``unzip -d``), with a
    :class:`~dakd_edge.errors.Notice`. A folder holding several products is refused (one line naming
    ``dakd-edge batch``, which runs folders of products)."""
    p = Path(path)
    if not p.is_dir() or is_sentinel1_product(p):
        return p
    try:
        inner = sorted(
            c for c in p.iterdir() if (c.is_dir() or c.suffix.lower() == ".zip") and is_sentinel1_product(c)
        )
    except OSError:
        return p
    if len(inner) > 1 and len({product_name(c).lower() for c in inner}) == 1:  # NAME.SAFE beside NAME.zip
        safe = next((c for c in inner if c.is_dir()), inner[0])  # unzipped: read in place, faster
        forms = " and ".join(c.name for c in inner)
        warnings.warn(
            Notice(f"{p}: {forms} are one product; using {safe.name}"), stacklevel=user_stacklevel()
        )
        return safe
    if len(inner) > 1:
        names = ", ".join(c.name for c in inner[:3]) + (", ..." if len(inner) > 3 else "")
        raise InputError(
            f"{p}: a folder holding {len(inner)} Sentinel-1 products ({names}); give one, or run them all "
            f"with dakd-edge batch {p}"
        )
    if inner:
        warnings.warn(
            Notice(f"{p}: using the Sentinel-1 product inside it, {inner[0].name}"),
            stacklevel=user_stacklevel(),
        )
        return inner[0]
    return p


def is_sentinel1_product(path: str | os.PathLike) -> bool:
    """True when ``path`` is a Sentinel-1 SAFE folder, a zip of one, its manifest.safe, or a measurement
    TIFF inside a SAFE tree. Cheap: file names and the zip's central directory, no XML parsing.

    A folder with ``annotation/`` named like a product counts even when its measurement files have names
    we do not read (a flattened SM copy): opening it then says why it is refused, not "no scene"."""
    p = Path(path)
    try:
        if p.is_dir():
            return (p / "manifest.safe").is_file() or (
                (p / "annotation").is_dir()
                and (p.suffix.lower() == ".safe" or bool(_SAFE_RE.match(p.name)) or _has_measurement(p))
            )
        if not p.is_file():
            return False
        name = p.name.lower()
        if name == "manifest.safe":
            return True
        if name.endswith(".zip"):
            if not zipfile.is_zipfile(p):
                return False
            with zipfile.ZipFile(p) as z:
                return bool(_zip_safe_roots(z.namelist()))
        if name.endswith((".tif", ".tiff")):
            return (is_measurement_name(p.name) and p.parent.name.lower() == "measurement"
                    and (p.parent.parent / "annotation").is_dir())  # fmt: skip
    except (OSError, zipfile.BadZipFile):  # a damaged zip: non_product_zip says so where it is read
        return False
    return False


# ---- product trees: a folder or a zip ----------------------------------------------------------
class _Tree:
    """Files of one SAFE, by POSIX path relative to the SAFE root."""

    name: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def gdal_path(self, rel: str) -> str:
        raise NotImplementedError


class _DirTree(_Tree):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name

    def names(self) -> list[str]:
        out = []
        for sub in ("annotation", "annotation/calibration", "measurement"):
            d = self.root / sub
            if d.is_dir():
                out += [f"{sub}/{f.name}" for f in sorted(d.iterdir()) if f.is_file()]
        if (self.root / "manifest.safe").is_file():
            out.append("manifest.safe")
        return out

    def read(self, rel: str) -> bytes:
        _check_size(self.root / rel, (self.root / rel).stat().st_size)
        return (self.root / rel).read_bytes()

    def gdal_path(self, rel: str) -> str:
        return str(self.root / rel)


class _ZipTree(_Tree):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"{path}: not a readable zip ({e})") from None
        all_names = self.zf.namelist()
        roots = _zip_safe_roots(all_names)
        if len(roots) != 1:  # several: which one the user meant is theirs to say, never guessed
            self.zf.close()
            if not roots:
                raise InputError(f"{path}: the zip holds no Sentinel-1 SAFE (no manifest.safe, nor a "
                                 "measurement/ folder beside annotation/)")  # fmt: skip
            raise InputError(f"{path}: the zip holds {len(roots)} products ({', '.join(roots)}); "
                             "unzip it and give one")  # fmt: skip
        root = roots[0]
        self.prefix = f"{root}/" if root else ""
        self.name = _zip_label(root, path)
        self._names = [n[len(self.prefix):] for n in all_names
                       if n.startswith(self.prefix) and not n.endswith("/")]  # fmt: skip

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, rel: str) -> bytes:
        info = self.zf.getinfo(self.prefix + rel)
        _check_size(f"{self.path}: {info.filename}", info.file_size)  # a 2 GiB XML in a 5 MB zip
        return self.zf.read(info)

    def gdal_path(self, rel: str) -> str:
        return f"/vsizip/{self.path.resolve()}/{self.prefix}{rel}"

    def close(self) -> None:
        self.zf.close()


# A product's XML files (annotation, calibration, noise, manifest) are 0.1-30 MB; past this one is none.
MAX_XML_BYTES = 256 << 20


def _check_size(name: object, size: int) -> None:
    """Refuse a product XML larger than :data:`MAX_XML_BYTES` before reading it: it would be read and
    parsed whole (a zip bomb's 2 GiB calibration XML took 4.3 GB of memory, then a traceback)."""
    if size > MAX_XML_BYTES:
        raise InputError(
            f"{name}: {size:,} bytes, larger than any Sentinel-1 product XML "
            f"({MAX_XML_BYTES:,} at most): a damaged or crafted product"
        )


# ---- XML helpers -------------------------------------------------------------------------------
def _parse_xml(tree: _Tree, rel: str, what: str) -> ET.Element:
    try:
        data = tree.read(rel)
    except (OSError, KeyError) as e:
        raise InputError(f"{tree.name}: cannot read {what} {rel} ({e})") from None
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise InputError(f"{tree.name}: corrupt {what} XML {rel} ({e})") from None


def _text(root: ET.Element, path: str, what: str, default: str | None = None) -> str:
    e = root.find(path)
    if e is None or e.text is None:
        if default is not None:
            return default
        raise InputError(f"{what}: missing <{path}>")
    return e.text.strip()


def _utc(time: str) -> str:
    """An annotation time (UTC, written without a zone: 2021-06-01T04:30:00.000000) with its ``Z``, so
    that no reader of the report takes it for local time."""
    return time if re.search(r"(?:Z|[+-]\d\d:?\d\d)$", time) else time + "Z"


def _floats(e: ET.Element | None, what: str) -> np.ndarray:
    if e is None or e.text is None:
        raise InputError(f"{what}: missing values")
    try:
        return np.array(e.text.split(), dtype=np.float64)
    except ValueError:
        raise InputError(f"{what}: non-numeric values in <{e.tag}>") from None


# ---- LUTs --------------------------------------------------------------------------------------
class VectorLUT:
    """A LUT given as vectors at increasing lines, each over its own increasing pixel list.

    :meth:`window` interpolates it bilinearly over (line, pixel) for one window: O(window) memory.
    """

    def __init__(self, lines: np.ndarray, pixels: list[np.ndarray], values: list[np.ndarray], what: str):
        if len(lines) == 0:
            raise InputError(f"{what}: no vectors")
        order = np.argsort(lines, kind="stable")
        self.lines = np.asarray(lines, dtype=np.float64)[order]
        self.pixels = [np.asarray(pixels[i], dtype=np.float64) for i in order]
        self.values = [np.asarray(values[i], dtype=np.float64) for i in order]
        for p, v in zip(self.pixels, self.values, strict=True):
            if p.shape != v.shape or p.size == 0:
                raise InputError(f"{what}: a vector has {p.size} pixels but {v.size} values")
            if np.any(np.diff(p) <= 0):
                raise InputError(f"{what}: pixel positions of a vector are not increasing")
        if np.any(np.diff(self.lines) <= 0):
            # Duplicate lines (seen at product ends): keep the last vector of each line.
            keep = np.r_[np.diff(self.lines) > 0, True]
            self.lines = self.lines[keep]
            self.pixels = [p for p, k in zip(self.pixels, keep, strict=True) if k]
            self.values = [v for v, k in zip(self.values, keep, strict=True) if k]

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """float32 (y1 - y0, x1 - x0) LUT values at rows y0..y1-1, columns x0..x1-1."""
        rows = np.arange(y0, y1, dtype=np.float64)
        cols = np.arange(x0, x1, dtype=np.float64)
        L = self.lines
        n = len(L)
        if n == 1:
            r = np.interp(cols, self.pixels[0], self.values[0]).astype(np.float32)
            return np.broadcast_to(r, (len(rows), len(cols))).copy()
        # Index k of the vector at or above each row (clamped so that k + 1 exists), weight t in [0, 1].
        k = np.clip(np.searchsorted(L, rows, side="right") - 1, 0, n - 2)
        t = np.clip((rows - L[k]) / (L[k + 1] - L[k]), 0.0, 1.0).astype(np.float32)
        k0, k1 = int(k.min()), int(k.max()) + 1
        vec = [np.interp(cols, self.pixels[i], self.values[i]).astype(np.float32) for i in range(k0, k1 + 1)]
        out = np.empty((len(rows), len(cols)), dtype=np.float32)
        # Rows are sorted, so each vector interval covers one contiguous run of rows: v0 + t * (v1 - v0).
        for kk in range(k0, k1):
            sel = np.flatnonzero(k == kk)
            if sel.size == 0:
                continue
            a, b = sel[0], sel[-1] + 1
            v0, v1 = vec[kk - k0], vec[kk - k0 + 1]
            np.multiply(t[a:b, None], v1 - v0, out=out[a:b])
            out[a:b] += v0
        return out

    def point(self, line: float, pixel: float) -> float:
        """The LUT at one (line, pixel), float64 (slow; for checks)."""
        vals = [np.interp(pixel, p, v) for p, v in zip(self.pixels, self.values, strict=True)]
        return float(np.interp(line, self.lines, vals))


@dataclass
class AzimuthBlock:
    """One ``noiseAzimuthVector``: a LUT along lines, constant across its range samples."""

    swath: str
    first_line: int
    last_line: int
    first_sample: int
    last_sample: int
    lines: np.ndarray
    lut: np.ndarray


class NoiseLUT:
    """Thermal noise: range vectors times azimuth blocks (IPF >= 2.9), windowed."""

    def __init__(self, rng: VectorLUT, blocks: list[AzimuthBlock], legacy: bool = False) -> None:
        self.range = rng
        self.blocks = blocks
        self.legacy = legacy  # ``noiseVectorList``: written by IPF before 2.90

    def azimuth_window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        if not self.blocks:
            return None
        out = np.ones((y1 - y0, x1 - x0), dtype=np.float32)
        for b in self.blocks:
            ya, yb = max(y0, b.first_line), min(y1, b.last_line + 1)
            xa, xb = max(x0, b.first_sample), min(x1, b.last_sample + 1)
            if ya >= yb or xa >= xb:
                continue
            az = np.interp(np.arange(ya, yb, dtype=np.float64), b.lines, b.lut).astype(np.float32)
            out[ya - y0 : yb - y0, xa - x0 : xb - x0] = az[:, None]
        return out

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        n = self.range.window(y0, y1, x0, x1)
        for b in self.blocks:  # in place: range noise x azimuth LUT of the block (1 outside every block)
            ya, yb = max(y0, b.first_line), min(y1, b.last_line + 1)
            xa, xb = max(x0, b.first_sample), min(x1, b.last_sample + 1)
            if ya < yb and xa < xb:
                az = np.interp(np.arange(ya, yb, dtype=np.float64), b.lines, b.lut).astype(np.float32)
                n[ya - y0 : yb - y0, xa - x0 : xb - x0] *= az[:, None]
        return n

    def point(self, line: float, pixel: float) -> float:
        v = self.range.point(line, pixel)
        for b in self.blocks:
            if b.first_line <= line <= b.last_line and b.first_sample <= pixel <= b.last_sample:
                return v * float(np.interp(line, b.lines, b.lut))
        return v


def _read_vectors(vecs: list[ET.Element], tag: str, what: str) -> tuple[np.ndarray, list, list]:
    """(lines, pixel lists, ``tag`` value lists) of LUT vectors (calibration and noise range vectors
    share this shape: ``<line>``, ``<pixel>`` and one value list each)."""
    lines, pixels, values = [], [], []
    for v in vecs:
        try:
            lines.append(float(_text(v, "line", what)))
        except ValueError:
            raise InputError(f"{what}: non-numeric <line> {_text(v, 'line', what)!r}") from None
        pixels.append(_floats(v.find("pixel"), what))
        values.append(_floats(v.find(tag), f"{what} {tag}"))
    return np.array(lines), pixels, values


def parse_calibration(root: ET.Element, what: str = "calibration", lut: str = "sigmaNought") -> VectorLUT:
    vecs = root.findall("calibrationVectorList/calibrationVector")
    if not vecs:
        raise InputError(f"{what}: no <calibrationVector>")
    lines, pixels, values = _read_vectors(vecs, lut, what)
    if not all(np.isfinite(v).all() and (v > 0).all() for v in values):
        # A is a divisor: zero or NaN would turn every pixel into inf/NaN, i.e. "no valid pixels"
        raise InputError(f"{what}: corrupt calibration: {lut} values must be finite and positive")
    return VectorLUT(lines, pixels, values, f"{what} {lut}")


def _without_missing(lines: np.ndarray, pixels: list, values: list) -> tuple[np.ndarray, list, list]:
    """Noise vectors without their 0 values, which are missing values, not "no noise": ESA's answer on
    the IW1/IW2 gap of IPF 003.51/003.52 GRD products ("0 values in the denoising vectors have to be
    considered as missing values ... This applies both here, and in the borders of the products"; STEP
    forum, 2023), and nansencenter's s1denoise (0 -> NaN). Left in, the LUT was interpolated down to 0
    towards them: less noise removed from pixels whose DNs still hold it (a brighter strip). A vector left
    without values is dropped (its neighbours along azimuth stand in); when every value is 0 the vectors
    stay as annotated (no noise known: none is removed, as before)."""
    known = [v != 0 if v.shape == p.shape else np.ones(v.shape, bool)  # VectorLUT refuses the latter
             for p, v in zip(pixels, values, strict=True)]  # fmt: skip
    keep = [i for i, k in enumerate(known) if k.any()]
    if not keep or all(k.all() for k in known):
        return lines, pixels, values
    return (np.asarray(lines)[keep], [pixels[i][known[i]] for i in keep],
            [values[i][known[i]] for i in keep])  # fmt: skip


def parse_noise(root: ET.Element, what: str = "noise") -> NoiseLUT:
    vecs = root.findall("noiseRangeVectorList/noiseRangeVector")
    tag = "noiseRangeLut"
    if not vecs:  # IPF < 2.9: one range LUT, no azimuth vectors
        vecs, tag = root.findall("noiseVectorList/noiseVector"), "noiseLut"
    if not vecs:
        raise InputError(f"{what}: no <noiseRangeVector> or <noiseVector>")
    vectors = _without_missing(*_read_vectors(vecs, tag, what))  # VectorLUT checks them (below)
    blocks = []
    for b in root.findall("noiseAzimuthVectorList/noiseAzimuthVector"):
        blines = _floats(b.find("line"), what)
        lut = _floats(b.find("noiseAzimuthLut"), f"{what} noiseAzimuthLut")
        if blines.shape != lut.shape:
            raise InputError(f"{what}: noiseAzimuthVector has {blines.size} lines but {lut.size} values")
        if not (known := lut != 0).any():
            continue  # no value at all: the block scales nothing (its range noise is used as it is)
        blines, lut = blines[known], lut[known]
        blocks.append(AzimuthBlock(
            _text(b, "swath", what, ""), int(_text(b, "firstAzimuthLine", what)),
            int(_text(b, "lastAzimuthLine", what)), int(_text(b, "firstRangeSample", what)),
            int(_text(b, "lastRangeSample", what)), blines, lut,
        ))  # fmt: skip
    return NoiseLUT(VectorLUT(*vectors, f"{what} {tag}"), blocks, legacy=tag == "noiseLut")


# ---- metadata ----------------------------------------------------------------------------------
@dataclass
class S1Metadata:
    """What ``dakd-edge info PRODUCT`` prints. Times are ISO 8601 UTC strings, spacings metres."""

    name: str
    mission: str  # S1A / S1B / ...
    mode: str  # IW / EW
    product_type: str  # GRD
    resolution: str  # H / M / F ("" when unknown)
    polarisations: tuple[str, ...]  # those with a measurement TIFF and annotation in this product
    polarisation: str  # the one read
    start_time: str
    stop_time: str
    absolute_orbit: int
    pass_direction: str  # ASCENDING / DESCENDING
    lines: int
    samples: int
    range_pixel_spacing: float
    azimuth_pixel_spacing: float
    ipf_version: str | None
    footprint: list[tuple[float, float]] = field(default_factory=list)  # (lon, lat) ring, WGS84, closed

    def to_dict(self) -> dict:
        """Beside the ``footprint`` ring as annotated, ``footprint_geojson``: that ring as an RFC 7946
        geometry, cut at +-180 for a product on the antimeridian (the ring's longitudes jump from 179.99
        to -179.99 there) and closed along the pole for one around a pole."""
        d = asdict(self)
        d["polarisations"] = list(self.polarisations)
        d["footprint"] = [list(p) for p in self.footprint]
        d["footprint_geojson"] = self.footprint_geojson()
        return d

    def footprint_geojson(self) -> dict | None:
        """:attr:`footprint` as a GeoJSON geometry (:func:`~dakd_edge.lonlat.geojson_geometry`), None
        without one."""
        from dakd_edge.lonlat import geojson_geometry

        if len(self.footprint) < 4:
            return None
        return geojson_geometry([np.asarray(self.footprint, np.float64)])[0]

    def footprint_wkt(self) -> str:
        """WKT of :attr:`footprint`; a MULTIPOLYGON cut at +-180 for a product on the antimeridian (its
        ring, wrapped, would span the globe in any planar GIS tool), closed along the pole for one
        around a pole."""
        from dakd_edge.lonlat import split_antimeridian

        polys = split_antimeridian([self.footprint])
        lons = [x for x, _ in self.footprint]
        if len(polys) == 1 and max(lons) - min(lons) <= 180.0:  # not around a pole: as annotated
            polys = [[self.footprint]]

        def ring(r: list[tuple[float, float]]) -> str:
            return "(" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in r) + ")"

        parts = ["(" + ", ".join(ring(r) for r in poly) + ")" for poly in polys]
        return f"POLYGON {parts[0]}" if len(parts) == 1 else f"MULTIPOLYGON ({', '.join(parts)})"


@dataclass
class GeolocationGrid:
    """The annotation's geolocation grid: regular in (line, pixel) for GRD products."""

    lines: np.ndarray  # (n,) float64 of each point
    pixels: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    height: np.ndarray
    incidence: np.ndarray

    def outer_ring(self) -> list[tuple[float, float]]:
        """Closed (lon, lat) ring along the grid's border, starting at (first line, first pixel)."""
        ul, up = np.unique(self.lines), np.unique(self.pixels)
        idx = {(float(a), float(b)): i for i, (a, b) in enumerate(zip(self.lines, self.pixels, strict=True))}
        if len(idx) == len(self.lines) == len(ul) * len(up):
            path = ([(ul[0], p) for p in up] + [(line, up[-1]) for line in ul[1:]]
                    + [(ul[-1], p) for p in up[-2::-1]] + [(line, up[0]) for line in ul[-2::-1]])  # fmt: skip
            ring = [(float(self.lon[idx[k]]), float(self.lat[idx[k]])) for k in path]
        else:  # irregular grid: its four extreme corners
            corners = [np.argmin(self.lines + self.pixels), np.argmin(self.lines - self.pixels),
                       np.argmax(self.lines + self.pixels), np.argmax(self.lines - self.pixels)]  # fmt: skip
            ring = [(float(self.lon[i]), float(self.lat[i])) for i in corners] + [
                (float(self.lon[corners[0]]), float(self.lat[corners[0]]))]  # fmt: skip
        return ring


def parse_geolocation_grid(root: ET.Element, what: str) -> GeolocationGrid:
    pts = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if len(pts) < 3:
        raise InputError(f"{what}: the geolocation grid has {len(pts)} points (need >= 3)")
    cols: dict[str, list[float]] = {k: [] for k in ("line", "pixel", "latitude", "longitude", "height",
                                                   "incidenceAngle")}  # fmt: skip
    try:
        for p in pts:
            for k, v in cols.items():
                v.append(float(_text(p, k, what, "nan" if k in ("height", "incidenceAngle") else None)))
    except ValueError:
        raise InputError(f"{what}: non-numeric geolocation grid point") from None
    a = {k: np.array(v) for k, v in cols.items()}
    return GeolocationGrid(a["line"], a["pixel"], a["latitude"], a["longitude"], a["height"],
                           a["incidenceAngle"])  # fmt: skip


# ---- the product -------------------------------------------------------------------------------
def _mode_label(mode: str) -> str:
    """``S3`` -> ``SM (stripmap, beam S3)``: product names give the stripmap beam, users know "SM"."""
    mode = mode.upper()
    if re.fullmatch(r"S[1-6]", mode):
        return f"SM (stripmap, beam {mode})"
    return {"SM": "SM (stripmap)", "WV": "WV (wave)"}.get(mode, mode)


def _refuse_by_name(name: str) -> None:
    """Refuse what a product's name says we do not read (SLC, RAW, OCN products; SM and WV modes)
    before looking inside: RAW and OCN products have no annotation/ folder, whose absence would hide why."""
    m = _SAFE_RE.match(name)
    if m is None:
        return
    if m.group("ptype").upper() != "GRD":
        raise InputError(f"{name}: {m.group('ptype').upper()} product; only GRD (ground range detected) "
                         "products are supported")  # fmt: skip
    if m.group("mode").upper() not in SUPPORTED_MODES:
        raise InputError(f"{name}: {_mode_label(m.group('mode'))} mode; only IW and EW GRD products are "
                         "supported")  # fmt: skip


def _locate(path: Path) -> tuple[_Tree, str | None]:
    """(tree, measurement file name when the input was one measurement TIFF)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        _refuse_by_name(path.name)
        if not (path / "annotation").is_dir():
            raise InputError(f"{path}: not a Sentinel-1 SAFE folder (no annotation/ folder)")
        return _DirTree(path), None
    name = path.name.lower()
    if name == "manifest.safe":
        return _DirTree(path.resolve().parent), None
    if name.endswith(".zip"):
        return _ZipTree(path), None
    if name.endswith((".tif", ".tiff")):
        m = _match_file(path.name)
        root = path.resolve().parent.parent
        if not m or m.group("kind") or not (root / "annotation").is_dir():
            raise InputError(f"{path}: not a measurement TIFF inside a Sentinel-1 SAFE tree "
                             "(expected SAFE/measurement/s1?-<mode>-grd-<pol>-...tiff or <mode>-<pol>.tiff next to annotation/)")  # fmt: skip
        return _DirTree(root), path.name
    raise InputError(f"{path}: not a Sentinel-1 product (expected a .SAFE folder, a .zip, manifest.safe "
                     "or a measurement TIFF)")  # fmt: skip


def _ipf_version(manifest: ET.Element | None) -> str | None:
    if manifest is None:
        return None
    for e in manifest.iter():
        if e.tag.endswith("software") and "IPF" in (e.get("name") or "") and e.get("version"):
            return e.get("version")
    return None


def _manifest_value(manifest: ET.Element | None, local: str) -> str | None:
    if manifest is None:
        return None
    for e in manifest.iter():
        if e.tag.rsplit("}", 1)[-1] == local and e.text and e.text.strip():
            return e.text.strip()
    return None


class S1Product:
    """One polarisation of a Sentinel-1 GRD product, opened for windowed sigma0 reads.

    Attributes: ``meta`` (:class:`S1Metadata`), ``gcps`` (rasterio ``GroundControlPoint`` list from the
    geolocation grid, row = line, col = pixel), ``crs`` (EPSG:4326), ``grid`` (:class:`GeolocationGrid`),
    ``height``/``width``, ``calibration`` (sigmaNought :class:`VectorLUT`), ``noise`` (:class:`NoiseLUT`;
    None with ``noise=False``, which neither needs nor reads the noise XML, for ``--no-denoise`` on a
    product whose noise annotation is missing or damaged), ``measurement`` (GDAL path of the TIFF),
    ``border`` (:class:`~dakd_edge.data.border_noise.BorderNoiseMask`, or None when the border is not masked) and ``border_noise``
    (what is done with it, as the report says).
    Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self, path: str | os.PathLike, pol: str | None = None, noise: bool = True, border_noise: str = "auto"
    ) -> None:
        self.path = Path(path)
        self._tree, tiff_name = _locate(self.path)
        self._ds = None
        self.noise: NoiseLUT | None = None
        self.border: BorderNoiseMask | None = None
        try:
            self._open(pol, tiff_name, noise)
            self.border_noise = self._border_noise(border_noise)
        except Exception:
            self.close()
            raise

    def _border_noise(self, mode: str) -> str:
        """Set up :attr:`border` for ``mode`` (:data:`BORDER_NOISE`); returns what the report says."""
        if mode not in BORDER_NOISE:
            raise InputError(f"border noise {mode!r}: choose one of {', '.join(BORDER_NOISE)}")
        ipf = self.meta.ipf_version
        try:
            old = tuple(int(v) for v in ipf.split(".")[:2]) < (2, 90) if ipf else None
        except ValueError:
            old = None
        if old is None and self.noise is not None:
            old = self.noise.legacy  # no manifest (flattened copy): the noise XML's layout tells
        why = (f"IPF {ipf}" if ipf else "IPF unknown" if old is None
               else f"IPF {'before 2.90' if old else '2.90 or later'} (noise XML layout)")  # fmt: skip
        if mode == "keep":
            return f"kept ({why})"
        if mode == "auto" and not old:
            return f"kept ({why})" if old is None else f"not needed ({why}: its border is written as 0)"
        if self.noise is None:
            if mode == "mask":
                raise InputError(f"{self.meta.name}: border-noise masking needs the noise annotation "
                                 "(not with --no-denoise)")  # fmt: skip
            return f"kept ({why}; needs the noise annotation, not read with --no-denoise)"
        self.border = BorderNoiseMask(self)
        return f"masked ({why})"

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, pol: str | None, tiff_name: str | None, noise: bool = True) -> None:
        tree = self._tree
        names = tree.names()
        safe = _SAFE_RE.match(tree.name)
        _refuse_by_name(tree.name)
        measurements: dict[str, str] = {}
        for n in names:
            parts = n.split("/")
            m = _match_file(parts[-1])
            if len(parts) == 2 and parts[0] == "measurement" and m and not m.group("kind"):
                if _ptype(m) != "grd":
                    raise InputError(f"{tree.name}: {m.group('ptype').upper()} measurement {parts[-1]}; only "
                                     "GRD products are supported")  # fmt: skip
                measurements.setdefault(m.group("pol").upper(), n)
        if tiff_name is not None:
            m = _match_file(tiff_name)
            assert m is not None
            if _ptype(m) != "grd":
                raise InputError(f"{tiff_name}: SLC measurement; only GRD products are supported")
            own = m.group("pol").upper()
            measurements[own] = f"measurement/{tiff_name}"
            pol = pol or own
        if not measurements:
            raise InputError(
                f"{tree.name}: no measurement TIFF (measurement/s1?-*-grd-<pol>-*.tiff or <mode>-<pol>.tiff)"
            )
        avail = tuple(p for p in POLARISATIONS if p in measurements)
        if pol is None:
            pol = "VV" if "VV" in avail else "HH" if "HH" in avail else avail[0]
        pol = pol.upper()
        if pol not in POLARISATIONS:
            raise InputError(f"unknown polarisation {pol!r}; choose one of {', '.join(POLARISATIONS)}")
        if pol not in measurements:
            raise InputError(f"{tree.name}: polarisation {pol} is not in this product (it has "
                             f"{', '.join(avail)}); choose one with --pol")  # fmt: skip
        meas = measurements[pol]
        stem = PurePosixPath(meas).name.rsplit(".", 1)[0]
        ann_rel, cal_rel, noise_rel = (f"annotation/{stem}.xml", f"annotation/calibration/calibration-{stem}.xml",
                                       f"annotation/calibration/noise-{stem}.xml")  # fmt: skip
        present = set(names)
        needed = ((ann_rel, "annotation"), (cal_rel, "calibration")) + (
            ((noise_rel, "noise"),) if noise else ()
        )
        for rel, what in needed:
            if rel not in present and not (isinstance(tree, _DirTree) and (tree.root / rel).is_file()):
                hint = " (--no-denoise reads the product without it)" if what == "noise" else ""
                raise InputError(f"{tree.name}: missing {what} XML {rel}{hint}")
        ann = _parse_xml(tree, ann_rel, "annotation")
        manifest = _parse_xml(tree, "manifest.safe", "manifest") if "manifest.safe" in present else None
        what = f"{tree.name}: {PurePosixPath(ann_rel).name}"
        ptype = _text(ann, "adsHeader/productType", what)
        if ptype.upper() != "GRD":
            raise InputError(f"{tree.name}: {ptype} product; only GRD (ground range detected) products are "
                             "supported")  # fmt: skip
        mode = _text(ann, "adsHeader/mode", what).upper()
        if mode not in SUPPORTED_MODES:
            raise InputError(
                f"{tree.name}: {_mode_label(mode)} mode; only IW and EW GRD products are supported"
            )
        try:
            lines = int(_text(ann, "imageAnnotation/imageInformation/numberOfLines", what))
            samples = int(_text(ann, "imageAnnotation/imageInformation/numberOfSamples", what))
            rs = float(_text(ann, "imageAnnotation/imageInformation/rangePixelSpacing", what))
            az = float(_text(ann, "imageAnnotation/imageInformation/azimuthPixelSpacing", what))
            orbit = int(_text(ann, "adsHeader/absoluteOrbitNumber", what))
        except ValueError as e:
            raise InputError(f"{what}: bad image information ({e})") from None
        self.grid = parse_geolocation_grid(ann, what)
        self.calibration = parse_calibration(_parse_xml(tree, cal_rel, "calibration"),
                                             f"{tree.name}: {PurePosixPath(cal_rel).name}")  # fmt: skip
        if noise:
            try:
                self.noise = parse_noise(
                    _parse_xml(tree, noise_rel, "noise"), f"{tree.name}: {PurePosixPath(noise_rel).name}"
                )
            except InputError as e:
                raise InputError(f"{e} (--no-denoise reads the product without it)") from None
        pass_dir = (_text(ann, "generalAnnotation/productInformation/pass", what, "")
                    or _manifest_value(manifest, "pass") or "").upper()  # fmt: skip
        res = safe.group("res").upper().strip("_") if safe else ""
        if not res and manifest is not None:
            rc = _manifest_value(manifest, "productClassDescription") or ""
            res = {"high": "H", "medium": "M", "full": "F"}.get(rc.split()[0].lower() if rc else "", "")
        self.meta = S1Metadata(
            name=tree.name, mission=_text(ann, "adsHeader/missionId", what), mode=mode, product_type="GRD",
            resolution=res, polarisations=avail, polarisation=pol,
            start_time=_utc(_text(ann, "adsHeader/startTime", what)),
            stop_time=_utc(_text(ann, "adsHeader/stopTime", what)),
            absolute_orbit=orbit, pass_direction=pass_dir, lines=lines, samples=samples,
            range_pixel_spacing=rs, azimuth_pixel_spacing=az, ipf_version=_ipf_version(manifest),
            footprint=self.grid.outer_ring(),
        )  # fmt: skip
        self.measurement = tree.gdal_path(meas)
        self._open_measurement()

    def _open_measurement(self) -> None:

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        try:
            with quiet(NotGeoreferencedWarning):
                self._ds = rasterio.open(self.measurement)
        except RasterioError as e:
            raise InputError(f"{self.meta.name}: cannot read the measurement TIFF ({e})") from None
        ds = self._ds
        if ds.count != 1 or np.dtype(ds.dtypes[0]) != np.uint16:
            raise InputError(f"{self.meta.name}: the measurement TIFF has {ds.count} band(s) of {ds.dtypes[0]}; "
                             "a GRD measurement is one uint16 band")  # fmt: skip
        if (ds.height, ds.width) != (self.meta.lines, self.meta.samples):
            raise InputError(f"{self.meta.name}: the measurement TIFF is {ds.height} x {ds.width} but the "
                             f"annotation says {self.meta.lines} x {self.meta.samples}")  # fmt: skip

    # -- properties ------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.meta.lines

    @property
    def width(self) -> int:
        return self.meta.samples

    @property
    def shape(self) -> tuple[int, int]:
        return self.meta.lines, self.meta.samples

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """(azimuth, range) metres."""
        return self.meta.azimuth_pixel_spacing, self.meta.range_pixel_spacing

    @property
    def gcps(self) -> list:
        from rasterio.control import GroundControlPoint

        g = self.grid
        return [GroundControlPoint(row=float(g.lines[i]), col=float(g.pixels[i]), x=float(g.lon[i]),
                                   y=float(g.lat[i]), z=float(g.height[i]), id=str(i + 1))
                for i in range(len(g.lines))]  # fmt: skip

    @property
    def crs(self):
        from rasterio.crs import CRS

        return CRS.from_epsg(4326)

    # -- reading ---------------------------------------------------------------------------------
    def _check_window(self, y0: int, y1: int, x0: int, x1: int) -> None:
        if not (0 <= y0 < y1 <= self.height and 0 <= x0 < x1 <= self.width):
            raise InputError(
                f"window rows {y0}:{y1}, cols {x0}:{x1} outside the {self.height} x {self.width} product"
            )

    def read_dn(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """uint16 digital numbers of rows y0..y1-1, columns x0..x1-1."""
        from rasterio.windows import Window

        self._check_window(y0, y1, x0, x1)
        if self._ds is None:
            raise InputError(f"{self.meta.name}: product is closed")
        return self._ds.read(1, window=Window(x0, y0, x1 - x0, y1 - y0))

    def calibrate(self, dn: np.ndarray, y0: int, x0: int, denoise: bool = True) -> np.ndarray:
        """DN of the window at (y0, x0) -> float32 linear sigma0 (NaN where DN == 0 and on :attr:`border`)."""
        h, w = dn.shape
        y1, x1 = y0 + h, x0 + w
        p = dn.astype(np.float32)
        p *= p
        if denoise:
            if self.noise is None:
                raise InputError(
                    f"{self.meta.name}: opened without its noise annotation; cannot remove noise"
                )
            p -= self.noise.window(y0, y1, x0, x1)
        a = self.calibration.window(y0, y1, x0, x1)
        a *= a
        p /= a
        if denoise:
            p[p <= 0] = np.float32(SIGMA0_FLOOR)
        p[dn == 0] = np.nan
        if self.border is not None and (m := self.border.mask(y0, y1, x0, x1)) is not None:
            p[m] = np.nan
        return p

    def read_sigma0(self, y0: int, y1: int, x0: int, x1: int, denoise: bool = True) -> np.ndarray:
        """float32 linear sigma0 of rows y0..y1-1, columns x0..x1-1 (NaN = no data: DN == 0, border noise).

        ``denoise``: subtract thermal noise; values <= 0 then become :data:`SIGMA0_FLOOR` (-35 dB).
        """
        return self.calibrate(self.read_dn(y0, y1, x0, x1), y0, x0, denoise=denoise)

    def iter_bands(self, height: int = 512, denoise: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """(y0, sigma0 band of ``height`` full-width rows), top to bottom."""
        for y0 in range(0, self.height, height):
            y1 = min(self.height, y0 + height)
            yield y0, self.read_sigma0(y0, y1, 0, self.width, denoise=denoise)

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None
        if isinstance(self._tree, _ZipTree):
            self._tree.close()

    def __enter__(self) -> S1Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.meta
        return f"S1Product({m.name!r}, {m.polarisation}, {m.lines} x {m.samples})"


def open_product(
    path: str | os.PathLike, pol: str | None = None, noise: bool = True, border_noise: str = "auto"
) -> S1Product:
    """Open a Sentinel-1 GRD product (SAFE folder, zip, manifest.safe or measurement TIFF); see the module
    doc. ``noise=False`` skips the noise annotation (for reads without noise removal). ``border_noise``:
    ``auto`` masks the no-value border of products processed before IPF 2.90 (:class:`~dakd_edge.data.border_noise.BorderNoiseMask`),
    ``mask`` of any product, ``keep`` never."""
    return S1Product(path, pol=pol, noise=noise, border_noise=border_noise)


# ---- fixtures: synthetic products from real (or generated) metadata ----------------------------
def _fmt_time(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="us"))


def _lines_str(a: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in a)


def _vals_str(a: np.ndarray) -> str:
    return " ".join(f"{v:.6e}" for v in a)


def write_minimal_safe(
    out_dir: str | os.PathLike,
    lines: int = 1024,
    samples: int = 1536,
    *,
    mission: str = "S1A",
    mode: str = "IW",
    product_type: str = "GRD",
    resolution: str = "H",
    pols: tuple[str, ...] = ("VV", "VH"),
    center: tuple[float, float] = (40.0, 25.0),
    heading_deg: float = -166.0,
    pixel_spacing: float | None = None,
    start: str = "2021-06-01T04:30:00.000000",
    orbit: int = 38000,
    ipf: str = "003.40",
    noise_level: float = 2400.0,
) -> Path:
    """Write a small self-consistent SAFE tree (XML only, no measurement TIFF) and return its path.

    Enough of the real layout for :func:`open_product`: manifest (IPF version, pass, footprint),
    product annotation (header, image information, a 10 x 21 geolocation grid around ``center`` (lat,
    lon) along ``heading_deg``, right-looking), calibration (sigmaNought/betaNought/gamma/dn vectors)
    and noise XML (range vectors + per-swath azimuth blocks for IPF >= 2.9, one ``noiseVectorList`` before).
    Longitudes are wrapped to [-180, 180), so a ``center`` near 180 gives an antimeridian product.
    """
    mode, product_type, resolution = mode.upper(), product_type.upper(), resolution.upper()
    if pixel_spacing is None:
        pixel_spacing = {"H": 10.0 if mode == "IW" else 25.0, "M": 40.0, "F": 10.0}.get(resolution, 10.0)
    t0 = np.datetime64(start)
    line_dt = pixel_spacing / 6800.0  # s per line (ground speed ~6.8 km/s)
    t1 = t0 + np.timedelta64(int(round((lines - 1) * line_dt * 1e6)), "us")
    st, sp = (str(t0.astype("datetime64[s]")).replace("-", "").replace(":", ""),
              str(t1.astype("datetime64[s]")).replace("-", "").replace(":", ""))  # fmt: skip
    take = 0x039993
    pol_code = ("DV" if "VH" in pols else "SV") if "VV" in pols else ("DH" if "HV" in pols else "SH")
    name = (
        f"{mission}_{mode}_{product_type}{resolution}_1S{pol_code}_{st}_{sp}_{orbit:06d}_{take:06X}_ABCD.SAFE"
    )
    root = Path(out_dir) / name
    (root / "annotation" / "calibration").mkdir(parents=True, exist_ok=True)
    (root / "measurement").mkdir(exist_ok=True)
    # Geolocation: a plane around the centre (lines along the heading, pixels to the right) laid on the
    # sphere of EARTH_M_PER_DEG_ metres per degree by the exact azimuthal equidistant map, so that it
    # stays right near and across the poles (to first order it is the tangent plane it replaced).
    lat0, lon0 = center
    hd = math.radians(heading_deg)
    along = np.array([math.cos(hd), math.sin(hd)])  # (north, east) unit vector
    right = np.array([math.cos(hd + math.pi / 2), math.sin(hd + math.pi / 2)])  # right-looking: heading + 90
    phi0 = math.radians(lat0)

    def geo(line: np.ndarray, pixel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dl = (line - (lines - 1) / 2) * pixel_spacing
        dp = (pixel - (samples - 1) / 2) * pixel_spacing
        north = dl * along[0] + dp * right[0]
        east = dl * along[1] + dp * right[1]
        d = np.radians(np.hypot(north, east) / EARTH_M_PER_DEG_)  # arc from the centre
        az = np.arctan2(east, north)
        sin_lat = np.clip(math.sin(phi0) * np.cos(d) + math.cos(phi0) * np.sin(d) * np.cos(az), -1.0, 1.0)
        lat = np.degrees(np.arcsin(sin_lat))
        dlon = np.arctan2(np.sin(az) * np.sin(d) * math.cos(phi0), np.cos(d) - math.sin(phi0) * sin_lat)
        return wrap_lon(lon0 + np.degrees(dlon)), lat

    gl = np.unique(np.linspace(0, lines - 1, 10).round().astype(np.int64))
    gp = np.unique(np.linspace(0, samples - 1, 21).round().astype(np.int64))
    GL, GP = np.meshgrid(gl, gp, indexing="ij")
    glon, glat = geo(GL.astype(float), GP.astype(float))
    n_sw = 3 if mode == "IW" else 5
    inc = 30.0 + 16.0 * GP / max(samples - 1, 1)
    pts = []
    for i in range(GL.size):
        li, pi = int(GL.flat[i]), int(GP.flat[i])
        t = _fmt_time(t0 + np.timedelta64(int(round(li * line_dt * 1e6)), "us"))
        pts.append(
            f"<geolocationGridPoint><azimuthTime>{t}</azimuthTime><slantRangeTime>{5.3e-3 + 1e-3 * pi / samples:.15e}"
            f"</slantRangeTime><line>{li}</line><pixel>{pi}</pixel><latitude>{glat.flat[i]:.15e}</latitude>"
            f"<longitude>{glon.flat[i]:.15e}</longitude><height>0</height><incidenceAngle>{inc.flat[i]:.15e}"
            f"</incidenceAngle><elevationAngle>{inc.flat[i] * 0.88:.15e}</elevationAngle></geolocationGridPoint>"
        )
    pass_dir = "Descending" if math.cos(hd) < 0 else "Ascending"
    vec_lines = np.unique(np.r_[np.arange(0, lines, max(1, lines // 6)), lines - 1]).astype(np.int64)
    step = 40 if samples > 400 else max(1, samples // 10)
    vpx = np.r_[np.arange(0, samples - 1, step), samples - 1].astype(np.int64)
    files = []
    for pol in pols:
        stem = (f"{mission.lower()}-{mode.lower()}-{product_type.lower()}-{pol.lower()}-{st.lower()}-{sp.lower()}-"
                f"{orbit:06d}-{take:06x}-001")  # fmt: skip
        files.append(stem)
        header = (f"<adsHeader><missionId>{mission}</missionId><productType>{product_type}</productType>"
                  f"<polarisation>{pol}</polarisation><mode>{mode}</mode><swath>{mode}</swath>"
                  f"<startTime>{_fmt_time(t0)}</startTime><stopTime>{_fmt_time(t1)}</stopTime>"
                  f"<absoluteOrbitNumber>{orbit}</absoluteOrbitNumber><missionDataTakeId>{take}</missionDataTakeId>"
                  "<imageNumber>001</imageNumber></adsHeader>")  # fmt: skip
        ann = (f'<?xml version="1.0" encoding="UTF-8"?>\n<product>{header}<generalAnnotation><productInformation>'
               f"<pass>{pass_dir}</pass><timelinessCategory>Fast-24h</timelinessCategory>"
               f"<platformHeading>{heading_deg}</platformHeading><projection>Ground Range</projection>"
               "</productInformation></generalAnnotation><imageAnnotation><imageInformation>"
               f"<productFirstLineUtcTime>{_fmt_time(t0)}</productFirstLineUtcTime>"
               f"<productLastLineUtcTime>{_fmt_time(t1)}</productLastLineUtcTime>"
               f"<rangePixelSpacing>{pixel_spacing:.6e}</rangePixelSpacing>"
               f"<azimuthPixelSpacing>{pixel_spacing:.6e}</azimuthPixelSpacing>"
               f"<azimuthTimeInterval>{line_dt:.15e}</azimuthTimeInterval>"
               f"<numberOfSamples>{samples}</numberOfSamples><numberOfLines>{lines}</numberOfLines>"
               "</imageInformation></imageAnnotation><geolocationGrid>"
               f'<geolocationGridPointList count="{len(pts)}">{"".join(pts)}</geolocationGridPointList>'
               "</geolocationGrid></product>\n")  # fmt: skip
        (root / "annotation" / f"{stem}.xml").write_text(ann)
        # Calibration: sigmaNought falls across range (incidence), drifts slightly along azimuth.
        x = vpx / max(samples - 1, 1)
        cv = []
        for li in vec_lines:
            t = _fmt_time(t0 + np.timedelta64(int(round(li * line_dt * 1e6)), "us"))
            s0 = 664.0 - 106.0 * x + 2.0 * li / max(lines - 1, 1)
            cv.append(f"<calibrationVector><azimuthTime>{t}</azimuthTime><line>{li}</line>"
                      f'<pixel count="{len(vpx)}">{_lines_str(vpx)}</pixel>'
                      f'<sigmaNought count="{len(vpx)}">{_vals_str(s0)}</sigmaNought>'
                      f'<betaNought count="{len(vpx)}">{_vals_str(np.full(len(vpx), 474.0))}</betaNought>'
                      f'<gamma count="{len(vpx)}">{_vals_str(s0 * 0.93)}</gamma>'
                      f'<dn count="{len(vpx)}">{_vals_str(np.full(len(vpx), 401.6))}</dn></calibrationVector>')  # fmt: skip
        cal = (f'<?xml version="1.0" encoding="UTF-8"?>\n<calibration>{header}<calibrationInformation>'
               "<absoluteCalibrationConstant>1.0</absoluteCalibrationConstant></calibrationInformation>"
               f'<calibrationVectorList count="{len(cv)}">{"".join(cv)}</calibrationVectorList></calibration>\n')  # fmt: skip
        (root / "annotation" / "calibration" / f"calibration-{stem}.xml").write_text(cal)
        # Noise: scalloped range profile per swath (noise vectors on their own, shifted pixel grid).
        npx = np.r_[0, np.arange(step // 2, samples - 1, step), samples - 1].astype(np.int64)
        bounds = np.linspace(0, samples, n_sw + 1).round().astype(np.int64)
        new_ipf = tuple(int(v) for v in ipf.split(".")[:2]) >= (2, 90) or ipf.startswith("003")
        rv = []
        tag_list, tag_vec, tag_lut = (("noiseRangeVectorList", "noiseRangeVector", "noiseRangeLut") if new_ipf
                                      else ("noiseVectorList", "noiseVector", "noiseLut"))  # fmt: skip
        for li in vec_lines:
            pos = np.searchsorted(bounds, npx, side="right") - 1
            frac = (npx - bounds[np.clip(pos, 0, n_sw - 1)]) / np.diff(bounds)[np.clip(pos, 0, n_sw - 1)]
            lut = noise_level * (0.85 + 0.3 * (2 * frac - 1) ** 2) * (1 + 0.05 * li / max(lines - 1, 1))
            t = _fmt_time(t0 + np.timedelta64(int(round(li * line_dt * 1e6)), "us"))
            rv.append(f"<{tag_vec}><azimuthTime>{t}</azimuthTime><line>{li}</line>"
                      f'<pixel count="{len(npx)}">{_lines_str(npx)}</pixel>'
                      f'<{tag_lut} count="{len(npx)}">{_vals_str(lut)}</{tag_lut}></{tag_vec}>')  # fmt: skip
        az = ""
        if new_ipf:
            blocks = []
            al = np.r_[np.arange(0, lines - 1, 10), lines - 1].astype(np.int64)
            for k in range(n_sw):
                lut = 1.0 + 0.05 * np.sin(al / 200.0 + k)
                blocks.append(f"<noiseAzimuthVector><swath>{mode}{k + 1}</swath><firstAzimuthLine>0</firstAzimuthLine>"
                              f"<firstRangeSample>{bounds[k]}</firstRangeSample><lastAzimuthLine>{lines - 1}"
                              f"</lastAzimuthLine><lastRangeSample>{bounds[k + 1] - 1}</lastRangeSample>"
                              f'<line count="{len(al)}">{_lines_str(al)}</line>'
                              f'<noiseAzimuthLut count="{len(al)}">{_vals_str(lut)}</noiseAzimuthLut>'
                              "</noiseAzimuthVector>")  # fmt: skip
            az = f'<noiseAzimuthVectorList count="{n_sw}">{"".join(blocks)}</noiseAzimuthVectorList>'
        noise = (f'<?xml version="1.0" encoding="UTF-8"?>\n<noise>{header}'
                 f'<{tag_list} count="{len(rv)}">{"".join(rv)}</{tag_list}>{az}</noise>\n')  # fmt: skip
        (root / "annotation" / "calibration" / f"noise-{stem}.xml").write_text(noise)
    corners = [(0, 0), (lines - 1, 0), (lines - 1, samples - 1), (0, samples - 1)]
    cl = [geo(np.array(float(a)), np.array(float(b))) for a, b in corners]
    coords = " ".join(f"{float(la):.6f},{float(lo):.6f}" for lo, la in cl)
    manifest = f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:safe="http://www.esa.int/safe/sentinel-1.0"
  xmlns:s1="http://www.esa.int/safe/sentinel-1.0/sentinel-1" xmlns:gml="http://www.opengis.net/gml" version="esa/safe/sentinel-1.0/sentinel-1/sar/level-1/standard">
  <metadataSection>
    <metadataObject ID="processing"><metadataWrap><xmlData>
      <safe:processing name="generation of a synthetic test product"><safe:facility name="dakd-edge">
        <safe:software name="Sentinel-1 IPF" version="{ipf}"/></safe:facility></safe:processing>
    </xmlData></metadataWrap></metadataObject>
    <metadataObject ID="generalProductInformation"><metadataWrap><xmlData>
      <s1sarl1:standAloneProductInformation xmlns:s1sarl1="http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1">
        <s1sarl1:productClass>S</s1sarl1:productClass>
        <s1sarl1:productClassDescription>SAR Standard L1 Product</s1sarl1:productClassDescription>
        <s1sarl1:transmitterReceiverPolarisation>{pols[0]}</s1sarl1:transmitterReceiverPolarisation>
        <s1sarl1:productType>{product_type}</s1sarl1:productType>
      </s1sarl1:standAloneProductInformation>
    </xmlData></metadataWrap></metadataObject>
    <metadataObject ID="measurementOrbitReference"><metadataWrap><xmlData>
      <safe:orbitReference><safe:orbitNumber type="start">{orbit}</safe:orbitNumber>
        <safe:extension><s1:orbitProperties><s1:pass>{pass_dir.upper()}</s1:pass></s1:orbitProperties></safe:extension>
      </safe:orbitReference>
    </xmlData></metadataWrap></metadataObject>
    <metadataObject ID="measurementFrameSet"><metadataWrap><xmlData>
      <safe:frameSet><safe:frame><safe:footPrint srsName="http://www.opengis.net/gml/srs/epsg.xml#4326">
        <gml:coordinates>{coords}</gml:coordinates></safe:footPrint></safe:frame></safe:frameSet>
    </xmlData></metadataWrap></metadataObject>
  </metadataSection>
</xfdu:XFDU>
"""
    (root / "manifest.safe").write_text(manifest)
    return root


def _shift_ints(text: str | None, delta: int) -> str:
    return " ".join(str(int(v) - delta) for v in (text or "").split())


def _crop_xml(src: Path, dst: Path, offset: tuple[int, int], shape: tuple[int, int]) -> None:
    """Copy a SAFE's XML into ``dst`` cropped to lines oy..oy+h-1, pixels ox..ox+w-1 (consistently)."""
    for f in sorted(src.rglob("*.xml")) + [src / "manifest.safe"]:
        if not f.is_file():
            continue
        rel = f.relative_to(src)
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if f.name == "manifest.safe" or rel.parts[:2] == ("annotation", "rfi"):
            shutil.copyfile(f, out)
            continue
        try:
            _crop_one(f, out, offset, shape)
        except ET.ParseError as e:
            raise InputError(f"{src.name}: corrupt XML {rel} ({e})") from None
        except (ValueError, TypeError, AttributeError) as e:  # a missing element or non-numeric text
            raise InputError(f"{src.name}: cannot crop {rel}: missing or non-numeric values ({e})") from None


def _crop_one(f: Path, out: Path, offset: tuple[int, int], shape: tuple[int, int]) -> None:
    """:func:`_crop_xml` of one annotation, calibration or noise XML file."""
    from dakd_edge.data.landmask import GCPGeoref

    oy, ox = offset
    h, w = shape
    tree = ET.parse(f)
    root = tree.getroot()
    if root.tag == "product":
        info = root.find("imageAnnotation/imageInformation")
        if info is not None:
            info.find("numberOfLines").text = str(h)  # type: ignore[union-attr]
            info.find("numberOfSamples").text = str(w)  # type: ignore[union-attr]
        glist = root.find("geolocationGrid/geolocationGridPointList")
        if glist is not None:
            grid = parse_geolocation_grid(root, str(f))
            from rasterio.control import GroundControlPoint

            geo = GCPGeoref([GroundControlPoint(row=r, col=c, x=x, y=y) for r, c, x, y in
                             zip(grid.lines, grid.pixels, grid.lon, grid.lat, strict=True)])  # fmt: skip
            old = list(glist)
            ol, op = grid.lines, grid.pixels
            # The original grid lines/pixels inside the crop are kept, so each new cell lies inside
            # one original cell and the bilinear geolocation is reproduced exactly.
            ul, up = np.unique(ol) - oy, np.unique(op) - ox
            nl = np.unique(
                np.r_[np.linspace(0, h - 1, min(10, h)).round(), ul[(ul > 0) & (ul < h - 1)]]
            ).astype(np.int64)
            npx = np.unique(
                np.r_[np.linspace(0, w - 1, min(21, w)).round(), up[(up > 0) & (up < w - 1)]]
            ).astype(np.int64)
            for e in old:
                glist.remove(e)
            for li in nl:
                for pi in npx:
                    k = int(np.argmin(np.abs(ol - (li + oy)) * 4 + np.abs(op - (pi + ox))))
                    e = ET.fromstring(ET.tostring(old[k]))
                    lon, lat = geo.lonlat(np.array([li + oy], float), np.array([pi + ox], float))
                    e.find("line").text = str(int(li))  # type: ignore[union-attr]
                    e.find("pixel").text = str(int(pi))  # type: ignore[union-attr]
                    e.find("latitude").text = f"{float(lat[0]):.15e}"  # type: ignore[union-attr]
                    e.find("longitude").text = f"{float(lon[0]):.15e}"  # type: ignore[union-attr]
                    glist.append(e)
            glist.set("count", str(len(nl) * len(npx)))
    for lst in ("calibrationVectorList", "noiseRangeVectorList", "noiseVectorList"):
        vl = root.find(lst)
        if vl is None:
            continue
        vecs = list(vl)
        lines = np.array([int(v.find("line").text) for v in vecs])  # type: ignore[union-attr]
        lo = max(0, int(np.searchsorted(lines, oy, side="right")) - 1)
        hi = min(len(vecs), int(np.searchsorted(lines, oy + h - 1, side="left")) + 1)
        for i, v in enumerate(vecs):
            if i < lo or i >= hi:
                vl.remove(v)
                continue
            v.find("line").text = str(int(v.find("line").text) - oy)  # type: ignore[union-attr]
            v.find("pixel").text = _shift_ints(v.find("pixel").text, ox)  # type: ignore[union-attr]
        vl.set("count", str(hi - lo))
    al = root.find("noiseAzimuthVectorList")
    if al is not None:
        kept = 0
        for b in list(al):
            fl, ll = int(b.find("firstAzimuthLine").text) - oy, int(b.find("lastAzimuthLine").text) - oy  # type: ignore[union-attr]
            fs, ls = int(b.find("firstRangeSample").text) - ox, int(b.find("lastRangeSample").text) - ox  # type: ignore[union-attr]
            if ll < 0 or fl > h - 1 or ls < 0 or fs > w - 1:
                al.remove(b)
                continue
            b.find("firstAzimuthLine").text = str(max(fl, 0))  # type: ignore[union-attr]
            b.find("lastAzimuthLine").text = str(min(ll, h - 1))  # type: ignore[union-attr]
            b.find("firstRangeSample").text = str(max(fs, 0))  # type: ignore[union-attr]
            b.find("lastRangeSample").text = str(min(ls, w - 1))  # type: ignore[union-attr]
            b.find("line").text = _shift_ints(b.find("line").text, oy)  # type: ignore[union-attr]
            kept += 1
        al.set("count", str(kept))
    tree.write(out, encoding="UTF-8", xml_declaration=True)


@dataclass
class SyntheticProduct:
    """What :func:`build_synthetic_product` wrote; ``layout.render(y0, x0, h, w, "linear")`` gives the
    true (VV) sigma0 of any window (the product's pixel grid is the layout's)."""

    path: Path  # the .SAFE folder
    shape: tuple[int, int]
    pols: tuple[str, ...]
    layout: object  # dakd_edge.data.synthetic.SceneLayout
    cross_pol_db: float
    nodata_cols: tuple[int, int]
    zip_path: Path | None = None
    border_noise: tuple[int, int] = (0, 0)


# Smaller products have degenerate LUTs or geolocation grids (fewer than two vector pixels or grid lines).
MIN_PRODUCT_SIDE = 32


def _measurement_profile(h: int, w: int) -> dict:
    """A GRD measurement TIFF as ESA writes it: one uint16 band in strips (here zstd-compressed)."""
    return gtiff_profile(h, w, "uint16", block=None, compress="zstd")


def build_synthetic_product(
    out_dir: str | os.PathLike,
    source: str | os.PathLike | None = None,
    shape: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
    seed: int = 0,
    cfg=None,
    pols: tuple[str, ...] | None = None,
    cross_pol_db: float = -7.0,
    nodata_cols: tuple[int, int] = (0, 0),
    border_noise: tuple[int, int] = (0, 0),
    band_rows: int = 128,
    make_zip: bool = False,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    product_pols: tuple[str, ...] | None = None,
    **minimal: object,
) -> SyntheticProduct:
    """Write a SAFE product with synthetic pixels and real (or generated) metadata under ``out_dir``.

    ``source``: a real SAFE folder whose XML is copied (cropped to ``shape`` at ``offset`` (line, pixel)
    when given: numberOfLines/Samples, a regenerated geolocation grid (10 x 21 points plus the original
    grid lines inside the crop, so the bilinear geolocation is reproduced exactly), calibration and noise vectors and azimuth blocks shifted and clipped); ``None`` writes a
    small generated SAFE (:func:`write_minimal_safe`, ``shape`` default 1024 x 1536, ``**minimal`` passed
    on; ``product_pols`` are its polarisations (its name's ``1SDV``/``1SSH``..., its XML), by default
    the dual-pol pair of ``pols``: HH+HV when ``pols`` names HH or HV, else VV+VH, so that ``pols`` may
    leave one out as a partial copy does). ``pols`` are the measurement TIFFs written (default: all
    of the product's). Each measurement TIFF (uint16, zstd strips like ESA's, with the grid as GCPs) holds a
    :mod:`dakd_edge.data.synthetic` scene (``seed``, ``cfg``) of linear sigma0 converted through the
    product's own LUTs: ``DN = round(sqrt(sigma0 * A^2 + noise))`` clipped to 1..65535 (cross-pol bands
    ``cross_pol_db`` darker), written ``band_rows`` full rows at a time (memory: one band). DN = 0 in
    the first/last ``nodata_cols`` columns mimics GRD no-data borders. ``border_noise`` (near, far)
    mimics the border noise of products processed before IPF 2.90 inside them: about that many columns
    (varying along azimuth, with steps) of low, non-zero DNs whose power is a tenth of the thermal noise
    (:func:`_border_noise_dn`). ``make_zip`` also writes
    ``<name>.zip`` beside it (:func:`zip_product`).

    Arguments are checked before anything is written. The product (and zip) is built in a hidden
    staging folder in ``out_dir`` and renamed into place at the end, so an error or an interrupt leaves
    nothing under the final names (and no ``out_dir`` this call created). An existing ``NAME.SAFE`` or
    ``NAME.zip`` is refused unless ``overwrite``.
    """
    from dakd_edge.atomic import (
        check_room,
        clean_stale,
        make_dirs,
        remove_made_dirs,
        remove_temp,
        temp_path,
        write_failure,
    )
    from dakd_edge.data.synthetic import SceneConfig, build_layout

    out_dir = Path(out_dir)
    src: Path | None = None
    if source is None:
        h, w = shape or (1024, 1536)
        if offset != (0, 0):
            raise InputError("offset applies to a cropped real product (source=...)")
        if product_pols is None:
            product_pols = ("HH", "HV") if {q.upper() for q in pols or ()} & {"HH", "HV"} else ("VV", "VH")
        minimal["pols"] = tuple(q.upper() for q in product_pols)
    else:
        if product_pols is not None:
            raise InputError("product_pols applies to a generated product (source=None)")
        src = Path(source)
        if not (src / "manifest.safe").is_file():
            raise InputError(f"{src}: not a SAFE folder (no manifest.safe)")
        if (out_dir / src.name).resolve() == src.resolve():
            raise InputError("out_dir must differ from the source product's folder")
        ann = next(iter(sorted((src / "annotation").glob("s1*.xml"))), None)
        if ann is None:
            raise InputError(f"{src}: no annotation XML")
        info = ET.parse(ann).getroot().find("imageAnnotation/imageInformation")
        H, W = int(info.find("numberOfLines").text), int(info.find("numberOfSamples").text)  # type: ignore[union-attr]
        h, w = shape or (H, W)
        oy, ox = offset
        if not (0 <= oy and 0 <= ox and oy + h <= H and ox + w <= W and h > 0 and w > 0):
            raise InputError(f"crop {h} x {w} at {offset} does not fit the {H} x {W} product")
    if min(h, w) < MIN_PRODUCT_SIDE:
        raise InputError(
            f"product size {h} x {w} is too small (minimum {MIN_PRODUCT_SIDE} x {MIN_PRODUCT_SIDE})"
        )
    layout = build_layout(cfg or SceneConfig(), seed, h, w)  # checks the seed as well
    if src is not None:
        _check_product_outputs(out_dir, src.name, make_zip, overwrite)
    # uint16 DNs that zstd about halves, per polarisation (at least one), and again in the zip
    need = h * w * (len(pols) if pols else 1) * (1 + make_zip)
    check_room(out_dir, need, f"a product in {out_dir}")  # names the folder, not the staging one
    made = make_dirs(out_dir)
    clean_stale(out_dir / _STAGE)  # staging folders of killed runs
    stage = temp_path(out_dir / _STAGE)
    target = out_dir / (src.name if src is not None else "PRODUCT.SAFE")  # for messages
    try:
        stage.mkdir()
        if src is None:
            safe = write_minimal_safe(stage, h, w, **minimal)  # type: ignore[arg-type]
            target = out_dir / safe.name
            _check_product_outputs(out_dir, safe.name, make_zip, overwrite)  # named by the XML writer
        else:
            safe = stage / src.name
            if (h, w) == (H, W):
                for f in [*src.rglob("*.xml"), src / "manifest.safe"]:
                    if f.is_file():
                        d = safe / f.relative_to(src)
                        d.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(f, d)
            else:
                _crop_xml(src, safe, offset, (h, w))
            (safe / "measurement").mkdir(parents=True, exist_ok=True)
        import rasterio  # noqa: F401  (loads GDAL's libtiff, whose own error lines are collected below)

        with LibtiffErrors() as tiff:
            pols = _write_measurements(
                safe, layout, pols, cross_pol_db, nodata_cols, border_noise, band_rows, progress
            )
        if (err := tiff.error()) is not None:  # a strip GDAL flushed at close and did not fail: cut short
            raise err
        staged = [(safe, out_dir / safe.name)]
        if make_zip:
            target = out_dir / safe.with_suffix(".zip").name
            staged.append((zip_product(safe), target))
        _commit_product(staged, stage, overwrite)
    except BaseException as e:  # interrupts too: nothing under the final names, no folder this call made
        message = write_failure(e, target)  # before removal: a full disk is still full then
        remove_temp(stage)
        remove_made_dirs(out_dir, made)
        if message is not None:  # rasterio said only "Write failed. See previous exception ..."
            raise OutputError(message) from None
        raise
    remove_temp(stage)  # now holds only the replaced product, if any
    final = out_dir / safe.name
    prod = SyntheticProduct(final, (h, w), pols, layout, cross_pol_db, nodata_cols, border_noise=border_noise)
    if make_zip:
        prod.zip_path = final.with_suffix(".zip")
    return prod


def _write_measurements(
    safe: Path,
    layout,
    pols: tuple[str, ...] | None,
    cross_pol_db: float,
    nodata_cols: tuple[int, int],
    border_noise: tuple[int, int],
    band_rows: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[str, ...]:
    """The measurement TIFFs of ``safe`` (see :func:`build_synthetic_product`); returns the polarisations."""

    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS
    from rasterio.errors import NotGeoreferencedWarning

    h, w = layout.height, layout.width
    matches = ((f.name[:-4], _match_file(f.name)) for f in sorted((safe / "annotation").glob("*.xml")))
    avail = {m.group("pol").upper(): stem for stem, m in matches if m and not m.group("kind")}
    pols = tuple(p.upper() for p in (pols or tuple(avail)))
    missing = [p for p in pols if p not in avail]
    if missing:
        raise InputError(f"{safe.name}: no annotation for polarisation(s) {', '.join(missing)}")
    total, done = h * len(pols), 0
    for pol in pols:
        stem = avail[pol]
        tree = _DirTree(safe)
        cal = parse_calibration(
            _parse_xml(tree, f"annotation/calibration/calibration-{stem}.xml", "calibration")
        )
        noise = parse_noise(_parse_xml(tree, f"annotation/calibration/noise-{stem}.xml", "noise"))
        grid = parse_geolocation_grid(_parse_xml(tree, f"annotation/{stem}.xml", "annotation"), stem)
        gcps = [GroundControlPoint(row=float(a), col=float(b), x=float(c), y=float(d), z=float(e))
                for a, b, c, d, e in zip(grid.lines, grid.pixels, grid.lon, grid.lat, np.nan_to_num(grid.height),
                                         strict=True)]  # fmt: skip
        factor = np.float32(1.0 if pol in ("VV", "HH") else 10.0 ** (cross_pol_db / 10.0))
        path = safe / "measurement" / f"{stem}.tiff"
        with quiet(NotGeoreferencedWarning):
            dst = rasterio.open(path, "w", **_measurement_profile(h, w))
        with rasterio.Env(GDAL_CACHEMAX=64), dst:
            dst.gcps = (gcps, CRS.from_epsg(4326))
            for y0 in range(0, h, band_rows):
                y1 = min(h, y0 + band_rows)
                sig, _ = layout.render(y0, 0, y1 - y0, w, output="linear")
                sig *= factor
                a = cal.window(y0, y1, 0, w)
                dn2 = sig * a * a + noise.window(y0, y1, 0, w)
                dn = np.clip(np.rint(np.sqrt(dn2)), 1, 65535).astype(np.uint16)
                if any(border_noise):
                    _border_noise_dn(dn, noise.window(y0, y1, 0, w), y0, border_noise)
                if nodata_cols[0]:
                    dn[:, : nodata_cols[0]] = 0
                if nodata_cols[1]:
                    dn[:, w - nodata_cols[1] :] = 0
                dst.write(dn, 1, window=rasterio.windows.Window(0, y0, w, y1 - y0))
                done += y1 - y0
                if progress is not None:
                    progress(done, total)
    return pols


def _border_noise_dn(dn: np.ndarray, noise: np.ndarray, y0: int, widths: tuple[int, int]) -> None:
    """Overwrite the near/far-range border of the band ``dn`` (rows from ``y0``) with pre-IPF-2.90 border
    noise: low DNs (power ~Exp(0.1 x thermal noise) per pixel, a few brighter streaks) over a width that
    wanders +-15 % along azimuth and steps every 700 lines, as sampling-window changes make it."""
    h, w = dn.shape
    rows = np.arange(y0, y0 + h, dtype=np.float64)
    rng = np.random.default_rng(y0 + 7)
    power = noise * rng.exponential(0.1, size=dn.shape).astype(np.float32)
    power[rng.random(dn.shape) < 0.01] *= 20.0  # streaks: isolated pixels above the noise
    for side, base in enumerate(widths):
        if base <= 0:
            continue
        step = 1.0 + 0.1 * ((rows // 700 + side) % 3 - 1)
        cut = np.clip(np.rint(base * step * (1 + 0.05 * np.sin(rows / 97.0 + side))), 0, w).astype(np.int64)
        cols = np.arange(w)[None, :]
        inside = cols < cut[:, None] if side == 0 else cols >= (w - cut)[:, None]
        dn[inside] = np.clip(np.rint(np.sqrt(power[inside])), 1, 65535).astype(np.uint16)


_STAGE = "synth-product"  # staging folders: out_dir/.synth-product.dakd-<pid>-<token>.tmp


def _check_product_outputs(out_dir: Path, name: str, make_zip: bool, overwrite: bool) -> None:
    """Refuse an existing ``NAME.SAFE`` (or ``NAME.zip``) without ``overwrite``, and outputs that
    ``overwrite`` must not replace (a file named like the SAFE folder, a folder or device as the zip)."""
    from dakd_edge.atomic import check_regular, probe_writable
    from dakd_edge.errors import OutputError

    safe = out_dir / name
    outs = [safe, safe.with_suffix(".zip")] if make_zip else [safe]
    if make_zip:
        check_regular(outs[1])
    for p in outs:
        if (p.exists() or p.is_symlink()) and not overwrite:
            raise OutputError(f"output exists: {p} (pass --overwrite to replace it)")
    if safe.exists() and not safe.is_dir():
        raise OutputError(f"output {safe} exists and is not a folder")
    if out_dir.is_dir():
        probe_writable(out_dir)


def _commit_product(staged: list[tuple[Path, Path]], stage: Path, overwrite: bool) -> None:
    """Rename each staged output onto its final name; an existing one (``overwrite``) first moves into
    ``stage``, removed with it. A failed rename undoes the earlier ones (all or nothing)."""
    import contextlib

    from dakd_edge.atomic import describe_write_error
    from dakd_edge.errors import OutputError

    done: list[tuple[Path, Path]] = []
    final = staged[0][1]
    try:
        for tmp, final in staged:
            if final.exists() or final.is_symlink():
                if not overwrite:  # appeared while this run was writing
                    raise OutputError(f"output exists: {final} (pass --overwrite to replace it)")
                old = stage / f"replaced-{final.name}"
                os.replace(final, old)
                done.append((final, old))
            os.replace(tmp, final)
            done.append((tmp, final))
    except BaseException as e:
        for a, b in reversed(done):
            with contextlib.suppress(OSError):
                os.replace(b, a)
        if isinstance(e, OSError):
            raise OutputError(describe_write_error(e, final)) from None
        raise


def zip_product(safe: str | os.PathLike, zip_path: str | os.PathLike | None = None) -> Path:
    """Zip a SAFE folder the way ESA distributes it (``NAME.SAFE/...`` inside ``NAME.zip``); TIFFs are
    stored (already compressed), XML deflated. Written to a hidden temporary renamed at the end."""
    from dakd_edge.atomic import clean_stale, remove_temp, temp_path

    safe = Path(safe)
    zp = Path(zip_path) if zip_path is not None else safe.with_suffix(".zip")
    clean_stale(zp)
    tmp = temp_path(zp, "part")
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            for f in sorted(safe.rglob("*")):
                if f.is_file():
                    arc = f"{safe.name}/{f.relative_to(safe).as_posix()}"
                    ctype = (
                        zipfile.ZIP_STORED if f.suffix.lower() in (".tif", ".tiff") else zipfile.ZIP_DEFLATED
                    )
                    z.write(f, arc, compress_type=ctype)
        os.replace(tmp, zp)
    finally:
        remove_temp(tmp)  # after the rename this only forgets it
    return zp
