"""segment_scene on GeoTIFFs: COG outputs keep georeference, streaming == in-memory, nodata, atomicity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dakd_edge.errors import InputError, OutputError
from dakd_edge.inference.geotiff import NoGeoreferenceWarning
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene

from .fake import FakeBackend, blob_scene, write_tif

H, W = 560, 600


@pytest.fixture()
def scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    img = blob_scene(H, W, seed=7)
    img[:, :100] = 0  # nodata border, wide enough for whole tiles to be skipped
    return write_tif(tmp_path / "scene.tif", img, nodata=0), img


def _pred(k: int = 5) -> Predictor:
    return Predictor(FakeBackend(num_classes=k), tile=64, overlap=16, batch=4)


@pytest.mark.parametrize("k", [3, 4])
def test_uint8_probabilities_of_3_or_4_classes_are_grey_bands(scene, tmp_path: Path, k: int) -> None:
    """GDAL tags 3 / 4 byte bands RGB / RGBA by default: the 4th class's probability was an alpha band
    (transparency in a GIS, dropped by readers that skip alpha)."""
    from rasterio.enums import ColorInterp

    src, _ = scene
    segment_scene(_pred(k), src, tmp_path / "c.tif", probs=tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.colorinterp[0] == ColorInterp.gray and ColorInterp.alpha not in p.colorinterp
        assert ColorInterp.red not in p.colorinterp
        assert p.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and p.count == k


def test_outputs_georeferenced_cog_with_colour_table(scene, tmp_path: Path) -> None:
    src, img = scene
    pred = _pred()
    r = segment_scene(pred, src, tmp_path / "c.tif", probs=tmp_path / "p.tif", vector=tmp_path / "v.gpkg")
    assert json.loads(json.dumps(r)) == r  # JSON-able
    with (
        rasterio.open(src) as s,
        rasterio.open(tmp_path / "c.tif") as c,
        rasterio.open(tmp_path / "p.tif") as p,
    ):
        for ds in (c, p):
            assert ds.crs == s.crs and ds.transform == s.transform
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.profile["tiled"] and ds.overviews(1)  # overviews for quick display
            assert ds.compression.name.lower() == "deflate"
        assert c.dtypes == ("uint8",) and c.nodata == 255 and p.count == 5
        cmap = c.colormap(1)
        for i, rgb in enumerate(pred.meta.palette):
            assert cmap[i][:3] == rgb
        assert json.loads(c.tags()["class_names"]) == list(pred.meta.class_names)
        cls = c.read(1)
        probs = p.read()
    # streaming over the file == in-memory prediction of the same array
    ref = pred.predict(img, nodata=0)
    np.testing.assert_array_equal(cls, ref)
    assert (cls[:, :100] == 255).all() and (probs[:, :, :100] == 255).all()
    assert abs(probs[:, cls != 255].astype(int).sum(0) - 250).max() <= 3  # x250, sums to ~1
    t = r["tiles"]
    assert t["skipped_nodata"] > 0 and t["run"] + t["skipped_nodata"] == t["total"]
    assert r["oil_pixels"] == int((ref == 1).sum()) > 0
    # 10 m UTM pixels on the central meridian: 100 / 0.9996^2 m^2 of the ellipsoid each
    assert r["oil_area_m2"] == pytest.approx(r["oil_pixels"] * 100.0 / 0.9996**2)
    assert r["spills"] >= 1 and r["crs"] == "EPSG:32633" and r["backend"] == "fake"
    assert r["valid_fraction"] == pytest.approx((W - 100) / W)
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".")]
    assert leftovers == []


def test_float16_probabilities_nodata_nan(scene, tmp_path: Path) -> None:
    src, img = scene
    pred = _pred(2)
    segment_scene(
        pred, src, tmp_path / "c.tif", probs=tmp_path / "p.tif", probs_dtype="float16", polygons=False
    )
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "16"
        a = p.read()
    assert np.isnan(a[:, :, :100]).all()
    ref = pred.predict_proba(img, nodata=0)
    np.testing.assert_allclose(a[:, :, 100:], ref[:, :, 100:], atol=2e-3)


def test_existing_output_refused_then_overwritten(scene, tmp_path: Path) -> None:
    src, _ = scene
    out = tmp_path / "c.tif"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="overwrite"):
        segment_scene(_pred(), src, out)
    assert out.read_bytes() == b"old"
    segment_scene(_pred(), src, out, overwrite=True)
    with rasterio.open(out) as ds:
        assert ds.width == W


def test_failure_midway_leaves_no_files(scene, tmp_path: Path) -> None:
    src, _ = scene

    class Crash(FakeBackend):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if len(self.calls) >= 3:
                raise RuntimeError("device lost")
            return super().predict(batch)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RuntimeError):
        segment_scene(
            Predictor(Crash(), tile=64, overlap=16), src, out_dir / "c.tif", probs=out_dir / "p.tif"
        )
    assert list(out_dir.iterdir()) == []


def test_bad_inputs_are_typed_errors(tmp_path: Path) -> None:
    pred = _pred()
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(InputError, match="cannot read"):
        segment_scene(pred, bad, tmp_path / "c.tif")
    with pytest.raises(InputError, match="no such file"):
        segment_scene(pred, tmp_path / "missing.tif", tmp_path / "c.tif")
    two = write_tif(tmp_path / "two.tif", np.stack([blob_scene(64, 64), blob_scene(64, 64, seed=5)]))
    with pytest.raises(InputError, match="different bands.*--band"):
        segment_scene(pred, two, tmp_path / "c.tif")
    with pytest.raises(InputError, match="band 3 does not exist"):
        segment_scene(pred, two, tmp_path / "c.tif", band=3)
    segment_scene(pred, two, tmp_path / "c.tif", band=2)
    with pytest.raises(InputError, match="takes 2"):
        segment_scene(
            Predictor(FakeBackend(in_chans=2)),
            write_tif(tmp_path / "one.tif", blob_scene(64, 64)),
            tmp_path / "d.tif",
        )
    with pytest.raises(OutputError, match="does not exist"):
        segment_scene(pred, two, tmp_path / "nodir" / "c.tif", band=1)
    with pytest.raises(OutputError, match="vector format"):
        segment_scene(pred, two, tmp_path / "f.tif", band=1, vector=tmp_path / "v.shp")


def test_a_bare_backend_is_refused_before_any_output(scene, tmp_path: Path) -> None:
    """segment_scene sits below the predictor (which calls it): it takes a Predictor, builds none."""
    with pytest.raises(TypeError, match="needs a Predictor, not FakeBackend"):
        segment_scene(FakeBackend(), scene[0], tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_dir(scene, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            segment_scene(_pred(), scene[0], ro / "c.tif")
    finally:
        ro.chmod(0o700)


def test_no_georeference_warns_and_writes_without_crs(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "plain.tif", blob_scene(100, 120), crs=None)
    with pytest.warns(NoGeoreferenceWarning):
        r = segment_scene(_pred(), src, tmp_path / "c.tif", vector=tmp_path / "v.geojson")
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.crs is None
    assert r["crs"] is None and r["oil_area_m2"] is None and not r["georeferenced"]
    doc = json.loads((tmp_path / "v.geojson").read_text())
    assert doc["features"] and doc["features"][0]["properties"]["area_m2"] is None


def test_float_db_scene_with_nan_autodetected(tmp_path: Path) -> None:
    img = blob_scene(120, 120, seed=3)
    lo, hi = -35.0, 5.0
    db = (lo + img / 255.0 * (hi - lo)).astype(np.float32)
    db[:30] = np.nan
    src = write_tif(tmp_path / "db.tif", db, transform=from_origin(500000, 6000000, 10, 10))
    r = segment_scene(_pred(), src, tmp_path / "c.tif")
    assert r["input_scale"] == "db"
    with rasterio.open(tmp_path / "c.tif") as ds:
        cls = ds.read(1)
    assert (cls[:30] == 255).all() and (cls[30:] != 255).all()


def test_scale_sample_is_windowed_on_large_scenes(tmp_path: Path) -> None:
    from dakd_edge.inference.geotiff import SceneReader

    db = np.full((700, 800), -20.0, np.float32)
    db[:, :400] = np.nan  # half the scene nodata: windows there contribute nothing
    src = write_tif(tmp_path / "db.tif", db)
    with SceneReader(src) as s:
        vals = s.valid_sample(grid=4, size=64)  # 4 x 4 windows of 64^2, not the whole scene
        assert 0 < vals.shape[1] <= 16 * 64 * 64 and np.isfinite(vals).all()
        allnan = write_tif(tmp_path / "n.tif", np.full((700, 800), np.nan, np.float32))
    with SceneReader(allnan) as s:
        assert s.valid_sample(grid=4, size=64).size == 0


def test_windows_that_are_all_land_are_not_read() -> None:
    """The tiler's reader skips reading and scaling a window the land mask covers whole (most windows
    of a coastal Sentinel-1 product): its tiles are skipped as land either way; other windows are read
    and get land made invalid, as before."""
    from dakd_edge.inference.report import Clock
    from dakd_edge.inference.segment import _Windows

    reads = []

    class Scene:
        def window(self, y0, y1, x0, x1):
            reads.append((y0, y1, x0, x1))
            return np.full((1, y1 - y0, x1 - x0), 7.0, np.float32)

    class LeftHalfLand:
        def mask(self, y0, y1, x0, x1):
            return np.broadcast_to(np.arange(x0, x1) < 50, (y1 - y0, x1 - x0)).copy()

    def convert(raw):
        return raw * 2.0, np.ones(raw.shape[1:], bool)

    reader = _Windows(Scene(), convert, LeftHalfLand(), Clock(), channels=2)
    x, ok, land = reader(0, 8, 0, 40)  # all land: not read
    assert reads == [] and x.shape == (2, 8, 40) and not ok.any() and land.all()
    x, ok, land = reader(0, 8, 40, 60)  # across the coast: read, land invalid
    assert reads == [(0, 8, 40, 60)] and (x == 14.0).all()
    assert ok.tolist() == (~land).tolist() and land[:, :10].all() and not land[:, 10:].any()
