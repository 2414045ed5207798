"""Per-patch vs whole-scene (tiled GeoTIFF) accuracy, and OSD false-alarm rates, per model (JSON).

    python benchmarks/mosaic.py --data ../shared/data/sos --osd ../shared/data/osd -o mosaic.json
    python benchmarks/mosaic.py --model bundled --model runs/v2/model.safetensors --tiles 512:64,256:0

Models are judged on labelled patches (``--data``, a dataset root that ``open_dataset`` reads; the
``--split`` subset, per ``--sensor`` for SOS) in two ways:

- **per patch**: each patch alone through ``Predictor.predict`` (what ``dakd-edge evaluate`` does);
- **mosaic**: ``--mosaics`` GeoTIFF mosaics of ``--grid`` x ``--grid`` different patches per sensor
  (seeded permutations of the patches, so with 40 patches and 16 per mosaic every patch appears in
  two of five mosaics) segmented by :func:`dakd_edge.inference.segment.segment_scene`, the streaming
  GeoTIFF path of ``dakd-edge segment``, once per ``--tiles`` entry (``TILE:OVERLAP``).

Both are scored with one confusion matrix over all pixels of the same patch slots (a patch used in two
mosaics counts twice in both), so ``mosaic - per_patch`` is the cost of unrelated neighbours in a tile.
``--split train --holdout bundled`` scores only the bundled recipe's held-out validation pairs: a
scene-level criterion for choosing between training runs that never touches the test subset.
``--layouts N`` repeats the mosaics with N seeds and reports the gap's mean and standard deviation:
with 40 patches, one set of five mosaics is one draw of neighbours.
``per_patch_all`` is the plain test-set score (every patch once: the model card's figure).

With ``--osd`` (an OSD root; its ``--osd-split`` images with 5-class labels) each model also gets the
**look-alike false-alarm rate** (share of look-alike pixels, label 2, predicted as oil), the **open-sea
false-alarm rate** (share of sea pixels, label 0, predicted as oil) and the oil recall (share of oil
pixels, label 1, predicted as oil), at each tile setting. Oil means the model's oil class(es).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.jsonout import write_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TILES = "512:64,256:64,256:0"
OSD_SEA, OSD_OIL, OSD_LOOKALIKE = 0, 1, 2


def parse_tiles(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        tile, _, overlap = item.strip().partition(":")
        out.append((int(tile), int(overlap or 0)))
    return out


def parse_phases(text: str) -> list[int]:
    """``"0,64,128"`` -> ``[0, 64, 128]``."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"phases must be integers, got {text!r}") from None


def tile_key(tile: int, overlap: int) -> str:
    return f"{tile}/{overlap}"


def patch_to_uint8(sample: dict[str, Any]) -> np.ndarray:
    """The 8-bit luminance the releases store (as ``dakd-edge evaluate`` feeds it)."""
    unit = np.asarray(sample["image"], np.float32)
    raw = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return raw[0] if raw.shape[0] == 1 else raw


