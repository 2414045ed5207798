"""Kernel-vs-reference comparison shared by the kernel tests (mamba / flash-attention style).

Every comparison prints the max differences (``pytest -s`` shows them). fp32: the kernel must match the
fp32 reference within ``FP32_RTOL`` of the output's scale. fp16/bf16: the kernel's error against the fp32
reference (same input values, upcast) must be at most twice the error of the PyTorch reference run on
the same low-precision inputs, plus a small ``LOWP_ATOL`` fraction of the scale.
"""

from __future__ import annotations

import torch

FP32_RTOL = 5e-5
LOWP_ATOL = {torch.float16: 1e-4, torch.bfloat16: 1e-3}

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def leaves(tensors: dict[str, torch.Tensor | None], dtype: torch.dtype | None = None) -> dict:
    """Fresh leaf copies requiring grad (cast to ``dtype`` when given, ``None`` stays ``None``)."""
    out = {}
    for name, t in tensors.items():
        if t is None:
            out[name] = None
            continue
        t = t.detach().clone() if dtype is None else t.detach().to(dtype)
        out[name] = t.requires_grad_(True)
    return out


def compare(
    name: str, kernel: torch.Tensor | None, torch_lp: torch.Tensor | None, ref32: torch.Tensor | None, dtype
) -> float:
    """Assert the parity rule for one output or gradient; returns the kernel's max error."""
    if ref32 is None:
        assert kernel is None and torch_lp is None, f"{name}: gradient presence differs"
        return 0.0
    assert kernel is not None, f"{name}: kernel gave no gradient"
    assert kernel.shape == ref32.shape, f"{name}: shape {tuple(kernel.shape)} != {tuple(ref32.shape)}"
    ref = ref32.detach().float()
    scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
    err_k = (kernel.detach().float() - ref).abs().max().item() if ref.numel() else 0.0
    err_t = (torch_lp.detach().float() - ref).abs().max().item() if ref.numel() else 0.0
    print(
        f"{name:>10} {str(dtype):>15}: kernel {err_k:.3e}  torch same-precision {err_t:.3e}  scale {scale:.3g}"
    )
    assert torch.isfinite(kernel.detach().float()).all(), f"{name}: non-finite values"
    if dtype == torch.float32:
        assert err_k <= FP32_RTOL * scale, f"{name}: max error {err_k:.3e} > {FP32_RTOL * scale:.3e}"
    else:
        bound = 2.0 * err_t + LOWP_ATOL[dtype] * scale
        assert err_k <= bound, f"{name}: max error {err_k:.3e} > 2 x torch {err_t:.3e} + atol = {bound:.3e}"
    return err_k
