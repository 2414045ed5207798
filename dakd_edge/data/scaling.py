"""Raw raster values -> unit luminance in [0, 1] -> normalised network input.

SAR scenes arrive as 8-bit luminance (OSD/SOS releases), sigma0 in dB, or linear sigma0. One mapping
serves training, the synthetic generator and inference so a model sees the same domain everywhere.
numpy only (used by the torch-free runtime).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dakd_edge.errors import InputError
from dakd_edge.meta import Normalization

Scale = Literal["auto", "uint8", "db", "linear"]
SCALES = ("auto", "uint8", "db", "linear")
_EPS_LINEAR = 1e-6  # -60 dB floor for linear sigma0


def detect_scale(sample: np.ndarray) -> str:
    """Guess the scaling of raw values from their dtype and range (finite pixels of a sample)."""
    if sample.dtype == np.uint8:
        return "uint8"
    finite = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample
    if finite.size == 0:
        raise InputError("cannot detect input scaling: the sampled pixels are all NaN/nodata")
    if np.issubdtype(sample.dtype, np.integer):
        lo, hi = int(finite.min()), int(finite.max())
        if lo >= 0 and hi <= 255:
            return "uint8"
        raise InputError(
            f"cannot detect input scaling for {sample.dtype} values in [{lo}, {hi}]; pass --input-scale"
        )
    med = float(np.median(finite))
    p99 = float(np.percentile(finite, 99))
    if med < 0:
        return "db"
    if p99 <= 20.0:  # sigma0 in linear units rarely exceeds a few (bright targets aside)
        return "linear"
    if float(finite.max()) <= 255.0:
        return "uint8"
    raise InputError(f"cannot detect input scaling for float values (median {med:.3g}); pass --input-scale")


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
    if scale == "db":
        return np.clip((x.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    raise InputError(f"unknown input scale {scale!r}; choose one of {', '.join(SCALES)}")


def db_to_uint8(db: np.ndarray, norm: Normalization | None = None) -> np.ndarray:
    """sigma0 (dB) -> 8-bit luminance with the same mapping ``to_unit`` inverts."""
    u = to_unit(db, "db", norm)
    return np.round(u * 255.0).astype(np.uint8)


def normalize(unit: np.ndarray, norm: Normalization) -> np.ndarray:
    """Unit luminance -> standardised network input (float32)."""
    return ((unit - norm.mean) / norm.std).astype(np.float32)
