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
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.inference.base import Backend
from dakd_edge.meta import ModelMeta

ROOT = Path(__file__).resolve().parents[1]


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
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dakd-scene-bench-", dir=args.workdir) as tmp:
        rep = segment_scene(predictor, args.scene, Path(tmp) / "classes.tif", vector=Path(tmp) / "v.gpkg")
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    mp = rep["megapixels"]
    row = {
        "backend": args.backend,
        "scene": Path(args.scene).name,
        "size": rep["width"],
        "megapixels": mp,
        "valid_fraction": rep["valid_fraction"],
        "tiles": rep["tiles"],
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
    print(json.dumps(row))


def _run_child(args: argparse.Namespace, backend: str, model: str | None, scene: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--backend", backend, "--scene", str(scene)]
    cmd += ["--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch)]
    cmd += ["--workdir", str(args.workdir), "--threads", str(args.threads)]
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
            from dakd_edge.weights import bundled_path

            p = bundled_path(name)
            ok = p.suffix == ".onnx" if name == "onnxruntime" else p.suffix in (".safetensors", ".pt")
            out[name] = str(p) if ok else None
        except Exception:
            out[name] = None
    return out


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
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1, help="Tiles per call (the CLI default on CPU).")
    ap.add_argument("--threads", type=int, default=2, help="Intra-op threads (0: library default).")
    ap.add_argument("--nodata-check", action="store_true", help="Also run half-nodata scenes.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dakd-scene-bench")
    ap.add_argument("-o", "--out", type=Path)
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
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
    from dakd_edge.bench import environment

    doc = {
        "benchmark": "scene",
        "environment": environment(),
        "settings": {
            k: str(v) for k, v in vars(args).items() if k not in ("child", "backend", "scene", "model")
        },
        "models": models,
        "results": rows,
        "checks": checks(rows, sizes),
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
