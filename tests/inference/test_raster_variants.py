"""segment on rasters as common tools write them: SNAP exports (band names, BEAM-DIMAP), alpha masks,
complex SLC data, GCPs in a projected CRS, GDAL virtual paths and gzip files, integer DNs."""

from __future__ import annotations

import gzip
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

from dakd_edge.errors import InputError, Notice
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.readers import open_scene
from dakd_edge.inference.segment import segment_scene

from .fake import FakeBackend, blob_scene, write_tif

H, W = 96, 128


def _pred() -> Predictor:
    return Predictor(FakeBackend(num_classes=2), tile=64, overlap=16, batch=4)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(1), {"crs": ds.crs, "transform": ds.transform, "gcps": ds.gcps}


def _linear(seed: int = 3) -> np.ndarray:
    """Linear sigma0 (float32) of a blob scene: sea ~ -11 dB, slicks ~ -28 dB."""
    db = -35.0 + blob_scene(H, W, seed=seed) / 255.0 * 40.0
    return (10.0 ** (db / 10.0)).astype(np.float32)


def test_snap_export_uses_its_named_co_pol_band(tmp_path: Path) -> None:
    """A SNAP GeoTIFF (Sigma0_VH, Sigma0_VV, incidence angle, mask) was refused ("4 different bands");
    the band its description names VV sigma0 is used, and the notice says which."""
    vv = _linear()
    stack = np.stack([vv * 0.2, vv, np.full_like(vv, 35.0), np.ones_like(vv)])
    src = write_tif(tmp_path / "snap.tif", stack)
    with rasterio.open(src, "r+") as ds:
        for i, name in enumerate(["Sigma0_VH", "Sigma0_VV", "incident_angle", "mask"], 1):
            ds.set_band_description(i, name)
    ref = write_tif(tmp_path / "vv.tif", vv)
    with pytest.warns(Notice, match=r"using band 2 \(Sigma0_VV\) of its 4 bands .*--band N"):
        r = segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=None, polygons=False)
    segment_scene(_pred(), ref, tmp_path / "ref.tif", land_mask=None, polygons=False)
    assert r["bands"] == [2] and r["input_scale"] == "linear"
    assert np.array_equal(_read(tmp_path / "c.tif")[0], _read(tmp_path / "ref.tif")[0])
    r1 = segment_scene(_pred(), src, tmp_path / "c1.tif", band=1, land_mask=None, polygons=False)
    assert r1["bands"] == [1]


def test_bands_without_a_co_pol_name_are_listed_in_the_error(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "two.tif", np.stack([_linear(1), _linear(2)]))
    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, "Sigma0_VH")
    with pytest.raises(InputError, match=r"2 different bands \(1 Sigma0_VH, 2\) .*--band N") as ei:
        open_scene(src)
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("rgba", [False, True])
def test_alpha_band_masks_instead_of_counting_as_a_band(tmp_path: Path, rgba: bool) -> None:
    """Grey + alpha (and grey stored as RGBA) was refused as "different bands"; the alpha band is
    GDAL's mask: its 0 rows are nodata in the outputs, the rest is classified."""
    img = blob_scene(H, W, seed=6)
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:20] = 0
    bands = [img, img, img, alpha] if rgba else [img, alpha]
    kw = {"photometric": "rgb", "alpha": "yes"} if rgba else {"ALPHA": "YES"}
    src = write_tif(tmp_path / "ga.tif", np.stack(bands), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)  # RGBA: "3 identical bands"
        r = segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=None, polygons=False)
    cls = _read(tmp_path / "c.tif")[0]
    assert r["bands"] == [1] and r["input_scale"] == "uint8"
    assert r["valid_fraction"] == pytest.approx(76 / 96, abs=1e-6)
    assert (cls[:20] == 255).all() and (cls[20:] != 255).all()
    with pytest.raises(InputError, match="alpha"):
        open_scene(src, band=len(bands))


