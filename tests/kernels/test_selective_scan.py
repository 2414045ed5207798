"""Triton selective scan vs the PyTorch reference: values and every gradient, dtype x shape."""

from __future__ import annotations

import pytest
import torch

from dakd_edge.kernels import dispatch, ref
from tests.kernels._parity import DTYPES, compare, leaves

pytest.importorskip("triton", minversion="3.4")  # the kernels need triton.knobs

from dakd_edge.kernels.selective_scan import _scan_bwd, selective_scan_fn  # noqa: E402

FP32_ONLY = {"A", "D", "delta_bias"}  # MambaVision passes these in fp32 whatever the autocast dtype


def _inputs(b, d, length, n, has_d=True, strided_delta=False, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    delta = 0.5 * (r(b, length, d).transpose(1, 2) if strided_delta else r(b, d, length))
    return {
        "u": r(b, d, length),
        "delta": delta,
        "A": -(torch.rand(d, n, generator=g) * 2 + 0.1),
        "B": r(b, n, length),
        "C": r(b, n, length),
        "D": r(d) if has_d else None,
        "delta_bias": 0.5 * r(d) if has_d else None,
    }


def _run(fn, x: dict, softplus: bool, gy: torch.Tensor):
    y = fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["delta_bias"], softplus)
    names = [k for k, v in x.items() if v is not None]
    grads = torch.autograd.grad(y, [x[k] for k in names], gy.to(y.dtype))
    return y, dict(zip(names, grads, strict=True))


def _check(base: dict, dtype: torch.dtype, device: str, softplus: bool) -> dict[str, float]:
    base = {k: None if v is None else v.to(device) for k, v in base.items()}
    low = {k: (v if k in FP32_ONLY or v is None else v.to(dtype)) for k, v in base.items()}
    x_k, x_t = leaves(low), leaves(low)
    x_32 = leaves({k: None if v is None else v.float() for k, v in low.items()})
    gy = torch.randn(base["u"].shape, generator=torch.Generator().manual_seed(1)).to(device).to(dtype)
    y_k, g_k = _run(selective_scan_fn, x_k, softplus, gy)
    y_t, g_t = _run(ref.selective_scan_ref, x_t, softplus, gy)
    y_32, g_32 = _run(ref.selective_scan_ref, x_32, softplus, gy.float())
    assert y_k.dtype == dtype and y_k.shape == y_32.shape
    errs = {"y": compare("y", y_k, y_t, y_32, dtype)}
    for name in g_32:
        assert g_k[name].dtype == x_k[name].dtype, f"d{name} dtype"
        errs[name] = compare("d" + name, g_k[name], g_t[name], g_32[name], dtype)
    return errs


