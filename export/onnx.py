"""PyTorch -> ONNX export with metadata, graph checks, optional simplification and a parity gate.

Uses the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): it handles the custom
``dakd_edge`` nodes through ``autograd.Function.symbolic`` and records the window-padding arithmetic
on shapes as graph ops, so one file serves any batch and H x W. The file appears at its final path
only after ``onnx.checker`` and the parity check passed (written to a temporary sibling, then renamed).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.atomic import atomic_path, check_free_space, check_output, file_sha256, is_disk_full
from dakd_edge.errors import BackendUnavailable, ExportError, InputError, ModelFileError, Notice
from dakd_edge.export import parity

# ModelMeta JSON and the ops mode live in ModelProto.metadata_props under the keys of formats.ONNX.
from dakd_edge.formats import (
    AUTO,
    ENGINE,
    EXPORT_SCAN_CHUNK,
    INPUT_NAME,
    ONNX,
    OPS_MODES,
    OUTPUT_NAME,
    suffixes,
)
from dakd_edge.meta import ModelMeta

# 17 by default. 16 is accepted for TensorRT 8.5 (JetPack 5), whose ONNX parser has no LayerNormalization
# importer: from opset 17 the torch exporter writes LayerNorm as that one node, at 16 as basic ops
# (ReduceMean/Sub/Pow/Sqrt/Div), with the same parity.
MIN_OPSET = 16
DEFAULT_OPSET = 17
# Size traced for dynamic exports: odd, and its stage sizes (91, 46, 23, 12, 6) are multiples of no window
# (7, 8, 14), so every pad / resize branch is recorded (amounts stay symbolic: zero where none is needed).
TRACE_SIZE = 181


@dataclass
class OnnxExportConfig:
    """How to export. ``shape=None`` gives dynamic batch, height and width.

    The defaults here are the ``dakd-edge export`` defaults (the CLI reads them from this class).
    """

    ops: str = "standard"
    opset: int = DEFAULT_OPSET
    shape: tuple[int, int, int, int] | None = None
    simplify: bool = False
    parity: bool = True
    parity_size: int | None = None  # square side of the deterministic parity input (dynamic export)
    image: str | None = None  # optional real image for a second parity input
    scan_chunk: int = EXPORT_SCAN_CHUNK  # chunk length of the standard-ops scan (formats.EXPORT_SCAN_CHUNK)

    def __post_init__(self) -> None:
        if self.ops not in OPS_MODES:
            raise ExportError(f"--ops must be one of {', '.join(OPS_MODES)}, got {self.ops!r}")
        if self.opset < MIN_OPSET:
            raise ExportError(f"opset {self.opset} is too old; dakd-edge exports opset >= {MIN_OPSET}")
        if self.scan_chunk < 1:
            raise ExportError(f"--scan-chunk must be >= 1, got {self.scan_chunk}")
        if self.shape is not None and (len(self.shape) != 4 or min(self.shape) < 1):
            raise ExportError(f"--shape must be NxCxHxW with positive sizes, got {self.shape}")


@dataclass
class OnnxExportReport:
    path: str
    ops: str
    opset: int
    dynamic: bool
    simplified: bool
    nodes: int
    op_types: dict[str, int]
    seconds: float
    parity: list[parity.ParityResult] = field(default_factory=list)
    sha256: str | None = None  # of the written file: CI artifact checks and caches
    size_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parity"] = [p.to_dict() for p in self.parity]
        return d


def choose_ops(requested: str, target: str = ONNX.name) -> tuple[str, str | None]:
    """The op mode to export with for ``--ops requested`` and a target format; returns ``(mode, note)``.

    ``standard`` / ``plugin`` are kept as asked, ``auto`` decides: ONNX files get standard ops (they run
    on any runtime); engines get the ``dakd_edge`` plugin nodes where the TensorRT plugins are usable on
    this machine, else standard ops with a ``note`` saying why. An engine asked for with ``plugin`` on a
    machine whose TensorRT cannot serve the plugins is an :class:`ExportError` with the reason.
    """
    if requested != AUTO and requested not in OPS_MODES:
        raise ExportError(f"--ops must be one of {', '.join((AUTO, *OPS_MODES))}, got {requested!r}")
    if target != ENGINE.name or requested == "standard":
        return ("standard" if requested == AUTO else requested), None
    from dakd_edge.export.plugins import plugins_status

    usable, why = plugins_status()
    if usable:
        return "plugin", None
    if requested == "plugin":
        raise ExportError(f"--ops plugin: {why}")
    return "standard", f"{why}; building the engine from standard ops"


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x1x512x512"`` -> ``(1, 1, 512, 512)``."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ExportError(f"--shape must look like 1x1x512x512 (N x C x H x W), got {text!r}")
    return dims  # type: ignore[return-value]


def meta_for_shape(meta: ModelMeta, shape: tuple[int, int, int, int] | None) -> tuple[ModelMeta, str | None]:
    """The metadata to store with an export of fixed ``shape``, and a note when it differs from ``meta``.

    A file fixed at a size below the model's tile cannot run that tile: ``segment --model`` (which tiles at
    the stored ``tile``) refused every image larger than the fixed size. Such files record the largest
    square tile they run, with the overlap kept within half of it."""
    if shape is None or min(shape[2], shape[3]) >= meta.tile:
        return meta, None
    side = min(shape[2], shape[3])
    overlap = meta.overlap if meta.overlap is None else min(meta.overlap, side // 2)
    note = (
        f"--shape {shape[2]}x{shape[3]} is smaller than the model's tile {meta.tile}: the file records "
        f"tile {side}" + (f" (overlap {overlap})" if overlap is not None else "") + ", which segment uses"
    )
    return dataclasses.replace(meta, tile=side, overlap=overlap), note


def check_opset(opset: int) -> None:
    """Refuse an opset outside what this exporter writes, before the model loads: past the newest one
    the TorchScript exporter printed ~1,400 lines of graph before its error."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; dakd-edge exports opset >= {MIN_OPSET}")
    newest = max_opset()
    if newest is not None and opset > newest:
        raise ExportError(f"--opset {opset} is newer than this torch/onnx can export (at most {newest})")


