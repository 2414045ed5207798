"""Per-patch mIoU when the whole sea level moves: every patch shifted by one luminance offset.

``python benchmarks/level.py --model bundled --model runs/X/model.safetensors --split train
--holdout bundled -o level.json``

The model's input luminance is linear in dB (:mod:`dakd_edge.data.scaling`: -35..+5 dB onto 0..1),
so adding an offset to a whole 8-bit patch (``offset * 255``, clipped) is a dB shift of its whole
scene: 0.1 is 4 dB. Wind speed and incidence angle move a real scene's sea by that much, and
calibrated Sentinel-1 products do not share the stretch of the SOS patches the model learnt on. A
model that reads absolute darkness as oil loses oil above 0 (brighter) and calls sea oil below 0.

Reports, per model, sensor and offset: mIoU over all pixels of the set and the background false-alarm
rate (share of background pixels predicted as oil), plus the mean mIoU over the non-zero offsets.
``--split train --holdout bundled`` scores the bundled recipe's 200 held-out validation pairs (how
version 2.2 was chosen); the default is the test subset.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.jsonout import write_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OFFSETS = (-0.15, -0.10, 0.0, 0.10, 0.15)


def _mosaic_module() -> Any:
    """benchmarks/mosaic.py (a script, not a package): its patch loading and validation split."""
    spec = importlib.util.spec_from_file_location(
        "dakd_bench_mosaic_for_level", ROOT / "benchmarks" / "mosaic.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shift(image: np.ndarray, offset: float) -> np.ndarray:
    """A uint8 patch with ``offset`` (unit luminance) added everywhere, clipped to 0..255."""
    return np.clip(image.astype(np.float32) + offset * 255.0, 0, 255).round().astype(np.uint8)


def score_offsets(
    predictor: Any, images: list[np.ndarray], masks: list[np.ndarray], offsets: list[float]
) -> dict[str, Any]:
    """mIoU (oil vs background, over all pixels) and background false alarms at each offset."""
    out: dict[str, Any] = {}
    for off in offsets:
        cm = np.zeros((2, 2), np.int64)
        for im, m in zip(images, masks, strict=True):
            pred = predictor.predict(shift(im, off), scale="uint8")
            ok = (m <= 1) & (pred <= 1)
            cm += np.bincount(2 * m[ok].astype(np.int64) + pred[ok], minlength=4).reshape(2, 2)
        iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
        out[f"{off:+.2f}"] = {
            "miou": float(iou.mean()),
            "oil_iou": float(iou[1]),
            "background_false_alarm": float(cm[0, 1] / max(cm[0].sum(), 1)),
        }
    shifted = [v["miou"] for k, v in out.items() if float(k) != 0.0]
    return {"offsets": out, "mean_shifted_miou": float(np.mean(shifted)) if shifted else None}


def main(argv: list[str] | None = None) -> None:
    mosaic = _mosaic_module()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mosaic.add_model_data_args(ap)
    ap.add_argument("--sensor", default="palsar,sentinel", help="comma list")
    ap.add_argument(
        "--holdout", help="FRACTION:SEED or 'bundled' (with --split train): the held-out pairs only"
    )
    ap.add_argument(
        "--offsets",
        default=",".join(f"{o:g}" for o in DEFAULT_OFFSETS),
        help="comma list of unit-luminance offsets",
    )
    ap.add_argument("--tiles", default="256:16", help="TILE:OVERLAP (default 256:16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("-o", "--out", type=Path, help="JSON output")
    args = ap.parse_args(argv)

    from dakd_edge.data import open_dataset

    offsets = [float(v) for v in args.offsets.split(",")]
    (tile, overlap), *_ = mosaic.parse_tiles(args.tiles)
    held = None
    if args.holdout:
        held = mosaic.held_out_files(args.data, args.split, args.kind, mosaic.parse_holdout(args.holdout))
    report: dict[str, Any] = {
        "benchmark": "level",
        "argv": sys.argv[1:] if argv is None else argv,
        "split": args.split,
        "holdout": args.holdout,
        "tiles": f"{tile}/{overlap}",
        "env": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "models": {},
    }
    for model in args.model or ["bundled"]:
        make = mosaic.predictor_factory(model, args.backend, args.threads)
        predictor = make(tile, overlap)
        t0 = time.time()
        res: dict[str, Any] = {}
        for sensor in args.sensor.split(","):
            ds = open_dataset(args.data, split=args.split, kind=args.kind, classes="binary", sensor=sensor)
            idx = mosaic.holdout_indices(ds, held) if held is not None else None
            images, masks = mosaic.load_patches(ds, idx)
            res[sensor] = {"patches": len(images), **score_offsets(predictor, images, masks, offsets)}
            line = "  ".join(f"{k} {100 * v['miou']:.2f}" for k, v in res[sensor]["offsets"].items())
            print(
                f"{model} {sensor}: {line}  (mean shifted {100 * res[sensor]['mean_shifted_miou']:.2f})",
                flush=True,
            )
        predictor.close()
        report["models"][model] = {"sensors": res, "backend": args.backend, "seconds": time.time() - t0}
        if args.out:  # after each model, so a long run keeps what it measured
            write_report(report, args.out)
    if not args.out:
        write_report(report)


if __name__ == "__main__":
    main()
