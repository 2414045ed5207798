"""Plain PyTorch references for the two hot ops. Never imports Triton (CPU machines test with these).

Shapes follow MambaVision / mamba_ssm ``selective_scan_fn``:
u, delta: (B, D, L); A: (D, N) real; B, C: (B, N, L); D: (D,); delta_bias: (D,).
State and accumulation are fp32 whatever the input dtype; the output has u's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _discretize(u: Tensor, delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential selective scan: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t;  y_t = C_t . h_t + D u_t."""
    dtype_in = u.dtype
    uf = u.float()
    dt = _discretize(u, delta, delta_bias, delta_softplus)  # (b, d, l)
    Af = A.float()
    Bf, Cf = B.float(), C.float()
    b, d, length = uf.shape
    n = Af.shape[1]
    dA = torch.exp(dt.unsqueeze(-1) * Af[None, :, None, :])  # (b, d, l, n)
    dBu = (dt * uf).unsqueeze(-1) * Bf.transpose(1, 2)[:, None, :, :]  # (b, d, l, n)
    h = uf.new_zeros(b, d, n)
    ys = []
    for i in range(length):
        h = dA[:, :, i] * h + dBu[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", h, Cf[:, :, i]))
    y = torch.stack(ys, dim=2) if ys else uf.new_zeros(b, d, 0)
    if D is not None:
        y = y + uf * D.float()[None, :, None]
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def _segsum(x: Tensor) -> Tensor:
    """Segment sums ``out[..., t, s] = sum_{s < r <= t} x[..., r]`` on and below the diagonal, 0 above.

    Built from a cumulative sum of ``x`` masked to the strict lower triangle instead of a difference of
    two running sums, so long chunks keep full fp32 precision.
    """
    t = int(x.shape[-1])  # a Python int even under tracing: the masks become ONNX constants
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=-1)
    xx = torch.where(strict, x.unsqueeze(-1), torch.zeros((), dtype=x.dtype, device=x.device))  # [r, s]
    return torch.cumsum(xx, dim=-2)  # constant axis: TensorRT's CumSum wants it


def _decay(seg: Tensor, A: Tensor) -> Tensor:
    """``exp(A[d, n] * seg[b, d, c, t, s])`` on and below the diagonal, 0 above: (b, d, n, c, t, s).

    ``seg >= 0`` and ``A < 0``, so no positive number is exponentiated; above the diagonal ``seg`` is 0
    and a 0/1 mask zeroes ``exp(0)`` (a multiply: cheaper than Where in ONNX Runtime, and no ``-inf``
    reaches the gradients).
    """
    t = int(seg.shape[-1])
    lower = torch.tril(torch.ones(t, t, dtype=seg.dtype, device=seg.device))
    return torch.exp(seg.unsqueeze(2) * A[None, :, :, None, None, None]) * lower


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = 64,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan in plain tensor ops, for ONNX / TensorRT export (same maths as the reference).

    The sequence is cut into ``c`` chunks of ``T = chunk_size`` steps (the last one zero-padded:
    ``dt = 0`` there, so the state passes unchanged), all processed at once, Mamba-2 "SSD" style:

    1. Inside every chunk, the state without what came before is a weighted sum of the chunk's inputs,
       ``s_t = sum_{s <= t} exp(A S[t, s]) dt_s B_s u_s``, with ``S`` the segment sums of ``dt``
       (:func:`_segsum`; ``A`` is per (channel, state), so ``S`` is shared across the states): one
       batched matmul over all chunks.
    2. The state at the end of chunk ``c`` is ``H_c = sum_{c' <= c} exp(A S'[c, c']) s_end[c']``, with
       ``S'`` the segment sums of the chunk totals of ``dt``: the same form one level up (c x c).
    3. Every step adds the decayed incoming state: ``h_t = s_t + exp(A sum_{r <= t} dt_r) H_{c-1}``.

    No Python loop over the sequence (the graph size does not grow with it), no positive number is
    exponentiated, and only Mul/Add/CumSum/Where/Exp/MatMul/ReduceSum/Pad/Reshape appear (no einsum, no
    ONNX loops; the sequence length is static, which windowed attention guarantees). Memory is
    ``O(b d n L T)``: ``T = 8`` suits CPUs (``T ~ sqrt(L)`` balances steps 1 and 2).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    uf = u.float()
    dt = _discretize(u, delta, delta_bias, delta_softplus)  # (b, d, l)
    Af = A.float()
    Bf, Cf = B.float(), C.float()
    b, d = uf.shape[:2]
    n = Af.shape[1]
    # The sequence length is a Python int even under tracing (windows fix it), so the chunking is
    # static; the batch axis stays dynamic.
    length = int(uf.shape[-1])
    if length == 0:
        y = uf.new_zeros(b, d, 0)
        return (y.to(dtype_in), uf.new_zeros(b, d, n)) if return_last_state else y.to(dtype_in)
    t = min(chunk_size, length)
    c = -(-length // t)
    pad = c * t - length
    dtu = dt * uf
    if pad:
        dt, dtu = F.pad(dt, (0, pad)), F.pad(dtu, (0, pad))
        Bf, Cf = F.pad(Bf, (0, pad)), F.pad(Cf, (0, pad))
    dt = dt.reshape(b, d, c, t)
    inputs = Bf.reshape(b, 1, n, c, t) * dtu.reshape(b, d, 1, c, t)  # (b, d, n, c, t): dt_s B_s u_s
    states = torch.matmul(_decay(_segsum(dt), Af), inputs.unsqueeze(-1)).squeeze(-1)  # (b, d, n, c, t)
    if c > 1:
        ends = torch.matmul(_decay(_segsum(dt.sum(-1)).unsqueeze(2), Af)[:, :, :, 0], states[..., -1:])
        h = ends[..., -1, 0]  # (b, d, n): state after the last step
        incoming = F.pad(ends[..., :-1, :], (0, 0, 1, 0))  # (b, d, n, c, 1): state entering chunk c
        decay_in = torch.exp(torch.cumsum(dt, dim=-1).unsqueeze(2) * Af[None, :, :, None, None])
        states = states + decay_in * incoming
    else:
        h = states[..., 0, -1]
    y = (states * Cf.reshape(b, 1, n, c, t)).sum(dim=2).reshape(b, d, c * t)
    if pad:
        y = y[..., :length]
    if D is not None:
        y = y + uf * D.float()[None, :, None]
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def transposed_attention_ref(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> Tensor:
    """Restormer MDTA-style transposed attention over channels.

    q, k, v: (B, heads, c, HW) with c = C / heads; temperature: (heads,) (any shape with ``heads``
    elements). q and k are L2-normalised along HW, attn = softmax(q k^T * tau) is (c x c) per head,
    out = attn v. Computed in fp32, returned in v's dtype.
    """
    heads = q.shape[1]
    qf = F.normalize(q.float(), dim=-1)
    kf = F.normalize(k.float(), dim=-1)
    attn = (qf @ kf.transpose(-2, -1)) * temperature.float().reshape(1, heads, 1, 1)
    attn = attn.softmax(dim=-1)
    return (attn @ v.float()).to(v.dtype)
