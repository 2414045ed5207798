"""Sentinel-1 GRD reading and calibration (dakd_edge.data.sentinel1).

Small generated SAFE products (write_minimal_safe) run everywhere; the real S1B product metadata and
the SOS patches in ../shared/data are used when present (skipped otherwise).
"""

from __future__ import annotations

import bisect
import functools
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.data.sentinel1 import (
    SIGMA0_FLOOR,
    build_synthetic_product,
    is_sentinel1_product,
    open_product,
    write_minimal_safe,
    zip_product,
)
from dakd_edge.data.synthetic import SceneConfig
from dakd_edge.errors import InputError

SOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sos" / "train" / "sentinel"

H, W = 256, 384
# Round trip tolerances (dB), from uint16 rounding of DN = sqrt(sigma0 A^2 + noise): the error grows as
# the signal sinks under the thermal noise. Measured on the fixtures: median ~0.02 dB, p99 ~0.1-0.4 dB.
TOL_MEDIAN_DB = 0.05
TOL_SNR0_DB = 0.5  # every pixel whose signal sigma0 A^2 is above the noise power (SNR >= 0 dB)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("s1")
    return build_synthetic_product(out, shape=(H, W), seed=5, nodata_cols=(7, 4), make_zip=True)


def _db(x: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(x)


# ---- recognising and opening -------------------------------------------------------------------
def test_is_sentinel1_product(product, tmp_path: Path) -> None:
    safe = product.path
    tiff = next((safe / "measurement").glob("*-vv-*.tiff"))
    assert is_sentinel1_product(safe)
    assert is_sentinel1_product(product.zip_path)
    assert is_sentinel1_product(safe / "manifest.safe")
    assert is_sentinel1_product(tiff)
    assert not is_sentinel1_product(safe / "measurement")
    other = tmp_path / "scene.tif"
    other.write_bytes(b"II*\x00")
    assert not is_sentinel1_product(other)
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    assert not is_sentinel1_product(tmp_path / "x.zip")
    assert not is_sentinel1_product(tmp_path / "missing.SAFE")


def test_all_input_forms_read_the_same(product) -> None:
    safe = product.path
    forms = [safe, product.zip_path, safe / "manifest.safe", next((safe / "measurement").glob("*-vv-*.tiff"))]
    ref = None
    for f in forms:
        with open_product(f) as p:
            assert p.meta.polarisation == "VV"
            assert p.meta.polarisations == ("VV", "VH")
            assert p.shape == (H, W)
            s = p.read_sigma0(10, 90, 20, 300)
            assert s.dtype == np.float32 and s.shape == (80, 280)
            if ref is None:
                ref = s
            np.testing.assert_array_equal(s, ref)
    with open_product(product.zip_path) as p:
        assert p.measurement.startswith("/vsizip/")


def test_metadata_and_gcps(product) -> None:
    with open_product(product.path) as p:
        m = p.meta
        assert (m.mission, m.mode, m.product_type, m.resolution) == ("S1A", "IW", "GRD", "H")
        assert (m.lines, m.samples) == (H, W)
        assert m.pass_direction == "DESCENDING"
        assert m.absolute_orbit == 38000 and m.ipf_version == "003.40"
        assert m.start_time < m.stop_time
        assert m.range_pixel_spacing == m.azimuth_pixel_spacing == 10.0
        assert m.footprint[0] == m.footprint[-1] and len(m.footprint) > 4
        assert m.footprint_wkt().startswith("POLYGON ((")
        assert set(m.to_dict()) >= {"mission", "footprint", "polarisations", "start_time"}
        gcps = p.gcps
        assert len(gcps) == 10 * 21 and p.crs.to_epsg() == 4326
        assert gcps[0].row == 0 and gcps[0].col == 0 and gcps[-1].row == H - 1 and gcps[-1].col == W - 1
        lon, lat = np.array([g.x for g in gcps]), np.array([g.y for g in gcps])
        assert 39.9 < lat.mean() < 40.1 and 24.9 < lon.mean() < 25.1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_polarisation_choice(product, tmp_path: Path) -> None:
    with open_product(product.path, pol="vh") as p:
        assert p.meta.polarisation == "VH"
    with pytest.raises(InputError, match=r"polarisation HH is not in this product \(it has VV, VH\)"):
        open_product(product.path, pol="HH")
    with pytest.raises(InputError, match="unknown polarisation"):
        open_product(product.path, pol="XX")
    safe = write_minimal_safe(tmp_path / "hh", 64, 96, pols=("HH", "HV"))
    _fill(safe)
    with open_product(safe) as p:
        assert p.meta.polarisation == "HH" and p.meta.polarisations == ("HH", "HV")
    # A measurement TIFF reads its own polarisation by default.
    with open_product(next((product.path / "measurement").glob("*-vh-*.tiff"))) as p:
        assert p.meta.polarisation == "VH"


def _fill(safe: Path) -> None:
    """Write all-ones measurement TIFFs for a bare write_minimal_safe tree."""
    import rasterio

    for ann in (safe / "annotation").glob("s1*.xml"):
        import xml.etree.ElementTree as ET

        info = ET.parse(ann).getroot().find("imageAnnotation/imageInformation")
        h, w = int(info.find("numberOfLines").text), int(info.find("numberOfSamples").text)
        with rasterio.open(safe / "measurement" / f"{ann.stem}.tiff", "w", driver="GTiff", height=h, width=w,
                           count=1, dtype="uint16") as dst:  # fmt: skip
            dst.write(np.full((h, w), 100, np.uint16), 1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_no_denoise_reads_a_product_whose_noise_xml_is_broken(damage: str, tmp_path: Path) -> None:
    """--no-denoise needs no noise annotation: a product with a missing or damaged one still reads,
    while noise removal on it is refused clearly."""
    safe = write_minimal_safe(tmp_path, 32, 48)
    _fill(safe)
    for f in (safe / "annotation" / "calibration").glob("noise-*vv*.xml"):
        f.unlink() if damage == "missing" else f.write_text(f.read_text()[:300])
    with pytest.raises(InputError, match=r"noise.*--no-denoise reads the product without it"):
        open_product(safe)
    with open_product(safe, noise=False) as p:
        assert p.noise is None
        s0 = p.read_sigma0(0, 8, 0, 8, denoise=False)
        assert s0.shape == (8, 8) and np.isfinite(s0).all() and (s0 > 0).all()
        with pytest.raises(InputError, match="cannot remove noise"):
            p.read_sigma0(0, 8, 0, 8)
    from dakd_edge.inference.readers import open_scene

    with open_scene(safe, denoise=False) as scene:
        assert np.isfinite(scene.window(0, 8, 0, 8)).all()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    "kind",
    ["slc", "sm", "missing_noise", "corrupt_cal", "cal_zero", "cal_nan", "no_measurement", "size", "not"],
)
def test_clear_errors(kind: str, tmp_path: Path) -> None:
    if kind == "slc":
        safe = write_minimal_safe(tmp_path, 32, 48, product_type="SLC")
        match = "SLC product; only GRD"
    elif kind == "sm":
        safe = write_minimal_safe(tmp_path, 32, 48, mode="SM")
        match = r"SM \(stripmap\) mode; only IW and EW"
    else:
        safe = write_minimal_safe(tmp_path, 32, 48)
        _fill(safe)
        match = {"missing_noise": "missing noise XML", "corrupt_cal": "corrupt calibration XML",
                 "cal_zero": "corrupt calibration: sigmaNought", "cal_nan": "corrupt calibration: sigmaNought",
                 "no_measurement": "no measurement TIFF", "size": "annotation says",
                 "not": "not a Sentinel-1 product"}[kind]  # fmt: skip
        if kind == "missing_noise":
            for f in (safe / "annotation" / "calibration").glob("noise-*vv*.xml"):
                f.unlink()
        elif kind == "corrupt_cal":
            for f in (safe / "annotation" / "calibration").glob("calibration-*vv*.xml"):
                f.write_text(f.read_text()[:500])
        elif kind in ("cal_zero", "cal_nan"):  # a LUT of 0 or NaN: was "no valid pixels", exit 0
            import re

            value = "0" if kind == "cal_zero" else "nan"
            for f in (safe / "annotation" / "calibration").glob("calibration-*vv*.xml"):
                sub = lambda m: m.group(1) + " ".join([value] * len(m.group(2).split())) + m.group(3)  # noqa: E731
                f.write_text(re.sub(r"(<sigmaNought[^>]*>)([^<]*)(</sigmaNought>)", sub, f.read_text()))
        elif kind == "no_measurement":
            for f in (safe / "measurement").glob("*.tiff"):
                f.unlink()
        elif kind == "size":
            import rasterio

            for f in (safe / "measurement").glob("*.tiff"):
                with rasterio.open(f, "w", driver="GTiff", height=10, width=10, count=1, dtype="uint16") as d:
                    d.write(np.ones((10, 10), np.uint16), 1)
        elif kind == "not":
            safe = tmp_path / "x.txt"
            safe.write_bytes(b"")
    with pytest.raises(InputError, match=match) as ei:
        open_product(safe)
    assert "\n" not in str(ei.value)


def test_tiff_outside_a_safe(tmp_path: Path) -> None:
    t = tmp_path / "scene.tif"
    t.write_bytes(b"")
    with pytest.raises(InputError, match="not a measurement TIFF inside a Sentinel-1 SAFE tree"):
        open_product(t)


def test_zip_without_safe(tmp_path: Path) -> None:
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("hello.txt", "x")
    with pytest.raises(InputError, match="no Sentinel-1 SAFE"):
        open_product(z)


def test_zip_with_two_products_is_refused(tmp_path: Path) -> None:
    """A zip of two SAFEs: which one is meant is the user's to say (one was processed, unnamed)."""
    safes = [write_minimal_safe(tmp_path / d, 32, 48, orbit=o) for d, o in (("a", 38000), ("b", 38001))]
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for safe in safes:
            for f in safe.rglob("*"):
                zf.write(f, f"{safe.name}/{f.relative_to(safe)}")
    assert is_sentinel1_product(z)
    with pytest.raises(InputError, match="holds 2 products") as ei:
        open_product(z)
    assert all(s.name in str(ei.value) for s in safes) and "\n" not in str(ei.value)


def _as_cog(safe: Path, dest: Path) -> Path:
    """The product as the Copernicus Data Space distributes it: ``NAME_COG.SAFE``, every annotation,
    calibration, noise and measurement file named ``...-001-cog.xml`` / ``-cog.tiff``."""
    cog = dest / f"{safe.name[: -len('.SAFE')]}_COG.SAFE"
    shutil.copytree(safe, cog)
    for f in [*cog.rglob("*-grd-*.xml"), *cog.rglob("*-grd-*.tiff")]:
        f.rename(f.with_name(f"{f.stem}-cog{f.suffix}"))
    manifest = cog / "manifest.safe"
    manifest.write_text(re.sub(r"(-\d{3})\.(xml|tiff)", r"\1-cog.\2", manifest.read_text()))
    return cog


def _as_flattened(safe: Path, dest: Path) -> Path:
    """The product as AWS / Earth Search / Planetary Computer copies it: a folder named after the
    product (no .SAFE), ``measurement/iw-vv.tiff``, ``annotation/iw-vv.xml``, ``annotation/calibration/
    calibration-iw-vv.xml`` and ``noise-iw-vv.xml``; no manifest.safe."""
    flat = dest / safe.name[: -len(".SAFE")]
    for sub in ("measurement", "annotation", "annotation/calibration"):
        (flat / sub).mkdir(parents=True)
        for f in (safe / sub).glob("*-grd-*.*"):
            kind, _, rest = f.name.rpartition("s1")
            mode, pol = rest.split("-")[1], rest.split("-")[3]
            shutil.copy(f, flat / sub / f"{kind}{mode}-{pol}{f.suffix}")
    return flat


def test_cog_and_flattened_copies_read_the_same(product, tmp_path: Path) -> None:
    """CDSE's COG products and the flattened copies are the same product: same metadata and sigma0."""
    from dakd_edge.cli.segment import scene_stem

    cog, flat = _as_cog(product.path, tmp_path), _as_flattened(product.path, tmp_path)
    assert sorted(f.name for f in (flat / "measurement").iterdir()) == ["iw-vh.tiff", "iw-vv.tiff"]
    cog_zip = zip_product(cog, tmp_path / f"{cog.name}.zip")
    forms = [cog, cog / "manifest.safe", next((cog / "measurement").glob("*-vv-*-cog.tiff")), cog_zip,
             flat, flat / "measurement" / "iw-vv.tiff"]  # fmt: skip
    with open_product(product.path) as p:
        ref, meta = p.read_sigma0(10, 90, 20, 300), p.meta
    for f in forms:
        assert is_sentinel1_product(f), f
        with open_product(f) as p:
            assert (p.meta.polarisation, p.meta.polarisations, p.shape) == ("VV", ("VV", "VH"), (H, W)), f
            assert p.meta.footprint == meta.footprint and p.meta.absolute_orbit == meta.absolute_orbit
            np.testing.assert_array_equal(p.read_sigma0(10, 90, 20, 300), ref)
    with open_product(flat / "measurement" / "iw-vh.tiff") as p:
        assert p.meta.polarisation == "VH"
    assert scene_stem(cog) == scene_stem(cog_zip) == cog.name[: -len(".SAFE")]
    assert scene_stem(flat / "measurement" / "iw-vv.tiff") == f"{flat.name}-iw-vv"  # iw-vv names no product
    tiff = next((product.path / "measurement").glob("*-vv-*.tiff"))  # outputs were NAME.tiff_classes.tif
    cog_tiff = next((cog / "measurement").glob("*-vv-*-cog.tiff"))
    assert scene_stem(tiff) == tiff.name[: -len(".tiff")] and scene_stem(cog_tiff) == cog_tiff.stem
    assert not is_sentinel1_product(flat / "annotation")  # a folder of XML alone is no product


def _zip_tree(folder: Path, z: Path, top: bool = False) -> Path:
    """Zip ``folder`` as a user would: with the folder inside (``top`` False) or only its contents."""
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder if top else folder.parent).as_posix())
    return z


