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
    """Segment sums ``out[..., t, s] = sum_{s < r <= t} x[..., r]`` (lower triangle), ``-inf`` above.

    Built from a cumulative sum of ``x`` masked to the strict lower triangle instead of a difference of
    two running sums, so long chunks keep full fp32 precision and no positive number is exponentiated.
    """
    t = int(x.shape[-1])  # a Python int even under tracing: the masks become ONNX constants
    xx = x.unsqueeze(-1).expand(*x.shape, t)  # xx[..., r, s] = x[..., r]
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=-1)
    xx = torch.where(strict, xx, torch.zeros((), dtype=x.dtype, device=x.device))
    seg = torch.cumsum(xx, dim=-2)  # constant axis: TensorRT's CumSum wants it
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
    return torch.where(lower, seg, torch.full((), float("-inf"), dtype=x.dtype, device=x.device))


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

    The sequence is cut into chunks of ``chunk_size`` steps. Inside a chunk every state is a weighted
    sum of the chunk's inputs, ``h_t = exp(S[t, 0-]) h_in + sum_{s <= t} exp(S[t, s]) dt_s B_s u_s``, with
    the decays ``S`` from :func:`_segsum` of ``dt * A`` (log space, lower triangle, ``exp(-inf) = 0`` above
    it), evaluated as one batched matmul; a short Python loop over chunks carries the fp32 state. Only
    Mul/Add/CumSum/Where/Exp/MatMul/ReduceSum/Slice/Concat appear in the graph (no einsum, no loops in
    ONNX for a static sequence length, which windowed attention guarantees). Memory is
    ``O(b d n chunk^2)`` per chunk.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    uf = u.float()
    dt = _discretize(u, delta, delta_bias, delta_softplus)  # (b, d, l)
    Af = A.float()
    Bf, Cf = B.float(), C.float()
    # The sequence length is a Python int even under tracing (windows fix it), so the chunk loop
    # unrolls into a static graph; the batch axis stays dynamic.
    length = int(uf.shape[-1])
    log_decay = dt.unsqueeze(2) * Af[None, :, :, None]  # (b, d, n, l), <= 0 for A < 0
    inputs = Bf.unsqueeze(1) * (dt * uf).unsqueeze(2)  # (b, d, n, l): dt_s B_s u_s
    h: Tensor | None = None
    ys = []
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        seg = _segsum(log_decay[..., start:stop])  # (b, d, n, T, T)
        states = torch.matmul(torch.exp(seg), inputs[..., start:stop].unsqueeze(-1)).squeeze(-1)
        if h is not None:
            # Decay of the incoming state up to step t: exp(sum_{r <= t} x_r) = exp(x_0 + S[t, 0]).
            carry = torch.exp(seg[..., :, 0] + log_decay[..., start : start + 1])
            states = states + carry * h.unsqueeze(-1)  # (b, d, n, T)
        ys.append((states * Cf[:, None, :, start:stop]).sum(dim=2))
        h = states[..., -1]
    b, d = uf.shape[:2]
    if h is None:
        h = uf.new_zeros(b, d, Af.shape[1])
    y = torch.cat(ys, dim=-1) if ys else uf.new_zeros(b, d, 0)
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
