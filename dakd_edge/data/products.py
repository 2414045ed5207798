"""What the file names of SAR products other than ESA's Sentinel-1 SAFE (:mod:`dakd_edge.data.sentinel1`)
say: the provider, which file is the backscatter image and which an auxiliary layer, the values' scale,
the acquisition time and the platform. One module, so ``segment`` (scale, refusals), ``info`` and
``batch`` (what a folder walk counts as scenes, the layer's time columns) read a name alike.

- ASF HyP3 RTC (https://hyp3-docs.asf.alaska.edu, "RTC product guide"):
  ``S1A_IW_20230105T050102_DVP_RTC30_G_gpuned_ABCD_VV.tif``; the letter after gamma0 / sigma0 (g / s)
  is the scale: p power, a amplitude, d dB.
- NASA/JPL OPERA RTC-S1 (OPERA product specification): ``OPERA_L2_RTC-S1_T069-147170-IW1_
  20231004T011211Z_20231004T061915Z_S1A_30_v1.0_VV.tif``, gamma0 power; ``..._mask.tif`` (layover /
  shadow), the ``.h5`` metadata and ``OPERA_L2_RTC-S1-STATIC_...`` layers (incidence angle, number of
  looks, ...) are no backscatter.
- JAXA PALSAR / PALSAR-2 level 1.5 and 2.1 image files: ``IMG-HH-ALOS2...``, ``IMG-HV-ALPSRP...``,
  integer amplitude DN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

# JAXA's calibration of PALSAR / PALSAR-2 level 1.5 and 2.1 amplitude DN: sigma0 = 10 log10(DN^2) - 83 dB,
# i.e. amplitude = DN * 10^(-83 / 20).
ALOS_CF_DB = -83.0
ALOS_DN_GAIN = 10.0 ** (ALOS_CF_DB / 20.0)

_HYP3_RTC = re.compile(r"_RTC\d+_[A-Z]_[gs]([pad])[uw]", re.IGNORECASE)
_HYP3_SCALES = {"p": "linear", "a": "amplitude", "d": "db"}
_HYP3_LAYER = re.compile(r"_[0-9A-F]{4}_([A-Za-z0-9_]+)\.tiff?$", re.IGNORECASE)  # after the product id
_HYP3_ACQ = re.compile(r"^S1([A-D])_(?:IW|EW|SM|S[1-6])_(\d{8}T\d{6})_", re.IGNORECASE)
_ALOS_IMG = re.compile(r"IMG-(HH|HV|VH|VV)-(ALOS2|ALPSRP)", re.IGNORECASE)
_OPERA = re.compile(
    r"^OPERA_L2_RTC-S1(?P<static>-STATIC)?_[^_]+_(?P<t>\d{8}(?:T\d{6}Z)?)_(?:\d{8}T\d{6}Z_)?S1(?P<m>[A-D])_"
    r".*?(?:_(?P<layer>[A-Za-z0-9_]+))?\.(?P<ext>tiff?|h5)$",
    re.IGNORECASE,
)
# The product's layers that are no backscatter, as the providers name them (a whitelist: any other
# suffix, such as a user's _subset or _aoi_VV, is still the image)
_HYP3_AUX = frozenset(
    {"ls_map", "rgb", "dem", "area", "inc_map", "inc_map_ell", "scattering_area", "rgb_thumb"}
)
_OPERA_AUX = frozenset({"mask", "layover_shadow_mask"})
# A product's co-polarised image by its name (HyP3's NAME_VV.tif beside NAME_VH.tif, NAME_ls_map.tif, ...)
_CO_POL_FILE = re.compile(r"(^|[_-])(VV|HH)\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class NamedFile:
    """What a file's name says (:func:`parse_name`)."""

    provider: str  # "hyp3", "opera", "alos"
    backscatter: bool  # False: an auxiliary layer (mask, angle, metadata), never a scene
    scale: str | None  # "linear", "amplitude", "db", or None (the values tell)
    why: str  # the words a notice uses for the scale
    start_time: str | None = None  # UTC ISO 8601, from the name
    platform: str | None = None  # "sentinel-1a", "alos-2", ...
    layer: str = ""  # OPERA's layer suffix ("VV", "mask", "incidence_angle", ...)


