"""Raw raster values -> unit luminance in [0, 1] -> normalised network input.

SAR scenes arrive as 8-bit luminance (OSD/SOS releases), sigma0 in dB, or linear sigma0. One mapping
serves training, the synthetic generator and inference so a model sees the same domain everywhere.
numpy only (used by the torch-free runtime).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dakd_edge.data.products import (
    ALOS_CF_DB,
    ALOS_DN_GAIN,
    parse_name,
)
from dakd_edge.errors import DakdWarning, InputError, Notice, user_stacklevel
from dakd_edge.meta import Normalization

Scale = Literal["auto", "uint8", "db", "linear", "amplitude"]
SCALES = ("auto", "uint8", "db", "linear", "amplitude")
_EPS_LINEAR = 1e-6  # -60 dB floor for linear sigma0 (1e-3 in amplitude)
# What each scale means, for messages ("read as ...").
SCALE_MEANINGS = {
    "uint8": "8-bit luminance (value / 255)",
    "db": "backscatter in dB",
    "linear": "linear backscatter power",
    "amplitude": "backscatter amplitude (the square root of power)",
}
_DN_HELP = (
    "integers past 255 are usually uncalibrated digital numbers (amplitude), which no --input-scale reads "
    "right as they are: calibrate them to sigma0 (dB or linear float, e.g. with SNAP's Calibrate), or give "
    "the file the GDAL scale that makes them physical amplitude (gdal_edit.py -scale FACTOR -a_nodata 0 "
    f"FILE, 0 being the fill outside the image; ALOS-2 PALSAR-2 level 1.5 / 2.1: FACTOR {ALOS_DN_GAIN:.5g}, "
    f"as sigma0 = 10 log10(DN^2) {ALOS_CF_DB:g} dB) and pass --input-scale amplitude; pass --input-scale "
    "db or linear only if they are dB or power"
)


def guessed_scale_line(sample: np.ndarray, scale: str) -> str:
    """The notice that float values' scaling was guessed from their range (``sample``: valid values),
    or, where they are 8-bit luminance divided by 255 (all multiples of 1/255, as torchvision's
    ``ToTensor`` makes them), that they are read as linear power: far too bright, slicks lost (an
    all-oil SOS patch came out with no oil, without a word from ``predict``)."""
    finite = sample[np.isfinite(sample)]
    lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
    if scale == "linear" and _over_255(finite):
        return (
            f"float values ({lo:.3g} to {hi:.3g}, 1st-99th percentile) are all multiples of 1/255: 8-bit "
            "luminance divided by 255? They are read as linear backscatter power, which loses slicks; "
            "multiplied by 255 they read as --input-scale uint8"
        )
    return (
        f"float values ({lo:.3g} to {hi:.3g}, 1st-99th percentile) read as {SCALE_MEANINGS[scale]}, "
        "guessed from their range; if they are not, pass --input-scale"
    )


def _over_255(values: np.ndarray) -> bool:
    """True for values in [0, 1] that are all whole multiples of 1/255 (several distinct ones)."""
    if values.size < 16 or float(values.min()) < 0 or float(values.max()) > 1:
        return False
    k = values.astype(np.float64) * 255.0
    return bool(np.abs(k - np.round(k)).max() < 1e-3) and np.unique(np.round(k)).size > 2


def detect_scale(sample: np.ndarray) -> str:
    """Guess the scaling of raw values from their dtype and range (finite pixels of a sample)."""
    if sample.dtype == np.uint8:
        return "uint8"
    finite = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample
    if finite.size == 0:
        raise InputError("cannot detect input scaling: the sampled pixels are all NaN/nodata")
    if np.issubdtype(sample.dtype, np.integer):
        # Only uint8 is 8-bit luminance by its type: 16- and 32-bit integers are digital numbers, also
        # where a calm sea keeps them under 256 (a raw Sentinel-1 DN file read as luminance called 66 %
        # of its sea oil, and a windier sea of the same product was refused)
        lo, hi = int(finite.min()), int(finite.max())
        small = (
            f"; if they are 8-bit luminance stored as {sample.dtype}, pass --input-scale uint8"
            if lo >= 0 and hi <= 255
            else ""
        )
        raise InputError(
            f"cannot detect input scaling for {sample.dtype} values in [{lo}, {hi}]: {_DN_HELP}{small}"
        )
    med = float(np.median(finite))
    p99 = float(np.percentile(finite, 99))
    if med < 0:
        if float(np.percentile(finite, 1)) > -1.0:
            # Values near 0 with a negative median are not dB (a whole scene at ~0 dB is no sea):
            # linear sigma0 after thermal-noise subtraction, when some of it is positive.
            if p99 > 0:
                return "linear"
            raise InputError(
                f"cannot detect input scaling for float values all in [{float(finite.min()):.3g}, "
                f"{float(finite.max()):.3g}] (negative linear power?); pass --input-scale"
            )
        return "db"
    if p99 <= 20.0:  # sigma0 in linear units rarely exceeds a few (bright targets aside)
        return "linear"
    lo, hi = float(np.percentile(finite, 1)), float(finite.max())
    if lo >= 0 and hi <= 255.0 and np.array_equal(finite, np.round(finite)):
        return "uint8"  # whole numbers: 8-bit luminance stored as float
    what = (
        "not dB (mostly negative), not linear power (mostly under 1) and not 8-bit luminance (whole "
        "numbers): an incidence angle, a look count, a mask or uncalibrated amplitude?"
        if lo >= 0 and hi <= 255.0
        else f"median {med:.3g}"
    )
    raise InputError(
        f"cannot detect input scaling for float values ({lo:.3g} to {p99:.3g}, 1st-99th percentile; {what}); "
        "segment backscatter (sigma0 or gamma0), or pass --input-scale"
    )


@dataclass(frozen=True)
class NameScale:
    """The scaling a product's file name states (:func:`scale_from_name`)."""

    scale: str
    gain: float | None  # digital numbers -> physical values (None: the values are physical)
    why: str


