"""segment_scene on files as other providers deliver them: ASF HyP3 RTC (power / amplitude / dB by its
name), ALOS PALSAR DN, Google Earth Engine exports (bands VV / VH / angle, 0 fill), cross-polarised
files, and the notice that says which scale a float scene was guessed to be."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.data.products import ALOS_DN_GAIN
from dakd_edge.data.scaling import scale_from_name, to_unit
from dakd_edge.errors import InputError, Notice
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene

from .fake import FakeBackend, blob_scene, write_tif

HYP3 = "S1A_IW_20211223T051122_DVP_RTC30_G_{}uned_ABCD_VV.tif"


def _pred() -> Predictor:
    return Predictor(FakeBackend(num_classes=2), tile=64, overlap=16, batch=4)


def _classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _db(seed: int = 3) -> np.ndarray:
    """A blob scene as sigma0 in dB through the model's own -35..+5 dB stretch (so uint8 = dB exactly)."""
    return (blob_scene(160, 192, seed=seed).astype(np.float32) / 255.0 * 40.0 - 35.0).astype(np.float32)


def _run(src: Path, out: Path, **kw) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = segment_scene(_pred(), src, out, land_mask=None, polygons=False, **kw)
    return r, [str(w.message) for w in caught if issubclass(w.category, Notice)]


def test_amplitude_is_the_square_root_of_power() -> None:
    db = np.array([-30.0, -17.6, -5.0, 0.0], np.float32)
    lin = 10.0 ** (db / 10.0)
    np.testing.assert_allclose(to_unit(np.sqrt(lin), "amplitude"), to_unit(lin, "linear"), atol=1e-6)
    np.testing.assert_allclose(to_unit(lin, "linear"), to_unit(db, "db"), atol=1e-6)


@pytest.mark.parametrize(("letter", "scale"), [("p", "linear"), ("a", "amplitude"), ("d", "db")])
def test_hyp3_rtc_name_states_the_scale(tmp_path: Path, letter: str, scale: str) -> None:
    """HyP3's amplitude read as power halves every dB value (sea -17.6 -> -8.8 dB, still in domain):
    slicks vanished. The name's scale letter decides, with a notice; the classes equal the dB file's."""
    db = _db()
    values = {"linear": 10 ** (db / 10), "amplitude": 10 ** (db / 20), "db": db}[scale]
    src = write_tif(tmp_path / HYP3.format("g" + letter), values.astype(np.float32), nodata=0.0)
    ref = write_tif(tmp_path / "ref.tif", db)
    r, notes = _run(src, tmp_path / "c.tif")
    assert r["input_scale"] == scale
    assert any("ASF HyP3 RTC file name" in n for n in notes)
    assert not any("guessed from their range" in n for n in notes)
    _run(ref, tmp_path / "ref_c.tif")
    same = (_classes(tmp_path / "c.tif") == _classes(tmp_path / "ref_c.tif")).mean()
    assert same > 0.999 and (_classes(tmp_path / "c.tif") == 1).mean() > 0.02


def test_amplitude_without_a_name_needs_input_scale(tmp_path: Path) -> None:
    """The same amplitude under a plain name is guessed as power (nothing in the values tells them
    apart), and the notice says so; --input-scale amplitude reads it right."""
    db = _db()
    src = write_tif(tmp_path / "amp.tif", (10 ** (db / 20)).astype(np.float32))
    r, notes = _run(src, tmp_path / "a.tif")
    assert r["input_scale"] == "linear"
    assert any("read as linear backscatter power, guessed from their range" in n for n in notes)
    r, notes = _run(src, tmp_path / "b.tif", scale="amplitude")
    assert r["input_scale"] == "amplitude" and not any("guessed" in n for n in notes)
    ref = write_tif(tmp_path / "ref.tif", db)
    _run(ref, tmp_path / "ref_c.tif", scale="db")
    assert (_classes(tmp_path / "b.tif") == _classes(tmp_path / "ref_c.tif")).mean() > 0.999
    assert (_classes(tmp_path / "a.tif") == 1).mean() < (_classes(tmp_path / "b.tif") == 1).mean()


