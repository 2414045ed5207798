"""Bundled model files: safetensors weights + JSON metadata, and the matching ONNX export of them.

The bundled model is produced by the committed, seeded recipe ``python -m dakd_edge.train.recipes.bundled``
(SAROSS-Net edge trained on the SOS development subset + synthetic patches; oil vs background).
:func:`bundled_path` is the one place that decides which bundled file a command uses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED = "saross-edge-sos.safetensors"
# Test-subset metrics written by the recipe next to the weights (for the README / `dakd-edge models`).
BUNDLED_METRICS = "saross-edge-sos.metrics.json"
RECIPE = "python -m dakd_edge.train.recipes.bundled"


def bundled_path(prefer: str = "auto") -> Path:
    """The bundled model file for a backend.

    ``prefer="torch"`` needs the PyTorch checkpoint (export, training, the torch backend).
    ``"onnxruntime"`` takes the ONNX export installed beside the weights. ``"auto"`` takes it too
    (faster on CPU, and the only choice without PyTorch) when ONNX Runtime imports, else the checkpoint
    when PyTorch does: an install with PyTorch but without ONNX Runtime refused to segment at all.
    Raises :class:`~dakd_edge.errors.ModelFileError` naming the recipe when nothing usable is there.
    """
    from dakd_edge.errors import ModelFileError
    from dakd_edge.extras import available
    from dakd_edge.formats import ONNX, suffixes

    root = Path(__file__).parent

    def installed(kind: str) -> list[Path]:
        return [p for s in suffixes(kind) for p in sorted(root.glob(f"*{s}"))]

    onnx_files, ckpts = installed(ONNX.name), installed("torch")
    torch_ok = bool(ckpts) and importlib.util.find_spec("torch") is not None
    if onnx_files and (
        prefer == "onnxruntime" or (prefer == "auto" and (available("onnxruntime") or not torch_ok))
    ):
        return onnx_files[0]
    if ckpts and (prefer == "torch" or torch_ok):
        return ckpts[0]
    wanted = "*.safetensors (PyTorch)" if prefer == "torch" else "*.onnx or *.safetensors"
    raise ModelFileError(
        f"no bundled model found in {root} (expected {wanted}); pass a model path, train one with "
        f"`dakd-edge train`, or rebuild the bundled one with `{RECIPE}`"
    )


def installed_files() -> dict[str, Path]:
    """Every file the package ships as its bundled model (weights, ONNX, metrics), by a name for
    messages: outputs must never land on them, whichever model a run uses (a class map written over
    the weights would break every later run)."""
    root = Path(__file__).parent
    return {
        f"bundled model file {p.name}": p for p in sorted(root.iterdir()) if p.is_file() and p.suffix != ".py"
    }
