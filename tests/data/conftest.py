"""Fixtures shared by the data tests: the real Sentinel-1 product of ../shared/data (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_S1 = SHARED / "s1" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"


@pytest.fixture(scope="session")
def real_s1() -> Path:
    """The real S1B IW GRDH product (its SAFE tree: manifest, annotations, calibration and noise XML)."""
    if not (REAL_S1 / "manifest.safe").is_file():
        pytest.skip("../shared/data/s1 not present")
    return REAL_S1
