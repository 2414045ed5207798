"""Batch benchmark: `dakd-edge batch` on Ray (1 and 2 workers) vs a plain loop over `segment_scene` (JSON).

    python benchmarks/batch.py --scenes 4 --size 2048 -o docs/batch.json

Same scenes (synthetic, georeferenced, different seeds), same bundled ONNX model, same outputs (class
COG, GeoJSON polygons, report) in every mode:

- ``loop``: one process loads the model once (ONNX Runtime with all CPUs as intra-op threads) and calls
  ``segment_scene`` on each scene in turn; the time includes the model load.
- ``ray_1`` / ``ray_2``: :func:`dakd_edge.batch.run` with 1 or 2 workers (threads = CPUs / workers),
  the time of ``run`` itself (actors, model loads, manifest, merged layer) on a local Ray session
  started just before it; ``ray_init_s`` is that start-up, paid once per batch, reported apart.

The overhead of Ray at 1 worker is ``median(ray_1) / median(loop) - 1`` (target <= 10 % on 2048^2
scenes). Loop and 1-worker runs alternate ``--repeats`` times, each Ray run on a fresh session (no
idle Ray processes during the loop), so the drift of a shared machine (10-20 % here) hits both alike;
the per-pair ratios and the load average at the start are in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def make_scenes(workdir: Path, n: int, size: int) -> list[Path]:
    from dakd_edge.data.synthetic import write_scene_geotiff

    out = []
    for i in range(n):
        p = workdir / f"scene{i}.tif"
        if not p.exists():
            write_scene_geotiff(p, seed=i, height=size, width=size)
        out.append(p)
    return out


def plain_loop(scenes: list[Path], out: Path, threads: int) -> dict[str, Any]:
    from dakd_edge.batch.manifest import scene_outputs
    from dakd_edge.batch.worker import make_predictor
    from dakd_edge.inference.segment import segment_scene

    t0 = time.perf_counter()
    predictor = make_predictor(None, {"backend": "onnxruntime", "batch": 1, "threads": threads})
    for s in scenes:
        paths = scene_outputs(out, s.stem)
        paths["classes"].parent.mkdir(parents=True)
        segment_scene(predictor, s, paths["classes"], vector=paths["vector"], report=paths["report"])
    return {"time_s": time.perf_counter() - t0}


def ray_run(scenes: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from dakd_edge.batch import run

    t0 = time.perf_counter()
    summary = run(scenes, out, workers=workers, backend="onnxruntime")
    assert not summary["failed"], summary["failed"]
    return {
        "time_s": time.perf_counter() - t0,
        "workers": summary["workers"],
        "features": summary["features"],
    }


def rates(row: dict[str, Any], n: int, size: int) -> dict[str, Any]:
    t = row["time_s"]
    return {
        **row,
        "time_s": round(t, 3),
        "scenes_per_min": round(n / t * 60, 3),
        "mpix_per_s": round(n * size * size / 1e6 / t, 3),
    }


def ray_mode(scenes: list[Path], out: Path, workers: int, cpus: int) -> dict[str, Any]:
    """``run`` on a fresh local Ray session; its start-up (``init_s``) is timed apart."""
    import ray

    t = time.perf_counter()
    ray.init(
        address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
    )
    init = time.perf_counter() - t
    try:
        row = ray_run(scenes, out, workers)
    finally:
        ray.shutdown()
    return {**row, "init_s": round(init, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="Alternating loop / 1-worker pairs.")
    ap.add_argument("--workdir", type=Path, help="Scenes are cached here [a temporary folder].")
    ap.add_argument("-o", "--json", type=Path, help="Write the report here.")
    args = ap.parse_args()

    cpus = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="dakd-batch-bench-"))
    work = args.workdir or tmp
    work.mkdir(parents=True, exist_ok=True)
    n, size = args.scenes, args.size
    load = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict[str, Any]]] = {"loop": [], "ray_1": [], "ray_2": []}
    try:
        scenes = make_scenes(work, n, size)
        for r in range(args.repeats):  # alternate, so drift of a shared machine hits both alike
            runs["loop"].append(rates(plain_loop(scenes, tmp / f"loop{r}", threads=cpus), n, size))
            runs["ray_1"].append(rates(ray_mode(scenes, tmp / f"ray1_{r}", 1, cpus), n, size))
            shutil.rmtree(tmp / f"loop{r}")
            shutil.rmtree(tmp / f"ray1_{r}")
        runs["ray_2"].append(rates(ray_mode(scenes, tmp / "ray2", 2, cpus), n, size))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(x["time_s"] for x in v) for k, v in runs.items()}
    pairs = [
        round(b["time_s"] / a["time_s"] - 1, 4) for a, b in zip(runs["loop"], runs["ray_1"], strict=True)
    ]
    init = statistics.median(x["init_s"] for x in runs["ray_1"])
    report = {
        "benchmark": "batch",
        "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version()},
        "load_average_at_start": load,
        "scenes": n,
        "size": size,
        "model": "bundled ONNX (onnxruntime, CPU)",
        "median": {k: rates({"time_s": t}, n, size) for k, t in med.items()},
        "runs": runs,
        "ray_overhead_1_worker": round(med["ray_1"] / med["loop"] - 1, 4),
        "ray_overhead_1_worker_per_pair": pairs,
        "ray_init_s": init,
        "ray_overhead_1_worker_with_init": round((med["ray_1"] + init) / med["loop"] - 1, 4),
        "speedup_2_vs_1_worker": round(med["ray_1"] / med["ray_2"], 3),
        "target": {"ray_overhead_1_worker_max": 0.10},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
