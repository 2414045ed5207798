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
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t;  y_t = C_t . h_t + D u_t.

    ``chunk_size=None`` runs the sequential loop (:func:`_scan_loop`, the reference the kernels are
    tested against); a chunk length runs the same maths in the two-level form of
    :func:`_scan_chunked`, for ONNX / TensorRT export. Both share the discretisation, the ``D`` skip
    and the fp32 state; ``return_last_state`` adds the final state ``h_L`` (b, d, n).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    uf = u.float()
    dt = _discretize(u, delta, delta_bias, delta_softplus)  # (b, d, l)
    Af = A.float()
    Bf, Cf = B.float(), C.float()
    if chunk_size is None:
        y, h = _scan_loop(uf, dt, Af, Bf, Cf)
    else:
        y, h = _scan_chunked(uf, dt, Af, Bf, Cf, chunk_size)
    if D is not None:
        y = y + uf * D.float()[None, :, None]
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def _scan_loop(uf: Tensor, dt: Tensor, Af: Tensor, Bf: Tensor, Cf: Tensor) -> tuple[Tensor, Tensor]:
    """(y without the D skip, last state) of the sequential recurrence; all inputs fp32."""
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
    return y, h


def _steps_first(x: Tensor, c: int, t: int) -> Tensor:
    """(b, k, c * t) -> (t, c, b, k): the step inside a chunk leads, so every step is one contiguous slice."""
    return x.reshape(x.shape[0], x.shape[1], c, t).permute(3, 2, 0, 1)


def _scan_chunked(
    uf: Tensor, dt: Tensor, Af: Tensor, Bf: Tensor, Cf: Tensor, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """The recurrence of :func:`_scan_loop` in plain tensor ops, for ONNX / TensorRT export.

    The sequence is cut into ``c`` chunks of ``T = chunk_size`` steps (the last one zero-padded:
    ``dt = 0`` there, so the state passes unchanged) and the recurrence runs on two levels:

    1. Inside every chunk, from a zero state, all chunks at once: ``s_i = a_i s_{i-1} + x_i`` with
       ``a_i = exp(dt_i A)`` and ``x_i = dt_i B_i u_i``, and the running decay ``p_i = a_1 ... a_i``
       (``T`` unrolled steps on (c, b, d, n) tensors).
    2. Across chunks, the state entering chunk ``j``: ``H_j = p_T[j-1] H_{j-1} + s_T[j-1]`` (``c``
       unrolled steps on (b, d, n)).
    3. Every step adds its decayed incoming state: ``h_i = s_i + p_i H_j``.

    The work is ``O(b d n L)`` like the sequential loop, while the graph holds ``O(T + L / T)`` steps
    (``T ~ sqrt(L)``: 8 for MambaVision's 64-token windows). Only factors in (0, 1] are multiplied (no
    positive number is exponentiated, so strong decays underflow to 0, never overflow), and only
    Exp/Mul/Add/Gather/Concat/Transpose/Reshape/ReduceSum/Pad appear: no einsum, no ONNX loops (the
    sequence length is static, which windowed attention guarantees). On ONNX Runtime CPU this runs a
    64-token window 2.5-3x faster than the Mamba-2 "SSD" matrix form it replaced, whose ``T x T`` decay
    matrices per (channel, state) cost ``T`` times more memory traffic.
    """
    b, d = uf.shape[:2]
    n = Af.shape[1]
    # The sequence length is a Python int even under tracing (windows fix it), so the chunking is
    # static; the batch axis stays dynamic.
    length = int(uf.shape[-1])
    if length == 0:
        return uf.new_zeros(b, d, 0), uf.new_zeros(b, d, n)
    t = min(chunk_size, length)
    c = -(-length // t)
    pad = c * t - length
    dtu = dt * uf
    if pad:
        dt, dtu = F.pad(dt, (0, pad)), F.pad(dtu, (0, pad))
        Bf, Cf = F.pad(Bf, (0, pad)), F.pad(Cf, (0, pad))
    dts = _steps_first(dt, c, t).unsqueeze(-1)  # (t, c, b, d, 1)
    decay = torch.exp(dts * Af)  # (t, c, b, d, n), in (0, 1]
    inputs = _steps_first(dtu, c, t).unsqueeze(-1) * _steps_first(Bf, c, t).unsqueeze(3)
    s, p = inputs[0], decay[0]
    states, running = [s], [p]
    for i in range(1, t):
        s = decay[i] * s + inputs[i]
        p = p * decay[i]
        states.append(s)
        running.append(p)
    st = torch.stack(states)  # (t, c, b, d, n)
    h = st[-1, 0]  # (b, d, n)
    if c > 1:
        pr = torch.stack(running)
        incoming = [torch.zeros_like(h)]
        for j in range(1, c):
            incoming.append(h)
            h = pr[-1, j] * h + st[-1, j]
        st = st + pr * torch.stack(incoming).unsqueeze(0)
    y = (st * _steps_first(Cf, c, t).unsqueeze(3)).sum(-1)  # (t, c, b, d)
    y = y.permute(2, 3, 1, 0).reshape(b, d, c * t)
    if pad:
        y = y[..., :length]
    return y, h


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
