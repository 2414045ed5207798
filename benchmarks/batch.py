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

``--layer NxP`` (repeatable) times the merged layer alone at archive scale, no model and no Ray::

    python benchmarks/batch.py --layer 100x200 --layer 500x500 --layer 2000x500 -o docs/batch_layer.json

N scenes of P polygons each, written as the workers write them (``write_vector`` GeoJSON in WGS84,
manifest lines with the sha256): datatakes of ``--take`` consecutive full-size IW GRD footprints
(25000 x 16700 pixels of 10 m) overlapping by ``--overlap-km``, pixel-traced blobs 4-60 px across
(~90 vertices) in a jittered grid, the same blobs traced again, a few metres apart, by both scenes of
an overlap, and one 4-12 km slick across every seam. Each size runs in a fresh process (its peak RSS
is its own) through the runner's layer (``runner._Layer``) as a run calls it: ``cold`` (every file
read: a resumed run, or the first rebuild), ``one_more`` (one scene more than the cached ones: the
periodic rebuild late in a run) and ``unchanged`` (nothing new: the final build after the last
periodic one). ``periodic_share_of_driver`` is the part of the driver's time that rebuilds as long as
``one_more`` take under the runner's rule for spacing them (workers that finish meanwhile wait).
Archives are kept in ``--workdir`` (2000x500 is 2.2 GB of GeoJSON) for the next run.
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

from dakd_edge.jsonout import write_report

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


# --- the merged layer at archive scale (--layer) -------------------------------------------------

ROWS, COLS, PIXEL = 16700, 25000, 10.0  # a Sentinel-1 IW GRD product: ~170 x 250 km at 10 m
CELL = 100  # px: one small blob per grid cell, so that polygons of one scene never overlap


def blob_templates(rng: Any, n: int = 96) -> list[tuple[list[Any], int]]:
    """Pixel-traced blobs (rings in pixel corners, as ``segment`` traces them) and their pixel areas:
    star-shaped masks 4-60 px across, traced by ``rasterio.features.shapes``."""
    import numpy as np

    out = []
    for size in np.exp(rng.uniform(np.log(4), np.log(60), n)):
        out.append(_blob(rng, float(size), 1.0))
    return out


