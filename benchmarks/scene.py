"""Whole-scene benchmark: `segment` on synthetic scenes per backend -> MPix/s and peak RSS (JSON).

    python benchmarks/scene.py --sizes 4096,16384 --backends onnxruntime,torch,null -o scene.json

Each (backend, scene) runs in a fresh child process, so its peak RSS (``ru_maxrss``) is that run's
alone. Backends: ``torch`` (.safetensors), ``onnxruntime`` (.onnx) from ``--torch-model`` /
``--onnx-model`` (default: the bundled files), and ``null``, a numpy backend with zero model cost that
measures the pipeline itself (read, scale, tile, blend, COG writes, polygons) and its memory.
Both wall time and process CPU time are reported: on a shared machine CPU time is the steadier one.

Checks (reported, not asserted): peak RSS at the largest size within 20% of the smallest and under
1.5 GB; onnxruntime >= 1.5x torch throughput; all-nodata regions cost < 5% of data regions (a scene
whose left half is nodata vs the full scene: ``(t_half - t_full / 2) / (t_full / 2)`` per pixel, which
includes the boundary tiles that hold data and must run, and ``skipped_tile_cost``, the time of a
skipped tile relative to a run one, which does not).

Sentinel-1 mode (issue 14), ``--s1``: a full-size synthetic IW GRD product (16705 x 26102) built from the
real metadata of the shared S1B product (``--s1-source``; a generated SAFE of the same size when the
shared data is absent; ``--size HxW`` or ``N`` for a smaller, centred crop), then ``segment`` on it with
the bundled ONNX model (calibration, GLOBE land mask, polygons to GPKG) in a child process whose peak
RSS is that run's alone:

    python benchmarks/scene.py --s1 -o docs/scene-s1.json

``--s1-border-noise NEAR,FAR`` writes the border noise of products processed before IPF 2.90 into it
(:func:`~dakd_edge.data.sentinel1.build_synthetic_product`; its metadata stays IPF 3.40, so ``auto``
does not mask it) and ``--border-noise keep,mask`` runs ``segment`` once per mode, alternating, on the
same product (``by_border_noise``: time, RSS, spills and oil share per run)::

    python benchmarks/scene.py --s1 --s1-border-noise 300,250 --border-noise keep,mask,keep,mask

It reports end-to-end time, MPix/s, peak RSS, the shares of the end-to-end time spent in reading +
calibration (``stage_s.read``), land masking (``stage_s.land_mask`` plus building the masker) and the
rest (inference, writing, polygons), tiles run / skipped as land, and the land share of the scene.
Targets (reported, not asserted): calibration + masking (+ geocoding, not done: outputs keep the GCPs,
so its share is 0) <= 25 % of the end-to-end time; peak RSS <= 1.5 GB. The product (about 800 MB, VV
only: ``segment`` reads VV) goes to ``--workdir`` and is deleted afterwards unless ``--keep-product``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.inference.base import Backend
from dakd_edge.jsonout import write_report
from dakd_edge.meta import ModelMeta

ROOT = Path(__file__).resolve().parents[1]
S1_SOURCE = (
    ROOT.parent / "shared/data/s1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
)
S1_FULL = (16705, 26102)  # lines x samples of that product
S1_TARGETS = {"calibration_plus_masking_share_max": 0.25, "peak_rss_mb_max": 1536}


class NullBackend(Backend):
    """Zero-cost model (logits from the input itself) to measure the scene pipeline alone."""

    name = "null"
    device = "cpu"

    def __init__(self, tile: int = 512) -> None:
        self.meta = ModelMeta.default_for("null", 5, tile=tile)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Oil where the 16x16-block mean is dark, land where bright: smooth, plausible class maps."""
        n, _, h, w = batch.shape
        f = 16
        x = np.pad(batch[:, 0], ((0, 0), (0, -h % f), (0, -w % f)), mode="edge")
        coarse = x.reshape(n, x.shape[1] // f, f, x.shape[2] // f, f).mean(axis=(2, 4))
        coarse = coarse.repeat(f, 1).repeat(f, 2)[:, :h, :w]
        logits = np.zeros((n, 5, h, w), np.float32)
        logits[:, 1] = -4.0 * (coarse + 1.0)
        logits[:, 4] = 4.0 * (coarse - 1.5)
        return logits


def make_scene(workdir: Path, size: int, seed: int, half_nodata: bool) -> Path:
    """Synthetic scene (cached); ``half_nodata`` blanks the left half to nodata 0, window by window."""
    import rasterio
    from rasterio.windows import Window

    from dakd_edge.data.synthetic import write_scene_geotiff

    full = workdir / f"scene_{size}.tif"
    if not full.exists():
        write_scene_geotiff(full, seed=seed, height=size, width=size)
    if not half_nodata:
        return full
    half = workdir / f"scene_{size}_halfnodata.tif"
    if not half.exists():
        tmp = half.with_suffix(".partial.tif")
        with rasterio.open(full) as src:
            profile = src.profile | {"nodata": 0}
            with rasterio.open(tmp, "w", **profile) as dst:
                for y in range(0, size, 1024):
                    win = Window(0, y, size, min(1024, size - y))
                    a = src.read(window=win)
                    a[a == 0] = 1  # 0 now means nodata
                    a[:, :, : size // 2] = 0
                    dst.write(a, window=win)
        os.replace(tmp, half)
    return half


def child(args: argparse.Namespace) -> None:
    """One measured run in this process; prints one JSON line."""
    from dakd_edge.inference.predictor import Predictor
    from dakd_edge.inference.segment import segment_scene

    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    t_load = time.perf_counter()
    if args.backend == "null":
        predictor = Predictor(NullBackend(), tile=args.tile, overlap=args.overlap, batch=args.batch)
    else:
        from dakd_edge.inference.backends import open_backend

        kw: dict[str, Any] = {}
        if args.backend == "onnxruntime" and args.threads:
            kw["threads"] = args.threads
        if args.backend == "torch" and args.threads:
            import torch

            torch.set_num_threads(args.threads)
        backend = open_backend(args.model, args.backend, "cpu", **kw)
        predictor = Predictor(backend, tile=args.tile, overlap=args.overlap, batch=args.batch)
    load_s = time.perf_counter() - t_load
    import dakd_edge.inference.segment as seg

    masker_s = [0.0]
    make_masker = seg._land_masker

    def timed_masker(*a: Any, **k: Any) -> Any:  # building the land masker: part of land masking
        t = time.perf_counter()
        try:
            return make_masker(*a, **k)
        finally:
            masker_s[0] += time.perf_counter() - t

    seg._land_masker = timed_masker
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dakd-scene-bench-", dir=args.workdir) as tmp:
        rep = segment_scene(predictor, args.scene, Path(tmp) / "classes.tif", vector=Path(tmp) / "v.gpkg",
                            border_noise=args.child_border_noise)  # fmt: skip
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    mp = rep["megapixels"]
    row = {
        "backend": args.backend,
        "scene": Path(args.scene).name,
        "size": rep["width"],
        "megapixels": mp,
        "valid_fraction": rep["valid_fraction"],
        "tiles": rep["tiles"],
        "tiling": {k: getattr(predictor.tiling, k) for k in ("tile", "overlap", "batch")},
        "model": rep["model"],
        "load_s": round(load_s, 2),
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "mpix_per_s_wall": round(mp / wall_s, 4),
        "mpix_per_s_cpu": round(mp / cpu_s, 4),
        "spills": rep["spills"],
        "peak_buffer_mb": rep["peak_buffer_mb"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if rep.get("land_mask") is not None or rep.get("product") is not None:
        row["height"] = rep["height"]
        row["segment_time_s"] = rep["time_s"]
        row["inference_s"] = rep["inference_s"]
        row["stage_s"] = dict(rep["stage_s"]) | {"land_mask_setup": round(masker_s[0], 3)}
        row["land_mask"] = rep["land_mask"]
        row["class_fraction"] = rep["class_fraction"]
        row["input_scale"] = rep["input_scale"]
        row["input_domain_warning"] = rep["input_domain_warning"]
        row["border_noise"] = (rep.get("product") or {}).get("border_noise")
        row["georeference"] = rep["georeference"]
    print(json.dumps(row))


def _run_child(
    args: argparse.Namespace, backend: str, model: str | None, scene: Path, border_noise: str = "auto"
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--backend", backend, "--scene", str(scene)]
    cmd += ["--batch", str(args.batch)] if args.batch else []
    cmd += ["--tile", str(args.tile)] if args.tile else []
    cmd += ["--overlap", str(args.overlap)] if args.overlap is not None else []
    cmd += ["--workdir", str(args.workdir), "--threads", str(args.threads)]
    cmd += ["--child-border-noise", border_noise]
    if model:
        cmd += ["--model", model]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)} if args.threads else os.environ
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"backend": backend, "scene": scene.name, "status": "failed", "reason": tail}
    row = json.loads(r.stdout.strip().splitlines()[-1])
    row["status"] = "ok"
    print(json.dumps(row), file=sys.stderr)
    return row


def _models(args: argparse.Namespace) -> dict[str, str | None]:
    out: dict[str, str | None] = {"null": None}
    for name, given in (("torch", args.torch_model), ("onnxruntime", args.onnx_model)):
        if given:
            out[name] = given
            continue
        try:
            from dakd_edge.formats import backend_for
            from dakd_edge.weights import bundled_path

            p = bundled_path(name)
            out[name] = str(p) if backend_for(p) == name else None
        except Exception:
            out[name] = None
    return out


def _parse_size(text: str | None) -> tuple[int, int]:
    if not text:
        return S1_FULL
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def build_s1_product(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The synthetic GRD product under ``args.workdir`` (rebuilt each run) and how it was made."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    h, w = _parse_size(args.size)
    source = Path(args.s1_source) if args.s1_source else S1_SOURCE
    real = (source / "manifest.safe").is_file()
    out = args.workdir / "s1-product"
    shutil.rmtree(out, ignore_errors=True)
    kw: dict[str, Any] = {"seed": args.seed, "pols": ("VV",), "border_noise": args.s1_border_noise}
    if real:
        H, W = S1_FULL
        h, w = min(h, H), min(w, W)
        kw |= {"source": source, "shape": (h, w), "offset": ((H - h) // 2, (W - w) // 2)}
    else:
        kw |= {"source": None, "shape": (h, w)}
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"building product: {done}/{total} rows", file=sys.stderr)

    prod = build_synthetic_product(out, progress=progress, **kw)
    tiff = sum(f.stat().st_size for f in (prod.path / "measurement").glob("*.tiff"))
    how = {
        "metadata": str(source) if real else "generated (write_minimal_safe; shared data absent)",
        "shape": [h, w],
        "offset": list(kw.get("offset", (0, 0))),
        "full_size": (h, w) == S1_FULL,
        "pols": list(prod.pols),
        "seed": args.seed,
        "border_noise_px": list(args.s1_border_noise),
        "measurement_mb": round(tiff / 2**20, 1),
        "build_s": round(time.perf_counter() - t0, 1),
    }
    return prod.path, how


def s1_summary(row: dict[str, Any]) -> dict[str, Any]:
    """Shares of the end-to-end time, land, tiles and the targets, from one S1 child row."""
    total = row["wall_s"]
    st = row["stage_s"]
    read, land = st["read"], st["land_mask"] + st["land_mask_setup"]
    rest = total - read - land
    tiles, lm = row["tiles"], row["land_mask"] or {}
    skipped_land = lm.get("tiles_skipped", 0)
    share = round((read + land) / total, 4)
    return {
        "end_to_end_s": total,
        "cpu_s": row["cpu_s"],
        "megapixels": row["megapixels"],
        "mpix_per_s": row["mpix_per_s_wall"],
        "mpix_per_s_cpu": row["mpix_per_s_cpu"],
        "peak_rss_mb": row["peak_rss_mb"],
        "stage_s": {
            "read": read,  # reading the DN + calibration to sigma0 (+ thermal noise removal)
            "land_mask": round(land, 3),  # masker setup + per-window masks
            "land_mask_setup": st["land_mask_setup"],
            "land_mask_windows": st["land_mask"],
            "geocode": 0.0,
            "rest": round(rest, 3),  # inference, blending, COG + GPKG writing, polygons
        },
        "share": {
            "calibration": round(read / total, 4),
            "land_mask": round(land / total, 4),
            "geocode": 0.0,
            "calibration_plus_masking_plus_geocode": share,
            "rest": round(rest / total, 4),
        },
        "geocode_note": "not done: outputs keep the product's GCPs (no --geocode in segment), so its share is 0",
        "tiles": {
            "total": tiles["total"],
            "run": tiles["run"],
            "skipped_land": skipped_land,
            "skipped_nodata_total": tiles["skipped_nodata"],
        },
        "land_mask": lm,
        # DN >= 1 everywhere and the -35 dB floor is finite: the only invalid pixels are land + buffer
        "land_share": round(1 - row["valid_fraction"], 4),
        "land_share_note": "1 - valid_fraction: land plus the coast buffer (the product has no nodata border)",
        "targets": S1_TARGETS,
        "meets": {
            "calibration_plus_masking_share": share <= S1_TARGETS["calibration_plus_masking_share_max"],
            "peak_rss": row["peak_rss_mb"] <= S1_TARGETS["peak_rss_mb_max"],
        },
    }


def run_s1(args: argparse.Namespace) -> None:
    model = args.onnx_model or _models(args).get("onnxruntime")
    if not model:
        raise SystemExit("no ONNX model (bundled .onnx missing; give --onnx-model)")
    product, how = build_s1_product(args)
    print(f"product {how['shape']} built in {how['build_s']} s", file=sys.stderr)
    runs = []
    try:
        for mode in args.border_noise:
            runs.append((mode, _run_child(args, "onnxruntime", model, product, border_noise=mode)))
    finally:
        if not args.keep_product:
            shutil.rmtree(product.parent, ignore_errors=True)
    row = runs[0][1]
    summary = s1_summary(row) if row.get("status") == "ok" else None
    extra: dict[str, Any] = {}
    if len(runs) > 1:  # one line per run, in the order run
        keys = ("wall_s", "cpu_s", "peak_rss_mb", "spills", "class_fraction", "border_noise", "status")
        extra["by_border_noise"] = [{"mode": m, **{k: r.get(k) for k in keys}} for m, r in runs]
    _report(args, "scene-s1", model=model, product=how, result=row, summary=summary, **extra)


def _report(args: argparse.Namespace, benchmark: str, **fields: Any) -> None:
    """Print the result document and write it to ``--out``: the benchmark's name, the environment and
    the settings (child-mode options left out), then ``fields``."""
    from dakd_edge.bench import environment

    doc = {
        "benchmark": benchmark,
        "environment": environment(),
        "settings": {
            k: str(v) for k, v in vars(args).items() if k not in ("child", "backend", "scene", "model")
        },
        **fields,
    }
    write_report(doc, args.out, echo=True)


def checks(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "ok"]
    res: dict[str, Any] = {}
    full = {(r["backend"], r["size"]): r for r in ok if r["valid_fraction"] > 0.99}
    half = {(r["backend"], r["size"]): r for r in ok if r["valid_fraction"] < 0.99}
    lo, hi = min(sizes), max(sizes)
    for b in sorted({r["backend"] for r in ok}):
        if (b, lo) in full and (b, hi) in full and lo != hi:
            a, z = full[(b, lo)]["peak_rss_mb"], full[(b, hi)]["peak_rss_mb"]
            res[f"{b}_rss_ratio_{hi}_vs_{lo}"] = round(z / a, 3)
            res[f"{b}_rss_{hi}_under_1.5GB"] = z < 1536
        for s in sizes:
            if (b, s) in full and (b, s) in half:
                f, hf = full[(b, s)], half[(b, s)]
                r = hf["tiles"]["run"] / f["tiles"]["run"]  # boundary tiles hold data and must run
                for clock in ("cpu_s", "wall_s"):
                    tf, th = f[clock], hf[clock]
                    # cost of the nodata half per pixel, relative to the data half
                    res[f"{b}_{s}_nodata_region_cost_{clock}"] = round((th - tf / 2) / (tf / 2), 4)
                    # cost of a skipped all-nodata tile relative to a tile that runs
                    res[f"{b}_{s}_skipped_tile_cost_{clock}"] = round((th - tf * r) / (tf * (1 - r)), 4)
    for s in sizes:
        if ("torch", s) in full and ("onnxruntime", s) in full:
            for clock in ("cpu", "wall"):
                o, t = full[("onnxruntime", s)], full[("torch", s)]
                k = f"mpix_per_s_{clock}"
                res[f"ort_vs_torch_{s}_{clock}"] = round(o[k] / t[k], 3)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096,16384", help="Square scene sides, comma-separated.")
    ap.add_argument("--backends", default="onnxruntime,torch,null")
    ap.add_argument("--torch-model")
    ap.add_argument("--onnx-model")
    ap.add_argument(
        "--tile", type=int, default=None, help="default: the model's own tile (null backend: 512)"
    )
    ap.add_argument("--overlap", type=int, default=None, help="default: the model's own overlap")
    ap.add_argument("--batch", type=int, default=None, help="Tiles per call (default: segment's own).")
    ap.add_argument("--threads", type=int, default=2, help="Intra-op threads (0: library default).")
    ap.add_argument("--nodata-check", action="store_true", help="Also run half-nodata scenes.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dakd-scene-bench")
    ap.add_argument("-o", "--out", type=Path)
    ap.add_argument("--s1", action="store_true", help="Sentinel-1 mode: a synthetic IW GRD product.")
    ap.add_argument("--s1-source", help="Real SAFE whose metadata to use (default: the shared S1B product).")
    ap.add_argument("--size", help="S1 product size HxW or N (default: full 16705x26102; centred crop).")
    ap.add_argument("--keep-product", action="store_true", help="Keep the S1 product in --workdir.")
    ap.add_argument(
        "--s1-border-noise",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        default=(0, 0),
        help="NEAR,FAR px of pre-IPF-2.90 border noise written into the S1 product [none].",
    )
    ap.add_argument(
        "--border-noise",
        type=lambda t: [m for m in t.split(",") if m],
        default=["auto"],
        help="segment's --border-noise per run, comma-separated (e.g. keep,mask,keep,mask) [auto].",
    )
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--child-border-noise", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.s1:
        run_s1(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    models = _models(args)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        t0 = time.perf_counter()
        scenes = [make_scene(args.workdir, size, args.seed, False)]
        if args.nodata_check:
            scenes.append(make_scene(args.workdir, size, args.seed, True))
        print(f"scenes {size}^2 ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for b in backends:
            if b != "null" and not models.get(b):
                rows.append({"backend": b, "size": size, "status": "skipped", "reason": "no model file"})
                continue
            for scene in scenes:
                rows.append(_run_child(args, b, models.get(b), scene))
    _report(args, "scene", models=models, results=rows, checks=checks(rows, sizes))


if __name__ == "__main__":
    main()
