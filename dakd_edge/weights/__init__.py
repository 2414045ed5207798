"""Bundled model files (safetensors weights + JSON metadata, and the matching ONNX export)."""
