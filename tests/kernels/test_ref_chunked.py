"""The exportable chunked scan (``chunk_size=``) against the sequential loop (values, last state, gradients)."""

from __future__ import annotations

import pytest
import torch

from dakd_edge.kernels import ref


def _inputs(b: int, d: int, n: int, length: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, length, generator=g).to(dtype)
    delta = (0.5 * torch.randn(b, d, length, generator=g)).to(dtype)
    A = -torch.exp(torch.randn(d, n, generator=g))  # real, negative (MambaVision: -exp(A_log))
    B = torch.randn(b, n, length, generator=g).to(dtype)
    C = torch.randn(b, n, length, generator=g).to(dtype)
    D = torch.randn(d, generator=g)
    delta_bias = 0.1 * torch.randn(d, generator=g)
    return u, delta, A, B, C, D, delta_bias


@pytest.mark.parametrize(
    ("length", "chunk"),
    [(1, 64), (7, 4), (49, 16), (64, 64), (100, 32), (33, 1)],
)
@pytest.mark.parametrize("softplus", [True, False])
def test_chunked_matches_reference(length: int, chunk: int, softplus: bool) -> None:
    u, delta, A, B, C, D, bias = _inputs(2, 6, 4, length)
    if not softplus:
        delta = delta.abs()  # the scan assumes non-negative step sizes
    y_ref, h_ref = ref.selective_scan_ref(u, delta, A, B, C, D, bias, softplus, return_last_state=True)
    y, h = ref.selective_scan_ref(
        u, delta, A, B, C, D, bias, softplus, return_last_state=True, chunk_size=chunk
    )
    err = (y - y_ref).abs().max().item()
    print(f"L={length} chunk={chunk} softplus={softplus}: max |dy| = {err:.2e}")
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_chunked_optional_args_and_dtype() -> None:
    u, delta, A, B, C, _, _ = _inputs(1, 3, 2, 20, seed=1)
    delta = delta.abs()
    y_ref = ref.selective_scan_ref(u, delta, A, B, C)
    y = ref.selective_scan_ref(u, delta, A, B, C, chunk_size=8)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    # Low-precision input: state kept in fp32, output in the input dtype.
    y16 = ref.selective_scan_ref(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), chunk_size=8)
    assert y16.dtype == torch.bfloat16
    ref16 = ref.selective_scan_ref(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16())
    torch.testing.assert_close(y16.float(), ref16.float(), atol=2e-2, rtol=2e-2)


def test_chunked_strong_decay_stays_finite() -> None:
    """Large |dt * A| (cumulative log decay ~ -1e4 per chunk) must give zeros, never inf/NaN."""
    u, delta, A, B, C, D, bias = _inputs(1, 4, 3, 64, seed=2)
    A = A * 200.0
    delta = delta + 5.0
    y_ref = ref.selective_scan_ref(u, delta, A, B, C, D, bias, True)
    y = ref.selective_scan_ref(u, delta, A, B, C, D, bias, True, chunk_size=64)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(
        ref.selective_scan_ref(u, delta.requires_grad_(), A, B, C, D, bias, True, chunk_size=8).sum(), delta
    )
    assert torch.isfinite(g).all()


def test_chunked_gradients_match_reference() -> None:
    args = _inputs(2, 4, 3, 37, seed=3)
    args = [a.requires_grad_() for a in args]  # both compute in fp32 whatever the input dtype
    y_ref = ref.selective_scan_ref(*args, True)
    y = ref.selective_scan_ref(*args, True, chunk_size=16)
    w = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad((y_ref * w).sum(), args)
    g = torch.autograd.grad((y * w).sum(), args)
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D", "delta_bias"), g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"grad {name}: {m}")


def test_chunk_size_validated() -> None:
    u, delta, A, B, C, _, _ = _inputs(1, 2, 2, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        ref.selective_scan_ref(u, delta, A, B, C, chunk_size=0)
