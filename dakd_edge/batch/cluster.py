"""Ray for the batch: the session (in-process, a cluster, or one already started) and the scheduler.

Ray Core actors rather than Ray Data: a scene is one indivisible ~1 GB job whose outputs go to files,
there is no dataset to stream between stages, and an actor keeps its loaded model across scenes (an
ONNX session takes seconds to build; a TensorRT engine longer). One scene is in flight per actor, so a
slow scene never holds others back. A worker process that dies mid-scene (OOM killer, segfault, node
loss) is restarted by Ray and gets no new scene until it answers again; its scene is retried from
scratch, and the temporaries the dead process left in ``DIR/<id>/`` are removed by the retry's own
transaction (:func:`dakd_edge.atomic.clean_stale`: they carry the dead pid).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from dakd_edge.batch.inputs import Scene
from dakd_edge.batch.manifest import scene_outputs
from dakd_edge.batch.worker import ModelSpec, SceneWorker
from dakd_edge.errors import DakdError


class Progress(Protocol):
    def update(self, running: int, done: dict[str, Any] | None = None, retried: int = 0) -> None: ...


@contextlib.contextmanager
def ray_session(workers: int | None, address: str | None) -> Iterator[Any]:
    """Ray as found (already initialised), on ``address``/``RAY_ADDRESS``, or local in-process."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet: dict[str, Any] = dict(log_to_driver=False, logging_level="ERROR")
    addr = address or os.environ.get("RAY_ADDRESS")
    term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        if addr:
            ray.init(address=addr, **quiet)
        else:  # "local": a new in-process cluster, never one that someone else started on this machine
            cpus = max(os.cpu_count() or 1, workers or 1)
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise DakdError(
            f"cannot start Ray{f' on {addr}' if addr else ''}: {' '.join(str(e).split())}"
        ) from None
    finally:
        if term is not None:  # ray.init replaces it with sys.exit: keep the CLI's clean interrupt
            signal.signal(signal.SIGTERM, term)
    try:
        yield ray
    except BaseException as e:
        if not addr and not isinstance(e, Exception):  # Interrupted / KeyboardInterrupt
            _kill_local_ray(ray)
        raise
    finally:
        ray.shutdown()


def _kill_local_ray(ray: Any) -> None:
    """Stop the in-process Ray at once on an interrupt (the CLI exits ~1 s after a signal).

    ``ray.shutdown()`` takes about 2 s, and a raylet killed outright leaves its agent processes
    running: kill the raylet's children (agents, workers) first, then Ray's own processes.
    """
    try:
        node = ray._private.worker._global_node
        raylets = {info.process.pid for info in node.all_processes.get("raylet", [])}
        for pid in children(raylets):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        node.kill_all_processes(check_alive=False, allow_graceful=False, wait=False)
    except Exception:  # private Ray API: best effort, ray.shutdown() follows anyway
        pass


