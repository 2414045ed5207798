"""The batch driver: scenes -> Ray actors (one model each, :mod:`.cluster`) -> manifest, merged layer.

The driver owns everything stateful: which scenes to run (``--resume`` against the manifest), the
options a batch folder was started with, the manifest lines and the merged layer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dakd_edge.atomic import atomic_path, clean_stale, probe_writable, remove_made_dirs, topmost_missing
from dakd_edge.batch.cluster import (
    keep_signals_from_ray,
    owns_outputs,
    ray_session,
    schedule,
    worker_pool,
    worker_sizes,
)
from dakd_edge.batch.inputs import expand_inputs
from dakd_edge.batch.layer import (
    FORMATS,
    LAYER_VERSION,
    Memo,
    Outline,
    layer_path,
    merge,
    read_parts,
    scene_outline,
    write_layer,
)
from dakd_edge.batch.lock import LOCK, FolderLock, check_free, hold
from dakd_edge.batch.manifest import (
    OPTIONS,
    STARTED,
    append_record,
    read_claims,
    scene_outputs,
    verified,
)
from dakd_edge.batch.worker import ModelSpec, is_factory
from dakd_edge.cuda import check_device
from dakd_edge.errors import InputError, ModelFileError, OutputError


def check_batch_device(device: str) -> str:
    """``device`` if batch takes it (cpu, cuda, cuda:N), else one line naming those: the shared
    check's list has ``auto``, which batch refuses, as the driver decides what Ray reserves (each
    worker then uses its own GPU; cuda:N is taken as cuda: a worker sees only the GPU Ray gave it)."""
    with contextlib.suppress(InputError):
        if device != "auto" and check_device(device):
            return device
    raise InputError(f"batch --device {device!r}: give cpu, cuda or cuda:N (Ray reserves one GPU per worker)")


def run(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
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
    retry_failed: bool = False,
    **segment_kwargs: Any,
) -> dict[str, Any]:
    """Segment every scene of ``inputs`` into ``out/<scene-id>/`` on Ray; returns the run summary.

    ``workers`` actors (default: one per two CPUs of the Ray cluster) each load ``model`` once (a
    path, None for the bundled model, or a picklable zero-argument factory / ``"module:function"``
    returning a Predictor) with ``threads`` intra-op threads each (default: CPUs / workers). Ray runs
    in-process unless ``address`` (or ``RAY_ADDRESS``) names a cluster, or ``ray.init`` was already
    called. ``segment_kwargs`` go to :func:`~dakd_edge.inference.segment.segment_scene` (``min_area``,
    ``pol``, ``land_mask``, ...).

    ``out`` must be new, empty, or a batch folder (``batch.json``, written once the workers are up):
    never someone's folder of files. One run at a time holds it (``out/batch.lock``, :mod:`.lock`):
    another run on it is refused at once with an :class:`OutputError` naming the holder. Every
    finished scene appends a line to ``out/manifest.jsonl`` (and a ``started`` line before it goes to
    a worker); ``resume=True`` continues a batch folder (or starts a new one), skipping scenes whose
    outputs match the manifest and whose input file is as it was then (size and modification time: a
    replaced input runs again), replacing only outputs the manifest records or claims. A failed scene is retried ``retries`` times (an input error is final at
    once: it would fail the same way) and then recorded as failed; the run goes on. A scene that
    failed on a damaged input file is not run again by ``resume`` while that file's size, modification
    time and inode stay as they were (a cron job would start Ray every time to fail it again): it is
    listed among the failed, saying so, unless ``retry_failed``. ``limit`` runs
    at most that many scenes (the rest stay for a later resume). The merged layer ``out/spills.gpkg``
    (``fmt="parquet"``: GeoParquet) is rebuilt at most every ``layer_every`` seconds and at the end,
    from the scenes' GeoJSON: ``fmt`` may change on resume (the other format's layer is removed).
    """
    from dakd_edge.extras import require_extra

    keep_signals_from_ray()  # before require_extra imports ray
    # before any folder is created (GeoParquet: it failed after every scene had run)
    require_extra("cluster", "batch", "ray", "shapely", *(["pyarrow"] if fmt == "parquet" else []))
    _check_counts(workers=workers, threads=threads, retries=retries, limit=limit)
    _check_segment_kwargs(segment_kwargs)
    check_batch_device(device)
    t0 = time.perf_counter()
    out = Path(out).absolute()
    notes: dict[str, list[str]] = {}
    scenes = expand_inputs(inputs, skip=out, notes=notes, pol=segment_kwargs.get("pol"))
    model, segment_kwargs = _absolute(model, segment_kwargs)
    path = layer_path(out, fmt)
    options = _options(model, backend, tile, overlap, segment_kwargs)
    check_free(out)  # a run going on in the folder: said first
    stored, made = _prepare(out, options, resume)  # refused before the folder is created or locked
    lock = _lock(out, made)
    try:

        def abandon() -> None:  # a start that failed leaves no folder (nor lock file) behind
            lock.release()
            remove_made_dirs(out, made)

        stored = None
        try:
            # again, under the lock: a run that held the folder until a moment ago may have changed it
            stored, _ = _prepare(out, options, resume)
            # tile / overlap that batch.json cannot resolve without the model: its workers must say, even
            # when no scene is left to run (else --resume --tile 32 of a finished batch would pass)
            resolve = stored is not None and isinstance(stored.get("tiling"), dict)
            resolve = resolve and _tiling_now(stored, tile, overlap, is_factory(model)) is None
            records, claimed = read_claims(out) if stored is not None else ({}, set())
            for sid in claimed:  # sent to a worker by a run that stopped: its workers' temporaries
                for p in scene_outputs(out, sid).values():
                    clean_stale(p)
            good = {i for i, r in records.items() if verified(out, r)}
            # an input replaced since its scene ran (a re-download, a reprocessed product): run again
            for s in scenes:
                if s.id in good and _input_changed(records[s.id], s.path):
                    good.discard(s.id)
                    notes.setdefault(s.id, []).append(INPUT_CHANGED)
            done = [s.id for s in scenes if s.id in good]
            # damaged inputs that failed for good and have not changed since: not run again
            still = [] if retry_failed else [s for s in scenes if _still_damaged(records.get(s.id), s.path)]
            todo = [s for s in scenes if s.id not in good and s not in still]
            not_run = [s.id for s in todo[limit:]] if limit is not None else []
            todo = todo[:limit] if limit is not None else todo
            todo_ids = {s.id for s in todo}
            finished = {i: records[i] for i in good if i not in todo_ids}
            # recorded ok but changed on disk since, and not among this run's scenes: not in the layer
            stale = sorted(
                i for i, r in records.items() if r.get("status") == "ok" and i not in good | todo_ids
            )
            layer = _Layer(out, path)
            results: list[dict[str, Any]] = []
            n_workers = 0
            if todo or resolve:
                load = dict(backend=backend, device=device, tile=tile, overlap=overlap, batch=batch)
                gpu = str(device).startswith("cuda")
                with ray_session(workers, address) as ray, _Bar(progress, len(todo)) as bar:
                    try:
                        n_workers, n_threads = worker_sizes(ray, workers, threads, len(todo), gpu)
                        load["threads"] = n_threads
                        with worker_pool(ray, model, load, n_workers) as (pool, tiling):
                            if stored is None:  # the workers are up: from here on, this is a batch folder
                                stored = _write_options(out, {**options, "tiling": tiling})
                            else:
                                _check_tiling(out, stored, tiling)
                            owned = claimed | {i for i, r in records.items() if owns_outputs(r)}
                            mark = functools.partial(_mark_started, out, owned)
                            jobs = schedule(ray, pool, todo, out, retries, owned, segment_kwargs, bar, mark)
                            for rec in jobs:
                                _record(out, rec)
                                results.append(rec)
                                if rec["status"] == "ok":
                                    finished[rec["id"]] = rec
                                    layer.maybe(finished, layer_every)
                    except BaseException:
                        # before Ray's teardown: on an interrupt the CLI exits hard about a second later
                        if stored is None:
                            abandon()
                        raise
            if stored is None:  # nothing to run (limit=0): still a batch folder before the layer is written
                stored = _write_options(out, options)
        except BaseException:
            if stored is None:
                abandon()
            raise
        features = layer.build(finished)
        for old in (layer_path(out, f) for f in FORMATS):  # --format switched on --resume: one layer
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()
        unchanged = [{**records[s.id], "error": f"{records[s.id]['error']} ({STILL_DAMAGED})"} for s in still]
        return _summary(
            out, path, scenes, results, unchanged, done, not_run, stale, notes, layer, features, n_workers, t0
        )
    finally:
        lock.release()


STILL_DAMAGED = "not run again: the input is unchanged since it failed; --retry-failed runs it"


INPUT_CHANGED = "run again: its input file changed (size or modification time) since it ran"


def _input_changed(record: dict[str, Any], path: Path) -> bool:
    """Whether the input file of a scene recorded ok differs from the one it ran on. Size and
    modification time, not the inode: an archive moved with ``cp -p`` / ``rsync -a`` is the same data.
    Records without ``input_stat`` (older versions, ``.SAFE`` folders) are taken as unchanged."""
    from dakd_edge.batch.worker import input_stat

    then = record.get("input_stat")
    now = input_stat(Path(path))
    return then is not None and now is not None and list(now[:2]) != list(then[:2])


def _still_damaged(record: dict[str, Any] | None, path: Path) -> bool:
    """Whether ``record`` is a failure on a damaged input file that is still as it was then."""
    from dakd_edge.batch.worker import input_stat

    if not record or record.get("status") != "failed":
        return False
    stat = record.get("input_stat")  # of a failure: recorded for input errors only (final: never retried)
    return stat is not None and input_stat(Path(path)) == stat


def _summary(
    out: Path,
    path: Path,
    scenes: list[Any],
    results: list[dict[str, Any]],
    unchanged: list[dict[str, Any]],
    done: list[str],
    not_run: list[str],
    stale: list[str],
    notes: dict[str, list[str]],
    layer: _Layer,
    features: int,
    n_workers: int,
    t0: float,
) -> dict[str, Any]:
    """The run summary :func:`run` returns; ``unchanged``: the records of failed scenes not run again."""
    order = {s.id: i for i, s in enumerate(scenes)}
    results.sort(key=lambda r: order[r["id"]])
    failed = sorted([r for r in results if r["status"] != "ok"] + unchanged, key=lambda r: order[r["id"]])
    ok = [r for r in results if r["status"] == "ok"]
    mpix = sum(r["megapixels"] for r in ok)
    wall = time.perf_counter() - t0
    warnings = {sid: list(lines) for sid, lines in notes.items()}
    for r in ok:
        warnings.setdefault(r["id"], []).extend(r.get("warnings") or [])
    for sid in stale:
        warnings.setdefault(sid, []).append(
            "its outputs no longer match the manifest (changed or deleted): left out of the merged layer "
            "until it runs again"
        )
    for sid, line in layer.warnings.items():
        warnings.setdefault(sid, []).append(line)
    return {
        "out": str(out),
        "scenes": len(scenes),
        "run": len(results),
        "ok": [r["id"] for r in ok],
        "failed": [{"id": r["id"], "input": r["input"], "error": r["error"]} for r in failed],
        "skipped": done,
        "not_run": not_run,
        "retried": [r["id"] for r in results if r["attempts"] > 1],
        "warnings": {sid: warnings[sid] for sid in sorted(warnings)},
        "workers": n_workers,
        "time_s": round(wall, 3),
        "megapixels": round(mpix, 3),
        "mpix_per_s": round(mpix / wall, 3) if wall > 0 else None,
        "scenes_per_min": round(len(ok) / wall * 60, 3) if wall > 0 else None,
        "manifest": str(out / "manifest.jsonl") if (out / "manifest.jsonl").is_file() else None,
        "layer": str(path),
        "features": features,
    }


def _check_counts(**counts: int | None) -> None:
    """The API gets no click ranges: ``limit=-1`` would silently drop the last scene."""
    low = {"workers": 1, "threads": 1, "retries": 0, "limit": 0}
    for name, v in counts.items():
        if v is None and name != "retries":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low[name]:
            raise InputError(f"{name} must be an integer >= {low[name]}, not {v!r}")


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


def _segment_defaults() -> dict[str, Any]:
    """The ``segment_scene`` settings a batch takes (``segment_kwargs``), with their defaults."""
    import inspect

    from dakd_edge.inference.segment import segment_scene

    skip = {"overwrite", "protect", "progress", "probs", "vector", "report"}  # the worker's own
    params = inspect.signature(segment_scene).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in skip}


def _check_segment_kwargs(seg: dict[str, Any]) -> None:
    """A misspelt setting (``min_aera=``) failed every scene, each retried, after Ray had started."""
    unknown = sorted(set(seg) - set(_segment_defaults()))
    if unknown:
        raise InputError(
            f"unknown segment setting(s) {', '.join(unknown)}; a batch takes "
            f"{', '.join(sorted(_segment_defaults()))}"
        )


def _with_defaults(seg: dict[str, Any]) -> dict[str, Any]:
    """``seg`` completed with ``segment_scene``'s defaults: equal settings compare equal however given."""
    return {**_segment_defaults(), **seg}


