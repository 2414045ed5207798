"""SAROSS-Net: MambaVision encoder + UNet++ decoder with a CAFT block at every skip node.

Decoder topology (UNet++, Zhou et al. 2018) over the four encoder stages i = 0..3 (strides 4..32):
node X(i, 0) is encoder stage i; for j >= 1, X(i, j) = ConvBlock([up(X(i+1, j-1)), X(i, 0), ...,
X(i, j-2), S(i, j)]), where S(i, j) = CAFT(query=up(X(i+1, j-1)), key/value=X(i, j-1)) refines the
skip with context from the coarser path (``skip="caft"``), a 3x3 conv-BN-ReLU of X(i, j-1)
(``skip="conv"``) or X(i, j-1) itself (``skip="none"``): the paper's skip-module ablation. X(0, 3)
(stride 4) is then upsampled by two conv decoder blocks to full resolution and a 3x3 head gives the
logits. Upsampling is bilinear to the exact size of the finer map, so any H x W works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dakd_edge.errors import ModelFileError
from dakd_edge.models.base import SegmentationModel
from dakd_edge.models.caft import CAFT, pick_heads
from dakd_edge.models.mambavision import (
    MAMBAVISION_CONFIGS,
    adapt_input_conv,
    build_mambavision,
    read_state_dict,
)
from dakd_edge.registry import register_model

SKIP_MODES = ("caft", "conv", "none")
SKIP_STRIDES = (4, 8, 16)  # input pixels per feature pixel at skip levels 0, 1, 2
ENCODERS = tuple(f"mambavision-{v}" for v in MAMBAVISION_CONFIGS) + ("resnet34",)


@dataclass
class SarossConfig:
    """Constructor arguments of :class:`SarossNet` (saved with every checkpoint).

    ``decoder_channels``: widths from deep to shallow: nodes at strides 16, 8, 4, then the two
    full-resolution conv decoder blocks (strides 2 and 1). ``caft_head_dim``: channels per CAFT head.
    ``drop_path_rate``: encoder stochastic depth (``None``: the variant's default).
    ``head_stride``: stride of the map the 3x3 head runs on: 1 (both full-resolution decoder blocks),
    2 (the stride-2 block only) or 4 (the head reads the UNet++ output directly). The logits are then
    upsampled bilinearly to the input size: 2 and 4 trade boundary detail for speed on CPUs, where the
    full-resolution convolutions dominate (unused ``decoder_channels`` entries are ignored).
    ``decoder_block``: ``"double"`` (two 3x3 convs per node, UNet++) or ``"light"`` (1x1 + 3x3), see
    :class:`DecoderBlock`. ``caft_window``: CAFT attention per cell of this many *input* pixels
    (a multiple of 16, the coarsest skip's stride; ``None``: over the whole map, the paper's), so
    each skip level attends over the same ground area whatever the tile size (see :class:`CAFT`).
    """

    num_classes: int = 2
    in_chans: int = 1
    encoder: str = "mambavision-b"
    skip: str = "caft"
    decoder_channels: tuple[int, int, int, int, int] = (256, 128, 64, 32, 16)
    caft_head_dim: int = 32
    caft_ffn_expansion: float = 2.66
    drop_path_rate: float | None = None
    head_stride: int = 1
    decoder_block: str = "double"
    caft_window: int | None = None

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)  # type: ignore[assignment]
        if len(self.decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 widths, got {self.decoder_channels}")
        if self.skip not in SKIP_MODES:
            raise ValueError(f"skip must be one of {SKIP_MODES}, got {self.skip!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose from {ENCODERS}")
        if self.decoder_block not in BLOCKS:
            raise ValueError(f"decoder_block must be one of {BLOCKS}, got {self.decoder_block!r}")
        if self.head_stride not in (1, 2, 4):
            raise ValueError(f"head_stride must be 1, 2 or 4, got {self.head_stride}")
        for name in ("num_classes", "in_chans"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        used = self.decoder_channels[: 3 + {1: 2, 2: 1, 4: 0}[self.head_stride]]  # the rest are ignored
        if min(used) < 1:
            raise ValueError(f"decoder_channels must be positive, got {self.decoder_channels}")
        if self.caft_head_dim < 1:
            raise ValueError(f"caft_head_dim must be >= 1, got {self.caft_head_dim}")
        if self.caft_ffn_expansion < 0:
            raise ValueError(
                f"caft_ffn_expansion must be >= 0 (0 disables the FFN), got {self.caft_ffn_expansion}"
            )
        if self.drop_path_rate is not None and not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1) or None, got {self.drop_path_rate}")
        if self.caft_window is not None and (self.caft_window < 16 or self.caft_window % 16):
            raise ValueError(f"caft_window must be a positive multiple of 16 or None, got {self.caft_window}")


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )


BLOCKS = ("double", "light")


class DecoderBlock(nn.Sequential):
    """The UNet/UNet++ node: two 3x3 conv-BN-ReLU layers (``"double"``), or a 1x1 conv-BN-ReLU that fuses
    the concatenated inputs followed by one 3x3 (``"light"``: about 4x fewer multiply-adds on the wide
    concatenations of the stride-4 nodes, which dominate CPU time)."""

    def __init__(self, cin: int, cout: int, kind: str = "double") -> None:
        first = ConvBNReLU(cin, cout, k=1 if kind == "light" else 3)
        super().__init__(first, ConvBNReLU(cout, cout))


def _up(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class NestedDecoder(nn.Module):
    """UNet++ decoder over four encoder features with a configurable module at every skip node."""

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        decoder_channels: tuple[int, ...],
        skip: str = "caft",
        caft_head_dim: int = 32,
        caft_ffn_expansion: float = 2.66,
        head_stride: int = 1,
        block: str = "double",
        caft_window: int | None = None,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 4:
            raise ValueError("NestedDecoder expects four encoder features")
        self.depth = 3  # skip levels 0..2; level 3 is the bottleneck
        node_ch = {2: decoder_channels[0], 1: decoder_channels[1], 0: decoder_channels[2]}

        def width(i: int, j: int) -> int:
            return encoder_channels[i] if j == 0 else node_ch[i]

        self.skip_mode = skip
        self.nodes = nn.ModuleDict()
        self.skips = nn.ModuleDict()
        for j in range(1, self.depth + 1):
            for i in range(0, self.depth + 1 - j):
                key = f"x_{i}_{j}"
                c_low, c_skip = width(i + 1, j - 1), width(i, j - 1)
                cin = c_low + sum(width(i, k) for k in range(j))
                self.nodes[key] = DecoderBlock(cin, node_ch[i], block)
                if skip == "caft":
                    heads = pick_heads(c_skip, caft_head_dim)
                    window = caft_window // SKIP_STRIDES[i] if caft_window else None
                    self.skips[key] = CAFT(c_skip, c_low, heads, caft_ffn_expansion, window=window)
                elif skip == "conv":
                    self.skips[key] = ConvBNReLU(c_skip, c_skip)
        n_up = {1: 2, 2: 1, 4: 0}[head_stride]
        widths = (node_ch[0], decoder_channels[3], decoder_channels[4])[: n_up + 1]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.up_blocks = nn.ModuleList([DecoderBlock(a, b, block) for a, b in pairs])
        self.out_channels = widths[-1]

    def forward(self, features: list[Tensor]) -> Tensor:
        x: dict[tuple[int, int], Tensor] = {(i, 0): f for i, f in enumerate(features)}
        for j in range(1, self.depth + 1):
            for i in range(0, self.depth + 1 - j):
                key = f"x_{i}_{j}"
                hi = x[(i, j - 1)]
                low = _up(x[(i + 1, j - 1)], hi.shape[-2:])
                if self.skip_mode == "caft":
                    s = self.skips[key](low, hi)
                elif self.skip_mode == "conv":
                    s = self.skips[key](hi)
                else:
                    s = hi
                dense = [x[(i, k)] for k in range(j - 1)]
                x[(i, j)] = self.nodes[key](torch.cat([low, *dense, s], dim=1))
        y = x[(0, self.depth)]
        for blk in self.up_blocks:
            y = blk(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
        return y


class ResNet34Encoder(nn.Module):
    """timm ResNet-34 returning its four stage features (strides 4, 8, 16, 32); random init."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model(
            "resnet34", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4), in_chans=in_chans
        )
        self.channels = tuple(self.body.feature_info.channels())

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))


