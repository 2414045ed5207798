"""The paper's comparison rows, built from segmentation_models_pytorch (random init; no downloads).

Each wraps an SMP model into :class:`SegmentationModel` (same forward contract, any input size:
SMP needs multiples of 32, so inputs are padded and logits cropped). Pretrained encoder weights are
optional and only ever come from a local file (``encoder_weights="path/to/resnet34.pth"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dakd_edge.errors import ModelFileError
from dakd_edge.models.base import SegmentationModel
from dakd_edge.models.mambavision import adapt_input_conv, read_state_dict
from dakd_edge.registry import register_model

# registry name -> (SMP class name, default encoder). SegFormer uses its own MiT-B2 encoder.
ARCHS: dict[str, tuple[str, str]] = {
    "unet": ("Unet", "resnet34"),
    "linknet": ("Linknet", "resnet34"),
    "pspnet": ("PSPNet", "resnet34"),
    "deeplabv3plus": ("DeepLabV3Plus", "resnet34"),
    "segformer": ("Segformer", "mit_b2"),
}


@dataclass
class BaselineConfig:
    """Constructor arguments of :class:`SmpBaseline`; ``smp_kwargs`` go to the SMP class unchanged."""

    arch: str = "unet"
    num_classes: int = 2
    in_chans: int = 1
    encoder_name: str = "resnet34"
    smp_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown baseline {self.arch!r}; choose from {sorted(ARCHS)}")


class SmpBaseline(SegmentationModel):
    """An SMP architecture split into encoder / decoder / head under the shared forward."""

    exportable = True  # SMP marks all five as torch-exportable; they are plain conv/attention graphs
    input_multiple = 32

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        from dakd_edge.extras import require_extra

        # one line naming the extra, not a ModuleNotFoundError (smp, or timm / torchvision under it)
        require_extra("torch", f"the {config.arch} baseline", "segmentation_models_pytorch")
        import segmentation_models_pytorch as smp

        self.config = config
        cls = getattr(smp, ARCHS[config.arch][0])
        net = cls(
            encoder_name=config.encoder_name,
            encoder_weights=None,
            in_channels=config.in_chans,
            classes=config.num_classes,
            **(config.smp_kwargs or {}),
        )
        _drop_unused_resnet_layers(net.encoder)
        if config.arch == "pspnet":  # pools the stride-8 map to 1, 2, 3, 6 bins; inputs padded to 32s
            self.export_shapes = "a fixed --shape with H and W multiples of 96 (e.g. 1x1x480x480)"
        self.encoder = net.encoder
        self.decoder = net.decoder
        self.head = net.segmentation_head

    def load_encoder_weights(self, path: str | Path) -> dict[str, list[str]]:
        """Load a local encoder state dict (e.g. timm/torchvision resnet34), adapting the stem."""
        return load_encoder_state(self.encoder, Path(path), self.config.in_chans)


def _drop_unused_resnet_layers(encoder: torch.nn.Module) -> None:
    """SMP keeps all ResNet stages when ``encoder_depth`` < 5 (PSPNet uses 3); drop the unused ones
    so that every parameter is trained and exported (stage ``layerK`` runs only when depth > K)."""
    depth = getattr(encoder, "_depth", 5)
    for k in range(max(depth, 1), 5):
        if isinstance(getattr(encoder, f"layer{k}", None), torch.nn.Module):
            delattr(encoder, f"layer{k}")


def load_encoder_state(encoder: torch.nn.Module, path: Path, in_chans: int) -> dict[str, list[str]]:
    """Load ``path`` into ``encoder`` non-strictly; RGB stems are folded to ``in_chans``."""
    sd = read_state_dict(path, "a local state dict for this encoder")
    own = encoder.state_dict()
    bad = []
    for k, v in list(sd.items()):
        if k not in own or own[k].shape == v.shape:
            continue
        if v.ndim == 4 and v.shape[1] == 3 and own[k].shape[1] == in_chans and v.shape[0] == own[k].shape[0]:
            sd[k] = adapt_input_conv(v, in_chans)
        else:
            bad.append(f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
    if bad:
        raise ModelFileError(f"{path} does not fit this encoder: " + "; ".join(bad[:5]))
    encoder.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)  # SMP returns None
    return {
        "missing": sorted(k for k in own if k not in sd),
        "unexpected": sorted(k for k in sd if k not in own),
    }


def _builder(arch: str):
    def build(num_classes: int = 2, in_chans: int = 1, encoder_weights: str | None = None, **cfg: Any):
        cfg.setdefault("encoder_name", ARCHS[arch][1])
        model = SmpBaseline(BaselineConfig(arch=arch, num_classes=num_classes, in_chans=in_chans, **cfg))
        if encoder_weights:
            model.load_encoder_weights(encoder_weights)
        return model

    return build


for _name in ARCHS:
    register_model(_name)(_builder(_name))
