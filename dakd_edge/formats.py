"""Model-file formats in one table: suffixes -> format -> runtime backend -> precisions -> metadata keys.

Every place that needs to know what a model file is (the runtime backends, export, ``bench``, checkpoint
I/O, the bundled-weights lookup, the batch worker) asks this module instead of listing suffixes or key
names itself, the way Ultralytics' ``export_formats()`` table serves both its exporter and its
benchmark. Standard library only: importable on a torch-free, numpy-free edge box.

The keys are on-disk contracts: files written by earlier versions (the bundled model among them) are
read with exactly these names, so they never change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dakd_edge.errors import InputError, ModelFileError

PRECISIONS = ("fp32", "fp16", "int8")
# How an ONNX graph expresses the two hot ops: plain ONNX ops (any runtime) or ``dakd_edge`` nodes that
# TensorRT runs as plugins. Stored in the file under ``Format.ops_key``; files without it are standard.
OPS_MODES = ("standard", "plugin")
# Chunk length of the standard-ops scan: the graph unrolls ``chunk`` steps inside all chunks at once, then
# ``L / chunk`` steps across them (same total work), so ~sqrt(L) keeps the graph smallest: 8 for
# MambaVision's 64-token windows (see ``kernels.ref.selective_scan_ref``, ``chunk_size``).
EXPORT_SCAN_CHUNK = 8
AUTO = "auto"  # "choose for me" value of --backend / --ops (from the suffix; by the export policy)
# Tensor names of every exported graph (ONNX and the engines built from it).
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Format:
    """One model-file format.

    ``suffixes``: lower-case, the first is the one written by default. ``backend``: the runtime that
    runs the file. ``precisions``: what that runtime can run it at (``bench`` skips the others).
    ``meta_key``: where the :class:`~dakd_edge.meta.ModelMeta` JSON is stored (see ``meta_where``);
    ``ops_key``: where the export op mode is stored (``None``: the format has none).
    """

    name: str
    suffixes: tuple[str, ...]
    backend: str
    precisions: tuple[str, ...]
    meta_key: str
    meta_where: str
    ops_key: str | None = None


SAFETENSORS = Format(
    "safetensors",
    (".safetensors",),
    "torch",
    ("fp32", "fp16"),
    meta_key="dakd_meta",
    meta_where="the safetensors header's __metadata__",
)
PYTORCH = Format(
    "pytorch",
    (".pt", ".pth"),
    "torch",
    ("fp32", "fp16"),
    meta_key="meta",
    meta_where="the top-level dict saved by torch.save",
)
ONNX = Format(
    "onnx",
    (".onnx",),
    "onnxruntime",
    ("fp32",),
    meta_key="dakd_edge.meta",
    meta_where="ModelProto.metadata_props",
    ops_key="dakd_edge.ops",
)
ENGINE = Format(
    "engine",
    (".engine", ".plan", ".trt"),
    "tensorrt",
    PRECISIONS,
    meta_key="meta",
    meta_where="the JSON sidecar <engine>.json",
    ops_key="ops",
)
FORMATS: tuple[Format, ...] = (SAFETENSORS, PYTORCH, ONNX, ENGINE)
# Runtime backends in table order (torch, onnxruntime, tensorrt), and the values --backend accepts.
BACKENDS: tuple[str, ...] = tuple(dict.fromkeys(f.backend for f in FORMATS))
BACKEND_CHOICES: tuple[str, ...] = (AUTO, *BACKENDS)


def suffixes(kind: str | None = None) -> tuple[str, ...]:
    """Suffixes of a format name or a backend name (``"torch"``: both checkpoint kinds); None: all."""
    found = tuple(s for f in FORMATS if kind in (None, f.name, f.backend) for s in f.suffixes)
    if not found:
        known = ", ".join(dict.fromkeys([f.name for f in FORMATS] + list(BACKENDS)))
        raise ValueError(f"unknown model-file kind {kind!r}; known: {known}")
    return found


def backend_precisions(backend: str) -> tuple[str, ...]:
    """Precisions a runtime backend runs (those of its formats), in :data:`PRECISIONS` order."""
    found = {p for f in FORMATS if f.backend == backend for p in f.precisions}
    if not found:
        raise ValueError(f"unknown runtime backend {backend!r}; known: {', '.join(BACKENDS)}")
    return tuple(p for p in PRECISIONS if p in found)


def format_of(path: str | os.PathLike) -> Format | None:
    """The format of a model file from its suffix (case-insensitive); None for any other file."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS if suffix in f.suffixes), None)


def check_model_files(*names: str | None) -> None:
    """A name with a model file's suffix that is not there, refused in one line (before torch's import,
    seconds); registry names (no model suffix) and None pass."""
    for name in names:
        if name is not None and format_of(name) is not None and not Path(name).exists():
            raise InputError(f"{name}: no such file")


def backend_for(path: str | os.PathLike, backend: str = AUTO) -> str:
    """Backend name for a model file: ``backend`` itself, or from the suffix when it is ``"auto"``."""
    if backend not in BACKEND_CHOICES:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    if backend != AUTO:
        return backend
    fmt = format_of(path)
    if fmt is None:
        raise ModelFileError(
            f"cannot tell the model format of {path}: expected .onnx, .engine or .safetensors/.pt"
        )
    return fmt.backend


def engine_sidecar(engine: str | os.PathLike) -> Path:
    """The JSON metadata file written beside an engine: ``<engine>.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")