def test_alos_palsar_dn_are_calibrated_by_name(tmp_path: Path) -> None:
    """IMG-HH-ALOS2... uint16 DN: sigma0 = 10 log10(DN^2) - 83 dB, DN 0 = no data; under another name
    the same file is refused, naming the file and the calibration factor."""
    db = _db()
    dn = np.clip(np.round(10 ** (db / 20) / ALOS_DN_GAIN), 1, 65535).astype(np.uint16)
    dn[:, :20] = 0  # outside the image frame
    src = write_tif(tmp_path / "IMG-HH-ALOS2011283150-140602-UBSL1.5GUA.tif", dn)
    r, notes = _run(src, tmp_path / "c.tif")
    assert r["input_scale"] == "amplitude"
    assert any("ALOS PALSAR file name" in n and "-83 dB" in n for n in notes)
    classes = _classes(tmp_path / "c.tif")
    assert (classes[:, :20] == 255).all() and (classes[:, 20:] != 255).all()
    ref = write_tif(tmp_path / "ref.tif", db)
    _run(ref, tmp_path / "ref_c.tif")
    assert (classes[:, 20:] == _classes(tmp_path / "ref_c.tif")[:, 20:]).mean() > 0.99
    plain = write_tif(tmp_path / "dn.tif", dn)
    with pytest.raises(InputError, match=r"dn\.tif: cannot detect input scaling .* --input-scale amplitude"):
        _run(plain, tmp_path / "d.tif")


def test_scale_from_name_needs_integer_dn_for_alos() -> None:
    assert scale_from_name("IMG-HV-ALPSRP123456789-H1.5_UA.tif", "uint16").gain == ALOS_DN_GAIN
    assert scale_from_name("IMG-HH-ALOS2011283150-140602-UBSL1.5GUA.tif", "float32") is None
    assert scale_from_name("scene_VV.tif", "float32") is None


def test_float_guess_is_announced_and_8bit_is_not(tmp_path: Path) -> None:
    """A float band of 30-45 (Earth Engine's or OPERA's incidence angle) was read as 8-bit luminance:
    all oil. Float values of 20-255 are luminance only as whole numbers (announced as a guess); others
    are refused, as are 16-bit integers under 256 (a calm sea's raw digital numbers)."""
    u8 = blob_scene(96, 96, seed=1)
    r, notes = _run(write_tif(tmp_path / "u8.tif", u8), tmp_path / "a.tif")
    assert not any("guessed" in n for n in notes)
    r2, notes = _run(write_tif(tmp_path / "f8.tif", u8.astype(np.float32)), tmp_path / "f.tif")
    assert r2["input_scale"] == "uint8" and r2["oil_pixels"] == r["oil_pixels"]
    assert any("read as 8-bit luminance (value / 255), guessed from their range" in n for n in notes)
    angle = (30.0 + 15.0 * u8 / 255.0).astype(np.float32)
    with pytest.raises(InputError, match=r"angle\.tif: cannot detect input scaling .* an incidence angle"):
        _run(write_tif(tmp_path / "angle.tif", angle), tmp_path / "b.tif")
    with pytest.raises(InputError, match=r"dn\.tif: .*uint16 values in \[\d+, \d+\].* --input-scale uint8"):
        _run(write_tif(tmp_path / "dn.tif", u8.astype(np.uint16)), tmp_path / "c.tif")
    r3, _ = _run(write_tif(tmp_path / "dn2.tif", u8.astype(np.uint16)), tmp_path / "d.tif", scale="uint8")
    assert r3["oil_pixels"] == r["oil_pixels"]


