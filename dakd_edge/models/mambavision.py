"""MambaVision encoder (Hatamizadeh & Kautz, NVlabs), re-implemented as a four-stage feature extractor.

Module and parameter names are identical to the ``mambavision`` PyPI package (``patch_embed``,
``levels.{i}.blocks.{j}.mixer.A_log``, ...), so an official ``*.pth.tar`` checkpoint loads with
:func:`load_encoder_weights` without renaming. Architecture, as upstream:

- ``patch_embed``: two stride-2 3x3 convs (stride 4 in all), BatchNorm (eps 1e-4) + ReLU.
- ``levels.0/1``: residual conv blocks (conv-BN-GELU(tanh)-conv-BN) at strides 4 and 8.
- ``levels.2/3``: hybrid blocks on non-overlapping windows (input zero-padded to a multiple of the
  window, cropped back): the first half of each stage uses :class:`MambaVisionMixer`, the second half
  multi-head self-attention; pre-norm LayerNorm + MLP, optional layer scale.
- ``levels.{0,1,2}.downsample``: stride-2 3x3 conv doubling the width.

Feature maps are taken *before* each level's downsample (strides 4, 8, 16, 32); the last one also
passes the pretrained final BatchNorm ``norm`` (what the classifier saw). The classification head of
the checkpoints is not built and is reported as an unused key when loading.

The selective scan goes through :func:`dakd_edge.kernels.selective_scan` (PyTorch reference or the
Triton kernel), never ``mamba_ssm``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dakd_edge.errors import ModelFileError
from dakd_edge.kernels import selective_scan


@dataclass
class MambaVisionConfig:
    """Hyper-parameters of one MambaVision variant (names follow the upstream factory functions)."""

    dim: int = 80  # width of stage 1; stage i has dim * 2**i channels
    in_dim: int = 32  # width of the first stem conv
    depths: tuple[int, int, int, int] = (1, 3, 8, 4)
    num_heads: tuple[int, int, int, int] = (2, 4, 8, 16)
    window_size: tuple[int, int, int, int] = (8, 8, 14, 7)
    mlp_ratio: float = 4.0
    layer_scale: float | None = None  # hybrid blocks (B and L use 1e-5)
    layer_scale_conv: float | None = None  # conv blocks
    qkv_bias: bool = True
    drop_path_rate: float = 0.2
    in_chans: int = 3

    def __post_init__(self) -> None:
        for name in ("depths", "num_heads", "window_size"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 4:
                raise ValueError(f"MambaVision needs 4 stages, got {name}={value}")
            setattr(self, name, value)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of the four stage feature maps."""
        return tuple(self.dim * 2**i for i in range(4))  # type: ignore[return-value]


# NVlabs configurations (mamba_vision_T ... mamba_vision_L) plus `nano`, a CPU-sized member of the
# same family used by tests and the bundled edge model (windows of 8 tile 512-pixel inputs exactly).
MAMBAVISION_CONFIGS: dict[str, MambaVisionConfig] = {
    "nano": MambaVisionConfig(
        dim=32, in_dim=16, depths=(1, 1, 2, 2), num_heads=(1, 2, 4, 8), window_size=(8, 8, 8, 8),
        drop_path_rate=0.0,
    ),
    "t": MambaVisionConfig(dim=80, in_dim=32, depths=(1, 3, 8, 4)),
    "t2": MambaVisionConfig(dim=80, in_dim=32, depths=(1, 3, 11, 4)),
    "s": MambaVisionConfig(dim=96, in_dim=64, depths=(3, 3, 7, 5)),
    "b": MambaVisionConfig(dim=128, in_dim=64, depths=(3, 3, 10, 5), drop_path_rate=0.3, layer_scale=1e-5),
    "l": MambaVisionConfig(
        dim=196, in_dim=64, depths=(3, 3, 10, 5), num_heads=(4, 8, 16, 32), drop_path_rate=0.3,
        layer_scale=1e-5,
    ),
}  # fmt: skip


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) with H, W multiples of ``window`` -> (B * nWindows, window**2, C), row-major tokens."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nWindows, window**2, C) -> (B, C, H, W)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, c, h, w)


