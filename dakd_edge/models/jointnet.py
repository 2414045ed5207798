"""SAR-JointNet: joint pixel-domain diffusion of a SAR image and its K-class label map.

Two denoising UNets built from diffusers' blocks, after JointNet (Zhang et al., ICLR 2024):

* **SAR-Net** denoises the image ``x`` (1 channel, unit luminance mapped to ``2 * unit - 1``);
* **Label-Net** denoises the balanced one-hot mask ``y_b = b * (2 * onehot - 1)`` (K channels, Eq. 1).

They share one timestep embedding and exchange features after ``conv_in``, after every down block,
after the middle block and after every up block through zero-initialised 1x1 convolutions in both
directions (``links.x2y`` / ``links.y2x``), so at initialisation each branch computes exactly what it
would alone and Label-Net can start as a copy of a trained SAR-Net (training stage 2). Both branches
predict the clean sample: SAR-Net returns ``x0_hat``; Label-Net returns logits ``l_hat``, mapped into the
mask range with Eq. 21, ``y0_hat = b * (2 * softmax(l_hat) - 1)``, during sampling.

The balancing factor ``b = sqrt(P(x) / P(y_n))`` (Eq. 4) equalises the signal-to-noise ratio of the two
modalities under the same noise schedule; :func:`compute_balancing_factor` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from torch import nn

from dakd_edge.meta import IGNORE_INDEX


@dataclass
class JointNetConfig:
    """Architecture of both branches (identical, so Label-Net can be initialised from SAR-Net).

    ``attention`` flags, one per resolution level, switch the diffusers blocks to their self-attention
    variants (``AttnDownBlock2D`` / ``AttnUpBlock2D``); ``mid_attention`` does the same for the middle
    block. Inputs must be divisible by ``2 ** (len(block_out_channels) - 1)``.
    """

    num_classes: int = 2
    block_out_channels: tuple[int, ...] = (64, 128, 256, 256)
    attention: tuple[bool, ...] = (False, False, True, True)
    layers_per_block: int = 2
    mid_attention: bool = True
    norm_num_groups: int = 32
    attention_head_dim: int = 64
    dropout: float = 0.0
    sample_size: int = 256  # training crop / generated resolution (informational; any multiple works)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        self.attention = tuple(bool(a) for a in self.attention)
        if len(self.attention) != len(self.block_out_channels):
            raise ValueError("attention needs one flag per entry of block_out_channels")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(f"channels {c} not divisible by norm_num_groups {self.norm_num_groups}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention"] = list(self.attention)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JointNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown JointNetConfig keys: {sorted(unknown)}")
        return cls(**dict(d))


# Presets. "base" is a DDPM-style 256-px UNet (about 26.5M parameters per branch); "tiny" is for tests.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        block_out_channels=(16, 32),
        attention=(False, False),
        layers_per_block=1,
        mid_attention=False,
        norm_num_groups=8,
        attention_head_dim=8,
        sample_size=32,
    ),
    "small": dict(
        block_out_channels=(32, 64, 128, 128),
        attention=(False, False, False, True),
        layers_per_block=1,
        norm_num_groups=16,
        attention_head_dim=32,
        sample_size=128,
    ),
    "base": dict(),
}


def jointnet_config(preset: str = "base", num_classes: int = 2, **overrides: Any) -> JointNetConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown JointNet preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return JointNetConfig(num_classes=num_classes, **{**PRESETS[preset], **overrides})


class UNetBranch(nn.Module):
    """One denoising UNet (conv_in -> down blocks -> mid -> up blocks -> conv_out) without its own
    timestep embedding; the joint forward drives its parts so the branches can exchange features."""

    def __init__(self, cfg: JointNetConfig, in_channels: int, out_channels: int, temb_channels: int) -> None:
        super().__init__()
        ch = cfg.block_out_channels
        common = dict(
            resnet_eps=1e-5,
            resnet_act_fn="silu",
            resnet_groups=cfg.norm_num_groups,
            attention_head_dim=cfg.attention_head_dim,
            dropout=cfg.dropout,
        )
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, (c, attn) in enumerate(zip(ch, cfg.attention, strict=True)):
            self.down_blocks.append(
                get_down_block(
                    "AttnDownBlock2D" if attn else "DownBlock2D",
                    num_layers=cfg.layers_per_block,
                    in_channels=prev,
                    out_channels=c,
                    temb_channels=temb_channels,
                    add_downsample=i < len(ch) - 1,
                    downsample_padding=1,
                    **common,
                )
            )
            prev = c
        self.mid_block = UNetMidBlock2D(
            in_channels=ch[-1],
            temb_channels=temb_channels,
            dropout=cfg.dropout,
            resnet_eps=1e-5,
            resnet_act_fn="silu",
            resnet_groups=cfg.norm_num_groups,
            add_attention=cfg.mid_attention,
            attention_head_dim=cfg.attention_head_dim,
        )
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        rev_attn = list(reversed(cfg.attention))
        prev_out = rev[0]
        for i, (c, attn) in enumerate(zip(rev, rev_attn, strict=True)):
            in_c = rev[min(i + 1, len(rev) - 1)]
            self.up_blocks.append(
                get_up_block(
                    "AttnUpBlock2D" if attn else "UpBlock2D",
                    num_layers=cfg.layers_per_block + 1,
                    in_channels=in_c,
                    out_channels=c,
                    prev_output_channel=prev_out,
                    temb_channels=temb_channels,
                    add_upsample=i < len(rev) - 1,
                    resolution_idx=i,
                    **common,
                )
            )
            prev_out = c
        self.norm_out = nn.GroupNorm(cfg.norm_num_groups, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(h)))

    def io_layer_names(self) -> tuple[str, ...]:
        """Layers whose shapes depend on the channel count (re-initialised when copying SAR-Net)."""
        return ("conv_in", "conv_out")


class _Links(nn.Module):
    """Zero-initialised 1x1 convolutions between the branches, one per exchange point and direction."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.x2y = nn.ModuleList(_zero_conv(c) for c in channels)
        self.y2x = nn.ModuleList(_zero_conv(c) for c in channels)


