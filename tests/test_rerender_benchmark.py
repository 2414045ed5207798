"""benchmarks/rerender.py on tiny patches with a pixel-local numpy model: plain vs re-rendered scores."""

from __future__ import annotations

import numpy as np
import pytest

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


class _Patches:
    """Bright sea with one dark block of oil per patch (unit luminance, as datasets give it)."""

    def __init__(self, n: int = 4, size: int = 64) -> None:
        self.items = []
        for i in range(n):
            img = np.full((1, size, size), 0.6, np.float32)
            mask = np.zeros((size, size), np.int64)
            img[0, 8 + i : 24 + i, 10:40] = 0.1
            mask[8 + i : 24 + i, 10:40] = 1
            self.items.append({"image": img, "mask": mask})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_plain_scores_are_exact_and_renderings_are_seeded(load_benchmark) -> None:
    bench = load_benchmark("rerender")
    pred = Predictor(FakeBackend(radius=0, tile=64), 64, 0, batch=1)
    ds = _Patches()
    r = bench.score(pred, ds, [0, 1, 2, 3])
    assert r["plain"]["miou"] == pytest.approx(1.0) and r["plain"]["background_false_alarm"] == 0.0
    assert r["plain"]["patches"] == r["regrain"]["patches"] == 4
    # grains darker than the mean are "oil" to a pixel-local model: re-rendering costs it
    assert r["regrain"]["background_false_alarm"] > 0.01 and r["regrain"]["miou"] < 0.99
    assert bench.score(pred, ds, [0, 1, 2, 3]) == r  # the same renderings every time
