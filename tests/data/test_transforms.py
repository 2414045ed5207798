"""Transforms move image, mask and logits together."""

from __future__ import annotations

import numpy as np
import pytest

from dakd_edge.data.transforms import (
    augment,
    grid_mosaic,
    hflip,
    mosaic,
    random_crop,
    random_flip_rot,
    regrain,
    rot90,
    shift_level,
    vflip,
)


def _sample(h: int = 6, w: int = 8, k: int = 3, logits: bool = True, offset: int = 0) -> dict:
    """Every array encodes the pixel position, so we can check they stay aligned."""
    pos = (np.arange(h * w).reshape(h, w) + offset).astype(np.float32)
    s = {"image": pos[None].copy(), "mask": pos.astype(np.int64) % 5}
    if logits:
        s["logits"] = np.stack([pos * (c + 1) for c in range(k)])
    return s


def _aligned(s: dict) -> None:
    pos = s["image"][0]
    valid = s["mask"] != 255
    np.testing.assert_array_equal(s["mask"][valid], pos[valid].astype(np.int64) % 5)
    if "logits" in s:
        for c in range(s["logits"].shape[0]):
            np.testing.assert_array_equal(s["logits"][c], pos * (c + 1))


def test_flips_and_rotations() -> None:
    s = _sample()
    np.testing.assert_array_equal(hflip(s)["image"][0], s["image"][0][:, ::-1])
    np.testing.assert_array_equal(vflip(s)["mask"], s["mask"][::-1])
    r = rot90(s, 1)
    assert r["image"].shape == (1, 8, 6) and r["logits"].shape == (3, 8, 6)
    for t in (hflip(s), vflip(s), r, rot90(s, 3)):
        _aligned(t)
        assert t["image"].flags.c_contiguous


def test_random_crop_and_padding() -> None:
    rng = np.random.default_rng(0)
    c = random_crop(_sample(), 4, rng)
    assert c["image"].shape == (1, 4, 4) and c["mask"].shape == (4, 4)
    _aligned(c)
    p = random_crop(_sample(3, 3), (5, 6), rng)
    assert p["image"].shape == (1, 5, 6)
    assert (
        (p["mask"][3:] == 255).all() and (p["mask"][:, 3:] == 255).all() and (p["logits"][:, 3:] == 0).all()
    )


def test_seeded_determinism() -> None:
    a = augment(_sample(9, 9), np.random.default_rng(5), crop_size=5)
    b = augment(_sample(9, 9), np.random.default_rng(5), crop_size=5)
    np.testing.assert_array_equal(a["image"], b["image"])
    seen = {augment(_sample(9, 9), np.random.default_rng(i))["image"].tobytes() for i in range(40)}
    assert len(seen) == 8  # the 8 symmetries of the square
    _aligned(random_flip_rot(_sample(), np.random.default_rng(1), rotations=False))


