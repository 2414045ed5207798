"""Inputs no one planned for: one ``dakd-edge: error:`` line and exit 2 (or a clean success), never a
traceback, a hang, or a file under a final name.

Found by feeding every command a zoo of odd files: a scene in a local / engineering CRS (no way to
WGS84), a truncated or local-CRS ``--land-mask`` raster, and a FIFO inside a dataset folder.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rasterio.crs import CRS

from tests.inference.fake import blob_scene, write_tif
from tests.reliability.cli import one_error_line, run

LOCAL = CRS.from_wkt('LOCAL_CS["arbitrary",UNIT["metre",1]]')


def test_local_crs_scene_writes_geojson_in_its_own_coordinates(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """PROJ has no transformation from a LOCAL_CS / engineering CRS to WGS84: the GeoJSON writer raised
    ProjError (a traceback) after the whole scene had run. Its polygons now keep the scene's own
    coordinates, unwrapped, with a note, and the report says which CRS they are in."""
    scene = write_tif(tmp_path / "local.tif", blob_scene(128, 128, seed=1), crs=LOCAL)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        [
            "segment", str(scene), "-o", str(out / "c.tif"), "--vector", str(out / "v.geojson"),
            "--report", str(out / "r.json"), "--no-land-mask", "--min-area", "0px",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    doc = json.loads((out / "v.geojson").read_text())
    assert doc["features"], "the fake model finds the dark blobs"
    assert "arbitrary" in doc["note"]
    xs = [x for f in doc["features"] for x, _ in f["geometry"]["coordinates"][0]]
    assert 500000 <= min(xs) and max(xs) <= 500000 + 1280, "scene coordinates, not wrapped longitudes"
    report = json.loads((out / "r.json").read_text())
    assert report["output_crs"]["geojson"] != "EPSG:4326"
    assert "arbitrary" in report["output_crs"]["geojson"]


def test_local_crs_scene_with_a_land_mask_is_one_line(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_tif(tmp_path / "local.tif", blob_scene(64, 64), crs=LOCAL)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        ["segment", str(scene), "-o", str(out / "c.tif"), "--land-mask", "globe", "-q"], capsys
    )
    one_error_line(code, err, "'arbitrary'", "--no-land-mask")
    assert list(out.iterdir()) == []


def test_land_mask_raster_in_a_local_crs_is_one_line(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    mask = write_tif(tmp_path / "mask.tif", np.zeros((64, 64), np.uint8), crs=LOCAL)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        ["segment", str(scene), "-o", str(out / "c.tif"), "--land-mask", str(mask), "-q"], capsys
    )
    one_error_line(code, err, "mask.tif", "'arbitrary'")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[1, 2]", "not a GeoJSON object"),
        ('"x"', "not a GeoJSON object"),
        ('{"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4]]]}', "could not convert"),
        ('{"type": "Polygon", "coordinates": [[1, 2, 3]]}', "fewer than two coordinates"),
        ('{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:999999"}},'
         ' "features": []}', "unknown CRS"),
    ],
)  # fmt: skip
def test_malformed_land_mask_geojson_is_one_line(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    """A land-mask GeoJSON that parses as JSON but holds no readable polygons ended in a traceback
    (AttributeError, ValueError, IndexError, pyproj's CRSError)."""
    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    mask = tmp_path / "coast.geojson"
    mask.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        ["segment", str(scene), "-o", str(out / "c.tif"), "--land-mask", str(mask), "-q"], capsys
    )
    one_error_line(code, err, "coast.geojson", needle)
    assert list(out.iterdir()) == []


