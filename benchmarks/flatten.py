"""Does removing a scene's backscatter trend (``segment --flatten``) help? Whole scenes, both ways (JSON).

    python benchmarks/flatten.py --seeds 1,2,3 -o flatten.json
    python benchmarks/flatten.py --ramp 0,0.1,0.15 --split train --holdout bundled -o flatten-ramp.json

Two measurements, each through :func:`dakd_edge.inference.segment.segment_scene` (the `segment`
path) with ``flatten=False`` and ``flatten=True``:

- **wide synthetic scenes** (default): ``--size`` (1024 x 25600 px at 10 m: one 256 km IW swath, whose
  sea the generator darkens by 0.035 dB per km across range, about 9 dB in all) synthetic sigma0
  scenes in dB, one per ``--seeds`` entry; scored oil vs the rest against the generator's labels,
  with the look-alike and open-sea false-alarm rates;
- **ramped mosaics** (``--ramp R,...``): ``--mosaics`` 4 x 4 mosaics of real labelled patches
  (``--data``/``--split``/``--holdout`` as in ``benchmarks/mosaic.py``) with a linear level ramp
  from -R to +R added across their columns (a swath's trend, squeezed into 1024 px), written as
  8-bit GeoTIFFs and segmented with flattening forced on and off.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.jsonout import write_report

ROOT = Path(__file__).resolve().parents[1]


def _mosaic_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "dakd_bench_mosaic_for_flatten", ROOT / "benchmarks" / "mosaic.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def binary_scores(pred: np.ndarray, labels: np.ndarray, oil: int = 1) -> dict[str, Any]:
    """Oil-vs-rest confusion (pixels where both are valid), mIoU and per-class oil-call rates.

    ``labels`` are OSD classes (0 sea, 1 oil, 2 look-alike, 3 ship, 4 land) or binary; 255 is ignored.
    """
    ok = (labels != 255) & (pred != 255)
    t, q = labels[ok] == oil, pred[ok] == oil
    cm = np.array([[np.sum(~t & ~q), np.sum(~t & q)], [np.sum(t & ~q), np.sum(t & q)]], np.int64)
    rates = {
        name: float(np.mean(q[labels[ok] == c])) if np.any(labels[ok] == c) else None
        for c, name in ((0, "sea"), (2, "lookalike"))
    }
    return {"cm": cm.tolist(), "miou": miou(cm), "oil_call_rate": rates}


def miou(cm: np.ndarray | list) -> float:
    cm = np.asarray(cm, np.float64)
    iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
    return float(iou.mean())


MODES: dict[str, dict[str, bool]] = {
    "raw": {},  # as `segment` runs by default
    "flat": {"flatten": True},  # --flatten: the trend removed, the level kept
    "match": {"match_level": True},  # --match-level: the trend removed, the level set to training's
}


def segment_modes(predictor: Any, scene: Path, workdir: Path, modes: list[str]) -> dict[str, Any]:
    """Class maps of ``scene`` for each of ``modes`` (:data:`MODES`), and each run's ``level_trend``."""
    from dakd_edge.inference.segment import segment_scene

    mosaic = _mosaic_module()
    out: dict[str, Any] = {"trend": {}}
    for key in modes:
        path = workdir / f"{scene.stem}-{key}.tif"
        r = segment_scene(
            predictor, scene, path, overwrite=True, polygons=False, land_mask=None, **MODES[key]
        )
        out[key] = mosaic.read_classes(path)
        if key != "raw":
            out["trend"][key] = r["level_trend"]
    return out


def wide_scenes(
    predictor: Any, seeds: list[int], size: tuple[int, int], workdir: Path, modes: list[str]
) -> dict[str, Any]:
    from dakd_edge.data.synthetic import SceneConfig, write_scene_geotiff

    res: dict[str, Any] = {"scenes": {}}
    total = {k: np.zeros((2, 2), np.int64) for k in modes}
    for seed in seeds:
        scene, labels = workdir / f"wide-{seed}.tif", workdir / f"wide-{seed}-labels.tif"
        write_scene_geotiff(
            scene, SceneConfig(), seed, *size, labels_path=labels, output="db", overwrite=True
        )
        truth = _mosaic_module().read_classes(labels)
        maps = segment_modes(predictor, scene, workdir, modes)
        row: dict[str, Any] = {"trend": maps["trend"]}
        for key in modes:
            s = binary_scores(maps[key], truth)
            total[key] += np.asarray(s["cm"])
            row[key] = {"miou": round(100 * s["miou"], 2),
                        "oil_call_rate": {k: None if v is None else round(100 * v, 2)
                                          for k, v in s["oil_call_rate"].items()}}  # fmt: skip
        res["scenes"][str(seed)] = row
        print(
            f"seed {seed}: mIoU { ({k: row[k]['miou'] for k in modes}) } (trend {maps['trend']})", flush=True
        )
    res["mean_miou"] = {
        k: round(float(np.mean([r[k]["miou"] for r in res["scenes"].values()])), 2) for k in total
    }
    res["pooled_miou"] = {k: round(100 * miou(v), 2) for k, v in total.items()}
    return res


