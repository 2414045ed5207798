"""ONNX -> TensorRT engine (FP32 / FP16 / INT8 with entropy calibration) plus a JSON sidecar.

Written against the TensorRT 10 Python API (``trt.Builder``, ``OnnxParser``, ``IBuilderConfig``,
optimization profiles, timing cache, ``IInt8EntropyCalibrator2``), and usable from TensorRT 8.5, the
release of JetPack 5.1 (Jetson Xavier / Orin; JetPack 6.0 has 8.6, 6.1+ has 10.3). Below 10 the network
needs the EXPLICIT_BATCH flag, below 8.6 there is no builder optimization level and no LayerNormalization
importer (:func:`choose_engine_opset` exports opset 16 there); 8.5 is the floor because the runner's
name-based tensor API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) starts there.
Engines are specific to the GPU and the TensorRT version that built them, so the sidecar records both
and :class:`~dakd_edge.inference.backends.TensorRTBackend` refuses a mismatch.

NOT RUN in development: no GPU or TensorRT was available; the code paths here are exercised only up to
the ``import tensorrt`` check by the CPU test suite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.atomic import Transaction, atomic_path, check_output, file_sha256, work_dir
from dakd_edge.cuda import parse_version, tensorrt_too_old
from dakd_edge.errors import BackendUnavailable, DakdError, DatasetError, ExportError, Notice
from dakd_edge.formats import ENGINE, INPUT_NAME, engine_sidecar
from dakd_edge.meta import ModelMeta

MAX_BATCH = 8  # default profile: up to this many tiles per call
# TensorRT versions (major, minor) where what the builder and runner use appears or changes.
OPT_LEVEL_TENSORRT = (8, 6)  # IBuilderConfig.builder_optimization_level
LAYERNORM_TENSORRT = (8, 6)  # the ONNX parser's LayerNormalization importer
EXPLICIT_ONLY_TENSORRT = (10, 0)  # networks are always explicit batch; the EXPLICIT_BATCH flag is ignored
TYPED_ONLY_TENSORRT = (11, 0)  # BuilderFlag.FP16/INT8/PREFER_PRECISION_CONSTRAINTS, int8_calibrator removed
TENSORRT8_MAX_OPSET = 17  # "TensorRT 8.5 supports operators up to Opset 17" (onnx-tensorrt, 8.6 too)
LAYERNORM_OPSET = 17  # first opset where the torch exporter writes LayerNorm as one LayerNormalization
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default builder optimization level
# Layers whose names contain these (ONNX node names carry the PyTorch module path) stay in fp32 under
# FP16/INT8: the chunked scan's exp/cumsum chain and the attention's normalisation/softmax.
FP32_LAYER_PATTERNS = ("mixer", "attn", "CumSum", "Exp", "Softmax", "ReduceL2")


@dataclass
class EngineConfig:
    """How to build an engine (the ``dakd-edge export --format engine`` defaults: the CLI reads them here).

    The optimization profile is :func:`default_profile` for the export shape and ``max_batch``;
    ``min_shape`` / ``opt_shape`` / ``max_shape``, when given, replace its entries.
    """

    precision: str = "fp16"
    min_shape: tuple[int, int, int, int] | None = None
    opt_shape: tuple[int, int, int, int] | None = None
    max_shape: tuple[int, int, int, int] | None = None
    max_batch: int = MAX_BATCH
    workspace_gib: float = 4.0
    timing_cache: str | None = None  # read if present, written after the build
    calib_dir: str | None = None  # folder of tiles (png/jpg/tif) for INT8
    calib_cache: str | None = None
    calib_batches: int = 16
    calib_batch_size: int = 4
    fp32_layers: tuple[str, ...] = FP32_LAYER_PATTERNS
    builder_optimization_level: int = DEFAULT_OPT_LEVEL  # applied on TensorRT >= 8.6 only

    def __post_init__(self) -> None:
        if self.precision not in ENGINE.precisions:
            raise ExportError(
                f"--precision must be one of {', '.join(ENGINE.precisions)}, got {self.precision!r}"
            )
        if self.precision == "int8" and not (self.calib_dir or self.calib_cache):
            raise ExportError(
                "--precision int8 needs --calib DIR (tiles for calibration) or a calibration cache"
            )


def default_profile(
    meta: ModelMeta, fixed: tuple[int, int, int, int] | None = None, max_batch: int = MAX_BATCH
) -> dict[str, list[int]]:
    """min/opt/max input shapes: the fixed shape, or 1 x 32 x 32 up to ``max_batch`` tiles of ``meta.tile``."""
    if fixed is not None:
        return {"min": list(fixed), "opt": list(fixed), "max": list(fixed)}
    c, t = meta.in_chans, meta.tile
    return {"min": [1, c, 32, 32], "opt": [max_batch, c, t, t], "max": [max_batch, c, t, t]}


@dataclass
class EngineReport:
    path: str
    precision: str
    ops: str
    profile: dict[str, list[int]]
    tensorrt_version: str
    seconds: float
    parity: list[Any] = field(default_factory=list)
    sha256: str | None = None  # of the written engine
    size_bytes: int | None = None
    onnx_sha256: str | None = None  # of the ONNX graph it was built from (its sidecar has it too)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parity"] = [p.to_dict() for p in self.parity]
        return d


def check_precision(precision: str, version: str) -> None:
    """Refuse fp16/int8 on TensorRT 11, which removed the builder flags and calibrator they are built with
    (strongly typed networks only; "Removed Python APIs" of its migration guide)."""
    if precision != "fp32" and parse_version(version) >= TYPED_ONLY_TENSORRT:
        raise BackendUnavailable(
            f"--precision {precision}: TensorRT {version} removed the FP16/INT8 builder flags this builder "
            "uses; install TensorRT 10 (pip install 'tensorrt>=10.8,<11') or use --precision fp32"
        )


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): a TensorRT >= 8.5 importable and a CUDA device visible to it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        from dakd_edge.extras import install_hint

        return False, f"TensorRT is not installed ({e}): {install_hint('trt')}, on a CUDA machine"
    too_old = tensorrt_too_old(trt.__version__)
    if too_old:
        return False, too_old
    try:
        from dakd_edge.cuda import cuda_call, import_cudart

        count = cuda_call(import_cudart().cudaGetDeviceCount())
    except BackendUnavailable as e:
        return False, f"TensorRT {trt.__version__} found but no usable CUDA device: {e}"
    if not count:
        return False, f"TensorRT {trt.__version__} found but no CUDA device is visible"
    return True, f"TensorRT {trt.__version__}"


def choose_engine_opset(requested: int | None, version: str | None = None) -> tuple[int, str | None]:
    """The ONNX opset to export for an engine built by TensorRT ``version`` (default: the installed one);
    returns ``(opset, note)``, ``note`` saying why a default was changed.

    ``requested=None`` picks the default: 16 on TensorRT 8.5 (no LayerNormalization importer before 8.6,
    and from opset 17 LayerNorm is that one node), else 17. An explicit opset that TensorRT 8.x cannot
    parse is an :class:`ExportError` naming the ``--opset`` to use; TensorRT >= 9 is not limited here.
    """
    from dakd_edge.export.onnx import DEFAULT_OPSET

    if version is None:
        import tensorrt as trt

        version = trt.__version__
    v = parse_version(version)
    if v < LAYERNORM_TENSORRT:
        if requested is None:
            note = (
                f"TensorRT {version} has no LayerNormalization importer (added in 8.6): exporting ONNX "
                f"opset {LAYERNORM_OPSET - 1}, which writes LayerNorm as basic ops"
            )
            return LAYERNORM_OPSET - 1, note
        if requested >= LAYERNORM_OPSET:
            raise ExportError(
                f"--opset {requested}: TensorRT {version} cannot parse LayerNormalization (opset >= "
                f"{LAYERNORM_OPSET}; TensorRT >= 8.6 can): use --opset {LAYERNORM_OPSET - 1}"
            )
    elif v[0] == 8 and requested is not None and requested > TENSORRT8_MAX_OPSET:
        raise ExportError(
            f"--opset {requested}: TensorRT {version} parses ONNX opsets up to {TENSORRT8_MAX_OPSET}: "
            f"use --opset {TENSORRT8_MAX_OPSET}"
        )
    return (DEFAULT_OPSET if requested is None else requested), None


def network_flags(trt: Any) -> int:
    """``create_network`` flags: EXPLICIT_BATCH below TensorRT 10, whose ONNX parser refuses the
    implicit-batch network that flags 0 give there; 0 from 10, where explicit batch is the only mode and
    the flag is deprecated."""
    if parse_version(trt.__version__) >= EXPLICIT_ONLY_TENSORRT:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def write_engine(out: Path, serialized: bytes, info: dict[str, Any], overwrite: bool = False) -> None:
    """Write an engine and its JSON sidecar as one transaction: both are written in full before either
    is renamed, so an interrupt or a full disk never pairs a new engine with an old sidecar. A sidecar
    without its engine is an orphan and is replaced without ``overwrite``."""
    with Transaction({"engine": out, "sidecar": engine_sidecar(out)}, overwrite or not out.exists()) as tx:
        tx.temp("engine").write_bytes(serialized)
        tx.temp("sidecar").write_text(json.dumps(info, indent=2, sort_keys=True))
        tx.commit()


def save_timing_cache(path: str | Path, data: Callable[[], bytes], engine: Path) -> None:
    """Save the builder's timing cache; a failure is a :class:`Notice`, not an error: the engine is
    complete, and a missing cache only costs the next build its timing runs."""
    try:
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_bytes(data())
    except (DakdError, OSError) as e:
        warnings.warn(
            Notice(f"timing cache {path} not saved ({e}); the engine {engine} is complete"), stacklevel=2
        )


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    meta: ModelMeta,
    cfg: EngineConfig,
    ops: str = "standard",
    shape: tuple[int, int, int, int] | None = None,
    overwrite: bool = False,
) -> EngineReport:
    """Parse ``onnx_path``, build an engine and write it atomically with ``<out>.json``."""
    check_output(out, overwrite)
    ok, reason = tensorrt_status()
    if not ok:
        raise BackendUnavailable(reason)
    import tensorrt as trt

    check_precision(cfg.precision, trt.__version__)
    from dakd_edge.cuda import cuda_runtime_version, gpu_identity, import_cudart

    t0 = time.perf_counter()
    version = trt.__version__
    logger = trt.Logger(trt.Logger.WARNING)
    if ops == "plugin":
        from dakd_edge.export.plugins import register_plugins

        register_plugins()
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        hint = " (plugin nodes need TensorRT >= 10.8 with the dakd_edge plugins)" if ops == "plugin" else ""
        # the parser's error may name only the plugin fallback; op types are plain text in the file
        layernorm = b"LayerNormalization" in Path(onnx_path).read_bytes()
        if parse_version(version) < LAYERNORM_TENSORRT and layernorm:
            hint = f" (TensorRT {version} needs the ONNX export at --opset {LAYERNORM_OPSET - 1})"
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}{hint}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gib * (1 << 30)))
    if parse_version(version) >= OPT_LEVEL_TENSORRT:
        config.builder_optimization_level = cfg.builder_optimization_level
    elif cfg.builder_optimization_level != DEFAULT_OPT_LEVEL:
        warnings.warn(
            Notice(
                f"TensorRT {version} has no builder optimization level (added in 8.6): level "
                f"{cfg.builder_optimization_level} not applied, TensorRT's default used"
            ),
            stacklevel=2,
        )
    prof = default_profile(meta, shape, cfg.max_batch)
    for key, val in (("min", cfg.min_shape), ("opt", cfg.opt_shape), ("max", cfg.max_shape)):
        if val is not None:
            prof[key] = list(val)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, prof["min"], prof["opt"], prof["max"])
    config.add_optimization_profile(profile)

    if cfg.precision == "fp32":
        # TF32 is on by default: fp32 conv/matmul would round inputs to 10 mantissa bits on Ampere and
        # newer (Orin, A100, H100), ~5e-4 relative error, and fail the fp32 parity bar of 1e-4.
        tf32 = getattr(trt.BuilderFlag, "TF32", None)
        if tf32 is not None:
            config.clear_flag(tf32)
    if cfg.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_fp32(network, trt, cfg.fp32_layers)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    calibrator = None
    if cfg.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        # TensorRT calibrates at the calibration profile's opt shape, so that profile is exactly the
        # calibrator's batch shape (the inference profile's opt batch is --max-batch, not the calibrator's).
        calib_shape = calibration_shape(prof, shape, cfg.calib_batch_size)
        calibrator = make_calibrator(meta, cfg, calib_shape)
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(INPUT_NAME, calib_shape, calib_shape, calib_shape)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(calib_profile)

    timing_cache = _set_timing_cache(config, cfg.timing_cache)

    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:  # the build was the calibrator's only user
            calibrator.free()
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    cudart = import_cudart()
    gpu_name, capability = gpu_identity(cudart)
    info = {
        "format": "dakd-edge-engine",
        ENGINE.meta_key: meta.to_dict(),
        "tensorrt_version": version,
        "cuda_version": cuda_runtime_version(cudart),
        "gpu": gpu_name,
        "compute_capability": capability,
        "precision": cfg.precision,
        ENGINE.ops_key: ops,
        "profile": prof,
        "onnx_sha256": hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest(),
        "host": platform.node(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(out)
    write_engine(out, bytes(serialized), info, overwrite)
    if cfg.timing_cache:
        save_timing_cache(cfg.timing_cache, lambda: bytes(timing_cache.serialize()), out)
    return EngineReport(
        path=str(out),
        precision=cfg.precision,
        ops=ops,
        profile=prof,
        tensorrt_version=version,
        seconds=time.perf_counter() - t0,
    )


def _set_timing_cache(config: Any, path: str | None) -> Any:
    """Give the builder the timing cache at ``path`` (if any) and return the cache it uses.

    A cache made on another GPU or TensorRT version (CI caches shared between runners) is refused by
    ``set_timing_cache``; the build then starts from an empty cache, with a :class:`Notice`, and the
    file is replaced by this build's cache."""
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # TensorRT raises on a blob it cannot read at all
        cache = None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    warnings.warn(
        Notice(f"timing cache {path} does not fit this GPU/TensorRT; building without it (it is replaced)"),
        stacklevel=3,
    )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _keep_fp32(network: Any, trt: Any, patterns: tuple[str, ...]) -> int:
    """Pin numerically sensitive layers (scan, attention normalisation) to fp32; returns how many."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(p in layer.name for p in patterns):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float16, trt.float32):
                    layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def calibration_shape(
    profile: dict[str, list[int]], fixed: tuple[int, int, int, int] | None, batch: int
) -> list[int]:
    """The INT8 calibration input: ``batch`` tiles of the profile's opt H x W (a fixed export shape is
    used as it is: its batch is static in the graph)."""
    if fixed is not None:
        return list(fixed)
    return [int(batch), *profile["opt"][1:]]


def check_calibration(cfg: EngineConfig) -> None:
    """Refuse INT8 calibration inputs that cannot give TensorRT one batch, before any work is done."""
    if cfg.precision != "int8":
        return
    if cfg.calib_dir:
        if not Path(cfg.calib_dir).is_dir():
            raise DatasetError(f"calibration folder not found: {cfg.calib_dir}")
    elif not (cfg.calib_cache and Path(cfg.calib_cache).is_file()):
        raise DatasetError(
            f"calibration cache {cfg.calib_cache} does not exist: pass --calib DIR (tiles) to create it"
        )


def calibration_tiles(
    folder: str | Path, meta: ModelMeta, size: tuple[int, int], limit: int
) -> list[np.ndarray]:
    """Normalised ``(C, H, W)`` tiles from the images in ``folder`` (centre crop / reflect pad)."""
    from dakd_edge.export.parity import image_input

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"calibration folder not found: {root}")
    files = sorted(
        p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")
    )
    if not files:
        raise DatasetError(f"no images (.png/.jpg/.tif) in calibration folder {root}")
    shape = (1, meta.in_chans, size[0], size[1])
    return [image_input(f, meta, shape)[0] for f in files[:limit]]


def make_calibrator(meta: ModelMeta, cfg: EngineConfig, shape: list[int]) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding batches of exactly ``shape`` (the calibration profile's),
    with a read/write cache file."""
    import tensorrt as trt

    from dakd_edge.cuda import cuda_call, import_cudart

    check_calibration(cfg)
    cudart = import_cudart()
    bs, h, w = shape[0], shape[2], shape[3]
    tiles = calibration_tiles(cfg.calib_dir, meta, (h, w), cfg.calib_batches * bs) if cfg.calib_dir else []
    if cfg.calib_dir and len(tiles) < bs:
        raise DatasetError(
            f"INT8 calibration needs at least {bs} images (one batch) in {cfg.calib_dir}, found {len(tiles)}"
        )

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.nbytes = bs * meta.in_chans * h * w * 4
            self.device = cuda_call(cudart.cudaMalloc(self.nbytes)) if tiles else 0

        def get_batch_size(self) -> int:
            return bs

        def free(self) -> None:
            """Release the device batch buffer (it was never freed: once per INT8 build)."""
            if self.device:
                cuda_call(cudart.cudaFree(self.device))
                self.device = 0

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + bs > len(tiles):
                return None
            batch = np.ascontiguousarray(np.stack(tiles[self.index : self.index + bs]), dtype=np.float32)
            self.index += bs
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            cuda_call(cudart.cudaMemcpy(self.device, batch.ctypes.data, batch.nbytes, kind))
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            if cfg.calib_cache and Path(cfg.calib_cache).is_file():
                return Path(cfg.calib_cache).read_bytes()
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            if cfg.calib_cache:
                with atomic_path(cfg.calib_cache, overwrite=True) as tmp:
                    tmp.write_bytes(bytes(cache))

    return EntropyCalibrator()


