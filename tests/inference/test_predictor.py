"""Predictor: raw numpy images of any dtype -> probabilities / classes with the model's scaling."""

from __future__ import annotations

import numpy as np
import pytest

from dakd_edge.errors import InputError
from dakd_edge.inference.predictor import Predictor

from .fake import FakeBackend, blob_scene


def test_shapes_dtypes_and_small_image_runs_whole() -> None:
    fake = FakeBackend(num_classes=5)
    pred = Predictor(fake, tile=64, overlap=16)
    assert pred.meta is fake.meta and pred.backend is fake
    img = blob_scene(50, 60)
    p = pred.predict_proba(img)
    assert p.shape == (5, 50, 60) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    c = pred.predict(img)
    assert c.shape == (50, 60) and c.dtype == np.uint8
    np.testing.assert_array_equal(c, p.argmax(0))
    assert fake.calls == [(1, 1, 50, 60), (1, 1, 50, 60)]  # one whole-image call each


def test_tile_defaults_to_model_tile() -> None:
    assert Predictor(FakeBackend(tile=96)).tiling.tile == 96
    assert Predictor(FakeBackend(tile=96), tile=128).tiling.tile == 128


def test_overlap_defaults_to_model_overlap_only_with_model_tile() -> None:
    """A model's stored (tile, overlap) pair is used together; another tile gets the generic rule."""
    fake = FakeBackend(tile=256)
    fake.meta.overlap = 32
    assert (Predictor(fake).tiling.tile, Predictor(fake).tiling.overlap) == (256, 32)
    assert Predictor(fake, tile=256).tiling.overlap == 32
    assert Predictor(fake, tile=512).tiling.overlap == 64  # DEFAULT_OVERLAP, not the model's 32
    assert Predictor(fake, overlap=0).tiling.overlap == 0  # explicit always wins
    fake.meta.overlap = None
    assert Predictor(fake).tiling.overlap == 64
    assert Predictor(FakeBackend(tile=96)).tiling.overlap == 48  # half a small tile


def test_scaling_uint8_db_linear_agree() -> None:
    """The same scene as 8-bit luminance, sigma0 in dB and linear sigma0 gives the same classes."""
    pred = Predictor(FakeBackend(), tile=64, overlap=16)
    img = blob_scene(120, 130, seed=4)
    lo, hi = pred.meta.normalization.db_range
    db = (lo + img.astype(np.float64) / 255.0 * (hi - lo)).astype(np.float32)
    lin = (10.0 ** (db.astype(np.float64) / 10.0)).astype(np.float32)
    ref = pred.predict(img)
    assert (pred.predict(db) == ref).mean() > 0.999  # auto-detected as dB (negative median)
    assert (pred.predict(lin) == ref).mean() > 0.999  # auto-detected as linear
    assert (pred.predict(db, scale="db") == ref).mean() > 0.999
    # overriding the scale really changes the input mapping
    assert (pred.predict(img.astype(np.float32), scale="linear") == ref).mean() < 0.99


def test_nodata_and_nan_are_masked() -> None:
    pred = Predictor(FakeBackend(), tile=64, overlap=16)
    img = blob_scene(100, 100, seed=5).astype(np.float32)
    img[10:20, 10:30] = -9999.0
    img[50:60, 70:90] = np.nan
    p = pred.predict_proba(img, scale="uint8", nodata=-9999.0)
    c = pred.predict(img, scale="uint8", nodata=-9999.0)
    assert np.isnan(p[:, 10:20, 10:30]).all() and np.isnan(p[:, 50:60, 70:90]).all()
    assert (c[10:20, 10:30] == 255).all() and (c[50:60, 70:90] == 255).all()
    assert (c != 255).sum() == 100 * 100 - 200 - 200
    # masked pixels do not leak into the neighbourhood as "dark" or "bright"
    ref = pred.predict(np.where(np.isfinite(img) & (img != -9999.0), img, 150.0), scale="uint8")
    far = np.ones_like(c, bool)
    far[0:30, 0:40] = far[40:70, 60:100] = False
    assert (c[far] == ref[far]).mean() > 0.999


def test_multichannel_and_mismatch() -> None:
    pred = Predictor(FakeBackend(in_chans=2), tile=64)
    img = np.stack([blob_scene(40, 40), blob_scene(40, 40, seed=1)])
    assert pred.predict(img).shape == (40, 40)
    with pytest.raises(InputError, match="2 band"):
        pred.predict(img[0])
    with pytest.raises(InputError, match="empty"):
        Predictor(FakeBackend()).predict(np.zeros((0, 10), np.uint8))
    # an all-NaN / all-nodata array is all class 255, as segment writes an all-nodata scene (it raised)
    assert (Predictor(FakeBackend()).predict(np.full((10, 10), np.nan, np.float32)) == 255).all()
    assert (Predictor(FakeBackend()).predict(np.full((10, 10), 7, np.uint8), nodata=7) == 255).all()
    assert np.isnan(Predictor(FakeBackend()).predict_proba(np.full((6, 9), np.nan, np.float32))).all()
    with pytest.raises(InputError, match="scale"):
        Predictor(FakeBackend()).predict(np.zeros((10, 10), np.uint8), scale="decibel")