class SarossNet(SegmentationModel):
    """SAROSS-Net (see the module docstring); ``forward`` comes from :class:`SegmentationModel`."""

    exportable = True
    input_multiple = 1

    def __init__(self, config: SarossConfig) -> None:
        super().__init__()
        self.config = config
        if config.encoder == "resnet34":
            self.encoder: nn.Module = ResNet34Encoder(config.in_chans)
        else:
            variant = config.encoder.split("-", 1)[1]
            overrides: dict[str, Any] = {}
            if config.drop_path_rate is not None:
                overrides["drop_path_rate"] = config.drop_path_rate
            self.encoder = build_mambavision(variant, config.in_chans, **overrides)
        self.decoder = NestedDecoder(
            tuple(self.encoder.channels),
            config.decoder_channels,
            config.skip,
            config.caft_head_dim,
            config.caft_ffn_expansion,
            config.head_stride,
            config.decoder_block,
            config.caft_window,
        )
        self.head = nn.Conv2d(self.decoder.out_channels, config.num_classes, 3, padding=1)

    def load_encoder_weights(self, path: str | Path) -> Any:
        """Load pretrained encoder weights from a local file (official MambaVision / timm ResNet-34)."""
        if isinstance(self.encoder, ResNet34Encoder):
            return _load_resnet_weights(self.encoder, Path(path))
        from dakd_edge.models.mambavision import load_encoder_weights

        return load_encoder_weights(self.encoder, path)


