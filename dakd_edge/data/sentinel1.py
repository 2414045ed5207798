"""Sentinel-1 GRD products: open a SAFE folder / zip / manifest / measurement TIFF, calibrate to sigma0.

Reading (:func:`open_product` -> :class:`S1Product`):

- inputs: a ``.SAFE`` folder, a ``.zip`` of one, its ``manifest.safe``, or one measurement TIFF inside a
  SAFE tree (``measurement/s1b-iw-grd-vv-...tiff``; its annotation, calibration and noise XML are found
  by name). :func:`is_sentinel1_product` recognises these paths cheaply (names and the zip's directory).
- IW and EW GRD, high and medium resolution (``GRDH``/``GRDM``; full resolution ``GRDF`` too). SLC and
  every other product type, a missing polarisation, missing or corrupt XML: one-line
  :class:`~dakd_edge.errors.InputError`.
- polarisation: VV by default, HH for HH/HV products (``pol=`` to choose).

Calibration (:meth:`S1Product.read_sigma0`), windowed, no scene-sized array:

    sigma0 = (DN^2 - noise) / A^2,   noise = range_noise(line, pixel) * azimuth_noise(line, pixel)

``A`` is the ``sigmaNought`` LUT of ``annotation/calibration/calibration-*.xml``, ``range_noise`` the
``noiseRangeLut`` vectors of ``noise-*.xml`` (``noiseLut`` before IPF 2.9) and ``azimuth_noise`` the
``noiseAzimuthVector`` blocks (IPF >= 2.9; 1 where absent). Every LUT is interpolated bilinearly over
(line, pixel) for the requested window only: each vector that brackets the window's lines is
interpolated linearly along its own pixels at the window's columns (``np.interp``; vectors may have
different pixel lists, as noise vectors do), then linearly along lines between the two vectors around
each row; the azimuth LUTs are linear along lines within their (line, sample) block. Outside the first /
last vector the nearest one is used (no extrapolation). This is the interpolation of ESA's SNAP and of
xarray-sentinel (which uses the same bilinear scheme on the same LUT grid); we implement it ourselves
because it is ~60 lines of numpy, is windowed (xarray-sentinel interpolates whole LUT arrays through
xarray/pandas), and keeps the torch-free runtime free of xarray. It is tested against an independent
pointwise implementation.

Values <= 0 after noise removal (thermal noise above the signal) become the -35 dB floor
(:data:`SIGMA0_FLOOR`), never NaN. ``DN == 0`` is the no-data border of GRD products: **read_sigma0
returns NaN there** (so ``np.isfinite(s)`` is the valid mask; the segment pipeline masks NaN). Pixel /
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
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from dakd_edge.errors import InputError

SIGMA0_FLOOR = float(10.0 ** (-35.0 / 10.0))  # -35 dB: noise-removed values <= 0 become this
POLARISATIONS = ("VV", "VH", "HH", "HV")
SUPPORTED_MODES = ("IW", "EW")

_SAFE_RE = re.compile(
    r"^(?P<mission>S1[A-D])_(?P<mode>IW|EW|SM|S[1-6]|WV)_(?P<ptype>GRD|SLC|RAW|OCN|ETA)(?P<res>[FHM_])_"
    r"(?P<level>\d)(?P<cls>[SA])(?P<pols>SH|SV|DH|DV|HH|HV|VV|VH)_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_"
    r"(?P<orbit>\d{6})_(?P<take>[0-9A-F]{6})_(?P<crc>[0-9A-F]{4})",
    re.IGNORECASE,
)
_FILE_RE = re.compile(
    r"^(?:(?P<kind>calibration|noise|rfi)-)?(?P<mission>s1[a-d])-(?P<swath>iw\d?|ew\d?|s[1-6]|wv\d?)-"
    r"(?P<ptype>grd|slc)-(?P<pol>hh|hv|vv|vh)-(?P<start>\d{8}t\d{6})-(?P<stop>\d{8}t\d{6})-(?P<orbit>\d{6})-"
    r"(?P<take>[0-9a-f]{6})-(?P<num>\d{3})\.(?P<ext>tiff?|xml)$",
    re.IGNORECASE,
)


# ---- recognising inputs ------------------------------------------------------------------------
def _zip_safe_root(names: list[str]) -> str | None:
    for n in names:
        parts = PurePosixPath(n).parts
        if len(parts) >= 2 and parts[-1].lower() == "manifest.safe":
            return "/".join(parts[:-1])
        if len(parts) == 1 and parts[0].lower() == "manifest.safe":
            return ""
    return None


def is_sentinel1_product(path: str | os.PathLike) -> bool:
    """True when ``path`` is a Sentinel-1 SAFE folder, a zip of one, its manifest.safe, or a measurement
    TIFF inside a SAFE tree. Cheap: file names and the zip's central directory, no XML parsing."""
    p = Path(path)
    try:
        if p.is_dir():
            return (p / "manifest.safe").is_file() or (
                p.suffix.lower() == ".safe" and (p / "annotation").is_dir()
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
                return _zip_safe_root(z.namelist()) is not None
        if name.endswith((".tif", ".tiff")):
            m = _FILE_RE.match(p.name)
            return bool(m and not m.group("kind") and p.parent.name.lower() == "measurement"
                        and (p.parent.parent / "annotation").is_dir())  # fmt: skip
    except OSError:
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
        root = _zip_safe_root(all_names)
        if root is None:
            self.zf.close()
            raise InputError(f"{path}: the zip holds no Sentinel-1 SAFE (no manifest.safe inside)")
        self.prefix = f"{root}/" if root else ""
        self.name = PurePosixPath(root).name if root else path.stem
        self._names = [n[len(self.prefix):] for n in all_names
                       if n.startswith(self.prefix) and not n.endswith("/")]  # fmt: skip

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, rel: str) -> bytes:
        return self.zf.read(self.prefix + rel)

    def gdal_path(self, rel: str) -> str:
        return f"/vsizip/{self.path.resolve()}/{self.prefix}{rel}"

    def close(self) -> None:
        self.zf.close()


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
        vec = np.stack([np.interp(cols, self.pixels[i], self.values[i]) for i in range(k0, k1 + 1)])
        vec = vec.astype(np.float32)
        kk = k - k0
        a = vec[kk]
        a *= (1.0 - t)[:, None]
        b = vec[kk + 1]
        b *= t[:, None]
        a += b
        return a

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

    def __init__(self, rng: VectorLUT, blocks: list[AzimuthBlock]) -> None:
        self.range = rng
        self.blocks = blocks

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
        az = self.azimuth_window(y0, y1, x0, x1)
        if az is not None:
            n *= az
        return n

    def point(self, line: float, pixel: float) -> float:
        v = self.range.point(line, pixel)
        for b in self.blocks:
            if b.first_line <= line <= b.last_line and b.first_sample <= pixel <= b.last_sample:
                return v * float(np.interp(line, b.lines, b.lut))
        return v