def _zero_conv(c: int) -> nn.Conv2d:
    conv = nn.Conv2d(c, c, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class SARJointNet(nn.Module):
    """SAR-Net + Label-Net with a shared timestep embedding and two-way zero-conv interconnections.

    ``forward(x_t, t)`` runs SAR-Net alone (training stage 1) and returns ``x0_hat``;
    ``forward(x_t, t, y_t)`` runs both and returns ``(x0_hat, logits)``.
    """

    def __init__(self, config: JointNetConfig | None = None, **kw: Any) -> None:
        super().__init__()
        self.config = config or JointNetConfig(**kw)
        cfg = self.config
        c0 = cfg.block_out_channels[0]
        temb = 4 * c0
        self.time_proj = Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c0, temb)
        self.sar = UNetBranch(cfg, 1, 1, temb)
        self.label = UNetBranch(cfg, cfg.num_classes, cfg.num_classes, temb)
        self.links = _Links(self._exchange_channels())

    def _exchange_channels(self) -> list[int]:
        ch = list(self.config.block_out_channels)
        return [ch[0], *ch, ch[-1], *reversed(ch)]  # conv_in, downs, mid, ups

    # ---------------------------------------------------------------------------------------- helpers
    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names by role: 'sar' (incl. the shared timestep embedding), 'label', 'links'."""
        groups: dict[str, list[str]] = {"sar": [], "label": [], "links": []}
        for name, _ in self.named_parameters():
            root = name.split(".", 1)[0]
            key = {"label": "label", "links": "links"}.get(root, "sar")
            groups[key].append(name)
        return groups

    @torch.no_grad()
    def init_label_from_sar(self, generator: torch.Generator | None = None) -> list[str]:
        """Stage 2 initialisation: copy SAR-Net into Label-Net except its input/output layers, which
        get a fresh default initialisation for K channels. Returns the names of re-initialised tensors."""
        sar_state = self.sar.state_dict()
        io = self.label.io_layer_names()
        keep = {k: v for k, v in sar_state.items() if k.split(".", 1)[0] not in io}
        missing, unexpected = self.label.load_state_dict(keep, strict=False)
        assert not unexpected, unexpected
        reinit = []
        for name in io:
            layer: nn.Conv2d = getattr(self.label, name)
            _reset_conv(layer, generator)
            reinit += [f"label.{name}.weight", f"label.{name}.bias"]
        assert sorted(missing) == sorted(r.split(".", 1)[1] for r in reinit), missing
        return reinit

    # ---------------------------------------------------------------------------------------- forward
    def embed_time(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(batch) if t.numel() == 1 else t
        return self.time_embedding(self.time_proj(t).to(dtype))

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, y_t: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.config.downsample_factor
        if x_t.shape[-1] % f or x_t.shape[-2] % f:
            raise ValueError(f"input size {tuple(x_t.shape[-2:])} must be divisible by {f}")
        emb = self.embed_time(t.to(x_t.device), x_t.shape[0], x_t.dtype)
        if y_t is None:
            return self._forward_single(self.sar, x_t, emb)
        return self._forward_joint(x_t, y_t, emb)

    @staticmethod
    def _forward_single(net: UNetBranch, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = net.conv_in(x)
        skips: tuple[torch.Tensor, ...] = (h,)
        for block in net.down_blocks:
            h, res = block(hidden_states=h, temb=emb)
            skips += res
        h = net.mid_block(h, emb)
        for block in net.up_blocks:
            n = len(block.resnets)
            h, skips = block(h, skips[-n:], emb), skips[:-n]
        return net.head(h)

    def _forward_joint(
        self, x: torch.Tensor, y: torch.Tensor, emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, lb = self.sar, self.label
        link = iter(zip(self.links.x2y, self.links.y2x, strict=True))

        def exchange(hx: torch.Tensor, hy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x2y, y2x = next(link)
            return hx + y2x(hy), hy + x2y(hx)

        hx, hy = exchange(s.conv_in(x), lb.conv_in(y))
        sx: tuple[torch.Tensor, ...] = (hx,)
        sy: tuple[torch.Tensor, ...] = (hy,)
        for bx, by in zip(s.down_blocks, lb.down_blocks, strict=True):
            hx, rx = bx(hidden_states=hx, temb=emb)
            hy, ry = by(hidden_states=hy, temb=emb)
            hx, hy = exchange(hx, hy)
            # The block's last skip is its output: hand the exchanged features to the decoder too.
            sx += (*rx[:-1], hx)
            sy += (*ry[:-1], hy)
        hx, hy = exchange(s.mid_block(hx, emb), lb.mid_block(hy, emb))
        for bx, by in zip(s.up_blocks, lb.up_blocks, strict=True):
            n = len(bx.resnets)
            hx, sx = bx(hx, sx[-n:], emb), sx[:-n]
            hy, sy = by(hy, sy[-n:], emb), sy[:-n]
            hx, hy = exchange(hx, hy)
        return s.head(hx), lb.head(hy)


def _reset_conv(conv: nn.Conv2d, generator: torch.Generator | None) -> None:
    """PyTorch's default Conv2d initialisation (kaiming-uniform a=sqrt(5)), optionally seeded."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
    bound = 1.0 / math.sqrt(fan_in)
    for p in (conv.weight, conv.bias):
        if p is None:
            continue
        p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * (2 * bound) - bound)


