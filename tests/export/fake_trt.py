"""A stand-in ``tensorrt`` module (8.4 to 11.x Python APIs) and ``cudart``, recording calls.

Only what :func:`~dakd_edge.export.tensorrt.build_engine` and
:class:`~dakd_edge.inference.backends.TensorRTBackend` touch. Members follow the versions that document
them: ``IBuilderConfig.builder_optimization_level`` from 8.6, the name-based execution API
(``set_input_shape``, ``get_tensor_shape``, ``set_tensor_address``, ``execute_async_v3``) from 8.5, and
below 10 the ONNX parser refuses a network created without the EXPLICIT_BATCH flag, below 8.6 a graph
with LayerNormalization. Setting an attribute a version lacks raises AttributeError, as pybind11 does.
"""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from dakd_edge.cuda import parse_version

CLASSES = 2  # output channels the fake engine reports


def fake_tensorrt(version: str) -> types.ModuleType:
    """A ``tensorrt`` module of ``version``; ``module.calls`` lists ``(name, *args)`` in call order."""
    v = parse_version(version)
    calls: list[tuple[Any, ...]] = []
    record = lambda *call: calls.append(call)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = calls
    trt.float16, trt.float32 = "float16", "float32"

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0

    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        INT8 = 1
        PREFER_PRECISION_CONSTRAINTS = 2
        TF32 = 3  # set by default on every IBuilderConfig (Ampere and newer then run fp32 as TF32)

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            pass

    class Network:
        num_layers = 0

        def __init__(self, flags: int) -> None:
            self.flags = flags

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            record("parse_from_file", path)
            explicit = self.network.flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
            if v < (10, 0) and not explicit:
                self.errors = ["the ONNX parser needs a network with an explicit batch dimension"]
            elif (
                v < (8, 6) and b"LayerNormalization" in Path(path).read_bytes()
            ):  # no importer: plugin lookup
                self.errors = ["In node 7 (importFallbackPluginImporter): UNSUPPORTED_NODE: Plugin not found"]
            return not self.errors

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    settable = {"int8_calibrator"} | ({"builder_optimization_level"} if v >= (8, 6) else set())

    class TimingCache:
        """A cache from this fake GPU holds b"" or b"cache"; any other bytes come from another device."""

        def __init__(self, data: bytes = b"") -> None:
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return b"cache"

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class IBuilderConfig:
        def __setattr__(self, name: str, value: Any) -> None:
            if name not in settable:
                raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}'")
            record(name, value)
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            record("set_memory_pool_limit", pool, size)

        def set_flag(self, flag: BuilderFlag) -> None:
            record("set_flag", flag)

        def clear_flag(self, flag: BuilderFlag) -> None:
            record("clear_flag", flag)

        def set_calibration_profile(self, profile: Profile) -> bool:
            record("set_calibration_profile", dict(profile.shapes))
            object.__setattr__(self, "calibration_profile", profile)
            return True

        def add_optimization_profile(self, profile: Any) -> int:
            record("add_optimization_profile")
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            ok = ignore_mismatch or cache.data in (b"", b"cache")  # another device's cache: refused
            record("set_timing_cache", cache.data, ok)
            if ok:
                object.__setattr__(self, "timing_cache", cache)
            return ok

        def get_timing_cache(self) -> TimingCache | None:
            return getattr(self, "timing_cache", None)

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

        def set_shape(self, name: str, lo: list[int], opt: list[int], hi: list[int]) -> None:
            record("set_shape", name, lo, opt, hi)
            self.shapes[name] = (list(lo), list(opt), list(hi))

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            record("create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: IBuilderConfig) -> bytes:
            record("build_serialized_network")
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None:  # TensorRT feeds the calibration profile's opt shape, whole batches
                profile = getattr(config, "calibration_profile", None)
                opt = profile.shapes["input"][1] if profile is not None else None
                batches = 0
                while calibrator.get_batch(["input"]) is not None:
                    batches += 1
                record("calibrate", calibrator.get_batch_size(), opt, batches)
            return b"engine " + version.encode()

    class Context:
        """8.5+: name-based I/O; older releases had only the binding-index API (not modelled)."""

        shape: tuple[int, ...] = ()

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            record("set_input_shape", name, tuple(shape))
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            n, _, h, w = self.shape
            return (n, CLASSES, h, w)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            record("set_tensor_address", name)
            return True

        def execute_async_v3(self, stream: int) -> bool:
            record("execute_async_v3", stream)
            return True

    if v < (8, 5):
        for name in ("set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"):
            delattr(Context, name)

    class Engine:
        def create_execution_context(self) -> Context:
            return Context()

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            record("deserialize_cuda_engine", bytes(data))
            return Engine() if bytes(data).startswith(b"engine") else None

    members = (NetworkDefinitionCreationFlag, BuilderFlag, MemoryPoolType, Logger, OnnxParser, Builder)
    for obj in (*members, Runtime, IInt8EntropyCalibrator2):
        setattr(trt, obj.__name__, obj)
    return trt


def fake_cudart() -> types.SimpleNamespace:
    """The cuda-python ``cudart`` calls the builder and runner make: one device, no real memory."""
    ok = lambda *args: (0,)
    mallocs: list[int] = []
    frees: list[int] = []
    return types.SimpleNamespace(
        cudaGetDeviceCount=lambda: (0, 1),
        cudaRuntimeGetVersion=lambda: (0, 11040),
        cudaGetDeviceProperties=lambda i: (0, types.SimpleNamespace(name=b"Fake Orin\0", major=8, minor=7)),
        cudaStreamCreate=lambda: (0, 7),
        cudaMalloc=lambda nbytes: (mallocs.append(nbytes), (0, 4096))[1],
        mallocs=mallocs,  # sizes asked of cudaMalloc, in order
        cudaFree=lambda ptr: (frees.append(ptr), (0,))[1],
        frees=frees,  # pointers given to cudaFree, in order
        cudaMemcpy=ok,
        cudaMemcpyAsync=ok,
        cudaStreamSynchronize=ok,
        cudaStreamDestroy=ok,
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
    )


def install(monkeypatch: pytest.MonkeyPatch, version: str) -> types.ModuleType:
    """Make ``import tensorrt`` give :func:`fake_tensorrt` and cuda-python a one-GPU :func:`fake_cudart`."""
    import dakd_edge.cuda
    import dakd_edge.inference.backends

    trt = fake_tensorrt(version)
    cudart = fake_cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.delitem(sys.modules, "tensorrt.plugin", raising=False)
    monkeypatch.setattr(dakd_edge.cuda, "import_cudart", lambda: cudart)
    monkeypatch.setattr(dakd_edge.inference.backends, "import_cudart", lambda: cudart)
    trt.cudart = cudart  # for tests: what the builder asked of CUDA
    return trt
