"""Geometric scene objects of the synthetic SAR generator: slicks/films, low-wind blobs, ships, land.

Each object is a pure function of global pixel coordinates, placed once from the seed (see
:mod:`dakd_edge.data.synthetic`) and rendered inside any window that meets its bounding box, so large
scenes are drawn window by window without seams. ``membership`` is a soft inside-ness p in [0, 1];
the label is ``p >= 0.5`` and the radar damping scales with p, which gives sharp-ish edges for oil
(a ramp of ~2 px) and soft ones for look-alikes (tens of px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dakd_edge.data.noise import fbm, hash_uniform, mesh_field, mesh_points, value_noise

SEA, OIL, LOOKALIKE, SHIP, LAND = 0, 1, 2, 3, 4


def _rotate(obj_cy: float, obj_cx: float, angle: float, y: np.ndarray, x: np.ndarray) -> tuple:
    """Global (y, x) -> object frame (u along ``angle``, v across); angle in radians from +x."""
    dy, dx = y - obj_cy, x - obj_cx
    c, s = math.cos(angle), math.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _rot_bbox(cy: float, cx: float, angle: float, hu: float, hv: float) -> tuple[int, int, int, int]:
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    ey, ex = hu * s + hv * c, hu * c + hv * s
    return (math.floor(cy - ey) - 1, math.floor(cx - ex) - 1, math.ceil(cy + ey) + 2, math.ceil(cx + ex) + 2)


@dataclass
class Slick:
    """Elongated, tapered, optionally bent dark patch (oil slick or biogenic film).

    The half-width follows a tear-drop profile along the axis (thick head at u = -L/2, thin tail)
    and its edge is roughened by noise. Fragmented spills are :class:`SlickChain`.
    """

    cls: int
    cy: float
    cx: float
    angle: float
    half_length: float  # px
    half_width: float  # px, at the thickest point
    edge: float  # px, width of the soft edge ramp on each side of the boundary
    damping_db: float
    key: int
    bend: float = 0.0  # lateral offset of the tips, as a fraction of the half length
    tail: float = 0.3  # tail width / head width
    rough: float = 0.25  # relative edge roughness

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        hv = self.half_width * (1 + self.rough) + abs(self.bend) * self.half_length + self.edge
        return _rot_bbox(self.cy, self.cx, self.angle, self.half_length + self.edge, hv)

    def membership(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        u, v = _rotate(self.cy, self.cx, self.angle, y, x)
        t = np.clip(u / self.half_length, -1.0, 1.0)
        v = v - self.bend * self.half_length * t * t
        shape = np.sqrt(np.maximum(1.0 - t * t, 0.0)) * (self.tail + (1 - self.tail) * (1 - t) / 2)
        scale = max(self.half_width * 2.0, 4.0)
        w = self.half_width * shape * (1 + self.rough * value_noise(self.key, y / scale, x / scale))
        s = w - np.abs(v)
        s = np.where(np.abs(u) <= self.half_length, s, -np.inf)  # also clamps ramp beyond the tips
        return np.clip(0.5 + s / (2 * self.edge), 0.0, 1.0)

    def damping(self, p: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Damping in dB: strength x membership, with +-8 % thickness variation inside."""
        scale = max(self.half_width, 4.0)
        return self.damping_db * p * (1 + 0.08 * value_noise(self.key + 2, y / scale, x / scale))


