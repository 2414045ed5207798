"""segment_scene on unusual GeoTIFFs: GCP areas, CRS without a transform, GDAL scale/offset, mask
bands, palettes, --min-area in m^2 without georeference, land tiles counted apart from nodata."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning

from dakd_edge.errors import InputError
from dakd_edge.inference.geotiff import NoGeoreferenceWarning
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene

from .fake import FakeBackend, blob_scene, write_tif


def _pred() -> Predictor:
    return Predictor(FakeBackend(num_classes=2), tile=64, overlap=16, batch=4)


def _classes(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(1)


def _gcp_tif(path: Path, img: np.ndarray) -> Path:
    h, w = img.shape
    gcps = [GroundControlPoint(0, 0, 12.0, 42.0), GroundControlPoint(0, w, 12.03, 42.0),
            GroundControlPoint(h, 0, 12.0, 41.98), GroundControlPoint(h, w, 12.03, 41.98)]  # fmt: skip
    prof = dict(driver="GTiff", height=h, width=w, count=1, dtype="uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof, gcps=gcps, crs="EPSG:4326") as ds:
            ds.write(img, 1)
    return path


@pytest.mark.parametrize("geocode", [False, True])
def test_gcp_scene_oil_area_is_the_polygons_area(tmp_path: Path, geocode: bool) -> None:
    """F7.1: the scene's oil area comes from the GCP geolocation, like its polygons (was 0)."""
    src = _gcp_tif(tmp_path / "gcp.tif", blob_scene(192, 256, seed=4))
    vec = tmp_path / "v.geojson"
    r = segment_scene(
        _pred(), src, tmp_path / "c.tif", vector=vec, land_mask=None, min_area="0px", geocode=geocode
    )
    polygons = sum(f["properties"]["area_m2"] for f in json.loads(vec.read_text())["features"])
    assert r["oil_pixels"] > 0 and polygons > 0
    assert r["oil_area_m2"] == pytest.approx(polygons, rel=1e-3)


def test_crs_without_transform_is_not_georeferenced(tmp_path: Path) -> None:
    """F7.2: a CRS with an identity transform places nothing: no CRS, no m^2, pixel polygons, a warning."""
    src = write_tif(
        tmp_path / "s.tif", blob_scene(128, 128, seed=2), crs="EPSG:32634", transform=Affine.identity()
    )
    with pytest.warns(NoGeoreferenceWarning):
        r = segment_scene(_pred(), src, tmp_path / "c.tif", vector=tmp_path / "v.geojson")
    assert r["crs"] is None and not r["georeferenced"] and r["oil_area_m2"] is None
    doc = json.loads((tmp_path / "v.geojson").read_text())
    assert "note" in doc and doc["features"][0]["properties"]["area_m2"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "c.tif") as ds:
            assert ds.crs is None


def test_min_area_in_m2_needs_georeference(tmp_path: Path) -> None:
    """F7.7: --min-area 2000 (m^2) on a scene without georeference is an error, not a silent no-op;
    the default pixel filter still applies there."""
    src = write_tif(tmp_path / "s.tif", blob_scene(128, 128, seed=2), crs=None)
    with pytest.warns(NoGeoreferenceWarning), pytest.raises(InputError, match="use --min-area Npx"):
        segment_scene(_pred(), src, tmp_path / "c.tif", min_area="2000")
    assert not (tmp_path / "c.tif").exists()
    with pytest.warns(NoGeoreferenceWarning):
        r = segment_scene(_pred(), src, tmp_path / "c.tif")
    assert r["min_area"] == {"m2": None, "pixels": 5}


