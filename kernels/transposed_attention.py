"""Fused Triton transposed (channel) attention for CAFT, forward and backward.

Layout: private ``_kernel``s -> launchers -> :class:`TransposedAttentionFn` ->
:func:`transposed_attention_fn`. The maths is :func:`dakd_edge.kernels.ref.transposed_attention_ref`
(Restormer MDTA): per head, ``q^``/``k^`` are q, k divided by ``max(||.||_HW, 1e-12)`` (F.normalize),
``P = softmax(tau q^ k^T)`` is ``c x c`` and ``out = P v``. The work is two reads of long ``(c, HW)``
rows around a tiny ``c x c`` matrix, so the kernels are organised around the HW reads:

* pass 1 (:func:`_gram_kernel`) reads q and k once, accumulating the raw Gram ``q k^T`` and the
  squared row norms together (normalising afterwards is exact: ``q^ k^T = G / (|q_i| |k_j|)``); HW is
  split over programs when ``batch x heads`` alone would not fill the GPU, partial sums go to a small
  fp32 buffer;
* :func:`_softmax_kernel` sums the splits, normalises, applies the temperature and the softmax;
* pass 2 (:func:`_mix_kernel`) reads v once and writes ``out = P v``.

Backward: ``dP = dout v^T`` is the same Gram kernel; the ``c x c`` algebra (softmax backward,
temperature gradient, the normalisation Jacobian) runs in torch on tiny tensors; the HW-long products
``dq = Wq k - alpha q``, ``dk = Wq^T q - beta k``, ``dv = P^T dout`` are the mix kernel with a diagonal
term. The normalisation Jacobian needs ``q^_i . dq^_i``, which reduces to the ``c x c`` Gram already
known, so no extra pass over HW is needed for it.

Precision: ``tl.dot`` tiles are at least 16 wide (c is padded with masks). fp32 inputs use
``input_precision="ieee"`` (no TF32). For fp16/bf16 inputs the products with q, k, v are exact on
tensor cores with fp32 accumulation, and the fp32 ``P`` is split into ``hi + lo`` halves of the input
dtype so pass 2 loses nothing to rounding ``P``: results match the fp32-internal reference to the
output's rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from dakd_edge.kernels._triton_common import INTERPRETED, cast_out, strides

EPS = 1e-12  # F.normalize's default
_TARGET_PROGRAMS = 264  # ~2 per H100 SM


@triton.jit
def _head_rows(heads, c, BLOCK_I: tl.constexpr):
    """This program's ``bh`` (grid axis 0 runs over batch x heads), its batch and head, and its block of
    rows of the ``c x c`` matrix (grid axis 1), with their mask."""
    bh = tl.program_id(0)
    offs_i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    return bh, (bh // heads).to(tl.int64), bh % heads, offs_i, offs_i < c


# Kernel parameters are grouped one tensor per line (as in mamba's Triton kernels).
@triton.jit
def _gram_kernel(
    x_ptr, y_ptr, g_ptr, xn_ptr, yn_ptr,
    heads, c, hw, hw_per_split,
    s_xb, s_xh, s_xc, s_xl,  # x (b, heads, c, hw)
    s_yb, s_yh, s_yc, s_yl,  # y (b, heads, c, hw)
    NORMS: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    """Partial ``G[split, bh] = X Y^T`` over one HW split (and squared row norms of X and Y)."""
    bh, b, h, offs_i, mask_i = _head_rows(heads, c, BLOCK_I)
    pid_s = tl.program_id(2)
    nbh = tl.num_programs(0)
    offs_j = tl.arange(0, BLOCK_J)
    offs_l = tl.arange(0, BLOCK_HW)
    mask_j = offs_j < c
    x_p = x_ptr + b * s_xb + h * s_xh + offs_i[:, None] * s_xc
    y_p = y_ptr + b * s_yb + h * s_yh + offs_j[:, None] * s_yc

    acc = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    xn = tl.zeros((BLOCK_I,), dtype=tl.float32)
    yn = tl.zeros((BLOCK_J,), dtype=tl.float32)
    lo = pid_s * hw_per_split
    hi = tl.minimum(lo + hw_per_split, hw)
    for l0 in range(lo, hi, BLOCK_HW):
        ol = l0 + offs_l
        ml = ol < hi
        xt = tl.load(x_p + ol[None, :] * s_xl, mask=mask_i[:, None] & ml[None, :], other=0.0)
        yt = tl.load(y_p + ol[None, :] * s_yl, mask=mask_j[:, None] & ml[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(xt, tl.trans(yt), acc, input_precision="ieee")
        elif UPCAST:
            acc = tl.dot(xt.to(tl.float32), tl.trans(yt.to(tl.float32)), acc, input_precision="ieee")
        else:
            acc = tl.dot(xt, tl.trans(yt), acc)
        if NORMS:
            xf = xt.to(tl.float32)
            yf = yt.to(tl.float32)
            xn += tl.sum(xf * xf, axis=1)
            yn += tl.sum(yf * yf, axis=1)

    row = (pid_s * nbh + bh).to(tl.int64) * c
    tl.store(
        g_ptr + (row + offs_i[:, None]) * c + offs_j[None, :], acc, mask=mask_i[:, None] & mask_j[None, :]
    )
    if NORMS:
        tl.store(xn_ptr + row + offs_i, xn, mask=mask_i)
        tl.store(yn_ptr + row + offs_j, yn, mask=mask_j & (tl.program_id(1) == 0))


@triton.jit
def _softmax_kernel(
    g_ptr, xn_ptr, yn_ptr, temp_ptr, p_ptr, gn_ptr, nq_ptr, nk_ptr,
    heads, c, nsplit, eps,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    """Sum the HW splits, normalise the Gram, scale by the head's temperature, softmax over rows."""
    bh, _, h, offs_i, mask_i = _head_rows(heads, c, BLOCK_I)
    nbh = tl.num_programs(0)
    offs_j = tl.arange(0, BLOCK_J)
    mask_j = offs_j < c
    mask = mask_i[:, None] & mask_j[None, :]
    gram = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    xn = tl.zeros((BLOCK_I,), dtype=tl.float32)
    yn = tl.zeros((BLOCK_J,), dtype=tl.float32)
    for s in range(nsplit):
        row = (s * nbh + bh).to(tl.int64) * c
        gram += tl.load(g_ptr + (row + offs_i[:, None]) * c + offs_j[None, :], mask=mask, other=0.0)
        xn += tl.load(xn_ptr + row + offs_i, mask=mask_i, other=0.0)
        yn += tl.load(yn_ptr + row + offs_j, mask=mask_j, other=0.0)
    nq = tl.sqrt(xn)
    nk = tl.sqrt(yn)
    gn = gram / tl.maximum(nq, eps)[:, None] / tl.maximum(nk, eps)[None, :]
    tau = tl.load(temp_ptr + h).to(tl.float32)
    logits = tl.where(mask_j[None, :], gn * (tau * 1.4426950408889634), float("-inf"))
    e = tl.exp2(logits - tl.max(logits, axis=1)[:, None])
    p = e / tl.sum(e, axis=1)[:, None]
    out = (bh.to(tl.int64) * c + offs_i[:, None]) * c + offs_j[None, :]
    tl.store(p_ptr + out, p, mask=mask)
    tl.store(gn_ptr + out, gn, mask=mask)
    tl.store(nq_ptr + bh * c + offs_i, nq, mask=mask_i)
    tl.store(nk_ptr + bh * c + offs_j, nk, mask=mask_j & (tl.program_id(1) == 0))


