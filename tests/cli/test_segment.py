"""`dakd-edge segment` / `demo` called like a user: outputs, reports, several scenes, exit-2 errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.cli import segment as seg_cli
from dakd_edge.cli.app import main
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, blob_scene, write_tif


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replace model loading by the numpy fake; records each load (one per CLI call expected)."""
    loads: list[tuple] = []

    def load(model, backend, device, tile, overlap, batch, threads=None):
        loads.append((model, backend, device, tile, overlap, batch) + ((threads,) if threads else ()))
        return Predictor(FakeBackend(num_classes=5, tile=128), tile=tile, overlap=overlap, batch=batch)

    monkeypatch.setattr(seg_cli, "load_predictor", load)
    return loads


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_segment_one_scene_all_outputs(tmp_path: Path, fake_model, capsys) -> None:
    src = write_tif(tmp_path / "s1.tif", blob_scene(300, 260, seed=1))
    out, probs, vec, rep = (tmp_path / n for n in ("c.tif", "p.tif", "v.gpkg", "r.json"))
    argv = ["segment", str(src), "-o", str(out), "--probs", str(probs), "--vector", str(vec)]
    argv += ["--report", str(rep), "--tile", "96", "--overlap", "24", "--batch", "3", "-q"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert fake_model == [(None, "auto", "cpu", 96, 24, 3)]
    r = json.loads(rep.read_text())
    for key in (
        "width",
        "height",
        "tiles",
        "time_s",
        "mpix_per_s",
        "spills",
        "oil_area_m2",
        "model",
        "backend",
    ):
        assert key in r
    assert r["tiles"]["tile"] == 96 and r["spills"] >= 1 and r["outputs"]["vector"] == str(vec)
    assert "MPix/s" in stdout and str(out) in stdout
    assert stdout.splitlines()[-1] == f"report -> {rep}"  # the run's one report was named nowhere
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32633


def test_segment_several_scenes_one_load(tmp_path: Path, fake_model, capsys) -> None:
    a = write_tif(tmp_path / "a.tif", blob_scene(100, 120, seed=2))
    b = write_tif(tmp_path / "b.tif", blob_scene(130, 90, seed=3))
    outdir = tmp_path / "out"
    outdir.mkdir()
    argv = ["segment", str(a), str(b), "-o", str(outdir), "--vector", str(outdir / "{stem}.geojson")]
    code, stdout, err = run([*argv, "--report", str(tmp_path / "all.json"), "-q"], capsys)
    assert code == 0, err
    assert stdout.splitlines()[-1] == f"report of 2 scenes -> {tmp_path / 'all.json'}"
    assert len(fake_model) == 1 and fake_model[0][5] is None  # the predictor picks it: default_batch
    assert sorted(p.name for p in outdir.iterdir()) == [
        "a.geojson",
        "a_classes.tif",
        "b.geojson",
        "b_classes.tif",
    ]
    reports = json.loads((tmp_path / "all.json").read_text())
    assert [Path(r["scene"]).name for r in reports] == ["a.tif", "b.tif"]
    # a plain file name for several scenes is ambiguous
    code, _, err = run(["segment", str(a), str(b), "-o", str(tmp_path / "x.tif")], capsys)
    assert code == 2 and "{stem}" in err


def _one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dakd-edge: error: "), err
    return lines[0]


def test_bad_inputs_exit_2_one_line(tmp_path: Path, fake_model, capsys) -> None:
    good = write_tif(tmp_path / "g.tif", blob_scene(64, 64))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"\x00" * 100)
    two = write_tif(tmp_path / "two.tif", np.stack([blob_scene(64, 64), blob_scene(64, 64, seed=3)]))
    (tmp_path / "exists.tif").write_bytes(b"x")
    cases = {
        "cannot read": [str(junk), "-o", str(tmp_path / "o1.tif")],
        "no such file": [str(tmp_path / "none.tif")],
        "--band": [str(two), "-o", str(tmp_path / "o2.tif")],
        "band 5 does not exist": [str(two), "--band", "5", "-o", str(tmp_path / "o3.tif")],
        "is a directory": [str(tmp_path), "-o", str(tmp_path / "o4.tif")],
        "does not exist": [str(good), "-o", str(tmp_path / "missing" / "o.tif")],
        "--overwrite": [str(good), "-o", str(tmp_path / "exists.tif")],
        "vector format": [str(good), "-o", str(tmp_path / "o5.tif"), "--vector", str(tmp_path / "v.shp")],
    }
    for needle, args in cases.items():
        code, _, err = run(["segment", *args, "-q"], capsys)
        assert needle in _one_line_error(code, err), (needle, err)
    assert not list(tmp_path.glob("o*.tif"))  # nothing half-written


