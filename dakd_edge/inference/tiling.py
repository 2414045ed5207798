"""Seam-free tiled inference that streams over a scene in row strips (numpy only, any backend).

Why this shape: a Sentinel-1 scene (25000 x 16700 px) does not fit a network at once, and a scene-sized
float accumulator would not fit an edge board either. Tiles overlap by ``overlap`` pixels on a grid of
constant stride ``tile - overlap`` whose last row/column may run past the image; those pixels are filled
by *reflection* (like the image continued), never zeros. Each tile's class probabilities are weighted
by a smooth window and summed; the window of two neighbours sums to one across the overlap (cosine^2
ramp), so no seam can appear where tiles meet. Tile rows are processed top to bottom, a few tile
columns at a time; only the overlap strips are carried over (the bottom ``overlap`` rows across the
scene width to the next tile row, the right ``overlap`` columns to the next chunk) and finished pixels
are handed out as soon as no later tile touches them: memory is independent of the scene height and
nearly so of its width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dakd_edge.errors import ModelFileError

WINDOWS = ("cosine", "gaussian")
BLEND_SPACES = ("probs", "logits")

# (y0, y1, x0, x1) -> (normalised input (C, y1 - y0, x1 - x0) float32, valid (y1 - y0, x1 - x0) bool)
# reader(y0, y1, x0, x1) -> (normalised, valid) or (normalised, valid, land)
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, ...]]
PredictFn = Callable[[np.ndarray], np.ndarray]


def axis_origins(n: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis: 0, stride, 2*stride, ... until the image end is covered."""
    if n <= 0:
        raise ValueError("axis length must be positive")
    if n <= tile:
        return [0]
    count = math.ceil((n - tile) / stride) + 1
    return [i * stride for i in range(count)]


@dataclass(frozen=True)
class TileGrid:
    """Tile layout for an ``height x width`` image; tiles shrink to the image on axes shorter than it."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int
    ys: tuple[int, ...] = field(init=False)
    xs: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ys", tuple(axis_origins(self.height, self.tile_h, self.stride_h)))
        object.__setattr__(self, "xs", tuple(axis_origins(self.width, self.tile_w, self.stride_w)))

    @classmethod
    def make(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        if height <= 0 or width <= 0:
            raise ValueError(f"empty image ({height} x {width})")
        if tile <= 0 or not 0 <= overlap < tile:
            raise ValueError(f"need 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
        th, tw = min(tile, height), min(tile, width)
        return cls(height, width, th, tw, min(overlap, th - 1, tw - 1))

    @property
    def stride_h(self) -> int:
        return self.tile_h - self.overlap if self.height > self.tile_h else self.tile_h

    @property
    def stride_w(self) -> int:
        return self.tile_w - self.overlap if self.width > self.tile_w else self.tile_w

    @property
    def padded_width(self) -> int:
        return self.xs[-1] + self.tile_w

    @property
    def padded_height(self) -> int:
        return self.ys[-1] + self.tile_h

    @property
    def num_tiles(self) -> int:
        return len(self.ys) * len(self.xs)


def ramp(n: int, overlap: int, kind: str = "cosine") -> np.ndarray:
    """1-D blending weights of length ``n``.

    ``cosine``: 1 in the middle, sin^2 ramps over ``overlap`` pixels at both ends, so two neighbours at
    stride ``n - overlap`` sum to exactly 1 (a partition of unity). ``gaussian``: centre-weighted bell
    (sigma n/4) with a floor, as in nnU-Net; smoother but never flat.
    """
    if kind == "cosine":
        w = np.ones(n, np.float64)
        if overlap > 0:
            r = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
            w[:overlap] = r
            w[n - overlap :] = np.minimum(w[n - overlap :], r[::-1])
        return w.astype(np.float32)
    if kind == "gaussian":
        c = (n - 1) / 2.0
        w = np.exp(-0.5 * ((np.arange(n) - c) / (n / 4.0)) ** 2)
        return np.maximum(w, 1e-3).astype(np.float32)
    raise ValueError(f"unknown window {kind!r}; choose one of {', '.join(WINDOWS)}")


def blend_window(tile_h: int, tile_w: int, overlap: int, kind: str = "cosine") -> np.ndarray:
    """Separable 2-D window ``(tile_h, tile_w)`` (outer product of two :func:`ramp`)."""
    return np.outer(ramp(tile_h, overlap, kind), ramp(tile_w, overlap, kind)).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def argmax0(probs: np.ndarray) -> np.ndarray:
    """``probs.argmax(0)`` as uint8, plane by plane (several times faster on (K, h, W) arrays)."""
    best = probs[0].copy()
    idx = np.zeros(best.shape, np.uint8)
    for k in range(1, probs.shape[0]):
        better = probs[k] > best
        idx[better] = k
        np.maximum(best, probs[k], out=best)
    return idx


@dataclass
class Strip:
    """A finished piece of the output: rows ``y0 .. y0 + h``, columns ``x0 .. x0 + w``."""

    y0: int
    probs: np.ndarray  # (K, h, w) float32 class probabilities (0 where invalid)
    valid: np.ndarray  # (h, w) bool: False for nodata / NaN input pixels
    x0: int = 0  # first column (strips come in column chunks of a tile row)


@dataclass
class TileStats:
    """Counters filled while streaming (for progress bars and reports)."""

    tiles_total: int = 0
    tiles_run: int = 0
    tiles_skipped: int = 0  # no valid pixel (nodata or land)
    tiles_skipped_land: int = 0  # of those, tiles with land (the reader reported a land mask)
    batches: int = 0
    peak_buffer_bytes: int = 0  # accumulator + per-row input window, the memory that scales with W


@dataclass
class TileConfig:
    """How to tile: ``tile``/``overlap`` in pixels, ``batch`` tiles per backend call."""

    tile: int = 512
    overlap: int = 64
    batch: int = 8
    window: str = "cosine"
    blend: str = "probs"  # average probabilities (default) or logits (softmax after blending)
    chunk_tiles: int | None = 8  # tile columns blended at once (None: the whole row)

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; choose one of {', '.join(WINDOWS)}")
        if self.blend not in BLEND_SPACES:
            raise ValueError(f"unknown blend space {self.blend!r}; choose one of {', '.join(BLEND_SPACES)}")
        if self.batch < 1:
            raise ValueError("batch must be >= 1")
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ValueError(f"need 0 <= overlap < tile, got tile={self.tile}, overlap={self.overlap}")


def _reflect_pad(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Pad the last two axes at the bottom/right by reflection (no-op when nothing is missing)."""
    pr, pc = rows - a.shape[-2], cols - a.shape[-1]
    if pr <= 0 and pc <= 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, max(pr, 0)), (0, max(pc, 0))]
    # 'reflect' mirrors about the edge pixel ('symmetric' would repeat it).
    return np.pad(a, pad, mode="reflect" if min(a.shape[-2:]) > 1 else "edge")