def build_jointnet(config: JointNetConfig | Mapping[str, Any]) -> SARJointNet:
    cfg = config if isinstance(config, JointNetConfig) else JointNetConfig.from_dict(config)
    return SARJointNet(cfg)


# ----------------------------------------------------------------------------------- label normalisation
def image_to_model(unit: torch.Tensor) -> torch.Tensor:
    """Unit luminance [0, 1] -> SAR-Net range [-1, 1]."""
    return unit * 2.0 - 1.0


def image_from_model(x: torch.Tensor) -> torch.Tensor:
    """SAR-Net output -> unit luminance, clipped to [0, 1]."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def onehot(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) int class ids -> (N, K, H, W) float one-hot; ignore pixels (255) are all zeros."""
    valid = mask != IGNORE_INDEX
    oh = F.one_hot(torch.where(valid, mask, 0).long(), num_classes).permute(0, 3, 1, 2).float()
    return oh * valid[:, None].float()


def balance_labels(mask: torch.Tensor, num_classes: int, b: float) -> torch.Tensor:
    """Eq. 1: y_b = b * (2 * onehot - 1)."""
    return b * (2.0 * onehot(mask, num_classes) - 1.0)


def logits_to_mask_range(logits: torch.Tensor, b: float) -> torch.Tensor:
    """Eq. 21: y0_hat = b * (2 * softmax(l_hat) - 1), the label branch's clean-sample estimate."""
    return b * (2.0 * logits.float().softmax(dim=1) - 1.0)