def _prepare(out: Path, options: dict[str, Any], resume: bool) -> tuple[dict[str, Any] | None, Path | None]:
    """Check ``out`` before any work; returns (the stored options, the topmost folder to create).

    Stored options None: a new batch folder, empty (hidden files and a lock file aside: no output is
    named so), whose ``batch.json`` is written once the workers are up. This function creates
    nothing: :func:`_lock` then creates a missing ``out`` to hold its lock file, and a start that fails
    or is interrupted removes both before Ray's teardown (only a ``kill -9`` while Ray or the models
    start leaves the folder with its lock file: still an empty folder to the next run). Any other
    folder is someone's files: refused, ``--resume`` or not. An earlier batch folder needs ``resume``
    and equal options (tile and overlap as the workers resolve them, when the folder recorded those:
    :func:`_check_tiling`, here already when ``batch.json`` tells how: :func:`_tiling_now`).
    """
    opts = out / OPTIONS
    if not out.exists() and not out.is_symlink():
        made = topmost_missing(out)
        assert made is not None
        if not made.parent.is_dir():
            raise OutputError(f"{out}: cannot create the batch folder ({made.parent} is not a folder)")
        probe_writable(made.parent)
        return None, made
    if not out.is_dir():
        raise OutputError(f"{out}: not a folder; give a new or empty folder as --out")
    probe_writable(out)
    if not opts.exists():
        ours = (p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != LOCK)
        names = sorted(itertools.islice(ours, 4))
        if names:
            held = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise OutputError(
                f"{out} is neither empty nor a batch folder (no {OPTIONS}; it holds {held}): "
                f"{'nothing to resume there; ' if resume else ''}give a new or empty folder as --out"
            )
        return None, None
    if not resume:
        raise OutputError(f"{out} holds an earlier batch run: pass --resume to continue it, or another --out")
    stored = _stored_options(opts)
    now = json.loads(json.dumps(options, sort_keys=True, default=str))
    ignore = {"tiling", "tile", "overlap"} if isinstance(stored.get("tiling"), dict) else {"tiling"}
    diff = _differences(
        _comparable({k: v for k, v in stored.items() if k not in ignore}),
        _comparable({k: v for k, v in now.items() if k not in ignore}),
    )
    if diff:
        raise OutputError(f"{out} was run with other options ({'; '.join(diff)}); resume with the same ones")
    now_tiling = _tiling_now(stored, options["tile"], options["overlap"], is_factory(options["model"]))
    if now_tiling is not None:
        _check_tiling(out, stored, now_tiling)
    return stored, None