def test_a_zip_is_named_by_the_product_inside(product, tmp_path: Path) -> None:
    """CDSE OData and download scripts save ``<uuid>.zip`` / ``download.zip``: the SAFE folder inside
    names the product (outputs, batch ids), unless only the zip's name is a product name."""
    from dakd_edge.cli.segment import scene_stem

    name = product.path.name.removesuffix(".SAFE")
    uuid = tmp_path / "3f2a9c1e-0b7d-4c55-9d0e-2a6f1c8e4b11.zip"
    shutil.copy(product.zip_path, uuid)
    with open_product(uuid) as p:
        assert p.meta.name == product.path.name
    assert scene_stem(uuid) == scene_stem(product.zip_path) == scene_stem(product.path) == name
    renamed = tmp_path / "data"  # a product-named zip of a folder that names nothing
    shutil.copytree(product.path, renamed)
    by_zip = _zip_tree(renamed, tmp_path / f"{name}.SAFE.zip")
    assert scene_stem(by_zip) == name
    with open_product(by_zip) as p:
        assert p.meta.name == f"{name}.SAFE"
    top = _zip_tree(product.path, tmp_path / "download.zip", top=True)  # no folder: the zip's name
    assert scene_stem(top) == "download"


def test_a_zipped_flattened_copy_reads_like_its_folder(product, tmp_path: Path) -> None:
    """Someone zipped an Earth Search / AWS folder (no manifest.safe): the same product and name as the
    folder; zipped without its folder, the zip's name names it."""
    from dakd_edge.cli.segment import scene_stem

    flat = _as_flattened(product.path, tmp_path)
    with open_product(flat) as p:
        ref = p.read_sigma0(10, 40, 20, 90)
    for z, stem in ((_zip_tree(flat, tmp_path / "download.zip"), flat.name),
                    (_zip_tree(flat, tmp_path / "scene7.zip", top=True), "scene7")):  # fmt: skip
        assert is_sentinel1_product(z) and scene_stem(z) == stem
        with open_product(z) as p:
            assert (p.meta.name, p.meta.polarisations, p.shape) == (stem, ("VV", "VH"), (H, W))
            np.testing.assert_array_equal(p.read_sigma0(10, 40, 20, 90), ref)
    xml_only = tmp_path / "xml.zip"  # annotation without a measurement TIFF: no product
    with zipfile.ZipFile(xml_only, "w") as zf:
        zf.write(flat / "annotation" / "iw-vv.xml", "annotation/iw-vv.xml")
    assert not is_sentinel1_product(xml_only)
    with pytest.raises(InputError, match=r"no Sentinel-1 SAFE \(no manifest.safe, nor a measurement/"):
        open_product(xml_only)