def test_channel_mismatch_and_no_georef_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(in_chans=2), tile=64))
    src = write_tif(tmp_path / "g.tif", blob_scene(64, 64))
    code, _, err = run(["segment", str(src), "-o", str(tmp_path / "o.tif"), "-q"], capsys)
    assert "takes 2" in _one_line_error(code, err)
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(), tile=64))
    plain = write_tif(tmp_path / "plain.tif", blob_scene(64, 64), crs=None)
    code, out, err = run(["segment", str(plain), "-o", str(tmp_path / "p.tif"), "-q"], capsys)
    assert code == 0 and "warning: " in err and "georeference" in err
    assert (tmp_path / "p.tif").exists()


def test_demo_with_fake_model(tmp_path: Path, fake_model, capsys) -> None:
    pytest.importorskip("dakd_edge.data.synthetic")
    d = tmp_path / "demo"
    code, out, err = run(["demo", "-o", str(d), "--size", "256", "-q"], capsys)
    assert code == 0, err
    for name in ("scene.tif", "classes.tif", "probs.tif", "spills.geojson", "quicklook.png", "report.json"):
        assert (d / name).is_file() and name in out
    r = json.loads((d / "report.json").read_text())
    assert r["width"] == 256 and "miou" in r["vs_synthetic_truth"]
    assert r["outputs"]["report"] == str(d / "report.json")  # the file lists itself, as segment's does
    truth = r["vs_synthetic_truth"]  # spills as `evaluate --scene` counts them (oil = class 1 of 5)
    assert 0 <= truth["slicks_detected"] <= truth["slicks"] and 0 <= truth["false_alarms"] <= r["spills"]
    code, _, err = run(["demo", "-o", str(d), "--size", "256", "-q"], capsys)
    assert "--overwrite" in _one_line_error(code, err)
    # --json: stdout is the report alone (it was the JSON and then a file list: no jq)
    code, out, err = run(["demo", "-o", str(d), "--size", "256", "-q", "--overwrite", "--json"], capsys)
    assert code == 0 and json.loads(out)["outputs"]["labels"] == str(d / "scene_labels.tif"), err