def test_gdal_scale_offset_gives_physical_values(tmp_path: Path) -> None:
    """F7.8: int16 storing (dB + 35) x 100 with GDAL scale 0.01 / offset -35 segments like the float dB
    scene; its nodata (in stored units) stays nodata."""
    db = (-35.0 + blob_scene(128, 160, seed=5) / 255.0 * 40.0).astype(np.float32)
    db[:20] = np.nan
    ref = write_tif(tmp_path / "db.tif", db)
    stored = np.where(np.isnan(db), -32768, np.rint((db + 35.0) * 100.0)).astype(np.int16)
    src = write_tif(tmp_path / "i16.tif", stored, nodata=-32768)
    with rasterio.open(src, "r+") as ds:
        ds.scales, ds.offsets = (0.01,), (-35.0,)
    r = segment_scene(_pred(), src, tmp_path / "c.tif")
    segment_scene(_pred(), ref, tmp_path / "ref.tif")
    assert r["input_scale"] == "db"
    cls, want = _classes(tmp_path / "c.tif"), _classes(tmp_path / "ref.tif")
    assert (cls[:20] == 255).all() and (cls[20:] != 255).all()
    assert (cls == want).mean() > 0.999


def test_internal_mask_band_is_nodata(tmp_path: Path) -> None:
    """F7.9: pixels a per-dataset (internal) mask marks invalid are nodata, not classified."""
    src = write_tif(tmp_path / "m.tif", blob_scene(128, 128, seed=6))
    mask = np.full((128, 128), 255, np.uint8)
    mask[:40] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as ds:
        ds.write_mask(mask)
    r = segment_scene(_pred(), src, tmp_path / "c.tif")
    cls = _classes(tmp_path / "c.tif")
    assert r["input_scale"] == "uint8" and r["valid_fraction"] == pytest.approx(88 / 128)
    assert (cls[:40] == 255).all() and (cls[40:] != 255).all()


def test_palette_scene_is_refused(tmp_path: Path) -> None:
    """F7.10: colour-table indices are not SAR intensity: one clear error, no output."""
    src = write_tif(tmp_path / "pal.tif", blob_scene(64, 64), photometric="palette")
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    with pytest.raises(InputError, match="palette") as ei:
        segment_scene(_pred(), src, tmp_path / "c.tif")
    assert "\n" not in str(ei.value) and not (tmp_path / "c.tif").exists()


def test_land_tiles_are_not_counted_as_nodata(tmp_path: Path) -> None:
    """F7.11: tiles skipped for land are reported apart from tiles skipped for nodata."""
    img = blob_scene(192, 192, seed=8)
    img[:, 120:] = 0  # nodata on the right
    src = write_tif(tmp_path / "s.tif", img, nodata=0)
    land = np.zeros((192, 192), np.uint8)
    land[:, :70] = 1  # land on the left
    lm = write_tif(tmp_path / "land.tif", land)
    r = segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=lm, coast_buffer=0, polygons=False)
    t = r["tiles"]
    assert t["skipped_land"] == r["land_mask"]["tiles_skipped"] > 0 and t["skipped_nodata"] > 0
    assert t["run"] + t["skipped_nodata"] + t["skipped_land"] == t["total"]


def test_zip_that_is_no_product_says_why(tmp_path: Path) -> None:
    """GDAL calls any non-product zip 'not a supported format'; segment says damaged or not a product."""
    import zipfile

    from dakd_edge.inference.readers import open_scene

    tif = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    good = tmp_path / "tif.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.write(tif, "s.tif")
    with pytest.raises(InputError, match="the zip holds no Sentinel-1 product"):
        open_scene(good)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="damaged or truncated zip"):
        open_scene(cut)


def test_measurement_tiff_without_its_product_is_refused(tmp_path: Path) -> None:
    """A measurement TIFF copied out of its SAFE was read as a plain uint16 raster (with --input-scale
    its raw digital numbers ran uncalibrated); a calibrated GeoTIFF that kept the name still runs."""
    import shutil

    from dakd_edge.data.sentinel1 import build_synthetic_product
    from dakd_edge.inference.readers import open_scene

    prod = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1)
    tiff = next((prod.path / "measurement").glob("*-vv-*.tiff"))
    for name in (tiff.name, "iw-vv.tiff"):
        loose = tmp_path / "loose" / name
        loose.parent.mkdir(exist_ok=True)
        shutil.copy(tiff, loose)
        with pytest.raises(InputError, match="is a Sentinel-1 measurement outside its product folder"):
            open_scene(loose)
    open_scene(tiff).close()  # inside its product: read and calibrated as one
    (tmp_path / "cal").mkdir()
    calibrated = write_tif(tmp_path / "cal" / tiff.name, np.full((64, 96), -18.0, np.float32))
    open_scene(calibrated).close()