def max_opset() -> int | None:
    """Newest opset of both the TorchScript exporter (``dynamo=False``) and onnx; None if unknown."""
    try:
        import onnx
        from torch.onnx import _constants  # private: guarded, the check is skipped when it moves
    except ImportError:
        return None
    newest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)
    return None if newest is None else min(int(newest), onnx.defs.onnx_opset_version())


def load_for_export(
    spec: str | None, num_classes: int = 2, in_chans: int = 1, **cfg: Any
) -> tuple[Any, ModelMeta]:
    """Model + metadata from a checkpoint path, a registry name (random init, ``cfg`` overrides) or
    the bundled model."""
    import torch

    from dakd_edge.models.checkpoint import load_model_file

    if spec is None:
        from dakd_edge.weights import bundled_path

        return load_model_file(bundled_path("torch"))
    p = Path(spec)
    if p.suffix.lower() in suffixes("torch") or p.exists():
        if not p.is_file():
            raise ModelFileError(f"model file not found: {p}")
        return load_model_file(p)
    from dakd_edge.registry import create_model

    if num_classes < 1 or in_chans < 1:  # create_model's ValueError was a traceback
        raise InputError(f"--num-classes and input channels must be >= 1, got {num_classes} and {in_chans}")
    torch.manual_seed(0)  # reproducible random init: registry names are for CI tests of the export
    model = create_model(spec, num_classes=num_classes, in_chans=in_chans, **cfg).eval()
    meta = ModelMeta.default_for(
        spec, num_classes, in_chans, arch=dict(cfg), extra={"weights": "random-init"}
    )
    return model, meta