def _blob(rng: Any, size: float, aspect: float) -> tuple[list[Any], int]:
    import numpy as np
    import rasterio.features

    n = int(size * aspect) + 6
    yy, xx = np.mgrid[:n, :n].astype(float) - n / 2
    a = rng.uniform(0, np.pi)
    u, v = (xx * np.cos(a) + yy * np.sin(a)) / aspect, -xx * np.sin(a) + yy * np.cos(a)
    th, r = np.arctan2(v, u), np.hypot(u, v)
    wobble = sum(rng.uniform(0, 0.25 / k**0.5) * np.cos(k * th + rng.uniform(0, 6.3)) for k in range(2, 9))
    m = (r < size / 2 * (1 + wobble)).astype(np.uint8)
    m[m.shape[0] // 2, m.shape[1] // 2] = 1
    shapes = [g["coordinates"] for g, _ in rasterio.features.shapes(m, mask=m.astype(bool))]
    rings = max(shapes, key=lambda c: len(c[0]))
    return [np.asarray(r, np.float64) for r in rings], int(m.sum())


def layer_archive(out: Path, scenes: int, polygons: int, take: int, overlap_km: float, seed: int) -> dict:
    """Write ``scenes`` per-scene GeoJSON files of about ``polygons`` polygons each and their
    manifest lines into the batch folder ``out``; returns counts of what was written."""
    import numpy as np

    from dakd_edge.atomic import file_sha256
    from dakd_edge.batch.manifest import append_record, scene_outputs
    from dakd_edge.inference.vectorize import write_vector

    rng = np.random.default_rng(seed)
    templates = blob_templates(rng)
    lap = int(round(overlap_km * 1000 / PIXEL))
    out.mkdir(parents=True)
    written = seams = 0
    for t0 in range(0, scenes, take):
        k, n = t0 // take, min(take, scenes - t0)
        crs = f"EPSG:{32601 + k % 60}"  # UTM zone k % 60 + 1 north; bands of datatakes northwards
        strip = n * (ROWS - lap) + lap
        origin = (500000.0 - COLS * PIXEL / 2, 200000.0 + (k // 60) * 1.8e6 + strip * PIXEL)
        blobs = _datatake_blobs(rng, templates, strip, n, lap, polygons)
        seams += n - 1
        for i in range(n):
            sid = f"S1_{k:04d}_{i:02d}"
            spills = _scene_spills(rng, blobs, i * (ROWS - lap), origin)
            paths = scene_outputs(out, sid)
            paths["vector"].parent.mkdir()
            write_vector(paths["vector"], spills, crs)
            start = f"2025-01-{1 + k % 28:02d}T05:{k % 60:02d}:{(i * 25) % 60:02d}"
            append_record(out, {
                "id": sid, "status": "ok", "sha256": {"vector": file_sha256(paths["vector"])},
                "start_time": start, "platform": "sentinel-1a" if k % 2 else "sentinel-1b",
                "spills": len(spills),
            })  # fmt: skip
            written += len(spills)
    return {"scenes": scenes, "parts": written, "seam_slicks": seams}


def _datatake_blobs(rng: Any, templates: list, strip: int, n: int, lap: int, polygons: int) -> list:
    """Blobs (rings in the datatake's pixel rows and columns, pixel area) over a strip of ``n`` scenes:
    small ones one per grid cell, and one long slick across the middle of each overlap."""
    import numpy as np
    import shapely

    per_row = COLS // CELL
    cells = (strip // CELL) * per_row
    blobs = []
    for c in rng.choice(cells, min(round(polygons * strip / ROWS), cells), replace=False):
        rings, area = templates[rng.integers(len(templates))]
        ext = max(np.ptp(rings[0], 0))
        off = np.array([c % per_row, c // per_row]) * CELL + rng.uniform(0, CELL - ext - 1, 2)
        blobs.append(([r - rings[0].min(0) + off for r in rings], area))
    for i in range(1, n):  # small blobs under the slick make way: one class map has no overlaps
        rings, area = _blob(rng, rng.uniform(15, 40), rng.uniform(10, 30))
        rings = [r - rings[0].min(0) for r in rings]
        w, h = np.ptp(rings[0], 0)
        off = np.array([rng.uniform(0, COLS - w), i * (ROWS - lap) + lap / 2 - h / 2])
        box = shapely.box(*(off - CELL), *(off + (w, h) + CELL))
        blobs = [b for b in blobs if not box.intersects(shapely.box(*b[0][0].min(0), *b[0][0].max(0)))]
        blobs.append(([r + off for r in rings], area))
    return blobs


def _scene_spills(rng: Any, blobs: list, r0: int, origin: tuple[float, float]) -> list:
    """The spills of the scene starting at strip row ``r0``: blobs across its first or last row cut
    there (``touches_edge``), all shifted by a few metres (another product, another pixel grid)."""
    import numpy as np
    import shapely

    from dakd_edge.inference.vectorize import Spill

    r1 = r0 + ROWS
    jitter = rng.uniform(-4, 4, 2)
    frame = shapely.box(0, r0, COLS, r1)
    spills = []
    for rings, area in blobs:
        lo, hi = rings[0][:, 1].min(), rings[0][:, 1].max()
        if hi <= r0 or lo >= r1:
            continue
        pieces = [(rings, area, False)]
        if lo < r0 or hi > r1:
            cut = shapely.get_parts(shapely.Polygon(rings[0], rings[1:]).intersection(frame))
            pieces = [
                (
                    [np.asarray(p.exterior.coords), *(np.asarray(h.coords) for h in p.interiors)],
                    int(p.area),
                    True,
                )
                for p in cut
                if p.geom_type == "Polygon" and p.area >= 1
            ]
        for prings, parea, edge in pieces:
            world = [
                np.column_stack([origin[0] + r[:, 0] * PIXEL, origin[1] - r[:, 1] * PIXEL]) + jitter
                for r in prings
            ]
            mean = float(rng.uniform(0.5, 0.9))
            spills.append(
                Spill(world, parea, parea * PIXEL**2, None, mean, min(1.0, mean + 0.08), None, edge)
            )
    return spills


def layer_rebuilds(out: Path, fmt: str) -> dict[str, Any]:
    """Rebuild the layer of the batch folder ``out`` as a run does (``runner._Layer``): cold, with one
    scene more, unchanged; wall and CPU seconds and the peak RSS after each."""
    import resource

    from dakd_edge.batch.layer import layer_path
    from dakd_edge.batch.manifest import read_manifest
    from dakd_edge.batch.runner import _Layer

    def rss_mb() -> float:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    records = read_manifest(out)
    ids = sorted(records)
    path = layer_path(out, fmt)
    row: dict[str, Any] = {"rss_before_mb": rss_mb()}
    layer = _Layer(out, path)
    for name, finished in (("cold", ids[:-1]), ("one_more", ids), ("unchanged", ids)):
        t, c = time.perf_counter(), time.process_time()
        n = layer.build({i: records[i] for i in finished})
        row[name] = {
            "time_s": round(time.perf_counter() - t, 3),
            "cpu_s": round(time.process_time() - c, 3),
            "features": n,
            "peak_rss_mb": rss_mb(),
        }
    row["layer_mb"] = round(path.stat().st_size / 2**20, 1)
    # the driver's time spent on periodic rebuilds, each as long as one_more, under the runner's rule
    took = row["one_more"]["time_s"]
    wait = max(30.0, getattr(_Layer, "SPACING", 0.0) * took)
    row["periodic_share_of_driver"] = round(took / (wait + took), 3)
    return row


def layer_mode(sizes: list[tuple[int, int]], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Per size: write the archive (cached in ``work``), then rebuild it in a fresh process."""
    import subprocess
    import sys

    rows = []
    for n, p in sizes:
        folder = work / f"layer_{n}x{p}_t{args.take}_o{args.overlap_km:g}_s{args.seed}"
        made = None
        if not (folder / "archive.json").exists():  # a folder of an interrupted run: written again
            shutil.rmtree(folder, ignore_errors=True)
            t = time.perf_counter()
            stats = layer_archive(folder, n, p, args.take, args.overlap_km, args.seed)
            made = round(time.perf_counter() - t, 1)
            (folder / "archive.json").write_text(json.dumps(stats))
        stats = json.loads((folder / "archive.json").read_text())
        cmd = [sys.executable, __file__, "--layer-rebuild", str(folder), "--format", args.format]
        got = subprocess.run(cmd, check=True, capture_output=True, text=True)
        gj = sum(f.stat().st_size for f in folder.glob("*/*_spills.geojson"))
        rows.append({
            "scenes": n, "polygons_per_scene": p, **stats, "geojson_mb": round(gj / 2**20, 1),
            "archive_written_s": made, **json.loads(got.stdout),
        })  # fmt: skip
    return {
        "benchmark": "batch_layer",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "format": args.format,
        "datatake_scenes": args.take,
        "overlap_km": args.overlap_km,
        "layer_every_s": 30.0,
        "sizes": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="Alternating loop / 1-worker pairs.")
    ap.add_argument("--workdir", type=Path, help="Scenes are cached here [a temporary folder].")
    ap.add_argument("-o", "--json", type=Path, help="Write the report here.")
    ap.add_argument(
        "--layer",
        type=_size,
        action="append",
        metavar="NxP",
        help="Merged layer only: N scenes x P polygons.",
    )
    ap.add_argument("--take", type=int, default=10, help="--layer: scenes per datatake [10].")
    ap.add_argument("--overlap-km", type=float, default=3.0, help="--layer: overlap of consecutive scenes.")
    ap.add_argument("--seed", type=int, default=0, help="--layer: random seed of the polygons.")
    ap.add_argument("--format", choices=("gpkg", "parquet"), default="gpkg", help="--layer: layer format.")
    ap.add_argument("--layer-rebuild", type=Path, help=argparse.SUPPRESS)  # the child process of --layer
    args = ap.parse_args()

    if args.layer_rebuild:
        print(json.dumps(layer_rebuilds(args.layer_rebuild, args.format)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="dakd-batch-bench-"))
    work = args.workdir or tmp
    work.mkdir(parents=True, exist_ok=True)
    if args.layer:
        try:
            _emit(layer_mode(args.layer, args, work), args.json)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    cpus = os.cpu_count() or 1
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
    _emit(report, args.json)


def _emit(report: dict[str, Any], path: Path | None) -> None:
    write_report(report, path, echo=True)


def _size(text: str) -> tuple[int, int]:
    try:
        n, p = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N x P, e.g. 500x500, not {text!r}") from None
    return n, p


if __name__ == "__main__":
    main()
