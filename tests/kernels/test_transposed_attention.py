"""Triton transposed (CAFT) attention vs the PyTorch reference: values and every gradient."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from dakd_edge.kernels import dispatch, ref
from tests.kernels._parity import DTYPES, compare, leaves

pytest.importorskip("triton", minversion="3.4")  # the kernels need triton.knobs

from dakd_edge.kernels.transposed_attention import _attn_fwd, transposed_attention_fn  # noqa: E402


def _inputs(b, heads, c, hw, temp_shape=None, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    temp = torch.rand(heads, generator=g) * 2 + 0.5
    return {
        "q": r(b, heads, c, hw),
        "k": r(b, heads, c, hw),
        "v": r(b, heads, c, hw),
        "temperature": temp.reshape(temp_shape or (heads,)),
    }


def _run(fn, x: dict, gy: torch.Tensor):
    y = fn(x["q"], x["k"], x["v"], x["temperature"])
    grads = torch.autograd.grad(y, list(x.values()), gy.to(y.dtype))
    return y, dict(zip(x, grads, strict=True))


def _check(base: dict, dtype: torch.dtype, device: str) -> None:
    base = {k: v.to(device) for k, v in base.items()}
    low = {k: (v if k == "temperature" else v.to(dtype)) for k, v in base.items()}
    x_k, x_t = leaves(low), leaves(low)
    x_32 = leaves({k: v.float() for k, v in low.items()})
    gy = torch.randn(base["v"].shape, generator=torch.Generator().manual_seed(1)).to(device).to(dtype)
    y_k, g_k = _run(transposed_attention_fn, x_k, gy)
    y_t, g_t = _run(ref.transposed_attention_ref, x_t, gy)
    y_32, g_32 = _run(ref.transposed_attention_ref, x_32, gy.float())
    assert y_k.dtype == dtype
    compare("out", y_k, y_t, y_32, dtype)
    for name in g_32:
        assert g_k[name].dtype == x_k[name].dtype and g_k[name].shape == x_k[name].shape
        compare("d" + name, g_k[name], g_t[name], g_32[name], dtype)


SHAPES = [
    # (batch, heads, c, HW): c below the 16-wide dot tile, c not a power of two, c over one 64-row block
    pytest.param((2, 2, 5, 37, None), id="c5-hw37"),
    pytest.param((1, 1, 20, 130, (1, 1, 1)), id="c20-hw130-temp111"),
    pytest.param((1, 2, 70, 33, (2, 1, 1)), id="c70-2rowblocks"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape", SHAPES)
def test_attention_matches_reference(shape, dtype, device):
    b, heads, c, hw, temp_shape = shape
    _check(_inputs(b, heads, c, hw, temp_shape), dtype, device)


@pytest.mark.parametrize("splits", [2, 5])
def test_hw_split_is_exact(splits, device):
    """Splitting HW over programs (partial Grams summed before the softmax) changes nothing."""
    x = {k: v.to(device) for k, v in _inputs(1, 2, 8, 300).items()}
    one = _attn_fwd(*x.values(), splits=1)
    many = _attn_fwd(*x.values(), splits=splits)
    for a, c in zip(one, many, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_rows_follow_normalize_eps(seed, device):
    """An all-zero q row / k row takes F.normalize's eps branch in value and gradient."""
    x = _inputs(1, 1, 6, 40, seed=2)
    x["q"][0, 0, 1] = 0.0
    x["k"][0, 0, 4] = 0.0
    x = {k: v.to(device) for k, v in x.items()}
    gy = torch.randn(x["v"].shape, generator=torch.Generator().manual_seed(seed)).to(device)
    y_k, g_k = _run(transposed_attention_fn, leaves(x), gy)
    y_r, g_r = _run(ref.transposed_attention_ref, leaves(x), gy)
    torch.testing.assert_close(y_k, y_r, rtol=1e-5, atol=1e-5)
    for name in g_r:
        # A zero row's gradient scales like 1/eps (~1e12) and its entries cancel, so each row is
        # compared against its own magnitude.
        row_scale = g_r[name].abs().amax(dim=-1, keepdim=True) if g_r[name].dim() == 4 else g_r[name].abs()
        err = (g_k[name] - g_r[name]).abs()
        assert torch.isfinite(g_k[name]).all(), name
        assert (err <= 1e-5 * row_scale + 1e-6).all(), (
            f"d{name}: worst {(err / (row_scale + 1e-12)).max():.2e}"
        )


