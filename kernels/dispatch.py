"""One switch decides which implementation of each hot op runs.

Precedence: explicit ``kernels=`` argument > :func:`use_kernels` context / :func:`set_kernels` >
``DAKD_KERNELS`` env var > ``"auto"``. ``auto`` runs the Triton kernels on CUDA tensors and the
PyTorch reference elsewhere; ``triton`` forces the kernels (on the CPU only under
``TRITON_INTERPRET=1``); ``torch`` forces the reference.

While a graph is being recorded (``torch.jit.trace``, ``torch.onnx.export``, ``torch.export``) the
kernels cannot be: a launch is no graph op. There ``auto`` takes the reference and ``triton`` raises
:class:`~dakd_edge.errors.BackendUnavailable`; :func:`export_ops` picks exportable forms explicitly.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import Tensor

from dakd_edge.errors import BackendUnavailable
from dakd_edge.formats import EXPORT_SCAN_CHUNK, OPS_MODES
from dakd_edge.kernels import ref, support
from dakd_edge.kernels.support import triton_problem

MODES = ("auto", "triton", "torch")
# use_kernels() blocks (per thread / task); set_kernels() is the process-wide default under them.
_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("dakd_kernels", default=None)
_process_mode: str | None = None
# While exporting (see :func:`export_ops`): "standard" = plain ONNX ops, "plugin" = dakd_edge custom nodes.
EXPORT_OPS = OPS_MODES  # the table's op modes (dakd_edge.formats)
_export_ops: contextvars.ContextVar[str | None] = contextvars.ContextVar("dakd_export_ops", default=None)
_export_chunk: contextvars.ContextVar[int] = contextvars.ContextVar(
    "dakd_export_chunk", default=EXPORT_SCAN_CHUNK
)


def _check(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"kernels must be one of {MODES}, got {mode!r}")
    return mode


def get_kernels() -> str:
    """The active mode: :func:`use_kernels` block, else :func:`set_kernels`, else ``DAKD_KERNELS``, else
    ``"auto"``."""
    return _check(_mode.get() or _process_mode or os.environ.get("DAKD_KERNELS", "auto") or "auto")


def set_kernels(mode: str | None) -> None:
    """Set the process-wide default mode, every thread's (``None`` returns to the environment
    variable). It was a context variable: a thread pool's workers never saw it."""
    global _process_mode
    _process_mode = None if mode is None else _check(mode)


@contextlib.contextmanager
def use_kernels(mode: str) -> Iterator[None]:
    token = _mode.set(_check(mode))
    try:
        yield
    finally:
        _mode.reset(token)


def get_export_ops() -> str | None:
    """The active export mode, or ``None`` outside :func:`export_ops`."""
    return _export_ops.get()


@contextlib.contextmanager
def export_ops(mode: str, scan_chunk: int = EXPORT_SCAN_CHUNK) -> Iterator[None]:
    """Route the hot ops to exportable forms while tracing a model for ONNX (overrides ``kernels``).

    ``"standard"``: the scan becomes the chunked form of :func:`~dakd_edge.kernels.ref.selective_scan_ref`
    and the attention its reference, both plain ONNX ops any runtime (and TensorRT's parser) understands.
    ``"plugin"``: both become custom nodes in the ``dakd_edge`` ONNX domain (computed eagerly with the
    reference), which the TensorRT plugins in :mod:`dakd_edge.export.plugins` implement.
    ``scan_chunk``: chunk length of the standard-ops scan.
    """
    if mode not in EXPORT_OPS:
        raise ValueError(f"export ops must be one of {EXPORT_OPS}, got {mode!r}")
    if scan_chunk < 1:
        raise ValueError(f"scan_chunk must be >= 1, got {scan_chunk}")
    token, chunk_token = _export_ops.set(mode), _export_chunk.set(int(scan_chunk))
    try:
        yield
    finally:
        _export_ops.reset(token)
        _export_chunk.reset(chunk_token)


def _triton_available() -> bool:
    return triton_problem() is None


def _recording_graph() -> bool:
    """Whether a tracer or exporter is recording the ops run now (a kernel launch would not be)."""
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.7
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or (exporting is not None and exporting())
    )


def _interpreting() -> bool:
    """Whether the kernels run in Triton's CPU interpreter: fixed when their modules are imported
    (``TRITON_INTERPRET`` set later is not seen by them, and a CPU launch then fails on "0 active
    drivers"), so their own flag is asked once they are; before, the variable that will fix it."""
    common = sys.modules.get("dakd_edge.kernels._triton_common")
    if common is not None:
        return bool(common.INTERPRETED)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _why(unsupported: str | Callable[[], str | None] | None) -> str | None:
    """``unsupported`` asked only where it decides something: a callable is not called while a CPU
    tensor is traced (its shape comparisons made TracerWarnings on every traced call)."""
    return unsupported() if callable(unsupported) else unsupported


def resolve(
    x: Tensor, kernels: str | None = None, unsupported: str | Callable[[], str | None] | None = None
) -> str:
    """Concrete implementation (``"triton"`` or ``"torch"``) for a tensor under a mode.

    ``unsupported``: why the kernels cannot take this call (a dtype, a size), if they cannot: ``auto``
    then takes the reference, ``triton`` refuses it in one line (it failed to compile or launch, on a
    GPU only)."""
    mode = _check(kernels) if kernels is not None else get_kernels()
    if mode == "auto":
        usable = x.is_cuda and _triton_available() and not _recording_graph()
        return "triton" if usable and _why(unsupported) is None else "torch"
    if mode == "triton":
        if _recording_graph():
            raise BackendUnavailable(
                "kernels='triton' cannot run while a graph is traced or exported (a Triton launch is not "
                "recorded): use kernels='torch' / 'auto', or dakd_edge.kernels.dispatch.export_ops"
            )
        problem = triton_problem()
        if problem is not None:
            raise BackendUnavailable(f"kernels='triton' requested but {problem}")
        if not x.is_cuda and not _interpreting():
            raise BackendUnavailable(
                "kernels='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter, set "
                "before dakd_edge.kernels' Triton modules are imported)"
            )
        why = _why(unsupported)
        if why is not None:
            raise BackendUnavailable(f"kernels='triton': {why}; kernels='auto' or 'torch' runs it")
    return mode


# Graph nodes used under ``export_ops("plugin")``, registered by :mod:`dakd_edge.export.nodes` when it
# is imported: kernels never import export (the dependency points from export down to kernels).
_PLUGIN_NODES: dict[str, Callable[..., Tensor]] = {}


def register_plugin_node(op: str, fn: Callable[..., Tensor]) -> None:
    """Register the export-time graph node of ``op`` (``"selective_scan"``, ``"transposed_attention"``)."""
    _PLUGIN_NODES[op] = fn


def plugin_node(op: str) -> Callable[..., Tensor]:
    try:
        return _PLUGIN_NODES[op]
    except KeyError:
        raise BackendUnavailable(
            f"no export node registered for {op}: import dakd_edge.export.nodes before export_ops('plugin')"
        ) from None


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    kernels: str | None = None,
) -> Tensor:
    """Selective scan (see :func:`dakd_edge.kernels.ref.selective_scan_ref` for the maths)."""
    export = _export_ops.get()
    if export == "standard":
        return ref.selective_scan_ref(
            u, delta, A, B, C, D, delta_bias, delta_softplus, chunk_size=_export_chunk.get()
        )
    if export == "plugin":
        return plugin_node("selective_scan")(u, delta, A, B, C, D, delta_bias, delta_softplus)
    why = partial(support.unsupported, u, dstate=A.shape[-1] if A.dim() == 2 else None)
    if resolve(u, kernels, why) == "triton":
        from dakd_edge.kernels.selective_scan import selective_scan_fn

        return selective_scan_fn(u, delta, A, B, C, D, delta_bias, delta_softplus)
    return ref.selective_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)


def transposed_attention(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, kernels: str | None = None
) -> Tensor:
    """CAFT transposed attention (see :func:`dakd_edge.kernels.ref.transposed_attention_ref`)."""
    export = _export_ops.get()
    if export == "standard":
        return ref.transposed_attention_ref(q, k, v, temperature)
    if export == "plugin":
        return plugin_node("transposed_attention")(q, k, v, temperature)
    why = partial(support.unsupported, q, k, v, channels=q.shape[-2] if q.dim() == 4 else None)
    if resolve(q, kernels, why) == "triton":
        from dakd_edge.kernels.transposed_attention import transposed_attention_fn

        return transposed_attention_fn(q, k, v, temperature)
    return ref.transposed_attention_ref(q, k, v, temperature)
