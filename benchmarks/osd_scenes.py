"""Real scenes, scored as an operator sees them: slicks found and false alarms on the OSD test images.

    python benchmarks/osd_scenes.py -o docs/osd-scenes.json
    python benchmarks/osd_scenes.py --model runs/v3/model.safetensors --tiles 256:16,512:64

Each OSD image (a 1250 x 650 crop of a real Sentinel-1 scene, labelled sea / oil / look-alike / ship
/ land) is written as a GeoTIFF with its land as nodata (a perfect land mask), segmented by
:func:`~dakd_edge.inference.segment.segment_scene` (the path of ``dakd-edge segment``) and scored by
:func:`~dakd_edge.scene_eval.score_scene` (the path of ``dakd-edge evaluate --scene``) against its
labels: oil IoU / precision / recall pooled over the images, truth slicks detected, predicted spills
and false alarms, and the truth class under each false alarm (look-alike or open sea), at each
``--min-area`` (``segment``'s smallest spill, on both sides; its default is 5 px). The images carry
no georeference, so everything is in pixels and counts per image.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mosaic import parse_tiles, patch_to_uint8, predictor_factory, tile_key  # noqa: E402
from dakd_edge.jsonout import write_report  # noqa: E402

OSD_LAND = 4
CLASS_NAMES = {"0": "sea", "1": "oil", "2": "look-alike", "3": "ship"}


def write_scene(path: Path, image: np.ndarray, land: np.ndarray) -> None:
    """An un-georeferenced 8-bit GeoTIFF whose land pixels are masked (GDAL per-dataset mask)."""
    import rasterio

    profile = dict(driver="GTiff", height=image.shape[0], width=image.shape[1], count=1, dtype="uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(image, 1)
            dst.write_mask(np.where(land, 0, 255).astype(np.uint8))


def write_truth(path: Path, labels: np.ndarray) -> None:
    """The 5-class labels with land as 255 (left out of every score)."""
    import rasterio

    profile = dict(driver="GTiff", height=labels.shape[0], width=labels.shape[1], count=1, dtype="uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.where(labels == OSD_LAND, 255, labels).astype(np.uint8), 1)


def score_images(make_predictor: Any, images: list[np.ndarray], labels: list[np.ndarray], names: list[str],
                 tile: int, overlap: int, min_areas: list[str], tmp: Path) -> dict[str, Any]:  # fmt: skip
    """Segment every image once at one tile setting, then score it at each minimum spill size."""
    from dakd_edge.inference.segment import segment_scene

    predictor = make_predictor(tile, overlap)
    pairs = []
    t0 = time.perf_counter()
    try:
        for name, image, lab in zip(names, images, labels, strict=True):
            scene, truth, classes = tmp / f"{name}.tif", tmp / f"{name}_truth.tif", tmp / f"{name}_cls.tif"
            write_scene(scene, image, lab == OSD_LAND)
            write_truth(truth, lab)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # no georeference: said once in the docstring
                segment_scene(predictor, scene, classes, scale="uint8", overwrite=True, polygons=False)
            pairs.append((name, classes, truth))
    finally:
        predictor.close()
    seconds = round(time.perf_counter() - t0, 2)
    return {"segment_seconds": seconds, "min_area": {a: pooled(pairs, a) for a in min_areas}}


def pooled(pairs: list[tuple[str, Path, Path]], min_area: str) -> dict[str, Any]:
    """Scores of every (name, classes, truth) at one ``--min-area``: per-image rows and pooled totals."""
    from dakd_edge.scene_eval import score_scene

    rows, matrix = [], np.zeros((2, 2), np.int64)
    totals = {"truth": 0, "detected": 0, "predicted": 0, "false_alarms": 0}
    on: dict[str, int] = {}
    for name, classes, truth in pairs:
        r = score_scene(classes, truth, truth_oil=[1], min_area=min_area)  # OSD oil is 1; 255 is land
        sp = r["spills"]
        rows.append({"image": name, **{k: sp[k] for k in totals}, "false_alarms_on": sp["false_alarms_on"],
                     "oil_iou": r["pixels"]["oil_iou"]})  # fmt: skip
        matrix += np.asarray(r["pixels"]["matrix"], np.int64)
        for k in totals:
            totals[k] += sp[k]
        for v, n in (sp["false_alarms_on"] or {}).items():
            on[v] = on.get(v, 0) + n
    tn, fp, fn, tp = (int(v) for v in matrix.ravel())
    n = len(pairs)
    return {
        "pooled_pixels": {
            "oil_iou": tp / (tp + fp + fn) if tp + fp + fn else None,
            "oil_precision": tp / (tp + fp) if tp + fp else None,
            "oil_recall": tp / (tp + fn) if tp + fn else None,
            "matrix": matrix.tolist(),
        },
        "spills": {
            **totals,
            "detection_rate": totals["detected"] / totals["truth"] if totals["truth"] else None,
            "false_alarm_share": totals["false_alarms"] / totals["predicted"]
            if totals["predicted"]
            else None,
            "false_alarms_per_image": totals["false_alarms"] / n if n else None,
            "false_alarms_on": {CLASS_NAMES.get(v, v): k for v, k in sorted(on.items())},
        },
        "images": rows,
    }


def main(argv: list[str] | None = None) -> None:
    from dakd_edge.data import open_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--osd", type=Path, default=ROOT.parent / "shared" / "data" / "osd")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", action="append", help="model file or 'bundled' (repeatable; default bundled)")
    ap.add_argument("--backend", default="onnxruntime", help="auto, torch or onnxruntime")
    ap.add_argument("--tiles", default="", help="TILE:OVERLAP comma list (default: the model's own)")
    ap.add_argument(
        "--min-area", default="5px", help="comma list of segment --min-area values (5px = its default)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-o", "--out", type=Path, help="JSON report (default: stdout)")
    args = ap.parse_args(argv)
    if not args.osd.is_dir():
        sys.exit(f"no OSD data at {args.osd} (pass --osd)")
    ds = open_dataset(args.osd, split=args.split, kind="osd", classes="native")
    images = [patch_to_uint8(ds[i]) for i in range(len(ds))]
    labels = [np.asarray(ds[i]["mask"], np.uint8) for i in range(len(ds))]
    names = [Path(str(f[0] if isinstance(f, list | tuple) else f)).stem for f in ds.files]
    report: dict[str, Any] = {
        "script": "benchmarks/osd_scenes.py",
        "data": str(args.osd),
        "split": args.split,
        "images": len(images),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="dakd-osd-scenes-") as tmp:
        for model in args.model or ["bundled"]:
            make = predictor_factory(model, args.backend, args.threads, batch=None)
            if args.tiles:
                tiles = parse_tiles(args.tiles)
            else:  # the model's own tiling, as segment uses it
                probe = make(None, None)
                tiles = [(probe.tiling.tile, probe.tiling.overlap)]
                probe.close()
            res = {}
            for tile, overlap in tiles:
                areas = [a.strip() for a in args.min_area.split(",") if a.strip()]
                r = score_images(make, images, labels, names, tile, overlap, areas, Path(tmp))
                res[tile_key(tile, overlap)] = r
                for area, x in r["min_area"].items():
                    sp = x["spills"]
                    print(f"{model} {tile}/{overlap} min {area}: {sp['detected']}/{sp['truth']} slicks found, "
                          f"{sp['false_alarms']} false alarms of {sp['predicted']} spills "
                          f"({sp['false_alarms_on']}), oil IoU {100 * x['pooled_pixels']['oil_iou']:.2f}",
                          file=sys.stderr)  # fmt: skip
            report["models"][model] = res
    write_report(report, args.out)


if __name__ == "__main__":
    main()
