"""Inference: backends (torch / onnxruntime / tensorrt), tiling, GeoTIFF I/O, vectorisation.

Torch-free by design except :mod:`.backends`' torch backend, which imports torch lazily.
"""