def scale_from_name(name: str, dtype: str) -> NameScale | None:
    """The scaling a provider's file naming states (:mod:`dakd_edge.data.products`), where the values
    alone cannot tell: amplitude reads as plausible power (sea at -17.6 dB becomes -8.8 dB, in domain,
    and slicks vanish), and ALOS DN need JAXA's calibration factor. None for other names."""
    named = parse_name(name)
    if named is None or named.scale is None:
        return None
    if named.provider == "alos":  # integer DN only: a float IMG- file was calibrated already
        if not np.issubdtype(np.dtype(dtype), np.integer):
            return None
        return NameScale(named.scale, ALOS_DN_GAIN, named.why)
    return NameScale(named.scale, None, named.why)


# Units of calibrated backscatter bands: SNAP's (``PHYSICAL_UNIT``: Sigma0_VV in "intensity", its
# Sigma0_VV_db in "intensity_db") and GDAL's "dB".
_UNIT_SCALES = {"intensity": "linear", "intensity_db": "db", "db": "db", "amplitude": "amplitude"}
_CALIBRATED_BAND = re.compile(r"(sigma|gamma|beta)0?_(vv|hh|vh|hv)(_db)?(_.*)?", re.IGNORECASE)


def scale_from_unit(description: str | None, unit: str | None) -> NameScale | None:
    """The scaling a calibrated band's unit states (SNAP exports: ``Sigma0_VV`` in ``intensity``), or
    None. Only for bands named as calibrated backscatter: SNAP's uncalibrated ``Intensity_VV`` is in
    "intensity" too, but in squared digital numbers."""
    desc, unit = (description or "").strip(), (unit or "").strip()
    scale = _UNIT_SCALES.get(unit.lower())
    if scale is None or not _CALIBRATED_BAND.fullmatch(desc):
        return None
    return NameScale(scale, None, f"its band's unit says ({desc} in {unit})")