def test_a_stac_json_given_to_segment_points_to_batch(tmp_path: Path) -> None:
    from dakd_edge.inference.readers import open_scene

    item = tmp_path / "item.json"
    item.write_text('{"type": "Feature", "stac_version": "1.0.0", "id": "x", "assets": {}}')
    with pytest.raises(InputError, match="not a raster .*dakd-edge batch reads STAC"):
        open_scene(item)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_scene_is_refused_not_read_forever(tmp_path: Path) -> None:
    import subprocess
    import sys

    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    code = "import sys; from dakd_edge.inference.geotiff import SceneReader; SceneReader(sys.argv[1])"
    proc = subprocess.run(  # GDAL blocks on a FIFO with no writer: the timeout catches a hang
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert "InputError" in proc.stderr and "not a regular file" in proc.stderr, proc.stderr


def test_truncated_png_is_refused_not_read_as_dark_rows(tmp_path: Path) -> None:
    """GDAL reads the missing rows of a truncated PNG as zeros, with no error: dark rows called oil."""
    from PIL import Image

    from dakd_edge.inference.readers import open_scene

    whole = tmp_path / "chip.png"
    Image.fromarray(blob_scene(256, 256)).save(whole)
    open_scene(whole).close()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match="damaged or truncated PNG"):
        open_scene(cut)


def test_rpc_only_scene_keeps_its_rpcs_in_the_outputs(tmp_path: Path) -> None:
    """A scene placed by RPCs alone ran as unplaced and its outputs dropped them, so no GIS could put the
    class map on a map; the RPCs are now carried (areas stay in pixels: RPCs need a DEM)."""
    from rasterio.rpc import RPC

    rpc = RPC(height_off=0, height_scale=500, lat_off=42.0, lat_scale=0.05, line_den_coeff=[1] + [0] * 19,
              line_num_coeff=[0, 0, -1] + [0] * 17, line_off=48, line_scale=48, long_off=12.0, long_scale=0.05,
              samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=64, samp_scale=64)  # fmt: skip
    src = tmp_path / "rpc.tif"
    with rasterio.open(
        src, "w", driver="GTiff", width=128, height=96, count=1, dtype="uint8", rpcs=rpc
    ) as ds:
        ds.write(blob_scene(96, 128, seed=3), 1)
    with pytest.warns(NoGeoreferenceWarning, match="its RPCs are carried into the output rasters"):
        r = segment_scene(_pred(), src, tmp_path / "c.tif", probs=tmp_path / "p.tif", land_mask=None)
    assert r["oil_area_m2"] is None
    for out in ("c.tif", "p.tif"):
        with rasterio.open(tmp_path / out) as ds:
            assert ds.rpcs is not None and ds.rpcs.lat_off == pytest.approx(42.0)
            assert ds.rpcs.samp_scale == pytest.approx(64.0)


@pytest.mark.parametrize("kind", ["grid", "none"])
def test_geocode_of_a_scene_without_gcps_is_refused_before_any_tile(tmp_path: Path, kind: str) -> None:
    """--geocode on a scene without GCPs ran the whole scene, then failed saying it 'has a grid' (also
    for a scene with none)."""
    from tests.inference.fake import FakeBackend as Counting

    src = write_tif(
        tmp_path / "s.tif", blob_scene(96, 128, seed=3), crs="EPSG:32633" if kind == "grid" else None
    )
    backend = Counting(num_classes=2)
    pred = Predictor(backend, tile=64, overlap=16, batch=4)
    has = "a grid" if kind == "grid" else "no georeference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            InputError, match=f"--geocode applies to GCP-georeferenced scenes \\(this one has {has}\\)"
        ):
            segment_scene(pred, src, tmp_path / "c.tif", land_mask=None, geocode=True)
    assert backend.calls == []
