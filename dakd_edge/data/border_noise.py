"""The border noise of Sentinel-1 GRD products processed before IPF 2.90 (March 2018), found and masked.

Those products fill the first and last range samples (and, at the start and end of a datatake, lines)
with low non-zero DNs instead of 0 ("GRD border noise", ESA MPC-0243; IPF 2.90 writes 0 there). After
thermal-noise removal they are the -35 dB floor: a dark band along each edge that an oil detector
calls a slick. :class:`BorderNoiseMask` finds that border from the DNs and the noise LUT of the product
(:class:`~dakd_edge.data.sentinel1.S1Product` uses it in ``read_sigma0``: NaN there). numpy only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from dakd_edge.errors import quiet

if TYPE_CHECKING:
    from dakd_edge.data.sentinel1 import S1Product

BORDER_NOISE = ("auto", "mask", "keep")
BORDER_RATIO = 0.25  # a block whose power is under this share of the thermal noise recorded nothing
BORDER_BLOCK = 16  # pixels per block along a line
BORDER_CONFIRM = 4  # this many blocks of signal in a row end the border
BORDER_LIMIT_M = 5000.0  # never mask deeper than this from an edge
BORDER_SMOOTH = 2  # a line's border is the widest of its +-2 neighbours'
_BORDER_CHUNK = 256  # lines found at a time
_NO_DN = math.log(0.01)  # :func:`_log_ratio` of DN == 0


def _log_ratio(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """log(power / noise + 0.01): speckle is multiplicative; DN == 0 gives log(0.01), a LUT of 0 +30."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(noise > 0, power / np.where(noise > 0, noise, 1), 1e13)
    return np.log(r + 0.01)


