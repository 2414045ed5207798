"""Synthetic SAR scenes: speckle statistics, oil contrast, class fractions, determinism, windowing,
memory-bounded GeoTIFF writing."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.data.scaling import db_to_uint8
from dakd_edge.data.synthetic import (
    SceneConfig,
    build_layout,
    generate_patch,
    generate_scene,
    write_scene_geotiff,
)
from dakd_edge.errors import InputError, OutputError

BUSY = SceneConfig(
    land_probability=1.0,
    land_fraction=(0.05, 0.3),
    oil_fraction=(0.02, 0.05),
    lookalike_fraction=(0.01, 0.05),
    ships_per_1000km2=(50.0, 100.0),
)
QUIET = SceneConfig(
    oil_fraction=(0.0, 0.0), lookalike_fraction=(0.0, 0.0), ships_per_1000km2=(0.0, 0.0), land_probability=0.0
)


def test_enl_matches_looks_on_homogeneous_sea() -> None:
    flat = SceneConfig(
        **{**QUIET.__dict__, "wind_variation_db": 0.0, "streak_db": 0.0, "incidence_db_per_km": 0.0}
    )
    img, lab = generate_scene(flat, 0, 512, 512, output="linear")
    assert (lab == 0).all()
    enl = img.mean() ** 2 / img.var()
    print(f"ENL homogeneous: {enl:.3f} (L = {flat.looks})")
    assert abs(enl - flat.looks) < 0.1 * flat.looks


def test_enl_on_local_sea_windows_with_wind_field() -> None:
    img, _ = generate_scene(QUIET, 1, 512, 512, output="linear")
    blocks = img.reshape(16, 32, 16, 32).transpose(0, 2, 1, 3).reshape(256, -1)
    enl = float(np.median(blocks.mean(1) ** 2 / blocks.var(1, ddof=1)))
    print(f"ENL median over 32x32 sea blocks: {enl:.3f} (L = {QUIET.looks})")
    assert abs(enl - QUIET.looks) < 0.1 * QUIET.looks


def _contrasts(layout, img: np.ndarray, lab: np.ndarray) -> list[tuple[int, float]]:
    """Per object: 10 log10(mean surrounding sea / mean object), intensities in linear units.

    Surrounding sea: sea-labelled pixels of the object's box untouched by any object (p == 0). Ship
    boxes are left out of both sides: the side-lobes of a ship at the head of its trailing slick are
    neither sea nor damped oil."""
    h, w = lab.shape
    out = []
    for obj in layout.objects:
        y0, x0, y1, x1 = obj.bbox
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        yy = np.arange(y0, y1, dtype=float)[:, None]
        xx = np.arange(x0, x1, dtype=float)[None, :]
        free = np.ones((y1 - y0, x1 - x0), bool)
        for other in layout.objects:
            free &= other.membership(yy, xx) == 0
        no_ship = np.ones_like(free)
        for ship in layout.ships:
            sy0, sx0, sy1, sx1 = ship.bbox
            no_ship[max(sy0 - y0, 0) : max(sy1 - y0, 0), max(sx0 - x0, 0) : max(sx1 - x0, 0)] = False
        lab_w, img_w = lab[y0:y1, x0:x1], img[y0:y1, x0:x1]
        inside = (obj.membership(yy, xx) >= 0.5) & (lab_w == obj.cls) & no_ship
        sea = free & (lab_w == 0) & no_ship
        if inside.sum() >= 300 and sea.sum() >= 300:
            out.append((obj.cls, float(10 * np.log10(img_w[sea].mean() / img_w[inside].mean()))))
    return out


def test_oil_is_5_to_10_db_below_surrounding_sea() -> None:
    found = []
    for seed in range(4):
        layout = build_layout(BUSY, seed, 768, 768)
        img, lab = layout.render(0, 0, 768, 768, output="linear")
        found += _contrasts(layout, img, lab)
    oil = [c for k, c in found if k == 1]
    look = [c for k, c in found if k == 2]
    print(f"oil contrast dB: n={len(oil)} min {min(oil):.2f} mean {np.mean(oil):.2f} max {max(oil):.2f}")
    print(
        f"look-alike contrast dB: n={len(look)} min {min(look):.2f} mean {np.mean(look):.2f} max {max(look):.2f}"
    )
    assert len(oil) >= 8
    assert all(5.0 <= c <= 10.0 for c in oil)
    assert look and 3.0 <= np.mean(look) <= 10.0  # similar darkness, softer edges


def test_class_fractions_within_configured_ranges() -> None:
    ships = 0.0
    for seed in range(4):
        _, lab = generate_scene(BUSY, seed, 512, 512)
        frac = np.bincount(lab.ravel(), minlength=5) / lab.size
        print(seed, np.round(frac, 4))
        assert BUSY.oil_fraction[0] <= frac[1] <= BUSY.oil_fraction[1]
        assert BUSY.lookalike_fraction[0] <= frac[2] <= BUSY.lookalike_fraction[1]
        assert BUSY.land_fraction[0] <= frac[4] <= BUSY.land_fraction[1]
        assert frac[3] < 0.01  # ships: a few small bright targets
        ships += frac[3]
    assert ships > 0


def test_ships_are_bright_and_land_textured() -> None:
    img, lab = generate_scene(BUSY, 2, 512, 512, output="db")
    sea = np.median(img[lab == 0])
    assert img[lab == 3].max() > sea + 10
    assert np.median(img[lab == 4]) > sea + 2 and img[lab == 4].std() > img[lab == 0].std()


def test_determinism_and_seed_sensitivity() -> None:
    a = generate_scene(BUSY, 7, 200, 300)
    b = generate_scene(BUSY, 7, 200, 300)
    c = generate_scene(BUSY, 8, 200, 300)
    assert a[0].dtype == np.uint8 and a[0].shape == (200, 300) and a[1].shape == (200, 300)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_windows_render_the_same_pixels_as_the_whole_scene() -> None:
    layout = build_layout(BUSY, 3, 600, 520)
    full_img, full_lab = layout.render(0, 0, 600, 520, output="db")
    for y0, x0, h, w in [(0, 0, 177, 250), (177, 250, 300, 270), (423, 3, 177, 517), (100, 400, 77, 19)]:
        img, lab = layout.render(y0, x0, h, w, output="db")
        np.testing.assert_array_equal(img, full_img[y0 : y0 + h, x0 : x0 + w])
        np.testing.assert_array_equal(lab, full_lab[y0 : y0 + h, x0 : x0 + w])


def test_outputs_agree_and_binary_mode() -> None:
    lin, lab = generate_scene(BUSY, 4, 128, 160, output="linear")
    db, _ = generate_scene(BUSY, 4, 128, 160, output="db")
    u8, lab2 = generate_scene(BUSY, 4, 128, 160, output="uint8", binary=True)
    assert lin.dtype == db.dtype == np.float32
    np.testing.assert_allclose(db, 10 * np.log10(lin), atol=1e-4)
    np.testing.assert_array_equal(u8, db_to_uint8(db))
    np.testing.assert_array_equal(lab2, (lab == 1).astype(np.uint8))


def test_generate_patch() -> None:
    img, lab = generate_patch(0, 96)
    assert img.dtype == np.float32 and img.shape == (96, 96) and 0 <= img.min() and img.max() <= 1
    assert lab.dtype == np.int64 and lab.max() <= 4
    img2, lab2 = generate_patch(0, (64, 80), num_classes=2)
    assert img2.shape == lab2.shape == (64, 80) and set(np.unique(lab2)) <= {0, 1}
    with pytest.raises(ValueError):
        generate_patch(0, 32, num_classes=3)
    n_oil = sum((generate_patch(s, 128)[1] == 1).any() for s in range(5))
    assert n_oil >= 4  # training patches nearly always show oil


def test_bad_sizes() -> None:
    with pytest.raises(InputError):
        generate_scene(None, 0, 0, 10)
    with pytest.raises(ValueError):
        SceneConfig(oil_fraction=(0.3, 0.1))


@pytest.mark.parametrize("field", ["looks", "pixel_size"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_looks_and_pixel_size_must_be_finite_and_positive(field: str, value: float) -> None:
    with pytest.raises(ValueError, match="finite and positive"):
        SceneConfig(**{field: value})


def test_negative_seed_is_an_input_error() -> None:
    """numpy takes non-negative seeds only; its ValueError would reach the user as a traceback."""
    with pytest.raises(InputError, match="seed"):
        build_layout(QUIET, -1, 32, 32)


def test_object_counts_are_bounded_whatever_the_pixel_size() -> None:
    """Ship density is per km2: a 64 x 64 scene of 1e14 m pixels once asked numpy for ~1e20 ships."""
    from dataclasses import replace

    from dakd_edge.data.synthetic import MAX_OBJECTS, MAX_SHIPS

    layout = build_layout(replace(BUSY, pixel_size=1e14), 0, 64, 64)
    assert len(layout.ships) <= MAX_SHIPS and len(layout.objects) <= 2 * MAX_OBJECTS + MAX_SHIPS
    layout = build_layout(replace(BUSY, pixel_size=1000.0), 0, 512, 512)
    assert 0 < len(layout.ships) <= MAX_SHIPS


def test_geotiff_is_georeferenced_tiled_and_equals_in_memory(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    out, labels = tmp_path / "s.tif", tmp_path / "s_labels.tif"
    info = write_scene_geotiff(out, BUSY, seed=5, height=300, width=280, labels_path=labels, window=128)
    img, lab = generate_scene(BUSY, 5, 300, 280)
    with rasterio.open(out) as ds:
        assert ds.crs.is_projected and ds.crs.to_epsg() == 32634
        assert ds.transform.a == 10.0 and ds.transform.e == -10.0
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        np.testing.assert_array_equal(ds.read(1), img)
    with rasterio.open(labels) as ds:
        np.testing.assert_array_equal(ds.read(1), lab)
        assert ds.colormap(1)[1][:3] == (0, 255, 255)
    assert info["class_fractions"]["oil"] == pytest.approx((lab == 1).mean())
    with pytest.raises(OutputError):
        write_scene_geotiff(out, BUSY, seed=5, height=16, width=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif", "s_labels.tif"]


def test_geotiff_write_memory_is_one_window(tmp_path: Path) -> None:
    size, window = 2048, 256
    tracemalloc.start()
    write_scene_geotiff(
        tmp_path / "big.tif", QUIET, seed=0, height=size, width=size, window=window, output="db"
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scene_f32 = size * size * 4
    print(f"peak traced memory {peak / 2**20:.1f} MiB for a {scene_f32 / 2**20:.0f} MiB float32 scene")
    assert peak < scene_f32 / 3


def test_full_disk_real_tmpfs(tmp_path: Path) -> None:
    """A clearly too small disk is refused before writing; one that fills mid-write says "no space
    left" (GDAL's exception only said "TIFFAppendToStrip:Write error at scanline 0"); nothing left."""
    from tests.fs import fill, leftovers, tmpfs

    with tmpfs(tmp_path / "disk", "256k") as disk:
        with pytest.raises(
            OutputError, match=rf"^no space left on {disk} for {disk}/s\.tif: needs about 0\.5 MB"
        ):
            write_scene_geotiff(disk / "s.tif", height=1024, width=1024, labels_path=disk / "l.tif")
        assert leftovers(disk) == []
        fill(disk, leave=100_000)  # 400 x 400 needs 80 kB by the estimate, writes ~130 kB
        with pytest.raises(OutputError, match=rf"^no space left on {disk} \(writing {disk}/(s|l)\.tif\)$"):
            write_scene_geotiff(disk / "s.tif", height=400, width=400, labels_path=disk / "l.tif")
        assert leftovers(disk) == ["hog.bin"]
