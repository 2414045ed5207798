"""The batch driver: scenes -> Ray actors (one model each, :mod:`.cluster`) -> manifest, merged layer.

The driver owns everything stateful: which scenes to run (``--resume`` against the manifest), the
options a batch folder was started with, the manifest lines and the merged layer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dakd_edge.atomic import atomic_path, probe_writable
from dakd_edge.batch.cluster import ray_session, schedule, worker_sizes
from dakd_edge.batch.inputs import expand_inputs
from dakd_edge.batch.layer import layer_path, merge, read_parts, write_layer
from dakd_edge.batch.manifest import append_record, read_manifest, scene_outputs, verified
from dakd_edge.batch.worker import ModelSpec, is_factory
from dakd_edge.errors import ModelFileError, OutputError

OPTIONS = "batch.json"  # the options a batch folder was started with; --resume must match them


def run(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    retries: int = 1,
    fmt: str = "gpkg",
    model: ModelSpec = None,
    backend: str = "auto",
    device: str = "cpu",
    tile: int | None = None,
    overlap: int | None = None,
    batch: int | None = None,
    threads: int | None = None,
    limit: int | None = None,
    progress: bool = False,
    layer_every: float = 30.0,
    **segment_kwargs: Any,
) -> dict[str, Any]:
    """Segment every scene of ``inputs`` into ``out/<scene-id>/`` on Ray; returns the run summary.

    ``workers`` actors (default: one per two CPUs of the Ray cluster) each load ``model`` once (a
    path, None for the bundled model, or a picklable zero-argument factory / ``"module:function"``
    returning a Predictor) with ``threads`` intra-op threads each (default: CPUs / workers). Ray runs
    in-process unless ``address`` (or ``RAY_ADDRESS``) names a cluster, or ``ray.init`` was already
    called. ``segment_kwargs`` go to :func:`~dakd_edge.inference.segment.segment_scene` (``min_area``,
    ``pol``, ``land_mask``, ...).

    Every finished scene appends a line to ``out/manifest.jsonl``; ``resume=True`` skips scenes
    whose outputs match it. A failed scene is retried ``retries`` times (an input error is final at
    once: it would fail the same way) and then recorded as failed; the run goes on. ``limit`` runs
    at most that many scenes (the rest stay for a later resume). The merged layer ``out/spills.gpkg``
    (``fmt="parquet"``: GeoParquet) is rebuilt at most every ``layer_every`` seconds and at the end.
    """
    from dakd_edge.extras import require_extra

    require_extra("cluster", "batch", "ray", "shapely")  # before any folder is created
    t0 = time.perf_counter()
    scenes = expand_inputs(inputs)
    out = Path(out).absolute()
    model, segment_kwargs = _absolute(model, segment_kwargs)
    path = layer_path(out, fmt)
    options = _options(model, backend, tile, overlap, segment_kwargs)
    _prepare(out, options, resume)
    records = read_manifest(out)
    done = [s.id for s in scenes if resume and verified(out, records.get(s.id))]
    todo = [s for s in scenes if s.id not in set(done)]
    not_run = [s.id for s in todo[limit:]] if limit is not None else []
    todo = todo[:limit] if limit is not None else todo
    todo_ids = {s.id for s in todo}
    finished = {i: r for i, r in records.items() if r.get("status") == "ok" and i not in todo_ids}
    layer = _Layer(out, path)
    results: list[dict[str, Any]] = []
    if todo:
        load = dict(backend=backend, device=device, tile=tile, overlap=overlap, batch=batch)
        with ray_session(workers, address) as ray, _Bar(progress, len(todo)) as bar:
            n_workers, n_threads = worker_sizes(ray, workers, threads, len(todo))
            load["threads"] = n_threads
            for rec in schedule(ray, todo, out, model, load, n_workers, retries, resume, segment_kwargs, bar):
                append_record(out, rec)
                results.append(rec)
                if rec["status"] == "ok":
                    finished[rec["id"]] = rec
                    layer.maybe(finished, layer_every)
    else:
        n_workers = 0
    features = layer.build(finished)
    order = {s.id: i for i, s in enumerate(scenes)}
    results.sort(key=lambda r: order[r["id"]])
    ok = [r for r in results if r["status"] == "ok"]
    mpix = sum(r["megapixels"] for r in ok)
    wall = time.perf_counter() - t0
    return {
        "out": str(out),
        "scenes": len(scenes),
        "run": len(results),
        "ok": [r["id"] for r in ok],
        "failed": [
            {"id": r["id"], "input": r["input"], "error": r["error"]} for r in results if r["status"] != "ok"
        ],
        "skipped": done,
        "not_run": not_run,
        "retried": [r["id"] for r in results if r["attempts"] > 1],
        "warnings": {r["id"]: r["warnings"] for r in ok if r.get("warnings")},
        "workers": n_workers,
        "time_s": round(wall, 3),
        "megapixels": round(mpix, 3),
        "mpix_per_s": round(mpix / wall, 3) if wall > 0 else None,
        "scenes_per_min": round(len(ok) / wall * 60, 3) if wall > 0 else None,
        "manifest": str(out / "manifest.jsonl"),
        "layer": str(path),
        "features": features,
    }


def _absolute(model: ModelSpec, seg: dict[str, Any]) -> tuple[ModelSpec, dict[str, Any]]:
    """Model and land-mask files as absolute paths (workers do not share the driver's folder)."""
    if model is not None and not is_factory(model):
        if not Path(model).is_file():
            raise ModelFileError(f"{model}: no such model file")
        model = str(Path(model).absolute())
    mask = seg.get("land_mask")
    if mask is not None and str(mask) not in ("auto", "globe", "none"):
        seg = {**seg, "land_mask": str(Path(mask).absolute())}
    return model, seg


def _options(model: ModelSpec, backend: str, tile: int | None, overlap: int | None, seg: dict) -> dict:
    if is_factory(model):
        f = getattr(model, "func", model)  # functools.partial: its function
        name = f if isinstance(f, str) else f"{f.__module__}:{f.__qualname__}"
    else:
        name = None if model is None else str(Path(model).resolve())
    return {
        "model": name,
        "backend": backend,
        "tile": tile,
        "overlap": overlap,
        "segment": _with_defaults(seg),
    }


def _with_defaults(seg: dict[str, Any]) -> dict[str, Any]:
    """``seg`` completed with ``segment_scene``'s defaults: equal settings compare equal however given."""
    import inspect

    from dakd_edge.inference.segment import segment_scene

    skip = {"overwrite", "protect", "progress", "probs", "vector", "report"}
    params = inspect.signature(segment_scene).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in skip}
    return {**defaults, **seg}