def _tiling_now(
    stored: dict[str, Any], tile: int | None, overlap: int | None, factory: bool
) -> dict[str, int] | None:
    """The tile and overlap this run resolves to, when the folder's ``batch.json`` tells without the
    model: the tile and overlap given as then (the same model resolves them the same way), or both
    given to a model file (a factory builds its own Predictor: only it can say what it does with
    them). None when only the model can tell, or the folder recorded no resolved tiling."""
    then = stored.get("tiling")
    if not isinstance(then, dict):
        return None
    if tile == stored.get("tile") and overlap == stored.get("overlap"):
        return dict(then)
    if tile is not None and overlap is not None and not factory:
        return {"tile": int(tile), "overlap": int(overlap)}
    return None


def _lock(out: Path, made: Path | None) -> FolderLock:
    """Create ``out`` if missing and lock it for this run (:mod:`.lock`): a second run on the folder
    is refused at once, naming this one. A start that fails removes what it created."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the batch folder ({e.strerror or e})") from None
    try:
        return hold(out)
    except BaseException:
        remove_made_dirs(out, made)
        raise


def _check_tiling(out: Path, stored: dict[str, Any], tiling: dict[str, int] | None) -> None:
    """Tile and overlap as the model resolved them: ``--tile 256`` equals the model's default 256."""
    if isinstance(stored.get("tiling"), dict) and tiling is not None:
        diff = _differences(stored["tiling"], tiling)
        if diff:
            raise OutputError(
                f"{out} was run with other options ({'; '.join(diff)}); resume with the same ones"
            )


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with settings spelled several ways in one spelling: ``--min-area 5px`` is the default
    (None), and ``5 PX`` too (a cron job that spells out its defaults must resume a run that did not)."""
    from dakd_edge.inference.segment import parse_min_area

    seg = options.get("segment")
    if not isinstance(seg, dict) or "min_area" not in seg:
        return options
    try:
        m2, px = parse_min_area(seg["min_area"])
    except InputError:  # a stored value this version cannot read: compared as it is
        return options
    # m^2 by the shortest exact spelling ("%g" kept six digits: 1000001 read as 1e+06, the same as 1000000)
    exact = None if m2 is None else repr(float(m2)).removesuffix(".0")
    return {**options, "segment": {**seg, "min_area": f"{px}px" if m2 is None else exact}}


def _differences(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: stored then, now now`` for each differing key (nested dicts by dotted key)."""
    lines = []
    for k in sorted(set(stored) | set(now)):
        a, b = stored.get(k, _UNSET), now.get(k, _UNSET)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            lines.append(f"{prefix}{k}: {_show(a)} then, {_show(b)} now")
    return lines


