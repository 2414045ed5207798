"""`dakd-edge synth` and `dakd-edge info`, called the way a user calls them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest


def test_synth_then_info(tmp_path: Path, run_cli) -> None:
    rasterio = pytest.importorskip("rasterio")
    out, lab = tmp_path / "scene.tif", tmp_path / "scene_labels.tif"
    code, stdout, _ = run_cli(
        ["synth", str(out), "--size", "200x300", "--seed", "3", "--labels", str(lab), "-q"]
    )
    assert code == 0 and "wrote" in stdout
    with rasterio.open(out) as ds, rasterio.open(lab) as ls:
        assert (ds.height, ds.width, ds.count, ds.dtypes[0]) == (200, 300, 1, "uint8")
        assert ds.crs.is_projected and ds.transform.a == 10.0
        assert set(np.unique(ls.read(1))) <= {0, 1, 2, 3, 4}
    code, stdout, _ = run_cli(["info", str(out), "--json"])
    d = json.loads(stdout)
    assert code == 0 and d["width"] == 300 and d["height"] == 200 and d["count"] == 1
    assert d["crs"] == "EPSG:32634" and d["pixel_size"] == [10.0, 10.0] and d["nodata"] is None
    assert d["bands"][0]["scale"] == "uint8" and 0 <= d["bands"][0]["min"] <= d["bands"][0]["max"] <= 255
    code, stdout, _ = run_cli(["info", str(out)])
    assert code == 0 and "EPSG:32634" in stdout and "200 rows x 300 cols" in stdout


def test_synth_db_binary_and_overwrite(tmp_path: Path, run_cli) -> None:
    rasterio = pytest.importorskip("rasterio")
    out, lab = tmp_path / "db.tif", tmp_path / "lab.tif"
    args = ["synth", str(out), "--size", "64", "--dtype", "db", "--binary", "--labels", str(lab), "-q"]
    assert run_cli(args)[0] == 0
    with rasterio.open(out) as ds, rasterio.open(lab) as ls:
        assert ds.dtypes[0] == "float32" and ds.read(1).max() < 30
        assert set(np.unique(ls.read(1))) <= {0, 1}
    code, _, err = run_cli(args)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert run_cli([*args, "--overwrite"])[0] == 0


def test_info_samples_windows_of_a_large_raster(tmp_path: Path, run_cli) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    p = tmp_path / "big.tif"
    prof = dict(driver="GTiff", height=3000, width=3000, count=2, dtype="float32", crs="EPSG:32633",
                transform=Affine(20, 0, 0, 0, -20, 0), nodata=-9999.0, tiled=True, compress="deflate")  # fmt: skip
    with rasterio.open(p, "w", **prof) as ds:
        ds.write(np.full((2, 3000, 3000), -12.0, np.float32))
    code, stdout, _ = run_cli(["info", str(p), "--json"])
    d = json.loads(stdout)
    assert code == 0 and d["nodata"] == -9999.0 and d["count"] == 2
    assert d["sampled_fraction"] < 0.1 and d["bands"][1]["scale"] == "db" and d["bands"][0]["min"] == -12.0


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "directory"])
def test_info_bad_input_is_one_line_exit_2(tmp_path: Path, run_cli, kind: str) -> None:
    p = tmp_path / "scene.tif"
    if kind == "text":
        p.write_text("not a raster at all\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "directory":
        p.mkdir()
    code, _, err = run_cli(["info", str(p)])
    assert code == 2
    assert err.startswith("dakd-edge: error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "0x10"],
        ["--size", "abc"],
        ["--crs", "EPSG:4326"],
        ["--window", "100"],
        ["--crs", "nonsense"],
        ["--looks", "nan"],
        ["--looks", "inf"],
        ["--looks", "0"],
        ["--pixel-size", "nan"],
        ["--pixel-size", "inf"],
        ["--pixel-size", "-10"],
        ["--pixel-size", "1e7"],
        ["--seed", "-1"],
    ],
)
def test_synth_bad_options_exit_2(tmp_path: Path, run_cli, args: list[str]) -> None:
    code, _, err = run_cli(["synth", str(tmp_path / "x.tif"), "--size", "64", "-q", *args])
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    if args[0] in ("--looks", "--pixel-size", "--seed"):
        assert f"Invalid value for '{args[0]}'" in err
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize("names", [("x.png", None), ("x.tif", "labels.png")])
def test_synth_refuses_a_non_geotiff_name(tmp_path: Path, run_cli, names: tuple[str, str | None]) -> None:
    out, lab = names
    args = ["synth", str(tmp_path / out), "--size", "32", "-q"]
    if lab:
        args += ["--labels", str(tmp_path / lab)]
    code, _, err = run_cli(args)
    assert code == 2 and "use a .tif or .tiff name" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["--window", "100"], []])  # bad option; output exists
def test_synth_error_with_progress_bar_is_one_line(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "s.tif"
    out.write_bytes(b"")
    r = subprocess.run(
        ["dakd-edge", "synth", str(out), "--size", "32", *args], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.startswith("dakd-edge: error: ") and r.stderr.count("\n") == 1


def test_synth_missing_output_dir_exit_2(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["synth", str(tmp_path / "no" / "x.tif"), "--size", "32", "-q"])
    assert code == 2 and "does not exist" in err


def test_console_script_smoke(tmp_path: Path) -> None:
    out = tmp_path / "s.tif"
    r = subprocess.run(
        ["dakd-edge", "synth", str(out), "--size", "48x40", "--seed", "1"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["dakd-edge", "info", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "48 rows x 40 cols" in r.stdout
    r = subprocess.run(["dakd-edge", "info", str(tmp_path / "nope.tif")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such file" in r.stderr


def test_info_plain_image_is_not_georeferenced(tmp_path: Path, run_cli) -> None:
    from PIL import Image

    p = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(p)
    code, stdout, err = run_cli(["info", str(p)])
    assert code == 0 and "not georeferenced" in stdout and "min 7" in stdout
    assert "Warning" not in err


def _main(argv: list[str]) -> int:
    """``dakd-edge *argv`` in-process; stderr is read with ``capfd``: libtiff prints to the C stderr."""
    from dakd_edge.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0)


def test_synth_on_a_disk_filling_mid_write_prints_one_line(tmp_path: Path, capfd) -> None:
    """libtiff printed "_tiffWriteProc: No space left on device." and six "_tiffSeekProc: ..." lines
    above our own."""
    pytest.importorskip("rasterio")
    from tests.fs import fill, leftovers, tmpfs

    with tmpfs(tmp_path / "disk", "256k") as disk:
        fill(disk, leave=100_000)  # 400 x 400 passes the 80 kB estimate, writes ~130 kB
        code = _main(["synth", str(disk / "s.tif"), "--size", "400", "--labels", str(disk / "l.tif"), "-q"])
        err = capfd.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"dakd-edge: error: no space left on {disk} (writing {disk}/"), err
        assert leftovers(disk) == ["hog.bin"]


def test_synth_fails_when_only_libtiff_saw_the_disk_fill(tmp_path: Path, capfd, monkeypatch) -> None:
    """The disk filling after the last window: GDAL flushes the tiles when the file closes, and its
    close does not fail, so synth said "wrote s.tif" over a 4 kB file GDAL cannot open; libtiff's
    "_tiffWriteProc: No space left on device." on stderr was the only sign."""
    pytest.importorskip("rasterio")
    from dakd_edge.data.synthetic import SceneLayout
    from tests.fs import fill, leftovers, tmpfs

    windows = SceneLayout.windows
    with tmpfs(tmp_path / "disk", "1m") as disk:

        def then_full(self, *a, **k):
            yield from windows(self, *a, **k)
            fill(disk)

        monkeypatch.setattr(SceneLayout, "windows", then_full)
        code = _main(["synth", str(disk / "s.tif"), "--size", "256", "-q"])
        err = capfd.readouterr().err
        assert code == 2, err
        assert err == f"dakd-edge: error: no space left on {disk} (writing {disk}/s.tif)\n"
        assert leftovers(disk) == ["hog.bin"]


@pytest.mark.parametrize(
    "args, line",
    [
        (["--window", "100"], "--window must be a positive multiple of 16 pixels, got 100"),
        (["--window", "0"], "--window must be a positive multiple of 16 pixels, got 0"),
        (["--size", "0"], "--size must be positive, got 0x0"),
        (["--size", "64x0"], "--size must be positive, got 64x0"),
        (["--size", "100000x100000"], "--size 100000x100000 is too large"),
        (["--size", "big"], "Invalid value for --size: 'big' is not a size"),
    ],
)
def test_synth_size_and_window_errors_name_the_option(
    tmp_path: Path, run_cli, args: list[str], line: str
) -> None:
    """They said "window must be ..." and "scene size must be ...", naming no option to fix."""
    code, out, err = run_cli(["synth", str(tmp_path / "x.tif"), "-q", *args])
    assert code == 2 and out == "" and err.startswith(f"dakd-edge: error: {line}"), err
    assert not (tmp_path / "x.tif").exists()


def test_synth_product_size_error_names_the_option(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["synth-product", str(tmp_path / "p"), "--size", "0"])
    assert code == 2 and err.startswith("dakd-edge: error: --size must be positive, got 0x0"), err