def export_onnx(
    model: Any,
    meta: ModelMeta,
    out: str | Path,
    cfg: OnnxExportConfig | None = None,
    overwrite: bool = False,
    bundled_ok: bool = False,
) -> OnnxExportReport:
    """Export ``model`` to ``out``; raises :class:`ExportError` when checks or parity fail.

    ``bundled_ok`` lets ``out`` be the package's bundled ONNX (only the recipe that installs it)."""
    import onnx
    import torch

    from dakd_edge.export import nodes  # noqa: F401 - registers the plugin graph nodes with the kernels
    from dakd_edge.kernels.dispatch import export_ops

    cfg = cfg or OnnxExportConfig()
    check_opset(cfg.opset)
    check_output(out, overwrite, bundled_ok)
    if not getattr(type(model), "exportable", True):
        raise ExportError(f"model {meta.name!r} is not marked exportable")
    stored, note = meta_for_shape(meta, cfg.shape)
    if note:
        warnings.warn(Notice(note), stacklevel=2)
    t0 = time.perf_counter()
    model = model.eval().float().cpu()
    shape = cfg.shape or (1, meta.in_chans, TRACE_SIZE, TRACE_SIZE)
    if shape[1] != meta.in_chans:
        raise ExportError(f"--shape has {shape[1]} channels but the model takes {meta.in_chans}")
    sample = torch.from_numpy(parity.deterministic_input(shape, seed=1))
    dynamic = cfg.shape is None
    axes = {0: "batch", 2: "height", 3: "width"}
    weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    check_free_space(Path(out).parent, weights, str(out))  # the file holds every weight in fp32
    with atomic_path(out, overwrite, bundled_ok) as tmp:
        with warnings.catch_warnings(), torch.no_grad(), export_ops(cfg.ops, cfg.scan_chunk):
            # Shape-dependent Python ints (window tokens) are meant to be constants; the TorchScript
            # exporter's deprecation notice is not actionable for users.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    (sample,),
                    str(tmp),
                    dynamo=False,
                    opset_version=cfg.opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
                    custom_opsets={"dakd_edge": 1} if cfg.ops == "plugin" else None,
                    do_constant_folding=True,
                )
            except Exception as e:  # the exporter raises many types; name the model and the mode
                if is_disk_full(e):  # not the graph's fault: atomic_path words it ("no space left on")
                    raise
                raise ExportError(
                    _export_failure(meta.name, cfg, e, getattr(model, "export_shapes", None))
                ) from e
        proto = onnx.load(str(tmp))
        if cfg.simplify:
            proto = _simplify(proto)
        dims = proto.graph.output[0].type.tensor_type.shape.dim
        if dynamic and len(dims) == 4:  # the exporter leaves it symbolic: runtimes can then check it
            dims[1].dim_value = meta.num_classes
        _set_metadata(proto, stored, cfg.ops)
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"exported graph failed onnx.checker: {e}") from e
        results: list[parity.ParityResult] = []
        if cfg.parity:
            results = check_parity(model, meta, proto, cfg)
            failed = [r for r in results if not r.passed]
            if failed:
                raise ExportError("; ".join(r.line() for r in failed))
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        key = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
        counts[key] = counts.get(key, 0) + 1
    return OnnxExportReport(
        path=str(out),
        ops=cfg.ops,
        opset=cfg.opset,
        dynamic=dynamic,
        simplified=cfg.simplify,
        nodes=len(proto.graph.node),
        op_types=dict(sorted(counts.items())),
        seconds=time.perf_counter() - t0,
        parity=results,
        sha256=file_sha256(out),
        size_bytes=Path(out).stat().st_size,
    )