def test_earth_engine_export_uses_vv_and_its_zero_fill_is_nodata(tmp_path: Path) -> None:
    """Earth Engine writes bands VV, VH, angle (dB) and fills outside the footprint with 0, which in dB
    is bright land-like sea (was read as data, with a notice calling it the darkest sea)."""
    db = _db()
    bands = np.stack([db, db - 6.0, np.full_like(db, 38.0)])
    frame = np.ones(db.shape, bool)
    frame[20:-20, 20:-20] = False  # the footprint's fill all round
    bands[:, frame] = 0.0
    src = write_tif(
        tmp_path / "gee.tif",
        bands,
        crs="EPSG:4326",
        transform=rasterio.transform.from_origin(12, 42, 1e-4, 1e-4),
    )
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("VV", "VH", "angle")
    r, notes = _run(src, tmp_path / "c.tif")
    assert any("using band 1 (VV)" in n for n in notes)
    assert any("exactly 0, which in a scene of dB values is fill" in n for n in notes)
    classes = _classes(tmp_path / "c.tif")
    assert (classes[frame] == 255).all() and (classes[~frame] != 255).all()
    assert r["valid_fraction"] == pytest.approx((~frame).mean(), abs=1e-6)


@pytest.mark.parametrize("flags", ["uint8", "float32"])
def test_sentinel_hub_datamask_band_is_the_validity_mask(tmp_path: Path, flags: str) -> None:
    """Sentinel Hub / openEO write bands VV, VH, dataMask (linear, 0 outside the data): the dataMask
    was ignored and the 0 frame read as the darkest sea (all oil). It masks like an alpha band."""
    db = _db()
    lin = (10 ** (db / 10)).astype(np.float32)
    frame = np.ones(db.shape, bool)
    frame[16:-16, 24:-24] = False
    mask = (~frame).astype(flags)
    bands = np.stack([lin, lin * 0.2, mask.astype(np.float32)])
    bands[:2, frame] = 0.0
    src = write_tif(tmp_path / "sh.tif", bands)
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("VV", "VH", "dataMask")
    r, notes = _run(src, tmp_path / "c.tif")
    assert any("using band 1 (VV)" in n for n in notes)
    classes = _classes(tmp_path / "c.tif")
    assert (classes[frame] == 255).all() and (classes[~frame] != 255).all()
    ref_src = lin.copy()
    ref_src[frame] = np.nan
    _run(write_tif(tmp_path / "ref.tif", ref_src, nodata=float("nan")), tmp_path / "ref_c.tif")
    np.testing.assert_array_equal(classes, _classes(tmp_path / "ref_c.tif"))
    with pytest.raises(InputError, match="band 3 is its dataMask"):
        _run(src, tmp_path / "d.tif", band=3)


def test_zero_edge_of_linear_power_stays_data(tmp_path: Path) -> None:
    db = _db()
    lin = (10 ** (db / 10)).astype(np.float32)
    lin[:20], lin[-20:], lin[:, :20], lin[:, -20:] = 0.0, 0.0, 0.0, 0.0
    r, notes = _run(write_tif(tmp_path / "lin.tif", lin), tmp_path / "c.tif")
    assert any("exactly 0: read as the darkest sea" in n for n in notes)
    assert (_classes(tmp_path / "c.tif") != 255).all()


@pytest.mark.parametrize(
    ("name", "description", "warned"),
    [("s1_VH.tif", None, True), ("IMG-HV-x.tif", None, True), ("x.tif", "Sigma0_VH_db", True),
     ("x_VH.tif", "VV", False), ("vhigh.tif", None, False)],
)  # fmt: skip
def test_cross_polarised_band_is_named(
    tmp_path: Path, name: str, description: str | None, warned: bool
) -> None:
    src = write_tif(tmp_path / name, _db())
    if description:
        with rasterio.open(src, "r+") as ds:
            ds.descriptions = (description,)
    _, notes = _run(src, tmp_path / "c.tif", scale="db")
    assert any("(cross-polarised) backscatter" in n for n in notes) is warned


def test_info_says_the_scale_comes_from_the_name(tmp_path: Path) -> None:
    from dakd_edge.data.rasterinfo import describe_raster

    dn = np.full((64, 64), 3000, np.uint16)
    d = describe_raster(write_tif(tmp_path / "IMG-HH-ALOS2011283150-140602-UBSL1.5GUA.tif", dn))
    assert d["bands"][0]["scale"] == "amplitude" and "ALOS PALSAR" in d["bands"][0]["scale_from"]
    assert json.dumps(d)  # still plain JSON