def test_default_batch_holds_one_512_tile_of_pixels_on_cpu() -> None:
    """On the CPU a call holds the pixels of one 512^2 tile (docs/tiles-batch-v2.json); 8 on a GPU."""
    from dakd_edge.inference.predictor import default_batch

    assert [default_batch("cpu", t) for t in (512, 384, 256, 192, 128, 1024)] == [1, 1, 4, 7, 16, 1]
    assert default_batch("cuda", 256) == default_batch("cuda:1", 512) == 8
    assert Predictor(FakeBackend(tile=256)).tiling.batch == 4
    assert Predictor(FakeBackend(tile=256), tile=512).tiling.batch == 1  # follows the tile in use
    assert Predictor(FakeBackend(tile=256), batch=2).tiling.batch == 2  # explicit always wins
    cuda = FakeBackend(tile=256)
    cuda.device = "cuda"
    assert Predictor(cuda).tiling.batch == 8


def test_masked_array_pixels_are_nodata() -> None:
    pred = Predictor(FakeBackend(), tile=64, overlap=16)
    img = blob_scene(50, 60)
    masked = np.ma.masked_array(img, img > np.percentile(img, 90))
    c = pred.predict(masked)
    np.testing.assert_array_equal(c == 255, np.ma.getmaskarray(masked))
    # channels-last masked input: a pixel masked in any band is nodata
    rgb = np.ma.masked_array(np.stack([img] * 3, -1), np.zeros((50, 60, 3), bool))
    rgb.mask[3, 4, 1] = True
    with pytest.warns(UserWarning, match="identical"):
        c = pred.predict(rgb)
    assert c[3, 4] == 255 and (c == 255).sum() == 1


def test_non_numeric_arrays_are_refused_in_one_line() -> None:
    pred = Predictor(FakeBackend(), tile=64, overlap=16)
    for bad, hint in ((np.zeros((8, 8), bool), "bool"), (np.zeros((8, 8), complex), "np.abs"),
                      (np.full((8, 8), "a"), "<U1")):  # fmt: skip
        with pytest.raises(InputError, match=hint):
            pred.predict(bad)


def test_out_of_domain_arrays_warn_like_segment() -> None:
    from dakd_edge.data.scaling import InputDomainWarning

    pred = Predictor(FakeBackend(), tile=64, overlap=16)
    with pytest.warns(InputDomainWarning, match="below the training range"):
        pred.predict(np.full((64, 64), 5, np.uint8))  # uncalibrated 8-bit values, all dark
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", InputDomainWarning)
        pred.predict(blob_scene(64, 64))  # SOS-like luminance: no warning


def test_normalizer_fast_path_matches_nan_to_num_then_normalize_bit_for_bit() -> None:
    """``normalize(unit, norm, fill=True)`` skips ``nan_to_num`` for all-finite windows and standardises
    in place; every window, finite or not, float32 or float64 (a level offset), gives the bits the
    plain expression gave."""
    from dakd_edge.data.scaling import normalize, to_unit
    from dakd_edge.meta import Normalization

    rng = np.random.default_rng(3)
    norm = Normalization(mean=0.459201, std=0.216508)
    finite = rng.random((1, 7, 9), dtype=np.float32)
    holes = finite.copy()
    holes[0, 1, 2], holes[0, 3, 4], holes[0, 5, 6] = np.nan, np.inf, -np.inf
    cases = [
        finite,
        holes,
        holes.astype(np.float64),
        to_unit(rng.integers(0, 256, (1, 5, 6), np.uint8), "uint8"),
    ]
    for unit in cases:
        before = unit.copy()
        want = ((np.nan_to_num(unit, nan=norm.mean) - norm.mean) / norm.std).astype(np.float32)
        got = normalize(unit, norm, fill=True)
        assert got.dtype == np.float32 and got.shape == unit.shape
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bits, NaN-safe
        np.testing.assert_array_equal(unit, before)  # the input is left alone
    fake = FakeBackend()
    raw = np.array([[[0, 128, 255], [7, 99, 200]]], np.uint8)
    x, ok = Predictor(fake).normalizer("uint8", 0)(raw)
    np.testing.assert_array_equal(
        x, normalize(to_unit(raw, "uint8", fake.meta.normalization), fake.meta.normalization)
    )
    np.testing.assert_array_equal(ok, raw[0] != 0)


def test_predict_is_the_argmax_of_predict_proba_strip_by_strip() -> None:
    """predict() no longer holds (K, H, W) probabilities (it streams class ids strip by strip): the
    same ids as predict_proba's argmax, 255 where that is NaN, across tile seams, nodata and a mask."""
    from dakd_edge.inference.tiling import argmax0

    img = blob_scene(300, 410, seed=5).astype(np.float32)
    img[40:90, 100:180] = np.nan
    masked = np.ma.masked_array(img, mask=np.zeros(img.shape, bool))
    masked.mask[200:260, :50] = True
    p = Predictor(FakeBackend(num_classes=3), tile=64, overlap=16, batch=3)
    for x, kw in (
        (img, {"scale": "uint8"}),
        (masked, {"scale": "uint8"}),
        (img, {"scale": "uint8", "nodata": 0.0}),
    ):
        probs = p.predict_proba(x, **kw)
        want = argmax0(np.nan_to_num(probs, nan=0.0))
        want[np.isnan(probs[0])] = 255
        got = p.predict(x, **kw)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
        assert (got == 255).sum() == np.isnan(probs[0]).sum() > 0
