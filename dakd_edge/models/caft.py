"""CAFT: Context-Aware Feature Transfer, the block at every UNet++ skip node of SAROSS-Net.

A cross-attention version of Restormer's MDTA (Zamir et al., CVPR 2022): attention is computed
between *channels* ("transposed"), so its cost is O(C^2 HW) rather than O((HW)^2 C) and it runs on
full-resolution skips of any size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dakd_edge.kernels import transposed_attention


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel (Restormer's ``WithBias_LayerNorm``).

    Written with reductions over dim 1 instead of permutes so it exports to ONNX as plain ops. In an
    ONNX export the two channel means are 1x1 convolutions with weights ``1 / dim`` (the same sums):
    ONNX Runtime's CPU ReduceMean over the channel axis of NCHW is ~3x slower than its blocked-layout
    Conv and breaks the conv chain into layout reorders (``benchmarks/scene.py``).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dim, self.eps = dim, eps

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            mean = torch.full((1, self.dim, 1, 1), 1.0 / self.dim, dtype=x.dtype, device=x.device)
            xc = x - F.conv2d(x, mean)
            var = F.conv2d(xc * xc, mean)
        else:
            xc = x - x.mean(dim=1, keepdim=True)
            var = xc.pow(2).mean(dim=1, keepdim=True)
        x = xc / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GatedDconvFFN(nn.Module):
    """Restormer's GDFN: 1x1 expand to two branches, depthwise 3x3, GELU(a) * b, 1x1 back."""

    def __init__(self, dim: int, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = max(1, int(dim * expansion))
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class CAFT(nn.Module):
    """Transposed cross-attention from a coarse (query) feature into a fine (key/value) skip feature.

    ``forward(low, high)``: ``low`` is the upsampled low-resolution decoder feature (``dim_q``
    channels) and ``high`` the high-resolution skip feature (``dim`` channels), same H x W. Returns the
    refined skip feature, ``dim`` channels. Choices, each following Restormer unless noted:

    - **Pre-norm**: both inputs pass a channel LayerNorm (:class:`LayerNorm2d`) before projection, so
      the attention sees scale-free features from two different network depths.
    - **Projections**: Q = dwconv3x3(conv1x1(low)) and [K, V] = dwconv3x3(conv1x1(high)) as in MDTA
      (the depthwise conv adds local context before the global channel attention); the 1x1 maps the
      query to ``dim`` so that the channel-affinity map is square (C/h x C/h). No biases (Restormer).
    - **Attention**: per head, q and k are L2-normalised along the spatial axis, so q k^T is a
      cosine similarity bounded in [-1, 1]; a learned per-head temperature tau (init 1) sets the
      softmax sharpness; softmax over the C/h x C/h map; out = attn v. Computed by
      :func:`dakd_edge.kernels.transposed_attention` (reference or Triton kernel).
    - **Residual**: out = high + project_out(attn): the block refines the skip feature rather than
      replacing it, so at initialisation it passes the encoder feature through (as a plain skip).
    - **FFN**: a second pre-norm residual sub-block with Restormer's gated-dconv FFN (GDFN),
      expansion ``ffn_expansion`` (Restormer: 2.66; ``0`` disables it to save parameters).
    - **Window** (not in the paper): ``window=None`` attends over the whole map, as the paper does, so
      the channel affinities are statistics of the whole input: a tile holding several sea states
      mixes them. ``window=n`` computes them per ``n x n`` cell instead (the map zero-padded to a
      multiple of ``n``; zeros add nothing to the L2 norms or the products, so a partial cell attends
      over its real pixels only).
    """

    def __init__(
        self,
        dim: int,
        dim_q: int | None = None,
        num_heads: int = 1,
        ffn_expansion: float = 2.66,
        bias: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        dim_q = dim if dim_q is None else dim_q
        if dim % num_heads:
            raise ValueError(f"CAFT dim {dim} is not divisible by {num_heads} heads")
        if window is not None and window < 1:
            raise ValueError(f"CAFT window must be >= 1 or None, got {window}")
        self.dim, self.dim_q, self.num_heads, self.window = dim, dim_q, num_heads, window
        self.norm_q = LayerNorm2d(dim_q)
        self.norm_kv = LayerNorm2d(dim)
        self.q = nn.Conv2d(dim_q, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias)
        self.temperature = nn.Parameter(torch.ones(num_heads))
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        if ffn_expansion > 0:
            self.norm_ffn: nn.Module | None = LayerNorm2d(dim)
            self.ffn: nn.Module | None = GatedDconvFFN(dim, ffn_expansion, bias)
        else:
            self.norm_ffn = self.ffn = None

    def attend(self, low: Tensor, high: Tensor) -> Tensor:
        """The transposed cross-attention alone (no residual), (B, dim, H, W)."""
        b, _, h, w = high.shape
        heads, c = self.num_heads, self.dim // self.num_heads
        q = self.q_dwconv(self.q(self.norm_q(low)))
        k, v = self.kv_dwconv(self.kv(self.norm_kv(high))).chunk(2, dim=1)
        if self.window is None:
            q, k, v = (t.reshape(b, heads, c, h * w) for t in (q, k, v))
            out = transposed_attention(q, k, v, self.temperature).reshape(b, self.dim, h, w)
            return self.project_out(out)
        n = self.window
        pad_b, pad_r = (n - h % n) % n, (n - w % n) % n
        # An export records the branch its trace size takes: pad (by zero when none is needed) always.
        padded = bool(pad_b or pad_r) or torch.onnx.is_in_onnx_export()
        if padded:
            q, k, v = (F.pad(t, (0, pad_r, 0, pad_b)) for t in (q, k, v))
        hp, wp = q.shape[-2:]

        def cells(t: Tensor) -> Tensor:  # (b, dim, hp, wp) -> (b * cells, heads, c, n * n)
            t = t.reshape(b, self.dim, hp // n, n, wp // n, n).permute(0, 2, 4, 1, 3, 5)
            return t.reshape(-1, heads, c, n * n)

        out = transposed_attention(cells(q), cells(k), cells(v), self.temperature)
        out = out.reshape(b, hp // n, wp // n, self.dim, n, n).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(b, self.dim, hp, wp)
        if padded:
            out = out[:, :, :h, :w]
        return self.project_out(out)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        if low.shape[-2:] != high.shape[-2:]:
            raise ValueError(f"CAFT inputs differ in size: {tuple(low.shape)} vs {tuple(high.shape)}")
        x = high + self.attend(low, high)
        if self.ffn is not None:
            x = x + self.ffn(self.norm_ffn(x))
        return x


def pick_heads(dim: int, head_dim: int) -> int:
    """Largest head count <= dim // head_dim that divides ``dim`` (at least 1)."""
    for h in range(max(1, dim // head_dim), 0, -1):
        if dim % h == 0:
            return h
    return 1
