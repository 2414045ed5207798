"""Scene-level scores: a segmented scene against its ground truth, in pixels and in spills.

A chip score says little about a whole scene, where most of the sea is clean and a single dark patch
of calm water is a false alarm an operator must look at. :func:`score_scene` compares the class map
that ``segment`` wrote with a truth raster on the same grid, or with truth polygons (GeoJSON, or any
OGR vector with the ``vector`` extra), the way oil-spill services report detections:

- **pixels**: oil IoU / precision / recall / F1 and the oil + background mIoU, over the pixels that
  are valid in both and are sea: not nodata or masked land (255) in the prediction, nor a class it
  names land (OSD's ``land``), and not nodata in a truth raster nor a value it names land (its
  ``DAKD_CLASSES`` or ``class_names`` tag) or that ``truth_ignore`` leaves out;
- **spills**: each connected truth slick is *detected* when a predicted spill overlaps it by at least
  one pixel; each predicted spill that overlaps no truth oil is a *false alarm*, counted and measured
  per 10,000 km^2 of sea searched. Spills under ``min_area`` (``segment``'s ``--min-area``, default
  5 pixels) are left out on both sides, as ``segment`` leaves them out of its polygons.

Everything streams in blocks of rows (scenes of any size, bounded memory); the slicks are traced by the
same block-wise polygon pass as ``segment``'s (:func:`~dakd_edge.inference.vectorize.spills_from_mask`),
and overlaps are found by rasterising the slicks and the spills of each block of rows at once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge import jsonin, jsonout
from dakd_edge.errors import InputError, Notice, quiet
from dakd_edge.meta import IGNORE_INDEX
from dakd_edge.metrics import ConfusionMatrix

# pixels per block of the pixel passes (a block of 1024 rows of a 25k-wide product held ~28 bytes
# per pixel in temporaries: 870 MB peak): wide scenes get fewer rows per block
BLOCK_PIXELS = 1 << 22
TRUTH_VECTORS = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".kml", ".gml", ".sqlite")


class _Rasters:
    """Windowed reads of the prediction and the truth on the prediction's pixel grid."""

    def __init__(
        self,
        pred: Path,
        truth: Path,
        oil_ids: list[int],
        truth_oil: list[int] | None,
        truth_ignore: list[int],
    ) -> None:
        from dakd_edge.data.rasterinfo import open_raster

        self.pred = open_raster(pred)  # refuses what is no readable raster, in one line
        self.truth_ds = self.truth_vec = None
        self.pred_path, self.truth_path = pred, truth
        try:
            self._open_truth(pred, truth, oil_ids, truth_oil, truth_ignore)
        except BaseException:
            self.close()  # a refused truth must not leave the prediction (or the truth) open
            raise

    def _open_truth(
        self,
        pred: Path,
        truth: Path,
        oil_ids: list[int],
        truth_oil: list[int] | None,
        truth_ignore: list[int],
    ) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        from dakd_edge.data.gdalnames import refuse_unsafe_vrt
        from dakd_edge.inference.geotiff import raster_info
        from dakd_edge.meta import land_ids_of, oil_ids_of

        self.info = raster_info(pred, self.pred)
        pred_names = class_names_of(self.pred) or []
        self.oil_ids = oil_ids or _oil_ids(self.pred)
        self.land_ids = [i for i in land_ids_of(pred_names) if i not in self.oil_ids]
        self.truth_names: list[str] | None = None
        self.truth_oil = [1] if truth_oil is None else truth_oil
        self.truth_skip = list(truth_ignore)
        self.n_classes = _class_count(self.pred)
        p = self.pred
        if p.count != 1 or not np.issubdtype(np.dtype(p.dtypes[0]), np.integer):
            raise InputError(
                f"{pred}: not a class map ({p.count} band(s) of {p.dtypes[0]}; a class map has one band of "
                "class ids): give the class map `segment -o` wrote, not the scene or its --probs"
            )
        self.height, self.width = self.info.height, self.info.width
        if truth.suffix.lower() in TRUTH_VECTORS:
            if truth_ignore:
                raise InputError(
                    f"{truth}: --truth-ignore (truth_ignore) is for a truth raster's values; truth polygons "
                    "are oil, everything else clean sea"
                )
            self.truth_vec = _truth_polygons(truth, self.info)
        else:
            refuse_unsafe_vrt(truth)  # a VRT reads other files: only under its own name, local ones
            try:
                with quiet(NotGeoreferencedWarning):
                    self.truth_ds = rasterio.open(truth)
            except RasterioError as e:
                raise InputError(f"{truth}: cannot read the truth raster ({e})") from None
            t = self.truth_ds
            _check_truth_header(truth, t, pred.name, self.height, self.width)
            if (
                self.info.transform is not None
                and self.info.crs is not None
                and t.crs is not None
                and (t.crs != self.info.crs or not t.transform.almost_equals(self.info.transform))
            ):
                raise InputError(
                    f"{truth}: the truth raster is not on the prediction's grid (CRS or transform differ)"
                )
            self.truth_names = class_names_of(t)
            if self.truth_names is not None:  # the truth says which of its values are oil and land
                if truth_oil is None:
                    with quiet(Notice):  # no oil name: value 1, as documented; no guess to say
                        self.truth_oil = oil_ids_of(self.truth_names)
                self.truth_skip += [i for i in land_ids_of(self.truth_names) if i not in self.truth_oil]
            both = sorted(set(self.truth_oil) & set(truth_ignore))
            if both:
                raise InputError(
                    f"{truth}: truth value {both[0]} is both oil (--truth-oil) and left out (--truth-ignore)"
                )

    def _read(self, ds: Any, path: Path, what: str, bands: Any, window: Any, **kw: Any) -> Any:
        """``ds.read`` whose failure (a truncated or corrupt file) is one line naming the file."""
        from rasterio.errors import RasterioError

        try:
            return ds.read(bands, window=window, **kw)
        except RasterioError as e:
            cause = e.__cause__ or e.__context__ or e
            raise InputError(f"{path}: cannot read the {what} ({cause})") from None

    def classes(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        from rasterio.windows import Window

        cls = self._read(self.pred, self.pred_path, "class map", 1, Window(c0, r0, c1 - c0, r1 - r0))
        bad = (cls >= self.n_classes) & (cls != IGNORE_INDEX) | (cls < 0)
        if bad.any():
            v = int(cls[bad][0])
            raise InputError(
                f"{self.pred_path}: value {v} is no class of the class map (classes 0-{self.n_classes - 1}, "
                f"{IGNORE_INDEX} = nodata / land): give the class map `segment -o` wrote, not the scene"
            )
        return cls

    def pred_oil(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return np.isin(self.classes(r0, r1, c0, c1), self.oil_ids)

    def land(self, cls: np.ndarray) -> np.ndarray:
        """Pixels of the class map ``cls`` that the model calls land (a class named land)."""
        return np.isin(cls, self.land_ids) if self.land_ids else np.zeros(cls.shape, bool)

    def truth(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """(oil, valid) of the truth in the window; land is not valid (see :meth:`truth_values`)."""
        oil, valid, _ = self.truth_land(r0, r1, c0, c1)
        return oil, valid

    def truth_land(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(oil, valid, land) of the truth in the window: ``land`` the values it names land or that
        ``truth_ignore`` leaves out (also not ``valid``; none in polygon truth)."""
        if self.truth_vec is not None:
            oil = self.truth_vec.grid(
                np.arange(r0, r1, dtype=np.float64), np.arange(c0, c1, dtype=np.float64)
            )
            return oil, np.ones_like(oil), np.zeros_like(oil)
        values, valid = self.truth_values(r0, r1, c0, c1, keep_land=True)
        land = valid & np.isin(values, self.truth_skip) if self.truth_skip else np.zeros_like(valid)
        valid &= ~land
        return np.isin(values, self.truth_oil) & valid, valid, land

    def truth_values(
        self, r0: int, r1: int, c0: int, c1: int, keep_land: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) of a truth raster in the window: its nodata, NaN, 255 when it has no
        nodata (unlabelled, unless 255 is oil), and (unless ``keep_land``) the values it names land or
        ``truth_ignore`` leaves out are not valid."""
        from rasterio.windows import Window

        t = self.truth_ds
        assert t is not None
        win = Window(c0, r0, c1 - c0, r1 - r0)
        v = self._read(t, self.truth_path, "truth raster", 1, win, masked=True)
        # grey stored as RGB (SOS's 0/255 masks) is one mask; colours are no classes
        allb = self._read(t, self.truth_path, "truth raster", None, win) if t.count > 1 else None
        values, valid = _checked_truth_values(self.truth_path, v, allb)
        if t.nodata is None and IGNORE_INDEX not in self.truth_oil:  # 255 = unlabelled, unless oil
            valid &= values != IGNORE_INDEX
        if self.truth_skip and not keep_land:
            valid &= ~np.isin(values, self.truth_skip)
        return values, valid

    def truth_label(self, v: float) -> str:
        """A truth value as its class name when the truth raster names its classes, else the value."""
        names = self.truth_names or []
        if v.is_integer() and 0 <= v < len(names):
            return names[int(v)]
        return str(int(v)) if v.is_integer() else str(v)

    def truth_oil_mask(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.truth(r0, r1, c0, c1)[0]

    def close(self) -> None:
        self.pred.close()
        if self.truth_ds is not None:
            self.truth_ds.close()


def class_names_of(ds: Any) -> list[str] | None:
    """The class names a raster's tags give its values: ``class_names`` (a JSON list, as ``segment``
    writes on its class map) or ``DAKD_CLASSES`` (comma-separated, as ``synth --labels`` writes);
    None when it names none."""
    tags = ds.tags()
    try:
        names = jsonin.loads(tags.get("class_names", "null"))
    except ValueError:  # not JSON, or nested too deeply
        names = None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        names = (
            [n.strip() for n in tags.get("DAKD_CLASSES", "").split(",")] if "DAKD_CLASSES" in tags else None
        )
    return names if names and all(names) else None


def _class_count(ds: Any) -> int:
    """Classes of a class map: its ``class_names`` tag (``segment`` writes it), else at most 16 (an
    untagged map of class ids; a scene read as one has far larger values)."""
    names = class_names_of(ds)
    return len(names) if names else 16


def _oil_ids(ds: Any) -> list[int]:
    """Oil class ids of a class map from its ``class_names`` tag (``segment`` writes it), else [1]."""
    from dakd_edge.meta import oil_ids_of

    return oil_ids_of(class_names_of(ds) or [])


def _truth_polygons(path: Path, info: Any) -> Any:
    """Truth slicks from a vector file, in the prediction's pixel grid (as the land mask reads one)."""
    from pyproj.exceptions import CRSError

    from dakd_edge.data.landmask import VectorLandSource, _read_vector
    from dakd_edge.inference.readers import georef_of

    georef = georef_of(info)
    if georef is None:
        raise InputError(
            f"{path}: truth polygons need a georeferenced prediction ({info.path.name} has none)"
        )
    try:
        polys, crs = _read_vector(path, "truth")
        _check_lonlat(path, polys, crs)  # before placing them: far-off numbers overflow the clipping
        src = VectorLandSource(path, georef, info.height, info.width, 0.0, what="truth")
    except InputError:
        raise
    except CRSError as e:
        raise InputError(f"{path}: the truth polygons' CRS is unknown ({e})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as e:  # not GeoJSON's shape
        raise InputError(f"{path}: cannot read the truth polygons (no GeoJSON geometry: {e!r})") from None
    if not polys:
        if _has_geometries(path):
            raise InputError(f"{path}: the truth has no polygon (points or lines only): slicks are areas")
        return src  # an empty collection: no slick in this scene
    if not src.shapes:
        raise InputError(
            f"{path}: none of the {len(polys)} truth polygons lies on the scene {info.path.name}: another "
            'place, lat/lon swapped, or another CRS (GeoJSON is WGS84 lon, lat unless a "crs" member '
            "names its CRS)"
        )
    return src


def _check_lonlat(path: Path, polys: list, crs: Any) -> None:
    """Refuse WGS84 truth whose coordinates are no lon/lat (metres of a CRS the file does not name)."""
    if not polys or not (crs is None or "4326" in str(crs) or "CRS84" in str(crs)):
        return
    xy = np.concatenate([r for p in polys for r in p])
    off = ~np.isfinite(xy).all(axis=1) | (np.abs(xy) > [360.0, 90.0]).any(axis=1)
    if off.any():
        raise InputError(
            f"{path}: truth coordinates are not lon/lat (e.g. {xy[off][0].tolist()}); "
            'GeoJSON is WGS84 lon, lat unless a "crs" member names its CRS'
        )


def _has_geometries(path: Path) -> bool:
    """Whether a vector file holds any geometry (a GeoJSON's non-null ones; any feature of others)."""
    if path.suffix.lower() in (".geojson", ".json"):
        d = jsonin.loads(path.read_text(), max_depth=None)  # read by _read_vector already
        feats = d.get("features") if d.get("type") == "FeatureCollection" else [d]
        return any((f.get("geometry") if f.get("type") == "Feature" else f) for f in feats or [] if f)
    return True


def _slicks(read_mask: Any, info: Any, least: tuple[float | None, int], block: int) -> list[Any]:
    """Connected oil regions of ``read_mask`` in pixel coordinates, without those under ``least``."""
    from dakd_edge.inference.readers import world_of
    from dakd_edge.inference.vectorize import Measurer, filter_spills, spills_from_mask, to_world_many

    found = spills_from_mask(read_mask, info.height, info.width, None, None, None, block)
    if info.gcps or (info.georeferenced and info.crs is not None):  # m^2 as segment measures them
        to_w, crs = world_of(info)
        areas = Measurer(crs).many(to_world_many(to_w, [s.rings for s in found]))
        for s, (area_m2, _) in zip(found, areas, strict=True):
            s.area_m2 = area_m2
    return filter_spills(found, *least)[0]


def _rasterize(rings_ids: list[tuple[list, int]], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    from rasterio.features import rasterize

    shapes = (
        ({"type": "Polygon", "coordinates": [[(x - c0, y - r0) for x, y in r] for r in rings]}, i)
        for rings, i in rings_ids
    )
    return rasterize(shapes, out_shape=(r1 - r0, c1 - c0), fill=0, dtype="int32")


def _counts(truth: np.ndarray, pred: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """The 2 x 2 confusion counts (rows truth, columns prediction: background, oil) of the ``scored``
    pixels, from the boolean masks alone (``ConfusionMatrix.update`` makes int64 copies of a block)."""
    t, p = truth & scored, pred & scored
    tp = np.count_nonzero(t & p)
    fn, fp = np.count_nonzero(t) - tp, np.count_nonzero(p) - tp
    return np.array([[np.count_nonzero(scored) - tp - fn - fp, fp], [fn, tp]], np.int64)


def _boxes(spills: list[Any]) -> np.ndarray:
    """(row0, row1, col0, col1) of each spill's bounding box, as an (n, 4) array."""
    return np.array([s.bbox_px for s in spills], np.int64).reshape(-1, 4)


def _near(boxes: np.ndarray, y0: int, y1: int, c0: int, c1: int) -> np.ndarray:
    """Indices of the boxes that meet rows ``y0 .. y1`` and columns ``c0 .. c1``."""
    return np.flatnonzero((boxes[:, 0] < y1) & (boxes[:, 1] > y0) & (boxes[:, 2] < c1) & (boxes[:, 3] > c0))


def _window(boxes: np.ndarray, near: np.ndarray, width: int) -> tuple[int, int]:
    """The columns ``near``'s boxes span (clipped to the scene): ids are rasterised there only, so a
    block costs its spills' width, not the scene's (a 25k-wide product: 100 MB of int32 per block)."""
    return max(int(boxes[near, 2].min()), 0), min(int(boxes[near, 3].max()), width)


def _ids(
    spills: list[Any], boxes: np.ndarray, near: np.ndarray, y0: int, y1: int, c0: int, c1: int
) -> np.ndarray:
    """1 + the index of the spill covering each pixel of rows ``y0 .. y1``, columns ``c0 .. c1`` (0:
    none), of the spills ``near``. The regions of one mask are disjoint, so each pixel has one id; one
    rasterisation for the block, not one per spill."""
    if not len(near):
        return np.zeros((y1 - y0, c1 - c0), np.int32)
    return _rasterize([(spills[j].rings, int(j) + 1) for j in near], y0, y1, c0, c1)


def _match(
    truth: list[Any], pred: list[Any], height: int, width: int, block: int
) -> tuple[list[bool], list[bool]]:
    """(truth slick detected, predicted spill overlaps truth) by pixel overlap of the traced regions,
    block of rows by block of rows."""
    detected = [False] * len(truth)
    hit = [False] * len(pred)
    if not truth or not pred:
        return detected, hit
    tboxes, pboxes = _boxes(truth), _boxes(pred)
    for y0 in range(0, height, block):
        y1 = min(y0 + block, height)
        tnear = _near(tboxes, y0, y1, 0, width)
        if not len(tnear):
            continue
        c0, c1 = _window(tboxes, tnear, width)
        pnear = _near(pboxes, y0, y1, c0, c1)
        if not len(pnear):
            continue
        t = _ids(truth, tboxes, tnear, y0, y1, c0, c1)
        p = _ids(pred, pboxes, pnear, y0, y1, c0, c1)
        both = (t > 0) & (p > 0)
        for k in np.unique(t[both]) - 1:
            detected[k] = True
        for j in np.unique(p[both]) - 1:
            hit[j] = True
    return detected, hit


def _false_alarms_on(r: _Rasters, spills: list[Any], block: int) -> tuple[dict[str, int] | None, list[int]]:
    """(False alarms per truth-raster value under most of their valid truth pixels, by the class name
    the truth's tag gives the value (else the value), the indices of ``spills`` with no valid truth
    pixel at all): with 5-class OSD-style truth, how many are on look-alikes and how many on open sea;
    a spill wholly on the truth's nodata or land is no false alarm (nobody said what is there, or it is
    no sea). (None, []) for polygon truth."""
    if r.truth_ds is None:
        return None, []
    counts: dict[tuple[int, float], int] = {}  # (spill, truth value): pixels
    if spills:
        boxes = _boxes(spills)
        for y0 in range(0, r.height, block):
            y1 = min(y0 + block, r.height)
            near = _near(boxes, y0, y1, 0, r.width)
            if not len(near):
                continue
            c0, c1 = _window(boxes, near, r.width)
            ids = _ids(spills, boxes, near, y0, y1, c0, c1)
            values, valid = r.truth_values(y0, y1, c0, c1)
            sel = (ids > 0) & valid
            both = np.stack([ids[sel].astype(np.float64), values[sel].astype(np.float64)])
            pairs, n = np.unique(both, axis=1, return_counts=True)
            for (i, v), c in zip(pairs.T.tolist(), n.tolist(), strict=True):
                counts[(int(i), v)] = counts.get((int(i), v), 0) + c
    best: dict[int, tuple[int, float]] = {}  # spill: (pixels, value); ties go to the lower value
    for (i, v), c in counts.items():
        if i not in best or (c, -v) > (best[i][0], -best[i][1]):
            best[i] = (c, v)
    out: dict[float, int] = {}
    for i in best:
        out[best[i][1]] = out.get(best[i][1], 0) + 1
    unscored = [i - 1 for i in range(1, len(spills) + 1) if i not in best]
    return {r.truth_label(v): out[v] for v in sorted(out)}, unscored


def score_scene(
    pred: str | os.PathLike,
    truth: str | os.PathLike,
    *,
    oil_ids: int | list[int] | None = None,
    truth_oil: int | list[int] | None = None,
    truth_ignore: int | list[int] | None = None,
    min_area: str | float | None = None,
    block: int = 1024,
) -> dict[str, Any]:
    """Score the class map ``pred`` (``segment``'s output, 255 = nodata / land) against ``truth``.

    Only sea is scored: land is left out of the pixel scores and of the sea area, whether the land
    mask made it nodata (255), the model predicts a class named land (the class map's ``class_names``
    tag, e.g. OSD's ``land``), or the truth raster names one of its values land (its ``DAKD_CLASSES`` or
    ``class_names`` tag, as ``synth --labels`` and ``segment`` write) or ``truth_ignore`` names it. Truth
    oil under the model's land is scored, as a miss.

    Args:
        pred: class-id raster written by ``segment`` (GeoTIFF; affine or GCP georeference).
        truth: a raster on ``pred``'s grid (``truth_oil`` values are oil; its nodata, or 255 when it
            has none, is left out unless 255 is oil as in 0 / 255 masks: ``truth_oil=[255]``; anything
            else is clean sea), or oil polygons in a vector file (everything outside them is clean sea).
        oil_ids: class ids of oil in ``pred`` (default: from its ``class_names`` tag, else ``[1]``).
        truth_oil: values of oil in a truth raster (default: the values its tag names oil, else ``[1]``).
        truth_ignore: values of a truth raster to leave out like its nodata (land of a truth that does
            not name its classes, e.g. ``[4]`` for OSD labels).
        min_area: ``segment``'s ``--min-area`` (m^2, or ``"Npx"``; default 5 pixels): smaller regions
            are no spill on either side.
        block: rows per block (memory); the pixel passes take fewer on scenes wider than 4096 px
            (at most :data:`BLOCK_PIXELS` pixels per block).

    Returns a JSON-able dict: ``pixels`` (oil / background IoU, precision, recall, F1, mIoU, counts)
    and ``spills`` (truth slicks, detected, predicted spills, false alarms and their area, sea area
    searched, false alarms per 10,000 km^2; with a truth raster ``false_alarms_on``: how many lie
    mostly on each valid truth class, by name when the truth names its classes; ``unscored_spills``:
    predicted spills wholly on the truth's nodata or land, left out of every spill count), and
    ``left_out``: pixels of land (by class) and of nodata (255 or masked land in ``pred``, nodata in
    the truth) that were not scored. Areas are on the ellipsoid, measured as ``segment``
    measures its oil area and polygons (None for a prediction without georeference).
    """
    from dakd_edge.inference.report import Tally
    from dakd_edge.inference.segment import parse_min_area

    if isinstance(block, bool) or not isinstance(block, int) or block < 1:  # -1 gave 0 truth slicks
        raise InputError(f"block must be an integer >= 1 (rows), not {block!r}")
    pred, truth = Path(pred), Path(truth)
    if not truth.exists():
        raise InputError(f"{truth}: truth file not found")
    if not truth.is_file():  # a FIFO would block the open; a folder is no truth
        raise InputError(f"{truth}: not a regular file (a folder, FIFO or device), no truth raster or vector")
    least = parse_min_area(min_area)
    if least[0] is not None and not math.isfinite(least[0]):
        raise InputError(f"--min-area {min_area!r}: expected a finite area")
    implicit_oil = truth_oil is None
    ignore = _class_ids(truth_ignore, [])
    r = _Rasters(
        pred, truth, _class_ids(oil_ids, []), None if implicit_oil else _class_ids(truth_oil, []), ignore
    )
    try:
        info = r.info
        if least[0] is not None and not (info.gcps or (info.georeferenced and info.crs is not None)):
            raise InputError(f"{pred}: --min-area in m^2 needs a georeferenced prediction; use Npx")
        cm = ConfusionMatrix(2, ignore_index=IGNORE_INDEX, class_names=["background", "oil"])
        sea = Tally(1, [0], info)  # m^2 of the scored pixels, on the ellipsoid as segment's oil area
        n_255 = n_oil = 0  # truth pixels left out as "255 = unlabelled", and truth oil pixels
        n_land = n_nodata = 0  # pixels left out as land (a class named land) and as nodata
        rows = max(1, min(block, BLOCK_PIXELS // r.width))
        for y0 in range(0, r.height, rows):
            y1 = min(y0 + rows, r.height)
            cls = r.classes(y0, y1, 0, r.width)
            oil, valid, truth_land = r.truth_land(y0, y1, 0, r.width)
            if r.truth_ds is not None and r.truth_ds.nodata is None and IGNORE_INDEX not in r.truth_oil:
                n_255 += int(np.count_nonzero(r.truth_values(y0, y1, 0, r.width)[0] == IGNORE_INDEX))
            n_oil += int(np.count_nonzero(oil))
            data = (valid | truth_land) & (cls != IGNORE_INDEX)  # in both, land or sea
            # the model's land holds no sea to score, but truth oil under it is a miss, not left out
            # (a model calling a slick land scored an undefined recall instead of 0)
            land = data & (truth_land | (r.land(cls) & ~oil))
            scored = data & ~land
            n_land += int(np.count_nonzero(land))
            n_nodata += int(data.size - np.count_nonzero(data))
            cm.matrix += _counts(oil, np.isin(cls, r.oil_ids), scored)
            sea.add((~scored).view(np.uint8), y0)
        hint = "give --truth-oil 255 (truth_oil=[255])"
        if not cm.matrix.sum():
            raise InputError(
                f"{truth}: nothing to score: no pixel is sea and valid in both the prediction {pred.name} "
                "and the truth (all nodata or land in one of them"
                + (f"; the truth's 255 counts as unlabelled: for a 0/255 mask {hint})" if n_255 else ")")
            )
        if implicit_oil and n_oil == 0 and n_255:
            raise InputError(
                f"{truth}: no truth pixel is 1 (oil) and {n_255} are 255, which counts as unlabelled: for "
                f"a 0/255 mask {hint}; if 255 is unlabelled, say --truth-oil 1 (or give the raster a nodata)"
            )
        truths = _slicks(r.truth_oil_mask, info, least, block)
        preds = _slicks(r.pred_oil, info, least, block)
        detected, hit = _match(truths, preds, r.height, r.width, rows)
        misses = [s for s, h in zip(preds, hit, strict=True) if not h]
        on, unscored = _false_alarms_on(r, misses, rows)
        pred_names = class_names_of(r.pred) or []
        land_names = [pred_names[i] for i in r.land_ids]
        truth_land_names = [r.truth_label(float(v)) for v in sorted(set(r.truth_skip))]
    finally:
        r.close()
    m = cm.compute()
    skip = set(unscored)  # wholly on truth nodata: neither scored spills nor false alarms
    false_m2 = [s.area_m2 for i, s in enumerate(misses) if i not in skip]
    sea_px = int(m["pixels"])
    n_false = len(misses) - len(skip)
    n_pred = len(preds) - len(skip)
    measured = sea.oil_area is not None and all(a is not None for a in false_m2)
    sea_km2 = round(sea.oil_area / 1e6, 6) if measured else None
    false_km2 = round(sum(false_m2) / 1e6, 6) if measured else None
    return {
        "pred": str(pred),
        "truth": str(truth),
        "pixels": jsonout.finite(
            {  # an undefined score (no oil in truth nor prediction) is None
                "oil_iou": m["iou"][1],
                "oil_precision": m["precision"][1],
                "oil_recall": m["recall"][1],
                "oil_f1": m["f1"][1],
                "background_iou": m["iou"][0],
                "miou": m["miou"],
                "pixel_accuracy": m["pixel_accuracy"],
                "scored": sea_px,
                "matrix": m["matrix"],
            }
        ),
        "spills": {
            "truth": len(truths),
            "detected": detected.count(True),
            "detection_rate": detected.count(True) / len(truths) if truths else None,
            "predicted": n_pred,
            "false_alarms": n_false,
            "false_alarm_share": n_false / n_pred if n_pred else None,
            "false_alarm_area_km2": false_km2,
            "false_alarms_on": on,
            "unscored_spills": len(skip),
            "sea_area_km2": sea_km2,
            "false_alarms_per_10000_km2": (round(n_false / sea_km2 * 1e4, 4) if sea_km2 else None),
            "min_area": {"m2": least[0], "pixels": least[1]},
        },
        "left_out": {
            "land_pixels": n_land,
            "nodata_pixels": n_nodata,
            "pred_land_classes": land_names,
            "truth_land_classes": truth_land_names,
        },
    }


def _class_ids(v: int | list[int] | None, default: list[int]) -> list[int]:
    """Class ids given as one int or a list (``oil_ids=1`` raised "'int' object is not iterable")."""
    if v is None:
        return list(default)
    return [v] if isinstance(v, int | np.integer) else list(v)


def render_scene(result: dict[str, Any]) -> Any:
    """A rich Table of :func:`score_scene`'s result: pixel scores in percent, then the spill counts."""
    from rich.table import Table

    px, sp = result["pixels"], result["spills"]
    name = Path(result.get("scene") or result["pred"]).name
    t = Table(title=f"{name} against {Path(result['truth']).name}")
    t.add_column("measure")
    t.add_column("value", justify="right")

    def pct(v: float | None) -> str:
        return "-" if v is None or v != v else f"{100 * v:.2f} %"

    for label, key in (("oil IoU", "oil_iou"), ("oil precision", "oil_precision"),
                       ("oil recall", "oil_recall"), ("oil F1", "oil_f1"), ("mIoU (oil, background)", "miou")):  # fmt: skip
        t.add_row(label, pct(px[key]))
    t.add_row("truth slicks detected", f"{sp['detected']} of {sp['truth']}")
    t.add_row("predicted spills / false alarms", f"{sp['predicted']} / {sp['false_alarms']}")
    if sp.get("false_alarms_on"):
        t.add_row(
            "false alarms by truth class", ", ".join(f"{n} on {v}" for v, n in sp["false_alarms_on"].items())
        )
    if sp["false_alarms_per_10000_km2"] is not None:
        t.add_row("false alarms per 10,000 km^2", f"{sp['false_alarms_per_10000_km2']:.2f}")
        t.add_row(
            "false-alarm area / sea scored",
            f"{sp['false_alarm_area_km2']:.3f} / {sp['sea_area_km2']:.1f} km^2",
        )
    out = result.get("left_out")
    if out is None:  # a result of an older version
        t.caption = f"{px['scored']} pixels scored"
        return t
    land = ", ".join(
        [f"predicted {n!r}" for n in out["pred_land_classes"]]
        + [f"truth {v!r}" for v in out["truth_land_classes"]]
    )
    t.caption = (
        f"{px['scored']} pixels of sea scored; left out: {out['nodata_pixels']} nodata or land-masked, "
        f"{out['land_pixels']} land" + (f" ({land})" if land else " (no class is named land)")
    )
    return t


def _check_truth_header(truth: Path, t: Any, pred_name: str, height: int, width: int) -> None:
    """Refuse a truth raster that cannot be scored against a class map of ``height`` x ``width``: a lossy
    JPEG, another size."""
    if t.driver == "JPEG" or "JPEG" in str(t.compression or "").upper():
        raise InputError(
            f"{truth}: a JPEG truth raster is lossy: its values around slick edges are no labels; "
            "give the mask as PNG or GeoTIFF"
        )
    if (t.height, t.width) != (height, width):
        raise InputError(
            f"{truth}: the truth raster is {t.width} x {t.height} pixels but the prediction {pred_name} is "
            f"{width} x {height}; give truth on the scene's grid, or its slicks as polygons (.geojson / .gpkg)"
        )


def _checked_truth_values(
    truth: Path, v: np.ma.MaskedArray, bands: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of a window of truth band 1 (``bands``: all its bands, for a multi-band truth),
    refusing colours (bands that differ), fractions and values outside 0-255 ids."""
    if bands is not None and (bands != bands[:1]).any():
        raise InputError(
            f"{truth}: the truth raster's {len(bands)} bands differ (colours, as OSD's RGB labels): give one "
            "band of class ids (OSD's labels_1D), or a mask with equal bands"
        )
    values, valid = np.asarray(v.data), ~np.ma.getmaskarray(v)
    if np.issubdtype(values.dtype, np.floating):
        valid &= np.isfinite(values)
        frac = valid & (values != np.round(values))
        if frac.any():
            raise InputError(
                f"{truth}: truth values are not whole numbers (e.g. {values[frac][0]:g}): a probability or "
                "intensity raster is no class mask"
            )
    out = valid & ((values < 0) | (values > 255))
    if out.any():
        raise InputError(
            f"{truth}: truth value {values[out][0]:g} is outside 0-255 class ids (give the raster a nodata "
            "if it marks unlabelled pixels)"
        )
    return values, valid


def check_truth_raster(truth: str | os.PathLike, pred_name: str, height: int, width: int) -> None:
    """The refusals :func:`score_scene` makes of a truth raster, before a class map of ``height`` x
    ``width`` named ``pred_name`` exists (``evaluate --scene`` segmented for minutes, then refused a
    truth of another size): another size, a JPEG, colour bands, values that are no class ids. One
    band of uint8 costs a header read; other truths are read once, in blocks. Truth polygons are left
    to the scoring, which needs the class map's georeference."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.windows import Window

    from dakd_edge.data.gdalnames import refuse_unsafe_vrt

    truth = Path(truth)
    if truth.suffix.lower() in TRUTH_VECTORS:
        return
    if not truth.is_file():  # a FIFO would block the open
        raise InputError(f"{truth}: not a regular file (a folder, FIFO or device), no truth raster or vector")
    refuse_unsafe_vrt(truth)
    try:
        with quiet(NotGeoreferencedWarning):
            ds = rasterio.open(truth)
    except RasterioError as e:
        raise InputError(f"{truth}: cannot read the truth raster ({e})") from None
    with ds:
        _check_truth_header(truth, ds, pred_name, height, width)
        if ds.count == 1 and np.dtype(ds.dtypes[0]) == np.uint8:  # one band of 0-255 ids: nothing to read
            return
        rows = max(1, BLOCK_PIXELS // width)
        for y0 in range(0, height, rows):
            win = Window(0, y0, width, min(rows, height - y0))
            try:
                v = ds.read(1, window=win, masked=True)
                bands = ds.read(window=win) if ds.count > 1 else None
            except RasterioError as e:
                raise InputError(f"{truth}: cannot read the truth raster ({e.__cause__ or e})") from None
            _checked_truth_values(truth, v, bands)