def test_mosaic_quadrants_and_logits() -> None:
    rng = np.random.default_rng(0)
    samples = [_sample(10, 10, offset=1000 * i) for i in range(4)]
    m = mosaic(samples, 12, rng)
    assert m["image"].shape == (1, 12, 12) and m["logits"].shape == (3, 12, 12) and "kd_mask" not in m
    _aligned(m)
    sources = {int(v) // 1000 for v in m["image"][0][m["mask"] != 255].ravel()}
    assert sources == {0, 1, 2, 3}
    mixed = [_sample(10, 10, logits=i % 2 == 0, offset=1000 * i) for i in range(4)]
    mm = mosaic(mixed, 12, rng)
    from_logit_samples = np.isin(mm["image"][0] // 1000, [0, 2])
    np.testing.assert_array_equal(mm["kd_mask"] == 1, from_logit_samples)
    assert (mm["logits"][:, ~from_logit_samples] == 0).all()
    no = mosaic([_sample(logits=False) for _ in range(4)], 8, rng)
    assert set(no) == {"image", "mask"}
    with pytest.raises(ValueError):
        mosaic(samples[:3], 8, rng)


def test_grid_mosaic_gain_scales_each_patch_by_its_own_bounded_factor() -> None:
    """Each patch of a gained mosaic is one constant multiple of its own luminance; labels untouched."""
    n, p, gain = 2, 8, 0.5
    patches = [
        {"image": np.full((1, p, p), 0.1 * (j + 1), np.float32), "mask": np.full((p, p), j, np.int64)}
        for j in range(n * n)
    ]
    plain = grid_mosaic(patches, n * p, np.random.default_rng(3))
    # Without gain no extra random number is drawn: the seeded batches of earlier runs are unchanged.
    again = grid_mosaic(patches, n * p, np.random.default_rng(3), gain=0.0)
    np.testing.assert_array_equal(plain["image"], again["image"])
    factors = []
    for seed in range(30):
        m = grid_mosaic(patches, n * p, np.random.default_rng(seed), gain=gain)
        for j in range(n * n):
            sel = m["mask"] == j
            assert sel.sum() == p * p  # the crop of a 2x2 canvas of its own size is the whole canvas
            values = np.unique(m["image"][0][sel])
            assert values.size == 1  # one factor per patch
            factors.append(float(values[0]) / (0.1 * (j + 1)))
    f = np.log(np.array(factors))
    assert f.min() >= -gain - 1e-5 and f.max() <= gain + 1e-5
    assert f.std() > 0.2  # the factors really vary (uniform on [-0.5, 0.5]: s.d. 0.29)
    bright = grid_mosaic(
        [{"image": np.full((1, p, p), 0.9, np.float32), "mask": np.zeros((p, p), np.int64)}] * 4,
        n * p, np.random.default_rng(0), gain=2.0,
    )  # fmt: skip
    assert bright["image"].max() <= 1.0  # clipped to unit luminance


def test_shift_level_moves_the_whole_image_and_keeps_contrast_and_labels() -> None:
    img = np.array([[[0.2, 0.5], [0.7, 0.98]]], np.float32)
    s = {"image": img, "mask": np.array([[1, 0], [0, 0]], np.int64)}
    up = shift_level(s, 0.1)
    np.testing.assert_allclose(up["image"], [[[0.3, 0.6], [0.8, 1.0]]], atol=1e-6)  # clipped at 1
    assert up["mask"] is s["mask"] and up["image"].dtype == np.float32
    np.testing.assert_array_equal(s["image"], img)  # the input is not modified
    down = shift_level(s, -0.3)
    np.testing.assert_allclose(down["image"], [[[0.0, 0.2], [0.4, 0.68]]], atol=1e-6)


def test_grid_mosaic_calm_darkens_only_slick_free_patches() -> None:
    """``calm`` darkens the nearly background-only patches by exp(-U(0, calm)); patches with oil keep
    their level, and no label changes."""
    n, p, calm = 2, 8, 0.7
    oily = np.zeros((p, p), np.int64)
    oily[:2] = 1  # 25 % oil
    speck = np.zeros((p, p), np.int64)
    speck[0, 0] = 1  # 1.6 % oil: still slick-free sea
    masks = [oily, speck, np.zeros((p, p), np.int64), oily]
    base = [0.4, 0.5, 0.6, 0.7]
    patches = [{"image": np.full((1, p, p), base[j], np.float32), "mask": masks[j]} for j in range(4)]
    factors = {1: [], 2: []}
    for seed in range(20):
        m = grid_mosaic(patches, n * p, np.random.default_rng(seed), calm=calm)
        for j in range(4):  # a crop of the canvas's own size is the whole canvas: patch j is quadrant j
            y, x = (j // n) * p, (j % n) * p
            quad_img, quad_mask = m["image"][0, y : y + p, x : x + p], m["mask"][y : y + p, x : x + p]
            assert (
                np.bincount(quad_mask.ravel(), minlength=2).tolist()
                == np.bincount(masks[j].ravel(), minlength=2).tolist()
            )
            assert np.unique(quad_img).size == 1
            if j in factors:
                factors[j].append(float(quad_img[0, 0]) / base[j])
            else:
                assert quad_img[0, 0] == np.float32(base[j])  # with oil: level unchanged
    for j, f in factors.items():
        logf = np.log(f)
        assert logf.max() <= 1e-6 and logf.min() >= -calm - 1e-5 and logf.std() > 0.1, j


def test_regrain_adds_coarse_grain_and_stretch_within_bounds_and_keeps_labels() -> None:
    """A flat crop gets grains ``grain`` pixels wide (neighbour correlation high, unlike white noise)
    whose spread is amplitude x contrast within the drawn bounds; the mask is the input's."""
    from dakd_edge.data import transforms as T

    flat = {"image": np.full((1, 128, 128), 0.5, np.float32), "mask": np.zeros((128, 128), np.int64)}
    for seed in range(6):
        out = regrain(flat, np.random.default_rng(seed))
        img = out["image"][0]
        assert out["mask"] is flat["mask"] and out["image"].dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0
        lo = T.REGRAIN_AMPLITUDE[0] * T.REGRAIN_CONTRAST[0]
        hi = T.REGRAIN_AMPLITUDE[1] * T.REGRAIN_CONTRAST[1]
        assert lo * 0.9 <= float(img.std()) <= hi * 1.1, float(img.std())
        a, b = img[:, :-1].ravel() - 0.5, img[:, 1:].ravel() - 0.5
        assert float((a * b).mean() / (a * a).mean()) > 0.5  # a grain spans several pixels
        assert abs(float(np.median(img)) - 0.5) < 0.02  # stretched around the median
    again = regrain(flat, np.random.default_rng(3))["image"]
    np.testing.assert_array_equal(again, regrain(flat, np.random.default_rng(3))["image"])  # seeded
    np.testing.assert_array_equal(flat["image"], 0.5)  # the input is not modified