def read_padded(
    reader: WindowReader, y0: int, y1: int, x0: int, x1: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Window ``[y0:y1, x0:x1]`` of the image continued past its bottom/right edge by reflection.

    Reads enough rows/columns before the window that the mirror image comes from the image itself
    (as if the whole image had been padded), however little of the window lies inside it. The reader
    may return a third array, a land mask (pixels it made invalid because they are land), so skipped
    tiles can be counted as land rather than nodata; ``None`` when it does not.
    """
    pr, pc = max(y1 - height, 0), max(x1 - width, 0)
    ry = min(y0, max(height - 1 - pr, 0))
    rx = min(x0, max(width - 1 - pc, 0))
    x, valid, *rest = reader(ry, min(y1, height), rx, min(x1, width))
    x = _reflect_pad(np.asarray(x, np.float32), y1 - ry, x1 - rx)[:, y0 - ry :, x0 - rx :]
    valid = _reflect_pad(np.asarray(valid, bool), y1 - ry, x1 - rx)[y0 - ry :, x0 - rx :]
    land = rest[0] if rest else None
    if land is not None:
        land = _reflect_pad(np.asarray(land, bool), y1 - ry, x1 - rx)[y0 - ry :, x0 - rx :]
    return x, valid, land


def stream_strips(
    reader: WindowReader,
    grid: TileGrid,
    predict: PredictFn,
    num_classes: int,
    cfg: TileConfig,
    stats: TileStats | None = None,
    on_row: Callable[[TileStats, int], None] | None = None,
) -> Iterator[Strip]:
    """Run ``predict`` over ``grid`` and yield finished :class:`Strip` s, row by row, left to right.

    ``reader(y0, y1, x0, x1)`` returns a normalised input window and its validity (windows are read
    per chunk, so input memory does not grow with the width either); invalid pixels inside a tile
    are replaced by the tile's mean valid value before inference (so the network sees no NaN or
    sentinel values) and tiles with no valid pixel are not run at all. ``on_row(stats, rows_done)`` is
    called after each tile row (progress bars).

    Memory: a row of tiles is blended in chunks of ``cfg.chunk_tiles`` tile columns. Only the overlap
    strips are carried: the bottom ``overlap`` rows of the whole row (to the next tile row) and the
    right ``overlap`` columns of a chunk (to the next chunk); a pixel is handed out as soon as no
    later tile covers it. Channel ``K`` of every buffer holds the sum of blending weights. The
    bottom strip is one scene-wide buffer updated in place: a chunk adds the columns it reads from it
    into its own buffer first, and later chunks only read columns right of those it writes back.
    """
    stats = stats if stats is not None else TileStats()
    stats.tiles_total = grid.num_tiles
    th, tw, k = grid.tile_h, grid.tile_w, num_classes
    ov_h, ov_w = th - grid.stride_h, tw - grid.stride_w
    width, wp = grid.width, grid.padded_width
    win = blend_window(th, tw, grid.overlap, cfg.window)
    ncols, last = len(grid.xs), len(grid.ys) - 1
    step = cfg.chunk_tiles or ncols
    carry = np.zeros((k + 1, ov_h, wp), np.float32)
    for r, y in enumerate(grid.ys):
        h = grid.stride_h if r < last else grid.height - y
        right: np.ndarray | None = None
        e0 = 0
        for j0 in range(0, ncols, step):
            j1 = min(j0 + step, ncols)
            a0, a1 = grid.xs[j0], grid.xs[j1 - 1] + tw
            x, valid, land = read_padded(reader, y, y + th, a0, a1, grid.height, width)
            local = np.zeros((k + 1, th, a1 - a0), np.float32)
            c0 = a0
            if right is not None:  # the previous chunk's last tile, with its carry already added
                local[:, :, :ov_w] += right
                c0 += ov_w
            if ov_h:
                local[:, :ov_h, c0 - a0 :] += carry[:, :, c0:a1]
            _run_tiles(grid.xs[j0:j1], a0, x, valid, local, win, predict, k, th, tw, cfg, stats, land)
            e1 = grid.xs[j1] if j1 < ncols else width
            if r < last:  # columns e0..e1 are final for this row; no later chunk reads them
                carry[:, :, e0:e1] = local[:, h:, e0 - a0 : e1 - a0]
            right = local[:, :, e1 - a0 :].copy() if j1 < ncols else None
            stats.peak_buffer_bytes = max(
                stats.peak_buffer_bytes, carry.nbytes + local.nbytes + x.nbytes + valid.nbytes
            )
            strip = _finish(local[:, :h, e0 - a0 : e1 - a0], valid[:h, e0 - a0 : e1 - a0], y, e0, cfg.blend)
            del local, x, valid, land  # free the chunk before the consumer asks for the next one
            yield strip
            del strip
            e0 = e1
        if on_row is not None:
            on_row(stats, y + h)


def _run_tiles(
    xs: tuple[int, ...],
    a0: int,
    x: np.ndarray,
    valid: np.ndarray,
    local: np.ndarray,
    win: np.ndarray,
    predict: PredictFn,
    k: int,
    th: int,
    tw: int,
    cfg: TileConfig,
    stats: TileStats,
    land: np.ndarray | None = None,
) -> None:
    """Predict the tiles at columns ``xs`` (batched, all-nodata ones skipped) and blend into ``local``.

    ``x``/``valid``/``local`` are the chunk's window starting at image column ``a0``.
    """
    jobs: list[tuple[int, np.ndarray]] = []
    for x0 in xs:  # x and valid start at column a0
        v = valid[:, x0 - a0 : x0 - a0 + tw]
        if not v.any():
            stats.tiles_skipped += 1
            if land is not None and land[:, x0 - a0 : x0 - a0 + tw].any():
                stats.tiles_skipped_land += 1
            continue
        t = x[:, :, x0 - a0 : x0 - a0 + tw].copy()
        if not v.all():
            for c in range(t.shape[0]):
                t[c][~v] = float(t[c][v].mean())
        jobs.append((x0, t))
    for i in range(0, len(jobs), cfg.batch):
        chunk = jobs[i : i + cfg.batch]
        logits = np.asarray(predict(np.stack([t for _, t in chunk])), np.float32)
        if logits.shape != (len(chunk), k, th, tw):
            if logits.ndim == 4 and logits.shape[1] != k:  # a model file whose metadata lies
                raise ModelFileError(f"the model outputs {logits.shape[1]} classes but its metadata says {k}")
            raise ValueError(f"backend returned {logits.shape}, expected {(len(chunk), k, th, tw)}")
        out = softmax(logits) if cfg.blend == "probs" else logits.copy()  # ours: weighted in place
        for (x0, _), p in zip(chunk, out, strict=True):
            p *= win
            local[:k, :, x0 - a0 : x0 - a0 + tw] += p
            local[k, :, x0 - a0 : x0 - a0 + tw] += win
        stats.batches += 1
        stats.tiles_run += len(chunk)


def _finish(acc: np.ndarray, valid: np.ndarray, y0: int, x0: int, blend: str) -> Strip:
    """Normalise accumulated (K + 1, h, w) sums by the weight channel into a :class:`Strip`."""
    w = acc[-1]
    ok = valid & (w > 0)
    scale = np.reciprocal(np.maximum(w, 1e-12))
    if blend == "logits":
        probs = softmax(acc[:-1] * scale, axis=0)
        probs *= ok  # one multiply per plane: much faster than boolean-mask assignment on (K, h, w)
    else:
        scale *= ok
        probs = acc[:-1] * scale
    return Strip(y0, probs, ok, x0)