def ramped_mosaics(
    predictor: Any,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    ramps: list[float],
    count: int,
    workdir: Path,
    modes: list[str],
    shift: bool = False,
) -> dict[str, Any]:
    """Mosaics with a level ramp -R..+R across columns, as 8-bit GeoTIFFs; ``shift=True``: one level
    shift +R over the whole mosaic instead, written as calibrated sigma0 in dB (the model's -35..+5 dB
    stretch inverted), which is what ``--match-level`` is for."""
    from dakd_edge.data.scaling import Normalization

    lo, hi = Normalization().db_range
    mosaic = _mosaic_module()
    layouts = mosaic.mosaic_layouts(len(images), count, 4, 0)
    res: dict[str, Any] = {}
    for ramp in ramps:
        cms = {k: np.zeros((2, 2), np.int64) for k in modes}
        for k, lay in enumerate(layouts):
            im = mosaic.assemble([images[i] for i in lay], 4).astype(np.float32)
            gt = mosaic.assemble([masks[i] for i in lay], 4)
            scene = workdir / f"ramp-{ramp:g}-{k}.tif"
            if shift:
                unit = im / 255.0 + ramp
                mosaic.write_geotiff(scene, (lo + unit * (hi - lo)).astype(np.float32))
            else:
                im = np.clip(im + np.linspace(-ramp, ramp, im.shape[-1])[None, :] * 255.0, 0, 255).round()
                mosaic.write_geotiff(scene, im.astype(np.uint8))
            maps = segment_modes(predictor, scene, workdir, modes)
            for key in cms:
                cms[key] += np.asarray(binary_scores(maps[key], gt)["cm"])
        res[f"{ramp:g}"] = {k: round(100 * miou(v), 2) for k, v in cms.items()}
        print(f"{'shift' if shift else 'ramp +-'}{ramp:g}: mIoU {res[f'{ramp:g}']}", flush=True)
    return res


def main(argv: list[str] | None = None) -> None:
    mosaic = _mosaic_module()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mosaic.add_model_data_args(ap)
    ap.add_argument("--seeds", default="1,2,3", help="wide synthetic scenes (comma list)")
    ap.add_argument("--size", default="1024x25600", help="HEIGHTxWIDTH of the wide scenes")
    ap.add_argument("--ramp", help="comma list of ramp half-ranges: run the ramped mosaics instead")
    ap.add_argument("--shift", action="store_true", help="with --ramp: one global shift per mosaic, in dB")
    ap.add_argument("--modes", default="raw,flat,match", help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--sensor", default="palsar,sentinel", help="with --ramp: comma list")
    ap.add_argument("--holdout", help="with --ramp: FRACTION:SEED or 'bundled' (with --split train)")
    ap.add_argument("--mosaics", type=int, default=6, help="with --ramp: mosaics per sensor and ramp")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("-o", "--out", type=Path, help="JSON output")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        ap.error(f"unknown --modes {sorted(unknown)}")

    report: dict[str, Any] = {
        "benchmark": "flatten",
        "argv": sys.argv[1:] if argv is None else argv,
        "env": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "models": {},
    }
    for model in args.model or ["bundled"]:
        make = mosaic.predictor_factory(model, args.backend, args.threads)
        predictor = make(None, None)  # the model's own tiling, as `segment` uses it
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="dakd-flatten-") as tmp:
            work = Path(tmp)
            if args.ramp:
                from dakd_edge.data import open_dataset

                held = None
                if args.holdout:
                    held = mosaic.held_out_files(
                        args.data, args.split, args.kind, mosaic.parse_holdout(args.holdout)
                    )
                res: dict[str, Any] = {"ramps": {}}
                for sensor in args.sensor.split(","):
                    ds = open_dataset(
                        args.data, split=args.split, kind=args.kind, classes="binary", sensor=sensor
                    )
                    idx = mosaic.holdout_indices(ds, held) if held is not None else None
                    images, masks = mosaic.load_patches(ds, idx)
                    ramps = [float(v) for v in args.ramp.split(",")]
                    print(f"{model} {sensor}:", flush=True)
                    res["ramps"][sensor] = ramped_mosaics(
                        predictor, images, masks, ramps, args.mosaics, work, modes, args.shift
                    )
            else:
                h, w = (int(v) for v in args.size.lower().split("x"))
                res = wide_scenes(predictor, [int(s) for s in args.seeds.split(",")], (h, w), work, modes)
        res["tiling"] = f"{predictor.tiling.tile}/{predictor.tiling.overlap}"
        res["time_s"] = round(time.time() - t0, 1)
        report["models"][model] = res
    write_report(report, args.out)


if __name__ == "__main__":
    main()
