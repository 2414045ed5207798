"""Fused Triton selective scan (MambaVision signature), forward and backward.

Layout: private ``_kernel``s -> launchers -> :class:`SelectiveScanFn` -> :func:`selective_scan_fn`.
The maths is :func:`dakd_edge.kernels.ref.selective_scan_ref`:
``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``, ``y_t = C_t . h_t + D u_t``,
``dt = softplus(delta + delta_bias)`` when ``delta_softplus``.

Design for SAROSS-Net's many short sequences (L = window^2 = 49, 196; batch = images x windows):
one program per (sequence, block of ``BLOCK_D`` channels) walks the sequence with its whole
``BLOCK_D x N`` state in registers (fp32), so at inference the state never touches memory. ``log2(e)``
is folded into ``A`` once so the decay is a single ``exp2``. Every input is read once, ``y`` is written
once: the kernel is bandwidth bound and the bytes model in ``benchmarks/kernels.py`` is exact for it.

Backward is a reverse scan that needs ``h_{t-1}`` at every step. Dividing the recurrence backwards is
unstable (``exp(dt A)`` underflows), and storing every state costs ``N`` times the activations, so the
kernel recomputes: a forward sweep keeps only the states at chunk boundaries (every ``chunk`` steps,
``chunk ~ sqrt(L)``), then chunk by chunk from the end it recomputes the chunk's states into a small
per-program scratch (L2 resident) and runs the reverse recurrence over it. Reductions: ``A``, ``D`` and
``delta_bias`` gradients are written per sequence and summed over the batch by torch; ``B`` / ``C``
gradients are written per channel block and summed over blocks by torch (deterministic, no atomics).

The kernels use only elementwise ops and ``tl.sum`` (N <= 16 is too small for ``tl.dot``, whose
K >= 16 requirement the CPU interpreter does not enforce).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from dakd_edge.kernels._triton_common import INTERPRETED, cast_out, strides
from dakd_edge.kernels.support import MAX_STATE

LOG2E = 1.4426950408889634


@triton.jit
def _softplus(x):
    """torch.nn.functional.softplus (threshold 20), as accurate as its ``log1p(exp(x))``.

    A plain ``log(1 + e)`` loses e's low bits to the rounding of ``1 + e``: up to 1e-2 relative at
    x = -12, and MambaVision's dt biases start near -7 (dt = 1e-3). ``log(w) * e / (w - 1)`` with
    ``w = 1 + e`` (Kahan; ``w - 1`` is exact) puts them back; ``w == 1`` means ``log1p(e) = e``.
    """
    # The clamp and the safe divisor keep unused lanes finite. tl.minimum(x, 20.0) would clamp a NaN to
    # 20 (compiled minnumf, and the interpreter): a NaN delta came out as a finite dt = 20.
    e = tl.exp(tl.where(x > 20.0, 20.0, x))
    w = 1.0 + e
    return tl.where(x > 20.0, x, tl.where(w == 1.0, e, tl.log(w) * (e / tl.where(w == 1.0, 1.0, w - 1.0))))


@triton.jit
def _channel_tile(dim, dstate, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's sequence (axis 0), its block of channels (axis 1) and the state lanes, with masks."""
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    return pid_b, offs_d, offs_n, offs_d < dim, offs_n < dstate


@triton.jit
def _load_params(
    a_ptr,
    d_ptr,
    bias_ptr,
    s_ad,
    s_an,
    offs_d,
    offs_n,
    mask_d,
    mask_n,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):
    """A (BLOCK_D, BLOCK_N), D and delta_bias (BLOCK_D,) in fp32; zeros where absent or padded (padded
    lanes get A = 0 and inputs 0, so their state stays 0)."""
    mask_dn = mask_d[:, None] & mask_n[None, :]
    a = tl.load(a_ptr + offs_d[:, None] * s_ad + offs_n[None, :] * s_an, mask=mask_dn, other=0.0)
    dskip = tl.zeros(offs_d.shape, dtype=tl.float32)
    bias = tl.zeros(offs_d.shape, dtype=tl.float32)
    if HAS_D:
        dskip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return a.to(tl.float32), dskip, bias


