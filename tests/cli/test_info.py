"""`dakd-edge info` on Sentinel-1 products (folder, zip, manifest, measurement TIFF) and GCP GeoTIFFs."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

REAL_NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
PRODUCT_KEYS = {"mission", "mode", "product_type", "polarisations", "start_time", "stop_time",
                "absolute_orbit", "pass_direction", "width", "height", "pixel_spacing", "footprint",
                "footprint_wkt", "bounds"}  # fmt: skip


def _info_json(path: Path, run_cli: Callable[[list[str]], tuple[int, str, str]]) -> dict:
    code, stdout, err = run_cli(["info", str(path), "--json"])
    assert code == 0, err
    return json.loads(stdout)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory):
    """A small generated IW GRDH dual-pol product (no ../shared/data needed) and its zip."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    return build_synthetic_product(tmp_path_factory.mktemp("s1"), shape=(96, 160), make_zip=True)


def _inputs(prod) -> dict[str, Path]:
    meas = sorted((prod.path / "measurement").glob("*-vv-*.tiff"))[0]
    return {"folder": prod.path, "zip": prod.zip_path, "manifest": prod.path / "manifest.safe",
            "measurement": meas}  # fmt: skip


@pytest.mark.parametrize("form", ["folder", "zip", "manifest", "measurement"])
def test_info_synthetic_product_json(product, form: str, run_cli) -> None:
    d = _info_json(_inputs(product)[form], run_cli)
    assert d["kind"] == "sentinel1" and PRODUCT_KEYS <= set(d)
    assert (d["mission"], d["mode"], d["product_type"], d["resolution"]) == ("S1A", "IW", "GRD", "H")
    assert d["polarisations"] == ["VV", "VH"] == d["polarisations_present"]
    assert (d["height"], d["width"]) == (96, 160) and d["absolute_orbit"] == 38000
    assert d["pixel_spacing"] == {"range": 10.0, "azimuth": 10.0}
    assert d["start_time"].startswith("2021-06-01T04:30:00") and d["stop_time"] > d["start_time"]
    assert d["pass_direction"] in ("ASCENDING", "DESCENDING")
    w, s, e, n = d["bounds"]
    assert 39.9 < s < 40.0 < n < 40.1 and 24.9 < w < 25.0 < e < 25.1  # around center=(40, 25)
    assert d["footprint"][0] == d["footprint"][-1] and d["footprint_wkt"].startswith("POLYGON ((")


def test_info_synthetic_product_text(product, run_cli) -> None:
    code, stdout, _ = run_cli(["info", str(product.zip_path)])
    assert code == 0
    for text in ("Sentinel-1 GRD product", "mission        S1A", "mode           IW", "GRDH",
                 "polarisations  VV+VH\n", "orbit          38000 (absolute)", "96 lines x 160 samples",
                 "10 m range x 10 m azimuth", "footprint      lat 39.", "(WGS84)"):  # fmt: skip
        assert text in stdout, text


