"""Bundled model files (safetensors weights + JSON metadata, and the matching ONNX export).

The bundled model is produced by the committed, seeded recipe ``python -m dakd_edge.train.recipes.bundled``
(SAROSS-Net nano trained on the SOS development subset + synthetic patches; oil vs background).
"""

from __future__ import annotations

from pathlib import Path

BUNDLED = "saross-nano-sos.safetensors"
# Test-subset metrics written by the recipe next to the weights (for the README / `dakd-edge models`).
BUNDLED_METRICS = "saross-nano-sos.metrics.json"
RECIPE = "python -m dakd_edge.train.recipes.bundled"


def bundled_path() -> Path:
    """Path of the bundled model weights; ModelFileError naming the recipe when they are missing."""
    p = Path(__file__).parent / BUNDLED
    if not p.is_file():
        from dakd_edge.errors import ModelFileError

        raise ModelFileError(
            f"the bundled model {p} is missing; produce it with `{RECIPE}` (about 40 CPU-minutes)"
        )
    return p