def to_unit(raw: np.ndarray, scale: str, norm: Normalization | None = None) -> np.ndarray:
    """Map raw values to float32 unit luminance in [0, 1]; NaN stays NaN."""
    norm = norm or Normalization()
    lo, hi = norm.db_range
    x = np.asarray(raw)
    if scale == "auto":
        scale = detect_scale(x)
    if scale == "uint8":
        return np.clip(x.astype(np.float32) / 255.0, 0.0, 1.0)
    if scale == "linear":
        x = 10.0 * np.log10(np.maximum(x.astype(np.float32), _EPS_LINEAR))
        scale = "db"
    elif scale == "amplitude":
        x = 20.0 * np.log10(np.maximum(x.astype(np.float32), np.sqrt(_EPS_LINEAR)))
        scale = "db"
    if scale == "db":
        return np.clip((x.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    raise InputError(f"unknown input scale {scale!r}; choose one of {', '.join(SCALES)}")


def db_to_uint8(db: np.ndarray, norm: Normalization | None = None) -> np.ndarray:
    """sigma0 (dB) -> 8-bit luminance with the same mapping ``to_unit`` inverts."""
    u = to_unit(db, "db", norm)
    return np.round(u * 255.0).astype(np.uint8)


def normalize(unit: np.ndarray, norm: Normalization, fill: bool = False) -> np.ndarray:
    """Unit luminance -> standardised network input (float32); ``fill``: NaN first becomes the mean (0
    after) and +-inf the largest finite values, as ``np.nan_to_num(unit, nan=norm.mean)``.

    Every window of a scene comes through here: the fill runs only when a pixel is not finite (one
    ``isfinite`` pass; 8-bit input never has one, ``nan_to_num`` is three passes and a copy), and the
    standardisation runs in place on its own result (the same operations and dtypes as
    ``((unit - mean) / std).astype(float32)``, so the same bits; ``tests/inference/test_predictor.py``)."""
    if fill and not np.isfinite(unit).all():
        unit = np.nan_to_num(unit, nan=norm.mean)
    x = np.subtract(unit, norm.mean)
    x /= norm.std
    return x.astype(np.float32, copy=False)


# ---- input-domain check ------------------------------------------------------------------------
# Training statistics of the SOS images (the bundled model's training set), in unit luminance (the
# network input before normalisation). Measured once over ../shared/data/sos/train/{palsar,sentinel}/
# *_sat.jpg (1000 + 1000 images, grey stored as RGB: band 1 / 255) with ``measure_input_stats``: the
# median of each image, then the 1st / 50th / 99th percentiles of those 2000 medians (= 34, 114 and 172
# grey levels). tests/data/test_scaling_domain.py recomputes them when the data is present.
SOS_INPUT_STATS: dict[str, Any] = {
    "median_p01": 0.1333,
    "median_p50": 0.4471,
    "median_p99": 0.6745,
    "images": 2000,
    "source": "SOS train (1000 ALOS-PALSAR + 1000 Sentinel-1 patches)",
}
# Slack around the training 1st-99th percentile band: ~8 grey levels (~1.2 dB of the -35..5 dB range), so
# in-domain images at the edge of the training spread (the SOS test set reaches a median of 0.114) pass,
# while an 8-bit scene whose values are all below 25 (median <= 0.094) is flagged.
DOMAIN_MARGIN = 0.03


def measure_input_stats(unit_images: Iterable[np.ndarray], source: str) -> dict[str, Any]:
    """Training statistics for ``ModelMeta.input_stats``: percentiles of the per-image median luminance.

    Per-image medians (not pooled pixels) because a scene is judged by its own median: the band says
    which scene-level brightness the model has seen. NaN and masked pixels are ignored.
    """
    medians = np.array([np.median(v) for v in map(_valid, unit_images) if v.size])
    if medians.size == 0:
        raise ValueError("no image with a valid pixel to measure input statistics from")
    p01, p50, p99 = (round(float(np.percentile(medians, q)), 4) for q in (1, 50, 99))
    return {"median_p01": p01, "median_p50": p50, "median_p99": p99, "images": int(medians.size),
            "source": source}  # fmt: skip


def _valid(unit_sample: np.ndarray) -> np.ndarray:
    """Finite, unmasked values of a sample (masked arrays and NaN mark nodata)."""
    x = unit_sample.compressed() if np.ma.isMaskedArray(unit_sample) else np.asarray(unit_sample).ravel()
    return x[np.isfinite(x)] if np.issubdtype(x.dtype, np.floating) else x


class InputDomainWarning(DakdWarning):
    """The scaled input is far from what the model was trained on (wrong --input-scale?): the results
    may be wrong. Not a :class:`Notice`, so silencing notices keeps it."""


def domain_warning(
    unit_sample: np.ndarray,
    stats: dict[str, Any] | None = None,
    *,
    scale: str | None = None,
    margin: float = DOMAIN_MARGIN,
) -> str | None:
    """One warning line when a scene's valid pixels, after ``to_unit``, are far from the training domain.

    Out of domain means the sample's median luminance lies outside the training 1st-99th percentile of
    per-image medians, widened by ``margin``: a mis-scaled input (e.g. uncalibrated 8-bit values all
    below 25) is confidently mis-segmented (all oil) instead of failing, so the user must be told.
    ``stats``: the model's ``ModelMeta.input_stats``; None means the bundled model's
    :data:`SOS_INPUT_STATS`. ``scale``: the input scaling used, quoted in the message. Returns None when in
    domain or when the sample has no valid pixel.
    """
    stats = stats or SOS_INPUT_STATS
    valid = _valid(unit_sample)
    if valid.size == 0:
        return None
    med = float(np.median(valid))
    lo, hi = float(stats["median_p01"]), float(stats["median_p99"])
    if lo - margin <= med <= hi + margin:
        return None
    side = "below" if med < lo else "above"
    how = f" read as {scale}" if scale else ""
    return (
        f"input looks out of the model's training domain: median luminance {med:.3f} of the valid pixels"
        f"{how} is {side} the training range {lo:.3f}-{hi:.3f} (1st-99th percentile of image medians,"
        f" {stats.get('source', 'training set')}); results may be wrong: check --input-scale"
    )


# --- raw arrays -> model bands: validity, scale, layout (shared by the predictor and scene readers) ---

_LAST_AXIS_BANDS = (1, 3, 4)  # H x W x C layouts of images read with PIL / OpenCV / imageio


def valid_mask(raw: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where a pixel holds data in every band: not NaN/inf and not equal to ``nodata``."""
    ok = np.ones(raw.shape[-2:], bool)
    for b in raw.reshape(-1, *raw.shape[-2:]):
        if np.issubdtype(b.dtype, np.floating):
            ok &= np.isfinite(b)
        if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
            ok &= b != nodata
    return ok


def resolve_scale(sample: np.ndarray, scale: str) -> str:
    """Check a user-given scale or detect it from valid sample values (1-D or any shape)."""
    if scale not in SCALES:
        raise InputError(f"unknown input scale {scale!r}; choose one of {', '.join(SCALES)}")
    if scale != "auto":
        return scale
    if sample.size == 0:
        raise InputError("cannot detect input scaling: no valid pixels (all nodata/NaN)")
    return detect_scale(sample)


# H x W x C layouts of images read with PIL / OpenCV / imageio


MAX_BANDS = 16  # more than this along an axis makes it an image axis, not bands


def as_chw(image: np.ndarray, in_chans: int) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) -> (C, H, W), checking the band count against the model.

    A channels-last array (``C`` of 1, 3 or 4 in the last axis, as image libraries return, or any
    ``C`` up to :data:`MAX_BANDS` before a longer first axis) is moved to channels-first. For a 1-band model, identical bands (grey stored as RGB, like the OSD/SOS
    JPEGs) are reduced to the first one with a :class:`Notice`; different bands are an error.
    """
    a = np.asarray(image)
    if a.dtype.kind not in "uif":  # bool masks, complex, strings, objects: not a SAR image
        raise InputError(
            f"expected an image of integers or floats, got dtype {a.dtype}"
            + (" (complex: pass the amplitude, np.abs(image))" if a.dtype.kind == "c" else "")
        )
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"expected an image of shape (H, W), (C, H, W) or (H, W, C), got {a.shape}")
    last = a.shape[0] != in_chans and (
        (a.shape[2] in _LAST_AXIS_BANDS and a.shape[0] not in _LAST_AXIS_BANDS)
        or a.shape[2] <= MAX_BANDS < a.shape[0]  # (H, W, 2): a VV + VH stack, not 2-pixel-wide rows
    )
    if last:
        a = np.moveaxis(a, 2, 0)
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise InputError(f"empty image {a.shape}")
    if a.shape[0] != in_chans and in_chans == 1 and a.shape[0] > 1:
        if all(np.array_equal(a[0], b, equal_nan=True) for b in a[1:]):
            warnings.warn(
                Notice(f"the image's {a.shape[0]} bands are identical (grey as RGB); using band 1"),
                stacklevel=user_stacklevel(),
            )
            return a[:1]
        raise InputError(
            f"the model takes 1 band but the image has {a.shape[0]} different bands "
            f"(shape {tuple(np.shape(image))}); pass one of them, e.g. {'image[..., 0]' if last else 'image[0]'}"
        )
    if a.shape[0] != in_chans:
        raise InputError(
            f"the model takes {in_chans} band(s) but the image has {a.shape[0]} (shape {np.shape(image)})"
        )
    return a