def _border_log_ratio(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """:func:`_log_ratio` of strips, the noise taken as at least half its median along each line: a LUT
    far below its neighbours near a product's no-data border tells nothing there (its 0 values, missing
    values, are left out when it is read), and the thermal noise varies little within a few km (a line
    without any noise: +30, signal).
    """
    with quiet(RuntimeWarning):  # a line of zeros: no median
        ref = np.nanmedian(np.where(noise > 0, noise, np.nan), axis=1, keepdims=True)
    return _log_ratio(power, np.maximum(noise, 0.5 * np.nan_to_num(ref)))


def border_extent(power: np.ndarray, noise: np.ndarray, limit: int) -> np.ndarray:
    """Border-noise width of each line of ``(n, L)`` strips ordered from the image edge inward.

    ``power`` is DN^2 (0 where DN == 0), ``noise`` the thermal noise (same units). Any recorded pixel,
    even of a sea too calm to return signal, carries the thermal noise, so a block of
    :data:`BORDER_BLOCK` pixels whose power is below :data:`BORDER_RATIO` of the noise held no
    recording: the no-value border that IPF before 2.90 left with low non-zero DNs. Blocks are judged
    by their geometric mean (a few bright artefacts inside the border do not lift it); blocks of only
    DN == 0 are border. The border ends at the first of :data:`BORDER_CONFIRM` consecutive blocks
    above the ratio, to the pixel (:func:`_split`), at most ``limit`` pixels in (also where no such run
    starts before it). Returns int32 widths, the DN == 0 pixels before the border included.
    """
    return _extent(_border_log_ratio(power, noise), power > 0, limit)


def _extent(x: np.ndarray, valid: np.ndarray, limit: int) -> np.ndarray:
    """:func:`border_extent` of log ratios ``x`` (``valid``: DN > 0)."""
    n, L = x.shape
    nb = min(L // BORDER_BLOCK, -(-limit // BORDER_BLOCK) + BORDER_CONFIRM)
    if nb < BORDER_CONFIRM:
        return np.zeros(n, dtype=np.int32)
    cut = nb * BORDER_BLOCK
    ok = valid[:, :cut].reshape(n, nb, BORDER_BLOCK)
    xs = np.where(ok, x[:, :cut].reshape(n, nb, BORDER_BLOCK), 0.0).sum(axis=2)
    cnt = ok.sum(axis=2)
    signal = (cnt > 0) & (xs >= math.log(BORDER_RATIO + 0.01) * np.maximum(cnt, 1))
    run = signal[:, : nb - BORDER_CONFIRM + 1].copy()
    for k in range(1, BORDER_CONFIRM):
        run &= signal[:, k : k + run.shape[1]]
    first = np.where(run.any(axis=1), run.argmax(axis=1), nb)
    width = np.full(n, limit, dtype=np.int64)
    found = first * BORDER_BLOCK < limit
    if found.any():  # to the pixel: the edge lies between the block before the run and the run's end
        a = np.maximum(first[found] - 1, 0) * BORDER_BLOCK
        idx = np.minimum(a[:, None] + np.arange((BORDER_CONFIRM + 1) * BORDER_BLOCK)[None, :], L - 1)
        width[found] = a + _split(x[np.flatnonzero(found)[:, None], idx], first[found] == 0)
    return np.minimum(width, limit).astype(np.int32)


def _split(x: np.ndarray, at_edge: np.ndarray) -> np.ndarray:
    """Per row of ``(n, m)`` log ratios (:func:`_log_ratio`) that run from border noise into signal:
    where the signal starts.

    The split minimises the squared deviation of x from the means of the two sides, among splits whose
    border side has a mean below log(:data:`BORDER_RATIO`) and whose signal side has not. Rows whose
    first block already holds signal (``at_edge``: maybe no border at all) need the border side's mean
    clearly below, by 2.5 / sqrt(pixels): a few dim sea pixels are no border.
    """
    n, m = x.shape
    zero = np.zeros((n, 1))
    c1, c2 = np.hstack([zero, np.cumsum(x, axis=1)]), np.hstack([zero, np.cumsum(x * x, axis=1)])
    j = np.arange(m + 1)[None, :]
    left_n, right_n = np.maximum(j, 1), np.maximum(m - j, 1)
    right1, right2 = c1[:, -1:] - c1, c2[:, -1:] - c2
    sse = (c2 - c1**2 / left_n) + (right2 - right1**2 / right_n)
    level = math.log(BORDER_RATIO + 0.01)
    margin = np.where(at_edge[:, None], 2.5 / np.sqrt(left_n), 0.0)
    ok = ((c1 / left_n < level - margin) | (j == 0)) & (right1 / right_n >= level) & (j < m)
    sse = np.where(ok, sse, np.inf)
    return np.where(np.isfinite(sse).any(axis=1), sse.argmin(axis=1), m // 2)


class BorderNoiseMask:
    """The no-value border of a product (see the module doc), found lazily near each edge: widths come
    from :func:`border_extent` on the DNs and noise LUT of each row, for the rows a window needs
    (:meth:`widths`); the lines of an azimuth border from the mean of each line (:meth:`_find_azimuth`).
    """

    def __init__(self, product: S1Product) -> None:
        self.product = product
        az, rg = product.pixel_spacing
        h, w = product.shape
        self.limit = {  # per edge: how deep the border may go (pixels across that edge)
            "left": min(w // 2, math.ceil(BORDER_LIMIT_M / rg)),
            "right": min(w // 2, math.ceil(BORDER_LIMIT_M / rg)),
            "top": min(h // 2, math.ceil(BORDER_LIMIT_M / az)),
            "bottom": min(h // 2, math.ceil(BORDER_LIMIT_M / az)),
        }
        self._width = {"left": np.full(h, -1, np.int32), "right": np.full(h, -1, np.int32),
                       "top": np.full(w, -1, np.int32), "bottom": np.full(w, -1, np.int32)}  # fmt: skip
        self._scale: float | None = None

    @property
    def noise_scale(self) -> float:
        """What the noise LUT is multiplied by before it is compared: min(1, the median of DN^2 / noise
        over 3 x 3 windows inside the swath).

        No recorded power can sit below the thermal noise on the median, so a LUT above the swath's
        median power is too high (the noise vectors of the oldest IPF versions are not trusted); scaled
        down to it, calm sea near an edge stays sea while border noise, far below the true noise,
        stays border. A sound LUT over any sea gives 0.93-1 (speckle) or more, so nothing changes.
        """
        if self._scale is None:
            prod, (h, w) = self.product, self.product.shape
            ratios = []
            for fy in (0.3, 0.5, 0.7):
                for fx in (0.3, 0.5, 0.7):
                    y0, x0 = int(fy * h) - 32, int(fx * w) - 32
                    y0, x0 = max(0, min(y0, h - 64)), max(0, min(x0, w - 64))
                    y1, x1 = min(h, y0 + 64), min(w, x0 + 64)
                    dn = prod.read_dn(y0, y1, x0, x1).astype(np.float64)
                    noise = prod.noise.window(y0, y1, x0, x1)  # type: ignore[union-attr]
                    ok = (dn > 0) & (noise > 0)
                    ratios.append((dn * dn)[ok] / noise[ok])
            r = np.concatenate(ratios)
            self._scale = float(min(1.0, np.median(r))) if r.size else 1.0
        return self._scale

    def _find(self, edge: str, a: int, b: int) -> np.ndarray:
        """Unsmoothed border widths of rows a..b-1 (at most :data:`_BORDER_CHUNK`) across the left or
        right edge."""
        prod, w = self.product, self.product.width
        depth = min(self.limit[edge] + BORDER_CONFIRM * BORDER_BLOCK, w)
        x0 = 0 if edge == "left" else w - depth
        power = prod.read_dn(a, b, x0, x0 + depth).astype(np.float32) ** 2
        noise = prod.noise.window(a, b, x0, x0 + depth) * np.float32(self.noise_scale)  # type: ignore[union-attr]
        if edge == "right":  # ordered from the edge inward
            power, noise = power[:, ::-1], noise[:, ::-1]
        return border_extent(power, noise, self.limit[edge])

    def _find_azimuth(self, edge: str) -> np.ndarray:
        """Border widths of every column under the top or bottom edge.

        The lines of an azimuth border are found on the geometric mean of each line's pixels, per 512
        columns between the two range borders' limits (columns inside a range border have no signal
        down to any depth; where the limits overlap, between each line's range borders); the columns
        beside them take their nearest block's width. Lines of only DN == 0 are border, as in range.
        """
        prod, (h, w) = self.product, self.product.shape
        depth = min(self.limit[edge] + BORDER_CONFIRM * BORDER_BLOCK, h)
        y0 = 0 if edge == "top" else h - depth
        dn = prod.read_dn(y0, y0 + depth, 0, w)
        c0, c1 = self.limit["left"], w - self.limit["right"]
        inside = None
        if c1 - c0 < BORDER_BLOCK:  # a narrow product: leave out each line's range borders
            c0, c1 = 0, w
            cols = np.arange(w)[:, None]
            inside = (cols >= self.widths("left", y0, y0 + depth)[None, :]) & (
                cols < w - self.widths("right", y0, y0 + depth)[None, :]
            )  # (columns, lines)
        starts = list(range(c0, c1, 512))
        means, seen = [], []  # per block of columns: each line's mean log ratio, whether it has pixels
        for s in starts:
            e = min(s + 512, c1)
            power = dn[:, s:e].T.astype(np.float32) ** 2  # (columns, lines)
            noise = prod.noise.window(y0, y0 + depth, s, e).T * np.float32(self.noise_scale)  # type: ignore[union-attr]
            valid = power > 0 if inside is None else (power > 0) & inside[s:e]
            if edge == "bottom":
                power, noise, valid = power[:, ::-1], noise[:, ::-1], valid[:, ::-1]
            x = _border_log_ratio(power, noise)
            cnt = valid.sum(axis=0)
            means.append(np.where(cnt > 0, np.where(valid, x, 0.0).sum(axis=0) / np.maximum(cnt, 1), _NO_DN))
            seen.append(cnt > 0)
        found = _extent(np.stack(means), np.stack(seen), self.limit[edge])
        ends = [*starts[1:], w]  # the first block also covers the columns before it, the last those after
        return np.repeat(found, np.diff([0, *ends]))

    def widths(self, edge: str, a: int, b: int) -> np.ndarray:
        """Border widths (pixels in from ``edge``) of lines a..b-1 (rows for left/right, else columns).

        Rows are found 256 at a time as windows need them and widened to the widest of their
        :data:`BORDER_SMOOTH` neighbours on each side; a top or bottom edge is found whole at its first
        use (a GRD measurement is stored in rows: one read of its first or last lines).
        """
        raw = self._width[edge]
        if edge in ("top", "bottom"):
            if raw[0] < 0:
                raw[:] = self._find_azimuth(edge)
            return raw[a:b]
        lo, hi = max(a - BORDER_SMOOTH, 0), min(b + BORDER_SMOOTH, raw.size)
        for c0 in range(lo // _BORDER_CHUNK * _BORDER_CHUNK, hi, _BORDER_CHUNK):
            c1 = min(c0 + _BORDER_CHUNK, raw.size)
            if (raw[c0:c1] < 0).any():
                raw[c0:c1] = self._find(edge, c0, c1)
        part = raw[lo:hi]
        # Rows without signal up to the limit lie in the border across them (an azimuth border): they
        # keep their width but do not widen their neighbours'.
        full = part >= self.limit[edge]
        padded = np.pad(np.where(full, 0, part), BORDER_SMOOTH, mode="edge")
        wide = np.lib.stride_tricks.sliding_window_view(padded, 2 * BORDER_SMOOTH + 1).max(axis=1)
        wide = np.where(full, part, wide)
        return wide[a - lo : a - lo + (b - a)]

    def mask(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """True on the border noise of window rows y0..y1-1, columns x0..x1-1 (None: none in it)."""
        h, w = self.product.shape
        out = None
        rows, cols = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
        for edge, near in (("left", x0 < self.limit["left"]), ("right", x1 > w - self.limit["right"]),
                           ("top", y0 < self.limit["top"]), ("bottom", y1 > h - self.limit["bottom"])):  # fmt: skip
            if not near:
                continue
            if edge == "left":
                m = cols < self.widths(edge, y0, y1)[:, None]
            elif edge == "right":
                m = cols >= w - self.widths(edge, y0, y1)[:, None]
            elif edge == "top":
                m = rows < self.widths(edge, x0, x1)[None, :]
            else:
                m = rows >= h - self.widths(edge, x0, x1)[None, :]
            if m.any():
                out = m if out is None else out | m
        return out
