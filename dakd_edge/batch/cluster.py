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
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from dakd_edge.atomic import proc_stat_fields
from dakd_edge.batch.inputs import Scene
from dakd_edge.batch.manifest import scene_outputs
from dakd_edge.batch.worker import ModelSpec, SceneWorker
from dakd_edge.errors import BackendUnavailable, DakdError

# How long workers may take to load their models (a TensorRT engine build takes minutes; a cluster
# may add nodes meanwhile) before the batch gives up instead of waiting on resources that never come.
READY_TIMEOUT = 900.0
DIED = "worker died while segmenting"  # the error of a scene whose worker process died


class Progress(Protocol):
    def update(self, running: int, done: dict[str, Any] | None = None, retried: int = 0) -> None: ...


def _interrupt_in(e: BaseException) -> BaseException | None:
    """The interrupt behind ``e``: ``e`` itself, or the one a signal handler raised inside Ray's
    native ``ray.wait`` / ``ray.get``, which Python hands on as a ``SystemError`` ("returned a result
    with an exception set") caused by it."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if not isinstance(e, Exception):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def keep_signals_from_ray() -> None:
    """Keep Ray's C++ failure-signal handler out of the driver: installed by ``ray.init`` when ray was
    imported without this setting, it took SIGTERM over from the CLI, so a scheduler's ``kill`` aborted
    the driver with a stack dump (exit 134) instead of exit 143 with its temporaries removed. It must
    run before ray is imported (a ray module constant); the workers started from this driver inherit it
    (a worker that crashes is still recorded as failed, without Ray's native stack dump)."""
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")


@contextlib.contextmanager
def ray_session(workers: int | None, address: str | None) -> Iterator[Any]:
    """Ray as found (already initialised), on ``address``/``RAY_ADDRESS``, or local in-process."""
    keep_signals_from_ray()
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet: dict[str, Any] = dict(log_to_driver=False, logging_level="ERROR")
    addr = address or os.environ.get("RAY_ADDRESS")
    term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if addr:
        _probe(addr)
    from dakd_edge.cli.signals import Interrupted

    try:
        if addr:
            ray.init(address=addr, **quiet)
        else:  # "local": a new in-process cluster, never one that someone else started on this machine
            cpus = max(os.cpu_count() or 1, workers or 1)
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    except BaseException as e:
        # an interrupt while Ray starts, maybe wrapped (Ray's GCS wait turns it into a RuntimeError, its
        # native calls into a SystemError), or ray.init's own SIGTERM handler's sys.exit(15)
        stop = _interrupt_in(e)
        if isinstance(stop, SystemExit) and stop.code == signal.SIGTERM:
            stop = Interrupted(signal.SIGTERM)
        if stop is None and isinstance(e, ConnectionError | ValueError | RuntimeError):
            raise DakdError(
                f"cannot start Ray{f' on {addr}' if addr else ''}: {' '.join(str(e).split())}"
            ) from None
        if not addr:  # its half-started processes go too
            _kill_local_ray(ray, tree=isinstance(stop, Interrupted))
        if stop is None or stop is e:
            raise
        raise stop from None
    finally:
        if term is not None:  # ray.init replaces it with sys.exit: keep the CLI's clean interrupt
            signal.signal(signal.SIGTERM, term)
    exiting = False
    try:
        yield ray
    except BaseException as e:
        stop = _interrupt_in(e)  # Interrupted / KeyboardInterrupt, maybe inside Ray's SystemError
        if stop is None:
            raise
        if not addr:
            _kill_local_ray(ray, tree=isinstance(stop, Interrupted))
            # the CLI exits now: Ray's ~2 s teardown outlasted its grace period, so the watchdog's hard
            # exit came before the batch lock and the driver's temporaries were released
            exiting = isinstance(stop, Interrupted)
        if stop is e:
            raise
        raise stop from None
    finally:
        if not exiting:
            ray.shutdown()
        if term is not None:  # ray.shutdown puts SIGTERM's default back: the layer pass died by it
            signal.signal(signal.SIGTERM, term)


PROBE_TIMEOUT = 10.0  # seconds to open a TCP connection to a cluster's head before Ray is asked to


def _probe(addr: str) -> None:
    """Fail in seconds on an unreachable ``--address``: ``ray.init`` retries for minutes with only
    Ray's own logs. ``auto`` / ``local`` and addresses without a port are left to Ray."""
    rest = addr.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        raise DakdError(
            f"cannot reach the Ray cluster at {addr} ({e.strerror or e}): is its head running, and is "
            "the port open from here?"
        ) from None


# Set once this process has killed its local Ray on an interrupt: the CLI then exits without
# interpreter teardown (see dakd_edge.cli.app), which Ray's native code no longer survives.
killed_on_interrupt = False


def _kill_local_ray(ray: Any, tree: bool = False) -> None:
    """Stop the in-process Ray at once on an interrupt (the CLI exits ~1 s after a signal).

    ``ray.shutdown()`` takes about 2 s, and a raylet killed outright leaves its agent processes
    running. With ``tree`` (the CLI, which exits next and started nothing else) every process this
    driver started (all of the local Ray's: GCS, raylet, agents, workers) is killed, the whole tree
    found before any is, so none is orphaned first; that also holds while ``ray.init`` is still
    starting them, when Ray's own node object does not exist yet. Without it (a library caller's
    KeyboardInterrupt: its process may have children of its own) Ray's own node kills its processes.
    """
    global killed_on_interrupt
    killed_on_interrupt = killed_on_interrupt or tree
    for pid in descendants(os.getpid()) if tree else []:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    try:
        node = ray._private.worker._global_node
        node.kill_all_processes(check_alive=False, allow_graceful=False, wait=False)
    except Exception:  # private Ray API, and None before ray.init has made it: best effort
        pass


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere), parents before their children."""
    found, level = [], {pid}
    while level:
        level = set(children(level)) - set(found)
        found += sorted(level)
    return found


def children(parents: set[int]) -> list[int]:
    """Pids whose parent is in ``parents`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(proc_stat_fields(int(stat.parent.name))[1]) in parents:
                found.append(int(stat.parent.name))
    return found


def worker_sizes(
    ray: Any, workers: int | None, threads: int | None, scenes: int, gpu: bool = False
) -> tuple[int, int]:
    """(actors, intra-op threads each): default one actor per two CPUs, threads splitting the CPUs.

    With ``gpu`` each actor reserves a whole GPU: the default is capped at the cluster's GPUs, and too
    few GPUs is an error here, since Ray would otherwise keep such actors pending forever.
    """
    res = ray.cluster_resources()
    cpus = int(res.get("CPU", 1))
    n = workers or max(1, cpus // 2)
    if gpu:
        have = int(res.get("GPU", 0))
        if have < 1:
            raise BackendUnavailable("--device cuda: the Ray cluster has no GPU; use --device cpu")
        n = n if workers else min(n, have)
        if min(n, scenes) > have:
            raise BackendUnavailable(
                f"--device cuda reserves one GPU per worker: {min(n, scenes)} worker(s), "
                f"but the Ray cluster has {have} GPU(s); pass --workers {have}"
            )
    return max(1, min(n, scenes)), threads or max(1, cpus // n)


def start_workers(
    ray: Any, model: ModelSpec, load: dict[str, Any], n_workers: int
) -> tuple[list[Any], dict[str, int] | None]:
    """Create the actors and wait until each has loaded its model (at most :data:`READY_TIMEOUT` s);
    returns them and the tiling the model resolved (:meth:`SceneWorker.tiling`)."""
    cpus = max(1, min(load["threads"], _max_node_cpus(ray)))
    gpus = 1 if str(load["device"]).startswith("cuda") else 0
    if gpus:  # Ray gives each actor one GPU through CUDA_VISIBLE_DEVICES: inside, it is cuda:0
        load = {**load, "device": "cuda"}
    actor = ray.remote(SceneWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
    pool = [actor.remote(model, load) for _ in range(n_workers)]
    waiting = [a.ready.remote() for a in pool]
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while waiting:  # short waits, as in schedule(): an interrupt must not wait for a model load
            ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.2)
            error = next((e for e in ray.get(ready) if e), None)
            if error:
                raise DakdError(error)
            if waiting and time.monotonic() > deadline:
                each = f"{cpus} CPU(s){' and 1 GPU' if gpus else ''} each"
                raise DakdError(
                    f"{len(waiting)} of {n_workers} batch worker(s) not ready after {READY_TIMEOUT:.0f} s: "
                    f"the Ray cluster may lack the resources they ask for ({each})"
                )
        tiling = ray.get(pool[0].tiling.remote())
    except ray.exceptions.RayError as e:
        _kill(ray, pool)
        raise DakdError(f"batch workers did not start: {_ray_line(e)}") from None
    except BaseException:
        _kill(ray, pool)  # an actor still loading (or pending) would hold its CPUs/GPU
        raise
    return pool, tiling


@contextlib.contextmanager
def worker_pool(
    ray: Any, model: ModelSpec, load: dict[str, Any], n_workers: int
) -> Iterator[tuple[list[Any], dict[str, int] | None]]:
    """:func:`start_workers`, killed on leaving: a run stopped by an error (a full disk) must not leave
    actors holding CPUs / GPUs in a Ray session that outlives it (one its caller started)."""
    pool, tiling = start_workers(ray, model, load, n_workers)
    try:
        yield pool, tiling
    finally:
        _kill(ray, pool)


def _kill(ray: Any, pool: list[Any]) -> None:
    for a in pool:
        with contextlib.suppress(Exception):
            ray.kill(a)


def schedule(
    ray: Any,
    pool: list[Any],
    todo: list[Scene],
    out: Path,
    retries: int,
    owned: set[str],
    seg: dict[str, Any],
    bar: Progress,
    started: Callable[[Scene], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each scene's final record as it finishes: one scene in flight per actor, retries first.

    Only scenes in ``owned`` (:func:`owns_outputs` of their manifest records, or claimed by a
    :data:`~dakd_edge.batch.manifest.STARTED` line) may replace existing outputs, and retries of a
    scene whose worker died in this run (it may have died mid-commit). ``started(scene)`` is called
    before a scene's first attempt goes to a worker (the driver writes its ``started`` line).
    """
    n_workers = len(pool)
    pending = deque((s, 1, s.id in owned) for s in todo)
    idle = list(range(n_workers))
    flight: dict[Any, tuple[int, Scene, int, bool]] = {}
    warming: dict[Any, int] = {}  # ready() calls of restarting actors: idle again once answered
    waits = [0] * n_workers
    while pending or flight:
        while idle and pending:
            i = idle.pop()
            s, attempt, replace = pending.popleft()
            if attempt == 1 and started is not None:
                started(s)
            job = {"id": s.id, "path": str(s.path), "meta": s.meta}
            # a resumed scene may have unverified outputs of its own to replace; a retry replaces
            # nothing (its transaction left no final file) unless a crashed attempt died mid-commit
            ref = pool[i].process.remote(job, str(out), attempt, replace, seg)
            flight[ref] = (i, s, attempt, replace)
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
            i, s, attempt, replace = flight.pop(ref)
            try:
                rec = ray.get(ref)
                idle.append(i)
            except ray.exceptions.RayError as e:  # the worker process died (or Ray lost it)
                # counts as an attempt even when Ray cannot tell whether the scene started: a scene
                # that kills its worker every time must end as failed, not loop forever
                rec = _died(s, out, attempt, e)
                replace = True
                warming[pool[i].ready.remote()] = i  # no new scene until Ray has restarted it
            if rec["status"] != "ok" and rec.pop("retry", True) and attempt <= retries:
                pending.appendleft((s, attempt + 1, replace))
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


def owns_outputs(record: dict[str, Any]) -> bool:
    """Whether the files under a recorded scene's output names are the batch's own: it finished, or
    its worker died (maybe mid-commit). Any other failure left no final file: whatever is there now
    was put there by someone else."""
    return record.get("status") == "ok" or str(record.get("error") or "").startswith(DIED)


def _died(s: Scene, out: Path, attempt: int, e: BaseException) -> dict[str, Any]:
    from dakd_edge.batch.worker import now

    return {
        "id": s.id,
        "input": str(s.path),
        "outputs": {k: str(p.relative_to(out)) for k, p in scene_outputs(out, s.id).items()},
        "attempts": attempt,
        "status": "failed",
        "error": f"{DIED} ({_ray_line(e)})",
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
