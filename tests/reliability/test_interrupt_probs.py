"""Interrupting a run that writes float16 probabilities of a large, mostly empty scene (audit F4).

GDAL fills every block never written when a tiled GTiff closes, and rasterio's ``close`` holds the GIL
while it does: for float16 (NBITS=16) probabilities nothing short-cuts the fill, so the unwinding main
thread and the signal watchdog both stood still for minutes (about 250 s at 100000^2). The staging
rasters are sparse now: closing one writes only the blocks the run wrote.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from dakd_edge.inference.geotiff import CogWriter, SceneInfo, verify_raster
from dakd_edge.meta import ModelMeta
from tests.inference.fake import FakeBackend
from tests.reliability.test_segment_faults import _slow_cli, _wait_for_temps, leftovers

SIZE = 16384  # unwritten float16 probabilities of this size took ~8 s to close before the fix


def _sparse_scene(path: Path, size: int = SIZE) -> Path:
    """A uint8 scene, all nodata but for one 512^2 corner, stored sparse (a few kB on disk)."""
    profile = dict(
        driver="GTiff", width=size, height=size, count=1, dtype="uint8", nodata=0, tiled=True,
        blockxsize=512, blockysize=512, compress="deflate", SPARSE_OK=True, crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0),
    )  # fmt: skip
    corner = np.random.default_rng(0).integers(100, 200, (512, 512), dtype=np.uint8)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(corner[None], window=((0, 512), (0, 512)))
    return path


def _meta() -> ModelMeta:
    return FakeBackend(tile=64).meta


def test_unwritten_blocks_are_not_filled_on_close(tmp_path: Path) -> None:
    """A writer abandoned early closes at once and stays small; unwritten blocks still read as nodata."""
    n = 8192
    info = SceneInfo(tmp_path / "s.tif", n, n, (1,), "uint8", 0, None, Affine.identity(), False)
    for kind in CogWriter.KINDS:
        w = CogWriter(tmp_path / f"{kind}.tif", info, _meta(), kind)
        w.write(0, np.full((w.count, 64, 64), 0.5, np.float32), np.ones((64, 64), bool))
        t0 = time.perf_counter()
        w.ds.close()
        took = time.perf_counter() - t0
        assert w.staging.stat().st_size < 1 << 20, (kind, w.staging.stat().st_size)
        assert took < 0.5, (kind, took)
        with rasterio.open(w.staging) as ds:
            far = ds.read(1, window=((n - 2, n), (n - 2, n)))
            near = ds.read(1, window=((0, 2), (0, 2)))
        assert (np.isnan(far) if kind == "probs_float16" else far == 255).all(), (kind, far)
        assert not (np.isnan(near) if kind == "probs_float16" else near == 255).any(), (kind, near)
    verify_raster(tmp_path / "probs_float16.tif", 2, n, n)


def test_sigint_with_float16_probs_on_a_large_scene_stops_fast(tmp_path: Path) -> None:
    src = _sparse_scene(tmp_path / "s.tif")
    out = tmp_path / "out"
    out.mkdir()
    args = ["segment", str(src), "-o", str(out / "c.tif"), "--probs", str(out / "p.tif")]
    p = _slow_cli([*args, "--probs-dtype", "float16", "-q"], sleep=0.3)
    _wait_for_temps(out, p)
    time.sleep(0.5)  # inside the first row of tiles
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    took = time.time() - t0
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "dakd-edge: interrupted"
    assert took < 2.5, f"took {took:.2f} s to stop"
    assert leftovers(out, set()) == []
