"""dakd-edge: oil-spill segmentation of SAR imagery (DAKD + SAROSS-Net), built to run on the edge.

The top-level names are imported lazily so that `import dakd_edge` stays cheap and torch-free: the
ONNX Runtime / TensorRT runtime (``pip install -c constraints.txt -e ".[runtime]"`` from a clone)
never needs PyTorch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dakd_edge.errors import (
    BackendUnavailable,
    DakdError,
    DakdWarning,
    InputError,
    ModelFileError,
    Notice,
    OutputError,
)

if TYPE_CHECKING:
    from dakd_edge.data.scaling import InputDomainWarning
    from dakd_edge.inference.predictor import Predictor

__version__ = "0.1.0"

# ONNX Runtime 1.29 and later keep telemetry on Linux (a device id and an event database under
# ~/.cache/Microsoft/DeveloperTools, written when it is imported). constraints.txt pins 1.28, which has
# none. For a newer one installed beside us its documented opt-out is set unless the user set it: in
# 1.29-1.32 that stops its usage events but not those files (README: Export and TensorRT).
os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")

__all__ = [
    "BackendUnavailable",
    "DakdError",
    "DakdWarning",
    "InputDomainWarning",
    "InputError",
    "ModelFileError",
    "Notice",
    "OutputError",
    "Predictor",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "segment_scene",
]

# Names whose modules import numpy / rasterio: loaded on first use (module __getattr__, PEP 562).
_LAZY = {
    "InputDomainWarning": "dakd_edge.data.scaling",
    "Predictor": "dakd_edge.inference.predictor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dakd_edge' has no attribute {name!r}")


def create_model(name: str, num_classes: int = 2, in_chans: int = 1, **cfg: Any):
    """Build a registered model by name (see :func:`list_models`)."""
    from dakd_edge.registry import create_model as _create

    return _create(name, num_classes=num_classes, in_chans=in_chans, **cfg)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered models, optionally filtered by a glob pattern."""
    from dakd_edge.registry import list_models as _list

    return _list(pattern)


def load_model(
    path: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str = "cpu",
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    threads: int | None = None,
    **kwargs: Any,
) -> Predictor:
    """A :class:`Predictor` for a checkpoint, ONNX file or TensorRT engine; no path = the bundled model.

    ``backend``: ``"auto"`` (from the file's suffix), ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``;
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; ``tile`` / ``overlap`` / ``batch``: the
    tiling (default: the model's own, stored in its metadata); ``threads``: CPU threads for inference
    (PyTorch's setting is process-wide); ``kwargs`` go to the backend (``kernels=``, ``providers=``).
    Then ``predict(array)``, ``predict_proba(array)`` and ``segment(src, out)`` (GeoTIFFs and
    Sentinel-1 products of any size, streamed; :func:`segment_scene` lists its options)."""
    from dakd_edge.errors import in_api_words
    from dakd_edge.inference import load

    with in_api_words():
        return load(path, backend, device, tile, overlap, batch, threads=threads, **kwargs)


def segment_scene(
    model: Predictor, src: str | os.PathLike, out: str | os.PathLike, **options: Any
) -> dict[str, Any]:
    """Segment a GeoTIFF scene or Sentinel-1 product of any size into a class-id COG ``out`` (streamed);
    returns the report. ``model`` is a :func:`load_model` predictor; ``options`` are those of
    :func:`dakd_edge.inference.segment.segment_scene` (``probs=``, ``vector=``, ``land_mask=``,
    ``scale=``, ``min_area=``, ``overwrite=``, ...), and its errors and notices name them so
    (``scale=db``), not as the CLI's options. The same as ``model.segment(src, out, **options)``."""
    from dakd_edge.errors import in_api_words
    from dakd_edge.inference.segment import segment_scene as run

    with in_api_words():
        return run(model, src, out, **options)
