"""`dakd-edge bench`: latency, throughput, memory and accuracy agreement across backends.

Every requested combination of backend x precision x tile x batch becomes one row. Rows that cannot
run here (no CUDA, no TensorRT, a precision a backend lacks) are kept with ``status="skipped"`` and the
reason, like Ultralytics' benchmark status column; rows that crash are ``"failed"`` with the error.
Accuracy is measured against the PyTorch fp32 reference on the same inputs (argmax agreement, max abs
logit error), so a fast-but-wrong engine is visible in the same table as its speed.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge import __version__, jsonin, jsonout
from dakd_edge.atomic import work_dir
from dakd_edge.cuda import cuda_usable, resolve_device
from dakd_edge.errors import BackendUnavailable, DakdError, InputError, ModelFileError
from dakd_edge.extras import available, install_hint, require_extra
from dakd_edge.formats import BACKENDS as RUNTIME_BACKENDS
from dakd_edge.formats import ENGINE, ONNX, PRECISIONS, backend_precisions, format_of
from dakd_edge.meta import MAX_CLASSES, MIN_CLASSES, class_count_problem
from dakd_edge.timing import summarize

# Rows: every runtime backend of dakd_edge.formats, the torch one also with Triton kernels and compiled.
TORCH_VARIANTS = ("torch-triton", "torch-compile")
BACKENDS = tuple(v for b in RUNTIME_BACKENDS for v in ((b, *TORCH_VARIANTS) if b == "torch" else (b,)))
# Metrics compared by the regression gate: (name, larger_is_worse)
GATED = (("p50_ms", True), ("mean_ms", True), ("mpix_per_s", False))
MAX_CALL_PIXELS = 1 << 27  # tile^2 x batch per timed call: 512 MB of fp32 input, before activations
# Version of the results JSON. 1 (no "format" key): environment + results. 2: also "format",
# "settings" (warm-up, iterations, threads, ...), "method" (what was timed) and per-row model_sha256.
FORMAT = 2
METHOD = {
    "timed": (
        "one backend predict() call per iteration on a batch already in memory: host-to-device copy, "
        "model forward, device-to-host copy (numpy in, numpy out). Reading, scaling, tiling, blending "
        "and writing a scene are not timed here: --scene times segment end to end"
    ),
    "latency": "p50/p90/p99/mean_ms are per call of `batch` tiles (not per tile)",
    "throughput": "tiles_per_s = batch / mean call time; mpix_per_s = tiles_per_s x tile^2 / 1e6",
    "percentiles": "numpy.percentile, linear interpolation, over the timed iterations only",
    "warmup": "warm-up calls run first and are not timed",
    "gpu_timer": "CUDA events, the device synchronised before each start and after each stop",
    "peak_mem_mb": (
        "CPU: peak resident memory of the whole process (models loaded so far included) during one extra "
        "untimed call; GPU: torch's max reserved memory (not ONNX Runtime's or TensorRT's own)"
    ),
}


@dataclass
class Row:
    """One benchmark combination; the JSON schema of ``results``."""

    backend: str
    precision: str
    tile: int
    batch: int
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    tiles_per_s: float | None = None
    mpix_per_s: float | None = None
    peak_mem_mb: float | None = None
    argmax_agreement: float | None = None
    max_abs_err: float | None = None
    model: str = ""
    model_size_mb: float | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    model_sha256: str | None = None  # the model file's content (None: a registry name, seeded weights)

    def key(self) -> tuple[str, str, str, int, int]:
        return (self.model, self.backend, self.precision, self.tile, self.batch)


# ----------------------------------------------------------------------------- environment
# Thread settings read by the runtimes from the environment (recorded: they change every number).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


def environment(threads: int | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU (model, cores, the CPUs this process may use, load),
    GPU, driver, Jetson board and power mode, thread settings, library versions, git commit.

    ``threads``: the intra-op threads the rows ran with (``--threads``; None: each runtime's default)."""
    env: dict[str, Any] = {
        "dakd_edge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        # a container's cpuset / taskset: os.cpu_count() still says the host's count
        "cpus_usable": _cpus_usable(),
        "load_avg_1m": _load_avg(),
        "mem_total_mb": _mem_total_mb(),
        "git_commit": _git_commit(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": threads,
        # ONNX Runtime's intra-op pool: --threads, else its default (one thread per physical core)
        "onnxruntime_intra_op_threads": threads or "default (physical cores)",
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }
    env.update(_jetson())
    env["numpy"] = np.__version__
    for mod in ("torch", "onnxruntime", "tensorrt", "triton"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # not installed / broken install: recorded as absent
            env[mod] = None
    env["gpu"] = None
    env["cuda"] = None
    env["driver"] = None
    if env["torch"]:
        import torch

        env["torch_threads"] = threads or torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["cuda"] = torch.version.cuda
            env["driver"] = _nvidia_driver()
    return env


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpus_usable() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count()


def _load_avg() -> float | None:
    """1-minute load average at the start of the run: on a shared machine, how busy it was."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _mem_total_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n") or None
    except OSError:
        return None


def _jetson() -> dict[str, Any]:
    """Board, L4T release and power mode on an NVIDIA Jetson (keys absent elsewhere): the same board
    runs several times slower in a low nvpmodel mode, so a number without it sizes nothing."""
    release = _read_text("/etc/nv_tegra_release")
    if release is None:
        return {}
    mode = _first_line(["nvpmodel", "-q"], 10)  # "NV Power Mode: MAXN"
    return {
        "jetson_model": _read_text("/proc/device-tree/model"),
        "l4t_release": release.splitlines()[0],
        "jetson_power_mode": mode.split(":", 1)[-1].strip() if mode else None,
    }


def _first_line(cmd: list[str], timeout: float, cwd: Path | None = None) -> str | None:
    """First line a command prints, or None when it is missing, fails or prints nothing."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _git_commit() -> str | None:
    """The commit of dakd-edge's own checkout; None for an installed wheel (inside someone else's
    repository, ``git rev-parse`` reported that repository's commit)."""
    root = Path(__file__).resolve().parent.parent
    top = _first_line(["git", "rev-parse", "--show-toplevel"], 5, cwd=root)
    if top is None or Path(top).resolve() != root or not (root / "pyproject.toml").is_file():
        return None
    return _first_line(["git", "rev-parse", "HEAD"], 5, cwd=root)


def _nvidia_driver() -> str | None:
    return _first_line(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 10)


# ----------------------------------------------------------------------------- memory
class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the maximum seen."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


# ----------------------------------------------------------------------------- runners
@dataclass
class Runner:
    """A ready-to-time callable for one (backend, precision) and how to read its memory use."""

    predict: Callable[[np.ndarray], np.ndarray]
    device: str = "cpu"
    close: Callable[[], None] = lambda: None


@dataclass
class ModelSpec:
    """What is being measured: a checkpoint, an ONNX file, an engine, or a registry name."""

    path: Path | None
    label: str
    kind: str  # checkpoint | onnx | engine | registry
    size_mb: float | None
    sha256: str | None = None

    @classmethod
    def file(cls, p: Path, label: str) -> ModelSpec:
        """A model file whose suffix :func:`dakd_edge.formats.format_of` knows."""
        fmt = format_of(p)
        kind = fmt.name if fmt in (ONNX, ENGINE) else "checkpoint"
        return cls(p, label, kind, p.stat().st_size / 2**20, _sha256(p))

    @classmethod
    def parse(cls, model: str | None) -> ModelSpec:
        """``None``: the bundled checkpoint, or its ONNX export where PyTorch is not installed."""
        if model is None:
            from dakd_edge.weights import bundled_path

            p = bundled_path("torch" if available("torch") else "onnxruntime")
            return cls.file(p, f"bundled:{p.stem}")
        p = Path(model)
        if format_of(p) is not None:
            if not p.is_file():
                raise ModelFileError(f"model file not found: {p}")
            return cls.file(p, p.name)
        require_extra("torch", f"bench --model {model}")  # registry names are built with PyTorch
        from dakd_edge import list_models

        if model in list_models():
            return cls(None, model, "registry", None)
        raise ModelFileError(
            f"{model!r} is neither a model file (.safetensors/.pt/.onnx/.engine) nor a registered model"
        )


def _sha256(p: Path) -> str | None:
    """The file's content hash: the regression gate tells two models of one file name apart."""
    from dakd_edge.atomic import file_sha256

    try:
        return file_sha256(p)
    except OSError:
        return None


class Workbench:
    """Builds runners for one model, caching the torch module and exported ONNX files."""

    def __init__(
        self, spec: ModelSpec, device: str, workdir: Path, num_classes: int = 2, threads: int | None = None
    ) -> None:
        self.spec = spec
        self.device = device
        self.workdir = workdir
        self.num_classes = num_classes
        self.threads = threads  # ONNX Runtime intra-op threads (torch's are set by run_bench)
        self._torch: tuple[Any, Any] | None = None
        self._meta = None
        self._onnx: dict[int, Path] = {}  # exported ONNX per opset

    def torch_model(self) -> tuple[Any, Any]:
        """(model, meta) on the CPU in eval mode; registry names get seeded random weights."""
        if self.spec.kind in ("onnx", "engine"):
            raise BackendUnavailable(f"torch backends need a checkpoint, not an .{self.spec.kind} file")
        require_extra("torch", "bench --backend torch")
        if self._torch is None:
            if self.spec.kind == "registry":
                from dakd_edge.export.onnx import load_for_export

                self._torch = load_for_export(self.spec.label, num_classes=self.num_classes)
            else:
                from dakd_edge.models.checkpoint import load_model_file

                self._torch = load_model_file(self.spec.path)
            self._torch[0].eval()
        return self._torch

    @property
    def meta(self):
        if self._meta is None:
            # Files are read without torch (a torch-free box benchmarks ONNX Runtime).
            if self.spec.kind == "onnx":
                from dakd_edge.inference.backends import read_onnx_meta

                self._meta = read_onnx_meta(self.spec.path)
            elif self.spec.kind == "engine":
                from dakd_edge.inference.backends import read_engine_sidecar
                from dakd_edge.meta import ModelMeta

                self._meta = ModelMeta.from_dict(read_engine_sidecar(self.spec.path)[ENGINE.meta_key])
            elif self.spec.kind == "checkpoint":
                from dakd_edge.models.checkpoint import read_meta

                self._meta = read_meta(self.spec.path)
            else:
                self._meta = self.torch_model()[1]
        return self._meta

    def torch_runner(
        self, precision: str, kernels: str = "torch", compile: bool = False, graphs: bool = False
    ) -> Runner:
        from dakd_edge.inference.backends import TorchBackend

        if precision not in backend_precisions("torch"):
            raise BackendUnavailable(
                f"{precision} is a TensorRT precision; the torch backends run "
                + "/".join(backend_precisions("torch"))
            )
        cuda = self.device.startswith("cuda")
        if precision == "fp16" and not cuda:
            raise BackendUnavailable("fp16 torch inference needs CUDA (autocast fp16 is GPU-only here)")
        if kernels == "triton" and not cuda:
            raise BackendUnavailable("torch-triton needs CUDA (on the CPU Triton only interprets)")
        if graphs and not cuda:
            raise BackendUnavailable(
                "CUDA graphs need CUDA (--cuda-graphs applies to the torch backends on GPU)"
            )
        model, meta = self.torch_model()
        be = TorchBackend(
            model=model, meta=meta, device=self.device, kernels=kernels, amp=precision == "fp16"
        )
        if compile:
            import torch

            # "reduce-overhead" is torch.compile's own CUDA-graph mode. dynamic=False: every row has one
            # fixed shape, and after a first tile size dynamo's automatic dynamic shapes made the second
            # compile of saross-nano run for over 30 CPU-minutes (static: ~3 minutes per size).
            be.model = torch.compile(be.model, mode="reduce-overhead" if graphs else None, dynamic=False)
        elif graphs:
            return Runner(CudaGraphPredict(be), device=be.device, close=be.close)
        return Runner(be.predict, device=be.device, close=be.close)

    def onnx_path(self, opset: int | None = None) -> Path:
        """The model as ONNX: a given ``.onnx`` as it is, else exported once per opset (default: the
        export default; engines for TensorRT 8.5 need 16, :func:`~dakd_edge.export.tensorrt.choose_engine_opset`)."""
        if self.spec.kind == "onnx":
            return self.spec.path
        if self.spec.kind == "engine":
            raise BackendUnavailable("an engine file cannot be run by ONNX Runtime")
        require_extra(
            "torch", f"bench --backend onnxruntime --model {self.spec.label}", "torch", "safetensors", "onnx"
        )
        from dakd_edge.export.onnx import DEFAULT_OPSET, OnnxExportConfig, export_onnx

        opset = opset or DEFAULT_OPSET
        if opset not in self._onnx:
            model, meta = self.torch_model()
            suffix = "" if opset == DEFAULT_OPSET else f"-opset{opset}"
            out = self.workdir / f"{self.spec.label.replace(':', '_')}{suffix}.onnx"
            export_onnx(model, meta, out, OnnxExportConfig(opset=opset, parity=False))
            self._onnx[opset] = out
        return self._onnx[opset]

    def onnxruntime_runner(self, precision: str) -> Runner:
        require_extra("runtime", "bench --backend onnxruntime")
        if precision not in backend_precisions("onnxruntime"):
            raise BackendUnavailable(f"{precision} is not benchmarked with ONNX Runtime; use TensorRT")
        from dakd_edge.inference.backends import OnnxRuntimeBackend

        be = OnnxRuntimeBackend(self.onnx_path(), device=self.device, threads=self.threads)
        return Runner(be.predict, device=be.device, close=be.close)

    def tensorrt_runner(self, precision: str, tile: int, batch: int) -> Runner:
        try:
            import tensorrt  # noqa: F401
        except ImportError as e:
            raise BackendUnavailable(
                f"TensorRT is not installed (on a CUDA machine: {install_hint('trt')})"
            ) from e
        if not cuda_usable("torch"):
            raise BackendUnavailable("TensorRT needs a CUDA GPU")
        from dakd_edge.export.tensorrt import EngineConfig, build_engine, choose_engine_opset
        from dakd_edge.inference.backends import TensorRTBackend

        if self.spec.kind == "engine":
            engine = self.spec.path
        else:
            engine = self.workdir / f"model-{precision}-{tile}-{batch}.engine"
            if not engine.exists():
                c = self.meta.in_chans
                cfg = EngineConfig(
                    precision=precision,
                    min_shape=(1, c, tile, tile),
                    opt_shape=(batch, c, tile, tile),
                    max_shape=(batch, c, tile, tile),
                )
                build_engine(self.onnx_path(choose_engine_opset(None)[0]), engine, self.meta, cfg)
        be = TensorRTBackend(engine)
        return Runner(be.predict, device="cuda", close=be.close)

    def runner(self, backend: str, precision: str, tile: int, batch: int, graphs: bool = False) -> Runner:
        if backend.startswith("torch"):
            require_extra("torch", f"bench --backend {backend}")
        if backend == "torch":
            return self.torch_runner(precision, graphs=graphs)
        if backend == "torch-triton":
            return self.torch_runner(precision, kernels="triton", graphs=graphs)
        if backend == "torch-compile":
            return self.torch_runner(precision, compile=True, graphs=graphs)
        if backend == "onnxruntime":
            return self.onnxruntime_runner(precision)
        if backend == "tensorrt":
            return self.tensorrt_runner(precision, tile, batch)
        raise InputError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


class CudaGraphPredict:
    """A torch backend's forward captured once in a CUDA graph and replayed per call.

    Removes per-kernel launch overhead (large for SAROSS-Net's many small ops at batch 1). The graph is
    bound to one input shape: it is (re)captured when the shape changes. Inputs are copied into a
    static device tensor; outputs are read from the graph's static output.
    """

    def __init__(self, backend: Any, warmup: int = 3) -> None:
        import torch

        self.be, self.torch, self.warmup = backend, torch, warmup
        self.shape: tuple[int, ...] | None = None
        self.graph: Any = None
        self.static_in: Any = None
        self.static_out: Any = None

    def _forward(self) -> Any:
        torch = self.torch
        from dakd_edge.kernels import use_kernels

        with torch.inference_mode(), use_kernels(self.be.kernels):
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.be.amp):
                return self.be.model(self.static_in)

    def _capture(self, x: np.ndarray) -> None:
        torch = self.torch
        self.shape = x.shape
        self.static_in = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.be.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream (allocator, autotuning)
            for _ in range(self.warmup):
                self._forward()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = self._forward()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.graph is None or x.shape != self.shape:
            self._capture(x)
        else:
            self.static_in.copy_(self.torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        self.graph.replay()
        return self.static_out.float().cpu().numpy()


# ----------------------------------------------------------------------------- inputs
def make_inputs(tile: int, batch: int, in_chans: int, meta: Any, seed: int = 0) -> np.ndarray:
    """Realistic, deterministic input: synthetic SAR patches in the model's normalisation."""
    from dakd_edge.data.scaling import normalize

    try:
        from dakd_edge.data.synthetic import generate_patch

        tiles = [generate_patch(seed + i, tile, 2)[0] for i in range(batch)]
        unit = np.stack([np.asarray(t, dtype=np.float32).reshape(tile, tile) for t in tiles])
    except ImportError:  # generator not installed: fall back to speckle-like noise (documented)
        rng = np.random.default_rng(seed)
        unit = np.clip(rng.gamma(4.0, 0.1, size=(batch, tile, tile)), 0, 1).astype(np.float32)
    x = normalize(unit, meta.normalization)[:, None]
    return np.repeat(x, in_chans, axis=1) if in_chans > 1 else np.ascontiguousarray(x)


# ----------------------------------------------------------------------------- main loop
def _time_row(runner: Runner, x: np.ndarray, warmup: int, iters: int) -> tuple[Any, np.ndarray, float]:
    """(timing of the ``iters`` timed calls, the last output, peak memory in MB).

    CPU memory is sampled (a thread reading RSS every 5 ms) during one extra, untimed call after the
    timed ones, not during them: on a small CPU that thread competes with the runtime's own threads
    and slowed the very calls being timed (about 5 % for torch on 2 cores)."""
    cuda = runner.device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        out = runner.predict(x)
    times = []
    for _ in range(iters):
        if cuda:  # CUDA events on the GPU timeline; each call ends synchronised (numpy out)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            out = runner.predict(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            out = runner.predict(x)
            times.append((time.perf_counter() - t0) * 1e3)
    if cuda:
        peak = torch.cuda.max_memory_reserved() / 2**20
    else:
        with PeakRSS() as mem:
            out = runner.predict(x)
        peak = mem.peak_mb
    return summarize(times), out, peak


def run_bench(
    models: Sequence[str | None] = (None,),
    backends: Sequence[str] = ("torch", "onnxruntime"),
    precisions: Sequence[str] = ("fp32",),
    tiles: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
    warmup: int = 10,
    iters: int = 100,
    device: str = "auto",
    num_classes: int = 2,
    on_row: Callable[[Row], None] | None = None,
    cuda_graphs: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every combination; returns ``{"format", "environment", "settings", "method", "results"}``
    (``results``: one row dict per combination; see :data:`METHOD` for what each number means).

    ``tiles=None`` / ``batches=None`` time what ``segment`` runs by default: the model's own tile, and
    the default batch for it on ``device`` (:func:`~dakd_edge.inference.predictor.default_batch`).

    ``cuda_graphs`` replays the torch backends' forward from a captured CUDA graph (GPU only; on the
    CPU those rows are skipped with the reason). GPU latencies are measured with CUDA events.

    ``threads``: intra-op threads for every row (``torch.set_num_threads`` for the torch backends, ONNX
    Runtime's ``intra_op_num_threads``); None leaves each runtime's default. Recorded either way.
    """
    _check_choices(backends, precisions)
    check_counts(warmup, iters, threads)
    if not MIN_CLASSES <= num_classes <= MAX_CLASSES:
        raise InputError(f"--num-classes: {class_count_problem(num_classes)}")
    device = resolve_device(device)
    if tiles:  # bad sizes fail before a model loads (the model's tile is only needed without --tile)
        tile_batches(None, tiles, batches, device)
    env = environment(threads)  # before the rows: the load average is the run's, not the next job's
    rows: list[Row] = []
    with work_dir("dakd-bench-") as tmp, _torch_threads(threads):
        for model in models:
            spec = ModelSpec.parse(model)
            bench = Workbench(spec, device, tmp, num_classes=num_classes, threads=threads)
            for tile, batch in tile_batches(bench.meta, tiles, batches, device):
                x = make_inputs(tile, batch, bench.meta.in_chans, bench.meta)
                ref = _reference(bench, x)
                for backend in backends:
                    for precision in precisions:
                        row = _one_row(
                            bench, backend, precision, tile, batch, x, ref, warmup, iters, cuda_graphs
                        )
                        if threads:
                            row.extra["threads"] = threads
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
    settings = {"device": device, "warmup": warmup, "iters": iters, "threads": threads,
                "cuda_graphs": cuda_graphs, "num_classes": num_classes}  # fmt: skip
    return {
        "format": FORMAT,
        "environment": env,
        "settings": settings,
        "method": dict(METHOD),
        "results": [jsonout.finite(asdict(r)) for r in rows],
    }


def check_counts(warmup: int, iters: int, threads: int | None = None) -> None:
    """One InputError line for a count no run can use (checked before any work)."""
    if warmup < 0 or iters < 1:
        raise InputError(f"--warmup must be >= 0 and --iters >= 1, got --warmup {warmup} --iters {iters}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """``torch.set_num_threads(threads)`` for the run, restored after (no-op without torch/threads)."""
    if not threads or not available("torch"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_json(doc: dict[str, Any]) -> str:
    """The results as strict JSON: NaN / infinity become null (``NaN`` is not JSON; jq, JavaScript and
    most CI parsers reject it). A NaN logit error means the backend's output held NaN (fp16 overflow,
    a broken engine): ``max_abs_err`` null with a low ``argmax_agreement`` says so."""
    return jsonout.dumps(doc, indent=2)


def tile_batches(
    meta: Any, tiles: Sequence[int] | None, batches: Sequence[int] | None, device: str
) -> list[tuple[int, int]]:
    """The (tile, batch) pairs to time: the given ones, or ``segment``'s defaults for this model."""
    from dakd_edge.inference.predictor import MIN_TILE, default_batch

    for name, values in (("tile", tiles), ("batch", batches)):
        if values is not None and (not values or min(values) < 1):
            raise InputError(f"--{name} needs positive sizes, got {','.join(map(str, values)) or 'none'}")
    if tiles and min(tiles) < MIN_TILE:  # as segment: --tile 1 meant 262,144 tiles per call (a hang)
        raise InputError(f"--tile must be at least {MIN_TILE} (as for segment), got {min(tiles)}")
    pairs = [
        (int(t), int(n))
        for t in (tiles or (meta.tile,))
        for n in (batches or (default_batch(device, int(t)),))
    ]
    for t, n in pairs:
        if n * t * t > MAX_CALL_PIXELS:
            raise InputError(
                f"--tile {t} x --batch {n} is {n * t * t / 1e6:.0f} Mpixels per call, over the "
                f"{MAX_CALL_PIXELS / 1e6:.0f} Mpixel limit: its input alone would not fit in memory"
            )
    return pairs


def _check_choices(backends: Sequence[str], precisions: Sequence[str]) -> None:
    for b in backends:
        if b not in BACKENDS:
            raise InputError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise InputError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")


def _reference(bench: Workbench, x: np.ndarray) -> np.ndarray | None:
    """PyTorch fp32 logits on the CPU (the accuracy reference); None for ONNX/engine-only models."""
    try:
        from dakd_edge.inference.backends import TorchBackend

        model, meta = bench.torch_model()
        return TorchBackend(model=model, meta=meta, device="cpu", kernels="torch").predict(x)
    except BackendUnavailable:
        return None


def _one_row(bench, backend, precision, tile, batch, x, ref, warmup, iters, graphs=False) -> Row:
    # the device it is meant to run on, replaced by the runner's: a row that fails before its runner
    # exists (an engine that no longer builds) must still match its GPU baseline row, as a regression
    row = Row(
        backend, precision, tile, batch, model=bench.spec.label, model_size_mb=bench.spec.size_mb,
        model_sha256=bench.spec.sha256, device=planned_device(backend, bench.device),
    )  # fmt: skip
    graphs = graphs and backend.startswith("torch")
    if graphs:
        row.extra["cuda_graphs"] = True
    runner = None
    try:
        runner = bench.runner(backend, precision, tile, batch, graphs=graphs)
        row.device = runner.device
        row.extra["timer"] = "cuda-events" if runner.device.startswith("cuda") else "perf_counter"
        timing, out, peak = _time_row(runner, x, warmup, iters)
    except BackendUnavailable as e:
        row.status, row.reason = "skipped", str(e)
        return row
    except (DakdError, RuntimeError, ValueError, OSError) as e:
        row.status, row.reason = "failed", f"{type(e).__name__}: {e}".splitlines()[0][:300]
        return row
    finally:
        if runner is not None:
            runner.close()
    row.p50_ms, row.p90_ms, row.p99_ms, row.mean_ms = (
        timing.p50_ms,
        timing.p90_ms,
        timing.p99_ms,
        timing.mean_ms,
    )
    if timing.mean_ms > 0:  # a clock too coarse for the call reads 0: no throughput, not a crash
        row.tiles_per_s = batch / (timing.mean_ms / 1e3)
        row.mpix_per_s = row.tiles_per_s * tile * tile / 1e6
    row.peak_mem_mb = peak
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:  # NaN / inf logits (fp16 overflow, a broken engine): said, and max_abs_err becomes null
        row.extra["nonfinite_outputs"] = bad
    if ref is not None and out.shape == ref.shape:
        row.argmax_agreement = float((out.argmax(1) == ref.argmax(1)).mean() * 100.0)
        row.max_abs_err = float(np.abs(out.astype(np.float64) - ref).max())
    return row


def planned_rows(
    models: Sequence[str | None],
    backends: Sequence[str],
    precisions: Sequence[str],
    tiles: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
) -> int:
    """How many rows :func:`run_bench` returns for these arguments (a default tile or batch is one)."""
    return len(models) * len(backends) * len(precisions) * len(tiles or (0,)) * len(batches or (0,))


def json_bytes(rows: int) -> int:
    """Room the ``--json`` results need, generously: a row is about 1 kB (its reason at most 300
    characters), the environment and a ``--scene`` summary under 1 kB each."""
    return (64 + 4 * rows) * 1024


def scene_predictor(
    scene: str | os.PathLike, model: str | None = None, device: str = "cpu", backend: str = "auto"
) -> Any:
    """The predictor :func:`run_scene` uses, after opening ``scene`` as ``segment`` will: a damaged,
    wrong-band or unreadable scene, or a temporary folder without room for its class map, is refused
    before the benchmark rows run, not after them."""
    from dakd_edge.atomic import check_room
    from dakd_edge.inference import load
    from dakd_edge.inference.outputs import estimate_output_bytes
    from dakd_edge.inference.readers import open_scene

    predictor = load(model, backend=backend, device=device)  # auto: resolved for the backend it picks
    try:
        with open_scene(scene, predictor.meta.in_chans) as sc:
            sc.valid_sample()
            h, w = sc.info.height, sc.info.width
        tmp = Path(tempfile.gettempdir())  # where run_scene writes (TMPDIR)
        need = estimate_output_bytes(h, w, predictor.meta.num_classes, 0)["classes"]
        check_room(tmp, need, f"the --scene class map in {tmp} (set TMPDIR to use another folder)")
    except BaseException:
        predictor.close()
        raise
    return predictor


def run_scene(
    scene: str | os.PathLike,
    model: str | None = None,
    device: str = "cpu",
    backend: str = "auto",
    predictor: Any | None = None,
) -> dict[str, Any]:
    """End-to-end `segment` on ``scene`` (read, infer, blend, write COG, polygons) into a temp folder.

    ``mpix_per_s`` here is scene pixels over total wall time including I/O, unlike the per-tile rows.
    ``predictor``: one from :func:`scene_predictor` (else it is made here).
    """
    from dakd_edge.inference.segment import segment_scene

    predictor = predictor or scene_predictor(scene, model, device, backend)
    with work_dir("dakd-bench-scene-") as tmp, PeakRSS() as mem:
        t0 = time.perf_counter()
        report = segment_scene(predictor, scene, tmp / "classes.tif")
        seconds = time.perf_counter() - t0
    return {
        "scene": str(scene),
        "backend": report["backend"],
        "seconds": seconds,
        "megapixels": report["megapixels"],
        "mpix_per_s": report["megapixels"] / seconds,
        "inference_mpix_per_s": report["mpix_per_s"],
        "peak_rss_mb": mem.peak_mb,
        "tiles": report["tiles"],
    }


# ----------------------------------------------------------------------------- regression gate
def parse_threshold(text: str) -> float:
    """'10%' or '0.1' -> 0.1.

    NaN is refused (every comparison with it is false: a gate that can never fail), and so is a bare
    number of 1 or more: ``--max-regression 5`` would allow 500 %, not the 5 % it almost always means."""
    t = text.strip()
    pct = t.endswith("%")
    try:
        v = float(t[:-1]) / 100.0 if pct else float(t)
    except ValueError as e:
        raise InputError(f"bad --max-regression {text!r}; use e.g. 10% or 0.1") from e
    if not math.isfinite(v):
        raise InputError(f"bad --max-regression {text!r}: not a finite number; use e.g. 10% or 0.1")
    if v < 0:
        raise InputError("--max-regression must be >= 0")
    if not pct and v >= 1:
        raise InputError(
            f"ambiguous --max-regression {text!r}: a bare number is a fraction ({v:g} = {v * 100:g}%); "
            f"write {t}% for {t} percent, or {v * 100:g}% if you mean that"
        )
    return v


# Row fields the gate reads: the match key (Row.key order) and the status, with their JSON types.
_KEY_FIELDS = (("model", str), ("backend", str), ("precision", str), ("tile", int), ("batch", int))
_ROW_FIELDS = (*_KEY_FIELDS, ("status", str))


def _key(r: dict[str, Any]) -> tuple:
    return tuple(r[k] for k, _ in _KEY_FIELDS)


def _fmt_keys(keys: Sequence[tuple], limit: int = 3) -> str:
    shown = ", ".join("/".join(str(k) for k in key) for key in sorted(keys, key=str)[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "") if keys else "none"


def _ok_rows(doc: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    return {_key(r): r for r in doc.get("results", []) if r.get("status") == "ok"}


def _unlike(cur: dict[str, Any], base: dict[str, Any]) -> str | None:
    """Why two rows of one key are not the same measurement (None: they are). A field a row lacks
    (hand-written or older baselines) is not held against it."""
    for name, what in (("device", "device"), ("model_sha256", "model file content")):
        a, b = cur.get(name), base.get(name)
        if a is not None and b is not None and a != b:
            shown = (a[:12], b[:12]) if name == "model_sha256" else (a, b)
            return f"{what} differs (this run {shown[0]}, baseline {shown[1]})"
    return None


def compare(
    current: dict[str, Any],
    baseline: dict[str, Any],
    max_regression: float,
    source: str = "baseline",
    notes: list[str] | None = None,
) -> list[str]:
    """Regressions of matched rows beyond the threshold, as human-readable lines.

    Rows match on model/backend/precision/tile/batch, and only when their device and model file
    content agree too (a CPU baseline is no yardstick for a GPU row, nor one model for another of the
    same file name). A row ``ok`` in the baseline that ``failed`` now is a regression; one skipped now
    (a runtime not installed here) is listed in ``notes``, as are rows left out for being unlike.

    A gate that compared nothing must not pass: :class:`InputError` when no ``ok`` row of the baseline
    (``source`` names it) has a like ``ok`` (or failed) counterpart in ``current``.
    """
    notes = [] if notes is None else notes
    base = _ok_rows(baseline)
    cur_all = {_key(r): r for r in current.get("results", [])}
    cur = _ok_rows(current)
    problems, compared, unlike = [], 0, []
    for key, b in base.items():
        r = cur_all.get(key)
        if r is None:
            continue
        name = "/".join(str(k) for k in key)
        why = _unlike(r, b)
        if why:
            unlike.append(f"{name}: {why}")
            continue
        if r.get("status") == "failed":
            compared += 1
            problems.append(f"{name}: ok in the baseline, failed now ({r.get('reason') or 'no reason'})")
            continue
        if r.get("status") != "ok":
            notes.append(
                f"{name}: ok in the baseline, {r.get('status')} now, not compared ({r.get('reason')})"
            )
            continue
        compared += 1
        for metric, larger_is_worse in GATED:
            old, new = b.get(metric), r.get(metric)
            if not old or new is None:
                continue
            change = (new - old) / old if larger_is_worse else (old - new) / old
            if change > max_regression:
                problems.append(
                    f"{name}: {metric} {old:.4g} -> {new:.4g} "
                    f"({change * 100:+.1f}% worse, limit {max_regression * 100:.1f}%)"
                )
    notes += [f"not compared, {u}" for u in unlike]
    if not compared:
        why = f"; rows left out as unlike: {'; '.join(unlike[:3])}" if unlike else ""
        raise InputError(
            f"no row of baseline {source} matches this run's ok rows (model/backend/precision/tile/batch): "
            f"baseline has {_fmt_keys(list(base))}; this run has {_fmt_keys(list(cur))}{why}"
        )
    return problems


# Environment entries that make two runs different machines or configurations: a gate across them
# measures the hardware, not the code, and is refused (``--allow-other-machine`` to compare anyway).
MACHINE_KEYS = ("machine", "cpu", "cores", "cpus_usable", "gpu", "jetson_model", "jetson_power_mode",
                "threads", "torch_threads", "onnxruntime_intra_op_threads", "thread_env")  # fmt: skip
# Entries whose difference is worth a line but is what a CI gate exists to catch (an upgrade).
SOFTWARE_KEYS = ("dakd_edge", "python", "numpy", "torch", "onnxruntime", "tensorrt", "triton", "cuda",
                 "driver", "l4t_release")  # fmt: skip


def environment_differences(
    current: dict[str, Any] | None, baseline: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(machine/configuration differences, other notes) between this run's environment and the
    baseline's. An entry the baseline does not record is not a difference (older baselines)."""
    if not isinstance(baseline, dict) or not baseline:
        return [], ["the baseline records no environment: it cannot be checked to be from this machine"]
    current = current or {}

    def diff(keys: Sequence[str]) -> list[str]:
        return [
            f"{k}: baseline {baseline[k]!r}, this run {current.get(k)!r}"
            for k in keys
            if k in baseline and k in current and baseline[k] != current[k]
        ]

    return diff(MACHINE_KEYS), diff(SOFTWARE_KEYS)


def planned_keys(
    models: Sequence[str | None],
    backends: Sequence[str],
    precisions: Sequence[str],
    tiles: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
    device: str = "auto",
    num_classes: int = 2,
) -> list[tuple]:
    """The row keys :func:`run_bench` will produce for these arguments (without timing anything; a
    default tile is read from the model's metadata)."""
    _check_choices(backends, precisions)
    if not MIN_CLASSES <= num_classes <= MAX_CLASSES:
        raise InputError(f"--num-classes: {class_count_problem(num_classes)}")
    device = resolve_device(device)
    keys = []
    with work_dir("dakd-bench-") as tmp:
        for m in models:
            spec = ModelSpec.parse(m)
            meta = Workbench(spec, device, tmp, num_classes=num_classes).meta if not tiles else None
            pairs = tile_batches(meta, tiles, batches, device)
            keys += [(spec.label, b, p, t, n) for b in backends for p in precisions for t, n in pairs]
    return keys


def planned_device(backend: str, device: str) -> str:
    """The device a row of ``backend`` runs on when it runs (TensorRT: always the GPU)."""
    return "cuda" if backend == "tensorrt" else resolve_device(device)


def check_baseline_covers(
    baseline: dict[str, Any], keys: Sequence[tuple], source: str, device: str | None = None
) -> None:
    """Fail before a long benchmark when no ``ok`` baseline row has a key this run will produce
    (on the same device, when ``device`` is given and the baseline row records one)."""
    base = _ok_rows(baseline)

    def like(k: tuple) -> bool:
        b = base.get(k)
        if b is None:
            return False
        return device is None or b.get("device") is None or b["device"] == planned_device(k[1], device)

    if not any(like(k) for k in keys):
        raise InputError(
            f"no row of baseline {source} matches this run (model/backend/precision/tile/batch): "
            f"baseline has {_fmt_keys(list(base))}; this run measures {_fmt_keys(list(keys))}"
        )


def load_json(path: str | os.PathLike) -> dict[str, Any]:
    """A baseline results file, checked to have the shape :func:`compare` reads (one-line errors)."""
    try:
        doc = jsonin.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise InputError(f"baseline not found: {path}") from e
    except IsADirectoryError as e:
        raise InputError(f"baseline {path} is a directory, not a JSON file") from e
    except OSError as e:
        raise InputError(f"cannot read baseline {path}: {e.strerror or e}") from e
    except ValueError as e:  # not JSON, not UTF-8, nested too deeply (json's RecursionError)
        raise InputError(f"baseline is not valid JSON: {path}") from e
    problem = _baseline_problem(doc)
    if problem:
        raise InputError(f"baseline {path}: {problem} (expected the --json output of `dakd-edge bench`)")
    return doc


def _baseline_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return "has no 'results' list"
    fmt = doc.get("format", 1)  # format 1 wrote no "format" key
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        return f"format is {fmt!r}, expected a positive integer"
    if fmt > FORMAT:
        return f"is format {fmt}, from a newer dakd-edge (this one reads up to format {FORMAT})"
    if "environment" in doc and not isinstance(doc["environment"], dict | type(None)):
        return "environment is not an object"
    for i, r in enumerate(doc["results"]):
        if not isinstance(r, dict):
            return f"results[{i}] is not an object"
        for name, kind in _ROW_FIELDS:
            if name not in r:
                return f"results[{i}] has no {name!r}"
            if not isinstance(r[name], kind) or isinstance(r[name], bool):
                wanted = "an integer" if kind is int else "a string"
                return f"results[{i}].{name} is {r[name]!r}, expected {wanted}"
        for name in ("device", "model_sha256"):  # optional (older and hand-written baselines)
            if r.get(name) is not None and not isinstance(r[name], str):
                return f"results[{i}].{name} is {r[name]!r}, expected a string"
        # NaN (Python's json reads it) compares false with everything: the row would always pass
        bad = [m for m, _ in GATED if r["status"] == "ok" and not _is_number_or_null(r.get(m))]
        if bad:
            return f"results[{i}].{bad[0]} is {r[bad[0]]!r}, expected a finite number >= 0"
    return None


def _is_number_or_null(v: Any) -> bool:
    return v is None or (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    )
