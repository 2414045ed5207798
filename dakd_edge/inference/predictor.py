"""The user-facing model: raw numpy image in, class probabilities / class ids out (any backend).

It owns everything between a raw raster and :meth:`Backend.predict`: dtype/range scaling to unit
luminance (auto-detected, overridable), the model's stored normalisation, nodata/NaN masking and
seam-free tiling for images larger than one tile. GeoTIFF scenes go through :meth:`Predictor.segment`
(streaming, see :mod:`dakd_edge.inference.segment`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.data import level
from dakd_edge.data.scaling import (
    InputDomainWarning,
    as_chw,
    domain_warning,
    guessed_scale_line,
    normalize,
    resolve_scale,
    to_unit,
    valid_mask,
)
from dakd_edge.errors import BackendUnavailable, InputError, Notice, in_api_words, user_stacklevel
from dakd_edge.inference.base import Backend
from dakd_edge.inference.tiling import Strip, TileConfig, TileGrid, TileStats, argmax0, stream_strips
from dakd_edge.meta import ModelMeta

NODATA_CLASS = 255
DEFAULT_OVERLAP = 64  # pixels shared by neighbouring tiles (half the tile at most)
_SAMPLE_PIXELS = 1 << 20  # pixels looked at to detect the input scaling
CPU_BATCH_PIXELS = 512 * 512  # pixels per backend call on the CPU (docs/tiles-batch-v2.json)
MIN_TILE = 32  # smallest --tile: below it the default CPU batch explodes (512^2 / 1^2 tiles per call)


def default_batch(device: str, tile: int) -> int:
    """Tiles per backend call when none is asked for.

    8 on a GPU. On the CPU, as many tiles as make up the pixels of one 512^2 tile: a call's fixed cost
    is then paid per 512^2 pixels whatever the tile, and memory stays that of one 512^2 tile. Measured
    on the 4096^2 scene (ONNX Runtime, 2 cores): 256 px tiles one per call cost ~17 % more than
    512 px tiles; four per call cost the same (median of five interleaved runs), with less memory.
    """
    if str(device).startswith("cuda"):
        return 8
    return max(1, CPU_BATCH_PIXELS // (tile * tile))


class Predictor:
    """Wraps a :class:`Backend` with scaling, normalisation, nodata handling and tiling.

    ``tile=None`` uses the tile size stored with the model (``meta.tile``). Images no larger than one
    tile run in a single backend call; larger ones are tiled with ``overlap`` and blended. The overlap
    is at most half a tile (more would let the blending ramps of opposite tile edges cross): a larger
    one is an error, never silently capped. ``None`` is the model's own ``meta.overlap`` when the tile is
    the model's, else :data:`DEFAULT_OVERLAP` or half a small tile. ``batch=None``: :func:`default_batch`.
    """

    def __init__(
        self,
        backend: Backend,
        tile: int | None = None,
        overlap: int | None = None,
        batch: int | None = None,
        window: str = "cosine",
        blend: str = "probs",
    ) -> None:
        self.backend = backend
        meta = backend.meta
        if tile is not None and tile < MIN_TILE:  # before the overlap: -64 was reported as "--overlap -32"
            raise InputError(f"--tile {tile} is too small: use at least {MIN_TILE} pixels")
        tile = int(tile if tile is not None else meta.tile)
        if overlap is None:
            own = meta.overlap is not None and tile == meta.tile
            overlap = meta.overlap if own else min(DEFAULT_OVERLAP, tile // 2)
        if not 0 <= overlap <= tile // 2:
            raise InputError(
                f"--overlap {overlap} must be between 0 and half the tile ({tile} // 2 = {tile // 2})"
            )
        batch = default_batch(backend.device, tile) if batch is None else batch
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise InputError(f"--batch {batch!r} must be an integer >= 1")  # was TileConfig's ValueError
        self.closed = False
        self.tiling = TileConfig(tile=tile, overlap=int(overlap), batch=batch, window=window, blend=blend)

    @property
    def meta(self) -> ModelMeta:
        return self.backend.meta

    def __repr__(self) -> str:
        c = self.tiling
        return (
            f"Predictor({self.meta.name}, backend={self.backend.name}, device={self.backend.device}, "
            f"tile={c.tile}, overlap={c.overlap}, batch={c.batch})"
        )

    def stream(
        self,
        reader: Any,
        height: int,
        width: int,
        stats: TileStats | None = None,
        on_row: Any = None,
    ):
        """Strips of probabilities for ``reader(y0, y1, x0, x1) -> (normalised, valid)``; see ``stream_strips``."""
        if self.closed:
            raise BackendUnavailable(f"{self!r} was closed; load the model again")
        c = self.tiling
        grid = TileGrid.make(height, width, c.tile, c.overlap)
        return stream_strips(reader, grid, self.backend.predict, self.meta.num_classes, c, stats, on_row)

    def normalizer(self, scale: str, nodata: float | None):
        """Raw (C, h, W) rows -> (normalised float32, valid) with the model's normalisation.

        ``convert(raw, offset)`` adds ``offset`` ((h, w) unit luminance, e.g. a
        :class:`~dakd_edge.data.level.LevelTrend`'s) before normalising, clipped to [0, 1]."""
        norm = self.meta.normalization

        def convert(raw: np.ndarray, offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            ok = valid_mask(raw, nodata)
            unit = to_unit(raw, scale, norm)
            if offset is not None:
                unit = np.clip(unit + offset, 0.0, 1.0)
            return normalize(unit, norm, fill=True), ok

        return convert

    def predict_proba(
        self,
        image: np.ndarray,
        scale: str = "auto",
        nodata: float | None = None,
        flatten: bool = False,
        match_level: bool = False,
    ) -> np.ndarray:
        """Class probabilities ``(K, H, W)`` float32; NaN where the input is nodata or NaN.

        ``flatten=True`` removes the image's backscatter trend first, as ``segment --flatten`` does
        (:mod:`dakd_edge.data.level`; images under 1024 px are left as they are); ``match_level=True``
        also moves its sea level to the training level, as ``segment --match-level`` does."""
        with in_api_words():  # its errors and notices name the arguments, not CLI options
            (k, h, w), strips = self._strips(image, scale, nodata, flatten, match_level)
        out = np.full((k, h, w), np.nan, np.float32)
        for strip in strips:
            sh, sw = strip.valid.shape
            view = out[:, strip.y0 : strip.y0 + sh, strip.x0 : strip.x0 + sw]
            view[:, strip.valid] = strip.probs[:, strip.valid]
        return out

    def predict(
        self,
        image: np.ndarray,
        scale: str = "auto",
        nodata: float | None = None,
        flatten: bool = False,
        match_level: bool = False,
    ) -> np.ndarray:
        """Class ids ``(H, W)`` uint8; 255 where the input is nodata or NaN (``flatten``,
        ``match_level``: see :meth:`predict_proba`). Strip by strip: no (K, H, W) probabilities are
        held (a 4096^2 array peaked at ~430 MiB through them)."""
        with in_api_words():  # its errors and notices name the arguments, not CLI options
            (_, h, w), strips = self._strips(image, scale, nodata, flatten, match_level)
        cls = np.full((h, w), NODATA_CLASS, np.uint8)
        for strip in strips:
            sh, sw = strip.valid.shape
            view = cls[strip.y0 : strip.y0 + sh, strip.x0 : strip.x0 + sw]
            view[strip.valid] = argmax0(strip.probs)[strip.valid]
        return cls

    def _strips(
        self, image: np.ndarray, scale: str, nodata: float | None, flatten: bool, match_level: bool
    ) -> tuple[tuple[int, int, int], Iterable[Strip]]:
        """((K, H, W), the finished strips of an array): its scaling resolved and said, as segment says
        it, before the first strip runs; no strips for an array with no valid pixel."""
        raw = as_chw(np.ma.getdata(image), self.meta.in_chans)
        k, (h, w) = self.meta.num_classes, raw.shape[1:]
        ok_all = valid_mask(raw, nodata) & ~_masked(image, (h, w))
        if not ok_all.any():  # as segment gives an all-nodata scene: all-nodata outputs, no error
            return (k, h, w), ()
        step = max(1, int(np.sqrt(h * w / _SAMPLE_PIXELS)))
        sample = raw[:, ::step, ::step][:, ok_all[::step, ::step]]
        guessed = scale == "auto" and np.issubdtype(sample.dtype, np.floating)
        scale = resolve_scale(sample, scale)
        if guessed:  # as segment says it: 0..1 luminance read as power lost every slick, silently
            warnings.warn(Notice(guessed_scale_line(sample, scale)), stacklevel=user_stacklevel())
        domain = domain_warning(
            to_unit(sample, scale, self.meta.normalization), self.meta.input_stats, scale=scale
        )
        if domain is not None:
            warnings.warn(InputDomainWarning(domain), stacklevel=user_stacklevel())
        convert = self.normalizer(scale, nodata)
        trend = None
        if flatten or match_level:
            norm = self.meta.normalization

            def window(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
                part = raw[:, y0:y1, x0:x1]
                return to_unit(part, scale, norm).mean(axis=0), ok_all[y0:y1, x0:x1]

            target = level.sea_level_of(self.meta.input_stats) if match_level else None
            trend, _ = level.fit_scene(h, w, window, target)

        def reader(y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
            offset = None if trend is None else trend.offset(y0, y1, x0, x1)
            x, _ = convert(raw[:, y0:y1, x0:x1], offset)
            return x, ok_all[y0:y1, x0:x1]  # convert's validity, and the masked array's mask

        return (k, h, w), self.stream(reader, h, w)

    def segment(self, src: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
        """Segment a GeoTIFF scene to a class-id COG (streaming); see :func:`segment_scene`."""
        from dakd_edge.inference.segment import segment_scene

        with in_api_words():
            return segment_scene(self, src, out, **kwargs)

    def close(self) -> None:
        """Release the backend (ONNX Runtime session, TensorRT engine); predicting afterwards raises
        :class:`~dakd_edge.errors.BackendUnavailable`. Closing twice is harmless."""
        if not self.closed:
            self.closed = True
            self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _masked(image: Any, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) mask of a numpy masked array (a pixel masked in any band), all False otherwise."""
    m = np.ma.getmaskarray(image) if np.ma.isMaskedArray(image) else None
    if m is None or not m.any():
        return np.zeros(shape, bool)
    if m.ndim == 2:
        return m
    return m.any(axis=0) if m.shape[1:] == shape else m.any(axis=-1)
