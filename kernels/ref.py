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
