"""benchmarks/tta.py: flip averaging maps every output back to its pixel, and the script runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.tiling import softmax
from tests.inference.fake import FakeBackend
from tests.test_mosaic_benchmark import _sos


def test_every_inverse_undoes_its_transform(load_benchmark) -> None:
    bench = load_benchmark("tta")
    a = np.random.default_rng(0).random((2, 3, 5, 5))
    for name, f in bench.TRANSFORMS.items():
        np.testing.assert_array_equal(bench.TRANSFORMS[bench.INVERSE[name]](f(a)), a, err_msg=name)
    assert len({f(a).tobytes() for f in bench.TRANSFORMS.values()}) == 8  # eight distinct maps


def _position_model(batch: np.ndarray) -> np.ndarray:
    """Not flip-invariant: the oil logit grows with the column and the row of the tile."""
    n, _, h, w = batch.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    logits = np.zeros((n, 2, h, w), np.float32)
    logits[:, 1] = batch[:, 0] + 0.3 * xx - 0.1 * yy
    return logits


def test_averaged_probabilities_are_the_mean_of_the_mapped_back_ones(load_benchmark) -> None:
    bench = load_benchmark("tta")
    x = np.random.default_rng(1).normal(size=(2, 1, 6, 6)).astype(np.float32)
    flipped = _position_model(x[..., ::-1].copy())[..., ::-1]
    want = (softmax(_position_model(x)) + softmax(flipped)) / 2
    got = softmax(bench.averaged(_position_model, ["id", "h"])(x))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, softmax(_position_model(x)), atol=1e-3)  # it did change something
    # a flip-invariant model is unchanged by any set
    fake = FakeBackend(radius=1, tile=6)
    np.testing.assert_allclose(
        softmax(bench.averaged(fake.predict, bench.SETS["d4"])(x)), softmax(fake.predict(x)), atol=1e-5
    )


def test_score_sets_and_main(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("tta")
    data = _sos(tmp_path / "sos", n=3)
    from dakd_edge.data import open_dataset

    ds = open_dataset(data, split="test", kind="auto", classes="binary", sensor="palsar")
    images, masks = bench._mosaic_module().load_patches(ds)
    backends: list[FakeBackend] = []

    def make() -> Predictor:
        backends.append(FakeBackend(radius=2, tile=32))
        return Predictor(backends[-1], 32, 0, batch=1)

    r = bench.score_sets(make, images, masks, ["none", "flip4"])
    assert [len(b.calls) for b in backends] == [3, 12]  # one tile per patch, four calls each with flip4
    assert r["flip4"]["miou"] == pytest.approx(r["none"]["miou"], abs=0.01)  # the fake is flip-invariant
    assert r["none"]["gain"] == 0.0 and r["flip4"]["calls_per_tile"] == 4
    out = tmp_path / "tta.json"
    bench.main(["--data", str(data), "--sensor", "palsar", "--sets", "none,h", "-o", str(out)])
    doc = json.loads(out.read_text())
    sets = doc["models"]["bundled"]["palsar"]["sets"]
    assert set(sets) == {"none", "h"} and 0 <= sets["h"]["miou"] <= 100
    with pytest.raises(SystemExit):
        bench.main(["--data", str(data), "--sets", "none,rot45"])