# ONNX ops TensorRT 10's parser imports natively (onnx-tensorrt docs/operators.md, the subset an export of
# these models can plausibly emit plus common neighbours). Anything else fails the pre-build check
# below instead of deep inside the parser on the target machine.
TENSORRT_ONNX_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization HardSigmoid HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LRN MatMul Max MaxPool
    Mean Min Mish Mod Mul Neg Not OneHot Or Pad Pow PRelu QuantizeLinear Range Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize Round ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh
    Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Where Xor
    """.split()
)
# Ops of TENSORRT_ONNX_OPS whose importer came after TensorRT 8.5, by the release that added it
# (onnx-tensorrt docs/Changelog.md: 8.6 EA added GroupNormalization, LayerNormalization and IsInf, 9.2
# Hardmax; Gelu (opset 20) and Mish (opset 18) are in no 8.x or 9.x docs/operators.md: taken as 10.0).
ONNX_OPS_SINCE: dict[str, tuple[int, int]] = {
    "LayerNormalization": (8, 6),
    "GroupNormalization": (8, 6),
    "IsInf": (8, 6),
    "Hardmax": (9, 2),
    "Gelu": (10, 0),
    "Mish": (10, 0),
}
# (op, input index) the parser needs as a constant before the release that accepts a tensor there
# (8.x operators.md: Slice/Squeeze "axes must be an initializer", Unsqueeze "a constant tensor", TopK "K";
# the Changelog: dynamic K in 8.6, tensor Slice axes in 10.3, dynamic Squeeze/Unsqueeze axes in 10.7).
CONSTANT_INPUT_UNTIL: dict[tuple[str, int], tuple[int, int]] = {
    ("TopK", 1): (8, 6),
    ("Slice", 3): (10, 3),
    ("Squeeze", 1): (10, 7),
    ("Unsqueeze", 1): (10, 7),
}


def tensorrt_onnx_ops(version: str | None = None) -> frozenset[str]:
    """:data:`TENSORRT_ONNX_OPS` less the ops TensorRT ``version`` has no importer for (None: newest)."""
    if version is None:
        return TENSORRT_ONNX_OPS
    v = parse_version(version)
    return TENSORRT_ONNX_OPS - {op for op, since in ONNX_OPS_SINCE.items() if v < since}


def tensorrt_graph_problems(proto: Any, allow_plugins: bool = False, version: str | None = None) -> list[str]:
    """Reasons TensorRT's ONNX parser would reject ``proto`` (empty list: none found).

    Checks op types against :func:`tensorrt_onnx_ops`, that every CumSum axis is a constant, that no
    Einsum uses an ellipsis, and that custom-domain nodes are the ``dakd_edge`` plugins (when allowed).
    With a TensorRT ``version`` (None: the newest, TensorRT 10), also the opset (8.x parses up to 17) and
    the inputs that version needs as constants (:data:`CONSTANT_INPUT_UNTIL`).
    """
    constants = {init.name for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
    v = parse_version(version) if version is not None else None
    known = tensorrt_onnx_ops(version)
    problems = []
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if v is not None and v[0] == 8 and opset is not None and opset > TENSORRT8_MAX_OPSET:
        problems.append(f"ONNX opset {opset}: TensorRT {version} parses opsets up to {TENSORRT8_MAX_OPSET}")
    for node in proto.graph.node:
        where = f"{node.op_type} node {node.name or '?'}"
        if node.domain not in ("", "ai.onnx"):
            if not (allow_plugins and node.domain == "dakd_edge"):
                problems.append(f"{where}: custom domain {node.domain!r}")
            continue
        if node.op_type not in TENSORRT_ONNX_OPS:
            problems.append(f"{where}: op not supported by TensorRT's ONNX parser")
        elif node.op_type not in known:
            since = ".".join(map(str, ONNX_OPS_SINCE[node.op_type]))
            layernorm = node.op_type == "LayerNormalization"
            hint = f"; export with --opset {LAYERNORM_OPSET - 1}" if layernorm else ""
            problems.append(f"{where}: no importer in TensorRT {version} (needs >= {since}){hint}")
        for (op, index), until in CONSTANT_INPUT_UNTIL.items():
            name = node.input[index] if node.op_type == op and len(node.input) > index else ""
            if v is not None and v < until and name and name not in constants:
                problems.append(f"{where}: input {index} must be a constant on TensorRT {version}")
        if node.op_type == "CumSum" and (len(node.input) < 2 or node.input[1] not in constants):
            problems.append(f"{where}: CumSum axis is not a constant")
        if node.op_type == "Einsum":
            eq = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
            if "..." in eq:
                problems.append(f"{where}: Einsum with an ellipsis ({eq})")
    return problems


def check_engine_parity(
    model: Any, meta: ModelMeta, engine: str | Path, precision: str, profile: dict[str, list[int]]
) -> list[Any]:
    """The engine (via the TensorRT backend) vs PyTorch fp32 at the profile's opt H x W and its smallest
    batch (1 for dynamic engines; a fixed ``--shape`` engine takes only its own batch)."""
    from dakd_edge.export import parity
    from dakd_edge.inference import backends

    tol = parity.TOLERANCES[precision]
    backend = backends.TensorRTBackend(engine)
    try:
        n, h, w = max(1, int(profile["min"][0])), profile["opt"][2], profile["opt"][3]
        x = parity.deterministic_input((n, meta.in_chans, h, w), seed=0)
        return [parity.compare(parity.torch_logits(model, x), backend.predict(x), tol)]
    finally:
        backend.close()


def export_engine(
    model: Any,
    meta: ModelMeta,
    out: str | Path,
    engine_cfg: EngineConfig,
    onnx_cfg: Any,
    overwrite: bool = False,
    keep_onnx: str | Path | None = None,
) -> EngineReport:
    """PyTorch -> ONNX (with its fp32 parity gate) -> engine -> engine parity; no output on failure.

    The engine is built and parity-checked in a temporary folder; ``out`` and its sidecar are written
    (together) only after the parity passed, so a failure leaves an existing ``out`` as it was.

    The default opset becomes the one the installed TensorRT parses (16 on 8.5, with a :class:`Notice`);
    an explicit one it cannot parse is refused (:func:`choose_engine_opset`).
    """
    import onnx

    from dakd_edge.export.onnx import export_onnx, meta_for_shape

    t_start = time.perf_counter()
    check_output(out, overwrite)
    ok, reason = tensorrt_status()
    if not ok:
        raise BackendUnavailable(reason)
    import tensorrt as trt

    from dakd_edge.export.onnx import DEFAULT_OPSET

    version = trt.__version__
    check_precision(engine_cfg.precision, version)
    check_calibration(engine_cfg)  # before minutes of export: no images / cache is a one-line error
    # The default opset is the one for this TensorRT (16 on 8.5); an explicit other one must parse.
    opset, note = choose_engine_opset(None if onnx_cfg.opset == DEFAULT_OPSET else onnx_cfg.opset, version)
    if opset != onnx_cfg.opset:
        warnings.warn(Notice(note or f"exporting ONNX opset {opset}"), stacklevel=2)
        onnx_cfg = dataclasses.replace(onnx_cfg, opset=opset)
    # registered, so an interrupt ended by the signal watchdog (TensorRT's builder holds the GIL in C
    # for minutes) removes it too: a SIGTERM mid-build left its ONNX (10 MB) behind on every run
    with work_dir("dakd-export-") as tmpdir:
        onnx_path = Path(keep_onnx) if keep_onnx else Path(tmpdir) / "model.onnx"
        onnx_report = export_onnx(model, meta, onnx_path, onnx_cfg, overwrite=overwrite)
        problems = tensorrt_graph_problems(
            onnx.load(str(onnx_path)), allow_plugins=onnx_cfg.ops == "plugin", version=version
        )
        if problems:
            raise ExportError("graph is not TensorRT-parsable: " + "; ".join(problems[:5]))
        built = Path(tmpdir) / f"model{ENGINE.suffixes[0]}"
        stored = meta_for_shape(meta, onnx_cfg.shape)[0]  # export_onnx gave the note
        report = build_engine(
            onnx_path, built, stored, engine_cfg, onnx_cfg.ops, onnx_cfg.shape, overwrite=True
        )
        results = check_engine_parity(model, meta, built, engine_cfg.precision, report.profile)
        failed = [r for r in results if not r.passed]
        if failed:
            raise ExportError("engine parity failed: " + "; ".join(r.line() for r in failed))
        info = json.loads(engine_sidecar(built).read_text())
        write_engine(Path(out), built.read_bytes(), info, overwrite)
    report.path = str(out)
    report.parity = onnx_report.parity + results
    report.sha256, report.size_bytes = file_sha256(out), Path(out).stat().st_size
    report.onnx_sha256 = info.get("onnx_sha256")
    report.seconds = time.perf_counter() - t_start  # the whole export, not the build alone
    return report