def check_parity(
    model: Any, meta: ModelMeta, onnx_model: Any, cfg: OnnxExportConfig
) -> list[parity.ParityResult]:
    """Run the exported file and PyTorch on the deterministic input (and the image, if given)."""
    tol = parity.TOLERANCES["fp32"]
    if cfg.shape is not None:
        inputs = [("deterministic", parity.deterministic_input(cfg.shape, seed=0))]
    else:
        # A dynamic graph is checked at two sizes: a tile-like one and an odd one that needs window
        # padding and a final resize. Plugin graphs run in ONNX's (slow, pure numpy) reference
        # evaluator, so their inputs stay small.
        side = cfg.parity_size or (64 if cfg.ops == "plugin" else min(meta.tile, 256))
        odd = max(side - 19, 9) | 1
        inputs = [
            ("deterministic", parity.deterministic_input((1, meta.in_chans, side, side), seed=0)),
            ("deterministic-odd", parity.deterministic_input((1, meta.in_chans, odd, side - 8), seed=1)),
        ]
    if cfg.image:
        inputs.append((Path(cfg.image).name, parity.image_input(cfg.image, meta, cfg.shape)))
    run = onnx_runner(onnx_model)
    results = []
    for name, x in inputs:
        results.append(parity.compare(parity.torch_logits(model, x), run(x), tol, input_name=name))
    return results


def onnx_runner(onnx_model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> logits`` for an ONNX file or ModelProto: ONNX Runtime (CPU), or onnx's reference
    evaluator with the numpy ``dakd_edge`` ops when the graph holds plugin nodes."""
    import onnx

    proto = onnx_model if isinstance(onnx_model, onnx.ModelProto) else onnx.load(str(onnx_model))
    if any(n.domain == "dakd_edge" for n in proto.graph.node):
        from onnx.reference import ReferenceEvaluator

        from dakd_edge.export.nodes import reference_ops

        ref = ReferenceEvaluator(proto, new_ops=reference_ops())
        return lambda x: np.asarray(ref.run(None, {INPUT_NAME: x})[0], dtype=np.float32)
    try:
        import onnxruntime as ort
    except ImportError as e:
        from dakd_edge.extras import install_hint

        raise BackendUnavailable(f"onnxruntime is not installed: {install_hint('runtime')}") from e
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {INPUT_NAME: x})[0]


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Logits of the ONNX file at ``path`` for one input batch."""
    return onnx_runner(path)(x)


def read_metadata(path: str | Path) -> tuple[ModelMeta, str]:
    """(ModelMeta, ops mode) stored in an ONNX file by :func:`export_onnx`."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if ONNX.meta_key not in props:
        raise ModelFileError(
            f"{path} has no dakd-edge metadata ({ONNX.meta_key}); was it exported by dakd-edge?"
        )
    return ModelMeta.from_json(props[ONNX.meta_key], source=path), props.get(ONNX.ops_key, "standard")


def _export_failure(name: str, cfg: OnnxExportConfig, e: Exception, shapes: str | None = None) -> str:
    # The TorchScript exporter appends the whole traced graph to some messages: keep the reason only.
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("%")]
    key = [ln for ln in lines if ln.startswith(("Unsupported", "RuntimeError", "Error")) or "rror:" in ln]
    reason = ((key or lines or [type(e).__name__])[0]).split(" Please feel free")[0][:400]
    if shapes:  # the model says what it exports at (PSPNet: multiples of 96)
        hint = f" ({name} exports only at {shapes})"
    else:
        hint = " (dynamic H x W unsupported by an op here? try a fixed --shape)" if cfg.shape is None else ""
    return f"ONNX export of {name!r} (--ops {cfg.ops}) failed: {reason}{hint}"


def _set_metadata(proto: Any, meta: ModelMeta, ops: str) -> None:
    from dakd_edge import __version__

    props = {ONNX.meta_key: meta.to_json(), ONNX.ops_key: ops, "dakd_edge.version": __version__}
    keep = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "dakd-edge"
    proto.producer_version = __version__
    proto.doc_string = json.dumps({"model": meta.name, "classes": list(meta.class_names), "ops": ops})


def _simplify(proto: Any) -> Any:
    try:
        import onnxslim
    except ImportError as e:
        raise BackendUnavailable("--simplify needs onnxslim (pip install onnxslim)") from e
    try:
        return onnxslim.slim(proto)
    except Exception as e:  # onnxslim raises assorted errors on graphs it cannot handle
        raise ExportError(f"onnxslim could not simplify the graph: {e}") from e
