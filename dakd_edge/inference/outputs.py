"""The output files of one segmented scene, written as one transaction.

:class:`SceneOutputs` builds on :class:`~dakd_edge.atomic.Transaction` (temporaries beside the final
paths, renamed together on commit, removed on any error): it holds the class-map and probability
writers (:class:`~dakd_edge.inference.geotiff.CogWriter`), the oil-probability staging file that the
polygon pass reads back, and the check that runs on each finished file before the rename. Before any
of it, :func:`check_disk` refuses a run whose outputs clearly cannot fit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from dakd_edge.atomic import Transaction, check_free_space, remove_temp
from dakd_edge.errors import InputError, OutputError, quiet
from dakd_edge.gtiff import gtiff_profile
from dakd_edge.inference.geotiff import BLOCK, CogWriter, SceneInfo, cog_copy, verify_raster
from dakd_edge.inference.tiling import Strip
from dakd_edge.inference.vectorize import Spill, verify_vector, write_vector_file
from dakd_edge.meta import ModelMeta


def gdal_cache_bytes(width: int, num_classes: int, prob_bytes: int) -> int:
    """GDAL block cache for one scene: two block rows of every output, plus 16 MB for reads.

    Two block rows let every output block fill up before it is flushed (strips are ``tile - overlap``
    rows, not block-aligned). GDAL's default (5% of RAM) lets the cache, not our buffers, set the peak
    memory on big scenes, and a large read allowance grows with nothing useful: input windows are read
    once per tile row, their overlap rows again at most once (the null-backend pipeline was no faster
    with 64 MB than with 16, and 16384^2 peaked ~80 MB higher).
    """
    row_bytes = width * BLOCK * (2 + num_classes * prob_bytes)  # classes + staging + probabilities
    return 16 * 2**20 + 2 * row_bytes  # rasterio passes GDAL_CACHEMAX on in bytes


def estimate_output_bytes(height: int, width: int, num_classes: int, prob_bytes: int) -> dict[str, int]:
    """Disk each output needs at its peak (staging file + COG copy), assuming deflate halves it.

    A lower bound used to refuse a run before any work when the disk is clearly too small; a disk
    that fills up anyway is still caught while writing (one line, nothing left behind).
    """
    px = height * width
    return {
        "classes": px + px // 2,  # class staging + COG, and the polygon pass's oil-probability staging
        "probs": px * num_classes * prob_bytes,
        "vector": 1 << 20,
        "report": 1 << 16,
    }


def check_disk(outputs: dict[str, Path], need: dict[str, int]) -> None:
    """Sum the needs of outputs sharing a filesystem and compare with its free space."""
    by_dev: dict[int, tuple[Path, int, list[str]]] = {}
    for key, p in outputs.items():
        folder = p.parent if str(p.parent) else Path(".")
        dev = os.stat(folder).st_dev
        f, n, names = by_dev.get(dev, (folder, 0, []))
        by_dev[dev] = (f, n + need.get(key, 0), [*names, str(p)])
    for folder, n, names in by_dev.values():
        check_free_space(folder, n, ", ".join(names))


@functools.cache
def staging_compression() -> dict[str, Any]:
    """Creation options for the oil-probability staging file: zstd level 1 where GDAL has zstd, else
    deflate level 1.

    The file is scratch (written once, read back inside spill boxes, deleted), so only speed matters:
    deflate at GDAL's default level 6 was most of its cost. On 29 MPix of probability strips, written
    in the segment's strip order with its block cache, zstd-1 took 0.24x the time of deflate-6 and
    made a smaller file (7.96 vs 9.51 MB), deflate-1 0.58x (9.30 MB); both are lossless, so the
    polygon pass reads back the same bytes. A GDAL without zstd ignores the option and writes the
    file uncompressed, so a tiny file in memory is written first to see that it is honoured.
    """
    zstd: dict[str, Any] = {"compress": "zstd", "ZSTD_LEVEL": 1}
    probe = f"/vsimem/dakd-edge-zstd-probe-{os.getpid()}-{threading.get_ident()}.tif"
    try:
        with quiet(NotGeoreferencedWarning):  # a 16 x 16 probe without a place
            with rasterio.open(probe, "w", **gtiff_profile(16, 16, "uint8", **zstd)) as ds:
                ds.write(np.zeros((1, 16, 16), np.uint8))
            with rasterio.open(probe) as ds:
                ok = ds.compression is not None and ds.compression.name.lower() == "zstd"
    except Exception:  # any failure: the option everyone has
        ok = False
    finally:
        with contextlib.suppress(Exception):
            rasterio.shutil.delete(probe)
    return zstd if ok else {"compress": "deflate", "ZLEVEL": 1}


def quantize_prob(p: np.ndarray) -> np.ndarray:
    """Probability -> uint8 x250: ``np.rint(np.clip(p, 0, 1) * 250).astype(np.uint8)`` in one buffer."""
    q = np.clip(p, 0.0, 1.0)
    q *= 250.0
    np.rint(q, out=q)
    return q.astype(np.uint8)


class OilProbStaging:
    """A plain tiled uint8 GTiff for the oil probability (x250) that the polygon pass reads back."""

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.path = path
        with quiet(NotGeoreferencedWarning):
            profile = gtiff_profile(height, width, "uint8", **staging_compression())
            self.ds = rasterio.open(self.path, "w", **profile)

    def reopen(self) -> None:
        """Close the written file and open it for reading."""
        self.ds.close()
        with quiet(NotGeoreferencedWarning):
            self.ds = rasterio.open(self.path)

    def write(self, y0: int, x0: int, p: np.ndarray) -> None:
        q = quantize_prob(p)
        self.ds.write(q[None], window=Window(x0, y0, q.shape[1], q.shape[0]))

    def __getitem__(self, idx: tuple[slice, slice]) -> np.ndarray:
        """The probabilities in float32 (a spill's whole bounding box in float64 added ~30 MB to a whole
        product's peak memory); the polygons' mean and max are rounded to 6 decimals where written."""
        rows, cols = idx
        win = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        return self.ds.read(1, window=win).astype(np.float32) / 250.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.close()
        remove_temp(self.path)


def _verify_json(path: Path) -> None:
    json.loads(path.read_text())


def check_geocodable(info: SceneInfo) -> None:
    """``--geocode`` needs a scene placed by GCPs (a grid has its own map already; RPCs need a DEM)."""
    if not info.gcps:
        has = (
            "a grid" if info.georeferenced else ("RPCs only" if info.rpcs is not None else "no georeference")
        )
        raise InputError(f"{info.path}: --geocode applies to GCP-georeferenced scenes (this one has {has})")


RASTER_SUFFIXES = (".tif", ".tiff")


def check_raster_path(path: str | os.PathLike, what: str) -> Path:
    """Refuse a raster output named for another format: ``classes.png`` was written as a GeoTIFF under
    that name (an image viewer then failed on it). No suffix is allowed."""
    p = Path(path)
    if p.suffix and p.suffix.lower() not in RASTER_SUFFIXES:
        raise OutputError(
            f"{p}: the {what} are written as a Cloud-Optimized GeoTIFF; name the file .tif "
            "(a PNG quicklook of one: dakd_edge.inference.quicklook.quicklook)"
        )
    return p


class SceneOutputs:
    """One scene's outputs in the transaction ``tx``, whose finals name them: ``classes`` (always),
    ``probs``, ``vector``, ``report``.

    The rasters are open from construction on (``probs_dtype`` "uint8" or "float16" for ``probs``);
    ``oil_ids`` not None also opens the oil-probability staging file for the polygon pass. Use as a
    context manager: leaving it closes and removes every staging file, on success or error;
    :meth:`commit` verifies each finished output and renames them all.
    """

    def __init__(
        self,
        tx: Transaction,
        info: SceneInfo,
        meta: ModelMeta,
        tags: dict[str, str],
        probs_dtype: str,
        oil_ids: list[int] | None,
    ) -> None:
        self.tx, self.info = tx, info
        self.verify: dict[str, Callable[[Path], Any]] = {}
        self.oilprob: OilProbStaging | None = None
        self.oil_ids = oil_ids
        self.writers = {
            "classes": CogWriter(tx.scratch_path("classes", "partial"), info, meta, "classes", tags)
        }
        try:
            if "probs" in tx.finals:
                staging = tx.scratch_path("probs", "partial")
                self.writers["probs"] = CogWriter(staging, info, meta, f"probs_{probs_dtype}", tags)
            if oil_ids is not None:
                self.oilprob = OilProbStaging(tx.scratch_path("classes", "oilprob"), info.height, info.width)
        except BaseException:
            self.close()
            raise

    def write(self, s: Strip) -> np.ndarray:
        """Write a finished strip to every raster; returns its class ids."""
        cls = self.writers["classes"].write(s.y0, s.probs, s.valid, s.x0)
        if "probs" in self.writers:
            self.writers["probs"].write(s.y0, s.probs, s.valid, s.x0)
        if self.oilprob is not None:
            ids = self.oil_ids
            # one oil class (the usual case): its plane as it is, not a gathered copy summed over one
            self.oilprob.write(s.y0, s.x0, s.probs[ids[0]] if len(ids) == 1 else s.probs[ids].sum(0))
        return cls

    def finish_rasters(self) -> None:
        """Copy the rasters as COGs to their temporaries (checked again on commit)."""
        for key, w in self.writers.items():
            w.finish(self.tx.temp(key))
            self.verify[key] = w.verify

    def geocode(self) -> None:
        """Replace every raster (GCP georeference) by its COG on the north-up UTM grid."""
        from dakd_edge.inference.geocode import geocode

        info = self.info
        check_geocodable(info)
        for key, w in self.writers.items():
            tmp, staged = self.tx.temp(key), self.tx.scratch_path(key, "geocoded")
            geocode(tmp, staged, info)
            tmp.unlink()
            cog_copy(staged, tmp, w.kind)
            remove_temp(staged)
            with rasterio.open(tmp) as ds:
                dims = (ds.count, ds.height, ds.width)
            self.verify[key] = lambda p, dims=dims: verify_raster(p, *dims)

    def write_vector(self, spills: list[Spill], crs: Any) -> None:
        """Write ``spills`` as the vector output, their mean and max probability rounded to 6 decimals
        (a probability is a multiple of 1/250; its mean's float noise says nothing)."""
        final = self.tx.finals["vector"]
        for s in spills:
            s.mean_prob = None if s.mean_prob is None else round(s.mean_prob, 6)
            s.max_prob = None if s.max_prob is None else round(s.max_prob, 6)
        write_vector_file(self.tx.temp("vector"), spills, crs, final)
        n = len(spills)
        self.verify["vector"] = lambda p: verify_vector(p, n, final)

    def write_report(self, report: dict[str, Any]) -> None:
        """Add the report output's path (when there is one) to ``report``, then write it there: the file
        lists every output, as the returned report does."""
        if "report" not in self.tx.finals:
            return
        report["outputs"]["report"] = str(self.tx.finals["report"])
        self.tx.temp("report").write_text(json.dumps(report, indent=2) + "\n")
        self.verify["report"] = _verify_json

    def commit(self) -> None:
        self.tx.commit(self.verify)

    def close(self) -> None:
        """Close and remove the staging files (after a finish, only the polygon pass's is left)."""
        if self.oilprob is not None:
            self.oilprob.close()
        for w in self.writers.values():
            w.discard()

    def __enter__(self) -> SceneOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