def test_complex_int16_slc_is_refused_in_one_line(tmp_path: Path) -> None:
    """CInt16 (SLC) raised a TypeError traceback (numpy has no complex_int16 dtype)."""
    z = (blob_scene(H, W) + 1j).astype(np.complex64)
    src = write_tif(tmp_path / "slc.tif", z, dtype="complex_int16")
    with pytest.raises(InputError, match="complex.*calibrate") as ei:
        open_scene(src)
    assert "\n" not in str(ei.value)


def test_gcps_in_a_projected_crs_place_the_scene(tmp_path: Path) -> None:
    """GCPs in UTM metres failed every run ("GCPs in WGS 84 / UTM zone 33N are not supported for land
    masking"), even without a land mask; they are transformed to lon/lat, and the polygons land
    where the GCPs say."""
    from pyproj import Transformer

    x0, y0, px = 500000.0, 6000000.0, 10.0
    gcps = [GroundControlPoint(r, c, x0 + c * px, y0 - r * px) for r in (0, H) for c in (0, W)]
    src = tmp_path / "gcp_utm.tif"
    with rasterio.open(
        src, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8", gcps=gcps, crs="EPSG:32633"
    ) as ds:
        ds.write(blob_scene(H, W, seed=4), 1)
    ref = write_tif(tmp_path / "affine.tif", blob_scene(H, W, seed=4), transform=from_origin(x0, y0, px, px))
    vec, vref = tmp_path / "v.geojson", tmp_path / "vref.geojson"
    r = segment_scene(_pred(), src, tmp_path / "c.tif", vector=vec, land_mask=None, min_area="0px")
    rr = segment_scene(_pred(), ref, tmp_path / "r.tif", vector=vref, land_mask=None, min_area="0px")
    assert r["spills"] == rr["spills"] > 0
    assert r["oil_area_m2"] == pytest.approx(rr["oil_area_m2"], rel=1e-3)
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon0, lat1 = to_ll.transform(x0, y0)
    lon1, lat0 = to_ll.transform(x0 + W * px, y0 - H * px)
    for f, g in zip(
        json.loads(vec.read_text())["features"], json.loads(vref.read_text())["features"], strict=True
    ):
        assert np.allclose(f["bbox"], g["bbox"], atol=2e-6)  # ~0.2 m: the same place as the affine twin
        w, s, e, n = f["bbox"]
        assert lon0 - 1e-6 <= w <= e <= lon1 + 1e-6 and lat0 - 1e-6 <= s <= n <= lat1 + 1e-6
    assert _read(tmp_path / "c.tif")[1]["gcps"][1].to_epsg() == 32633  # outputs keep the GCPs as given


def _envi(path: Path, a: np.ndarray, georef: bool) -> None:
    kw = {"crs": "EPSG:32633", "transform": from_origin(500000.0, 6000000.0, 10.0, 10.0)} if georef else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="ENVI", height=a.shape[0], width=a.shape[1], count=1, dtype=a.dtype, **kw
        ) as ds:
            ds.write(a, 1)
    path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)  # SNAP writes none


def _band_info(i: int, name: str, extra: str = "") -> str:
    """A DIMAP ``Spectral_Band_Info`` as SNAP writes it for a calibrated band: no-data 0 declared."""
    return (
        f"<Spectral_Band_Info><BAND_INDEX>{i}</BAND_INDEX><BAND_NAME>{name}</BAND_NAME>"
        "<DATA_TYPE>float32</DATA_TYPE><PHYSICAL_UNIT>intensity</PHYSICAL_UNIT>"
        "<SCALING_FACTOR>1.0</SCALING_FACTOR><SCALING_OFFSET>0.0</SCALING_OFFSET>"
        f"<NO_DATA_VALUE_USED>true</NO_DATA_VALUE_USED><NO_DATA_VALUE>0.0</NO_DATA_VALUE>{extra}</Spectral_Band_Info>"
    )


