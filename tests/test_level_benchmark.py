"""benchmarks/level.py on a tiny SOS-layout folder with a numpy model (fast, no torch model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend
from tests.test_mosaic_benchmark import _sos


def test_shift_adds_an_offset_and_clips(load_benchmark) -> None:
    bench = load_benchmark("level")
    im = np.array([[0, 100, 250]], np.uint8)
    np.testing.assert_array_equal(bench.shift(im, 0.1), [[26, 126, 255]])
    np.testing.assert_array_equal(bench.shift(im, -0.2), [[0, 49, 199]])


def test_a_level_reading_model_loses_when_the_level_moves(tmp_path: Path, load_benchmark) -> None:
    """The numpy fake calls dark pixels oil, as a model that reads absolute darkness would: the
    unshifted patches score best, brighter ones lose oil, darker ones gain false alarms."""
    bench = load_benchmark("level")
    data = _sos(tmp_path / "sos", n=4)
    from dakd_edge.data import open_dataset

    ds = open_dataset(data, split="test", kind="auto", classes="binary", sensor="palsar")
    mosaic = bench._mosaic_module()
    images, masks = mosaic.load_patches(ds)
    pred = Predictor(FakeBackend(radius=0, tile=32), 32, 0, batch=1)
    r = bench.score_offsets(pred, images, masks, [-0.3, 0.0, 0.3])
    at = r["offsets"]
    assert at["+0.00"]["miou"] > at["+0.30"]["miou"] and at["+0.00"]["miou"] > at["-0.30"]["miou"]
    assert at["-0.30"]["background_false_alarm"] > at["+0.00"]["background_false_alarm"]
    assert r["mean_shifted_miou"] == pytest.approx((at["-0.30"]["miou"] + at["+0.30"]["miou"]) / 2)
    out = tmp_path / "level.json"
    bench.main(
        ["--data", str(data), "--sensor", "palsar", "--tiles", "32:0", "--offsets", "0,0.3", "-o", str(out)]
    )
    doc = json.loads(out.read_text())
    assert set(doc["models"]["bundled"]["sensors"]["palsar"]["offsets"]) == {"+0.00", "+0.30"}