def test_truncated_land_mask_raster_names_the_mask_not_the_output(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A land-mask raster that opens but whose strips are cut off was reported as the *output* failing
    ("OUT/c.tif: cannot write (TIFFReadEncodedStrip ...)")."""
    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    full = write_tif(tmp_path / "full.tif", np.zeros((64, 64), np.uint8))
    data = full.read_bytes()
    mask = tmp_path / "mask.tif"
    mask.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        ["segment", str(scene), "-o", str(out / "c.tif"), "--land-mask", str(mask), "-q"], capsys
    )
    line = one_error_line(code, err, "mask.tif", "cannot read the land mask")
    assert "c.tif" not in line
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("where", ["images", "masks"])
def test_fifo_in_a_dataset_folder_is_refused_not_read_forever(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opening a FIFO blocks until a writer comes: `evaluate` (and `train`) on a folder holding one hung."""
    root = tmp_path / "ds"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")
    fifo = root / where / "a.png"
    fifo.unlink()
    os.mkfifo(fifo)
    # A reader blocked on the FIFO is released after 5 s (the test then fails instead of hanging).
    release = threading.Timer(5.0, lambda: open(fifo, "wb").close())
    release.start()
    try:
        code, _, err = run(["evaluate", "--data", str(root)], capsys)
    finally:
        release.cancel()
    one_error_line(code, err, str(fifo), "not a regular file")


@pytest.fixture()
def minimal_safe(tmp_path: Path) -> Path:
    from dakd_edge.data.sentinel1 import build_synthetic_product

    return build_synthetic_product(tmp_path / "src", shape=(64, 96), seed=1, pols=("VV",)).path


def _damage(safe: Path, kind: str) -> Path:
    cal = next((safe / "annotation" / "calibration").glob("calibration-*-vv-*.xml"))
    if kind == "empty":
        cal.write_text("")
    else:  # the first vector's line number becomes text
        text = cal.read_text()
        i = text.index("<line>") + len("<line>")
        cal.write_text(text[:i] + "abc" + text[text.index("</line>", i) :])
    return cal


@pytest.mark.parametrize("kind", ["empty", "non-numeric"])
def test_damaged_calibration_xml_is_one_line(
    minimal_safe: Path, kind: str, tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty calibration XML, or one whose <line> is not a number, gave a traceback from
    `synth-product --from` (ParseError / ValueError while cropping) and, for <line>, from segment
    and info too (float() of it)."""
    cal = _damage(minimal_safe, kind)
    code, _, err = run(["synth-product", str(tmp_path / "out"), "--from", str(minimal_safe), "--size", "32x48"],
                       capsys)  # fmt: skip
    one_error_line(code, err, cal.name)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    for argv in (["segment", str(minimal_safe), "-o", str(tmp_path / "c.tif"), "--no-land-mask", "-q"],
                 ["info", str(minimal_safe)]):  # fmt: skip
        code, _, err = run(argv, capsys)
        one_error_line(code, err, "calibration")


@pytest.mark.parametrize("north", [91.0, float("nan")])
def test_geographic_transform_beyond_the_pole_is_one_line(
    north: float, tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """EPSG:4326 pixels placed beyond 90 N (or a NaN in the transform) ran, and the report said
    "oil_area_m2": NaN, which strict JSON readers refuse: such a georeference is refused up front."""
    from rasterio.transform import Affine

    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64, seed=2), crs=CRS.from_epsg(4326),
                      transform=Affine(0.001, 0, 179.9, 0, -0.001, north))  # fmt: skip
    code, _, err = run(["segment", str(scene), "-o", str(tmp_path / "o.tif"), "--no-land-mask", "-q"], capsys)
    one_error_line(code, err, "s.tif", "beyond the pole" if north == 91.0 else "not finite")
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("command", ["segment", "batch"])
def test_land_mask_folder_is_named_a_directory(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--land-mask DIR`` said "no such file" of a folder that exists."""
    scene = write_tif(tmp_path / "s.tif", blob_scene(64, 64, seed=3))
    (tmp_path / "coast").mkdir()
    out = ["-o", str(tmp_path / "o.tif")] if command == "segment" else ["--out", str(tmp_path / "b")]
    code, _, err = run([command, str(scene), *out, "--land-mask", str(tmp_path / "coast")], capsys)
    one_error_line(code, err, "coast: a directory")