@triton.jit
def _load_step(
    u_p, t_p, b_p, t, s_ul, s_tl, s_bl, mask_d, mask_n, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr
):
    """Step ``t``'s inputs in fp32: u_t, the raw step ``delta_t (+ delta_bias)``, dt_t and B_t."""
    u = tl.load(u_p + t * s_ul, mask=mask_d, other=0.0).to(tl.float32)
    raw = tl.load(t_p + t * s_tl, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += bias
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    bt = tl.load(b_p + t * s_bl, mask=mask_n, other=0.0).to(tl.float32)
    return u, raw, dt, bt


@triton.jit
def _advance(h, a2, u, dt, bt):
    """``h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t``, with ``a2 = A log2(e)`` so the decay is one ``exp2``."""
    return tl.exp2(dt[:, None] * a2) * h + (dt * u)[:, None] * bt[None, :]


# Kernel parameters are grouped one tensor per line (as in mamba's Triton kernels): pointers, sizes, then
# each tensor's strides. The forward signature is also the AOT plugin's (export/plugins.py): keep it.
@triton.jit
def scan_fwd_kernel(
    u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, y_ptr,
    dim, seqlen, dstate,
    s_ub, s_ud, s_ul,  # u (b, d, l)
    s_tb, s_td, s_tl,  # delta (b, d, l)
    s_ad, s_an,  # A (d, n)
    s_bb, s_bn, s_bl,  # B (b, n, l)
    s_cb, s_cn, s_cl,  # C (b, n, l)
    s_yb, s_yd, s_yl,  # y (b, d, l)
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    pid_b, offs_d, offs_n, mask_d, mask_n = _channel_tile(dim, dstate, BLOCK_D, BLOCK_N)
    a, dskip, bias = _load_params(
        a_ptr, d_ptr, bias_ptr, s_ad, s_an, offs_d, offs_n, mask_d, mask_n, HAS_D, HAS_BIAS
    )
    a2 = a * 1.4426950408889634
    u_p = u_ptr + pid_b * s_ub + offs_d * s_ud
    t_p = dt_ptr + pid_b * s_tb + offs_d * s_td
    b_p = b_ptr + pid_b * s_bb + offs_n * s_bn
    c_p = c_ptr + pid_b * s_cb + offs_n * s_cn
    y_p = y_ptr + pid_b * s_yb + offs_d * s_yd

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for t in range(seqlen):
        u, _, dt, bt = _load_step(
            u_p, t_p, b_p, t, s_ul, s_tl, s_bl, mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS
        )
        ct = tl.load(c_p + t * s_cl, mask=mask_n, other=0.0).to(tl.float32)
        h = _advance(h, a2, u, dt, bt)
        y = tl.sum(h * ct[None, :], axis=1)
        if HAS_D:
            y += dskip * u
        tl.store(y_p + t * s_yl, cast_out(y, y_ptr.dtype.element_ty, INTERPRETED), mask=mask_d)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, dy_ptr,
    du_ptr, ddt_ptr, da_part_ptr, db_part_ptr, dc_part_ptr, dd_part_ptr, dbias_part_ptr,
    bound_ptr, scratch_ptr,
    dim, seqlen, dstate, chunk, nchunks,
    s_ub, s_ud, s_ul,  # u (b, d, l)
    s_tb, s_td, s_tl,  # delta (b, d, l)
    s_ad, s_an,  # A (d, n)
    s_bb, s_bn, s_bl,  # B (b, n, l)
    s_cb, s_cn, s_cl,  # C (b, n, l)
    s_gb, s_gd, s_gl,  # dy (b, d, l)
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    pid_b, offs_d, offs_n, mask_d, mask_n = _channel_tile(dim, dstate, BLOCK_D, BLOCK_N)
    prog = pid_b * tl.num_programs(1) + tl.program_id(1)
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # state tile in scratch
    a, dskip, bias = _load_params(
        a_ptr, d_ptr, bias_ptr, s_ad, s_an, offs_d, offs_n, mask_d, mask_n, HAS_D, HAS_BIAS
    )
    a2 = a * 1.4426950408889634
    u_p = u_ptr + pid_b * s_ub + offs_d * s_ud
    t_p = dt_ptr + pid_b * s_tb + offs_d * s_td
    b_p = b_ptr + pid_b * s_bb + offs_n * s_bn
    c_p = c_ptr + pid_b * s_cb + offs_n * s_cn
    g_p = dy_ptr + pid_b * s_gb + offs_d * s_gd
    # du / ddelta are contiguous (b, dim, L); partial B/C grads are (b, num_db, N, L).
    du_p = du_ptr + pid_b * dim * seqlen + offs_d * seqlen
    ddt_p = ddt_ptr + pid_b * dim * seqlen + offs_d * seqlen
    db_p = db_part_ptr + prog * dstate * seqlen + offs_n * seqlen
    dc_p = dc_part_ptr + prog * dstate * seqlen + offs_n * seqlen
    bound_p = bound_ptr + prog * nchunks * BLOCK_D * BLOCK_N + tile
    scratch_p = scratch_ptr + prog * (chunk + 1) * BLOCK_D * BLOCK_N + tile

    # Sweep 1: states entering each chunk (h_{-1} = 0 for the first).
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for ci in range(nchunks):
        tl.store(bound_p + ci * BLOCK_D * BLOCK_N, h)
        t0 = ci * chunk
        t1 = tl.minimum(t0 + chunk, seqlen)
        for t in range(t0, t1):
            u, _, dt, bt = _load_step(
                u_p, t_p, b_p, t, s_ul, s_tl, s_bl, mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS
            )
            h = _advance(h, a2, u, dt, bt)
    # Scratch round trips go through global memory: a CTA barrier makes every warp's stores visible
    # before they are read (and keeps a fast warp from overwriting slots a slow one still reads).
    tl.debug_barrier()

    # Sweep 2, chunks in reverse: recompute the chunk's states into scratch slots 1..T (slot 0 holds
    # the incoming state), then run the adjoint recurrence g_{t-1} = exp(dt_t A) (g_t + dy_t C_t).
    g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dL/dh_t flowing in from step t+1
    da_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for cr in range(nchunks):
        ci = nchunks - 1 - cr
        t0 = ci * chunk
        t1 = tl.minimum(t0 + chunk, seqlen)
        h = tl.load(bound_p + ci * BLOCK_D * BLOCK_N)
        tl.store(scratch_p, h)
        for t in range(t0, t1):
            u, _, dt, bt = _load_step(
                u_p, t_p, b_p, t, s_ul, s_tl, s_bl, mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS
            )
            h = _advance(h, a2, u, dt, bt)
            tl.store(scratch_p + (t - t0 + 1) * BLOCK_D * BLOCK_N, h)
        tl.debug_barrier()
        for tr in range(t1 - t0):
            t = t1 - 1 - tr
            u, raw, dt, bt = _load_step(
                u_p, t_p, b_p, t, s_ul, s_tl, s_bl, mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS
            )
            ct = tl.load(c_p + t * s_cl, mask=mask_n, other=0.0).to(tl.float32)
            dy = tl.load(g_p + t * s_gl, mask=mask_d, other=0.0).to(tl.float32)
            h_t = tl.load(scratch_p + (t - t0 + 1) * BLOCK_D * BLOCK_N)
            h_prev = tl.load(scratch_p + (t - t0) * BLOCK_D * BLOCK_N)
            decay = tl.exp2(dt[:, None] * a2)

            g = g + dy[:, None] * ct[None, :]  # now dL/dh_t
            tl.store(dc_p + t, tl.sum(dy[:, None] * h_t, axis=0), mask=mask_n)
            tl.store(db_p + t, tl.sum(g * (dt * u)[:, None], axis=0), mask=mask_n)
            gb = tl.sum(g * bt[None, :], axis=1)  # dL/d(dt u)
            dlog = g * h_prev * decay  # dL/d(dt A)
            du = dt * gb
            ddt = u * gb + tl.sum(dlog * a, axis=1)
            da_acc += dlog * dt[:, None]
            if HAS_D:
                du += dskip * dy
                dd_acc += dy * u
            if SOFTPLUS:
                ddt = tl.where(raw > 20.0, ddt, ddt / (1.0 + tl.exp(-raw)))
            dbias_acc += ddt
            tl.store(du_p + t, cast_out(du, du_ptr.dtype.element_ty, INTERPRETED), mask=mask_d)
            tl.store(ddt_p + t, cast_out(ddt, ddt_ptr.dtype.element_ty, INTERPRETED), mask=mask_d)
            g = g * decay
        tl.debug_barrier()

    # Per-sequence partial sums, reduced over the batch by the launcher.
    mask_dn = mask_d[:, None] & mask_n[None, :]
    tl.store(
        da_part_ptr + pid_b * dim * dstate + offs_d[:, None] * dstate + offs_n[None, :], da_acc, mask=mask_dn
    )
    tl.store(dd_part_ptr + pid_b * dim + offs_d, dd_acc, mask=mask_d)
    tl.store(dbias_part_ptr + pid_b * dim + offs_d, dbias_acc, mask=mask_d)


def _launch_meta(
    batch: int, dim: int, dstate: int, D: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool
) -> dict[str, Any]:
    """Compile-time flags and tile sizes of both kernels, and ``num_warps``.

    Tiles: enough programs to fill a GPU even at batch 1, small tiles. The CPU interpreter pays per
    program and per step, not per lane, so it always takes 64 channels.
    """
    block_n = max(2, triton.next_power_of_2(dstate))
    block_d = 64
    while not INTERPRETED and block_d > 16 and batch * triton.cdiv(dim, block_d) < 264:  # ~2 per H100 SM
        block_d //= 2
    return dict(
        HAS_D=D is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus,
        BLOCK_D=block_d,
        BLOCK_N=block_n,
        INTERPRETED=INTERPRETED,
        num_warps=max(1, min(4, block_d * block_n // 128)),
    )


def _per_channel(name: str, t: Tensor | None, dim: int) -> Tensor | None:
    """D / delta_bias as the kernels read them: ``dim`` contiguous values (they index with unit
    stride). Any shape that broadcasts to ``(dim,)`` as in the reference ((dim,), (1,)) is accepted;
    the backward sums the gradient back to that shape."""
    if t is None:
        return None
    if t.dim() > 1 or t.numel() not in (1, dim):
        raise ValueError(f"{name} must be ({dim},) (one value per channel), got {tuple(t.shape)}")
    return t.expand(dim).contiguous()


def _operands(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, delta_bias: Tensor | None
) -> tuple[Tensor, ...]:
    """The kernels' seven input pointers; u stands in for an absent D / delta_bias (never read then)."""
    dim = u.shape[1]
    D, delta_bias = _per_channel("D", D, dim), _per_channel("delta_bias", delta_bias, dim)
    return u, delta, A, B, C, u if D is None else D, u if delta_bias is None else delta_bias


def _check(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, delta_bias: Tensor | None
) -> tuple[int, int, int, int]:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must be (B, D, L) of the same shape, got {tuple(u.shape)}, {tuple(delta.shape)}"
        )
    batch, dim, seqlen = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"A must be real (D, N) with D = {dim}, got {tuple(A.shape)} {A.dtype}")
    dstate = A.shape[1]
    if not 1 <= dstate <= MAX_STATE:
        raise ValueError(f"the Triton scan supports 1 <= N <= {MAX_STATE}, got N = {dstate}")
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, dstate, seqlen):
            raise ValueError(f"{name} must be (B, N, L) = {(batch, dstate, seqlen)}, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        _per_channel(name, t, dim)
    return batch, dim, seqlen, dstate


def _scan_fwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> Tensor:
    batch, dim, seqlen, dstate = _check(u, delta, A, B, C, D, delta_bias)
    y = torch.empty((batch, dim, seqlen), dtype=u.dtype, device=u.device)
    if y.numel() == 0:
        return y
    meta = _launch_meta(batch, dim, dstate, D, delta_bias, delta_softplus)
    grid = (batch, triton.cdiv(dim, meta["BLOCK_D"]))
    scan_fwd_kernel[grid](
        *_operands(u, delta, A, B, C, D, delta_bias),
        y,
        dim,
        seqlen,
        dstate,
        *strides(u, delta, A, B, C, y),
        **meta,
    )
    return y


def _scan_bwd(
    dy: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias), each in its input's dtype."""
    batch, dim, seqlen, dstate = _check(u, delta, A, B, C, D, delta_bias)
    dev = u.device
    f32 = torch.float32
    meta = _launch_meta(batch, dim, dstate, D, delta_bias, delta_softplus)
    block_d, block_n = meta["BLOCK_D"], meta["BLOCK_N"]
    num_db = triton.cdiv(dim, block_d)
    du = torch.empty((batch, dim, seqlen), dtype=u.dtype, device=dev)
    ddelta = torch.empty((batch, dim, seqlen), dtype=delta.dtype, device=dev)
    if du.numel() == 0:
        zeros = lambda t: None if t is None else torch.zeros_like(t)  # noqa: E731
        return du, ddelta, zeros(A), zeros(B), zeros(C), zeros(D), zeros(delta_bias)
    chunk = chunk or max(1, math.isqrt(seqlen - 1) + 1)  # ~sqrt(L): boundaries + scratch ~ 2 sqrt(L)
    nchunks = triton.cdiv(seqlen, chunk)
    da_part = torch.empty((batch, dim, dstate), dtype=f32, device=dev)
    db_part = torch.empty((batch, num_db, dstate, seqlen), dtype=f32, device=dev)
    dc_part = torch.empty((batch, num_db, dstate, seqlen), dtype=f32, device=dev)
    dd_part = torch.empty((batch, dim), dtype=f32, device=dev)
    dbias_part = torch.empty((batch, dim), dtype=f32, device=dev)
    bound = torch.empty((batch * num_db, nchunks, block_d, block_n), dtype=f32, device=dev)
    scratch = torch.empty((batch * num_db, chunk + 1, block_d, block_n), dtype=f32, device=dev)
    _scan_bwd_kernel[(batch, num_db)](
        *_operands(u, delta, A, B, C, D, delta_bias),
        dy,
        du,
        ddelta,
        da_part,
        db_part,
        dc_part,
        dd_part,
        dbias_part,
        bound,
        scratch,
        dim,
        seqlen,
        dstate,
        chunk,
        nchunks,
        *strides(u, delta, A, B, C, dy),
        **meta,
    )
    dA = da_part.sum(0).to(A.dtype)
    dB = db_part.sum(1).to(B.dtype)
    dC = dc_part.sum(1).to(C.dtype)
    dD = None if D is None else dd_part.sum(0).sum_to_size(D.shape).to(D.dtype)
    dbias = (
        None if delta_bias is None else dbias_part.sum(0).sum_to_size(delta_bias.shape).to(delta_bias.dtype)
    )
    return du, ddelta, dA, dB, dC, dD, dbias


class SelectiveScanFn(torch.autograd.Function):
    """Ties the forward and backward kernels; backward recomputes states (nothing extra is saved).

    First-order only: the backward's outputs come from kernels autograd cannot see, so a double
    backward (``create_graph=True``) raises instead of silently missing this op's second-order terms
    (the reference, ``kernels="torch"``, supports it)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):  # type: ignore[override]
        y = _scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus)
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)
        return y

    @staticmethod
    @once_differentiable  # the backward kernel is not differentiable: create_graph raises, never drops terms
    def backward(ctx, dy):  # type: ignore[override]
        u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
        grads = _scan_bwd(dy, u, delta, A, B, C, D, delta_bias, ctx.delta_softplus)
        return (*grads, None)


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective scan with Triton kernels (autograd-capable); same contract as ``selective_scan_ref``.

    u, delta: (B, D, L); A: (D, N) real, N <= 16; B, C: (B, N, L); D, delta_bias: (D,). Any of fp32,
    fp16, bf16 (and any strides); state and accumulation are fp32 and ``y`` has u's dtype. Needs CUDA
    tensors, or CPU tensors with ``TRITON_INTERPRET=1`` set before this module is imported.
    """
    return SelectiveScanFn.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)