def write_dimap(root: Path, bands: dict[str, np.ndarray], georef: bool = True) -> Path:
    """A BEAM-DIMAP product as SNAP saves it: NAME.dim + NAME.data/<band>.hdr/.img, no-data 0 declared
    in the .dim only."""
    data = root / "S1_Cal.data"
    data.mkdir(parents=True)
    files, infos = [], []
    for i, (name, a) in enumerate(bands.items()):
        _envi(data / f"{name}.img", a, georef)
        files.append(f'<Data_File><DATA_FILE_PATH href="S1_Cal.data/{name}.hdr" /><BAND_INDEX>{i}</BAND_INDEX></Data_File>')  # fmt: skip
        infos.append(_band_info(i, name))
    h, w = next(iter(bands.values())).shape
    dim = root / "S1_Cal.dim"
    dim.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Dimap_Document name="S1_Cal.dim">'
        '<Metadata_Id><METADATA_FORMAT version="2.12.1">DIMAP</METADATA_FORMAT></Metadata_Id>'
        f"<Raster_Dimensions><NCOLS>{w}</NCOLS><NROWS>{h}</NROWS><NBANDS>{len(bands)}</NBANDS></Raster_Dimensions>"
        f"<Data_Access><DATA_FILE_FORMAT>ENVI</DATA_FILE_FORMAT>{''.join(files)}</Data_Access>"
        f"<Image_Interpretation>{''.join(infos)}</Image_Interpretation></Dimap_Document>"
    )
    return dim


def test_beam_dimap_reads_its_vv_band_with_its_nodata(tmp_path: Path) -> None:
    """SNAP's default format: GDAL refused the .dim ("an ENVI header file ... select the data file");
    its Sigma0_VV band is read, SNAP's no-data 0 (declared only in the .dim) is nodata, the ENVI map
    info is kept."""
    vv = _linear()
    vv[:, :16] = 0.0  # outside the swath
    dim = write_dimap(tmp_path, {"Sigma0_VH": vv * 0.2, "Sigma0_VV": vv})
    ref = write_tif(tmp_path / "vv.tif", vv, nodata=0.0)
    with pytest.warns(Notice, match=r"band 2 \(Sigma0_VV\)"):
        r = segment_scene(_pred(), dim, tmp_path / "c.tif", land_mask=None, polygons=False)
    segment_scene(_pred(), ref, tmp_path / "ref.tif", land_mask=None, polygons=False)
    cls, meta = _read(tmp_path / "c.tif")
    assert r["input_scale"] == "linear" and r["valid_fraction"] == pytest.approx(112 / 128, abs=1e-6)
    assert (cls[:, :16] == 255).all() and (cls[:, 16:] != 255).all()
    assert np.array_equal(cls, _read(tmp_path / "ref.tif")[0])
    assert meta["crs"].to_epsg() == 32633 and meta["transform"] == from_origin(
        500000.0, 6000000.0, 10.0, 10.0
    )


def test_beam_dimap_with_a_missing_band_file_is_one_line(tmp_path: Path) -> None:
    dim = write_dimap(tmp_path, {"Sigma0_VV": _linear()})
    (tmp_path / "S1_Cal.data" / "Sigma0_VV.img").unlink()
    with pytest.raises(InputError, match="Sigma0_VV.img is missing") as ei:
        open_scene(dim)
    assert "\n" not in str(ei.value)


