"""Tiling with the real bundled model (skips until dakd_edge/weights/ holds one)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundled():
    try:
        from dakd_edge.inference.backends import load

        return load(None, backend="auto", device="cpu")
    except Exception as e:  # no bundled weights yet, or no runtime for them
        pytest.skip(f"no bundled model available: {e}")


@pytest.mark.slow
def test_bundled_model_tiled_equals_whole(bundled) -> None:
    from dakd_edge.data.synthetic import generate_scene
    from dakd_edge.inference.predictor import Predictor

    img, _ = generate_scene(None, seed=3, height=384, width=384, binary=bundled.meta.num_classes == 2)
    whole = Predictor(bundled.backend, tile=512).predict(img)
    tiled = Predictor(bundled.backend, tile=256, overlap=64, batch=4).predict(img)
    agree = float((whole == tiled).mean())
    print(f"bundled {bundled.meta.name}: tiled vs whole agreement {agree:.5f}")
    assert agree >= 0.999
    assert len(np.unique(whole)) >= 1