SHAPES = [
    # (batch, D, L, N, has D/bias, softplus, strided delta)
    pytest.param((2, 5, 7, 8, True, True, False), id="N8-L7-D5"),
    pytest.param((1, 3, 1, 16, False, False, False), id="L1-N16-noD"),
    pytest.param((2, 70, 12, 16, True, True, True), id="D70-2blocks-N16-strided"),
    pytest.param((1, 17, 5, 3, True, False, False), id="N3-nosoftplus"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape", SHAPES)
def test_scan_matches_reference(shape, dtype, device):
    b, d, length, n, has_d, softplus, strided = shape
    _check(_inputs(b, d, length, n, has_d, strided), dtype, device, softplus)


@pytest.mark.parametrize("chunk", [1, 2, 50])
def test_backward_chunking_is_exact(chunk, device):
    """Any checkpoint spacing (1 step, uneven, longer than L) gives the same gradients."""
    x = {k: None if v is None else v.to(device) for k, v in _inputs(2, 6, 9, 8).items()}
    dy = torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(5)).to(device)
    base = _scan_bwd(dy, *x.values(), True)
    other = _scan_bwd(dy, *x.values(), True, chunk=chunk)
    for a, c in zip(base, other, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


def test_large_decay_range_is_stable(device):
    """Huge dt (decay underflows to 0) and tiny dt: the recomputing backward stays finite and exact."""
    x = _inputs(1, 4, 10, 8, seed=3)
    x["delta"] = torch.tensor([40.0, -30.0, 0.0, 5.0])[None, :, None].expand(1, 4, 10).contiguous()
    _check(x, torch.float32, device, softplus=True)


def test_empty_sequence(device):
    x = {k: None if v is None else v.to(device) for k, v in _inputs(2, 3, 0, 8).items()}
    y = selective_scan_fn(*x.values(), True)
    assert y.shape == (2, 3, 0)


def test_rejects_bad_shapes():
    x = _inputs(1, 4, 5, 8)
    with pytest.raises(ValueError, match="N <= 16"):
        selective_scan_fn(x["u"], x["delta"], torch.zeros(4, 17), x["B"], x["C"])
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_fn(x["u"], x["delta"], x["A"], x["B"][:, :, :2], x["C"])


def test_dispatch_routes_to_kernel_and_keeps_public_names(device):
    import dakd_edge.kernels as kernels

    x = {k: None if v is None else v.to(device) for k, v in _inputs(1, 4, 6, 8).items()}
    y = kernels.selective_scan(*x.values(), True, kernels="triton")
    torch.testing.assert_close(y, ref.selective_scan_ref(*x.values(), True), rtol=1e-5, atol=1e-5)
    # Importing the kernel submodule must not shadow the package's public function.
    assert kernels.selective_scan is dispatch.selective_scan


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize(
    "shape",
    [(64, 256, 196, 8), (36, 512, 49, 8), (3, 100, 300, 16)],
    ids=["saross-b-stage3", "saross-b-stage4", "odd-long"],
)
def test_scan_gpu_saross_shapes(shape, dtype):
    b, d, length, n = shape
    _check(_inputs(b, d, length, n, strided_delta=True), dtype, "cuda", softplus=True)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [90])
def test_all_kernels_compile_for_gpu(arch):
    """Ahead-of-time cubins for sm_90 (no GPU needed): the interpreter alone cannot catch GPU-only errors."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("_aot_compile.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(arch)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("ok ") == 9, proc.stdout


def test_softplus_keeps_log1p_accuracy(device):
    """dt = softplus(raw) for strongly negative raw (dt biases start near -7): plain log(1 + exp) in
    fp32 was up to 1e-2 off torch's log1p there. With L = N = 1 and u = B = C = 1, y is dt itself."""
    raw = torch.tensor([-16.0, -14.0, -12.0, -10.0, -8.0, -6.9, -5.0, -1.0, 0.0, 3.0, 19.0, 25.0])
    d = raw.numel()
    one = torch.ones(1, 1, 1, device=device)
    y = selective_scan_fn(
        torch.ones(1, d, 1, device=device), raw.to(device)[None, :, None], -torch.ones(d, 1, device=device),
        one, one, None, None, True,
    )  # fmt: skip
    expected = torch.nn.functional.softplus(raw.double())
    rel = ((y.flatten().cpu().double() - expected) / expected).abs().max().item()
    print(f"softplus max relative error {rel:.2e}")
    assert rel <= 1e-6


def test_strided_and_broadcast_d_and_delta_bias(device):
    """D / delta_bias are read with their strides (a view such as ``p[::2]``), and a (1,) D broadcasts
    as in the reference; their gradients keep their shapes. The kernels used to index them with unit
    stride: wrong values for a view, reads past the end for a (1,) tensor."""
    x = {k: None if v is None else v.to(device) for k, v in _inputs(2, 5, 6, 4, seed=7).items()}
    g = torch.Generator().manual_seed(8)
    variants = {
        "views": (torch.randn(10, generator=g)[::2], torch.randn(10, generator=g)[1::2]),
        "broadcast": (torch.tensor([0.7]), torch.tensor([-0.3])),
    }
    dy = torch.randn(2, 5, 6, generator=g).to(device)
    for name, (dskip, bias) in variants.items():
        outs = []
        for fn in (selective_scan_fn, ref.selective_scan_ref):
            xs = leaves({**x, "D": dskip.to(device), "delta_bias": bias.to(device)})
            y = fn(*xs.values(), True)
            grads = torch.autograd.grad(y, list(xs.values()), dy)
            outs.append((y, *grads))
        for a, b in zip(*outs, strict=True):
            assert a.shape == b.shape, name
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    with pytest.raises(ValueError, match="one value per channel"):
        selective_scan_fn(*list(x.values())[:5], torch.ones(3, device=device))


def test_double_backward_raises_instead_of_dropping_terms(device):
    """The backward kernel is first-order only: differentiating its output must raise. It used to
    return gradients without a graph, so a double backward silently lost the scan's second-order terms."""
    x = leaves({k: None if v is None else v.to(device) for k, v in _inputs(1, 3, 4, 2).items()})
    y = selective_scan_fn(*x.values(), True)
    (gu,) = torch.autograd.grad(y.square().sum(), x["u"], create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        (gu.square().sum() + x["u"].square().sum()).backward()


def test_nan_delta_propagates_through_softplus(device):
    """softplus clamped with tl.minimum(x, 20), which returns 20 for NaN: a NaN delta gave a finite
    dt = 20 and finite outputs (the reference, and the gradients, say NaN)."""
    u, A, B = torch.ones(1, 1, 3, device=device), -torch.ones(1, 1, device=device), torch.ones(1, 1, 3)
    delta = torch.tensor([[[0.0, float("nan"), 0.0]]], device=device)
    y = selective_scan_fn(u, delta, A, B.to(device), B.to(device), None, None, True)
    expected = ref.selective_scan_ref(u, delta, A, B.to(device), B.to(device), None, None, True)
    assert torch.isnan(expected[0, 0, 1:]).all()
    torch.testing.assert_close(y, expected, equal_nan=True, rtol=1e-6, atol=1e-6)