_UNSET = object()


def _show(v: Any) -> str:
    return "unset" if v is _UNSET else json.dumps(v, default=str)


def _write_options(out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Write ``batch.json`` (creating ``out`` first when missing): from here on a batch folder."""
    text = json.dumps(options, sort_keys=True, default=str)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the batch folder ({e.strerror or e})") from None
    with atomic_path(out / OPTIONS, overwrite=True) as tmp:
        tmp.write_text(text + "\n")
    return json.loads(text)


def _mark_started(out: Path, owned: set[str], scene: Any) -> None:
    """The manifest's ``started`` line of a scene about to go to a worker, so that its outputs are the
    batch's own for ``--resume`` even if this run stops before the scene's record (an interrupt, ``kill
    -9``: the worker may still commit). Not for a scene whose output names hold unrecorded files: those
    are someone's, and its worker refuses them. Not fsynced (half the driver's time per tiny scene):
    only a power cut in the seconds after could lose it, and the scene is then refused, not lost."""
    from dakd_edge.batch.worker import now

    if scene.id not in owned:
        if any(p.exists() or p.is_symlink() for p in scene_outputs(out, scene.id).values()):
            return
        try:
            line = {"id": scene.id, "input": str(scene.path), "status": STARTED, "started": now()}
            append_record(out, line, sync=False)
        except OutputError as e:
            raise OutputError(f"{e}; the run stops: continue it with --resume once that is fixed") from None


def _record(out: Path, rec: dict[str, Any]) -> None:
    """Append ``rec`` to the manifest; if it cannot be written (disk full), a finished scene's outputs
    are removed before the run stops: unrecorded files would be refused by ``--resume`` as someone
    else's, where removed ones simply run again."""
    try:
        append_record(out, rec)
    except OutputError as e:
        if rec["status"] == "ok":
            for p in scene_outputs(out, rec["id"]).values():
                with contextlib.suppress(OSError):
                    p.unlink()
        raise OutputError(f"{e}; the run stops: continue it with --resume once that is fixed") from None