def test_hyp3_product_folder_and_zip_segment_their_co_pol_image(tmp_path: Path) -> None:
    """HyP3's download (a zip) and its extracted folder were refused ("no Sentinel-1 product", "is a
    directory"): each runs its one *_VV.tif, with a notice; two co-polarised images are refused."""
    import zipfile

    from dakd_edge.inference.readers import open_scene

    name = "S1A_IW_20211223T051122_DVP_RTC30_G_gduned_ABCD"
    prod = tmp_path / name
    prod.mkdir()
    write_tif(prod / f"{name}_VV.tif", _db())
    write_tif(prod / f"{name}_VH.tif", _db() - 6.0)
    write_tif(prod / f"{name}_rgb.tif", blob_scene(16, 16))
    (prod / f"{name}.README.md.txt").write_text("readme")
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(prod.iterdir()):
            z.write(f, f"{name}/{f.name}")
    ref, _ = _run(prod / f"{name}_VV.tif", tmp_path / "ref.tif")
    for src, out in ((prod, "folder.tif"), (archive, "zip.tif")):
        r, notes = _run(src, tmp_path / out)
        assert any("segmenting its co-polarised image" in n and f"{name}_VV.tif" in n for n in notes)
        assert r["input_scale"] == "db" and r["scene"].endswith(f"{name}_VV.tif")
        np.testing.assert_array_equal(_classes(tmp_path / out), _classes(tmp_path / "ref.tif"))
        # the report's scene (and the notice) is a name GDAL opens as it is, from any working folder:
        # the zip member was shown as /vsizip/ABS with the archive's leading / folded away
        with rasterio.open(r["scene"]) as ds:
            assert ds.shape == (160, 192)
    write_tif(prod / f"{name}_HH.tif", _db())
    with pytest.raises(InputError, match="2 co-polarised images"):
        open_scene(prod)


def test_netcdf_container_names_its_subdatasets_and_one_segments(tmp_path: Path) -> None:
    """A NetCDF of several variables has no band of its own: segment crashed (ValueError on a closed
    dataset). It now lists the subdatasets, and GDAL's name for one (NETCDF:"f.nc":VAR) is a scene."""
    import rasterio.shutil

    from dakd_edge.cli.segment import scene_stem

    tif = write_tif(tmp_path / "m.tif", np.stack([_db(), _db() - 6.0]), crs="EPSG:4326",
                    transform=rasterio.transform.from_origin(12, 42, 1e-4, 1e-4))  # fmt: skip
    nc = tmp_path / "m.nc"
    rasterio.shutil.copy(tif, nc, driver="netCDF")
    with pytest.raises(InputError, match=r"m\.nc: a container of 2 rasters .*Band1.*Band2"):
        _run(nc, tmp_path / "a.tif")
    name = f'NETCDF:"{nc}":Band1'
    assert scene_stem(Path(name)) == "m_Band1"
    r, _ = _run(Path(name), tmp_path / "b.tif")
    _run(tif, tmp_path / "ref.tif", band=1)
    np.testing.assert_array_equal(_classes(tmp_path / "b.tif"), _classes(tmp_path / "ref.tif"))


def test_hdf5_dataset_name_keeps_its_double_slash(tmp_path: Path) -> None:
    """HDF5:"f.h5"://VAR: the CLI's Path folded '://' into ':/', which GDAL cannot open."""
    import rasterio.shutil

    from dakd_edge.data.gdalnames import gdal_name

    tif = write_tif(tmp_path / "m.tif", np.stack([_db(), _db() - 6.0]), crs="EPSG:4326",
                    transform=rasterio.transform.from_origin(12, 42, 1e-4, 1e-4))  # fmt: skip
    h5 = tmp_path / "m4.nc"
    rasterio.shutil.copy(tif, h5, driver="netCDF", FORMAT="NC4")  # HDF5 underneath
    name = Path(f'HDF5:"{h5}"://Band1')
    assert "://" not in str(name) and gdal_name(name) == f'HDF5:"{h5}"://Band1'
    r, notes = _run(name, tmp_path / "c.tif", scale="db")
    assert r["width"] == 192 and r["height"] == 160
    # GDAL's HDF5 driver reads no CF georeference (NISAR GCOV, OPERA HDF5 grids: outputs in pixel
    # units, areas unknown); its netCDF driver does, and places the scene
    assert r["georeferenced"] and r["crs"] == "EPSG:4326"
    assert any("placed by GDAL's netCDF driver" in n for n in notes)
    with rasterio.open(tmp_path / "c.tif") as a, rasterio.open(tif) as b:
        assert a.crs == b.crs and a.transform.almost_equals(b.transform)


