"""Scene-level scores: exact pixel and spill counts on hand-made class maps, truth as raster or polygons,
GCP class maps, and `dakd-edge evaluate --scene / --pred` end to end with a threshold model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin

from dakd_edge.errors import InputError
from dakd_edge.meta import OSD_CLASSES
from dakd_edge.scene_eval import score_scene
from tests.reliability.cli import run
from tests.train.tiny import save_threshold_model

H, W = 300, 400
PIXEL = 10.0
ORIGIN = (500000.0, 5000000.0)  # UTM 33N
PROFILE = dict(driver="GTiff", height=H, width=W, count=1, dtype="uint8", crs="EPSG:32633",
               transform=from_origin(*ORIGIN, PIXEL, PIXEL))  # fmt: skip

# truth slicks (rows, cols) and predicted regions, chosen so each case is counted by hand
SLICK_FOUND = (slice(10, 30), slice(10, 50))  # 800 px; the prediction below overlaps 480 of them
PRED_FOUND = (slice(12, 28), slice(20, 60))  # 640 px
SLICK_MISSED = (slice(100, 140), slice(100, 110))  # 400 px, nothing predicted there
FALSE_ALARM = (slice(200, 210), slice(300, 320))  # 200 px of predicted oil on clean sea
SPECK = (slice(250, 252), slice(0, 2))  # 4 px: under the default 5 px minimum, no spill
SLICK_LONG = (slice(150, 200), slice(200, 220))  # 1000 px, crossing block cuts
PRED_LONG = (slice(170, 230), slice(205, 215))  # 600 px, 300 of them on the slick
NODATA = (slice(0, 5), slice(390, 400))  # 50 px of prediction nodata (land)


def _maps() -> tuple[np.ndarray, np.ndarray]:
    pred = np.zeros((H, W), np.uint8)
    truth = np.zeros((H, W), np.uint8)
    for s in (SLICK_FOUND, SLICK_MISSED, SLICK_LONG):
        truth[s] = 1
    for s in (PRED_FOUND, FALSE_ALARM, SPECK, PRED_LONG):
        pred[s] = 1
    pred[NODATA] = 255
    return pred, truth


def _write(path, a: np.ndarray, names=("background", "oil"), **kw) -> str:
    """``a`` as a GeoTIFF on the test grid whose ``class_names`` tag is ``names`` (None: no tag)."""
    prof = {**PROFILE, **kw}
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(a, 1)
        if names is not None:
            ds.update_tags(class_names=json.dumps(list(names)))
    return str(path)


def _expected_oil_iou() -> float:
    tp = 480 + 300
    truth_px = 800 + 400 + 1000
    pred_px = 640 + 200 + 4 + 600
    return tp / (truth_px + pred_px - tp)


@pytest.mark.parametrize("block", [1024, 64, 7])
def test_exact_pixel_and_spill_counts(tmp_path, block):
    pred, truth = _maps()
    r = score_scene(_write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth), block=block)
    px, sp = r["pixels"], r["spills"]
    assert px["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)
    assert px["scored"] == H * W - 50  # prediction nodata left out
    assert px["oil_precision"] == pytest.approx(780 / 1444, abs=1e-12)
    assert px["oil_recall"] == pytest.approx(780 / 2200, abs=1e-12)
    # 3 truth slicks, 2 found; 3 predicted spills (the 4 px speck is none), 1 of them a false alarm
    assert (sp["truth"], sp["detected"], sp["predicted"], sp["false_alarms"]) == (3, 2, 3, 1)
    # areas on the ellipsoid, as segment measures them: a 10 m pixel on UTM's central meridian
    # (the scene's left edge; it spans 4 km east of it) covers 100 / 0.9996^2 m^2
    px_km2 = PIXEL**2 / 0.9996**2 / 1e6
    assert sp["false_alarm_area_km2"] == pytest.approx(200 * px_km2, rel=1e-6)
    sea_km2 = (H * W - 50) * px_km2
    assert sp["sea_area_km2"] == pytest.approx(sea_km2, rel=1e-6)
    assert sp["false_alarms_per_10000_km2"] == pytest.approx(1 / sea_km2 * 1e4, abs=1e-3)


def test_wide_scenes_take_fewer_rows_per_block_with_the_same_scores(tmp_path, monkeypatch):
    """The pixel passes hold at most BLOCK_PIXELS pixels per block (a 1024-row block of a 25k-wide
    product peaked at 870 MB); scores, matches and the class under each false alarm do not change."""
    import dakd_edge.scene_eval as se

    pred, truth = _maps()
    truth[FALSE_ALARM] = 2
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    whole = score_scene(p, t)
    rows = []
    real_classes = se._Rasters.classes

    def classes(self, r0, r1, c0, c1):
        rows.append(r1 - r0)
        return real_classes(self, r0, r1, c0, c1)

    monkeypatch.setattr(se, "BLOCK_PIXELS", 3 * W)
    monkeypatch.setattr(se._Rasters, "classes", classes)
    assert score_scene(p, t) == whole and whole["spills"]["false_alarms_on"] == {"2": 1}
    assert rows[: H // 3] == [3] * (H // 3)  # the pixel pass; tracing keeps its own blocks


def test_false_alarms_are_attributed_to_the_truth_class_under_them(tmp_path):
    """With OSD-style class truth (2 = look-alike) a false alarm on a look-alike says so, by the class
    name when the truth's tag names its classes, else by value."""
    pred, truth = _maps()
    p = _write(tmp_path / "p.tif", pred)
    assert score_scene(p, _write(tmp_path / "t.tif", truth, None))["spills"]["false_alarms_on"] == {"0": 1}
    on = score_scene(p, _write(tmp_path / "t1.tif", truth, OSD_CLASSES))["spills"]["false_alarms_on"]
    assert on == {"sea": 1}
    truth[FALSE_ALARM] = 2
    truth[200:202, 300:320] = 0  # a strip of sea under the spill: the majority still decides
    assert score_scene(p, _write(tmp_path / "t2.tif", truth, None))["spills"]["false_alarms_on"] == {"2": 1}
    r = score_scene(p, _write(tmp_path / "t3.tif", truth, OSD_CLASSES))
    assert r["spills"]["false_alarms_on"] == {"look-alike": 1}
    assert r["pixels"]["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)  # 2 is not oil


@pytest.mark.parametrize("block", [1024, 7])
def test_spills_on_truth_nodata_are_unscored_and_the_valid_truth_decides(tmp_path, block):
    """Truth nodata under a predicted spill (a negative int16 nodata, NaN) is no class: the majority
    of the valid truth pixels decides what the false alarm lies on (bincount of the raw values raised on
    negative and NaN values), and a spill wholly on nodata is no false alarm: nobody said what is there."""
    pred, truth = _maps()
    p = _write(tmp_path / "p.tif", pred)
    t16 = truth.astype(np.int16)
    t16[FALSE_ALARM] = -9999
    r = score_scene(p, _write(tmp_path / "t16.tif", t16, dtype="int16", nodata=-9999), block=block)
    sp = r["spills"]
    assert (sp["predicted"], sp["false_alarms"], sp["unscored_spills"], sp["false_alarms_on"]) == (
        2,
        0,
        1,
        {},
    )
    assert sp["false_alarm_area_km2"] == 0.0
    t16[204:210, 300:320] = 2  # 120 px of look-alike, 80 px of nodata: the valid pixels decide
    r = score_scene(p, _write(tmp_path / "t16b.tif", t16, dtype="int16", nodata=-9999), block=block)
    assert r["spills"]["false_alarms_on"] == {"2": 1} and r["spills"]["unscored_spills"] == 0
    tf = truth.astype(np.float32)
    tf[FALSE_ALARM] = np.nan
    r = score_scene(p, _write(tmp_path / "tf.tif", tf, dtype="float32"), block=block)
    assert r["spills"]["unscored_spills"] == 1 and r["spills"]["false_alarms"] == 0
    assert r["pixels"]["scored"] == H * W - 50 - 200  # NaN truth is not scored either


def test_min_area_leaves_small_regions_out_on_both_sides(tmp_path):
    pred, truth = _maps()
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    # 0.05 km^2 = 500 px at 10 m: drops the 400 px missed slick and the 200 px false alarm
    sp = score_scene(p, t, min_area=50000)["spills"]
    assert (sp["truth"], sp["detected"], sp["predicted"], sp["false_alarms"]) == (2, 2, 2, 0)
    sp = score_scene(p, t, min_area="1px")["spills"]  # the speck is a (false) spill now
    assert (sp["predicted"], sp["false_alarms"]) == (4, 2)


def test_truth_polygons_score_like_the_truth_raster(tmp_path):
    """A GeoJSON of the truth slicks (WGS84, as RFC 7946 has it) gives the raster's exact counts."""
    from pyproj import Transformer

    pred, truth = _maps()
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    feats = []
    for rows, cols in (SLICK_FOUND, SLICK_MISSED, SLICK_LONG):
        x0, x1 = ORIGIN[0] + cols.start * PIXEL, ORIGIN[0] + cols.stop * PIXEL
        y0, y1 = ORIGIN[1] - rows.start * PIXEL, ORIGIN[1] - rows.stop * PIXEL
        # densified edges: straight in UTM, so the ring follows the pixel edges within millimetres
        xs = np.r_[np.linspace(x0, x1, 50), np.full(50, x1), np.linspace(x1, x0, 50), np.full(50, x0)]
        ys = np.r_[np.full(50, y0), np.linspace(y0, y1, 50), np.full(50, y1), np.linspace(y1, y0, 50)]
        lon, lat = to_ll.transform(xs, ys)
        ring = [[a, b] for a, b in zip(lon, lat, strict=True)] + [[lon[0], lat[0]]]
        feats.append(
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        )
    gj = tmp_path / "truth.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    p = _write(tmp_path / "p.tif", pred)
    by_raster = score_scene(p, _write(tmp_path / "t.tif", truth))
    by_vector = score_scene(p, gj)
    assert by_vector["spills"] == {**by_raster["spills"], "false_alarms_on": None}  # no classes in polygons
    assert by_vector["pixels"]["matrix"] == by_raster["pixels"]["matrix"]


def test_gcp_class_map_and_0_255_truth(tmp_path):
    """A class map placed by GCPs (as segment writes Sentinel-1 products) scores; a 0/255 truth mask
    counts 255 as oil only when asked."""
    pred, truth = _maps()
    gcps = [GroundControlPoint(row=r, col=c, x=12.0 + c * 1.2e-4, y=45.0 - r * 0.9e-4)
            for r in (0, H / 2, H) for c in (0, W / 2, W)]  # fmt: skip
    prof = {k: v for k, v in PROFILE.items() if k not in ("crs", "transform")}
    p = tmp_path / "p.tif"
    with rasterio.open(p, "w", **prof) as ds:
        ds.write(pred, 1)
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    t = _write(tmp_path / "t.tif", truth * 255)
    r = score_scene(p, t, truth_oil=[255])
    assert r["pixels"]["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)
    assert r["spills"]["false_alarms"] == 1 and r["spills"]["sea_area_km2"] > 0
    with pytest.raises(InputError, match="--truth-oil 255"):  # read as oil = 1: 255 is unlabelled
        score_scene(p, t)
    r = score_scene(p, t, truth_oil=[1])  # said so: no truth oil, every spill a false alarm
    assert r["spills"]["truth"] == 0 and r["spills"]["false_alarms"] == 3


def test_truth_on_another_grid_is_refused(tmp_path):
    pred, truth = _maps()
    p = _write(tmp_path / "p.tif", pred)
    with pytest.raises(InputError, match="truth raster is 200 x 300 pixels"):
        score_scene(p, _write(tmp_path / "t.tif", truth[:, :200], width=200))
    shifted = _write(tmp_path / "s.tif", truth, transform=from_origin(ORIGIN[0] + 5, ORIGIN[1], PIXEL, PIXEL))
    with pytest.raises(InputError, match="not on the prediction's grid"):
        score_scene(p, shifted)
    with pytest.raises(InputError, match="truth file not found"):
        score_scene(p, tmp_path / "none.tif")


# ---- the CLI -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def threshold_model(tmp_path_factory):
    return save_threshold_model(tmp_path_factory.mktemp("m") / "thr.safetensors", tile=64)


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    return run(["evaluate", *argv], capsys)


def test_cli_scene_segments_and_scores(tmp_path, threshold_model, capsys):
    """The threshold model calls exactly the dark pixels oil: a scene dark where the prediction above
    has oil reproduces its counts through segment (tiles, stitching) and the scoring."""
    pred, truth = _maps()
    scene = np.where(pred == 1, 40, 200).astype(np.uint8)
    s = _write(tmp_path / "scene.tif", scene)
    t = _write(tmp_path / "truth.tif", truth)
    code, out, err = _cli(
        ["--model", str(threshold_model), "--scene", s, "--truth", t, "--json", "-"], capsys
    )
    assert code == 0, err
    r = json.loads(out)
    assert (r["spills"]["truth"], r["spills"]["detected"], r["spills"]["false_alarms"]) == (3, 2, 1)
    assert r["pixels"]["oil_iou"] == pytest.approx(780 / (2200 + 1444 - 780), abs=1e-12)  # no nodata here
    assert r["scene"] == s and "truth slicks detected" in err

    p = tmp_path / "p.tif"
    _write(p, pred)
    code, out, err = _cli(["--pred", str(p), "--truth", t, "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["pixels"]["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)

    # a refusal about the class map names the scene, not the temporary file it was written to
    small = _write(tmp_path / "small.tif", truth[:, :200], width=200)
    code, _, err = _cli(["--model", str(threshold_model), "--scene", s, "--truth", small], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("dakd-edge: error:")][0]
    assert code == 2 and "scene.tif's class map is 400 x 300" in line and "classes.tif" not in line, err


def test_cli_scene_in_a_folder_around_a_product_notes_it_in_one_line(tmp_path, threshold_model, capsys):
    """``evaluate --scene`` reads a folder an unzip tool made around a .SAFE as ``segment`` does: that
    product, its note one ``dakd-edge: warning:`` line (it came as a Python warning with source line)."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    wrap = tmp_path / "extracted"
    build_synthetic_product(wrap, shape=(96, 160))
    with rasterio.open(
        tmp_path / "t.tif", "w", driver="GTiff", height=96, width=160, count=1, dtype="uint8"
    ) as ds:
        ds.write(np.zeros((96, 160), np.uint8), 1)
    code, out, err = _cli(
        [
            "--model",
            str(threshold_model),
            "--scene",
            str(wrap),
            "--truth",
            str(tmp_path / "t.tif"),
            "--json",
            "-",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["spills"]["truth"] == 0
    notes = [line for line in err.splitlines() if "using the Sentinel-1 product inside it" in line]
    assert len(notes) == 1 and notes[0].startswith("dakd-edge: warning:"), err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--scene", "x.tif"], "--scene needs --truth"),
        (["--pred", "x.tif"], "--pred needs --truth"),
        (["--data", "d", "--truth", "t.tif"], "--truth goes with --scene or --pred, not with --data"),
        (["--pred", "x.tif", "--data", "d"], "give one of"),
        (["--pred", "x.tif", "--truth", "missing.tif"], "truth file not found"),
        (["--pred", "x.tif", "--truth", "t.tif", "--truth-oil", "oil"], "--truth-oil"),
        (["--pred", "x.tif", "--truth", "t.tif", "--min-area", "big"], "--min-area"),
    ],
)
def test_cli_bad_scene_options_are_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.tif").write_bytes(b"")
    code, _, err = _cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and needle in err and len(lines) <= 2, err


def test_unreadable_truth_polygons_are_named_as_truth(tmp_path):
    pred, _ = _maps()
    p = _write(tmp_path / "p.tif", pred)
    bad = tmp_path / "truth.geojson"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the truth GeoJSON"):
        score_scene(p, bad)


def test_a_sentinel1_scenes_own_polygons_score_exactly_on_its_gcp_grid(tmp_path):
    """Round trip through WGS84: the GeoJSON that segment writes for a Sentinel-1 product (GCPs),
    read back as truth onto its class map, covers exactly its oil pixels: writing polygons and placing
    truth polygons use one pixel convention (tests/inference/test_registration.py checks it is ESA's)."""
    from dakd_edge.data.sentinel1 import build_synthetic_product
    from dakd_edge.inference.predictor import Predictor
    from dakd_edge.inference.segment import segment_scene
    from tests.inference.fake import FakeBackend

    prod = build_synthetic_product(tmp_path / "s1", shape=(384, 512), seed=3)
    cls, gj = tmp_path / "c.tif", tmp_path / "v.geojson"
    pred = Predictor(FakeBackend(radius=2, tile=128), tile=128, overlap=16)
    segment_scene(pred, prod.path, cls, vector=gj, land_mask=None, min_area="0px")
    r = score_scene(cls, gj, min_area="0px")
    (tn, fp), (fn, tp) = r["pixels"]["matrix"]
    assert tp > 100 and fp == fn == 0, r["pixels"]["matrix"]
    sp = r["spills"]
    assert sp["truth"] == sp["detected"] == sp["predicted"] > 0 and sp["false_alarms"] == 0


# ---- misuse: every bad input is one InputError line, never a traceback or a silent wrong number -------
def _gj(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _fc(*geoms) -> dict:
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geoms]}  # fmt: skip


def _lonlat_box(rows: slice, cols: slice) -> list:
    from pyproj import Transformer

    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    xs = [ORIGIN[0] + c * PIXEL for c in (cols.start, cols.stop, cols.stop, cols.start, cols.start)]
    ys = [ORIGIN[1] - r * PIXEL for r in (rows.start, rows.start, rows.stop, rows.stop, rows.start)]
    return [list(p) for p in zip(*to_ll.transform(xs, ys), strict=True)]


@pytest.mark.parametrize(
    "content, needle",
    [
        ([1, 2], "cannot read the truth"),
        ("hello", "cannot read the truth"),
        ({"type": "Polygon", "coordinates": "abc"}, "cannot read the truth"),
        ({"type": "Polygon", "coordinates": [[[1, 2], [3, 4]]]}, "cannot read the truth"),
        ({**_fc(), "crs": "EPSG:32633"}, "cannot read the truth"),
        ({**_fc(), "crs": {"type": "name", "properties": {"name": "EPSG:99999"}}}, "EPSG:99999"),
    ],
)
def test_malformed_truth_geojson_is_one_line(tmp_path, content, needle):
    p = _write(tmp_path / "p.tif", _maps()[0])
    with pytest.raises(InputError, match=needle):
        score_scene(p, _gj(tmp_path / "t.geojson", content))


def test_truth_polygons_that_miss_the_scene_or_are_no_polygons_are_refused(tmp_path):
    """Slicks elsewhere (another scene, lat/lon swapped, UTM metres without a "crs" member) would
    score as "no oil here": refused; so are points or lines only, and coordinates that are no lon/lat.
    An empty FeatureCollection says "no slick in this scene" and scores."""
    p = _write(tmp_path / "p.tif", _maps()[0])
    ring = _lonlat_box(*SLICK_FOUND)
    assert (
        score_scene(p, _gj(tmp_path / "ok.geojson", _fc({"type": "Polygon", "coordinates": [ring]})))[
            "spills"
        ]["detected"]
        == 1
    )
    far = [[x + 10, y] for x, y in ring]
    swapped = [[y, x] for x, y in ring]
    utm = [[ORIGIN[0] + 100, ORIGIN[1] - 100], [ORIGIN[0] + 500, ORIGIN[1] - 100],
           [ORIGIN[0] + 500, ORIGIN[1] - 300], [ORIGIN[0] + 100, ORIGIN[1] - 100]]  # fmt: skip
    for name, coords, needle in (
        ("far", far, "none of the 1 truth polygons"),
        ("swapped", swapped, "none of the 1 truth polygons"),
        ("utm", utm, "not lon/lat"),
        ("nan", [[float("nan"), 1.0], *ring[1:]], "not lon/lat"),
    ):
        with pytest.raises(InputError, match=needle):
            score_scene(
                p, _gj(tmp_path / f"{name}.geojson", _fc({"type": "Polygon", "coordinates": [coords]}))
            )
    for name, g in (
        ("points", {"type": "Point", "coordinates": ring[0]}),
        ("lines", {"type": "LineString", "coordinates": ring}),
    ):
        with pytest.raises(InputError, match="no polygon"):
            score_scene(p, _gj(tmp_path / f"{name}.geojson", _fc(g)))
    r = score_scene(p, _gj(tmp_path / "empty.geojson", _fc()))
    assert r["spills"]["truth"] == 0 and r["spills"]["false_alarms"] == 3


def test_truth_rasters_that_are_no_class_mask_are_refused(tmp_path):
    pred, truth = _maps()
    p = _write(tmp_path / "p.tif", pred)
    with pytest.raises(InputError, match="--truth-oil 255"):  # a 0/255 mask read with oil = 1
        score_scene(p, _write(tmp_path / "m255.tif", truth * 255))
    # said explicitly, 255 is unlabelled and the scene has no oil (the earlier default)
    assert score_scene(p, _write(tmp_path / "m255b.tif", truth * 255), truth_oil=[1])["spills"]["truth"] == 0
    with pytest.raises(InputError, match="not whole numbers"):  # probabilities, not classes
        score_scene(p, _write(tmp_path / "prob.tif", truth.astype(np.float32) * 0.9, dtype="float32"))
    with pytest.raises(InputError, match="outside 0-255"):
        score_scene(p, _write(tmp_path / "u16.tif", truth.astype(np.uint16) * 300, dtype="uint16"))
    # 3 equal bands (SOS's 0/255 RGB masks) are one mask; bands that differ (OSD colours) are refused
    with rasterio.open(tmp_path / "rgb.tif", "w", **{**PROFILE, "count": 3}) as ds:
        ds.write(np.stack([truth * 255] * 3))
    r = score_scene(p, tmp_path / "rgb.tif", truth_oil=[255])
    assert r["pixels"]["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)
    with rasterio.open(tmp_path / "osd.tif", "w", **{**PROFILE, "count": 3}) as ds:
        ds.write(np.stack([truth * 0, truth * 255, truth * 255]))
    with pytest.raises(InputError, match="bands differ"):
        score_scene(p, tmp_path / "osd.tif")
    from PIL import Image

    Image.fromarray(truth).save(tmp_path / "t.jpg")
    with pytest.raises(InputError, match="JPEG"):
        score_scene(p, tmp_path / "t.jpg")
    bad = tmp_path / "trunc.tif"
    data = (tmp_path / "m255.tif").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.tif"):
        score_scene(p, bad, truth_oil=[255])


def test_predictions_that_are_no_class_map_are_refused(tmp_path):
    pred, truth = _maps()
    t = _write(tmp_path / "t.tif", truth)
    with pytest.raises(InputError, match="not a class map"):  # --probs output
        score_scene(_write(tmp_path / "prob.tif", pred.astype(np.float32) * 0.8, dtype="float32"), t)
    with rasterio.open(tmp_path / "rgb.tif", "w", **{**PROFILE, "count": 3}) as ds:
        ds.write(np.stack([pred] * 3))
    with pytest.raises(InputError, match=r"3 band\(s\)"):
        score_scene(tmp_path / "rgb.tif", t)
    scene = np.where(pred == 1, 40, 200).astype(np.uint8)  # the SAR scene itself, not its class map
    with pytest.raises(InputError, match="no class"):
        score_scene(_write(tmp_path / "scene.tif", scene), t)


def test_nothing_to_score_and_endless_min_area_are_refused(tmp_path):
    pred, truth = _maps()
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    with pytest.raises(InputError, match="nothing to score"):
        score_scene(p, _write(tmp_path / "nd.tif", np.full((H, W), 255, np.uint8)))
    with pytest.raises(InputError, match="nothing to score"):
        score_scene(_write(tmp_path / "pn.tif", np.full((H, W), 255, np.uint8)), t)
    with pytest.raises(InputError, match="--min-area"):
        score_scene(p, t, min_area="inf")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_truth_is_refused_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "t.tif")
    with pytest.raises(InputError, match="not a regular file"):
        score_scene(_write(tmp_path / "p.tif", _maps()[0]), tmp_path / "t.tif")


def test_cli_json_onto_an_input_and_options_that_do_nothing_are_refused(tmp_path, capsys):
    pred, truth = _maps()
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    before = (tmp_path / "t.tif").read_bytes()
    for target in (t, p):
        code, _, err = _cli(["--pred", p, "--truth", t, "--json", target, "--overwrite"], capsys)
        assert code == 2 and "refusing to overwrite an input" in err, err
    assert (tmp_path / "t.tif").read_bytes() == before
    for extra, needle in ((["--tile", "64"], "--tile"), (["--model", "m.safetensors"], "--model")):
        code, _, err = _cli(["--pred", p, "--truth", t, *extra], capsys)
        assert code == 2 and needle in err and "--scene" in err, err
    code, _, err = _cli(["--scene", p, "--truth", t, "--save-png", str(tmp_path / "png")], capsys)
    assert code == 2 and "--save-png" in err, err


def test_undefined_pixel_scores_are_none_so_the_result_is_json(tmp_path):
    """Clean sea in truth and prediction: oil IoU / precision / recall are undefined. They were NaN in
    the library's result (json.dumps wrote NaN, which is no JSON); they are None, as the CLI writes."""
    import json

    clean = np.zeros((H, W), np.uint8)
    r = score_scene(_write(tmp_path / "p.tif", clean), _write(tmp_path / "t.tif", clean))
    px = r["pixels"]
    assert px["oil_recall"] is None and px["oil_precision"] is None and px["oil_iou"] is None
    assert px["background_iou"] == 1.0 and px["scored"] == H * W
    json.loads(json.dumps(r, allow_nan=False))


def test_class_ids_may_be_one_int(tmp_path):
    """``oil_ids=1`` / ``truth_oil=1`` raised "'int' object is not iterable" (library audit)."""
    pred, truth = _maps()
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    assert score_scene(p, t, oil_ids=1, truth_oil=1) == score_scene(p, t, oil_ids=[1], truth_oil=[1])


# A 5-class (OSD) model's class map with land: the model calls columns 350-400 land (class 4), the truth
# (OSD labels, land = 4) columns 340-400; a 60 px spill predicted on the truth's land at columns 342-348.
LAND_PRED = (slice(None), slice(350, 400))
LAND_TRUTH = (slice(None), slice(340, 400))
SPILL_ON_LAND = (slice(100, 110), slice(342, 348))
LAND_PX = 300 * 60 - 50  # truth or predicted land, less the 50 px of prediction nodata in it


def _osd_maps(tmp_path, truth_tag: str | None = "DAKD_CLASSES") -> tuple[str, str]:
    """(5-class class map with a ``class_names`` tag, OSD truth named by ``truth_tag`` (None: untagged))."""
    pred, truth = _maps()
    pred[LAND_PRED] = 4
    pred[NODATA] = 255
    pred[SPILL_ON_LAND] = 1
    truth[LAND_TRUTH] = 4
    p = _write(tmp_path / "p5.tif", pred, OSD_CLASSES)
    t = _write(tmp_path / "t5.tif", truth, None)
    if truth_tag == "DAKD_CLASSES":  # as `synth --labels` writes it
        with rasterio.open(t, "r+") as ds:
            ds.update_tags(DAKD_CLASSES=",".join(OSD_CLASSES))
    elif truth_tag == "class_names":  # as `segment` tags a class map
        _write(t, truth, OSD_CLASSES)
    return p, t


@pytest.mark.parametrize("truth_tag, ignore", [("DAKD_CLASSES", None), ("class_names", None), (None, [4])])
def test_land_of_the_model_and_of_the_truth_is_no_sea(tmp_path, truth_tag, ignore):
    """Land is left out of the pixel scores and of the sea area whether the model predicts its class
    named land or the truth names (or ``truth_ignore`` gives) its land value; a spill wholly on truth
    land is no false alarm. The false alarm per 10,000 km^2 of sea came out 15 % too low (land counted as
    sea: 119,950 px instead of 102,000)."""
    p, t = _osd_maps(tmp_path, truth_tag)
    r = score_scene(p, t, truth_ignore=ignore)
    px, sp = r["pixels"], r["spills"]
    assert px["scored"] == H * W - 50 - LAND_PX == 102_000
    assert px["oil_iou"] == pytest.approx(_expected_oil_iou(), abs=1e-12)  # land pixels hold no oil
    assert (sp["truth"], sp["detected"], sp["predicted"], sp["false_alarms"]) == (3, 2, 3, 1)
    assert sp["unscored_spills"] == 1  # the spill on truth land
    px_km2 = PIXEL**2 / 0.9996**2 / 1e6
    assert sp["sea_area_km2"] == pytest.approx(102_000 * px_km2, rel=1e-6)
    assert sp["false_alarms_per_10000_km2"] == pytest.approx(1e4 / (102_000 * px_km2), abs=1e-3)
    named = truth_tag is not None
    assert sp["false_alarms_on"] == ({"sea": 1} if named else {"0": 1})
    assert r["left_out"] == {
        "land_pixels": LAND_PX,
        "nodata_pixels": 50,
        "pred_land_classes": ["land"],
        "truth_land_classes": ["land" if named else "4"],
    }


def test_untagged_truth_land_is_sea_unless_ignored(tmp_path):
    """A truth raster that names no classes: only the model's land is left out (its value 4 could be
    anything), and the spill on it is a false alarm on "4"; --truth-ignore 4 says what it is."""
    p, t = _osd_maps(tmp_path, None)
    r = score_scene(p, t)
    assert r["pixels"]["scored"] == H * W - 50 - (300 * 50 - 50) == 105_000
    assert r["spills"]["false_alarms_on"] == {"0": 1, "4": 1} and r["spills"]["unscored_spills"] == 0
    assert r["left_out"]["truth_land_classes"] == [] and r["left_out"]["pred_land_classes"] == ["land"]


def test_truth_names_give_its_oil_value(tmp_path):
    """A truth whose tag names oil 0 ("oil", "background") is read with oil = 0, not the default 1."""
    pred, truth = _maps()
    p = _write(tmp_path / "p.tif", pred)
    t = _write(tmp_path / "t.tif", (1 - truth).astype(np.uint8), ("oil", "background"))
    assert score_scene(p, t)["pixels"]["oil_iou"] == pytest.approx(
        score_scene(p, _write(tmp_path / "t1.tif", truth))["pixels"]["oil_iou"], abs=1e-12
    )


def test_caption_and_table_name_the_land_and_the_classes(tmp_path):
    from rich.console import Console

    from dakd_edge.scene_eval import render_scene

    p, t = _osd_maps(tmp_path)
    console = Console(width=300, record=True)
    console.print(render_scene(score_scene(p, t)))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "102000 pixels of sea scored; left out: 50 nodata or land-masked, 17950 land" in text
    assert "(predicted 'land', truth 'land')" in text
    assert "false alarms by truth class" in text and "1 on sea" in text


def test_truth_ignore_refusals(tmp_path, capsys):
    pred, truth = _maps()
    p, t = _write(tmp_path / "p.tif", pred), _write(tmp_path / "t.tif", truth)
    with pytest.raises(InputError, match="both oil"):
        score_scene(p, t, truth_oil=[1], truth_ignore=[1])
    poly = tmp_path / "t.geojson"
    poly.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="truth_ignore"):
        score_scene(p, poly, truth_ignore=[4])
    code, _, err = _cli(["--pred", p, "--truth", t, "--truth-ignore", "land"], capsys)
    assert code == 2 and "--truth-ignore 'land': expected pixel values 0-255" in err
    code, _, err = _cli(["--pred", p, "--truth", t, "--truth-oil", "1", "--truth-ignore", "1,4"], capsys)
    assert code == 2 and "--truth-oil and --truth-ignore both name 1" in err


def test_cli_truth_ignore_leaves_untagged_land_out(tmp_path, capsys):
    p, t = _osd_maps(tmp_path, None)
    code, out, err = _cli(["--pred", p, "--truth", t, "--truth-ignore", "4", "--json", "-"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["pixels"]["scored"] == 102_000 and r["left_out"]["truth_land_classes"] == ["4"]


def test_truth_oil_the_model_calls_land_is_a_miss(tmp_path):
    """A model calling a truth slick land had those pixels left out with the land: oil recall came out
    undefined instead of 0. They are scored as misses; the model's other land stays out."""
    pred = np.zeros((H, W), np.uint8)
    truth = np.zeros((H, W), np.uint8)
    pred[:, 300:] = 4  # land, over the truth slick below
    truth[SLICK_FOUND[0], 310:350] = 1  # 800 px of oil under predicted land
    p = _write(tmp_path / "p.tif", pred, OSD_CLASSES)
    t = _write(tmp_path / "t.tif", truth)
    r = score_scene(p, t)
    assert r["pixels"]["oil_recall"] == 0.0 and r["pixels"]["oil_iou"] == 0.0
    assert r["pixels"]["scored"] == H * 300 + 800
    assert r["left_out"]["land_pixels"] == H * 100 - 800