def test_rejects_bad_inputs():
    x = _inputs(1, 2, 4, 16)
    with pytest.raises(ValueError, match="one per head"):
        transposed_attention_fn(x["q"], x["k"], x["v"], torch.ones(3))


def test_dispatch_routes_to_kernel_and_keeps_public_names(device):
    import dakd_edge.kernels as kernels

    x = {k: v.to(device) for k, v in _inputs(1, 2, 4, 16).items()}
    y = kernels.transposed_attention(*x.values(), kernels="triton")
    torch.testing.assert_close(y, ref.transposed_attention_ref(*x.values()), rtol=1e-5, atol=1e-6)
    assert kernels.transposed_attention is dispatch.transposed_attention


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize(
    "shape",
    [(16, 4, 32, 80 * 80), (2, 8, 128, 40 * 40), (1, 1, 100, 160 * 160)],
    ids=["many-heads", "c128", "one-head-long-hw"],
)
def test_attention_gpu_large(shape, dtype):
    _check(_inputs(*shape), dtype, "cuda")


def test_fp16_small_norms_keep_gradients_finite(device):
    """fp16 backward with small q / k (|q_i| |k_j| ~ 1e-5): the weights dP / (|q_i| |k_j|) pass fp16's
    65504 while dq, dk stay small. Pass 2 split them into fp16 halves unscaled: inf, then NaN."""
    x = _inputs(1, 1, 5, 16, seed=4)
    x["q"], x["k"] = 1e-3 * x["q"], 1e-3 * x["k"]
    _check(x, torch.float16, device)


def test_mixed_input_dtypes_follow_reference(device):
    """The reference takes q, k, v of different dtypes (fp32 inside, v's dtype out); so does the kernel."""
    x = {k: v.to(device) for k, v in _inputs(1, 2, 6, 20, seed=5).items()}
    x["k"], x["v"] = x["k"].half(), x["v"].bfloat16()
    gy = torch.randn(x["v"].shape, generator=torch.Generator().manual_seed(6)).to(device).bfloat16()
    y_k, g_k = _run(transposed_attention_fn, leaves(x), gy)
    y_r, g_r = _run(ref.transposed_attention_ref, leaves(x), gy)
    assert y_k.dtype == y_r.dtype == torch.bfloat16
    torch.testing.assert_close(y_k.float(), y_r.float(), rtol=1e-2, atol=1e-2)
    for name in g_r:
        assert g_k[name].dtype == g_r[name].dtype, name
        torch.testing.assert_close(g_k[name].float(), g_r[name].float(), rtol=2e-2, atol=2e-2, msg=name)


def test_mix_grid_stays_within_cuda_limits(monkeypatch):
    """Grid axes 1 and 2 are capped at 65535 on CUDA (the interpreter does not check): a 2048 x 2048
    map attended whole has 65536 HW tiles of 64, which pass 2 put on axis 2."""
    ta = sys.modules["dakd_edge.kernels.transposed_attention"]
    grids = []

    class Recorder:
        def __getitem__(self, grid):
            grids.append(tuple(grid))
            return lambda *args, **kwargs: None

    monkeypatch.setattr(ta, "_mix_kernel", Recorder())
    hw = 2048 * 2048
    x = torch.zeros(1, dtype=torch.float16).expand(2, 1, 4, hw)  # no memory: only the launch is checked
    ta._mix(torch.zeros(2, 4, 4), x, torch.zeros(1, dtype=torch.float16).expand(2, 1, 4, hw))
    (grid,) = grids
    assert grid[0] < 2**31 and all(g <= 65535 for g in grid[1:]), grid
    assert math.prod(grid) == 2 * hw // 64  # one program per (bh, row block, HW tile), as before


def test_double_backward_raises_instead_of_dropping_terms(device):
    """First-order only: a double backward used to silently miss the attention's second-order terms."""
    x = leaves({k: v.to(device) for k, v in _inputs(1, 1, 3, 8).items()})
    y = transposed_attention_fn(*x.values())
    (gq,) = torch.autograd.grad(y.square().sum(), x["q"], create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        (gq.square().sum() + x["q"].square().sum()).backward()


def test_empty_input_gets_zero_gradients_of_its_shape(device):
    """The reference gives zero gradients for a zero-size input; the kernel gave None (``.grad`` unset)."""
    q, k, v = (torch.zeros(2, 1, 4, 0, device=device, requires_grad=True) for _ in range(3))
    temp = torch.ones(1, device=device, requires_grad=True)
    transposed_attention_fn(q, k, v, temp).sum().backward()
    for t in (q, k, v, temp):
        assert t.grad is not None and t.grad.shape == t.shape and not t.grad.any()
