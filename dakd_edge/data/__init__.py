"""SAR data: synthetic scenes, real dataset loaders (OSD, SOS, generic, augmented) and transforms.

Every dataset yields samples as dicts of numpy arrays:
``image``: float32 (1, H, W) *unit luminance* in [0, 1] (see :mod:`dakd_edge.data.scaling`; consumers
apply the model's normalisation, JointNet uses 2 * unit - 1); ``mask``: int64 (H, W) class ids
(255 = ignore); optional ``logits``: float32 (K, H, W) teacher logits (augmented set only).
"""
