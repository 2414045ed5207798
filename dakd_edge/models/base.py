"""The one forward every segmentation model in dakd-edge shares (SMP's ``SegmentationModel`` idea).

``features = encoder(x); out = decoder(features); logits = head(out)``, then logits are resized to
the input size. Model files only build and wire the three parts; capability flags live on the class.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn


class SegmentationModel(nn.Module):
    """Base class: subclasses set ``encoder``, ``decoder``, ``head`` and ``config``.

    ``input_multiple``: inputs are padded (replicate) on the bottom/right to a multiple of it and the
    logits are cropped back, for architectures that need divisible sizes (SMP decoders: 32). SAROSS-Net
    handles any size itself (1). ``exportable``: whether the ONNX/TensorRT export path supports it;
    ``export_shapes``: the fixed shapes it needs, where it exports at fixed shapes only.
    """

    exportable: ClassVar[bool] = True
    export_shapes: str | None = None  # what the export needs where dynamic H x W does not export
    input_multiple: ClassVar[int] = 1
    config: Any
    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module

    @property
    def num_classes(self) -> int:
        return int(self.config.num_classes)

    @property
    def in_chans(self) -> int:
        return int(self.config.in_chans)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_chans, H, W) normalised input -> (N, num_classes, H, W) logits, for any H, W."""
        h, w = x.shape[-2:]
        m = self.input_multiple
        pad_b, pad_r = (m - h % m) % m, (m - w % m) % m
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b), mode="replicate")
        features = self.encoder(x)
        out = self.decoder(features)
        logits = self.head(out)
        if pad_b or pad_r:
            hp, wp = x.shape[-2:]
            if logits.shape[-2:] != (hp, wp):
                logits = F.interpolate(logits, size=(hp, wp), mode="bilinear", align_corners=False)
            return logits[:, :, :h, :w]
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits
