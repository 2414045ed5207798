"""describe_raster (``dakd-edge info``) on unusual rasters: complex data, a CRS without a transform."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

from dakd_edge.data.rasterinfo import describe_raster


def _write(path: Path, a: np.ndarray, **kw) -> Path:
    prof = dict(driver="GTiff", height=a.shape[0], width=a.shape[1], count=1, dtype=a.dtype, crs="EPSG:32634")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof, **kw) as ds:
            ds.write(a, 1)
    return path


def test_complex_raster_is_described_by_amplitude(tmp_path: Path) -> None:
    """F5: percentiles of complex values raised a TypeError traceback; the amplitude is described."""
    z = (np.full((40, 50), 3.0) + 4.0j).astype(np.complex64)
    d = describe_raster(_write(tmp_path / "c.tif", z, transform=from_origin(0, 0, 10, 10)))
    b = d["bands"][0]
    assert b["min"] == b["max"] == 5.0 and b["valid_fraction"] == 1.0
    assert "complex" in b["scale"] and "amplitude" in b["values"]


def test_crs_without_transform_is_not_georeferenced(tmp_path: Path) -> None:
    """F7.2: as in ``segment``, a CRS with an identity transform is no georeference."""
    d = describe_raster(_write(tmp_path / "n.tif", np.ones((8, 8), np.uint8), transform=Affine.identity()))
    assert d["georeference"] == "none"


def test_beam_dimap_is_described_by_its_named_bands(tmp_path: Path) -> None:
    """``info`` on SNAP's .dim failed in GDAL ("an ENVI header file"); its bands are described with
    their names, and SNAP's no-data 0 (declared in the .dim only) is left out of the statistics."""
    from tests.inference.test_raster_variants import write_dimap

    a = np.full((40, 50), 0.03, np.float32)
    a[:10] = 0.0
    d = describe_raster(write_dimap(tmp_path, {"Sigma0_VH": a * 0.2, "Sigma0_VV": a}))
    assert [b["description"] for b in d["bands"]] == ["Sigma0_VH", "Sigma0_VV"] and d["nodata"] == 0.0
    b = d["bands"][1]
    assert b["valid_fraction"] == 0.75 and b["min"] == pytest.approx(0.03, rel=1e-6)


def test_alos_dn_zero_is_no_data_as_segment_reads_it(tmp_path: Path) -> None:
    """An ALOS ``IMG-`` file's DN 0 (outside JAXA's image frame) was counted as data by ``info`` while
    ``segment`` masks it; under another name 0 stays data."""
    a = np.full((40, 50), 3000, np.uint16)
    a[:, :10] = 0
    d = describe_raster(_write(tmp_path / "IMG-HH-ALOS2011283150-140602-UBSL1.5GUA.tif", a))
    b = d["bands"][0]
    assert b["valid_fraction"] == pytest.approx(0.8, abs=1e-9) and b["min"] == 3000
    assert b["nodata_from_name"] == 0 and b["scale"] == "amplitude"
    plain = describe_raster(_write(tmp_path / "dn.tif", a))["bands"][0]
    assert plain["min"] == 0 and "nodata_from_name" not in plain


def test_datamask_band_is_described_as_the_mask_it_is(tmp_path: Path) -> None:
    """Review: info counted a Sentinel Hub file's masked columns as data and called its dataMask band
    "linear", while segment masks with it."""
    a = np.full((3, 40, 50), 0.03, np.float32)
    a[2] = 1.0
    a[:, :, :10] = 0.0  # outside the data: dataMask 0
    p = tmp_path / "sh.tif"
    prof = dict(driver="GTiff", height=40, width=50, count=3, dtype="float32", crs="EPSG:32634",
                transform=from_origin(0, 0, 10, 10))  # fmt: skip
    with rasterio.open(p, "w", **prof) as ds:
        ds.write(a)
        ds.descriptions = ("VV", "VH", "dataMask")
    bands = describe_raster(p)["bands"]
    assert bands[0]["valid_fraction"] == pytest.approx(0.8) and bands[0]["min"] == pytest.approx(0.03)
    assert bands[2]["scale"].startswith("mask")