def _load_resnet_weights(enc: ResNet34Encoder, path: Path) -> dict[str, list[str]]:
    sd = read_state_dict(path, "a timm/torchvision resnet34 state dict")
    own = enc.body.state_dict()
    if "conv1.weight" in sd and "conv1.weight" in own:
        sd["conv1.weight"] = adapt_input_conv(sd["conv1.weight"], own["conv1.weight"].shape[1])
    bad = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad:
        raise ModelFileError(f"{path} does not fit resnet34: shape mismatch at {bad[:5]}")
    enc.body.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return {
        "missing": sorted(k for k in own if k not in sd),
        "unexpected": sorted(k for k in sd if k not in own),
    }


def _builder(encoder: str, decoder_channels: tuple[int, ...], **defaults: Any):
    def build(num_classes: int = 2, in_chans: int = 1, encoder_weights: str | None = None, **cfg: Any):
        cfg.setdefault("encoder", encoder)
        cfg.setdefault("decoder_channels", decoder_channels)
        for key, value in defaults.items():
            cfg.setdefault(key, value)
        model = SarossNet(SarossConfig(num_classes=num_classes, in_chans=in_chans, **cfg))
        if encoder_weights:
            model.load_encoder_weights(encoder_weights)
        return model

    return build


_WIDE = (256, 128, 64, 32, 16)
VARIANTS: dict[str, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    "saross-nano": ("mambavision-nano", (96, 48, 32, 16, 16), {}),
    # The bundled CPU model: nano encoder, light UNet++ nodes, CAFT without FFN widening, head at
    # stride 2: 3.2 vs 8.3 GMACs at 512^2, about 2x faster than saross-nano per tile in ONNX Runtime.
    "saross-edge": (
        "mambavision-nano",
        (64, 32, 24, 16, 16),
        {"decoder_block": "light", "head_stride": 2, "caft_ffn_expansion": 1.0},
    ),
    "saross-t": ("mambavision-t", _WIDE, {}),
    "saross-s": ("mambavision-s", _WIDE, {}),
    "saross-b": ("mambavision-b", _WIDE, {}),  # the paper's model
    "saross-r34": ("resnet34", _WIDE, {}),  # the paper's encoder ablation
}
for _name, (_enc, _dec, _defaults) in VARIANTS.items():
    register_model(_name)(_builder(_enc, _dec, **_defaults))


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The model's config as plain JSON-able data."""
    return asdict(model.config)