class PatchEmbed(nn.Module):
    """Stem: two stride-2 convs to 1/4 resolution (``proj`` is an upstream placeholder)."""

    def __init__(self, in_chans: int, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Identity()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_chans, in_dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(in_dim, eps=1e-4),
            nn.ReLU(),
            nn.Conv2d(in_dim, dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_down(self.proj(x))


class Downsample(nn.Module):
    """Stride-2 3x3 conv that doubles the width between stages."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(x)


class ConvBlock(nn.Module):
    """Residual conv-BN-GELU-conv-BN block of stages 1 and 2."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: float | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = nn.GELU(approximate="tanh")
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale is not None else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)


class MambaVisionMixer(nn.Module):
    """MambaVision token mixer: a symmetric SSM branch and a gate-free conv branch, concatenated.

    The input is projected to ``d_inner`` channels and split in half. One half goes through a
    depthwise causal-free ("same") conv, SiLU and the selective scan (real ``A = -exp(A_log)`` of shape
    ``(d_inner/2, d_state)``, input-dependent ``B``, ``C``, ``delta = softplus(dt + dt_bias)``, ``D``
    skip, no ``z`` gating inside the scan); the other half only gets conv + SiLU. Both halves are
    concatenated and projected back. As upstream, ``dt_proj``'s bias is applied twice (once by the
    Linear, once as the scan's ``delta_bias``): the official checkpoints were trained that way.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 8,
        d_conv: int = 3,
        expand: int = 1,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        half = self.d_inner // 2
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, self.d_inner, bias=False)
        self.x_proj = nn.Linear(half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half, bias=True)
        # Mamba's initialisation: dt spread log-uniformly in [dt_min, dt_max] through the bias
        # (inverse softplus), S4D-real A = -(1..N).
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(half) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(half, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(half))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.conv1d_x = nn.Conv1d(half, half, d_conv, groups=half, bias=False)
        self.conv1d_z = nn.Conv1d(half, half, d_conv, groups=half, bias=False)

    def forward(self, hidden: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        b, length, _ = hidden.shape
        half = self.d_inner // 2
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, d_inner, L)
        x, z = xz.chunk(2, dim=1)
        pad = (self.d_conv - 1) // 2
        if self.d_conv % 2 == 0:
            # Even kernel (upstream's class default is 4): PyTorch's padding="same", which upstream
            # uses, puts the extra zero on the right. Odd kernels (every released model: 3) keep the
            # symmetric integer padding below.
            x, z = F.pad(x, (pad, pad + 1)), F.pad(z, (pad, pad + 1))
            pad = 0
        x = F.silu(F.conv1d(x, self.conv1d_x.weight, self.conv1d_x.bias, padding=pad, groups=half))
        z = F.silu(F.conv1d(z, self.conv1d_z.weight, self.conv1d_z.bias, padding=pad, groups=half))
        x_dbl = self.x_proj(x.transpose(1, 2).reshape(b * length, half))
        dt, bmat, cmat = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj(dt).reshape(b, length, half).transpose(1, 2)
        bmat = bmat.reshape(b, length, self.d_state).transpose(1, 2).contiguous()
        cmat = cmat.reshape(b, length, self.d_state).transpose(1, 2).contiguous()
        a = -torch.exp(self.A_log.float())
        y = selective_scan(
            x, dt, a, bmat, cmat, self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True
        )
        y = torch.cat([y, z], dim=1).transpose(1, 2)
        return self.out_proj(y)


class Attention(nn.Module):
    """Multi-head self-attention over the tokens of one window (fused SDPA)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.Identity()  # upstream's qk_norm slots (off in every released model)
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two-layer GELU MLP (timm ``Mlp`` naming: fc1, fc2)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm hybrid block: mixer (Mamba or attention) + MLP, each with optional layer scale."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attention: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer: nn.Module = (
            Attention(dim, num_heads, qkv_bias) if attention else MambaVisionMixer(dim, d_state=8, d_conv=3)
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        ls = layer_scale is not None
        self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim)) if ls else None
        self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim)) if ls else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.mixer(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


def attention_blocks(depth: int) -> range:
    """Indices of the self-attention blocks of a hybrid stage: the second half (upstream's rule)."""
    return range(depth // 2 + 1, depth) if depth % 2 else range(depth // 2, depth)


class MambaVisionLayer(nn.Module):
    """One stage: conv blocks, or hybrid blocks run on zero-padded windows; optional downsample."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        conv: bool,
        downsample: bool,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: list[float],
        layer_scale: float | None,
        layer_scale_conv: float | None,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.window_size = window_size
        if conv:
            blocks = [ConvBlock(dim, drop_path[i], layer_scale_conv) for i in range(depth)]
        else:
            attn = set(attention_blocks(depth))
            blocks = [
                Block(dim, num_heads, i in attn, mlp_ratio, qkv_bias, drop_path[i], layer_scale)
                for i in range(depth)
            ]
        self.blocks = nn.ModuleList(blocks)
        self.downsample = Downsample(dim) if downsample else None

    def forward_features(self, x: Tensor) -> Tensor:
        """Stage output before the downsample, same spatial size as ``x``."""
        if self.conv:
            for blk in self.blocks:
                x = blk(x)
            return x
        h, w = x.shape[-2:]
        ws = self.window_size
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        hp, wp = x.shape[-2:]
        tokens = window_partition(x, ws)
        for blk in self.blocks:
            tokens = blk(tokens)
        x = window_reverse(tokens, ws, hp, wp)
        if pad_b or pad_r:
            x = x[:, :, :h, :w].contiguous()
        return x


class MambaVisionEncoder(nn.Module):
    """MambaVision backbone returning the four stage feature maps (strides 4, 8, 16, 32)."""

    def __init__(self, config: MambaVisionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.in_chans, c.in_dim, c.dim)
        n = sum(c.depths)  # stochastic depth grows linearly with block index (python: meta-device safe)
        dpr = [c.drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.levels = nn.ModuleList()
        for i, depth in enumerate(c.depths):
            start = sum(c.depths[:i])
            self.levels.append(
                MambaVisionLayer(
                    dim=c.dim * 2**i,
                    depth=depth,
                    num_heads=c.num_heads[i],
                    window_size=c.window_size[i],
                    conv=i < 2,
                    downsample=i < 3,
                    mlp_ratio=c.mlp_ratio,
                    qkv_bias=c.qkv_bias,
                    drop_path=dpr[start : start + depth],
                    layer_scale=c.layer_scale,
                    layer_scale_conv=c.layer_scale_conv,
                )
            )
        self.norm = nn.BatchNorm2d(c.channels[-1])
        self.apply(_init_weights)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return self.config.channels

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        feats = []
        for level in self.levels:
            f = level.forward_features(x)
            feats.append(f)
            if level.downsample is not None:
                x = level.downsample(f)
        feats[-1] = self.norm(feats[-1])
        return feats


def _init_weights(m: nn.Module) -> None:
    """Upstream's init (truncated-normal Linear, unit norms), except ``dt_proj``: it keeps Mamba's
    dt initialisation (log-uniform dt through the bias), which upstream's ``apply`` overwrites with
    trunc-normal weights and a zero bias. Only training from scratch sees the difference."""
    if isinstance(m, nn.Linear) and not getattr(m.bias, "_no_reinit", False):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_mambavision(variant: str = "t", in_chans: int = 3, **overrides) -> MambaVisionEncoder:
    """Encoder for ``variant`` in :data:`MAMBAVISION_CONFIGS` with optional config overrides."""
    key = variant.lower()
    if key not in MAMBAVISION_CONFIGS:
        raise ValueError(
            f"unknown MambaVision variant {variant!r}; choose from {sorted(MAMBAVISION_CONFIGS)}"
        )
    known = {f.name for f in fields(MambaVisionConfig)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown MambaVision options {sorted(bad)}")
    cfg = MambaVisionConfig(**{**asdict(MAMBAVISION_CONFIGS[key]), **overrides, "in_chans": in_chans})
    return MambaVisionEncoder(cfg)


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did: keys it ignored and keys the checkpoint lacked."""

    loaded: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # stem weights folded to in_chans

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; {len(self.missing)} missing "
            f"({', '.join(self.missing[:5])}{'...' if len(self.missing) > 5 else ''}); "
            f"{len(self.unexpected)} unused "
            f"({', '.join(self.unexpected[:5])}{'...' if len(self.unexpected) > 5 else ''})"
        )


STEM_KEY = "patch_embed.conv_down.0.weight"


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Fit pretrained RGB stem weights (O, 3, k, k) to ``in_chans`` inputs.

    One channel (SAR amplitude): sum over RGB, so a grey image fed as three equal channels and the
    same image fed as one channel give the same response. Other counts repeat the RGB kernels
    cyclically and rescale by 3 / in_chans to keep the activation scale.
    """
    src = weight.shape[1]
    if src == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / src)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)


def read_state_dict(path: Path, hint: str) -> Any:
    """The state dict saved in ``path`` (``torch.load`` with ``weights_only=True``), taken out of a
    ``state_dict`` / ``model`` entry when the file wraps it in one.

    A missing file is a :class:`ModelFileError` that says, through ``hint``, which weights belong
    there; an unreadable one (corrupt, pickled objects refused by ``weights_only``) names the cause.
    """
    if not path.is_file():
        raise ModelFileError(f"encoder weights not found: {path} ({hint})")
    _check_torch_load(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelFileError(f"cannot read encoder weights {path}: {e}") from e
    return sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd


def _check_torch_load(path: Path) -> None:
    """Refuse a pickled weights file where PyTorch's weights-only load is not safe (before 2.6)."""
    from dakd_edge.models.checkpoint import weights_only_is_safe

    if not weights_only_is_safe(torch.__version__):
        raise ModelFileError(
            f"{path}: not reading pickled encoder weights with PyTorch {torch.__version__} (CVE-2025-32434: "
            "before 2.6 a crafted file can run code in a weights-only load); give a .safetensors file"
        )


def _extract_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: not a MambaVision checkpoint (no state dict inside)")
    for key in ("state_dict", "model", "state_dict_ema"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not sd:
        raise ModelFileError(f"{path}: checkpoint holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if any(k.startswith("encoder.") for k in sd) and not any(k.startswith("patch_embed.") for k in sd):
        sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    return sd


def load_encoder_weights(
    model: MambaVisionEncoder, path: str | os.PathLike, strict: bool = False
) -> LoadReport:
    """Load an official MambaVision checkpoint (``*.pth.tar``) into ``model``.

    Accepts the raw state dict or one under ``state_dict`` / ``model``, with or without a
    ``module.`` prefix; safetensors files work too. Loads with ``weights_only=True``. The stem is
    adapted to ``model``'s input channels (see :func:`adapt_input_conv`). Keys the encoder does not
    have (the classifier ``head``) and keys the checkpoint lacks are reported, and are errors when
    ``strict``; a shape mismatch is always a :class:`ModelFileError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(
            f"encoder weights not found: {p} (download an official MambaVision checkpoint, e.g. "
            "mambavision_base_1k.pth.tar from huggingface.co/nvidia, to a local path)"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(p))
        else:
            _check_torch_load(p)
            raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled objects refused by weights_only, ...
        raise ModelFileError(f"cannot read encoder weights {p}: {e}") from e
    sd = _extract_state_dict(raw, p)
    own = model.state_dict()
    report = LoadReport()
    if STEM_KEY in sd and STEM_KEY in own and sd[STEM_KEY].shape[1] != own[STEM_KEY].shape[1]:
        sd[STEM_KEY] = adapt_input_conv(sd[STEM_KEY], own[STEM_KEY].shape[1])
        report.adapted.append(STEM_KEY)
    report.unexpected = sorted(k for k in sd if k not in own)
    report.missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if mismatched:
        raise ModelFileError(
            f"{p} does not fit this MambaVision variant (wrong variant?): " + "; ".join(mismatched[:5])
        )
    if strict and (report.unexpected or report.missing):
        raise ModelFileError(f"{p}: keys do not match exactly: {report.summary()}")
    to_load = {k: v for k, v in sd.items() if k in own}
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report