def test_a_container_lists_its_co_polarised_variables_first() -> None:
    from dakd_edge.data.rasterinfo import co_pol_first

    names = [
        f'HDF5:"g.h5"://science/LSAR/GCOV/grids/frequencyA/{v}'
        for v in ("mask", "HHHV", "HHHH", "numberOfLooks")
    ]
    assert co_pol_first(names)[0].endswith("/HHHH") and co_pol_first(names)[1:] == [
        names[0],
        names[1],
        names[3],
    ]
    assert co_pol_first(["NETCDF:a.nc:VH", "NETCDF:a.nc:VV"]) == ["NETCDF:a.nc:VV", "NETCDF:a.nc:VH"]


def test_only_hyp3_products_run_their_co_pol_image(tmp_path: Path) -> None:
    """Any folder holding one *_VV.tif was run as if it were a product (review): only a HyP3-named
    folder or zip is; a HyP3 zip opens whatever the working folder holds (a ./tmp beside /tmp)."""
    import os
    import zipfile

    from dakd_edge.inference.readers import open_scene

    plain = tmp_path / "userdir"
    (plain / "old").mkdir(parents=True)
    write_tif(plain / "old" / "harbour_VV.tif", _db())
    with pytest.raises(InputError, match="is a directory"):
        open_scene(plain)
    name = "S1A_IW_20211223T051122_DVP_RTC30_G_gduned_ABCD"
    archive = tmp_path / f"{name}.zip"
    vv = write_tif(tmp_path / f"{name}_VV.tif", _db())
    with zipfile.ZipFile(archive, "w") as z:
        z.write(vv, f"{name}/{name}_VV.tif")
    cwd = tmp_path / "cwd"
    (cwd / archive.parts[1]).mkdir(parents=True)  # e.g. ./tmp: a relative twin of the archive's first folder
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Notice)
            with open_scene(archive) as s:
                assert (s.info.height, s.info.width) == (160, 192)
    finally:
        os.chdir(old)