@triton.jit
def _mix_kernel(
    m_ptr, x_ptr, x2_ptr, s_ptr, o_ptr,
    heads, c, hw,
    s_mbh, s_mi, s_mj,  # m (b * heads, c, c)
    s_xb, s_xh, s_xc, s_xl,  # x (b, heads, c, hw)
    s_2b, s_2h, s_2c, s_2l,  # x2 (b, heads, c, hw)
    s_ob, s_oh, s_oc, s_ol,  # out (b, heads, c, hw)
    HAS_DIAG: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_HW: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """``O[bh] = M[bh] X[bh] (- s[bh, :, None] * X2[bh])`` for one (rows, HW) tile; M is fp32 c x c.

    Grid axis 0 runs over (bh, HW tile) pairs, bh-major: CUDA caps axes 1 and 2 at 65535, which a
    long HW alone would pass (4.2M pixels: a 2048 x 2048 map attended whole)."""
    n_hw = tl.cdiv(hw, BLOCK_HW)
    pid = tl.program_id(0)
    bh = pid // n_hw
    b, h = (bh // heads).to(tl.int64), bh % heads
    offs_i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_i = offs_i < c
    offs_l = (pid % n_hw) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    mask_l = offs_l < hw
    m_p = m_ptr + bh.to(tl.int64) * s_mbh + offs_i[:, None] * s_mi
    x_p = x_ptr + b * s_xb + h * s_xh + offs_l[None, :] * s_xl

    acc = tl.zeros((BLOCK_I, BLOCK_HW), dtype=tl.float32)
    for j0 in range(0, c, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        mask_j = offs_j < c
        m = tl.load(m_p + offs_j[None, :] * s_mj, mask=mask_i[:, None] & mask_j[None, :], other=0.0)
        xt = tl.load(x_p + offs_j[:, None] * s_xc, mask=mask_j[:, None] & mask_l[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(m, xt.to(tl.float32), acc, input_precision="ieee")
        else:
            # m = scale (hi + lo) exactly enough (2 x 8/11 mantissa bits); x products are exact on
            # tensor cores. The row scale is the power of two at or below the row's largest |m|
            # (exact both ways), so hi and lo stay inside fp16's range: backward weights
            # dP / (|q_i| |k_j|) pass 65504 when q and k are small, and would turn into inf / NaN.
            mag = tl.max(tl.abs(m), axis=1)
            p2 = (mag.to(tl.uint32, bitcast=True) & 0x7F800000).to(tl.float32, bitcast=True)
            scale = tl.where(p2 > 0.0, p2, 1.0)
            ms = m * (1.0 / scale)[:, None]
            m_hi = ms.to(xt.dtype)
            m_lo = (ms - m_hi.to(tl.float32)).to(xt.dtype)
            if UPCAST:
                xf = xt.to(tl.float32)
                part = tl.dot(m_hi.to(tl.float32), xf, input_precision="ieee")
                part = tl.dot(m_lo.to(tl.float32), xf, part, input_precision="ieee")
            else:
                part = tl.dot(m_hi, xt)
                part = tl.dot(m_lo, xt, part)
            acc += part * scale[:, None]
    if HAS_DIAG:
        sv = tl.load(s_ptr + bh.to(tl.int64) * c + offs_i, mask=mask_i, other=0.0)
        x2 = tl.load(
            x2_ptr + b * s_2b + h * s_2h + offs_i[:, None] * s_2c + offs_l[None, :] * s_2l,
            mask=mask_i[:, None] & mask_l[None, :],
            other=0.0,
        )
        acc -= sv[:, None] * x2.to(tl.float32)
    tl.store(
        o_ptr + b * s_ob + h * s_oh + offs_i[:, None] * s_oc + offs_l[None, :] * s_ol,
        cast_out(acc, o_ptr.dtype.element_ty, INTERPRETED),
        mask=mask_i[:, None] & mask_l[None, :],
    )


def _upcast(dtype: torch.dtype) -> bool:
    """The CPU interpreter miscomputes ``tl.dot`` on bf16 operands (Triton 3.8); there the operands are
    widened to fp32 first, which gives the same numbers (bf16 products are exact in fp32)."""
    return dtype == torch.bfloat16 and INTERPRETED


def _pad(c: int) -> int:
    return max(16, triton.next_power_of_2(c))


def _dot_meta(dtype: torch.dtype, block_i: int, block_j: int, block_hw: int) -> dict[str, Any]:
    """Tile sizes and the ``tl.dot`` precision flags of the Gram and mix kernels for ``dtype`` inputs:
    fp32 runs in IEEE precision (no TF32), bf16 is widened under the interpreter (:func:`_upcast`)."""
    return dict(
        IEEE=dtype == torch.float32,
        UPCAST=_upcast(dtype),
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        BLOCK_HW=block_hw,
    )


def _gram(x: Tensor, y: Tensor, norms: bool, splits: int | None = None) -> tuple[Tensor, Tensor, Tensor, int]:
    """Partial Gram ``(S, B*H, c, c)`` and squared norms ``(S, B*H, c)`` of x, y over S HW splits."""
    batch, heads, c, hw = x.shape
    nbh = batch * heads
    block_j = _pad(c)
    block_i = min(block_j, 64)
    block_hw = 64 if block_j <= 64 else 32
    n_i = triton.cdiv(c, block_i)
    if splits is None:  # split HW only while programs are scarce, keeping >= 4 tiles per split
        splits = max(1, min(triton.cdiv(_TARGET_PROGRAMS, nbh * n_i), triton.cdiv(hw, 4 * block_hw)))
    per_split = triton.cdiv(triton.cdiv(hw, splits), block_hw) * block_hw
    splits = max(1, triton.cdiv(hw, per_split))
    f32 = dict(dtype=torch.float32, device=x.device)
    g = torch.empty((splits, nbh, c, c), **f32)
    xn = torch.empty((splits, nbh, c), **f32) if norms else g
    yn = torch.empty((splits, nbh, c), **f32) if norms else g
    _gram_kernel[(nbh, n_i, splits)](
        x,
        y,
        g,
        xn,
        yn,
        heads,
        c,
        hw,
        per_split,
        *strides(x, y),
        NORMS=norms,
        **_dot_meta(x.dtype, block_i, block_j, block_hw),
        num_warps=4 if block_j <= 64 else 8,
    )
    return g, xn, yn, splits


def _mix(m: Tensor, x: Tensor, out: Tensor, x2: Tensor | None = None, s: Tensor | None = None) -> Tensor:
    """``out = m @ x - s[..., None] * x2`` per (batch, head); m (B*H, c, c) fp32 with any strides."""
    batch, heads, c, hw = x.shape
    block_i = min(_pad(c), 64)
    block_hw = 64
    grid = (batch * heads * triton.cdiv(hw, block_hw), triton.cdiv(c, block_i))
    has_diag = x2 is not None
    _mix_kernel[grid](
        m,
        x,
        x2 if has_diag else x,
        s if has_diag else m,
        out,
        heads,
        c,
        hw,
        *strides(m, x, x2 if has_diag else x, out),
        HAS_DIAG=has_diag,
        **_dot_meta(x.dtype, block_i, block_i, block_hw),
        INTERPRETED=INTERPRETED,
        num_warps=4,
    )
    return out


def _attn_fwd(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, splits: int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(out, P, normalised Gram, |q|, |k|); the last four are fp32 and tiny (saved for backward)."""
    batch, heads, c, hw = q.shape
    nbh = batch * heads
    g, xn, yn, nsplit = _gram(q, k, norms=True, splits=splits)
    f32 = dict(dtype=torch.float32, device=q.device)
    p = torch.empty((nbh, c, c), **f32)
    gn = torch.empty((nbh, c, c), **f32)
    nq = torch.empty((nbh, c), **f32)
    nk = torch.empty((nbh, c), **f32)
    block_j = _pad(c)
    block_i = min(block_j, 64)
    _softmax_kernel[(nbh, triton.cdiv(c, block_i))](
        g,
        xn,
        yn,
        temperature.reshape(-1).contiguous(),
        p,
        gn,
        nq,
        nk,
        heads,
        c,
        nsplit,
        EPS,
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        num_warps=4 if block_j <= 64 else 8,
    )
    out = _mix(p, v, torch.empty_like(v, memory_format=torch.contiguous_format))
    return out, p, gn, nq, nk


def _check(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k, v must be (B, heads, c, HW) of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if temperature.numel() != q.shape[1]:
        raise ValueError(f"temperature needs {q.shape[1]} elements (one per head), got {temperature.numel()}")


class TransposedAttentionFn(torch.autograd.Function):
    """Forward: Triton passes 1-2. Backward: Triton for the HW-long work, torch for the c x c algebra.

    First-order only: a double backward (``create_graph=True``) raises rather than silently missing
    this op's second-order terms (the reference, ``kernels="torch"``, supports it)."""

    @staticmethod
    def forward(ctx, q, k, v, temperature):  # type: ignore[override]
        _check(q, k, v, temperature)
        if q.numel() == 0:
            ctx.empty, ctx.shape = True, q.shape
            ctx.save_for_backward(temperature)
            return torch.empty_like(v)
        ctx.empty = False
        out, p, gn, nq, nk = _attn_fwd(q, k, v, temperature)
        ctx.save_for_backward(q, k, v, temperature, p, gn, nq, nk)
        return out

    @staticmethod
    @once_differentiable  # Triton kernels inside: create_graph raises, never drops second-order terms
    def backward(ctx, dout):  # type: ignore[override]
        if ctx.empty:  # zeros of the inputs' shapes, as the reference gives (None left .grad unset)
            (temperature,) = ctx.saved_tensors
            zero = torch.zeros(ctx.shape, dtype=dout.dtype, device=dout.device)
            return zero, zero.clone(), zero.clone(), torch.zeros_like(temperature)
        q, k, v, temperature, p, gn, nq, nk = ctx.saved_tensors
        batch, heads, c, hw = q.shape
        dout = dout.to(v.dtype)
        g, _, _, _ = _gram(dout, v, norms=False)
        dp = g.sum(0)  # (B*H, c, c)
        # Softmax backward and temperature gradient (c x c, torch).
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        tau = temperature.float().reshape(1, heads, 1, 1).expand(batch, heads, 1, 1).reshape(-1, 1, 1)
        dtau = (ds * gn).reshape(batch, heads, c, c).sum((0, 2, 3))
        dgn = ds * tau
        # Normalisation Jacobian: dq = (dGn / (|q_i| |k_j|)) k - alpha_i q, alpha_i = [|q_i| > eps]
        # (sum_j dGn_ij Gn_ij) / |q_i|^2 (the q^.dq^ term rebuilt from the Gram); same for k.
        rq = 1.0 / nq.clamp_min(EPS)
        rk = 1.0 / nk.clamp_min(EPS)
        wq = dgn * rq[:, :, None] * rk[:, None, :]
        t = dgn * gn
        alpha = ((nq > EPS) * rq * rq * t.sum(-1)).contiguous()
        beta = ((nk > EPS) * rk * rk * t.sum(-2)).contiguous()
        dq = _mix(wq, k, torch.empty_like(q, memory_format=torch.contiguous_format), x2=q, s=alpha)
        dk = _mix(
            wq.transpose(1, 2), q, torch.empty_like(k, memory_format=torch.contiguous_format), x2=k, s=beta
        )
        dv = _mix(p.transpose(1, 2), dout, torch.empty_like(v, memory_format=torch.contiguous_format))
        return dq, dk, dv, dtau.reshape(temperature.shape).to(temperature.dtype)


def transposed_attention_fn(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> Tensor:
    """CAFT transposed attention with Triton kernels (autograd-capable); contract of the reference.

    q, k, v: (B, heads, c, HW) of one dtype (fp32, fp16 or bf16; any strides); temperature: ``heads``
    elements. Returns ``softmax(tau q^ k^T) v`` in v's dtype, computed with fp32 accumulation. Needs
    CUDA tensors, or CPU tensors with ``TRITON_INTERPRET=1`` set before this module is imported.
    Mixed input dtypes (which the reference takes) run in their promoted dtype; the result is still
    in v's dtype.
    """
    if not q.dtype == k.dtype == v.dtype:
        common = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
        out = TransposedAttentionFn.apply(q.to(common), k.to(common), v.to(common), temperature)
        return out.to(v.dtype)
    return TransposedAttentionFn.apply(q, k, v, temperature)
