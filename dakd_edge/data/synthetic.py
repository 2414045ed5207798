"""Seeded synthetic Sentinel-1 VV scenes with OSD labels, any size, rendered window by window.

Physics (simple but the right shape):
- sea clutter: a smooth wind-driven sigma0 field (fractal noise + wind streaks), falling with incidence
  angle across range (columns), times multiplicative speckle ``Gamma(L, 1/L)`` (L looks, unit mean);
- oil slicks damp capillary waves: elongated, tapered, wind-aligned, sometimes fragmented patches
  5-10 dB darker with a ~2 px edge ramp; look-alikes (low-wind areas, biogenic films) are as dark but
  larger with soft edges; ships are bright unspeckled point targets with cross-shaped side-lobes and an
  optional trailing slick; land is bright and strongly textured behind a fractal coastline.
- labels follow OSD: 0 sea, 1 oil, 2 look-alike, 3 ship, 4 land (binary: 1 = oil).

Everything random is either drawn once from the seed into a :class:`SceneLayout` (a list of geometric
objects and a few scalars) or is a hash-based field of global pixel coordinates, and speckle comes in
fixed 256 x 256 blocks seeded by block index. So a pixel has the same value whichever window renders
it, and writing a 20000 x 20000 GeoTIFF needs memory for one window only. numpy only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from dakd_edge.data.noise import fbm, mesh_field, value_noise
from dakd_edge.data.scaling import db_to_uint8
from dakd_edge.data.scene_objects import LAND, LOOKALIKE, OIL, SHIP, Blob, Land, Ship, Slick, SlickChain
from dakd_edge.errors import InputError
from dakd_edge.meta import BINARY_CLASSES, BINARY_PALETTE, OSD_CLASSES, OSD_PALETTE

Output = Literal["uint8", "db", "linear"]
OUTPUTS = ("uint8", "db", "linear")
SPECKLE_BLOCK = 256
# Object counts are bounded whatever the pixel size (ship density is per km2: at a huge pixel size a
# tiny scene would cover a continent) and the placement stays fast (each object is checked against
# every placed one).
MAX_SHIPS = 1000
MAX_OBJECTS = 5000  # per class of dark patch (oil, look-alikes)
Range = tuple[float, float]


@dataclass
class SceneConfig:
    """What a scene looks like. Ranges are drawn uniformly per scene (sizes log-uniformly).

    Class fractions are fractions of all scene pixels; the land range applies when land is present
    (probability ``land_probability``). Measured fractions land inside the ranges (tested).
    """

    pixel_size: float = 10.0  # m (Sentinel-1 IW GRDH)
    looks: float = 4.4  # equivalent number of looks of the speckle
    sea_db: Range = (-15.0, -9.0)  # sigma0 VV of the sea at the scene centre (sets the wind speed)
    incidence_db_per_km: float = -0.035  # backscatter drop across range (columns) with incidence angle
    wind_variation_db: float = 1.5  # peak amplitude of the smooth wind-field modulation
    wind_scale_m: float = 8000.0
    streak_db: float = 0.5  # wind streaks (rolls), elongated along the wind
    streak_spacing_m: float = 900.0
    oil_fraction: Range = (0.005, 0.03)
    oil_damping_db: Range = (7.0, 9.8)  # nominal; measured contrast is ~0.5 dB less (edges)
    oil_length_m: Range = (1500.0, 15000.0)
    oil_aspect: Range = (4.0, 14.0)
    oil_edge_px: float = 1.0  # half-width of the edge ramp: sharp-ish
    oil_wind_spread_deg: float = 12.0
    fragment_probability: float = 0.5
    lookalike_fraction: Range = (0.0, 0.04)
    lookalike_damping_db: Range = (5.5, 10.0)
    lookalike_size_m: Range = (2000.0, 12000.0)
    lookalike_edge_m: Range = (150.0, 500.0)
    film_probability: float = 0.4  # share of look-alikes that are biogenic films (vs low-wind blobs)
    ships_per_1000km2: Range = (1.0, 8.0)
    ship_length_m: Range = (50.0, 350.0)
    ship_db: Range = (0.0, 15.0)
    trailing_slick_probability: float = 0.3
    land_probability: float = 0.5
    land_fraction: Range = (0.05, 0.35)
    land_db_above_sea: Range = (4.0, 8.0)
    land_texture_db: float = 2.5
    coast_scale_m: float = 12000.0

    def __post_init__(self) -> None:
        for name in ("oil_fraction", "lookalike_fraction", "land_fraction"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi < 1.0:
                raise ValueError(f"{name} must satisfy 0 <= lo <= hi < 1, got {(lo, hi)}")
        if not (0 < self.looks < math.inf and 0 < self.pixel_size < math.inf):  # NaN fails both
            raise ValueError(
                f"looks and pixel_size must be finite and positive, got {self.looks}, {self.pixel_size}"
            )


# Training patches: a few km across, denser in every class than a full scene.
PATCH_CONFIG = SceneConfig(
    oil_fraction=(0.02, 0.15),
    oil_length_m=(2000.0, 9000.0),
    oil_aspect=(3.0, 10.0),
    lookalike_fraction=(0.0, 0.12),
    lookalike_size_m=(1000.0, 5000.0),
    lookalike_edge_m=(100.0, 300.0),
    ships_per_1000km2=(20.0, 120.0),
    trailing_slick_probability=0.5,
    land_probability=0.3,
    land_fraction=(0.05, 0.4),
    coast_scale_m=6000.0,
    wind_scale_m=4000.0,
)


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _loguniform(rng: np.random.Generator, r: Range) -> float:
    return float(math.exp(rng.uniform(math.log(r[0]), math.log(r[1])))) if r[1] > r[0] else float(r[0])


def _key(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**62))


@dataclass
class SceneLayout:
    """A scene drawn from a seed: scalars, the land field and a list of objects; renders any window."""

    cfg: SceneConfig
    seed: int
    height: int
    width: int
    wind_angle: float
    sea_level_db: float
    land_offset_db: float
    land: Land
    objects: list[Slick | SlickChain | Blob] = field(default_factory=list)  # dark patches, look-alikes first
    ships: list[Ship] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)  # drawn class fractions (for reports)
    keys: tuple[int, int] = (0, 0)

    # ---- fields -----------------------------------------------------------------------------
    def _sea_fn(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        c = self.cfg
        base = self.sea_level_db + c.incidence_db_per_km * c.pixel_size / 1000 * (x - self.width / 2)
        wind_px = c.wind_scale_m / c.pixel_size
        wind = c.wind_variation_db * fbm(self.keys[0], y, x, wind_px, 3)
        ca, sa = math.cos(self.wind_angle), math.sin(self.wind_angle)
        u, v = x * ca + y * sa, -x * sa + y * ca
        spacing = c.streak_spacing_m / c.pixel_size
        streak = c.streak_db * value_noise(self.keys[1], u / (6 * spacing), v / spacing)
        return base + wind + streak

    def _mesh_step(self) -> int:
        spacing = self.cfg.streak_spacing_m / self.cfg.pixel_size
        return int(min(16, max(2, spacing // 8)))

    def sea_db(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Mean sea sigma0 (dB, before speckle and objects) over a window."""
        return mesh_field(self._sea_fn, y0, x0, h, w, self._mesh_step())

    def speckle(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Unit-mean Gamma(L) speckle from fixed blocks seeded by block index (window-independent)."""
        out = np.empty((h, w), dtype=np.float32)
        b = SPECKLE_BLOCK
        looks = self.cfg.looks
        for by in range(y0 // b, (y0 + h - 1) // b + 1):
            for bx in range(x0 // b, (x0 + w - 1) // b + 1):
                rng = np.random.default_rng([self.seed, 0x5EC, by, bx])
                blk = rng.standard_gamma(looks, (b, b), dtype=np.float32) / np.float32(looks)
                ya, yb = max(y0, by * b), min(y0 + h, (by + 1) * b)
                xa, xb = max(x0, bx * b), min(x0 + w, (bx + 1) * b)
                out[ya - y0 : yb - y0, xa - x0 : xb - x0] = blk[
                    ya - by * b : yb - by * b, xa - bx * b : xb - bx * b
                ]
        return out

    # ---- rendering --------------------------------------------------------------------------
    def render(
        self, y0: int, x0: int, h: int, w: int, output: Output = "uint8", binary: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image (uint8 luminance, or float32 sigma0 dB / linear) and uint8 labels of one window."""
        if output not in OUTPUTS:
            raise InputError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        db = self.sea_db(y0, x0, h, w)
        labels = np.zeros((h, w), dtype=np.uint8)
        damp = np.zeros((h, w), dtype=np.float64)
        for obj in _in_window(self.objects, y0, x0, h, w):
            sy, sx, yy, xx = _sub(obj.bbox, y0, x0, h, w)
            p = obj.membership(yy, xx)
            damp[sy, sx] = np.maximum(damp[sy, sx], obj.damping(p, yy, xx))
            labels[sy, sx][p >= 0.5] = obj.cls
        db -= damp
        land = self.land.mask_window(y0, x0, h, w)
        if land is not None:
            land_db = self.sea_level_db + self.land_offset_db
            land_db = land_db + self.land.texture_db(y0, x0, h, w, self.cfg.land_texture_db)
            db[land] = land_db[land]
        lin = np.power(10.0, db / 10.0) * self.speckle(y0, x0, h, w)
        for ship in _in_window(self.ships, y0, x0, h, w):
            sy, sx, yy, xx = _sub(ship.bbox, y0, x0, h, w)
            sea = ~land[sy, sx] if land is not None else True
            lin[sy, sx] += ship.intensity(yy, xx) * sea
            labels[sy, sx][(ship.membership(yy, xx) > 0) & sea] = SHIP
        if land is not None:
            labels[land] = LAND
        if binary:
            labels = (labels == OIL).astype(np.uint8)
        lin = lin.astype(np.float32)
        if output == "linear":
            return lin, labels
        out_db = (10.0 * np.log10(np.maximum(lin, np.float32(1e-10)))).astype(np.float32)
        return (out_db if output == "db" else db_to_uint8(out_db)), labels

    def windows(self, window: int = 1024) -> Iterator[tuple[int, int, int, int]]:
        """(y0, x0, h, w) of windows covering the scene, row by row."""
        for y0 in range(0, self.height, window):
            for x0 in range(0, self.width, window):
                yield y0, x0, min(window, self.height - y0), min(window, self.width - x0)

    def fractions(self) -> dict[str, float]:
        """Drawn target class fractions (measured ones come from the labels)."""
        return dict(self.targets)


def _in_window(objs: list, y0: int, x0: int, h: int, w: int) -> list:
    return [
        o for o in objs if o.bbox[0] < y0 + h and o.bbox[2] > y0 and o.bbox[1] < x0 + w and o.bbox[3] > x0
    ]


def _sub(bbox: tuple[int, int, int, int], y0: int, x0: int, h: int, w: int) -> tuple:
    ya, xa = max(bbox[0], y0), max(bbox[1], x0)
    yb, xb = min(bbox[2], y0 + h), min(bbox[3], x0 + w)
    yy = np.arange(ya, yb, dtype=np.float64)[:, None]
    xx = np.arange(xa, xb, dtype=np.float64)[None, :]
    return slice(ya - y0, yb - y0), slice(xa - x0, xb - x0), yy, xx


# ---- placement ---------------------------------------------------------------------------------
class _Placer:
    """Places objects without overlap, counting their in-scene sea area by sampling their label."""

    MAX_POINTS = 16384

    def __init__(self, land: Land, height: int, width: int) -> None:
        self.land, self.h, self.w = land, height, width
        self.placed: list = []

    def footprint(self, obj) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Sampled label points at sea, their area (px) and the share of the label that is on land."""
        y0, x0, y1, x1 = obj.bbox
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, self.h), min(x1, self.w)
        if y1 <= y0 or x1 <= x0:
            return np.empty(0), np.empty(0), 0.0, 1.0
        stride = max(1, math.ceil(math.sqrt((y1 - y0) * (x1 - x0) / self.MAX_POINTS)))
        yy, xx = np.meshgrid(
            np.arange(y0 + stride // 2, y1, stride), np.arange(x0 + stride // 2, x1, stride), indexing="ij"
        )
        inside = obj.membership(yy.astype(np.float64), xx.astype(np.float64)) >= 0.5
        yy, xx = yy[inside], xx[inside]
        on_land = self.land.mask_points(yy, xx)
        n = max(inside.sum(), 1)
        return yy[~on_land], xx[~on_land], float((~on_land).sum() * stride * stride), float(on_land.sum() / n)

    def collides(self, obj, yy: np.ndarray, xx: np.ndarray, margin: int = 3) -> bool:
        b = obj.bbox
        for other in self.placed:
            o = other.bbox
            if (
                o[0] - margin >= b[2]
                or o[2] + margin <= b[0]
                or o[1] - margin >= b[3]
                or o[3] + margin <= b[1]
            ):
                continue
            if yy.size and (other.membership(yy.astype(np.float64), xx.astype(np.float64)) > 0.2).any():
                return True
            centre = np.array([[other.cy]]), np.array([[other.cx]])
            if obj.membership(*centre).max() > 0.2:
                return True
        return False

    def fill(
        self, rng: np.random.Generator, make: Callable, target_px: float, max_px: float, acc: float = 0.0
    ) -> float:
        """Add objects from ``make(rng, max_area_px)`` until ``target_px`` is covered (never beyond max_px)."""
        fails = placed = 0
        shrink = 1.0
        while acc < target_px and fails < 100 and placed < MAX_OBJECTS:
            obj = make(rng, shrink * (max_px - acc))
            if obj is None:
                break
            yy, xx, area, land_share = self.footprint(obj)
            if area <= 0 or land_share > 0.05 or acc + area > max_px or self.collides(obj, yy, xx):
                fails += 1  # too big, off the scene, on land or colliding: smaller objects fit more easily
                shrink = max(shrink * (0.7 if acc + area > max_px else 0.9), 0.02)
                continue
            self.placed.append(obj)
            acc += area
            placed += 1
        return acc


def _slick_maker(cfg: SceneConfig, layout: SceneLayout, cls: int) -> Callable:
    """Oil slicks (wind-aligned, sharp) or biogenic films (any direction, soft edges)."""
    px = cfg.pixel_size
    span = 0.45 * min(layout.height, layout.width)

    def make(rng: np.random.Generator, max_area: float) -> Slick | SlickChain | None:
        oil = cls == OIL
        length_r = cfg.oil_length_m if oil else cfg.lookalike_size_m
        half_len = min(_loguniform(rng, length_r) / px / 2, span)
        half_w = half_len / _uniform(rng, cfg.oil_aspect if oil else (6.0, 20.0))
        nominal = 4 * half_len * half_w * 0.45
        if nominal > max_area:
            s = math.sqrt(max(max_area, 0.0) / nominal)
            half_len, half_w = half_len * s, half_w * s
        if half_w < (3.0 if oil else 2.0) or half_len < 8:
            return None
        if oil:
            angle = (
                layout.wind_angle
                + math.radians(rng.normal(0, cfg.oil_wind_spread_deg))
                + math.pi * rng.integers(2)
            )
            edge = cfg.oil_edge_px
            damping = _uniform(rng, cfg.oil_damping_db)
            bend = float(rng.uniform(-0.15, 0.15))
        else:
            angle = float(rng.uniform(0, 2 * math.pi))
            edge = max(_uniform(rng, cfg.lookalike_edge_m) / px / 3, 2.5)
            edge = min(edge, half_w)
            damping = _uniform(rng, cfg.lookalike_damping_db)
            bend = float(rng.uniform(-0.4, 0.4))
        cy, cx, key = float(rng.uniform(0, layout.height)), float(rng.uniform(0, layout.width)), _key(rng)
        n = int(rng.integers(2, 6)) if oil and rng.random() < cfg.fragment_probability else 1
        if n == 1:
            return Slick(cls, cy, cx, angle, half_len, half_w, edge, damping, key, bend=bend,
                         tail=float(rng.uniform(0.15, 0.5)), rough=float(rng.uniform(0.1, 0.3)))  # fmt: skip
        parts = []
        for i in range(n):  # fragments along the axis, each tapered, slightly offset and turned
            along = (2 * (i + 0.5) / n - 1) * half_len + rng.normal(0, 0.1) * half_len / n
            across = rng.normal(0, 0.6) * half_w
            py = cy + along * math.sin(angle) + across * math.cos(angle)
            px_ = cx + along * math.cos(angle) - across * math.sin(angle)
            hl = half_len / n * float(rng.uniform(0.55, 0.9))
            hw = max(min(half_w * float(rng.uniform(0.5, 1.0)), hl / 3), 3.0)  # elongated fragments
            parts.append(Slick(cls, py, px_, angle + math.radians(rng.normal(0, 5)), hl, hw, edge, damping, key,
                               bend=float(rng.uniform(-0.2, 0.2)), tail=float(rng.uniform(0.2, 0.6)),
                               rough=float(rng.uniform(0.1, 0.3))))  # fmt: skip
        return SlickChain(parts)

    return make


def _blob_maker(cfg: SceneConfig, layout: SceneLayout) -> Callable:
    px = cfg.pixel_size
    span = 0.45 * min(layout.height, layout.width)

    def make(rng: np.random.Generator, max_area: float) -> Blob | None:
        ru = min(_loguniform(rng, cfg.lookalike_size_m) / px / 2, span)
        rv = ru * float(rng.uniform(0.35, 0.9))
        nominal = math.pi * ru * rv
        if nominal > max_area:
            s = math.sqrt(max(max_area, 0.0) / nominal)
            ru, rv = ru * s, rv * s
        if rv < 3:
            return None
        edge = min(max(_uniform(rng, cfg.lookalike_edge_m) / px, 3.0), rv / 2)
        return Blob(
            LOOKALIKE, float(rng.uniform(0, layout.height)), float(rng.uniform(0, layout.width)),
            float(rng.uniform(0, math.pi)), ru, rv, edge, _uniform(rng, cfg.lookalike_damping_db), _key(rng),
        )  # fmt: skip

    return make


def _lookalike_maker(cfg: SceneConfig, layout: SceneLayout) -> Callable:
    film, blob = _slick_maker(cfg, layout, LOOKALIKE), _blob_maker(cfg, layout)
    return lambda rng, max_area: (film if rng.random() < cfg.film_probability else blob)(rng, max_area)


def _target(rng: np.random.Generator, r: Range, total: float) -> tuple[float, float]:
    """(target, cap) in px: the target is drawn from the inner 70 % of the range, the cap is its top."""
    lo, hi = r
    return _uniform(rng, (lo + 0.15 * (hi - lo), hi - 0.15 * (hi - lo))) * total, hi * total * 0.98


def _place_ships(
    rng: np.random.Generator, cfg: SceneConfig, layout: SceneLayout, placer: _Placer, oil_cap: float
) -> float:
    """Ships (+ optional trailing slick); returns the oil area their slicks cover."""
    px = cfg.pixel_size
    area_km2 = layout.height * layout.width * px * px / 1e6
    # capped after the draw, so every scene below the cap keeps its draws (training patches included);
    # the rate is bounded only where numpy's Poisson sampler would refuse it
    lam = _uniform(rng, cfg.ships_per_1000km2) * area_km2 / 1000
    n = min(int(rng.poisson(min(lam, 1e12))), MAX_SHIPS)
    oil = 0.0
    for _ in range(n):
        length = max(_uniform(rng, cfg.ship_length_m) / px, 2.0)
        heading = float(rng.uniform(0, 2 * math.pi))
        ship = Ship(
            float(rng.uniform(0, layout.height)), float(rng.uniform(0, layout.width)), heading,
            length, max(length / 6, 1.0), _uniform(rng, cfg.ship_db), 40.0 * 10.0 / px,
        )  # fmt: skip
        yy, xx, area, land_share = placer.footprint(ship)
        if area <= 0 or land_share > 0 or placer.collides(ship, yy, xx, margin=4):
            continue
        placer.placed.append(ship)
        layout.ships.append(ship)
        if rng.random() >= cfg.trailing_slick_probability:
            continue
        half_len = float(rng.uniform(10, 40)) * length / 2
        half_w = max(float(rng.uniform(1.0, 2.5)) * ship.width, 3.0)
        d = half_len + length / 2 + 1
        slick = Slick(
            OIL, ship.cy - d * math.sin(heading), ship.cx - d * math.cos(heading), heading, half_len, half_w,
            cfg.oil_edge_px, _uniform(rng, cfg.oil_damping_db), _key(rng), tail=0.2, rough=0.15,
        )  # fmt: skip
        placer.placed.remove(ship)  # the slick starts at the ship's stern: do not count that as a collision
        yy, xx, area, land_share = placer.footprint(slick)
        ok = area > 0 and land_share <= 0.05 and oil + area <= oil_cap and not placer.collides(slick, yy, xx)
        placer.placed.append(ship)
        if ok:
            placer.placed.append(slick)
            layout.objects.append(slick)
            oil += area
    return oil


def build_layout(cfg: SceneConfig, seed: int, height: int, width: int) -> SceneLayout:
    """Draw every scene-level random choice from ``seed``: O(objects) memory, independent of the size."""
    if height <= 0 or width <= 0:
        raise InputError(f"scene size must be positive, got {height}x{width}")
    if int(seed) < 0:  # numpy's seed sequences take non-negative integers only
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng([int(seed), 0x5CE])
    total = float(height * width)
    land = Land(_key(rng), cfg.coast_scale_m / cfg.pixel_size, float(rng.uniform(0, 2 * math.pi)),
                float(rng.uniform(0, height)), float(rng.uniform(0, width)))  # fmt: skip
    layout = SceneLayout(
        cfg, int(seed), height, width, wind_angle=float(rng.uniform(0, 2 * math.pi)),
        sea_level_db=_uniform(rng, cfg.sea_db), land_offset_db=_uniform(rng, cfg.land_db_above_sea),
        land=land, keys=(_key(rng), _key(rng)),
    )  # fmt: skip
    land_target = 0.0
    if rng.random() < cfg.land_probability and cfg.land_fraction[1] > 0:
        land_target = _target(rng, cfg.land_fraction, 1.0)[0]
        land.threshold = _land_threshold(land, rng, height, width, land_target)
    layout.targets["land"] = land_target

    placer = _Placer(land, height, width)
    oil_target, oil_cap = _target(rng, cfg.oil_fraction, total)
    la_target, la_cap = _target(rng, cfg.lookalike_fraction, total)
    ship_oil = _place_ships(rng, cfg, layout, placer, oil_cap)
    oil_start = len(placer.placed)
    placer.fill(rng, _slick_maker(cfg, layout, OIL), oil_target, oil_cap, acc=ship_oil)
    oil_objs = placer.placed[oil_start:]
    la_start = len(placer.placed)
    placer.fill(rng, _lookalike_maker(cfg, layout), la_target, la_cap)
    la_objs = placer.placed[la_start:]
    # Look-alikes first so that oil wins where soft edges meet.
    layout.objects = la_objs + layout.objects + oil_objs
    layout.targets.update(oil=oil_target / total, lookalike=la_target / total)
    return layout


def _land_threshold(land: Land, rng: np.random.Generator, height: int, width: int, fraction: float) -> float:
    """Threshold giving the wanted land fraction, from the field sampled on a jittered 128 x 128 grid."""
    n = 128
    ys = ((np.arange(n) + rng.uniform(0, 1, n)) * height / n).astype(np.int64)
    xs = ((np.arange(n) + rng.uniform(0, 1, n)) * width / n).astype(np.int64)
    if height * width <= n * n:
        ys, xs = np.arange(height), np.arange(width)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return float(np.quantile(land.field_points(yy.ravel(), xx.ravel()), 1.0 - fraction))


# ---- public API --------------------------------------------------------------------------------
def generate_scene(
    cfg: SceneConfig | None,
    seed: int,
    height: int,
    width: int,
    output: Output = "uint8",
    binary: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole scene in memory (for small scenes; use :func:`write_scene_geotiff` for large ones).

    Returns (image, labels): image uint8 luminance (``dakd_edge.data.scaling.db_to_uint8``) or float32
    sigma0 in dB / linear; labels uint8 OSD class ids (or 0/1 with ``binary``).
    """
    layout = build_layout(cfg or SceneConfig(), seed, height, width)
    return layout.render(0, 0, height, width, output=output, binary=binary)


def generate_patch(
    seed: int, size: int | tuple[int, int] = 256, num_classes: int = 5, cfg: SceneConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A small training patch: (unit luminance float32 (H, W) in [0, 1], labels int64 (H, W)).

    The patch covers ~7.5 km whatever its pixel size, so every class fits. ``num_classes``: 5 (OSD) or
    2 (binary: oil vs rest). Images go through 8-bit luminance like the OSD/SOS releases.
    """
    if num_classes not in (2, 5):
        raise ValueError(f"num_classes must be 5 (OSD) or 2 (binary), got {num_classes}")
    h, w = (size, size) if isinstance(size, int) else size
    base = cfg or PATCH_CONFIG
    cfg = replace(base, pixel_size=max(7500.0 / max(h, w), 5.0)) if cfg is None else base
    img, labels = generate_scene(cfg, seed, h, w, output="uint8", binary=num_classes == 2)
    return img.astype(np.float32) / 255.0, labels.astype(np.int64)


def default_origin(seed: int, height: int, width: int, pixel_size: float) -> tuple[float, float]:
    """Plausible UTM 34N (Ionian/Aegean Sea) upper-left corner, drawn from the seed."""
    rng = np.random.default_rng([int(seed), 0x6E0])
    west = 300000.0 + float(rng.uniform(0, 300000.0))
    north = 3900000.0 + float(rng.uniform(0, 400000.0))
    return round(west / pixel_size) * pixel_size, round(north / pixel_size) * pixel_size


def write_scene_geotiff(
    path: str | os.PathLike,
    cfg: SceneConfig | None = None,
    seed: int = 0,
    height: int = 2048,
    width: int = 2048,
    labels_path: str | os.PathLike | None = None,
    output: Output = "uint8",
    binary: bool = False,
    window: int = 1024,
    crs: str = "EPSG:32634",
    origin: tuple[float, float] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a tiled, deflate-compressed, georeferenced GeoTIFF (and labels) window by window.

    Memory is one window (plus GDAL's capped block cache), whatever the scene size; both files are
    written atomically. Returns a summary (size, crs, transform, class pixel counts).
    """
    from pathlib import Path

    import rasterio
    from rasterio.transform import Affine

    from dakd_edge.atomic import atomic_path, check_free_space, check_output

    cfg = cfg or SceneConfig()
    if window % 16 or window <= 0:
        raise InputError(f"window must be a positive multiple of 16, got {window}")
    check_output(path, overwrite)
    if labels_path is not None:
        check_output(labels_path, overwrite)
    # Refused up front when clearly too small (deflate about halves the speckle); a disk that fills
    # anyway fails in the write or, when only libtiff saw it (tiles flushed at close), in the commit
    need = height * width * (1 if output == "uint8" else 4) // 2
    check_free_space(Path(path).parent, need, str(path))
    layout = build_layout(cfg, seed, height, width)
    west, north = origin or default_origin(seed, height, width, cfg.pixel_size)
    transform = Affine(cfg.pixel_size, 0.0, west, 0.0, -cfg.pixel_size, north)
    block = 256 if min(height, width) >= 256 else 16 * max(1, min(height, width) // 16)
    common = dict(driver="GTiff", height=height, width=width, count=1, crs=crs, transform=transform,
                  tiled=True, blockxsize=block, blockysize=block, compress="deflate", BIGTIFF="IF_SAFER")  # fmt: skip
    img_dtype = "uint8" if output == "uint8" else "float32"
    names, palette = (BINARY_CLASSES, BINARY_PALETTE) if binary else (OSD_CLASSES, OSD_PALETTE)
    counts = np.zeros(256, dtype=np.int64)
    done, total = 0, height * width
    with rasterio.Env(GDAL_CACHEMAX=64), atomic_path(path, overwrite) as tmp_img:
        lab_ctx = atomic_path(labels_path, overwrite) if labels_path is not None else _null_path()
        with lab_ctx as tmp_lab:
            dst = rasterio.open(
                tmp_img, "w", dtype=img_dtype, predictor=2 if img_dtype == "uint8" else 3, **common
            )
            lab = rasterio.open(tmp_lab, "w", dtype="uint8", predictor=2, **common) if tmp_lab else None
            try:
                dst.update_tags(
                    DAKD_SYNTHETIC="1", DAKD_SEED=str(seed), DAKD_SCALE=output, DAKD_LOOKS=str(cfg.looks),
                    DAKD_PIXEL_SIZE_M=str(cfg.pixel_size),
                )  # fmt: skip
                dst.set_band_description(
                    1, {"uint8": "VV luminance", "db": "sigma0 VV dB", "linear": "sigma0 VV"}[output]
                )
                if lab is not None:
                    lab.update_tags(DAKD_CLASSES=",".join(names), DAKD_SEED=str(seed))
                    lab.set_band_description(1, "class id")
                    lab.write_colormap(1, {i: (*rgb, 255) for i, rgb in enumerate(palette)})
                for y0, x0, h, w in layout.windows(window):
                    img, labels = layout.render(y0, x0, h, w, output=output, binary=binary)
                    win = rasterio.windows.Window(x0, y0, w, h)
                    dst.write(img, 1, window=win)
                    if lab is not None:
                        lab.write(labels, 1, window=win)
                    counts += np.bincount(labels.ravel(), minlength=256)
                    done += h * w
                    if progress is not None:
                        progress(done, total)
            finally:
                dst.close()
                if lab is not None:
                    lab.close()
    return {
        "path": str(path), "labels": str(labels_path) if labels_path else None, "height": height,
        "width": width, "crs": crs, "transform": list(transform)[:6], "output": output,
        "class_fractions": {n: float(counts[i] / total) for i, n in enumerate(names)},
    }  # fmt: skip


class _null_path:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