@dataclass
class SlickChain:
    """A fragmented spill: several tapered slicks strung out along one wind-aligned axis.

    The parts share class, damping strength and noise key, so the chain damps like one slick.
    """

    parts: list[Slick]

    @property
    def cls(self) -> int:
        return self.parts[0].cls

    @property
    def cy(self) -> float:
        return self.parts[0].cy

    @property
    def cx(self) -> float:
        return self.parts[0].cx

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        boxes = np.array([p.bbox for p in self.parts])
        return (
            int(boxes[:, 0].min()),
            int(boxes[:, 1].min()),
            int(boxes[:, 2].max()),
            int(boxes[:, 3].max()),
        )

    def membership(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.maximum.reduce([p.membership(y, x) for p in self.parts])

    def damping(self, p: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.parts[0].damping(p, y, x)


@dataclass
class Blob:
    """Low-wind area: a large, rounded, soft-edged dark region (look-alike)."""

    cls: int
    cy: float
    cx: float
    angle: float
    ru: float  # px semi-axes
    rv: float
    edge: float
    damping_db: float
    key: int
    rough: float = 0.3

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return _rot_bbox(self.cy, self.cx, self.angle, self.ru * (1 + self.rough), self.rv * (1 + self.rough))

    def membership(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        u, v = _rotate(self.cy, self.cx, self.angle, y, x)
        r = np.sqrt((u / self.ru) ** 2 + (v / self.rv) ** 2)
        scale = max(self.rv, 4.0)
        r_edge = 1 + self.rough * fbm(self.key, y / scale, x / scale, 1.0, 3)
        s = (r_edge - r) * self.rv
        return np.clip(0.5 + s / (2 * self.edge), 0.0, 1.0)

    def damping(self, p: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.damping_db * p


@dataclass
class Ship:
    """Bright point target: a rotated hull rectangle plus cross-shaped azimuth/range side-lobes."""

    cy: float
    cx: float
    angle: float
    length: float  # px
    width: float  # px
    peak_db: float  # absolute sigma0 of the hull
    lobe: float  # px, side-lobe half length
    cls: int = SHIP

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        e = max(self.lobe, self.length / 2 + 1)
        return (
            math.floor(self.cy - e) - 1,
            math.floor(self.cx - e) - 1,
            math.ceil(self.cy + e) + 2,
            math.ceil(self.cx + e) + 2,
        )

    def membership(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        u, v = _rotate(self.cy, self.cx, self.angle, y, x)
        return ((np.abs(u) <= self.length / 2 + 0.5) & (np.abs(v) <= self.width / 2 + 0.5)).astype(np.float64)

    def intensity(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Linear intensity added on top of the clutter (point targets are not speckled)."""
        peak = 10.0 ** (self.peak_db / 10)
        body = self.membership(y, x)
        dy, dx = np.abs(y - self.cy), np.abs(x - self.cx)
        hy = abs(math.sin(self.angle)) * self.length / 2 + 0.5  # hull extent along rows / columns
        hx = abs(math.cos(self.angle)) * self.length / 2 + 0.5
        # -13 dB first side-lobe (sinc), slow decay, cut at +-lobe; one pixel thick through the centre.
        az = np.exp(-((dx / 0.8) ** 2)) * 0.05 / (1 + np.maximum(dy - hy, 0) / 4) * (dy <= self.lobe)
        rg = np.exp(-((dy / 0.8) ** 2)) * 0.05 / (1 + np.maximum(dx - hx, 0) / 4) * (dx <= self.lobe)
        return peak * np.maximum(body, np.maximum(az, rg))


@dataclass
class Land:
    """Land = {ramp + fractal noise > threshold}: a coastline across the scene, fractal at all scales.

    The octaves with wavelength >= 4 * ``step`` are interpolated from a global lattice (cheap, smooth);
    the finer ones are evaluated only where they can still flip the label (|coarse - threshold| below
    their summed amplitude), so only the coastline band pays for pixel-scale detail.
    """

    key: int
    wavelength: float  # px, of the first octave
    angle: float  # direction of the land-ward ramp
    cy: float
    cx: float
    threshold: float = math.inf
    gain: float = 0.6  # octave gain: larger = rougher coastline (higher fractal dimension)
    step: int = 16

    def _octaves(self) -> list[tuple[float, float]]:
        out, wl, amp = [], self.wavelength, 1.0
        while wl >= 1.5:
            out.append((wl, amp))
            wl, amp = wl / 2, amp * self.gain
        return out

    def _split(self) -> tuple[list, list]:
        octs = [(i, wl, a) for i, (wl, a) in enumerate(self._octaves())]
        return [o for o in octs if o[1] >= 4 * self.step], [o for o in octs if o[1] < 4 * self.step]

    def _coarse_fn(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        val = ((x - self.cx) * c + (y - self.cy) * s) / self.wavelength
        for i, wl, amp in self._split()[0]:
            val = val + amp * value_noise(self.key * 97 + i, y / wl, x / wl)
        return val

    def _fine(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        val = np.zeros(np.shape(y))
        for i, wl, amp in self._split()[1]:
            val = val + amp * value_noise(self.key * 97 + i, y / wl, x / wl)
        return val

    def field_points(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Full land field at integer pixel coordinates (used to set the threshold by quantile)."""
        return mesh_points(self._coarse_fn, y, x, self.step) + self._fine(y, x)

    def mask_points(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if not math.isfinite(self.threshold):
            return np.zeros(np.shape(y), dtype=bool)
        return self.field_points(y, x) > self.threshold

    def mask_window(self, y0: int, x0: int, h: int, w: int) -> np.ndarray | None:
        """Land mask of a window, or None when the window cannot contain land."""
        if not math.isfinite(self.threshold):
            return None
        coarse = mesh_field(self._coarse_fn, y0, x0, h, w, self.step)
        bound = sum(a for _, _, a in self._split()[1])
        if coarse.max() + bound <= self.threshold:
            return None
        mask = coarse > self.threshold
        unsure = np.abs(coarse - self.threshold) <= bound
        if unsure.any():
            yy, xx = np.nonzero(unsure)
            mask[yy, xx] = coarse[yy, xx] + self._fine(yy + y0, xx + x0) > self.threshold
        return mask if mask.any() else None

    def texture_db(self, y0: int, x0: int, h: int, w: int, amp_db: float) -> np.ndarray:
        """Strong land texture (fields, relief, urban spots) in dB, zero-mean-ish."""
        smooth = mesh_field(lambda yy, xx: fbm(self.key + 5, yy, xx, 160.0, 4, 0.7), y0, x0, h, w, 4)
        ys = np.arange(y0, y0 + h)[:, None]
        xs = np.arange(x0, x0 + w)[None, :]
        spots = hash_uniform(self.key + 6, ys, xs) > 0.96  # sparse bright scatterers (buildings)
        return amp_db * 2.5 * smooth + 8.0 * spots