def load_patches(ds: Any, indices: list[int] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, masks = [], []
    for i in range(len(ds)) if indices is None else indices:
        s = ds[i]
        images.append(patch_to_uint8(s))
        masks.append(np.asarray(s["mask"], np.int64))
    h = min(m.shape[0] for m in masks)
    w = min(m.shape[1] for m in masks)
    return [im[..., :h, :w] for im in images], [m[:h, :w] for m in masks]


def parse_holdout(text: str) -> tuple[float, int]:
    """``FRACTION:SEED``, or ``bundled``: the bundled recipe's validation split."""
    if text == "bundled":
        from dakd_edge.train.recipes.bundled import RECIPE

        return RECIPE.val_fraction, RECIPE.seed
    fraction, _, seed = text.partition(":")
    return float(fraction), int(seed or 0)


def held_out_files(data: Path, split: str, kind: str, holdout: tuple[float, int]) -> set[tuple[Path, ...]]:
    """The files of the validation pairs a training run with ``holdout`` (``val_fraction``, ``seed``)
    held out of the whole ``split`` (both sensors, as the trainers split)."""
    from dakd_edge.data import open_dataset
    from dakd_edge.train.saross import split_indices

    whole = open_dataset(data, split=split, kind=kind, classes="binary")
    _, val = split_indices(len(whole), *holdout)
    return {tuple(whole.files[i]) for i in val}


def holdout_indices(ds: Any, held: set[tuple[Path, ...]]) -> list[int]:
    """Indices of ``ds`` (e.g. one sensor's subset) whose files are among ``held``."""
    return [i for i in range(len(ds)) if tuple(ds.files[i]) in held]


def equalize(images: list[np.ndarray]) -> list[np.ndarray]:
    """Each uint8 patch mapped linearly to the median patch mean and standard deviation of the set.

    A diagnostic (``--equalize``): if the mosaic gap came from the brightness spread between unrelated
    patches, equalised mosaics would lose nothing against equalised patches.
    """
    stats = np.array([(im.mean(), im.std()) for im in images], np.float64)
    mean, std = np.median(stats, axis=0)
    return [
        np.clip((im - m) / max(s, 1e-3) * std + mean, 0, 255).round().astype(np.uint8)
        for im, (m, s) in zip(images, stats, strict=True)
    ]


def mosaic_layouts(n: int, count: int, grid: int, seed: int) -> list[list[int]]:
    """``count`` lists of ``grid * grid`` patch indices: consecutive chunks of seeded permutations.

    Every patch is used as often as the others (up to one), and never twice in one mosaic when there
    are at least ``grid * grid`` patches.
    """
    rng = np.random.default_rng([seed, 4242])
    g = grid * grid
    need = count * g
    order: list[int] = []
    while len(order) < need:
        perm = rng.permutation(n).tolist()
        partial = set(order[len(order) - len(order) % g :])  # the unfinished mosaic
        order += [i for i in perm if i not in partial] + [i for i in perm if i in partial]
    return [order[k * g : (k + 1) * g] for k in range(count)]


def assemble(items: list[np.ndarray], grid: int) -> np.ndarray:
    rows = [np.concatenate(items[r * grid : (r + 1) * grid], axis=-1) for r in range(grid)]
    return np.concatenate(rows, axis=-2)


def write_geotiff(path: Path, image: np.ndarray) -> None:
    """A georeferenced (UTM 33N, 10 m) GeoTIFF of ``image``'s dtype, as a real scene would be."""
    import rasterio
    from rasterio.transform import from_origin

    arr = image[None] if image.ndim == 2 else image
    profile = {
        "driver": "GTiff",
        "height": arr.shape[-2],
        "width": arr.shape[-1],
        "count": arr.shape[0],
        "dtype": str(arr.dtype),
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4600000.0, 10.0, 10.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)


def read_classes(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _scores(cm: Any) -> dict[str, Any]:
    r = cm.compute()
    return {
        "miou": float(r["miou"]),
        "iou": [float(v) for v in r["iou"]],
        "pixel_accuracy": float(r["pixel_accuracy"]),
    }


def _confusion(num_classes: int) -> Any:
    from dakd_edge.metrics import ConfusionMatrix

    return ConfusionMatrix(num_classes, ignore_index=255)


def score_sensor(
    make_predictor: Callable[[int, int], Any],
    images: list[np.ndarray],
    masks: list[np.ndarray],
    tiles: list[tuple[int, int]],
    mosaics: int,
    grid: int,
    seed: int,
    workdir: Path,
    layouts: int = 1,
    phase: int | Sequence[int] = 0,
) -> dict[str, Any]:
    """Per-patch and mosaic scores of one set of equally sized patches.

    ``layouts`` > 1 repeats the mosaics with seeds ``seed + 1 ...``, and ``out["layouts"][tile]`` gives
    the gap (mosaic minus per-patch mIoU on the same slots) of every layout set with its mean and
    standard deviation: how much of a gap is the draw of neighbours. The other fields are ``seed``'s.
    ``phase`` crops that many rows and columns off the top-left of every mosaic (and of the per-patch
    predictions it is compared with), so the tile grid no longer starts on a patch border. Several
    phases repeat everything per phase: ``out["phases"][tile]`` gives each phase's gap (mean over the
    layouts) and their mean; the other fields are the first phase's.
    """
    phases = [phase] if isinstance(phase, int) else list(phase)
    for ph in phases:
        if not 0 <= ph < min(masks[0].shape):
            raise ValueError(f"phase must be 0 to the patch size - 1 ({min(masks[0].shape) - 1}), got {ph}")
    base = make_predictor(tiles[0][0], tiles[0][1])
    k = base.meta.num_classes
    t0 = time.perf_counter()
    preds = [np.where(p == 255, 0, p) for p in (base.predict(im, scale="uint8") for im in images)]
    per_patch_seconds = time.perf_counter() - t0
    base.close()
    cm_all = _confusion(k)
    for p, m in zip(preds, masks, strict=True):
        cm_all.update(p, m)
    out: dict[str, Any] = {
        "patches": len(images),
        "patch_size": list(masks[0].shape),
        "mosaics": mosaics,
        "grid": grid,
        "mosaic_size": [grid * masks[0].shape[0] - phases[0], grid * masks[0].shape[1] - phases[0]],
        "phase": phases[0],
        "per_patch_all": {**_scores(cm_all), "seconds": per_patch_seconds},
    }
    keys = [tile_key(t, o) for t, o in tiles]
    per_layout: list[dict[str, list[float]]] = []  # per phase: the gap of every layout, per tile
    for i, ph in enumerate(phases):
        gaps: dict[str, list[float]] = {key: [] for key in keys}
        per_layout.append(gaps)
        for j in range(max(layouts, 1)):
            sub = workdir / f"phase{ph}-layout{j}"
            sub.mkdir(parents=True, exist_ok=True)
            per_patch, tiled = _layout_scores(
                make_predictor, images, masks, preds, k, tiles, mosaics, grid, seed + j, sub, ph
            )
            for key, v in tiled.items():
                gaps[key].append(v["delta_miou"])
            if i == 0 and j == 0:
                out["per_patch"], out["mosaic"] = per_patch, tiled
    if len(phases) > 1:
        for key in keys:
            g = [float(np.mean(gaps[key])) for gaps in per_layout]  # each phase: mean over layouts
            out.setdefault("phases", {})[key] = {"phases": phases, "gaps": g, "mean": float(np.mean(g))}
    if layouts > 1:
        out["layouts"] = {
            key: {"seeds": [seed + j for j in range(layouts)], "gaps": g, "mean": float(np.mean(g)),
                  "sd": float(np.std(g, ddof=1))}
            for key, g in per_layout[0].items()
        }  # fmt: skip
    return out


def _layout_scores(
    make_predictor: Callable[[int, int], Any], images: list[np.ndarray], masks: list[np.ndarray],
    preds: list[np.ndarray], k: int, tiles: list[tuple[int, int]], mosaics: int, grid: int, seed: int,
    workdir: Path, phase: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Per-patch scores on the slots of one seeded set of mosaics, and the mosaics' scores per tile
    (both on the mosaics less their first ``phase`` rows and columns)."""
    from dakd_edge.inference.segment import segment_scene

    def cut(items: list[np.ndarray]) -> np.ndarray:
        return assemble(items, grid)[..., phase:, phase:]

    grids = mosaic_layouts(len(images), mosaics, grid, seed)
    cm_slots = _confusion(k)
    for lay in grids:
        cm_slots.update(cut([preds[i] for i in lay]), cut([masks[i] for i in lay]))
    per_patch = _scores(cm_slots)
    scenes = []
    for j, lay in enumerate(grids):
        src = workdir / f"mosaic{j}.tif"
        write_geotiff(src, np.ascontiguousarray(cut([images[i] for i in lay])))
        scenes.append((src, cut([masks[i] for i in lay])))
    tiled: dict[str, Any] = {}
    for tile, overlap in tiles:
        predictor = make_predictor(tile, overlap)
        cm = _confusion(k)
        seconds = 0.0
        for j, (src, label) in enumerate(scenes):
            dst = workdir / f"mosaic{j}-classes.tif"
            t0 = time.perf_counter()
            segment_scene(predictor, src, dst, scale="uint8", overwrite=True, polygons=False)
            seconds += time.perf_counter() - t0
            pred = read_classes(dst)
            cm.update(np.where(pred == 255, 0, pred), label)
        predictor.close()
        s = _scores(cm)
        s["seconds"] = seconds
        s["delta_miou"] = s["miou"] - per_patch["miou"]
        tiled[tile_key(tile, overlap)] = s
    return per_patch, tiled


def false_alarms(
    make_predictor: Callable[[int, int], Any], images: list[np.ndarray], labels: list[np.ndarray],
    tiles: list[tuple[int, int]],
) -> dict[str, Any]:  # fmt: skip
    """Look-alike / open-sea false-alarm rates and oil recall on 5-class OSD labels, per tile setting."""
    from dakd_edge.inference.segment import oil_class_ids

    out: dict[str, Any] = {}
    for tile, overlap in tiles:
        predictor = make_predictor(tile, overlap)
        oil_ids = oil_class_ids(predictor.meta)
        hit = np.zeros(5, np.int64)
        total = np.zeros(5, np.int64)
        t0 = time.perf_counter()
        for im, lab in zip(images, labels, strict=True):
            oil = np.isin(predictor.predict(im, scale="uint8"), oil_ids)
            for c in range(5):
                sel = lab == c
                total[c] += int(sel.sum())
                hit[c] += int((oil & sel).sum())
        predictor.close()
        rate = [float(h / t) if t else float("nan") for h, t in zip(hit, total, strict=True)]
        out[tile_key(tile, overlap)] = {
            "lookalike_false_alarm": rate[OSD_LOOKALIKE],
            "open_sea_false_alarm": rate[OSD_SEA],
            "oil_recall": rate[OSD_OIL],
            "pixels": {
                "sea": int(total[OSD_SEA]),
                "oil": int(total[OSD_OIL]),
                "lookalike": int(total[OSD_LOOKALIKE]),
            },
            "seconds": time.perf_counter() - t0,
        }
    return out


def run_model(
    make_predictor: Callable[[int, int], Any],
    data: Path | None,
    split: str,
    sensors: list[str | None],
    tiles: list[tuple[int, int]],
    mosaics: int,
    grid: int,
    seed: int,
    osd: Path | None = None,
    osd_split: str = "test",
    kind: str = "auto",
    progress: Callable[[str], None] | None = None,
    equalized: bool = False,
    layouts: int = 1,
    holdout: tuple[float, int] | None = None,
    phase: int | Sequence[int] = 0,
) -> dict[str, Any]:
    """Every score of one model (``make_predictor(tile, overlap)`` builds its predictor).

    ``holdout`` (``val_fraction``, ``seed``): score only the validation pairs that a training run
    with that split held out of ``split`` (a scene-level check for choosing between runs without
    touching the test subset).
    """
    from dakd_edge.data import open_dataset

    res: dict[str, Any] = {"sensors": {}}
    held = held_out_files(data, split, kind, holdout) if holdout and data is not None else None
    with tempfile.TemporaryDirectory(prefix="dakd-mosaic-") as tmp:
        if data is not None:
            for sensor in sensors:
                ds = open_dataset(data, split=split, kind=kind, sensor=sensor, classes="binary")
                keep = holdout_indices(ds, held) if held is not None else None
                images, masks = load_patches(ds, keep)
                images = equalize(images) if equalized else images
                name = sensor or "all"
                sub = Path(tmp) / name
                sub.mkdir()
                res["sensors"][name] = score_sensor(
                    make_predictor, images, masks, tiles, mosaics, grid, seed, sub, layouts, phase
                )
                if progress:
                    progress(f"{name}: {summary_line(res['sensors'][name])}")
        if osd is not None:
            ds = open_dataset(osd, split=osd_split, kind="osd", classes="native")
            images = [patch_to_uint8(ds[i]) for i in range(len(ds))]
            labels = [np.asarray(ds[i]["mask"]) for i in range(len(ds))]
            res["osd"] = {"images": len(images), **false_alarms(make_predictor, images, labels, tiles)}
            if progress:
                progress("osd: " + ", ".join(
                    f"{k}: look-alike {100 * v['lookalike_false_alarm']:.1f}% sea {100 * v['open_sea_false_alarm']:.2f}%"
                    for k, v in res["osd"].items() if isinstance(v, dict)
                ))  # fmt: skip
    return res


def summary_line(r: dict[str, Any]) -> str:
    parts = [f"per-patch {100 * r['per_patch_all']['miou']:.2f} (slots {100 * r['per_patch']['miou']:.2f})"]
    parts += [f"mosaic {k} {100 * v['miou']:.2f}" for k, v in r["mosaic"].items()]
    parts += [
        f"gap {k} over {len(v['gaps'])} layouts {100 * v['mean']:+.2f} +- {100 * v['sd']:.2f}"
        for k, v in r.get("layouts", {}).items()
    ]
    parts += [
        f"gap {k} over phases {v['phases']} {100 * v['mean']:+.2f}" for k, v in r.get("phases", {}).items()
    ]
    return ", ".join(parts)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: one row per model and sensor / OSD, one column per tile."""
    tiles = report["tiles"]
    lines = [
        "| model | set | per patch | " + " | ".join(f"mosaic {t}" for t in tiles) + " |",
        "|---" * (3 + len(tiles)) + "|",
    ]
    for name, res in report["models"].items():
        for sensor, r in res.get("sensors", {}).items():
            cells = [
                f"{100 * r['mosaic'][t]['miou']:.2f} ({100 * r['mosaic'][t]['delta_miou']:+.2f})"
                for t in tiles
            ]
            lines.append(
                f"| {name} | {sensor} mIoU | {100 * r['per_patch_all']['miou']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
        if "osd" in res:
            for key, label in (
                ("lookalike_false_alarm", "OSD look-alike FA"),
                ("open_sea_false_alarm", "OSD open-sea FA"),
                ("oil_recall", "OSD oil recall"),
            ):
                cells = [f"{100 * res['osd'][t][key]:.2f} %" for t in tiles]
                lines.append(f"| {name} | {label} (tiled) | — | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predictor_factory(
    model: str, backend: str, threads: int | None, batch: int | None = 1
) -> Callable[[int | None, int | None], Any]:
    """``make(tile, overlap)``: a predictor of ``model`` ('bundled' or a file) at that tiling (None: the
    model's own), ``batch`` tiles per run (None: the backend's choice, as ``segment``)."""
    from dakd_edge.inference import load

    path = None if model == "bundled" else model
    if threads and backend == "torch":
        import torch

        torch.set_num_threads(threads)

    def make(tile: int | None, overlap: int | None) -> Any:
        return load(path, backend=backend, tile=tile, overlap=overlap, batch=batch)

    return make


def add_model_data_args(ap: argparse.ArgumentParser) -> None:
    """The models and labelled patches to score (this script's and ``benchmarks/level.py``'s)."""
    ap.add_argument("--model", action="append", help="model file or 'bundled' (repeatable; default bundled)")
    ap.add_argument("--backend", default="torch", help="auto, torch or onnxruntime (default torch)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sos")
    ap.add_argument("--split", default="test")
    ap.add_argument("--kind", default="auto")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_data_args(ap)
    ap.add_argument("--sensor", default="palsar,sentinel", help="comma list; 'all' = no sensor filter")
    ap.add_argument("--no-patches", action="store_true", help="skip the per-patch / mosaic part")
    ap.add_argument("--osd", type=Path, default=ROOT.parent / "shared" / "data" / "osd", help="'' to skip")
    ap.add_argument("--osd-split", default="test")
    ap.add_argument("--tiles", default=DEFAULT_TILES, help=f"TILE:OVERLAP list (default {DEFAULT_TILES})")
    ap.add_argument("--mosaics", type=int, default=5, help="mosaics per sensor")
    ap.add_argument("--grid", type=int, default=4, help="patches per mosaic side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--holdout",
        help="FRACTION:SEED or 'bundled': only the validation pairs a run with that split held out of "
        "--split (use --split train; for choosing between runs without the test subset)",
    )
    ap.add_argument(
        "--layouts", type=int, default=1,
        help="repeat the mosaics with seeds SEED, SEED+1, ...: mean and s.d. of the gap over the layouts",
    )  # fmt: skip
    ap.add_argument(
        "--phase", type=parse_phases, default=[0],
        help="crop this many rows and columns off every mosaic's top-left, so tile borders fall inside "
        "patches, not on their borders (a real scene has no patch grid); a comma list runs each and "
        "reports the gap's mean over them (e.g. 0,64,128,192)",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--equalize", action="store_true", help="diagnostic: equal patch mean and contrast")
    ap.add_argument("-o", "--out", type=Path, help="JSON output")
    args = ap.parse_args(argv)

    tiles = parse_tiles(args.tiles)
    sensors: list[str | None] = [None if s == "all" else s for s in args.sensor.split(",")]
    osd = args.osd if args.osd and str(args.osd) not in ("", ".") and args.osd.is_dir() else None
    report: dict[str, Any] = {
        "benchmark": "mosaic",
        "argv": sys.argv[1:] if argv is None else argv,
        "tiles": [tile_key(t, o) for t, o in tiles],
        "data": None if args.no_patches else str(args.data),
        "split": args.split,
        "equalized": args.equalize,
        "holdout": args.holdout,
        "phase": args.phase if len(args.phase) > 1 else args.phase[0],
        "osd": str(osd) if osd else None,
        "env": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "models": {},
    }
    for model in args.model or ["bundled"]:
        t0 = time.time()
        print(f"== {model}", flush=True)
        res = run_model(
            predictor_factory(model, args.backend, args.threads),
            None if args.no_patches else args.data,
            args.split,
            sensors,
            tiles,
            args.mosaics,
            args.grid,
            args.seed,
            osd=osd,
            osd_split=args.osd_split,
            kind=args.kind,
            progress=lambda line: print("  " + line, flush=True),
            equalized=args.equalize,
            layouts=args.layouts,
            holdout=parse_holdout(args.holdout) if args.holdout else None,
            phase=args.phase,
        )
        res["backend"] = args.backend
        res["seconds"] = time.time() - t0
        report["models"][model] = res
        if args.out:  # after each model, so a long run keeps what it measured
            write_report(report, args.out)
    if not args.out:
        write_report(report)
    print(markdown(report))


if __name__ == "__main__":
    main()