def test_demo_failing_midway_leaves_no_half_demo(
    tmp_path: Path, fake_model, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A disk filling at the quicklook left scene, maps and polygons behind, and the retry stopped at
    "output exists: scene.tif (pass --overwrite ...)"; the files of an earlier demo stay as they were."""
    import errno

    from dakd_edge.inference import quicklook

    pytest.importorskip("dakd_edge.data.synthetic")
    d = tmp_path / "demo"
    d.mkdir()
    (d / "notes.txt").write_text("mine")

    def full(scene, classes, out, *a, **kw):
        Path(out).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    real = quicklook.quicklook
    monkeypatch.setattr(quicklook, "quicklook", full)
    code, _, err = run(["demo", "-o", str(d), "--size", "256", "-q"], capsys)
    assert "no space left on" in _one_line_error(code, err) and "quicklook.png" in err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    code, _, err = run(["demo", "-o", str(tmp_path / "new" / "a" / "b"), "--size", "256", "-q"], capsys)
    assert code == 2 and not (tmp_path / "new").exists(), "the folders the demo made are removed too"
    monkeypatch.setattr(quicklook, "quicklook", real)  # space again: the retry needs no --overwrite
    code, _, err = run(["demo", "-o", str(d), "--size", "256", "-q"], capsys)
    assert code == 0, err


def test_demo_refused_up_front_when_the_disk_is_too_small(tmp_path: Path, fake_model, capsys) -> None:
    from tests.fs import tmpfs

    pytest.importorskip("dakd_edge.data.synthetic")
    with tmpfs(tmp_path / "disk", "256k") as disk:
        code, _, err = run(["demo", "-o", str(disk / "demo"), "--size", "512", "-q"], capsys)
        line = _one_line_error(code, err)
        assert f"no space left on {disk} for the demo in {disk / 'demo'}: needs about" in line
        assert list(disk.iterdir()) == []


def test_segment_help_subprocess() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "dakd_edge", "segment", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "--vector" in r.stdout and "--input-scale" in r.stdout


def _real_model_available() -> bool:
    try:
        from dakd_edge.inference import load

        load(None, backend="auto", device="cpu")
    except Exception:
        return False
    return True


@pytest.mark.slow
def test_segment_real_bundled_model_subprocess(tmp_path: Path) -> None:
    """End to end with the real bundled model through the console script (when it is installed)."""
    if not _real_model_available():
        pytest.skip("no bundled model / backends yet (dakd_edge.inference.load(None) failed)")
    src = write_tif(tmp_path / "s.tif", blob_scene(256, 256))
    r = subprocess.run(
        [
            "dakd-edge",
            "segment",
            str(src),
            "-o",
            str(tmp_path / "c.tif"),
            "--report",
            str(tmp_path / "r.json"),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["width"] == 256


def test_dark_uint8_scene_warns_about_input_domain(tmp_path: Path, fake_model, capsys) -> None:
    """An uncalibrated 8-bit scene with every value below 25: one warning naming --input-scale."""
    dark = (np.random.default_rng(0).random((96, 96)) * 24).astype(np.uint8)
    src = write_tif(tmp_path / "dark.tif", dark)
    code, _, err = run(
        ["segment", str(src), "-o", str(tmp_path / "c.tif"), "--report", str(tmp_path / "r.json"), "-q"],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1 and "training domain" in lines[0] and "--input-scale" in lines[0]
    assert "--input-scale" in json.loads((tmp_path / "r.json").read_text())["input_domain_warning"]
    code, _, err = run(
        [
            "segment",
            str(write_tif(tmp_path / "ok.tif", blob_scene(96, 96))),
            "-o",
            str(tmp_path / "d.tif"),
            "-q",
        ],
        capsys,
    )
    assert code == 0 and "training domain" not in err


def test_summary_line_counts_nodata_and_land_tiles_apart() -> None:
    r = {"scene": "s.tif", "width": 512, "height": 256, "tiles": {"run": 3, "total": 8, "skipped_nodata": 2,
         "skipped_land": 3}, "time_s": 1.0, "mpix_per_s": 0.13, "spills": 1, "oil_area_m2": 5e5,
         "oil_pixels": 50, "outputs": {"out": "c.tif"}}  # fmt: skip
    assert "3/8 tiles (2 nodata, 3 land skipped)" in seg_cli._summary(r)


def test_summary_line_says_rows_and_cols_as_info_does() -> None:
    """The size was "512x256" (width x height) while ``synth --size`` takes HxW and ``info`` says
    "256 rows x 512 cols": a 256-row, 512-column scene now reads as ``info`` says it."""
    r = {"scene": "s.tif", "width": 512, "height": 256, "tiles": {"run": 3, "total": 8, "skipped_nodata": 2,
         "skipped_land": 3}, "time_s": 1.0, "mpix_per_s": 0.13, "spills": 1, "oil_area_m2": 5e5,
         "oil_pixels": 50, "outputs": {"out": "c.tif"}}  # fmt: skip
    assert seg_cli._summary(r).startswith("s.tif: 256 rows x 512 cols, 3/8 tiles")
    r.update(all_nodata=True, land_mask={"tiles_skipped": 8})
    assert seg_cli._summary(r).startswith("s.tif: 256 rows x 512 cols, no valid pixels (all land")


@pytest.mark.parametrize("value", ["nan", "inf", "1e12", "-5"])
def test_batch_coast_buffer_is_checked_like_segment(tmp_path: Path, value: str, capsys) -> None:
    code, _, err = run(
        ["batch", str(tmp_path), "--out", str(tmp_path / "b"), "--coast-buffer", value], capsys
    )
    assert code == 2 and "coast-buffer" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", ["segment", "batch"])
def test_land_mask_and_no_land_mask_contradict(tmp_path: Path, command: str, capsys) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    extra = ["--out", str(tmp_path / "b")] if command == "batch" else ["-o", str(tmp_path / "c.tif")]
    code, _, err = run([command, str(src), *extra, "--land-mask", "globe", "--no-land-mask"], capsys)
    assert code == 2 and "contradict" in err and "Traceback" not in err
    assert not (tmp_path / "c.tif").exists() and not (tmp_path / "b").exists()


def test_a_failed_scene_says_what_ran_and_what_did_not(tmp_path: Path, fake_model, capsys) -> None:
    good = write_tif(tmp_path / "a.tif", blob_scene(64, 64))
    bad = tmp_path / "b.tif"
    bad.write_bytes(b"not a tiff")
    third = write_tif(tmp_path / "c.tif", blob_scene(64, 64))
    code, _, err = run(
        ["segment", str(good), str(bad), str(third), "-o", str(tmp_path / "{stem}_m.tif"), "-q"], capsys
    )
    assert code == 2 and "scene 2 of 3: 1 written before it, the rest not run" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "a_m.tif").exists() and not (tmp_path / "c_m.tif").exists()


def test_flatten_flags_reach_the_scene(tmp_path: Path, fake_model, capsys) -> None:
    """--flatten removes the trend (the summary says how much); without it nothing is flattened."""
    xx = np.arange(1024, dtype=np.float32)[None, :].repeat(1024, 0)
    src = write_tif(tmp_path / "db.tif", -14.0 + 6.0 * (512 - xx) / 512)  # 12 dB across range
    base = ["segment", str(src), "--tile", "256", "--overlap", "32", "-q", "--report", "-"]
    code, out, err = run(base + ["-o", str(tmp_path / "a.tif"), "--flatten"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["level_trend"]["across_columns_db"] == pytest.approx(-12.0, abs=0.3)
    assert "12.0 dB trend flattened" in err
    code, out, err = run(base + ["-o", str(tmp_path / "b.tif")], capsys)
    assert code == 0, err
    assert json.loads(out)["level_trend"] == {"applied": False, "reason": "off"}
    assert "trend flattened" not in err
    code, out, err = run(base + ["-o", str(tmp_path / "c.tif"), "--match-level"], capsys)
    assert code == 0, err
    t = json.loads(out)["level_trend"]
    assert t["across_columns_db"] == pytest.approx(-12.0, abs=0.3)  # implies the flattening
    assert t["level_shift_db"] == pytest.approx(0.435 * 40 - 35 + 14.0, abs=0.3)  # -14 dB sea -> 0.435
    assert "sea level moved -3.6 dB" in err


def test_segment_folder_around_one_product_segments_it(tmp_path: Path, fake_model, capsys) -> None:
    """The folder an unzip tool makes around a .SAFE: its product, outputs named by the product."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    wrap = tmp_path / "extracted"
    prod = build_synthetic_product(wrap, shape=(96, 160))
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(["segment", str(wrap), "-o", str(out), "--no-land-mask", "-q"], capsys)
    assert code == 0, err
    assert "using the Sentinel-1 product inside it" in err
    assert (out / f"{prod.path.name.removesuffix('.SAFE')}_classes.tif").is_file()


def test_segment_folder_with_a_product_and_its_zip_reads_the_safe(tmp_path: Path, fake_model, capsys) -> None:
    """README's quickstart layout (NAME.SAFE beside NAME.zip) was 'a folder holding 2 Sentinel-1
    products': they are one product; the unzipped one is read, with a note. Two products stay refused."""
    from dakd_edge.data.sentinel1 import build_synthetic_product, zip_product

    wrap = tmp_path / "products"
    prod = build_synthetic_product(wrap, shape=(96, 160))
    zip_product(prod.path, wrap / f"{prod.path.name.removesuffix('.SAFE')}.zip")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(["segment", str(wrap), "-o", str(out), "--no-land-mask", "-q"], capsys)
    assert code == 0, err
    assert f"{prod.path.name} and" in err and f"are one product; using {prod.path.name}" in err
    build_synthetic_product(wrap, shape=(96, 160), seed=7, start="2021-06-02T04:30:00")
    code, _, err = run(["segment", str(wrap), "-o", str(out), "--no-land-mask", "-q", "--overwrite"], capsys)
    assert code == 2 and "a folder holding 3 Sentinel-1 products" in err


def _fake_named(
    monkeypatch: pytest.MonkeyPatch, num_classes: int, names: tuple[str, ...] | None = None
) -> None:
    """Model loading replaced by the numpy fake with ``num_classes`` classes named ``names`` (default:
    ``ModelMeta.default_for``'s); its oil logits go to the class named oil."""
    from dakd_edge.meta import ModelMeta

    def load(model, backend, device, tile, overlap, batch, threads=None):
        b = FakeBackend(num_classes=num_classes, tile=128)
        if names is not None:
            b.meta = ModelMeta("fake", num_classes, class_names=names, palette=b.meta.palette, tile=128)
            if names.index("oil") == 0:  # the fake writes oil to class 1: swap the two
                real = b.predict
                b.predict = lambda x: real(x)[:, [1, 0, *range(2, num_classes)]]
        return Predictor(b, tile=tile, overlap=overlap, batch=batch)

    monkeypatch.setattr(seg_cli, "load_predictor", load)


def _demo_truth(tmp_path: Path, name: str, capsys, seed: int = 1) -> dict:
    d = tmp_path / name
    code, _, err = run(["demo", "-o", str(d), "--size", "256", "--seed", str(seed), "-q"], capsys)
    assert code == 0, err
    return json.loads((d / "report.json").read_text())["vs_synthetic_truth"]


def test_demo_compares_labels_by_class_name(tmp_path: Path, monkeypatch, capsys) -> None:
    """A binary model whose classes are ("oil", "background") predicts the same oil as one of
    ("background", "oil"): its agreement with the generator's labels is the same (by position it was
    0.012 against 0.694 mIoU at seed 0). A 3-class model with names that match no label class (class0..2) crashed
    (target ids outside [0, 3)); it is scored oil against the rest, which is the binary score."""
    pytest.importorskip("dakd_edge.data.synthetic")
    _fake_named(monkeypatch, 2)
    plain = _demo_truth(tmp_path, "plain", capsys)
    _fake_named(monkeypatch, 2, ("oil", "background"))
    swapped = _demo_truth(tmp_path, "swapped", capsys)
    assert plain["miou"] > 0.4
    assert swapped["miou"] == pytest.approx(plain["miou"], abs=1e-9)
    assert swapped["pixel_accuracy"] == pytest.approx(plain["pixel_accuracy"], abs=1e-9)
    assert plain["classes"] == ["background", "oil"] and swapped["classes"] == ["oil", "background"]
    assert (swapped["slicks_detected"], swapped["false_alarms"]) == (
        plain["slicks_detected"],
        plain["false_alarms"],
    )
    _fake_named(monkeypatch, 3)
    three = _demo_truth(tmp_path, "three", capsys)
    assert three["classes"] == ["rest", "oil"]
    assert three["miou"] == pytest.approx(plain["miou"], abs=1e-9)
    assert three["pixel_accuracy"] == pytest.approx(plain["pixel_accuracy"], abs=1e-9)


def _label_rasters(
    tmp_path: Path, labels: np.ndarray, pred: np.ndarray, names: str | None
) -> tuple[Path, Path]:
    lab, cls = tmp_path / "labels.tif", tmp_path / "classes.tif"
    write_tif(lab, labels.astype(np.uint8))
    write_tif(cls, pred.astype(np.uint8))
    if names is not None:
        with rasterio.open(lab, "r+") as ds:
            ds.update_tags(DAKD_CLASSES=names)
    return lab, cls


# OSD labels (0 sea, 1 oil, 2 look-alike, 3 ship, 4 land) of 16 pixels, 4 of them oil
OSD_LABELS = np.array([[0, 0, 1, 1, 2, 2, 3, 4], [0, 0, 1, 1, 2, 2, 4, 4]])


def test_label_agreement_maps_the_generator_classes_by_name(tmp_path: Path) -> None:
    """OSD labels against a 5-class model with the OSD names in another order: a prediction that is the
    labels under that order agrees on every pixel; by position it would agree on 4 of 16."""
    model = ("land", "sea", "oil", "ship", "look-alike")
    perm = np.array([1, 2, 4, 3, 0])  # OSD id -> the model's id of that name
    lab, cls = _label_rasters(tmp_path, OSD_LABELS, perm[OSD_LABELS], "sea,oil,look-alike,ship,land")
    r = seg_cli.label_agreement(lab, cls, model)
    assert r == {"miou": pytest.approx(1.0, abs=1e-12), "pixel_accuracy": pytest.approx(1.0, abs=1e-12),
                 "classes": list(model)}  # fmt: skip
    # binary labels (background, oil) and a model naming its background "sea"
    lab, cls = _label_rasters(tmp_path, OSD_LABELS == 1, 1 - (OSD_LABELS == 1), "background,oil")
    r = seg_cli.label_agreement(lab, cls, ("oil", "Sea"))
    assert r["classes"] == ["oil", "Sea"] and r["miou"] == pytest.approx(1.0, abs=1e-12)


def test_label_agreement_is_oil_against_the_rest_when_names_do_not_match(tmp_path: Path) -> None:
    """class0..class2 name nothing: oil is class 1 (the binary convention) and the rest is the rest.
    Predicted oil: 3 of the 4 oil pixels and 1 look-alike: oil IoU 3/5, rest IoU 11/13."""
    pred = np.array([[0, 0, 1, 1, 1, 0, 2, 2], [0, 0, 1, 0, 0, 0, 2, 2]])
    lab, cls = _label_rasters(tmp_path, OSD_LABELS, pred, "sea,oil,look-alike,ship,land")
    r = seg_cli.label_agreement(lab, cls, ("class0", "class1", "class2"))
    assert r["classes"] == ["rest", "oil"]
    assert r["miou"] == pytest.approx((3 / 5 + 11 / 13) / 2, abs=1e-4)
    assert r["pixel_accuracy"] == pytest.approx(14 / 16, abs=1e-4)
    # unlabelled (255) and prediction nodata (255) are left out
    labels = OSD_LABELS.copy()
    labels[0, 0] = 255
    pred[1, 0] = 255
    lab, cls = _label_rasters(tmp_path, labels, pred, None)  # no tag: OSD classes
    r = seg_cli.label_agreement(lab, cls, ("class0", "class1", "class2"))
    assert r["miou"] == pytest.approx((3 / 5 + 9 / 11) / 2, abs=1e-4)
    assert r["pixel_accuracy"] == pytest.approx(12 / 14, abs=1e-4)


def test_an_interrupted_run_of_several_scenes_says_how_many_were_written(
    tmp_path: Path, fake_model, monkeypatch, capsys
) -> None:
    """It said only "interrupted"; running the same command again then failed on the first scene's
    existing output without a hint of what had been done."""
    import signal

    from dakd_edge.cli import segment as cli_segment
    from dakd_edge.cli.signals import Interrupted

    scenes = [write_tif(tmp_path / f"{n}.tif", blob_scene(64, 64)) for n in "abc"]
    real = cli_segment._run_scene
    calls = [0]

    def second_interrupted(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise Interrupted(signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(cli_segment, "_run_scene", second_interrupted)
    code, _, err = run(["segment", *map(str, scenes), "-o", str(tmp_path / "{stem}_m.tif"), "-q"], capsys)
    assert code == 143
    assert err.strip().splitlines()[-2:] == [
        "dakd-edge: 1 of 3 scenes written before the interrupt",
        "dakd-edge: interrupted",
    ]


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "/dev//stdout"])
def test_segment_report_to_dev_stdout_is_stdout(name: str, tmp_path: Path, fake_model, capsys) -> None:
    """``--report /dev/stdout`` is ``--report -``: it was refused as a FIFO (a pipe), or as an existing
    output (a redirect to a file), since a device node must never be replaced."""
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96, seed=2))
    argv = ["segment", str(src), "-o", str(tmp_path / "c.tif"), "--tile", "64", "-q", "--report", name]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert json.loads(out)["width"] == 96  # stdout holds the JSON alone; the summary went to stderr
    assert "spill" in err