def test_polarisation_by_description_and_name_is_not_overread(tmp_path: Path) -> None:
    """Review: a bare VV_angle / HH_mask band was taken as backscatter; scene_VV_VH.tif --band 1 was
    called cross-polarised by its name."""
    from dakd_edge.inference.geotiff import _CO_POL, cross_pol

    assert [bool(_CO_POL.fullmatch(d)) for d in ("VV", "hh_db", "Sigma0_VV_mst_01Jan2021", "VV_angle", "HH_mask")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert cross_pol(None, "scene_VV_VH.tif") is None
    assert cross_pol(None, "scene_VH.tif", one_band=False) is None  # which band is VH? the name cannot say
    assert cross_pol("VH", "scene_VV_VH.tif", one_band=False) == ("VH", "description")
    assert cross_pol(None, "scene_VH.tif") == ("VH", "file name")


def test_a_named_scale_is_said_only_when_used_and_checked_against_the_values(tmp_path: Path) -> None:
    """The name's scale notice said '--input-scale overrides' even when the user had passed it; a HyP3
    power file converted to dB that kept its name was read as power without a word."""
    db = _db()
    power = write_tif(tmp_path / HYP3.format("gp"), (10 ** (db / 10)).astype(np.float32))
    _, notes = _run(power, tmp_path / "a.tif", scale="linear")
    assert not any("file name says" in n for n in notes)
    _, notes = _run(power, tmp_path / "b.tif")
    assert any("file name says" in n and "look like" not in n for n in notes)
    converted = write_tif(tmp_path / HYP3.format("gp").replace(".tif", "_db.tif"), db)
    r, notes = _run(converted, tmp_path / "c.tif")
    assert r["input_scale"] == "linear"
    assert any("but its values look like backscatter in dB" in n and "--input-scale db" in n for n in notes)


def test_zero_fill_inside_a_db_scene_is_found_off_centre(tmp_path: Path) -> None:
    """An export clipped to an area of interest has 0 fill in its middle too: the dB test looked at the
    centre window alone and called the fill the darkest sea."""
    db = _db()
    frame = np.ones(db.shape, bool)
    frame[20:-20, 20:-20] = False
    frame[50:110, 60:130] = True  # fill across the centre as well
    db[frame] = 0.0
    r, notes = _run(write_tif(tmp_path / "aoi.tif", db), tmp_path / "c.tif")
    assert any("in a scene of dB values is fill" in n for n in notes)
    assert (_classes(tmp_path / "c.tif")[frame] == 255).all()


def test_dataset_names_get_distinct_stems_and_times_are_no_driver(tmp_path: Path) -> None:
    """Every COSMO-SkyMed HDF5 subdataset was named 'SBI' and every RS2 calibration 'product' (two
    scenes in one run collided); a missing 'scene_T10:20:30.tif' was taken for a dataset name."""
    from dakd_edge.cli.segment import plan_outputs
    from dakd_edge.data.gdalnames import dataset_stem, is_gdal_name

    assert dataset_stem('HDF5:"/d/CSK_A.h5"://S01/SBI') == "CSK_A_S01_SBI"
    assert dataset_stem("RADARSAT_2_CALIB:SIGMA0:/d/RS2_OK1_SGF/product.xml") == "RS2_OK1_SGF_SIGMA0"
    assert dataset_stem("netcdf:m.nc:Sigma0_VV") == "m_Sigma0_VV"
    assert not is_gdal_name("scene_20210101T10:20:30.tif")
    with pytest.raises(InputError, match="no such file"):
        plan_outputs((Path("scene_20210101T10:20:30.tif"),), {"out": None, "probs": None, "vector": None,
                     "report": None}, [], False)  # fmt: skip


def test_the_folder_an_unzip_tool_makes_around_a_hyp3_product(tmp_path: Path) -> None:
    """unzip -d out NAME.zip gives out/NAME/NAME_VV.tif: out/ runs that product, as for a SAFE."""
    from dakd_edge.inference.readers import open_scene

    name = "S1A_IW_20211223T051122_DVP_RTC30_G_gduned_ABCD"
    (tmp_path / "out" / name).mkdir(parents=True)
    write_tif(tmp_path / "out" / name / f"{name}_VV.tif", _db())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        with open_scene(tmp_path / "out") as s:
            assert s.info.path.name == f"{name}_VV.tif"


def test_zero_fill_along_one_side_of_a_db_scene_is_nodata(tmp_path: Path) -> None:
    """Batch audit: an Earth Engine export whose 0 fill covers one side only (under half the edge) was
    read as data: two thin 'spills' along the fill's border."""
    db = _db()
    db[:, :40] = 0.0
    r, notes = _run(write_tif(tmp_path / "side.tif", db), tmp_path / "c.tif")
    assert any("exactly 0, which in a scene of dB values is fill" in n for n in notes)
    classes = _classes(tmp_path / "c.tif")
    assert (classes[:, :40] == 255).all() and (classes[:, 40:] != 255).all()
    lin = (10 ** (_db() / 10)).astype(np.float32)
    lin[:, :40] = 0.0  # linear power: zeros stay data, as before (no notice below half the edge)
    r, notes = _run(write_tif(tmp_path / "lin.tif", lin), tmp_path / "d.tif")
    assert (_classes(tmp_path / "d.tif") != 255).all()


OPERA = "OPERA_L2_RTC-S1_T069-147170-IW1_20231004T011211Z_20231004T061915Z_S1A_30_v1.0"


def test_opera_rtc_backscatter_is_read_by_name_and_its_other_layers_are_refused(tmp_path: Path) -> None:
    """OPERA RTC-S1 (gamma0 power, NaN nodata): the name states the scale (no guess). Its layover /
    shadow mask and the static layers (incidence angle 26-45, read as 8-bit luminance: all oil) are no
    backscatter and are refused, naming the file to segment."""
    lin = (10 ** (_db() / 10)).astype(np.float32)
    lin[:, :12] = np.nan
    src = write_tif(tmp_path / f"{OPERA}_VV.tif", lin, nodata=float("nan"))
    r, notes = _run(src, tmp_path / "c.tif")
    assert r["input_scale"] == "linear" and not any("guessed" in n for n in notes)
    assert any("OPERA RTC-S1 file name says (gamma0 power)" in n for n in notes)
    ref, _ = _run(write_tif(tmp_path / "ref.tif", lin, nodata=float("nan")), tmp_path / "r.tif")
    np.testing.assert_array_equal(_classes(tmp_path / "c.tif"), _classes(tmp_path / "r.tif"))
    static = "OPERA_L2_RTC-S1-STATIC_T069-147170-IW1_20140403_S1A_30_v1.0_incidence_angle.tif"
    for name, data in ((f"{OPERA}_mask.tif", np.zeros((32, 32), np.uint8)),
                       (static, np.full((32, 32), 38.5, np.float32))):  # fmt: skip
        with pytest.raises(InputError, match=r"not backscatter \(segment the product's _VV\.tif"):
            _run(write_tif(tmp_path / name, data), tmp_path / "x.tif")


def test_batch_walk_counts_opera_backscatter_only_and_reads_its_time(tmp_path: Path) -> None:
    from dakd_edge.batch.inputs import expand_inputs

    d = tmp_path / "opera"
    d.mkdir()
    lin = (10 ** (_db() / 10)).astype(np.float32)
    for suffix in ("_VV.tif", "_VH.tif", "_mask.tif"):
        write_tif(d / f"{OPERA}{suffix}", lin)
    (d / f"{OPERA}.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    write_tif(
        d / "OPERA_L2_RTC-S1-STATIC_T069-147170-IW1_20140403_S1A_30_v1.0_local_incidence_angle.tif", lin
    )
    notes: dict[str, list[str]] = {}
    scenes = expand_inputs([d], notes=notes)
    # the VH beside its VV does not run (its false alarms would merge with the VV's in the layer)
    assert [s.path.name for s in scenes] == [f"{OPERA}_VV.tif"]
    assert scenes[0].meta == {"start_time": "2023-10-04T01:12:11+00:00", "platform": "sentinel-1a"}
    (note,) = notes[scenes[0].id]
    assert note.startswith(f"{OPERA}_VH.tif is the cross-polarised image of the product whose co-polarised")
    (alone,) = expand_inputs([d / f"{OPERA}_VH.tif"])  # given alone, it runs
    assert alone.path.name == f"{OPERA}_VH.tif"


def test_batch_walk_survives_symlink_loops(tmp_path: Path) -> None:
    """`ln -s . a; ln -s . b` in a scene folder made the walk branch twice per level until ELOOP
    (about 2^40 calls: a hang); each folder is walked once."""
    from dakd_edge.batch.inputs import expand_inputs

    d = tmp_path / "loop"
    d.mkdir()
    write_tif(d / "s.tif", blob_scene(16, 16))
    (d / "a").symlink_to(".")
    (d / "b").symlink_to(".")
    (d / "sub").mkdir()
    write_tif(d / "sub" / "t.tif", blob_scene(16, 16))
    (d / "sub" / "up").symlink_to("..")
    assert sorted(s.path.name for s in expand_inputs([d])) == ["s.tif", "t.tif"]


def test_a_users_own_suffix_on_a_product_name_is_still_the_image() -> None:
    """Review: any suffix but a polarisation was taken for an auxiliary layer (HyP3 NAME_subset.tif
    refused, dropped from batch walks): only the providers' own layer names are."""
    from dakd_edge.data.products import auxiliary_layer

    hyp3 = "S1A_IW_20230105T050102_DVP_RTC30_G_gpuned_ABCD"
    for own in (f"{hyp3}_subset.tif", f"{hyp3}_aoi_VV.tif", f"{OPERA}_clip.tif", f"{hyp3}_VV_db.tif"):
        assert auxiliary_layer(own) is None, own
    for aux in (f"{hyp3}_ls_map.tif", f"{hyp3}_inc_map.tif", f"{OPERA}_mask.tif", f"{OPERA}.h5"):
        assert auxiliary_layer(aux) is not None, aux
