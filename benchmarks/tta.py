"""Does test-time augmentation help? Per-patch mIoU with each tile's prediction averaged over flips.

``python benchmarks/tta.py --split train --holdout bundled -o tta.json``

Test-time augmentation (TTA) runs the model on transformed copies of every tile, maps each output
back and averages the class probabilities. Sets: ``none`` (1 call per tile), ``h`` (plus the
horizontal flip: 2), ``flip4`` (h, v and both: 4) and ``d4`` (the eight flips and transposes of the
square: 8). The cost is that many backend calls; the gain is what this script measures. The default
set is the test subset; ``--split train --holdout bundled`` scores the bundled recipe's 200 held-out
validation pairs per sensor (how a default would be chosen). ``dakd-edge segment`` offers no TTA:
see docs/bundled-v2.md for why (the measured gain).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.jsonout import write_report

ROOT = Path(__file__).resolve().parents[1]

# each transform of the last two axes (H, W) and its inverse; transposes need square tiles
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "id": lambda a: a,
    "h": lambda a: a[..., ::-1],
    "v": lambda a: a[..., ::-1, :],
    "hv": lambda a: a[..., ::-1, ::-1],
    "t": lambda a: np.swapaxes(a, -1, -2),
    "th": lambda a: np.swapaxes(a, -1, -2)[..., ::-1],
    "tv": lambda a: np.swapaxes(a, -1, -2)[..., ::-1, :],
    "thv": lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1],
}
INVERSE = {"id": "id", "h": "h", "v": "v", "hv": "hv", "t": "t", "th": "tv", "tv": "th", "thv": "thv"}
SETS = {"none": ["id"], "h": ["id", "h"], "flip4": ["id", "h", "v", "hv"], "d4": list(TRANSFORMS)}


@functools.cache
def _mosaic_module() -> Any:
    """benchmarks/mosaic.py (a script, not a package): its patch loading and validation split."""
    spec = importlib.util.spec_from_file_location(
        "dakd_bench_mosaic_for_tta", ROOT / "benchmarks" / "mosaic.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def averaged(
    predict: Callable[[np.ndarray], np.ndarray], names: list[str]
) -> Callable[[np.ndarray], np.ndarray]:
    """A backend ``predict`` (N, C, H, W) -> logits that averages the softmax over ``names`` and
    returns its log (so the tiler's own softmax gives the averaged probabilities back)."""
    from dakd_edge.inference.tiling import softmax

    def run(batch: np.ndarray) -> np.ndarray:
        total = 0.0
        for n in names:
            out = np.asarray(predict(np.ascontiguousarray(TRANSFORMS[n](batch))), np.float32)
            total = total + softmax(np.ascontiguousarray(TRANSFORMS[INVERSE[n]](out)))
        return np.log(np.maximum(total / len(names), 1e-12)).astype(np.float32)

    return run


def score_sets(
    make: Callable[[], Any], images: list[np.ndarray], masks: list[np.ndarray], sets: list[str]
) -> dict[str, Any]:
    """Per-patch mIoU (oil vs background, over all pixels) and seconds for each TTA set."""
    mosaic = _mosaic_module()
    out: dict[str, Any] = {}
    for name in sets:
        predictor = make()
        predictor.backend.predict = averaged(predictor.backend.predict, SETS[name])
        cm = mosaic._confusion(2)
        t0 = time.perf_counter()
        for im, m in zip(images, masks, strict=True):
            pred = predictor.predict(im, scale="uint8")
            cm.update(np.where(pred == 255, 0, pred), m)
        predictor.close()
        out[name] = {"miou": round(100 * mosaic._scores(cm)["miou"], 2), "calls_per_tile": len(SETS[name]),
                     "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    base = out.get("none", {}).get("miou")
    if base is not None:
        for r in out.values():
            r["gain"] = round(r["miou"] - base, 2)
    return out


def main(argv: list[str] | None = None) -> None:
    mosaic = _mosaic_module()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mosaic.add_model_data_args(ap)
    ap.add_argument("--sensor", default="palsar,sentinel", help="comma list")
    ap.add_argument(
        "--holdout", help="FRACTION:SEED or 'bundled' (with --split train): the held-out pairs only"
    )
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma list of {', '.join(SETS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("-o", "--out", type=Path, help="JSON output")
    args = ap.parse_args(argv)
    sets = args.sets.split(",")
    if unknown := set(sets) - set(SETS):
        ap.error(f"unknown --sets {sorted(unknown)}")

    from dakd_edge.data import open_dataset

    held = None
    if args.holdout:
        held = mosaic.held_out_files(args.data, args.split, args.kind, mosaic.parse_holdout(args.holdout))
    report: dict[str, Any] = {
        "benchmark": "tta",
        "argv": sys.argv[1:] if argv is None else argv,
        "split": args.split,
        "holdout": args.holdout,
        "env": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "models": {},
    }
    for model in args.model or ["bundled"]:
        factory = mosaic.predictor_factory(model, args.backend, args.threads)

        def make(factory: Callable[[int | None, int | None], Any] = factory) -> Any:
            return factory(None, None)  # the model's own tiling, as `segment` uses it

        res: dict[str, Any] = {}
        for sensor in args.sensor.split(","):
            ds = open_dataset(args.data, split=args.split, kind=args.kind, classes="binary", sensor=sensor)
            idx = mosaic.holdout_indices(ds, held) if held is not None else None
            images, masks = mosaic.load_patches(ds, idx)
            res[sensor] = {"patches": len(images), "sets": score_sets(make, images, masks, sets)}
            print(f"{model} {sensor}: {json.dumps(res[sensor]['sets'])}", flush=True)
        report["models"][model] = res
    write_report(report, args.out)


if __name__ == "__main__":
    main()