def write_snap_tiff(
    path: Path, bands: dict[str, np.ndarray], grid: bool = False, virtual: str = "", extra: str = "",
    gdal_nodata: str | None = None,
) -> Path:  # fmt: skip
    """A GeoTIFF as SNAP's writer makes it: big-endian, uncompressed, one strip, bands planar, names,
    units and no-data only in the DIMAP header of private tag 65000. Map-projected (UTM 33N, 10 m
    pixels) or, with ``grid``, a 3 x 3 tie-point grid in lon/lat (a product not terrain-corrected);
    ``virtual`` names a virtual band the header lists but the file does not hold; ``extra`` is appended
    to every band's fields (a later field wins); ``gdal_nodata`` is GDAL's own no-data tag."""
    import tifffile

    names = list(bands)
    infos = [_band_info(i, n, extra) for i, n in enumerate(names)]
    if virtual:
        infos.insert(
            1, _band_info(1, virtual, "<VIRTUAL_BAND>true</VIRTUAL_BAND><EXPRESSION>Sigma0_VV</EXPRESSION>")
        )
    header = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Dimap_Document name="S1_Cal.dim">'
        f"<Image_Interpretation>{''.join(infos)}</Image_Interpretation></Dimap_Document>"
    )
    data = np.stack([bands[n] for n in names]).astype(np.float32)
    h, w = data.shape[1:]
    if grid:
        points = [
            (c, r, 0.0, 12.0 + 0.3 * c / w, 42.0 - 0.2 * r / h, 0.0)
            for r in (0, h // 2, h)
            for c in (0, w // 2, w)
        ]
        geo = [(33922, "d", 6 * len(points), tuple(v for p in points for v in p), True),
               (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326), True)]  # fmt: skip
    else:
        geo = [(33550, "d", 3, (10.0, 10.0, 0.0), True), (33922, "d", 6, (0, 0, 0, 500000.0, 6000000.0, 0), True),
               (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), True)]  # fmt: skip
    tifffile.imwrite(
        path, data if len(names) > 1 else data[0], byteorder=">", planarconfig="separate" if len(names) > 1 else None,
        rowsperstrip=h, photometric="minisblack", description="S1_Cal", metadata=None,
        extratags=[*geo, (65000, "s", 0, header, True), *([(42113, "s", 0, gdal_nodata, True)] if gdal_nodata else [])],
    )  # fmt: skip
    return path


def test_snap_geotiff_one_band_keeps_its_place_and_nodata(tmp_path: Path) -> None:
    """SNAP's one-band export is claimed by GDAL's SNAP_TIFF driver, which reads no geotransform: the
    outputs had no CRS (pixels, no land mask, no areas) and the band no name. It is read with its UTM
    placement, its name, SNAP's no-data 0 and its unit (linear power, not guessed)."""
    vv = _linear()
    vv[:, :16] = 0.0  # outside the swath
    src = write_snap_tiff(tmp_path / "Sigma0_VV.tif", {"Sigma0_VV": vv})
    with rasterio.open(src) as ds:  # the premise: what GDAL alone reads
        assert ds.driver == "SNAP_TIFF" and ds.crs is None and ds.transform.is_identity
    with open_scene(src) as sc:
        assert sc.info.crs.to_epsg() == 32633 and sc.info.transform == from_origin(
            500000.0, 6000000.0, 10.0, 10.0
        )
        assert sc.info.nodata == 0.0 and sc.info.native_scale == "linear"
    from dakd_edge.data.rasterinfo import describe_raster

    (band,) = describe_raster(src)["bands"]  # info says what segment reads
    assert band["description"] == "Sigma0_VV" and band["scale"] == "linear" and "unit" in band["scale_from"]
    r = segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=None, polygons=False)
    ref = write_tif(tmp_path / "ref_in.tif", vv, nodata=0.0)
    segment_scene(_pred(), ref, tmp_path / "ref.tif", land_mask=None, polygons=False)
    cls, meta = _read(tmp_path / "c.tif")
    assert r["input_scale"] == "linear" and r["valid_fraction"] == pytest.approx(112 / 128, abs=1e-6)
    assert np.array_equal(cls, _read(tmp_path / "ref.tif")[0])
    assert meta["crs"].to_epsg() == 32633 and meta["transform"] == from_origin(
        500000.0, 6000000.0, 10.0, 10.0
    )