def children(parents: set[int]) -> list[int]:
    """Pids whose parent is in ``parents`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid in parents:
                found.append(int(stat.parent.name))
    return found


def worker_sizes(ray: Any, workers: int | None, threads: int | None, scenes: int) -> tuple[int, int]:
    """(actors, intra-op threads each): default one actor per two CPUs, threads splitting the CPUs."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = workers or max(1, cpus // 2)
    return max(1, min(n, scenes)), threads or max(1, cpus // n)


def schedule(
    ray: Any,
    todo: list[Scene],
    out: Path,
    model: ModelSpec,
    load: dict[str, Any],
    n_workers: int,
    retries: int,
    resume: bool,
    seg: dict[str, Any],
    bar: Progress,
) -> Iterator[dict[str, Any]]:
    """Yield each scene's final record as it finishes: one scene in flight per actor, retries first."""
    cpus = max(1, min(load["threads"], _max_node_cpus(ray)))
    gpus = 1 if str(load["device"]).startswith("cuda") else 0
    if gpus:  # Ray gives each actor one GPU through CUDA_VISIBLE_DEVICES: inside, it is cuda:0
        load = {**load, "device": "cuda"}
    actor = ray.remote(SceneWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
    pool = [actor.remote(model, load) for _ in range(n_workers)]
    try:
        errors = ray.get([a.ready.remote() for a in pool])
    except ray.exceptions.RayError as e:
        raise DakdError(f"batch workers did not start: {_ray_line(e)}") from None
    if any(errors):
        raise DakdError(next(e for e in errors if e))
    pending = deque((s, 1) for s in todo)
    idle = list(range(n_workers))
    flight: dict[Any, tuple[int, Scene, int]] = {}
    warming: dict[Any, int] = {}  # ready() calls of restarting actors: idle again once answered
    waits = [0] * n_workers
    while pending or flight:
        while idle and pending:
            i = idle.pop()
            s, attempt = pending.popleft()
            job = {"id": s.id, "path": str(s.path), "meta": s.meta}
            # a resumed scene may have unverified outputs to replace; a retry replaces nothing (its
            # transaction left no final file) but must not trip over a crashed attempt's commit
            ref = pool[i].process.remote(job, str(out), attempt, resume or attempt > 1, seg)
            flight[ref] = (i, s, attempt)
            bar.update(running=len(flight))
        if not flight and not warming:
            raise DakdError(f"all {n_workers} batch worker(s) were lost; {len(pending)} scene(s) not run")
        # short waits: Python runs signal handlers only between bytecodes, and the CLI gives an
        # interrupt about a second before it exits hard (see dakd_edge.cli.signals)
        ready, _ = ray.wait([*flight, *warming], num_returns=1, timeout=0.2)
        for ref in ready:
            if ref in warming:
                _rewarm(ray, pool, warming, waits, idle, ref)
                continue
            i, s, attempt = flight.pop(ref)
            try:
                rec = ray.get(ref)
                idle.append(i)
            except ray.exceptions.RayError as e:  # the worker process died (or Ray lost it)
                # counts as an attempt even when Ray cannot tell whether the scene started: a scene
                # that kills its worker every time must end as failed, not loop forever
                rec = _died(s, out, attempt, e)
                warming[pool[i].ready.remote()] = i  # no new scene until Ray has restarted it
            if rec["status"] != "ok" and rec.pop("retry", True) and attempt <= retries:
                pending.appendleft((s, attempt + 1))
                bar.update(running=len(flight), retried=1)
                continue
            rec.pop("retry", None)
            bar.update(running=len(flight), done=rec)
            yield rec


def _rewarm(ray: Any, pool: list, warming: dict, waits: list[int], idle: list[int], ref: Any) -> None:
    """An actor answered ready() after a crash: idle again; still restarting: ask again (<= ~60 s)."""
    i = warming.pop(ref)
    try:
        ray.get(ref)
    except ray.exceptions.RayError:
        waits[i] += 1
        if waits[i] <= 120:  # Ray restarts a dead actor in seconds; past a minute it is gone
            time.sleep(0.5)
            warming[pool[i].ready.remote()] = i
        return
    waits[i] = 0
    idle.append(i)


def _died(s: Scene, out: Path, attempt: int, e: BaseException) -> dict[str, Any]:
    from dakd_edge.batch.worker import now

    return {
        "id": s.id,
        "input": str(s.path),
        "outputs": {k: str(p.relative_to(out)) for k, p in scene_outputs(out, s.id).items()},
        "attempts": attempt,
        "status": "failed",
        "error": f"worker died while segmenting ({_ray_line(e)})",
        "finished": now(),
        "retry": True,
    }


def _ray_line(e: BaseException) -> str:
    """Ray's errors span many lines (tracebacks, actor ids): keep the first meaningful one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def _max_node_cpus(ray: Any) -> int:
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(cpus, default=1))