def test_info_lists_the_polarisations_present(tmp_path: Path, run_cli) -> None:
    """A dual-pol product copied with its VV TIFF only: the name says VV+VH, the copy holds VV."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path, shape=(48, 64), pols=("VV",))
    d = _info_json(prod.path, run_cli)
    assert d["polarisations"] == ["VV", "VH"] and d["polarisations_present"] == ["VV"]
    assert "VV+VH (in this copy: VV)" in run_cli(["info", str(prod.path)])[1]


def test_info_antimeridian_bounds(tmp_path: Path, run_cli) -> None:
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path, shape=(48, 64), center=(-17.0, 179.999))
    w, _, e, _ = _info_json(prod.path, run_cli)["bounds"]
    assert w > 179.9 and e < -179.9  # west edge east of the east edge: crosses 180, not a 360-degree box


@pytest.mark.parametrize("kind", ["slc", "no-calibration", "not-safe-zip"])
def test_info_bad_product_is_one_line(product, tmp_path: Path, run_cli, kind: str) -> None:
    import shutil
    import zipfile

    if kind == "not-safe-zip":
        p = tmp_path / "x.zip"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "no product here")
    else:
        name = product.path.name.replace("_GRDH_", "_SLC__") if kind == "slc" else product.path.name
        p = tmp_path / name
        shutil.copytree(product.path, p)
        if kind == "no-calibration":
            for f in (p / "annotation" / "calibration").glob("calibration-*.xml"):
                f.unlink()
    code, _, err = run_cli(["info", str(p)])
    assert code == 2 and err.startswith("dakd-edge: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_info_gcp_geotiff_reports_gcps_not_identity(tmp_path: Path, run_cli) -> None:
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS
    from rasterio.errors import NotGeoreferencedWarning

    p = tmp_path / "gcps.tif"
    gcps = [GroundControlPoint(row=r, col=c, x=12.0 + c / 1000, y=41.0 - r / 1000)
            for r in (0, 50, 99) for c in (0, 60, 119)]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the GCPs are set right after opening
        ds = rasterio.open(p, "w", driver="GTiff", height=100, width=120, count=1, dtype="uint8")
    with ds:
        ds.write(np.full((1, 100, 120), 90, np.uint8))
        ds.gcps = (gcps, CRS.from_epsg(4326))
    d = _info_json(p, run_cli)
    assert d["georeference"] == "gcps" and d["transform"] is None and d["pixel_size"] is None
    assert d["gcps"]["count"] == 9 and d["gcps"]["crs"] == "EPSG:4326"
    assert d["gcps"]["extent"] == pytest.approx([12.0, 40.901, 12.119, 41.0])
    code, stdout, _ = run_cli(["info", str(p)])
    assert code == 0 and "9 GCPs, no geotransform" in stdout and "EPSG:4326" in stdout
    assert "transform  origin" not in stdout and "not georeferenced" not in stdout


def test_info_alos_dn_zero_is_said_as_nodata(tmp_path: Path, run_cli) -> None:
    """The text report says an ALOS ``IMG-`` file's DN 0 is nodata, and its valid share leaves it out."""
    import rasterio

    p = tmp_path / "IMG-HH-ALOS2011283150-140602-UBSL1.5GUA.tif"
    a = np.full((1, 40, 50), 3000, np.uint16)
    a[..., :10] = 0
    with rasterio.open(p, "w", driver="GTiff", height=40, width=50, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(0, 0, 10, 10)) as ds:  # fmt: skip
        ds.write(a)
    code, stdout, _ = run_cli(["info", str(p)])
    assert code == 0 and "valid 80.0% of the sample" in stdout and "DN 0 is nodata" in stdout


def test_info_real_product_metadata(shared_data: Path, run_cli) -> None:
    """The real S1B product near Rome: values from its manifest and annotation."""
    safe = shared_data / "s1" / REAL_NAME
    if not safe.is_dir():
        pytest.skip(f"no real Sentinel-1 product at {safe}")
    d = _info_json(safe / "manifest.safe", run_cli)
    assert (d["mission"], d["mode"], d["product_type"], d["resolution"]) == ("S1B", "IW", "GRD", "H")
    assert d["polarisations"] == ["VV", "VH"] and d["polarisations_present"] == ["VV"]
    assert d["absolute_orbit"] == 30148 and d["pass_direction"] == "DESCENDING"
    assert (d["width"], d["height"]) == (26102, 16705)
    assert d["pixel_spacing"]["range"] == pytest.approx(10, abs=0.5)
    assert d["pixel_spacing"]["azimuth"] == pytest.approx(10, abs=0.5)
    assert d["start_time"].startswith("2021-12-23T05:11:22") and d["stop_time"].startswith(
        "2021-12-23T05:11:47"
    )
    w, s, e, n = d["bounds"]
    assert s == pytest.approx(40.9, abs=0.1) and n == pytest.approx(42.8, abs=0.1)
    assert w == pytest.approx(11.9, abs=0.1) and e == pytest.approx(15.3, abs=0.1)
    code, stdout, _ = run_cli(["info", str(safe)])
    assert code == 0 and "VV+VH (in this copy: VV)" in stdout and "30148 (absolute), descending" in stdout
    assert "16705 lines x 26102 samples" in stdout and "lat 40.879 N..42.781 N" in stdout