def test_snap_geotiff_two_bands_uses_its_vv_band(tmp_path: Path) -> None:
    """SNAP's export of Sigma0_VH and Sigma0_VV (names in its private tag only) was refused as "2
    different bands"; its Sigma0_VV band is used, with the notice saying so."""
    vv = _linear()
    src = write_snap_tiff(tmp_path / "S1_Cal.tif", {"Sigma0_VH": vv * 0.2, "Sigma0_VV": vv})
    with pytest.warns(Notice, match=r"band 2 \(Sigma0_VV\)"):
        segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=None, polygons=False)
    segment_scene(
        _pred(), write_tif(tmp_path / "vv.tif", vv), tmp_path / "ref.tif", land_mask=None, polygons=False
    )
    assert np.array_equal(_read(tmp_path / "c.tif")[0], _read(tmp_path / "ref.tif")[0])


def test_snap_geotiff_tie_point_grid_is_kept_as_gcps(tmp_path: Path) -> None:
    """A SNAP export of a product not terrain-corrected holds a tie-point grid: all of it is carried
    as GCPs (GDAL's SNAP_TIFF driver keeps only the four corners)."""
    vv = _linear()
    src = write_snap_tiff(tmp_path / "S1_Cal.tif", {"Sigma0_VH": vv * 0.2, "Sigma0_VV": vv}, grid=True)
    with open_scene(src) as sc:
        assert len(sc.info.gcps) == 9 and sc.info.gcps_crs.to_epsg() == 4326
        assert {(g.col, g.row, round(g.x, 6), round(g.y, 6)) for g in sc.info.gcps} >= {
            (0, 0, 12.0, 42.0),
            (W, H, 12.3, 41.8),
        }


def test_snap_geotiff_header_listing_virtual_bands(tmp_path: Path) -> None:
    """SNAP does not write virtual (expression) bands: the header's names are matched to the stored
    bands without them."""
    vv = _linear()
    src = write_snap_tiff(
        tmp_path / "S1_Cal.tif", {"Sigma0_VH": vv * 0.2, "Sigma0_VV": vv}, virtual="Sigma0_VV_db"
    )
    with rasterio.open(src) as ds:
        assert ds.count == 2
    with pytest.warns(Notice, match=r"band 2 \(Sigma0_VV\)"), open_scene(src) as sc:
        assert sc.info.bands == (2,)


def test_snap_geotiff_with_damaged_numbers_in_its_header(tmp_path: Path) -> None:
    """A SCALING_FACTOR of "n/a" raised a bare ValueError (a traceback in the CLI); a NO_DATA_VALUE of
    "abc" became nodata 0.0. Numbers that do not parse are left out: scale 1, no nodata."""
    vv = _linear()
    bad = "<SCALING_FACTOR>n/a</SCALING_FACTOR><NO_DATA_VALUE>abc</NO_DATA_VALUE>"
    src = write_snap_tiff(tmp_path / "S1_Cal.tif", {"Sigma0_VH": vv * 0.2, "Sigma0_VV": vv}, extra=bad)
    with pytest.warns(Notice, match=r"band 2 \(Sigma0_VV\)"), open_scene(src) as sc:
        assert sc.info.nodata is None and sc.ds.scales == (1.0, 1.0)


def test_snap_geotiff_keeps_a_gdal_nodata_its_header_does_not_declare(tmp_path: Path) -> None:
    """gdal_edit -a_nodata -9999 on a SNAP export whose header declares no no-data: the VRT dropped it."""
    vv = _linear()
    vv[:, :16] = -9999.0
    src = write_snap_tiff(
        tmp_path / "Sigma0_VV.tif", {"Sigma0_VV": vv}, extra="<NO_DATA_VALUE_USED>false</NO_DATA_VALUE_USED>",
        gdal_nodata="-9999",
    )  # fmt: skip
    with open_scene(src) as sc:
        assert sc.info.nodata == -9999.0 and sc.info.crs.to_epsg() == 32633