def test_stdout_alias_leaves_other_paths() -> None:
    from dakd_edge.cli.streams import stdout_alias

    assert stdout_alias(None, None, "/dev/stderr") == "/dev/stderr"  # type: ignore[arg-type]
    assert stdout_alias(None, None, "report.json") == "report.json"  # type: ignore[arg-type]
    assert stdout_alias(None, None, None) is None  # type: ignore[arg-type]
    assert stdout_alias(None, None, "/dev/stdout") == "-"  # type: ignore[arg-type]


def test_segment_threads_reach_the_model_load(tmp_path: Path, fake_model, capsys) -> None:
    """An edge box shared with other work needs a cap: segment, demo and evaluate had no --threads."""
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64, seed=2))
    code, _, err = run(["segment", str(src), "-o", str(tmp_path / "c.tif"), "-q", "--threads", "1"], capsys)
    assert code == 0, err
    assert fake_model[-1][-1] == 1
    code, _, err = run(["segment", str(src), "-o", str(tmp_path / "d.tif"), "-q", "--threads", "0"], capsys)
    assert code == 2 and "--threads" in err


def test_threads_set_the_runtimes_pools() -> None:
    """--threads is ONNX Runtime's intra-op pool and PyTorch's thread count."""
    pytest.importorskip("onnxruntime")
    from dakd_edge.inference.backends import open_backend
    from dakd_edge.weights import bundled_path

    be = open_backend(bundled_path("onnxruntime"), "onnxruntime", threads=1)
    assert be.session.get_session_options().intra_op_num_threads == 1
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        open_backend(bundled_path("torch"), "torch", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_report_given_alone_prints_the_report(tmp_path: Path, fake_model, capsys) -> None:
    """``--report`` at the end of the line is ``--report -`` (as ``--json`` alone is on every command)."""
    src = write_tif(tmp_path / "a.tif", blob_scene(64, 64))
    code, out, err = run(["segment", str(src), "-o", str(tmp_path / "c.tif"), "-q", "--report"], capsys)
    assert code == 0, err
    assert json.loads(out)["width"] == 64
