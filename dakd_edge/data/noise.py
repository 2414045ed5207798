"""Coherent noise that can be evaluated at any pixel of an unbounded plane, window by window.

The synthetic scene generator must produce the same pixel whichever window it is rendered in, and a
20000 x 20000 scene must never need a scene-sized grid. So every random field here is a pure function
of (key, y, x): lattice values come from a fixed permutation table indexed by the lattice point (an
integer hash), not from a stateful RNG, and smooth fields are bilinear interpolations of a *globally aligned* coarse lattice.
numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_TABLE_BITS = 16
_MASK = (1 << _TABLE_BITS) - 1
_table_rng = np.random.default_rng(0xDA4D)
_PERM = _table_rng.permutation(1 << _TABLE_BITS).astype(np.int64)
_VALUES = _table_rng.uniform(-1.0, 1.0, 1 << _TABLE_BITS)

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _mix(key: int) -> int:
    """splitmix64 of the key (Python ints): decorrelates the table offsets of nearby keys."""
    z = (key + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def hash_uniform(key: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Deterministic uniform values in [-1, 1) for integer lattice coordinates (any shape, broadcast).

    Perlin-style double permutation over a fixed 2^16 table (fast gathers instead of 64-bit hashing);
    the key picks offsets into it. The pattern repeats only after 65536 lattice cells.
    """
    z = _mix(int(key))
    k1, k2, k3 = z & _MASK, (z >> 16) & _MASK, (z >> 32) & _MASK
    iy = np.asarray(iy, dtype=np.int64)
    ix = np.asarray(ix, dtype=np.int64)
    idx = _PERM[(_PERM[(ix + k1) & _MASK] + iy + k2) & _MASK]
    return _VALUES[idx ^ k3]


def value_noise(key: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Smooth value noise in [-1, 1] at real lattice coordinates (one lattice cell = one wavelength)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y0 = np.floor(y)
    x0 = np.floor(x)
    fy = y - y0
    fx = x - x0
    fy = fy * fy * fy * (fy * (fy * 6 - 15) + 10)  # quintic fade: C2-continuous across cells
    fx = fx * fx * fx * (fx * (fx * 6 - 15) + 10)
    iy = y0.astype(np.int64)
    ix = x0.astype(np.int64)
    top = hash_uniform(key, iy, ix) * (1 - fx) + hash_uniform(key, iy, ix + 1) * fx
    bot = hash_uniform(key, iy + 1, ix) * (1 - fx) + hash_uniform(key, iy + 1, ix + 1) * fx
    return top * (1 - fy) + bot * fy


def fbm(
    key: int, y: np.ndarray, x: np.ndarray, wavelength: float, octaves: int, gain: float = 0.5
) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise octaves, normalised so that |result| <= 1."""
    total = np.zeros(np.broadcast_shapes(np.shape(y), np.shape(x)), dtype=np.float64)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        f = 2.0**o / wavelength
        total += amp * value_noise(key * 131 + o, np.asarray(y) * f, np.asarray(x) * f)
        norm += amp
        amp *= gain
    return total / max(norm, 1e-12)


def mesh_field(fn: Field, y0: int, x0: int, h: int, w: int, step: int) -> np.ndarray:
    """Evaluate ``fn`` on the global lattice ``step * Z^2`` around a window and interpolate bilinearly.

    Identical (bit for bit) to :func:`mesh_points` at the window's pixels, so fields stay continuous
    across windows while ``fn`` is evaluated on ~1/step^2 of the pixels.
    """
    gy0, gx0 = y0 // step, x0 // step
    gy = np.arange(gy0, (y0 + h - 1) // step + 2, dtype=np.float64) * step
    gx = np.arange(gx0, (x0 + w - 1) // step + 2, dtype=np.float64) * step
    grid = np.broadcast_to(fn(gy[:, None], gx[None, :]), (gy.size, gx.size))
    ys = np.arange(y0, y0 + h)
    xs = np.arange(x0, x0 + w)
    iy, fy = ys // step - gy0, (ys - (ys // step) * step) / step
    ix, fx = xs // step - gx0, (xs - (xs // step) * step) / step
    rows = grid[:, ix] * (1 - fx) + grid[:, ix + 1] * fx  # (ny, w)
    return rows[iy] * (1 - fy)[:, None] + rows[iy + 1] * fy[:, None]


def mesh_points(fn: Field, y: np.ndarray, x: np.ndarray, step: int) -> np.ndarray:
    """Point version of :func:`mesh_field` for integer pixel coordinates (same values)."""
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    cy, cx = y // step, x // step
    fy, fx = (y - cy * step) / step, (x - cx * step) / step
    ty, tx = (cy * step).astype(np.float64), (cx * step).astype(np.float64)
    top = fn(ty, tx) * (1 - fx) + fn(ty, tx + step) * fx
    bot = fn(ty + step, tx) * (1 - fx) + fn(ty + step, tx + step) * fx
    return top * (1 - fy) + bot * fy