def test_geotiff_with_a_damaged_dimap_header_reads_as_before(tmp_path: Path) -> None:
    """A tag 65000 that is no DIMAP XML (another tool's private tag) changes nothing."""
    import tifffile

    src = tmp_path / "x.tif"
    tifffile.imwrite(src, np.stack([_linear(), _linear(4)]), planarconfig="separate", metadata=None,
                     extratags=[(65000, "s", 0, "<Dimap_Document><unclosed>", True)])  # fmt: skip
    with pytest.raises(InputError, match=r"2 different bands .* --band N"):
        open_scene(src)


def test_gdal_virtual_paths_are_read(tmp_path: Path) -> None:
    """/vsizip/ and /vsigzip/ paths were refused as "no such file" (also after Path() folded the
    ``//`` of an absolute archive); they read as the raster they name."""
    db = (-35.0 + blob_scene(H, W, seed=2) / 255.0 * 40.0).astype(np.float32)
    tif = write_tif(tmp_path / "s.tif", db)
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        z.write(tif, "inner/s.tif")
    gz = tmp_path / "s.tif.gz"
    gz.write_bytes(gzip.compress(tif.read_bytes()))
    segment_scene(_pred(), tif, tmp_path / "ref.tif", land_mask=None, polygons=False)
    want = _read(tmp_path / "ref.tif")
    for i, name in enumerate(
        [
            f"/vsizip/{tmp_path}/s.zip/inner/s.tif",
            Path(f"/vsizip//{tmp_path}/s.zip/inner/s.tif"),
            f"/vsigzip/{gz}",
        ]
    ):
        r = segment_scene(_pred(), name, tmp_path / f"c{i}.tif", land_mask=None, polygons=False)
        got = _read(tmp_path / f"c{i}.tif")
        assert r["input_scale"] == "db" and np.array_equal(got[0], want[0])
        assert got[1]["crs"] == want[1]["crs"] and got[1]["transform"] == want[1]["transform"]


def test_gzip_file_says_how_to_read_it(tmp_path: Path) -> None:
    gz = tmp_path / "s.tif.gz"
    gz.write_bytes(gzip.compress(write_tif(tmp_path / "s.tif", blob_scene(32, 32)).read_bytes()))
    with pytest.raises(InputError, match=r"gzip-compressed .*gunzip .*/vsigzip/"):
        open_scene(gz)


def test_cli_segment_reads_a_vsizip_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dakd_edge.cli import segment as seg_cli
    from dakd_edge.cli.app import main

    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: _pred())
    tif = write_tif(tmp_path / "s.tif", blob_scene(H, W, seed=1))
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        z.write(tif, "s.tif")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["segment", f"/vsizip//{tmp_path}/s.zip/s.tif", "-o", f"{out}/", "-q"])
    assert e.value.code in (0, None), capsys.readouterr().err
    assert (out / "s_classes.tif").is_file()


def test_integer_digital_numbers_say_to_calibrate() -> None:
    """uint16 amplitude DN: "pass --input-scale" named no scale that reads them right."""
    from dakd_edge.data.scaling import detect_scale

    with pytest.raises(InputError, match="uncalibrated digital numbers.*calibrate them to sigma0"):
        detect_scale(np.array([40, 7640], np.uint16))


@pytest.mark.parametrize("fill", [-9999.0, -3.4028235e38])
def test_an_impossible_fill_on_the_edge_is_nodata_without_a_tag(tmp_path: Path, fill: float) -> None:
    """A dB scene framed by -9999 with no nodata value set (a common export) had its frame called oil
    (the walkthrough's oil area doubled); the edge value no backscatter reads is taken as nodata, with
    a notice, and the result equals the scene with the value declared."""
    db = (10.0 * np.log10(_linear())).astype(np.float32)
    framed = np.full((H + 16, W + 16), fill, np.float32)
    framed[8:-8, 8:-8] = db
    tagged = write_tif(tmp_path / "tagged.tif", framed, nodata=fill)
    bare = write_tif(tmp_path / "bare.tif", framed)
    with pytest.warns(
        Notice,
        match=re.escape(f"no nodata value is set, but 100 % of its edge is {float(np.float32(fill)):.9g},"),
    ):
        r = segment_scene(_pred(), bare, tmp_path / "c.tif", land_mask=None, polygons=False)
    ref = segment_scene(_pred(), tagged, tmp_path / "ref.tif", land_mask=None, polygons=False)
    got = _read(tmp_path / "c.tif")[0]
    assert np.array_equal(got, _read(tmp_path / "ref.tif")[0])
    assert (got[:8] == 255).all() and (got[8:-8, 8:-8] != 255).all()
    assert r["input_scale"] == ref["input_scale"] == "db"