def parse_name(name: str) -> NamedFile | None:
    """The product facts a file (or folder, zip) name states, or None for names of no known provider."""
    if m := _OPERA.match(name):
        layer = m.group("layer") or ""
        back = not m.group("static") and m.group("ext").lower() != "h5" and layer.lower() not in _OPERA_AUX
        return NamedFile(
            "opera", back, "linear" if back else None, "its OPERA RTC-S1 file name says (gamma0 power)",
            _time(m.group("t")), f"sentinel-1{m.group('m').lower()}", layer,
        )  # fmt: skip
    if m := _HYP3_RTC.search(name):
        acq = _HYP3_ACQ.match(name)
        # NAME_VV.tif is backscatter; NAME_ls_map.tif, _rgb, _dem, _area, _inc_map are not (a folder or
        # zip is the product, whose co-polarised image runs)
        layer = lm.group(1) if (lm := _HYP3_LAYER.search(name)) else ""
        back = layer.lower() not in _HYP3_AUX  # a user's own suffix (_subset, _aoi_VV) is still the image
        return NamedFile(
            "hyp3", back, _HYP3_SCALES[m.group(1).lower()] if back else None,
            f"its ASF HyP3 RTC file name says ({m.group(0)[1:]}...)",
            _time(acq.group(2)) if acq else None, f"sentinel-1{acq.group(1).lower()}" if acq else None, layer,
        )  # fmt: skip
    if _ALOS_IMG.match(name):
        # its date alone, as a time, would merge two passes of one day in the batch layer
        return NamedFile(
            "alos", True, "amplitude",
            f"its ALOS PALSAR file name says (DN calibrated as sigma0 = 10 log10(DN^2) {ALOS_CF_DB:g} dB, "
            "JAXA's factor for level 1.5 / 2.1)",
            None, "alos-2" if "ALOS2" in name.upper() else "alos",
        )  # fmt: skip
    return None


def _time(text: str) -> str | None:
    """``20231004T011211Z`` / ``20231004T011211`` as UTC ISO 8601; a bare date gives None (a day is no
    acquisition time)."""
    if "T" not in text.upper():
        return None
    t = datetime.strptime(text.upper().rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return t.isoformat()


def is_hyp3_rtc_name(name: str) -> bool:
    """Whether ``name`` is an ASF HyP3 RTC product's (or one of its files')."""
    return _HYP3_RTC.search(name) is not None


def is_alos_image_name(name: str) -> bool:
    """Whether ``name`` is a JAXA PALSAR / PALSAR-2 image file's (``IMG-HH-ALOS2...``, any suffix)."""
    return _ALOS_IMG.match(name) is not None


def is_co_pol_file(name: str) -> bool:
    """Whether a file of a product folder is its co-polarised GeoTIFF (``*_VV.tif`` / ``*_HH.tif``)."""
    return _CO_POL_FILE.search(name) is not None


def auxiliary_layer(name: str) -> str | None:
    """A description of the non-backscatter layer a file's name says it is (OPERA's layover / shadow
    mask, static layers, metadata), or None."""
    p = parse_name(name)
    if p is None or p.backscatter:
        return None
    who = {"opera": "an OPERA RTC-S1", "hyp3": "an ASF HyP3 RTC"}.get(p.provider, "a")
    return f"{who} {p.layer or 'metadata'} layer, not backscatter (segment the product's _VV.tif or _HH.tif)"


def product_key(name: str) -> str | None:
    """The product a HyP3 / OPERA file belongs to: its name without the polarisation suffix and file
    suffix (so a product's zip, folder, ``_VV.tif`` and ``_VH.tif`` are one); None for other names."""
    p = parse_name(name)
    if p is None or p.provider not in ("hyp3", "opera"):
        return None
    stem = re.sub(r"\.(zip|tiff?)$", "", name, flags=re.IGNORECASE)
    return re.sub(r"_(VV|HH|VH|HV)$", "", stem, flags=re.IGNORECASE)


def file_polarisation(name: str) -> str | None:
    """The polarisation a HyP3 / OPERA image file's name ends with (``NAME_VH.tif``: ``VH``), else None."""
    m = re.search(r"_(VV|HH|VH|HV)\.tiff?$", name, re.IGNORECASE)
    return m.group(1).upper() if m and product_key(name) is not None else None