# ``segment_scene`` settings added with a default that changes what a run does: what older versions did.
_BEFORE_ADDED = {"border_noise": "keep"}


def _stored_options(path: Path) -> dict[str, Any]:
    """An earlier run's options, with ``segment_scene`` settings added since then at their defaults (or
    at what older versions did, :data:`_BEFORE_ADDED`): a batch folder from an older version resumes
    when nothing it ran with has changed."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise OutputError(f"{path} is damaged: {' '.join(str(e).split())}") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("segment", {}), dict):
        raise OutputError(f"{path} is damaged: not the options object of a batch run")
    if isinstance(stored.get("segment"), dict):
        defaults = json.loads(json.dumps(_with_defaults({}), default=str))
        stored["segment"] = {**defaults, **_BEFORE_ADDED, **stored["segment"]}
    return stored


LAYER_STATE = "layer.json"  # what the merged layer on disk was built from (:meth:`_Layer._saved`)


def _sha(record: dict[str, Any], key: str) -> str:
    return (record.get("sha256") or {}).get(key, "")


class _Layer:
    """Rebuilds the merged layer from the finished scenes' files, caching what it has read.

    ``warnings`` (scene id -> line, from the last build) says which scenes' polygons are missing
    from the layer: no georeference, or a file that cannot be read.

    A rebuild runs in the driver's loop: while it lasts, no worker that finishes gets a new scene. On an
    archive (a million polygons) it takes tens of seconds, mostly writing the file, so a periodic one
    waits ``SPACING`` times as long as the last one took (and at least ``every``): the layer keeps at
    most a fifth of the driver's time. Parsed scenes are kept by (scene id, manifest sha256), merged
    groups in a :class:`~dakd_edge.batch.layer.Memo`, and a build of the same scenes as the layer
    already on disk writes nothing: in this run (``written``), or since an earlier one
    (``DIR/layer.json``: a resumed finished batch reads no scene file).
    """

    SPACING = 4.0

    def __init__(self, out: Path, path: Path) -> None:
        self.out, self.path = out, path
        self.cache: dict[tuple[str, str], tuple[list[Any], str | None]] = {}
        self.outlines: dict[tuple[str, str], Outline | None] = {}  # by (scene id, class map sha256)
        self.memo = Memo()
        self.warnings: dict[str, str] = {}
        self.last = time.monotonic()
        self.took = 0.0  # seconds the last build took
        # scenes and features of the file this build wrote, and that file's stat (a file replaced since
        # by someone else, or deleted, is written again)
        self.written: tuple[list[tuple[str, str]], int, tuple[int, int, int] | None] | None = None

    def maybe(self, finished: dict[str, dict[str, Any]], every: float) -> None:
        if time.monotonic() - self.last >= max(every, self.SPACING * self.took):
            self.build(finished)

    def build(self, finished: dict[str, dict[str, Any]]) -> int:
        t0 = time.monotonic()
        keys = []
        for sid in sorted(finished):
            key = (sid, _sha(finished[sid], "vector"))
            if key in self.cache or scene_outputs(self.out, sid)["vector"].is_file():
                keys.append(key)
        on_disk = self._stat()
        inputs = self._inputs(keys, finished)
        n = self._saved(keys, inputs, on_disk) if self.written is None and on_disk else None
        if n is None:  # not the layer an earlier run built from these very scenes
            for sid, sha in keys:
                if (sid, sha) not in self.cache:
                    self.cache[sid, sha] = self._read(scene_outputs(self.out, sid)["vector"], finished[sid])
            self.cache = {k: self.cache[k] for k in keys}  # a scene run again: its old parts go
            self.warnings = {k[0]: w for k, (_, w) in self.cache.items() if w}
            if (
                self.written is not None
                and self.written[0] == keys
                and on_disk
                and self.written[2] == on_disk
            ):
                n = self.written[1]  # nothing new since the last build, and its file is still there
            else:
                outline = self._outliner(finished)
                features = merge([p for k in keys for p in self.cache[k][0]], self.memo, outline)
                write_layer(self.path, features)
                n = len(features)
                self.written = (keys, n, self._stat())
                self._save(inputs, n)
        self.last = time.monotonic()
        self.took = self.last - t0
        return n

    def _inputs(self, keys: list[tuple[str, str]], finished: dict[str, dict[str, Any]]) -> str:
        """What the layer is made of: its format and merge rules, each scene's polygons and class map
        (its outline), by the manifest's checksums."""
        made = [(sid, sha, _sha(finished[sid], "classes")) for sid, sha in keys]
        text = json.dumps([LAYER_VERSION, self.path.name, made])
        return hashlib.sha256(text.encode()).hexdigest()

    def _saved(self, keys: list[tuple[str, str]], inputs: str, on_disk: tuple[int, int, int]) -> int | None:
        """Its features when ``DIR/layer.json`` says that the layer on disk (that very file, unchanged
        since) was built from ``inputs``, else None: a ``--resume`` of a finished archive then reads no
        GeoJSON and writes nothing (a cold rebuild of 100 000 polygons takes ~15 s). Sets what a build
        would."""
        try:
            state = json.loads((self.out / LAYER_STATE).read_text())
            ok = (
                state["inputs"] == inputs
                and state["file"] == list(on_disk)
                and state["layer"] == self.path.name
            )
            n, warnings = int(state["features"]), dict(state["warnings"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not ok:
            return None
        self.warnings, self.written = {str(k): str(v) for k, v in warnings.items()}, (keys, n, on_disk)
        return n

    def _save(self, inputs: str, n: int) -> None:
        """``DIR/layer.json`` for :meth:`_saved`; not written (a full disk): the next run rebuilds."""
        state = {"layer": self.path.name, "inputs": inputs, "features": n, "warnings": self.warnings}
        state["file"] = list(self._stat() or ())
        with (
            contextlib.suppress(OSError, OutputError),
            atomic_path(self.out / LAYER_STATE, overwrite=True) as tmp,
        ):
            tmp.write_text(json.dumps(state, sort_keys=True) + "\n")

    def _outliner(self, finished: dict[str, dict[str, Any]]) -> Callable[[str], Outline | None]:
        """``outline(scene_id)`` for :func:`~dakd_edge.batch.layer.merge`: read from the scene's class
        map only for scenes of merged features, kept while the class map is the same."""
        keys = {sid: (sid, (rec.get("sha256") or {}).get("classes", "")) for sid, rec in finished.items()}
        self.outlines = {k: v for k, v in self.outlines.items() if keys.get(k[0]) == k}

        def outline(sid: str) -> Outline | None:
            key = keys.get(sid)
            if key is None:
                return None
            if key not in self.outlines:
                self.outlines[key] = scene_outline(scene_outputs(self.out, sid)["classes"])
            return self.outlines[key]

        return outline

    def _stat(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime) of the layer file, None when there is none: what tells the file this
        run wrote from one that replaced it."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None

    @staticmethod
    def _read(vector: Path, rec: dict[str, Any]) -> tuple[list[Any], str | None]:
        try:
            parts, unplaced = read_parts(vector, rec)
        except OutputError as e:
            return [], f"left out of the merged layer: {e}"
        if unplaced:
            return parts, f"{unplaced} polygon(s) not in the merged layer: the scene has no georeference"
        return parts, None


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