@pytest.mark.parametrize("kind", ["not-product", "truncated"])
def test_info_zip_that_is_no_product_says_so(tmp_path: Path, run_cli, kind: str) -> None:
    import zipfile

    p = tmp_path / "S1A_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "no product here" * 100)
    if kind == "truncated":
        p.write_bytes(p.read_bytes()[:100])
    code, _, err = run_cli(["info", str(p)])
    want = "no Sentinel-1 product" if kind == "not-product" else "damaged or truncated zip"
    assert code == 2 and want in err and "cannot read as a raster" not in err, err


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_info_fifo_is_refused_not_read_forever(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    proc = subprocess.run(  # GDAL blocks on a FIFO with no writer: the timeout catches a hang
        [sys.executable, "-m", "dakd_edge", "info", str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr


def test_info_json_is_strict_json_with_nan_nodata(tmp_path: Path, run_cli) -> None:
    import rasterio

    p = tmp_path / "nan-nodata.tif"
    a = np.random.default_rng(0).random((1, 64, 64), dtype=np.float32)
    a[:, :5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
                           nodata=float("nan")) as ds:  # fmt: skip
            ds.write(a)
    code, out, err = run_cli(["info", str(p), "--json"])
    assert code == 0, err

    def refuse(c: str) -> None:
        raise ValueError(f"non-standard JSON constant {c}")

    d = json.loads(out, parse_constant=refuse)  # NaN / Infinity are not JSON
    assert d["nodata"] == "nan" and d["bands"][0]["valid_fraction"] > 0


def test_jsonout_maps_every_non_finite_number() -> None:
    from dakd_edge import jsonout

    doc = {"a": [1.0, float("nan")], "b": (float("inf"), {"c": -float("inf")}), "d": "nan"}
    assert json.loads(jsonout.dumps(doc)) == {"a": [1.0, None], "b": [None, {"c": None}], "d": "nan"}
    assert json.loads(jsonout.dumps(doc, str))["b"] == ["inf", {"c": "-inf"}]


def test_info_truncated_png_is_one_line(tmp_path: Path, run_cli) -> None:
    """info reported plausible statistics of a truncated PNG (GDAL reads its missing rows as zeros)."""
    import numpy as np
    from PIL import Image

    whole = tmp_path / "chip.png"
    Image.fromarray((np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8)).save(whole)
    assert run_cli(["info", str(whole)])[0] == 0
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    code, _, err = run_cli(["info", str(cut)])
    assert code == 2 and err.count("\n") == 1 and "damaged or truncated PNG" in err, err


def test_info_folder_around_one_product_reads_it(product, tmp_path: Path, run_cli) -> None:
    """Windows' "Extract All" (and ``unzip -d``) put the .SAFE inside a folder of the zip's name: that
    folder is read as its product, with a note; a folder of two products names `batch`."""
    import shutil

    wrap = tmp_path / "download (1)"
    wrap.mkdir()
    shutil.copytree(product.path, wrap / product.path.name)
    code, out, err = run_cli(["info", str(wrap), "--json"])
    assert code == 0, err
    assert json.loads(out)["kind"] == "sentinel1" and "using the Sentinel-1 product inside it" in err
    shutil.copy(product.zip_path, wrap / "other.zip")  # the same product zipped: still one product
    code, _, err = run_cli(["info", str(wrap), "--json"])
    assert code == 0 and "are one product; using" in err, err
    from dakd_edge.data.sentinel1 import build_synthetic_product

    build_synthetic_product(wrap, shape=(64, 96), seed=7, start="2021-06-02T04:30:00")  # another one
    code, _, err = run_cli(["info", str(wrap)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "3 Sentinel-1 products" in err and "dakd-edge batch" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["info", str(empty)])
    assert code == 2 and "2 Sentinel-1" not in err
