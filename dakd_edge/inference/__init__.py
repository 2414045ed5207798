"""Inference: backends (torch / onnxruntime / tensorrt), tiling, GeoTIFF I/O, vectorisation.

Torch-free by design except :mod:`.backends`' torch backend, which imports torch lazily. :func:`load`
is the entry point: a model file (or the bundled model) -> its backend -> a :class:`.predictor.Predictor`.
Dependencies point one way: this package level builds on :mod:`.predictor` and :mod:`.backends`, and
neither of those imports back up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dakd_edge.inference.predictor import Predictor


def load(
    path: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str = "cpu",
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    **kw: Any,
) -> Predictor:
    """A :class:`~dakd_edge.inference.predictor.Predictor` for a model file (``None``: bundled model).

    ``backend="auto"`` picks from the suffix (:mod:`dakd_edge.formats`): ``.onnx`` -> ONNX Runtime,
    ``.engine`` -> TensorRT, ``.safetensors``/``.pt`` -> PyTorch. ``kw`` goes to the backend
    (``kernels=``, ``providers=``, ...); ``tile``/``overlap``/``batch`` to the predictor's tiling.
    """
    from dakd_edge.inference.backends import open_backend
    from dakd_edge.inference.predictor import Predictor
    from dakd_edge.weights import bundled_path

    if path is None:
        path = bundled_path(backend)
    return Predictor(open_backend(path, backend, device, **kw), tile=tile, overlap=overlap, batch=batch)
