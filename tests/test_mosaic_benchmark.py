"""benchmarks/mosaic.py on tiny SOS/OSD-layout folders with a numpy model (fast, no torch model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, blob_scene


def _sos(root: Path, n: int = 5, size: int = 32) -> Path:
    for sensor in ("palsar",):
        sat, gt = root / "test" / sensor / "sat", root / "test" / sensor / "gt"
        sat.mkdir(parents=True)
        gt.mkdir(parents=True)
        for i in range(n):
            img = blob_scene(size, size, seed=i)
            Image.fromarray(np.stack([img] * 3, -1)).save(sat / f"{i:03d}_sat.png")
            mask = np.where(img < 100, 255, 0).astype(np.uint8)
            Image.fromarray(np.stack([mask] * 3, -1)).save(gt / f"{i:03d}_mask.png")
    return root


def _osd(root: Path) -> Path:
    images, labels = root / "test" / "images", root / "test" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    img = np.full((40, 60), 150, np.uint8)
    lab = np.zeros((40, 60, 3), np.uint8)
    img[:, 20:40] = 30  # dark: predicted oil by the fake model
    lab[:, 20:30] = (0, 255, 255)  # oil
    lab[:, 30:40] = (255, 0, 0)  # look-alike, also dark: all false alarms
    lab[:, 40:50] = (255, 0, 0)  # look-alike, bright: none
    Image.fromarray(np.stack([img] * 3, -1)).save(images / "img_0001.png")
    Image.fromarray(lab).save(labels / "img_0001.png")
    return root


def _factory(radius: int):
    return lambda tile, overlap: Predictor(FakeBackend(radius=radius, tile=tile), tile, overlap, batch=1)


def test_pixelwise_model_scores_the_same_on_mosaics_and_false_alarms_are_counted(
    tmp_path: Path, load_benchmark
) -> None:
    bench = load_benchmark("mosaic")
    data, osd = _sos(tmp_path / "sos"), _osd(tmp_path / "osd")
    tiles = [(32, 0), (48, 8)]
    res = bench.run_model(_factory(0), data, "test", ["palsar"], tiles, mosaics=3, grid=2, seed=1, osd=osd)
    r = res["sensors"]["palsar"]
    assert r["patches"] == 5 and r["mosaic_size"] == [64, 64]
    # A pixel-local model cannot tell a mosaic from its patches, at any tile: identical scores.
    for key in ("32/0", "48/8"):
        assert r["mosaic"][key]["miou"] == pytest.approx(r["per_patch"]["miou"], abs=1e-9)
        assert r["mosaic"][key]["delta_miou"] == pytest.approx(0.0, abs=1e-9)
    assert 0.5 < r["per_patch_all"]["miou"] <= 1.0
    fa = res["osd"]["32/0"]
    assert fa["lookalike_false_alarm"] == pytest.approx(0.5)  # the dark half of the look-alike pixels
    assert fa["open_sea_false_alarm"] == pytest.approx(0.0)
    assert fa["oil_recall"] == pytest.approx(1.0)
    table = bench.markdown({"tiles": ["32/0", "48/8"], "models": {"fake": res}})
    assert "| fake | palsar mIoU |" in table and "OSD look-alike FA" in table


def test_layouts_use_every_patch_evenly_and_context_model_differs(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("mosaic")
    lays = bench.mosaic_layouts(40, 5, 4, seed=0)
    counts = np.bincount(np.concatenate(lays), minlength=40)
    assert len(lays) == 5 and all(len(set(lay)) == 16 for lay in lays) and (counts == 2).all()
    data = _sos(tmp_path / "sos")
    res = bench.run_model(_factory(6), data, "test", ["palsar"], [(64, 0)], mosaics=2, grid=2, seed=0)
    r = res["sensors"]["palsar"]
    # A model with context (zero-padded box filter) sees neighbours in the mosaic: scores move.
    assert r["mosaic"]["64/0"]["miou"] != pytest.approx(r["per_patch"]["miou"], abs=1e-6)
    json.dumps(res)  # JSON-able
    # Several layouts: the first is the seed's own result, the others other draws of neighbours.
    rep = bench.run_model(
        _factory(6), data, "test", ["palsar"], [(64, 0)], mosaics=2, grid=2, seed=0, layouts=3
    )
    lay = rep["sensors"]["palsar"]["layouts"]["64/0"]
    assert lay["seeds"] == [0, 1, 2] and len(lay["gaps"]) == 3
    assert lay["gaps"][0] == pytest.approx(r["mosaic"]["64/0"]["delta_miou"], abs=1e-12)
    assert lay["mean"] == pytest.approx(np.mean(lay["gaps"])) and lay["sd"] > 0
    assert "layouts" not in r  # one layout: no spread to report


def test_equalize_gives_every_patch_the_median_mean_and_contrast(load_benchmark) -> None:
    mb = load_benchmark("mosaic")
    rng = np.random.default_rng(0)
    images = [
        np.clip(rng.normal(m, s, (32, 32)), 0, 255).astype(np.uint8)
        for m, s in ((60, 10), (120, 20), (150, 30))
    ]
    out = mb.equalize(images)
    assert [o.dtype for o in out] == [np.uint8] * 3
    np.testing.assert_allclose([o.mean() for o in out], np.median([im.mean() for im in images]), atol=0.6)
    np.testing.assert_allclose([o.std() for o in out], np.median([im.std() for im in images]), rtol=0.05)


def test_holdout_scores_exactly_the_validation_pairs_a_run_held_out(tmp_path: Path, load_benchmark) -> None:
    from dakd_edge.data import open_dataset
    from dakd_edge.train.saross import split_indices

    bench = load_benchmark("mosaic")
    for sensor in ("palsar", "sentinel"):
        sat, gt = tmp_path / "train" / sensor / "sat", tmp_path / "train" / sensor / "gt"
        sat.mkdir(parents=True)
        gt.mkdir(parents=True)
        for i in range(10):
            img = blob_scene(16, 16, seed=i)
            Image.fromarray(np.stack([img] * 3, -1)).save(sat / f"{sensor}{i:03d}_sat.png")
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(gt / f"{sensor}{i:03d}_mask.png")
    whole = open_dataset(tmp_path, split="train", kind="sos", classes="binary")
    _, val = split_indices(len(whole), 0.3, 7)
    want = sorted(str(whole.files[i][0]) for i in val)
    got = []
    held = bench.held_out_files(tmp_path, "train", "sos", (0.3, 7))
    for sensor in ("palsar", "sentinel"):
        sub = open_dataset(tmp_path, split="train", kind="sos", sensor=sensor, classes="binary")
        idx = bench.holdout_indices(sub, held)
        got += [str(sub.files[i][0]) for i in idx]
        assert all(f"/{sensor}/" in str(sub.files[i][0]) for i in idx)
    assert sorted(got) == want and len(want) == 6
    assert bench.parse_holdout("0.3:7") == (0.3, 7)
    from dakd_edge.train.recipes.bundled import RECIPE

    assert bench.parse_holdout("bundled") == (RECIPE.val_fraction, RECIPE.seed)


def test_phase_moves_the_tile_grid_off_the_patch_grid(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("mosaic")
    data = _sos(tmp_path / "sos")
    run = bench.run_model
    # a pixel-local model still scores the same on a cropped mosaic: the per-patch side is cropped alike
    r = run(_factory(0), data, "test", ["palsar"], [(32, 0)], mosaics=2, grid=2, seed=0, phase=10)
    p = r["sensors"]["palsar"]
    assert p["mosaic_size"] == [54, 54] and p["phase"] == 10
    assert p["mosaic"]["32/0"]["delta_miou"] == pytest.approx(0.0, abs=1e-9)
    # with context, aligned 32 px tiles reproduce the patches; shifted ones mix neighbours in
    aligned = run(_factory(6), data, "test", ["palsar"], [(32, 0)], mosaics=2, grid=2, seed=0)
    shifted = run(_factory(6), data, "test", ["palsar"], [(32, 0)], mosaics=2, grid=2, seed=0, phase=10)
    assert aligned["sensors"]["palsar"]["mosaic"]["32/0"]["delta_miou"] == pytest.approx(0.0, abs=1e-9)
    assert shifted["sensors"]["palsar"]["mosaic"]["32/0"]["delta_miou"] != pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="phase"):
        run(_factory(0), data, "test", ["palsar"], [(32, 0)], mosaics=1, grid=2, seed=0, phase=32)


def test_several_phases_report_each_gap_and_their_mean(tmp_path: Path, load_benchmark) -> None:
    bench = load_benchmark("mosaic")
    data = _sos(tmp_path / "sos")
    kw = dict(mosaics=2, grid=2, seed=0)
    both = bench.run_model(_factory(6), data, "test", ["palsar"], [(32, 0)], phase=[0, 10], **kw)
    one = [
        bench.run_model(_factory(6), data, "test", ["palsar"], [(32, 0)], phase=ph, **kw)["sensors"]["palsar"]
        for ph in (0, 10)
    ]
    r = both["sensors"]["palsar"]
    ph = r["phases"]["32/0"]
    assert ph["phases"] == [0, 10]
    assert ph["gaps"] == pytest.approx([o["mosaic"]["32/0"]["delta_miou"] for o in one], abs=1e-12)
    assert ph["mean"] == pytest.approx(np.mean(ph["gaps"]))
    # the other fields are the first phase's
    assert r["mosaic"]["32/0"]["miou"] == one[0]["mosaic"]["32/0"]["miou"] and r["phase"] == 0
    assert "over phases [0, 10]" in bench.summary_line(r)
    assert bench.parse_phases("0,64") == [0, 64]
