"""A tiny windowed scan + transposed-attention net: exercises both hot ops and window padding fast.

It stands in for SAROSS-Net where a test is about the export machinery rather than one architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dakd_edge.kernels import selective_scan, transposed_attention
from dakd_edge.meta import ModelMeta


class ToyNet(nn.Module):
    exportable = True

    def __init__(
        self, num_classes: int = 2, in_chans: int = 1, dim: int = 8, window: int = 7, heads: int = 2
    ):
        super().__init__()
        self.window, self.heads, self.d_state = window, heads, 4
        self.stem = nn.Conv2d(in_chans, dim, 3, stride=2, padding=1)
        self.in_proj = nn.Linear(dim, 2 * dim + 2 * self.d_state)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.d_state + 1).float()).repeat(dim, 1))
        self.D = nn.Parameter(torch.ones(dim))
        self.dt_bias = nn.Parameter(torch.full((dim,), -1.0))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.head = nn.Conv2d(dim, num_classes, 1)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        win = self.window
        ph, pw = (win - h % win) % win, (win - w % win) % win
        x = F.pad(x, (0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        t = x.view(b, c, hp // win, win, wp // win, win).permute(0, 2, 4, 3, 5, 1).reshape(-1, win * win, c)
        u, dt, bc = torch.split(self.in_proj(t), [c, c, 2 * self.d_state], dim=-1)
        Bm, Cm = bc.chunk(2, dim=-1)
        y = selective_scan(
            u.transpose(1, 2), dt.transpose(1, 2), -torch.exp(self.A_log), Bm.transpose(1, 2).contiguous(),
            Cm.transpose(1, 2).contiguous(), self.D, self.dt_bias, delta_softplus=True,
        )  # fmt: skip
        y = y.transpose(1, 2).reshape(b, hp // win, wp // win, win, win, c)
        y = y.permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return y[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        f = F.gelu(self.stem(x))
        f = f + self._mix(f)
        b, c, h, w = f.shape
        q, k, v = self.qkv(f).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        f = f + transposed_attention(q, k, v, self.temperature).reshape(b, c, h, w)
        return F.interpolate(self.head(f), size=size, mode="bilinear", align_corners=False)


def toy(num_classes: int = 2, seed: int = 0) -> tuple[ToyNet, ModelMeta]:
    torch.manual_seed(seed)
    return ToyNet(num_classes).eval(), ModelMeta.default_for("toy", num_classes, tile=64)
