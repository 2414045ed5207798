"""benchmarks/demo_tiling.py with a numpy model: connected areas and the look-alike figures."""

from __future__ import annotations

import numpy as np

from tests.inference.fake import FakeBackend


def test_largest_area_is_the_largest_4_connected_component(load_benchmark) -> None:
    largest_area = load_benchmark("demo_tiling").largest_area
    mask = np.zeros((10, 10), bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[2, 2] = True  # touches the first only diagonally: its own component
    mask[5:9, 4:9] = True  # 20 px
    mask[9, 0:9] = True  # joins the 20 below its left corner: 20 + 9 = 29
    big = largest_area(mask)
    assert big.sum() == 29 and big[9, 0] and not big[0, 0] and not big[2, 2]
    assert not largest_area(np.zeros((4, 4), bool)).any()


def test_dark_is_oil_model_calls_lookalikes_oil(load_benchmark) -> None:
    """Synthetic look-alikes are as dark as slicks: a darkness-only model calls most of them oil."""
    bench = load_benchmark("demo_tiling")
    measure, parse_tiles = bench.measure, bench.parse_tiles
    out = measure(FakeBackend(tile=128), parse_tiles("128:16,128:0"), size=384, seed=0, batch=4)
    assert out["lookalike_pixels"] > 0 and 0 < out["largest_lookalike"]["pixels"] <= out["lookalike_pixels"]
    for figures in out["tilings"].values():
        assert figures["lookalike_called_oil"] > 0.5
        assert 0.0 < figures["scene_oil_iou"] <= 1.0
    assert parse_tiles("512:64,256") == [(512, 64), (256, 0)]
