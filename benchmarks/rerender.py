"""Labelled patches as they are and re-rendered (coarser, stronger speckle; steeper stretch), per model.

    python benchmarks/rerender.py --model bundled --model runs/v21.safetensors -o rerender.json

Some archives render SAR differently from the training patches: resampled speckle in coarse grains
and a steep display stretch, which a model may read as dark slicks. Each patch is scored plain and
through :func:`dakd_edge.data.transforms.regrain` (the training augmentation ``TrainConfig.regrain``,
drawn with seed ``1000 + k`` for the k-th patch, so every model sees the same renderings), one
confusion matrix per sensor and rendering: mIoU, oil IoU and the share of background pixels called
oil. By default on the bundled recipe's 200 held-out validation pairs (``--holdout bundled``), never
the test subset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mosaic import held_out_files, holdout_indices, parse_holdout  # noqa: E402
from dakd_edge.jsonout import write_report  # noqa: E402

SEED = 1000


def score(predictor: Any, ds: Any, indices: list[int]) -> dict[str, dict[str, float]]:
    """``{"plain": ..., "regrain": ...}``: mIoU, oil IoU and background false alarms over ``indices``."""
    from dakd_edge.data.transforms import regrain
    from dakd_edge.evaluate import predict_unit
    from dakd_edge.metrics import ConfusionMatrix

    out = {}
    for mode in ("plain", "regrain"):
        cm = ConfusionMatrix(2)
        for k, i in enumerate(indices):
            s = ds[i]
            img = np.asarray(s["image"], np.float32)
            if mode == "regrain":
                img = regrain({"image": img}, np.random.default_rng(SEED + k))["image"]
            cm.update(predict_unit(predictor, img), np.asarray(s["mask"]))
        r = cm.compute()
        m = np.asarray(r["matrix"], np.float64)
        out[mode] = {
            "miou": r["miou"],
            "oil_iou": r["iou"][1],
            "background_false_alarm": float(m[0, 1] / m[0].sum()) if m[0].sum() else float("nan"),
            "patches": len(indices),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    from dakd_edge.data import open_dataset
    from dakd_edge.inference import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model file or 'bundled' (repeatable; default bundled)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sos")
    ap.add_argument("--split", default="train")
    ap.add_argument("--holdout", default="bundled", help="FRACTION:SEED or 'bundled'; '' = the whole split")
    ap.add_argument("--sensor", default="palsar,sentinel")
    ap.add_argument("-o", "--out", type=Path, help="JSON report (default: stdout)")
    args = ap.parse_args(argv)
    held = (
        held_out_files(args.data, args.split, "auto", parse_holdout(args.holdout)) if args.holdout else None
    )
    report: dict[str, Any] = {"script": "benchmarks/rerender.py", "data": str(args.data), "split": args.split,
                              "holdout": args.holdout, "seed": SEED, "models": {}}  # fmt: skip
    for model in args.model or ["bundled"]:
        predictor = load(None if model == "bundled" else model, backend="auto")
        res = {}
        for sensor in args.sensor.split(","):
            ds = open_dataset(args.data, split=args.split, kind="auto", sensor=sensor, classes="binary")
            idx = holdout_indices(ds, held) if held is not None else list(range(len(ds)))
            res[sensor] = score(predictor, ds, idx)
            for mode, r in res[sensor].items():
                print(f"{model} {sensor} {mode}: mIoU {100 * r['miou']:.2f}, background called oil "
                      f"{100 * r['background_false_alarm']:.2f} %", file=sys.stderr)  # fmt: skip
        predictor.close()
        report["models"][model] = res
    write_report(report, args.out)


if __name__ == "__main__":
    main()