def parse_calibration(root: ET.Element, what: str = "calibration", lut: str = "sigmaNought") -> VectorLUT:
    vecs = root.findall("calibrationVectorList/calibrationVector")
    if not vecs:
        raise InputError(f"{what}: no <calibrationVector>")
    lines, pixels, values = [], [], []
    for v in vecs:
        lines.append(float(_text(v, "line", what)))
        pixels.append(_floats(v.find("pixel"), what))
        values.append(_floats(v.find(lut), f"{what} {lut}"))
    return VectorLUT(np.array(lines), pixels, values, f"{what} {lut}")


def parse_noise(root: ET.Element, what: str = "noise") -> NoiseLUT:
    vecs = root.findall("noiseRangeVectorList/noiseRangeVector")
    tag = "noiseRangeLut"
    if not vecs:  # IPF < 2.9: one range LUT, no azimuth vectors
        vecs, tag = root.findall("noiseVectorList/noiseVector"), "noiseLut"
    if not vecs:
        raise InputError(f"{what}: no <noiseRangeVector> or <noiseVector>")
    lines, pixels, values = [], [], []
    for v in vecs:
        lines.append(float(_text(v, "line", what)))
        pixels.append(_floats(v.find("pixel"), what))
        values.append(_floats(v.find(tag), f"{what} {tag}"))
    blocks = []
    for b in root.findall("noiseAzimuthVectorList/noiseAzimuthVector"):
        blines = _floats(b.find("line"), what)
        lut = _floats(b.find("noiseAzimuthLut"), f"{what} noiseAzimuthLut")
        if blines.shape != lut.shape:
            raise InputError(f"{what}: noiseAzimuthVector has {blines.size} lines but {lut.size} values")
        blocks.append(AzimuthBlock(
            _text(b, "swath", what, ""), int(_text(b, "firstAzimuthLine", what)),
            int(_text(b, "lastAzimuthLine", what)), int(_text(b, "firstRangeSample", what)),
            int(_text(b, "lastRangeSample", what)), blines, lut,
        ))  # fmt: skip
    return NoiseLUT(VectorLUT(np.array(lines), pixels, values, f"{what} {tag}"), blocks)


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
        d = asdict(self)
        d["polarisations"] = list(self.polarisations)
        d["footprint"] = [list(p) for p in self.footprint]
        return d

    def footprint_wkt(self) -> str:
        return "POLYGON ((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in self.footprint) + "))"


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
def _locate(path: Path) -> tuple[_Tree, str | None]:
    """(tree, measurement file name when the input was one measurement TIFF)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "annotation").is_dir():
            raise InputError(f"{path}: not a Sentinel-1 SAFE folder (no annotation/ folder)")
        return _DirTree(path), None
    name = path.name.lower()
    if name == "manifest.safe":
        return _DirTree(path.resolve().parent), None
    if name.endswith(".zip"):
        return _ZipTree(path), None
    if name.endswith((".tif", ".tiff")):
        m = _FILE_RE.match(path.name)
        root = path.resolve().parent.parent
        if not m or m.group("kind") or not (root / "annotation").is_dir():
            raise InputError(f"{path}: not a measurement TIFF inside a Sentinel-1 SAFE tree "
                             "(expected SAFE/measurement/s1?-<mode>-grd-<pol>-...tiff next to annotation/)")  # fmt: skip
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
    ``height``/``width``, ``calibration`` (sigmaNought :class:`VectorLUT`), ``noise`` (:class:`NoiseLUT`),
    ``measurement`` (GDAL path of the TIFF). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, pol: str | None = None) -> None:
        self.path = Path(path)
        self._tree, tiff_name = _locate(self.path)
        self._ds = None
        try:
            self._open(pol, tiff_name)
        except Exception:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, pol: str | None, tiff_name: str | None) -> None:
        tree = self._tree
        names = tree.names()
        safe = _SAFE_RE.match(tree.name)
        if safe and safe.group("ptype").upper() != "GRD":
            raise InputError(f"{tree.name}: {safe.group('ptype').upper()} product; only GRD (ground range "
                             "detected) products are supported")  # fmt: skip
        if safe and safe.group("mode").upper() not in SUPPORTED_MODES:
            raise InputError(f"{tree.name}: {safe.group('mode').upper()} mode; only IW and EW GRD products "
                             "are supported")  # fmt: skip
        measurements: dict[str, str] = {}
        for n in names:
            parts = n.split("/")
            m = _FILE_RE.match(parts[-1])
            if len(parts) == 2 and parts[0] == "measurement" and m and not m.group("kind"):
                if m.group("ptype").lower() != "grd":
                    raise InputError(f"{tree.name}: {m.group('ptype').upper()} measurement {parts[-1]}; only "
                                     "GRD products are supported")  # fmt: skip
                measurements.setdefault(m.group("pol").upper(), n)
        if tiff_name is not None:
            m = _FILE_RE.match(tiff_name)
            assert m is not None
            if m.group("ptype").lower() != "grd":
                raise InputError(f"{tiff_name}: SLC measurement; only GRD products are supported")
            own = m.group("pol").upper()
            measurements[own] = f"measurement/{tiff_name}"
            pol = pol or own
        if not measurements:
            raise InputError(f"{tree.name}: no measurement TIFF (measurement/s1?-*-grd-<pol>-*.tiff)")
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
        for rel, what in ((ann_rel, "annotation"), (cal_rel, "calibration"), (noise_rel, "noise")):
            if rel not in present and not (isinstance(tree, _DirTree) and (tree.root / rel).is_file()):
                raise InputError(f"{tree.name}: missing {what} XML {rel}")
        ann = _parse_xml(tree, ann_rel, "annotation")
        manifest = _parse_xml(tree, "manifest.safe", "manifest") if "manifest.safe" in present else None
        what = f"{tree.name}: {PurePosixPath(ann_rel).name}"
        ptype = _text(ann, "adsHeader/productType", what)
        if ptype.upper() != "GRD":
            raise InputError(f"{tree.name}: {ptype} product; only GRD (ground range detected) products are "
                             "supported")  # fmt: skip
        mode = _text(ann, "adsHeader/mode", what).upper()
        if mode not in SUPPORTED_MODES:
            raise InputError(f"{tree.name}: {mode} mode; only IW and EW GRD products are supported")
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
        self.noise = parse_noise(_parse_xml(tree, noise_rel, "noise"), f"{tree.name}: {PurePosixPath(noise_rel).name}")
        pass_dir = (_text(ann, "generalAnnotation/productInformation/pass", what, "")
                    or _manifest_value(manifest, "pass") or "").upper()  # fmt: skip
        res = safe.group("res").upper().strip("_") if safe else ""
        if not res and manifest is not None:
            rc = _manifest_value(manifest, "productClassDescription") or ""
            res = {"high": "H", "medium": "M", "full": "F"}.get(rc.split()[0].lower() if rc else "", "")
        self.meta = S1Metadata(
            name=tree.name, mission=_text(ann, "adsHeader/missionId", what), mode=mode, product_type="GRD",
            resolution=res, polarisations=avail, polarisation=pol,
            start_time=_text(ann, "adsHeader/startTime", what), stop_time=_text(ann, "adsHeader/stopTime", what),
            absolute_orbit=orbit, pass_direction=pass_dir, lines=lines, samples=samples,
            range_pixel_spacing=rs, azimuth_pixel_spacing=az, ipf_version=_ipf_version(manifest),
            footprint=self.grid.outer_ring(),
        )  # fmt: skip
        self.measurement = tree.gdal_path(meas)
        self._open_measurement()

    def _open_measurement(self) -> None:
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
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
            raise InputError(f"window rows {y0}:{y1}, cols {x0}:{x1} outside the {self.height} x {self.width} product")

    def read_dn(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """uint16 digital numbers of rows y0..y1-1, columns x0..x1-1."""
        from rasterio.windows import Window

        self._check_window(y0, y1, x0, x1)
        if self._ds is None:
            raise InputError(f"{self.meta.name}: product is closed")
        return self._ds.read(1, window=Window(x0, y0, x1 - x0, y1 - y0))

    def calibrate(self, dn: np.ndarray, y0: int, x0: int, denoise: bool = True) -> np.ndarray:
        """DN of the window at (y0, x0) -> float32 linear sigma0 (NaN where DN == 0)."""
        h, w = dn.shape
        y1, x1 = y0 + h, x0 + w
        p = dn.astype(np.float32)
        p *= p
        if denoise:
            p -= self.noise.window(y0, y1, x0, x1)
        a = self.calibration.window(y0, y1, x0, x1)
        a *= a
        p /= a
        if denoise:
            p[p <= 0] = np.float32(SIGMA0_FLOOR)
        p[dn == 0] = np.nan
        return p

    def read_sigma0(self, y0: int, y1: int, x0: int, x1: int, denoise: bool = True) -> np.ndarray:
        """float32 linear sigma0 of rows y0..y1-1, columns x0..x1-1 (NaN = no data, where DN == 0).

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


def open_product(path: str | os.PathLike, pol: str | None = None) -> S1Product:
    """Open a Sentinel-1 GRD product (SAFE folder, zip, manifest.safe or measurement TIFF); see the module doc."""
    return S1Product(path, pol=pol)