def _prepare(out: Path, options: dict[str, Any], resume: bool) -> None:
    """Create ``out``; refuse to mix runs: an earlier batch folder needs ``resume`` and equal options."""
    opts = out / OPTIONS
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the batch folder ({e.strerror or e})") from None
    probe_writable(out)
    text = json.dumps(options, sort_keys=True, default=str)
    if opts.exists():
        if not resume:
            raise OutputError(
                f"{out} holds an earlier batch run: pass --resume to continue it, or another --out"
            )
        if _stored_options(opts) != json.loads(text):
            raise OutputError(
                f"{out} was run with other options ({opts.read_text().strip()}); resume with the same ones"
            )
        return
    with atomic_path(opts, overwrite=True) as tmp:
        tmp.write_text(text + "\n")


def _stored_options(path: Path) -> dict[str, Any]:
    """An earlier run's options, with ``segment_scene`` settings added since then at their defaults:
    a batch folder from an older version resumes when nothing it ran with has changed."""
    stored = json.loads(path.read_text())
    if isinstance(stored.get("segment"), dict):
        defaults = json.loads(json.dumps(_with_defaults({}), default=str))
        stored["segment"] = {**defaults, **stored["segment"]}
    return stored


class _Layer:
    """Rebuilds the merged layer from the finished scenes' files, caching what it has read."""

    def __init__(self, out: Path, path: Path) -> None:
        self.out, self.path = out, path
        self.cache: dict[tuple[str, str], list[Any]] = {}
        self.last = time.monotonic()

    def maybe(self, finished: dict[str, dict[str, Any]], every: float) -> None:
        if time.monotonic() - self.last >= every:
            self.build(finished)

    def build(self, finished: dict[str, dict[str, Any]]) -> int:
        parts = []
        for sid in sorted(finished):
            rec = finished[sid]
            vector = scene_outputs(self.out, sid)["vector"]
            key = (sid, (rec.get("sha256") or {}).get("vector", ""))
            if key not in self.cache:
                if not vector.is_file():
                    continue
                self.cache[key] = read_parts(vector, rec)
            parts += self.cache[key]
        features = merge(parts)
        write_layer(self.path, features)
        self.last = time.monotonic()
        return len(features)


class _Bar:
    """One rich bar over scenes (done / failed / running, MPix/s); a no-op when disabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self.ok = self.failed = self.running = self.retried = 0
        self.mpix = 0.0

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.t0 = time.perf_counter()
            self.bar = Progress(
                TextColumn("[bold]scenes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("scenes", total=self.total, state="")
        return self

    def update(self, running: int, done: dict[str, Any] | None = None, retried: int = 0) -> None:
        self.running, self.retried = running, self.retried + retried
        if done is not None:
            if done["status"] == "ok":
                self.ok += 1
                self.mpix += done["megapixels"]
            else:
                self.failed += 1
        if self.enabled:
            rate = self.mpix / max(time.perf_counter() - self.t0, 1e-9)
            state = f"ok {self.ok}  failed {self.failed}  running {self.running}  {rate:.2f} MPix/s"
            if self.retried:
                state += f"  retries {self.retried}"
            self.bar.update(self.task, completed=self.ok + self.failed, state=state)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