def test_a_zero_edge_without_a_tag_is_named_but_stays_data(tmp_path: Path) -> None:
    """Exact zeros on the edge may be fill or the darkest sea (noise-clipped linear sigma0, 8-bit
    black): a notice says how to declare them; the pixels stay data. A scene without such an edge gets
    no notice."""
    framed = np.zeros((H + 16, W + 16), np.float32)
    framed[8:-8, 8:-8] = _linear()
    with pytest.warns(Notice, match=r"100 % of its edge is exactly 0: .*gdal_edit.py -a_nodata 0"):
        scene = open_scene(write_tif(tmp_path / "zero.tif", framed), 1)
    assert scene.info.nodata is None
    scene.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)
        open_scene(write_tif(tmp_path / "plain.tif", _linear()), 1).close()


def test_snap_linear_and_db_bands_of_one_image_use_the_linear_one(tmp_path: Path) -> None:
    """SNAP writes Sigma0_VV_db beside Sigma0_VV (the same image): it was refused as two co-pol bands;
    the linear band is used. Two different co-pol images (VV of two dates) are still refused."""
    vv = _linear()
    stack = np.stack([vv * 0.2, 10 * np.log10(vv), vv])
    src = write_tif(tmp_path / "snap.tif", stack)
    with rasterio.open(src, "r+") as ds:
        for i, name in enumerate(["Sigma0_VH", "Sigma0_VV_db", "Sigma0_VV"], 1):
            ds.set_band_description(i, name)
    with pytest.warns(Notice, match=r"using band 3 \(Sigma0_VV\) of its 3 bands"):
        r = segment_scene(_pred(), src, tmp_path / "c.tif", land_mask=None, polygons=False)
    assert r["bands"] == [3] and r["input_scale"] == "linear"
    two = write_tif(tmp_path / "dates.tif", np.stack([vv, vv * 0.5]))
    with rasterio.open(two, "r+") as ds:
        ds.set_band_description(1, "Sigma0_VV_mst_01Jan2021")
        ds.set_band_description(2, "Sigma0_VV_slv1_13Jan2021")
    with pytest.raises(InputError, match="2 different bands .*choose one with --band N"):
        segment_scene(_pred(), two, tmp_path / "d.tif", land_mask=None, polygons=False)


def test_snap_terrain_flattening_gamma0_beside_sigma0_uses_sigma0(tmp_path: Path) -> None:
    """SNAP's Terrain-Flattening keeps Sigma0_VV beside its Gamma0_VV: refused as two co-pol bands;
    sigma0 (what the model's training images are) is used, linear or, alone, its dB band."""
    vv = _linear()
    for names, want in ((["Gamma0_VV", "Sigma0_VV"], 2), (["Sigma0_VV_db", "Gamma0_VV_db"], 1)):
        db = 10 * np.log10(vv)
        data = np.stack([vv * 1.1, vv]) if "Gamma0_VV" == names[0] else np.stack([db, db + 0.5])
        src = write_tif(tmp_path / f"tf{want}.tif", data.astype(np.float32))
        with rasterio.open(src, "r+") as ds:
            ds.descriptions = tuple(names)
        with pytest.warns(Notice, match=rf"using band {want} \({names[want - 1]}\) of its 2 bands"):
            r = segment_scene(_pred(), src, tmp_path / f"c{want}.tif", land_mask=None, polygons=False)
        assert r["bands"] == [want]
