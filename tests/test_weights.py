"""The bundled ONNX export must be the bundled safetensors model: same logits, same metadata.

``dakd_edge.weights.bundled_path`` prefers the ONNX file for the default backend, so a stale export
would silently replace retrained weights. Rebuild it with ``dakd-edge export -o
dakd_edge/weights/saross-edge-sos.onnx`` (or the recipe, which writes both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dakd_edge.weights import BUNDLED

WEIGHTS = Path(__file__).resolve().parents[1] / "dakd_edge" / "weights"
ONNX = WEIGHTS / Path(BUNDLED).with_suffix(".onnx").name
MAX_ABS = 1e-4  # fp32 logits, absolute (the export's own gate scales it by the logit range)
MIN_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def pair():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from dakd_edge.models.checkpoint import load_model_file

    assert ONNX.is_file(), f"{ONNX} is missing: re-export it from {BUNDLED}"
    model, meta = load_model_file(WEIGHTS / BUNDLED)
    return model.eval(), meta


def _check(pair, x: np.ndarray, name: str) -> None:
    from dakd_edge.export.onnx import run_onnx
    from dakd_edge.export.parity import torch_logits

    model, _ = pair
    ref, out = torch_logits(model, x), run_onnx(ONNX, x)
    assert out.shape == ref.shape
    err = float(np.abs(out - ref).max())
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    print(f"{name} {x.shape}: max abs {err:.2e}, argmax agreement {100 * agree:.4f}%")
    assert err <= MAX_ABS
    assert agree >= MIN_AGREEMENT


def test_bundled_onnx_metadata_matches(pair) -> None:
    from dakd_edge.export.onnx import read_metadata

    meta, ops = read_metadata(ONNX)
    assert ops == "standard"  # ONNX Runtime can run it
    assert meta.to_dict() == pair[1].to_dict()


def test_bundled_onnx_logits_match_deterministic(pair) -> None:
    from dakd_edge.export.parity import deterministic_input

    meta = pair[1]
    _check(pair, deterministic_input((1, meta.in_chans, meta.tile, meta.tile), seed=0), "deterministic")


@pytest.mark.parametrize("sensor", ["palsar", "sentinel"])
def test_bundled_onnx_logits_match_real_sos(pair, shared_data: Path, sensor: str) -> None:
    pytest.importorskip("PIL")
    from dakd_edge.export.parity import image_input

    images = sorted((shared_data / "sos" / "test" / sensor / "sat").glob("*.jpg"))
    if not images:
        pytest.skip(f"no SOS {sensor} test images under {shared_data}")
    _check(pair, image_input(images[0], pair[1], None), images[0].name)
