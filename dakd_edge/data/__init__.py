"""SAR data: synthetic scenes, real dataset loaders (OSD, SOS, generic, augmented) and transforms.

Every dataset yields samples as dicts with numpy/tensor fields:
``image``: float32 (C, H, W) normalised network input; ``mask``: int64 (H, W) class ids
(255 = ignore); optional ``logits``: float32 (K, H, W) teacher logits (augmented set only).
"""
