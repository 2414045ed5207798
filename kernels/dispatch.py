"""One switch decides which implementation of each hot op runs.

Precedence: explicit ``kernels=`` argument > :func:`use_kernels` context / :func:`set_kernels` >
``DAKD_KERNELS`` env var > ``"auto"``. ``auto`` runs the Triton kernels on CUDA tensors and the
PyTorch reference elsewhere; ``triton`` forces the kernels (on the CPU only under
``TRITON_INTERPRET=1``); ``torch`` forces the reference.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from dakd_edge.kernels import ref
from torch import Tensor

from dakd_edge.errors import BackendUnavailable

MODES = ("auto", "triton", "torch")
_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("dakd_kernels", default=None)


def _check(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"kernels must be one of {MODES}, got {mode!r}")
    return mode


def get_kernels() -> str:
    """The active mode: context/global setting, else ``DAKD_KERNELS``, else ``"auto"``."""
    return _check(_mode.get() or os.environ.get("DAKD_KERNELS", "auto") or "auto")


def set_kernels(mode: str | None) -> None:
    """Set the process-wide default mode (``None`` returns to the environment variable)."""
    _mode.set(None if mode is None else _check(mode))


@contextlib.contextmanager
def use_kernels(mode: str) -> Iterator[None]:
    token = _mode.set(_check(mode))
    try:
        yield
    finally:
        _mode.reset(token)


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(x: Tensor, kernels: str | None = None) -> str:
    """Concrete implementation (``"triton"`` or ``"torch"``) for a tensor under a mode."""
    mode = _check(kernels) if kernels is not None else get_kernels()
    if mode == "auto":
        return "triton" if x.is_cuda and _triton_available() else "torch"
    if mode == "triton":
        interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
        if not _triton_available():
            raise BackendUnavailable("kernels='triton' requested but triton is not installed")
        if not x.is_cuda and not interpret:
            raise BackendUnavailable(
                "kernels='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)"
            )
    return mode


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
    if resolve(u, kernels) == "triton":
        from dakd_edge.kernels.selective_scan import selective_scan_fn

        return selective_scan_fn(u, delta, A, B, C, D, delta_bias, delta_softplus)
    return ref.selective_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)


def transposed_attention(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, kernels: str | None = None
) -> Tensor:
    """CAFT transposed attention (see :func:`dakd_edge.kernels.ref.transposed_attention_ref`)."""
    if resolve(q, kernels) == "triton":
        from dakd_edge.kernels.transposed_attention import transposed_attention_fn

        return transposed_attention_fn(q, k, v, temperature)
    return ref.transposed_attention_ref(q, k, v, temperature)