# -------------------------------------------------------------------------------------- balancing factor
@dataclass
class BalanceStats:
    """Running sums for b: mean |DFT|^2 of x and of y_n (per image, summed), and the image count."""

    power_x: float = 0.0
    power_y: float = 0.0
    count: int = 0
    pixels: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)

    @property
    def b(self) -> float:
        if self.count == 0:
            raise ValueError("no samples: cannot compute the balancing factor")
        return math.sqrt(self.power_x / self.power_y)


def dft_power(z: np.ndarray) -> float:
    """P(z): mean over frequencies (u, v) of |F(z)(u, v)|^2 of the unnormalised 2-D DFT, averaged over
    the leading channel axis. By Parseval this equals H * W * mean(z ** 2)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 2:
        z = z[None]
    spec = np.fft.fft2(z, axes=(-2, -1))
    return float((np.abs(spec) ** 2).mean(axis=(-2, -1)).mean())


def compute_balancing_factor(
    samples: Iterable[Mapping[str, Any]], num_classes: int | None = None, limit: int | None = None
) -> BalanceStats:
    """b = sqrt(P(x) / P(y_n)) over a whole training set, streamed one sample at a time.

    ``samples`` is a dataset or any iterable of sample dicts (``image`` unit luminance (1, H, W) or
    (H, W); ``mask`` int (H, W), 255 = ignore). ``x = 2 * image - 1``; ``y_n = 2 * onehot(mask) - 1``
    (ignore pixels: all -1). P is averaged over images (one b per dataset, as in the paper). ``num_classes``
    defaults to ``samples.num_classes``. Returns the running sums; ``.b`` is the factor.
    """
    k = num_classes if num_classes is not None else getattr(samples, "num_classes", None)
    if k is None:
        raise ValueError("num_classes is required when the samples do not carry .num_classes")
    stats = BalanceStats()
    it: Iterable[Mapping[str, Any]]
    if hasattr(samples, "__len__") and hasattr(samples, "__getitem__"):
        n = len(samples)  # type: ignore[arg-type]
        it = (samples[i] for i in range(n if limit is None else min(n, limit)))  # type: ignore[index]
    else:
        it = samples
    for i, s in enumerate(it):
        if limit is not None and i >= limit:
            break
        img = np.asarray(s["image"], dtype=np.float64)
        img = img[0] if img.ndim == 3 else img
        mask = np.asarray(s["mask"])
        if img.shape != mask.shape:
            raise ValueError(f"sample {i}: image {img.shape} and mask {mask.shape} differ in size")
        valid = mask != IGNORE_INDEX
        if valid.any() and int(mask[valid].max()) >= k:
            raise ValueError(f"sample {i}: class id {int(mask[valid].max())} >= num_classes {k}")
        oh = (mask[None] == np.arange(k)[:, None, None]) & valid[None]
        stats.power_x += dft_power(2.0 * img - 1.0)
        stats.power_y += dft_power(2.0 * oh.astype(np.float64) - 1.0)
        stats.count += 1
        stats.pixels += img.size
        stats.sizes.add(img.shape)
    if stats.count == 0:
        raise ValueError("no samples: cannot compute the balancing factor")
    return stats
