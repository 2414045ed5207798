"""GRD border noise of products processed before IPF 2.90: found to the pixel from the DNs and the noise
LUT, masked as no data only where no signal was recorded, windowed reads consistent with whole ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.data.border_noise import BORDER_BLOCK, border_extent
from dakd_edge.data.sentinel1 import build_synthetic_product, open_product
from dakd_edge.errors import InputError

H, W = 300, 420
NEAR, FAR = 40, 27  # border-noise widths of the generated products


def _strips(widths: np.ndarray, length: int, seed: int = 0, zeros: int = 0, floor: float = 1.0):
    """(power, noise) rows: ``zeros`` DN == 0 pixels, border noise (power ~Exp(0.1 x noise), 1 % streaks
    at 2x noise) up to ``widths``, then sea at the noise floor scaled by ``floor`` (speckled, 4.4 looks)."""
    rng = np.random.default_rng(seed)
    n = len(widths)
    noise = np.full((n, length), 900.0) * np.linspace(1.2, 0.8, length)[None, :]
    sea = noise * floor * rng.gamma(4.4, 1 / 4.4, (n, length))
    border = noise * rng.exponential(0.1, (n, length))
    border[rng.random((n, length)) < 0.01] = 2.0 * noise[0, 0]
    col = np.arange(length)[None, :]
    power = np.where(col < widths[:, None], border, sea)
    power[:, :zeros] = 0.0
    return power.astype(np.float32), noise.astype(np.float32)


def test_extent_is_found_to_the_pixel() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 300, 400)
    power, noise = _strips(truth, 600, seed=2)
    # per line, without the neighbours' smoothing: speckle and bright artefacts next to the edge make
    # a few lines err by some pixels (measured: 87 % exact, 99.5 % within 3, worst -15 over 10,000)
    for zeros in (0, 20):  # a DN == 0 run before the border is part of it
        power, noise = _strips(truth, 600, seed=2 + zeros, zeros=zeros)
        err = border_extent(power, noise, limit=500) - np.maximum(truth, zeros)
        assert np.mean(err == 0) > 0.8 and np.mean(np.abs(err) <= 3) > 0.98, err
        assert np.abs(err).max() < BORDER_BLOCK


def test_sea_with_no_signal_is_never_border() -> None:
    """Calm sea returns nothing above the noise, yet every recorded pixel carries the thermal noise:
    sea at the noise floor, and even at half of it (a LUT 3 dB too high), keeps every pixel."""
    for floor in (1.0, 0.5):
        power, noise = _strips(np.zeros(2000, int), 600, seed=4, floor=floor)
        assert border_extent(power, noise, limit=500).max() == 0
    # a noise LUT of zeros says nothing: no border
    power, _ = _strips(np.full(50, 100), 600, seed=5)
    assert border_extent(power, np.zeros_like(power), limit=500).max() == 0


def test_extent_stops_at_the_limit() -> None:
    power, noise = _strips(np.full(20, 590), 640, seed=6)
    assert (border_extent(power, noise, limit=300) == 300).all()
    # too few pixels to confirm a signal: nothing can be told, nothing is masked
    power, noise = _strips(np.full(5, 10), 2 * BORDER_BLOCK, seed=7)
    assert (border_extent(power, noise, limit=24) == 0).all()


def _true_cut(rows: np.ndarray, side: int, base: int) -> np.ndarray:
    """The generator's border width (dakd_edge.data.sentinel1._border_noise_dn), restated."""
    step = 1.0 + 0.1 * ((rows // 700 + side) % 3 - 1)
    return np.rint(base * step * (1 + 0.05 * np.sin(rows / 97.0 + side))).astype(int)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bn")
    out = {}
    for name, ipf in (("old", "002.72"), ("new", "003.40")):
        p = build_synthetic_product(root / name, shape=(H, W), seed=2, ipf=ipf, border_noise=(NEAR, FAR))
        out[name] = p.path
    # a flattened copy (no manifest.safe) of the old one: the noise XML's layout tells its age
    flat = root / "flat" / out["old"].name
    shutil.copytree(out["old"], flat)
    (flat / "manifest.safe").unlink()
    out["flat"] = flat
    return out


def test_old_product_border_is_nodata(products: dict[str, Path]) -> None:
    with open_product(products["old"]) as p:
        assert p.border_noise == "masked (IPF 002.72)"
        s = p.read_sigma0(0, H, 0, W)
    rows = np.arange(H)
    near, far = _true_cut(rows, 0, NEAR), _true_cut(rows, 1, FAR)
    nan = np.isnan(s)
    first_valid = nan.argmin(axis=1)
    last_valid = W - 1 - nan[:, ::-1].argmin(axis=1)
    # every border pixel is gone; at most the smoothing's neighbours' extra width of sea with it
    assert (first_valid >= near).all() and (W - 1 - last_valid >= far).all()
    assert np.mean(first_valid == near) > 0.9 and np.mean(W - 1 - last_valid == far) > 0.9
    assert (first_valid - near).max() <= 8 and (W - 1 - last_valid - far).max() <= 8
    assert not nan[:, 60:-60].any()  # nothing inside
    with open_product(products["flat"]) as p:
        assert p.border_noise == "masked (IPF before 2.90 (noise XML layout))"
        assert np.array_equal(np.isnan(p.read_sigma0(0, H, 0, W)), nan)


def test_windows_agree_with_a_whole_read(products: dict[str, Path]) -> None:
    """Widths are found per 256 lines and widened by neighbours: any window, in any order, is the
    same as the slice of a whole read (also across the 256-line chunk boundary)."""
    with open_product(products["old"]) as p:
        whole = p.read_sigma0(0, H, 0, W)
    rng = np.random.default_rng(0)
    with open_product(products["old"]) as p:
        for _ in range(12):
            y0, x0 = int(rng.integers(0, H - 20)), int(rng.integers(0, W - 20))
            y1, x1 = int(rng.integers(y0 + 1, min(H, y0 + 90) + 1)), int(rng.integers(x0 + 1, W + 1))
            np.testing.assert_array_equal(p.read_sigma0(y0, y1, x0, x1), whole[y0:y1, x0:x1])
        np.testing.assert_array_equal(p.read_sigma0(250, 262, 0, 80), whole[250:262, :80])


def test_new_product_and_keep_are_untouched(products: dict[str, Path]) -> None:
    with open_product(products["new"]) as p:
        assert p.border_noise == "not needed (IPF 003.40: its border is written as 0)"
        assert p.border is None
        assert not np.isnan(p.read_sigma0(0, H, 0, W)).any()  # its generated border stays (no DN 0)
    with open_product(products["old"], border_noise="keep") as p:
        assert p.border_noise == "kept (IPF 002.72)"
        assert not np.isnan(p.read_sigma0(0, H, 0, W)).any()
    with open_product(products["new"], border_noise="mask") as p:
        assert p.border_noise == "masked (IPF 003.40)"
        assert np.isnan(p.read_sigma0(0, H, 0, 30)).all()


def test_info_says_what_segment_does(products: dict[str, Path]) -> None:
    from dakd_edge.data.rasterinfo import describe_product

    assert describe_product(products["old"])["border_noise"] == "masked (IPF 002.72)"
    assert describe_product(products["new"])["border_noise"].startswith("not needed (IPF 003.40")


def test_mask_needs_the_noise_annotation(products: dict[str, Path]) -> None:
    with open_product(products["old"], noise=False) as p:
        assert p.border is None
        assert p.border_noise.startswith("kept (IPF 002.72; needs the noise annotation")
    with pytest.raises(InputError, match="needs the noise annotation"):
        open_product(products["old"], noise=False, border_noise="mask")
    with pytest.raises(InputError, match="choose one of auto, mask, keep"):
        open_product(products["old"], border_noise="yes")


def test_azimuth_border_at_a_datatake_start(products: dict[str, Path], tmp_path: Path) -> None:
    """The first lines of a datatake's first product carry the same low values: found on line means."""
    safe = tmp_path / products["new"].name
    shutil.copytree(products["new"], safe)
    tif = next((safe / "measurement").glob("*-vv-*.tiff"))
    with open_product(safe) as p:
        noise = p.noise.window(0, 60, 0, W)
    rng = np.random.default_rng(3)
    top = np.full(W, 33)
    with rasterio.open(tif, "r+") as ds:
        dn = ds.read(1, window=((0, 60), (0, W)))
        low = np.clip(np.rint(np.sqrt(noise * rng.exponential(0.1, noise.shape))), 1, None)
        rows = np.arange(60)[:, None]
        dn = np.where(rows < top[None, :], low, dn).astype(np.uint16)
        ds.write(dn, 1, window=((0, 60), (0, W)))
    with open_product(safe, border_noise="mask") as p:
        s = p.read_sigma0(0, 80, 100, 300)  # inside the range borders
    assert (np.isnan(s).argmin(axis=0) == 33).all()
    with open_product(products["new"], border_noise="mask") as p:  # the same product without it
        assert not np.isnan(p.read_sigma0(0, 80, 100, 300)).any()


def _low_lines(safe: Path, zeros: int, border: int, w: int) -> None:
    """DN == 0 in the first ``zeros`` lines of a ``w`` wide product, border noise in the next ``border``
    (power a tenth of the noise), as at the start of a datatake."""
    tif = next((safe / "measurement").glob("*-vv-*.tiff"))
    with open_product(safe) as p:
        noise = p.noise.window(0, 60, 0, w)
    low = np.clip(np.rint(np.sqrt(noise * np.random.default_rng(3).exponential(0.1, noise.shape))), 1, None)
    rows = np.arange(60)[:, None]
    with rasterio.open(tif, "r+") as ds:
        dn = ds.read(1, window=((0, 60), (0, w)))
        dn = np.where(rows < zeros, 0, np.where(rows < zeros + border, low, dn)).astype(np.uint16)
        ds.write(dn, 1, window=((0, 60), (0, w)))


def test_azimuth_border_after_zero_lines(tmp_path: Path) -> None:
    """Lines of only DN == 0 before an azimuth border are part of it, as in range: the border noise
    after them is found too (it was left as a -35 dB band when the border began in the first block)."""
    w = 1100  # wider than the range borders' limits: line means of the columns between them
    p = build_synthetic_product(tmp_path / "p", shape=(H, w), seed=2)
    _low_lines(p.path, 10, 8, w)
    with open_product(p.path, border_noise="mask") as prod:
        s = prod.read_sigma0(0, 80, 0, w)
    assert (np.isnan(s).argmin(axis=0) == 18).all()


def test_narrow_product_azimuth_border_skips_the_range_borders(tmp_path: Path) -> None:
    """Where the range borders' limits overlap (a product narrower than twice 5 km), line means are
    taken between each line's range borders: wide range borders beside calm sea are no azimuth border
    (they made half the product's sea nodata), and a real one is still found."""
    from dakd_edge.data.synthetic import SceneConfig

    calm = SceneConfig(sea_db=(-32.0, -30.0), land_probability=0.0)
    p = build_synthetic_product(
        tmp_path / "p", shape=(H, W), seed=1, ipf="002.72", border_noise=(150, 140), cfg=calm
    )
    with open_product(p.path) as prod:
        assert not np.isnan(prod.read_sigma0(0, H, 185, 255)).any()
    _low_lines(p.path, 0, 20, W)
    with open_product(p.path) as prod:
        assert (np.isnan(prod.read_sigma0(0, 60, 185, 255)).argmin(axis=0) == 20).all()


def test_flattened_new_product_is_not_called_old(products: dict[str, Path], tmp_path: Path) -> None:
    """Without a manifest, the noise XML's layout of IPF 2.90 and later says so (not "before 2.90")."""
    flat = tmp_path / products["new"].name
    shutil.copytree(products["new"], flat)
    (flat / "manifest.safe").unlink()
    with open_product(flat) as p:
        assert p.border is None
        assert (
            p.border_noise == "not needed (IPF 2.90 or later (noise XML layout): its border is written as 0)"
        )


def test_a_noise_lut_above_the_recorded_power_does_not_mask_calm_sea(tmp_path: Path) -> None:
    """A calm sea at the thermal noise floor, under a noise LUT 6 times too high (as the oldest IPF
    versions' unqualified vectors may be): every pixel looked like border noise, masked to the 5 km
    limit. The LUT is scaled to the swath's median power first, so only the real border goes."""
    import re

    from dakd_edge.data.border_noise import BorderNoiseMask

    p = build_synthetic_product(tmp_path / "p", shape=(H, W), seed=3, ipf="002.72", pols=("VV",))
    tif = next((p.path / "measurement").glob("*-vv-*.tiff"))
    with open_product(p.path) as prod:
        noise = prod.noise.window(0, H, 0, W).astype(np.float64)
    rng = np.random.default_rng(0)
    power = noise * rng.gamma(4.4, 1 / 4.4, noise.shape)  # sea returning nothing: the noise alone
    power[:, :NEAR] = noise[:, :NEAR] * rng.exponential(0.1, (H, NEAR))  # and a border
    with rasterio.open(tif, "r+") as ds:
        ds.write(np.clip(np.rint(np.sqrt(power)), 1, 65535).astype(np.uint16), 1)
    xml = next((p.path / "annotation" / "calibration").glob("noise-*-vv-*.xml"))
    text = re.sub(r"(<noiseLut[^>]*>)([^<]*)", lambda m: m.group(1) + " ".join(f"{6 * float(v):.6e}" for v in
                  m.group(2).split()), xml.read_text())  # fmt: skip
    xml.write_text(text)
    with open_product(p.path) as prod:
        assert prod.border is not None and 0.1 < prod.border.noise_scale < 0.2
        nan = np.isnan(prod.read_sigma0(0, H, 0, W))
        first_valid = nan.argmin(axis=1)
        assert np.abs(first_valid - NEAR).max() <= 3 and not nan[:, 60:].any()
        unscaled = BorderNoiseMask(prod)
        unscaled._scale = 1.0  # the LUT as given: calm sea is "border" to the limit
        assert (unscaled.widths("right", 0, H) > 100).mean() > 0.5
