"""Dispatch while a graph is recorded: a Triton launch is no graph op, so tracing takes the reference."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dakd_edge.errors import BackendUnavailable
from dakd_edge.kernels import dispatch, ref

pytest.importorskip("triton")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:FutureWarning")

CUDA_TENSOR = SimpleNamespace(is_cuda=True)  # resolve() only asks where the tensor lives


def _scan_inputs(device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 3, 5, generator=g), 0.5 * torch.randn(1, 3, 5, generator=g)
    A = -torch.rand(3, 2, generator=g) - 0.1
    B, C = torch.randn(1, 2, 5, generator=g), torch.randn(1, 2, 5, generator=g)
    return [t.to(device) for t in (u, delta, A, B, C)]


def test_auto_takes_reference_while_tracing() -> None:
    """``auto`` picks the kernels for CUDA tensors, except inside torch.jit.trace / ONNX export."""
    assert dispatch.resolve(CUDA_TENSOR, "auto") == "triton"
    seen = []

    def f(t: torch.Tensor) -> torch.Tensor:
        seen.append(dispatch.resolve(CUDA_TENSOR, "auto"))
        return t * 2

    torch.jit.trace(f, torch.ones(2), check_trace=False)
    assert seen == ["torch"]


def test_forced_triton_refuses_tracing(device) -> None:
    """``triton`` under tracing says why it cannot run (it used to fail inside the launcher)."""
    u, delta, A, B, C = _scan_inputs(device)
    v = torch.randn(1, 1, 3, 8, device=device)

    def scan(x: torch.Tensor) -> torch.Tensor:
        return dispatch.selective_scan(x, delta, A, B, C, kernels="triton")

    def attention(x: torch.Tensor) -> torch.Tensor:
        return dispatch.transposed_attention(x, x, x, torch.ones(1, device=device), kernels="triton")

    for fn, arg in ((scan, u), (attention, v)):
        with pytest.raises(BackendUnavailable, match="traced or exported"):
            torch.jit.trace(fn, arg)


@pytest.mark.gpu
def test_auto_trace_on_cuda_records_reference() -> None:
    """On CUDA ``auto`` runs the kernels eagerly, and a trace of the same call holds the reference ops."""
    u, delta, A, B, C = _scan_inputs("cuda")
    traced = torch.jit.trace(lambda x: dispatch.selective_scan(x, delta, A, B, C, kernels="auto"), u)
    assert "PythonOp" not in str(traced.graph)
    torch.testing.assert_close(traced(u), ref.selective_scan_ref(u, delta, A, B, C), rtol=1e-5, atol=1e-5)