def test_a_zip_with_a_damaged_directory_is_one_input_error(product, tmp_path: Path) -> None:
    """A zip whose end record is intact but whose central directory is not: zipfile.BadZipFile escaped
    is_sentinel1_product, so ``info``, ``segment`` and ``batch`` died with a traceback."""
    from dakd_edge.batch.inputs import expand_inputs
    from dakd_edge.data.rasterinfo import describe
    from dakd_edge.inference.readers import open_scene

    data = bytearray(product.zip_path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    start = int.from_bytes(data[end + 16 : end + 20], "little")  # the central directory's offset
    data[start : start + 4] = b"XXXX"
    bad = tmp_path / "download.zip"
    bad.write_bytes(data)
    assert zipfile.is_zipfile(bad) and not is_sentinel1_product(bad)
    for read in (describe, lambda p: open_scene(p, 1)):
        with pytest.raises(InputError, match=r"download\.zip: damaged zip \(.*\); download it again"):
            read(bad)
    assert [s.id for s in expand_inputs([bad])] == ["download"]  # it fails in its own scene


@pytest.mark.parametrize(
    ("kind", "match"),
    [("S1A_IW_RAW__0SDV", "RAW product; only GRD"), ("S1A_IW_OCN__2SDV", "OCN product; only GRD"),
     ("S1B_IW_SLC__1SDV", "SLC product; only GRD"), ("S1A_WV_OCN__2SSV", "OCN product; only GRD"),
     ("S1A_S3_GRDH_1SDV", r"SM \(stripmap, beam S3\) mode; only IW and EW GRD")],
)  # fmt: skip
def test_products_we_do_not_read_are_refused_by_name(kind: str, match: str, tmp_path: Path) -> None:
    """RAW and OCN products have no annotation/ folder; an SM product's name gives its beam (S1-S6):
    one line saying why, in every form (the folder, its manifest, a zip under another name)."""
    from dakd_edge.cli.segment import scene_stem

    safe = tmp_path / f"{kind}_20250301T051122_20250301T051147_001234_00ABCD_1F2E.SAFE"
    safe.mkdir()
    (safe / "manifest.safe").write_text("<xfdu/>")
    forms = [safe, safe / "manifest.safe", zip_product(safe, tmp_path / "7b1c.zip")]
    for f in forms:
        assert is_sentinel1_product(f)
        with pytest.raises(InputError, match=f"^{safe.name}: {match}") as ei:
            open_product(f)
        assert "\n" not in str(ei.value)
    assert scene_stem(forms[2]) == safe.stem
    flat = tmp_path / safe.stem  # a flattened copy (no manifest; s3-vv.tiff is no name we read)
    (flat / "annotation").mkdir(parents=True)
    assert is_sentinel1_product(flat)
    with pytest.raises(InputError, match=f"^{flat.name}: {match}"):
        open_product(flat)


@pytest.mark.parametrize(
    ("kw", "name", "pols", "noise_blocks"),
    [(dict(mode="EW", resolution="M", pols=("HH", "HV")), "S1A_EW_GRDM_1SDH_", ("HH", "HV"), 5),
     (dict(mission="S1C", product_pols=("VV",)), "S1C_IW_GRDH_1SSV_", ("VV",), 3),
     (dict(product_pols=("hh",)), "S1A_IW_GRDH_1SSH_", ("HH",), 3)],
)  # fmt: skip
def test_ew_hh_sentinel_1c_and_single_pol_products(kw: dict, name: str, pols: tuple, noise_blocks: int,
                                                   tmp_path: Path) -> None:  # fmt: skip
    """Generated HH/HV products (asked for by ``pols``) and single-pol ones (``product_pols``) read
    like ESA's: the co-pol by default, a missing --pol named with those the product has."""
    prod = build_synthetic_product(tmp_path, shape=(48, 64), seed=2, **kw)
    assert prod.path.name.startswith(name) and prod.pols == pols
    with open_product(prod.path) as p:
        assert (p.meta.mission, p.meta.polarisations, p.meta.polarisation) == (name[:3], pols, pols[0])
        assert len(p.noise.blocks) == noise_blocks
        s = p.read_sigma0(0, 48, 0, 64)
    truth, _ = prod.layout.render(0, 0, 48, 64, output="linear")
    assert np.median(np.abs(_db(s) - _db(truth))) < TOL_MEDIAN_DB
    missing = "VH" if pols[0] == "VV" else "VV"
    with pytest.raises(
        InputError, match=rf"polarisation {missing} is not in this product \(it has {', '.join(pols)}\)"
    ):
        open_product(prod.path, pol=missing)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_measurement_tiff_without_gcps(tmp_path: Path) -> None:
    """The annotation georeferences a product whose TIFF lacks GCPs; the TIFF alone (uint16, no
    georeference at all) is still a raw measurement, never segmented as a plain raster."""
    import rasterio

    from dakd_edge.data.sentinel1 import is_loose_measurement

    safe = write_minimal_safe(tmp_path, 32, 48, pols=("VV",))
    _fill(safe)  # TIFFs without GCPs
    tiff = next((safe / "measurement").glob("*.tiff"))
    with rasterio.open(tiff) as ds:
        assert ds.gcps == ([], None) and ds.crs is None
    with open_product(tiff) as p:
        assert len(p.gcps) == 210 and p.read_dn(0, 1, 0, 1)[0, 0] == 100
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(tiff, loose / tiff.name)
    assert is_loose_measurement(loose / tiff.name)
    with rasterio.open(loose / "s1a-iw-grd-vv-calibrated.tif", "w", driver="GTiff", height=4, width=4,
                       count=1, dtype="float32") as d:  # fmt: skip
        d.write(np.ones((4, 4), np.float32), 1)
    assert not is_loose_measurement(loose / "s1a-iw-grd-vv-calibrated.tif")


# ---- calibration -------------------------------------------------------------------------------
def _ref_lut(lines, pixels, values, line: float, pixel: float) -> float:
    """Independent pointwise bilinear LUT interpolation (pure Python, clamped at the ends)."""

    def along(k: int) -> float:
        px, v = pixels[k], values[k]
        if pixel <= px[0]:
            return v[0]
        if pixel >= px[-1]:
            return v[-1]
        j = bisect.bisect_right(px, pixel) - 1
        return v[j] + (v[j + 1] - v[j]) * (pixel - px[j]) / (px[j + 1] - px[j])

    if line <= lines[0]:
        return along(0)
    if line >= lines[-1]:
        return along(len(lines) - 1)
    k = bisect.bisect_right(lines, line) - 1
    a, b = along(k), along(k + 1)
    return a + (b - a) * (line - lines[k]) / (lines[k + 1] - lines[k])


def _xml_vectors(path: Path, vec: str, lut: str, missing_zeros: bool = False):
    """(lines, pixels, values, root) of the LUT vectors of one XML; ``missing_zeros`` leaves out the 0
    values (ESA: a 0 in a denoising vector is a missing value) and the vectors left without any."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    lines, pixels, values = [], [], []
    for v in root.iter(vec):
        px = [float(x) for x in v.find("pixel").text.split()]
        vals = [float(x) for x in v.find(lut).text.split()]
        if missing_zeros:
            px, vals = [x for x, y in zip(px, vals, strict=True) if y != 0], [y for y in vals if y != 0]
            if not vals:
                continue
        lines.append(float(v.find("line").text))
        pixels.append(px)
        values.append(vals)
    return lines, pixels, values, root


def _known(xs: str, values: str) -> tuple[list[float], list[float]]:
    """(x, value) lists of an XML vector without its 0 values (missing values)."""
    pairs = [(float(x), float(v)) for x, v in zip(xs.split(), values.split(), strict=True) if float(v) != 0]
    return [x for x, _ in pairs], [v for _, v in pairs]


def _check_luts_against_reference(safe: Path, windows, n_points: int = 300) -> None:
    cal_xml = next((safe / "annotation" / "calibration").glob("calibration-*-vv-*.xml"))
    noise_xml = next((safe / "annotation" / "calibration").glob("noise-*-vv-*.xml"))
    cl, cp, cv, _ = _xml_vectors(cal_xml, "calibrationVector", "sigmaNought")
    nl, np_, nv, nroot = _xml_vectors(noise_xml, "noiseRangeVector", "noiseRangeLut", missing_zeros=True)
    blocks = []
    for b in nroot.iter("noiseAzimuthVector"):
        blocks.append((int(b.find("firstAzimuthLine").text), int(b.find("lastAzimuthLine").text),
                       int(b.find("firstRangeSample").text), int(b.find("lastRangeSample").text),
                       *_known(b.find("line").text, b.find("noiseAzimuthLut").text)))  # fmt: skip
    blocks = [b for b in blocks if b[5]]  # a block without any value is no block
    rng = np.random.default_rng(0)
    with open_product(safe) as p:
        for y0, y1, x0, x1 in windows:
            a = p.calibration.window(y0, y1, x0, x1)
            n = p.noise.window(y0, y1, x0, x1)
            for _ in range(n_points // len(windows)):
                y, x = int(rng.integers(y0, y1)), int(rng.integers(x0, x1))
                ra = _ref_lut(cl, cp, cv, y, x)
                rn = _ref_lut(nl, np_, nv, y, x)
                for fl, ll, fs, ls, bl, bv in blocks:
                    if fl <= y <= ll and fs <= x <= ls:
                        rn *= _ref_lut([0.0], [bl], [bv], 0.0, y)
                        break
                assert a[y - y0, x - x0] == pytest.approx(ra, rel=2e-6)
                assert n[y - y0, x - x0] == pytest.approx(rn, rel=2e-6, abs=1e-3)


def test_luts_match_independent_reference(product) -> None:
    _check_luts_against_reference(product.path, [(0, H, 0, W), (37, 101, 150, 383), (255, 256, 0, 10)])


def test_real_luts_match_independent_reference(real_s1: Path) -> None:
    # Windows across swath borders (IW1/IW2 at pixel 8890), both product ends, and a mid-scene tile.
    _check_luts_against_reference(real_s1, [(0, 64, 8800, 9000), (16640, 16705, 25900, 26102),
                                            (7000, 7512, 12000, 12512)], n_points=600)  # fmt: skip


def test_real_far_range_noise_does_not_ramp_to_zero(real_s1: Path) -> None:
    """The real product's noise vectors end in 0 values past the swath's far edge (from pixel 25981 at
    line 9352); ESA counts those as missing. Between the last annotated value (1352 at pixel 25941) and
    the first 0 the noise was interpolated down to 0 (34 at pixel 25980): a pixel at the NESZ there read
    up to +2.7 dB too bright, if its noise is that of the last annotated value, which is now kept."""
    with open_product(real_s1) as p:
        n = p.noise.window(9352, 9353, 25941, 25981)[0]
        whole = p.noise.window(0, p.height, 0, p.width)
    assert n.min() >= 0.999 * n[0] and n[0] == pytest.approx(1352.4, rel=1e-3)
    assert whole.min() > 0  # zeros mean "missing" everywhere: no pixel is left without its noise


def _zero_noise(safe: Path, gap: tuple[int, int], border: int, az_lines: tuple[int, int]) -> None:
    """Rewrite the noise XML of ``safe`` as IPF 003.51/003.52 wrote that of long datatakes: 0 (missing)
    range noise over ``gap`` (pixels) in every vector, the last ``border`` values 0 as at the product's
    far edge, and 0 azimuth values over ``az_lines`` of the first block (a missing value of any vector)."""
    import xml.etree.ElementTree as ET

    f = next((safe / "annotation" / "calibration").glob("noise-*-vv-*.xml"))
    tree = ET.parse(f)
    for v in tree.getroot().iter("noiseRangeVector"):
        px = np.array(v.find("pixel").text.split(), float)
        lut = np.array(v.find("noiseRangeLut").text.split(), float)
        lut[(px >= gap[0]) & (px <= gap[1])] = 0.0
        lut[len(lut) - border :] = 0.0
        v.find("noiseRangeLut").text = " ".join(f"{x:.6e}" for x in lut)
    b = next(tree.getroot().iter("noiseAzimuthVector"))
    lines = np.array(b.find("line").text.split(), float)
    lut = np.array(b.find("noiseAzimuthLut").text.split(), float)
    lut[(lines >= az_lines[0]) & (lines <= az_lines[1])] = 0.0
    b.find("noiseAzimuthLut").text = " ".join(f"{x:.6e}" for x in lut)
    tree.write(f, encoding="UTF-8", xml_declaration=True)


def test_zero_noise_values_are_missing_not_zero_noise(tmp_path: Path) -> None:
    """ESA (STEP forum, on the IW1/IW2 gap of IPF 003.51/003.52 GRD products, 2022-03 to 2023-03): "0
    values in the denoising vectors have to be considered as missing values, and not as valid values
    ... This applies both here, and in the borders of the products" (as nansencenter's s1denoise reads
    them: 0 -> NaN). The DNs still hold the noise there, so reading 0 as "no noise" left a bright strip:
    sigma0 of dark sea +3.4 dB (median) in the gap. Missing values are now left out of the interpolation."""
    h, w = 160, 480  # IW: swaths at pixels 0-159, 160-319, 320-479; noise vectors every 40 px from 20
    prod = build_synthetic_product(tmp_path, shape=(h, w), seed=3, pols=("VV",))
    with open_product(prod.path) as p:
        noise = p.noise.window(0, h, 0, w)
    _zero_noise(prod.path, gap=(120, 220), border=2, az_lines=(40, 90))
    with open_product(prod.path) as p:
        missing = p.noise.window(0, h, 0, w)
        s = p.read_sigma0(0, h, 0, w)
    # Missing values leave the noise unknown there; interpolated from the values around it, it is off by
    # what a linear LUT misses of this fixture's steep scalloping (its peak at the IW1/IW2 border, its
    # rise towards the far edge): -15 % and -24 % at worst. With the 0 values it was 0.
    ratio = missing / noise
    gap, far, az = np.s_[:, 100:240], np.s_[:, 440:], np.s_[40:91, :100]
    assert ratio[gap].min() > 0.8 and ratio[far].min() > 0.7 and ratio[az].min() > 0.99
    assert ratio.max() < 1.01
    truth, _ = prod.layout.render(0, 0, h, w, output="linear")
    err = _db(s[gap]) - _db(truth[gap])
    dark = truth[gap] * p.calibration.window(0, h, 100, 240) ** 2 < noise[gap]  # signal under the noise
    assert dark.any() and np.median(err[dark]) < 1.0, np.median(err[dark])  # was +3.4 dB
    assert np.median(np.abs(err)) < 2 * TOL_MEDIAN_DB


def test_azimuth_noise_in_several_blocks_per_swath(tmp_path: Path) -> None:
    """EW products (and long IW ones) annotate several noiseAzimuthVector blocks per sub-swath, each over
    its own lines (31 in one EW GRDM product, as titiler-openeo's SAR ADR counted), some with a single
    line value (isce2 PR 202: S1B_IW_GRDH_1SDV_20200129T231132_..._46CD). Each block scales its own
    rectangle, a single value is constant over it: the same noise as one block per swath."""
    import xml.etree.ElementTree as ET

    h, w = 120, 200
    prod = build_synthetic_product(tmp_path, shape=(h, w), seed=1, mode="EW", resolution="M", pols=("HH",))
    with open_product(prod.path) as p:
        whole = p.noise.window(0, h, 0, w)
        range_only = p.noise.range.window(0, h, 0, w)
    f = next((prod.path / "annotation" / "calibration").glob("noise-*-hh-*.xml"))
    tree = ET.parse(f)
    lst = tree.getroot().find("noiseAzimuthVectorList")
    for b in list(lst):
        lst.remove(b)
        lines = np.array(b.find("line").text.split(), int)
        lut = np.array(b.find("noiseAzimuthLut").text.split(), float)
        for a, z in ((0, 39), (40, 79), (80, h - 1)):
            part = ET.fromstring(ET.tostring(b))
            part.find("firstAzimuthLine").text, part.find("lastAzimuthLine").text = str(a), str(z)
            sel = (lines >= a) & (lines <= z + 10) if a < 80 else lines == 80  # the last: one value
            part.find("line").text = " ".join(map(str, lines[sel]))
            part.find("noiseAzimuthLut").text = " ".join(f"{v:.6e}" for v in lut[sel])
            lst.append(part)
    lst.set("count", str(len(lst)))
    tree.write(f, encoding="UTF-8", xml_declaration=True)
    with open_product(prod.path) as p:
        assert len(p.noise.blocks) == 15
        split = p.noise.window(0, h, 0, w)
        assert p.noise.point(100, 10) == pytest.approx(float(split[100, 10]), rel=1e-6)
    np.testing.assert_allclose(split[:80], whole[:80], rtol=1e-6)  # lines 0..79: the same LUT values
    factor = split[80:] / range_only[80:]
    np.testing.assert_allclose(factor, np.broadcast_to(factor[:1], factor.shape), rtol=1e-6)  # constant
    np.testing.assert_allclose(factor[0], whole[80] / range_only[80], rtol=1e-6)


def test_round_trip(product) -> None:
    with open_product(product.path) as p:
        s = p.read_sigma0(0, H, 0, W)
        truth, _ = product.layout.render(0, 0, H, W, output="linear")
        a = p.calibration.window(0, H, 0, W)
        noise = p.noise.window(0, H, 0, W)
    valid = np.isfinite(s)
    left, right = product.nodata_cols
    assert not valid[:, :left].any() and not valid[:, W - right :].any()
    assert valid[:, left : W - right].all()
    err = np.abs(_db(s[valid]) - _db(truth[valid]))
    snr_ok = (truth * a * a >= noise)[valid]
    assert np.median(err) < TOL_MEDIAN_DB
    assert err[snr_ok].max() < TOL_SNR0_DB
    assert s[valid].min() >= SIGMA0_FLOOR * (1 - 1e-6)


def test_windows_are_consistent(product) -> None:
    with open_product(product.path) as p:
        full = p.read_sigma0(0, H, 0, W)
        parts = np.concatenate([p.read_sigma0(y, min(H, y + 100), 0, W) for y in range(0, H, 100)])
        np.testing.assert_array_equal(np.isnan(full), np.isnan(parts))
        np.testing.assert_allclose(full[np.isfinite(full)], parts[np.isfinite(parts)], rtol=1e-6)
        bands = list(p.iter_bands(100))
        assert [b[0] for b in bands] == [0, 100, 200] and bands[-1][1].shape == (H - 200, W)
        with pytest.raises(InputError, match="outside"):
            p.read_sigma0(0, H + 1, 0, W)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_noise_floor_and_no_denoise(tmp_path: Path) -> None:
    # DN^2 below the thermal noise (as in real dark sea where the noise LUT overestimates): noise removal
    # gives values <= 0 -> the -35 dB floor, never NaN; DN == 0 -> NaN (no data).
    import rasterio

    safe = write_minimal_safe(tmp_path, 64, 96, pols=("VV",))
    dn = np.full((64, 96), 200, np.uint16)
    dn[:, :40] = 30  # 900 < noise (~2000-2800)
    dn[:5, 90:] = 0
    with rasterio.open(next((safe / "annotation").glob("s1*.xml")).parent.parent / "measurement"
                       / (next((safe / "annotation").glob("s1*.xml")).stem + ".tiff"),
                       "w", driver="GTiff", height=64, width=96, count=1, dtype="uint16") as d:  # fmt: skip
        d.write(dn, 1)
    with open_product(safe) as p:
        s = p.read_sigma0(0, 64, 0, 96)
        raw = p.read_sigma0(0, 64, 0, 96, denoise=False)
        a = p.calibration.window(0, 64, 0, 96)
    assert np.isnan(s[:5, 90:]).all() and np.isnan(raw[:5, 90:]).all()
    valid = dn > 0
    assert np.isfinite(s[valid]).all()
    assert (s[:, :40] == np.float32(SIGMA0_FLOOR)).all()
    assert (s[:, 40:][valid[:, 40:]] > SIGMA0_FLOOR).all()
    np.testing.assert_allclose(
        raw[valid], (dn.astype(np.float64) ** 2 / a.astype(np.float64) ** 2)[valid], rtol=1e-5
    )
    assert (raw[valid] >= s[valid]).all()


@pytest.mark.parametrize("variant", [dict(mode="EW", resolution="M"), dict(ipf="002.72")])
def test_ew_and_old_ipf(variant: dict, tmp_path: Path) -> None:
    prod = build_synthetic_product(tmp_path, shape=(160, 200), seed=4, **variant)
    with open_product(prod.path) as p:
        assert p.meta.mode == variant.get("mode", "IW")
        assert len(p.noise.blocks) == (5 if variant.get("mode") == "EW" else 0)
        s = p.read_sigma0(0, 160, 0, 200)
    truth, _ = prod.layout.render(0, 0, 160, 200, output="linear")
    assert np.median(np.abs(_db(s) - _db(truth))) < TOL_MEDIAN_DB


def test_zip_product_layout(product, tmp_path: Path) -> None:
    z = zip_product(product.path, tmp_path / "p.zip")
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        assert all(n.startswith(product.path.name + "/") for n in names)
        tif = [i for i in zf.infolist() if i.filename.endswith(".tiff")]
        assert tif and all(i.compress_type == zipfile.ZIP_STORED for i in tif)


# ---- the real product --------------------------------------------------------------------------
def test_real_product_metadata(real_s1: Path) -> None:
    import rasterio

    with open_product(real_s1) as p:
        m = p.meta
        assert (m.mission, m.mode, m.product_type, m.resolution, m.polarisation) == (
            "S1B",
            "IW",
            "GRD",
            "H",
            "VV",
        )
        assert (m.lines, m.samples, m.absolute_orbit) == (16705, 26102, 30148)
        assert m.pass_direction == "DESCENDING" and m.ipf_version == "003.40"
        assert m.start_time.startswith("2021-12-23T05:11:22") and m.stop_time.startswith(
            "2021-12-23T05:11:47"
        )
        lon, lat = np.array(m.footprint).T
        assert 40.8 < lat.min() < 41.0 and 42.7 < lat.max() < 42.9
        assert 11.8 < lon.min() < 11.9 and 15.3 < lon.max() < 15.4
        ours = p.gcps
        assert len(p.noise.blocks) == 3
    with rasterio.open(real_s1 / "manifest.safe") as ds:  # GDAL's SAFE driver: same GCPs
        gdal_gcps, crs = ds.gcps
    assert crs.to_epsg() == 4326 and len(gdal_gcps) == len(ours) == 210
    for a, b in zip(ours, gdal_gcps, strict=True):
        assert (a.row, a.col) == (b.row, b.col)
        assert a.x == pytest.approx(b.x, abs=1e-9) and a.y == pytest.approx(b.y, abs=1e-9)


def test_real_crop_round_trip(tmp_path: Path, real_s1: Path) -> None:
    # A 512 x 1024 crop at line 8000, pixel 8400: crosses the IW1/IW2 border (8890); cropped XML must
    # reproduce the original LUTs and the geolocation exactly.
    from dakd_edge.data.landmask import make_georef

    oy, ox, h, w = 8000, 8400, 512, 1024
    prod = build_synthetic_product(tmp_path, source=real_s1, shape=(h, w), offset=(oy, ox), seed=9)
    with open_product(real_s1) as full, open_product(prod.path) as crop:
        np.testing.assert_array_equal(
            full.calibration.window(oy, oy + h, ox, ox + w), crop.calibration.window(0, h, 0, w)
        )
        np.testing.assert_allclose(
            full.noise.window(oy, oy + h, ox, ox + w), crop.noise.window(0, h, 0, w), rtol=1e-6
        )
        s = crop.read_sigma0(0, h, 0, w)
        g_full, g_crop = make_georef(full.gcps), make_georef(crop.gcps)
        rr, cc = np.meshgrid(np.arange(0, h, 37.0), np.arange(0, w, 41.0), indexing="ij")
        a, b = g_full.lonlat(rr + oy, cc + ox), g_crop.lonlat(rr, cc)
        r2, c2 = g_full.rowcol(*b)
        assert np.hypot(r2 - rr - oy, c2 - cc - ox).max() < 1e-3  # pixels
        np.testing.assert_allclose(a[0], b[0], atol=1e-9)
        np.testing.assert_allclose(a[1], b[1], atol=1e-9)
    truth, _ = prod.layout.render(0, 0, h, w, output="linear")
    assert np.median(np.abs(_db(s) - _db(truth))) < TOL_MEDIAN_DB


# ---- luminance vs the SOS training patches -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _sos_stats() -> dict[str, np.ndarray]:
    """Per-patch medians of unit luminance over sea (mask black) and oil (mask white), patches with both."""
    from PIL import Image

    sea, oil = [], []
    for f in sorted(SOS.glob("*_sat.jpg")):
        im = np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0
        m = np.asarray(Image.open(f.with_name(f.name.replace("_sat.jpg", "_mask.png"))).convert("L")) > 127
        if (~m).sum() > 500 and m.sum() > 500:
            sea.append(np.median(im[~m]))
            oil.append(np.median(im[m]))
    return {"sea": np.array(sea), "oil": np.array(oil), "contrast": np.array(sea) - np.array(oil)}


def _synthetic_stats(tmp_path: Path, seeds=(0, 1, 2)) -> dict[str, float]:
    """Calibrated synthetic products -> dB -> the model's scaling (to_unit); medians over sea / oil."""
    from dakd_edge.data.scaling import to_unit

    cfg = SceneConfig(land_probability=0.0, oil_fraction=(0.03, 0.06))
    sea, oil = [], []
    for seed in seeds:
        prod = build_synthetic_product(
            tmp_path / str(seed), shape=(512, 512), seed=seed, cfg=cfg, pols=("VV",)
        )
        with open_product(prod.path) as p:
            u = to_unit(p.read_sigma0(0, 512, 0, 512), "linear")
        _, lab = prod.layout.render(0, 0, 512, 512, output="linear")
        if (lab == 1).sum() > 500:
            sea.append(np.median(u[lab == 0]))
            oil.append(np.median(u[lab == 1]))
    sea_a, oil_a = np.array(sea), np.array(oil)
    return {
        "sea": float(np.median(sea_a)),
        "oil": float(np.median(oil_a)),
        "contrast": float(np.median(sea_a - oil_a)),
    }


# Measured (unit luminance; x 40 = dB on the model's -35..5 dB scale): SOS Sentinel train patches with
# both classes (934): per-patch median sea 0.439 (IQR 0.32-0.54), oil 0.241 (0.18-0.32), sea-oil
# contrast 0.159 (IQR 0.114-0.234). Calibrated synthetic products: sea ~0.59, oil ~0.37, contrast ~0.22.
# The contrast lies inside the SOS inter-quartile range (0.06 = 2.4 dB above its median); the absolute
# level does not: synthetic sea is ~0.15 (6 dB) brighter than SOS sea (see the xfail test below).
TOL_CONTRAST = 0.08  # |synthetic - SOS median| of the per-patch sea-oil contrast
TOL_LEVEL = 0.06


@pytest.mark.skipif(not SOS.is_dir(), reason="../shared/data/sos not present")
def test_luminance_matches_sos(tmp_path: Path) -> None:
    sos = _sos_stats()
    syn = _synthetic_stats(tmp_path)
    assert np.median(sos["contrast"]) > 0 and syn["contrast"] > 0  # oil darker than sea in both
    q25, q50, q75 = np.percentile(sos["contrast"], [25, 50, 75])
    assert q25 <= syn["contrast"] <= q75, (syn, q25, q75)
    assert abs(syn["contrast"] - q50) < TOL_CONTRAST, (syn, q50)


@pytest.mark.skipif(not SOS.is_dir(), reason="../shared/data/sos not present")
@pytest.mark.xfail(strict=True, reason="calibrated sea is ~0.15 (6 dB) brighter than SOS sea in unit luminance "
                   "(scaling's -35..5 dB range vs the SOS 8-bit stretch); reported, not forced")  # fmt: skip
def test_luminance_level_matches_sos(tmp_path: Path) -> None:
    sos = _sos_stats()
    syn = _synthetic_stats(tmp_path, seeds=(0, 1))
    assert abs(syn["sea"] - np.median(sos["sea"])) < TOL_LEVEL, (syn, np.median(sos["sea"]))
    assert abs(syn["oil"] - np.median(sos["oil"])) < TOL_LEVEL, (syn, np.median(sos["oil"]))


def test_synthetic_product_on_a_full_or_read_only_disk(tmp_path: Path) -> None:
    """Was "Write failed. See previous exception for details." (full) and an OSError naming the hidden
    staging folder (read-only); now one line naming the folder, and nothing left behind."""
    from dakd_edge.errors import OutputError
    from tests.fs import fill, leftovers, tmpfs

    with tmpfs(tmp_path / "disk", "4m") as disk:
        with pytest.raises(OutputError, match=rf"^no space left on {disk} for a product in {disk}/p: needs"):
            build_synthetic_product(disk / "p", shape=(3000, 3000))
        fill(disk, leave=1_700_000)  # past the 1.5 MB estimate; the product needs ~3.5 MB
        with pytest.raises(
            OutputError, match=rf"^no space left on {disk} \(writing {disk}/p/S1A_.*\.SAFE\)$"
        ):
            build_synthetic_product(disk / "p")
        assert leftovers(disk) == ["hog.bin"]
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        with pytest.raises(
            OutputError, match=rf"^{ro}: cannot create files there \(Read-only file system\)$"
        ):
            build_synthetic_product(ro)


def test_a_zip_whose_product_lies_under_dotdot_is_no_product(product, tmp_path: Path) -> None:
    """A zip holding its product under ``../`` named it '..': `-o 'out/{stem}/classes.tif'` wrote to
    out/../classes.tif. Members under '..' (or an absolute path) are no product's."""
    from dakd_edge.data.sentinel1 import zip_product_name

    z = tmp_path / "download.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(product.path.rglob("*")):
            if f.is_file():
                zf.write(f, "../" + f.relative_to(product.path).as_posix())
    assert zip_product_name(z) is None and not is_sentinel1_product(z)
    with pytest.raises(InputError, match="holds no Sentinel-1"):
        open_product(z)


def test_an_oversized_product_xml_is_refused_unread(product, tmp_path: Path, monkeypatch) -> None:
    """A 5 MB zip whose calibration XML inflates to 2 GiB took 4.3 GB of memory and ended in a
    traceback: an XML past MAX_XML_BYTES is refused from its declared size, zip or folder."""
    import dakd_edge.data.sentinel1 as s1

    sizes = [f.stat().st_size for f in product.path.rglob("*.xml")]
    monkeypatch.setattr(s1, "MAX_XML_BYTES", min(sizes) - 1)  # as if every XML were over the real cap
    for form in (product.zip_path, product.path):
        with pytest.raises(InputError, match=r"\.xml: [\d,]+ bytes, larger than any Sentinel-1 product XML"):
            open_product(form)
