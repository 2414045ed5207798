"""Runtimes behind one interface: PyTorch checkpoints, ONNX Runtime, TensorRT engines.

:func:`open_backend` picks the backend from the file suffix (:mod:`dakd_edge.formats`); the user-facing
:class:`~dakd_edge.inference.predictor.Predictor` around it comes from :func:`dakd_edge.inference.load`.
This module imports neither torch nor onnx at module level: the ONNX Runtime and TensorRT backends run on an edge box installed with
``pip install -c constraints.txt -e ".[runtime]"`` (numpy, onnxruntime, rasterio, click); only
:class:`TorchBackend` imports torch, lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.cuda import (
    cuda_call,
    cuda_runtime_version,
    device_index,
    gpu_identity,
    import_cudart,
    resolve_device,
)
from dakd_edge.errors import BackendUnavailable, InputError, ModelFileError
from dakd_edge.extras import unavailable
from dakd_edge.formats import (
    ENGINE,
    INPUT_NAME,
    ONNX,
    OUTPUT_NAME,
    SAFETENSORS,
    backend_for,
    engine_sidecar,
    format_of,
)
from dakd_edge.inference.base import Backend
from dakd_edge.meta import ModelMeta

_PLUGIN_ONNX = (
    "{path} was exported with --ops plugin (dakd_edge nodes for TensorRT plugins); ONNX Runtime needs "
    "`dakd-edge export ... --ops standard`"
)


def _check_batch(batch: np.ndarray, meta: ModelMeta) -> np.ndarray:
    x = np.asarray(batch)
    if x.ndim != 4 or x.shape[1] != meta.in_chans:
        raise InputError(f"expected a (N, {meta.in_chans}, H, W) batch, got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _precheck_checkpoint(p: Path) -> None:
    """Corrupt safetensors metadata fails at once, not after seconds of ``import torch``."""
    # A missing file: reported by the loader as before.
    if format_of(p) is SAFETENSORS and p.is_file():
        from dakd_edge.models.checkpoint import read_meta

        read_meta(p)


class TorchBackend(Backend):
    """A PyTorch checkpoint (``.safetensors`` / ``.pt``) or an in-memory model.

    ``kernels`` selects the hot-op implementation (``"auto"``: Triton on CUDA, reference on CPU).
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path | None = None,
        device: str = "cpu",
        kernels: str = "auto",
        model: Any = None,
        meta: ModelMeta | None = None,
        amp: bool = False,
    ) -> None:
        if model is None and path is not None:
            _precheck_checkpoint(Path(path))
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable(
                f"the torch backend needs PyTorch: {unavailable('torch', 'torch')}; "
                "use an .onnx file with onnxruntime for a torch-free runtime"
            ) from e
        if model is None:
            if path is None:
                raise ModelFileError("TorchBackend needs a checkpoint path or a model")
            from dakd_edge.models.checkpoint import load_model_file

            model, meta = load_model_file(path, map_location="cpu")
        if meta is None:
            raise ModelFileError("TorchBackend(model=...) also needs its ModelMeta")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} requested but CUDA is not available")
        self._torch = torch
        self.model = model.eval().to(device)
        self.meta = meta
        self.device = device
        from dakd_edge.kernels.dispatch import MODES

        if kernels not in MODES:  # said at load, not on the first predict
            raise InputError(f"kernels={kernels!r}: choose one of {', '.join(MODES)}")
        self.kernels = kernels
        self.amp = amp and device.startswith("cuda")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise BackendUnavailable("this PyTorch backend was closed; load the model again")
        torch = self._torch
        from dakd_edge.kernels import use_kernels

        x = torch.from_numpy(_check_batch(batch, self.meta)).to(self.device)
        with torch.inference_mode(), use_kernels(self.kernels):
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                y = self.model(x)
        return y.float().cpu().numpy()

    def close(self) -> None:
        """Drop the model (its weights: 10 MB to GBs, on the GPU too); ``predict`` then raises. A closed
        torch predictor kept its weights for as long as the object lived."""
        self.model = None
        if str(self.device).startswith("cuda"):
            self._torch.cuda.empty_cache()


class OnnxRuntimeBackend(Backend):
    """An ONNX file exported with ``--ops standard`` on ONNX Runtime (CPU, or CUDA when available).

    Metadata (classes, normalisation, tile) comes from the file itself. Fixed-shape exports get
    smaller tiles padded (reflect) and cropped back, and batches split to the exported batch size.

    ``threads``: intra-op threads (default: ONNX Runtime's, the physical cores). ``spin``: let idle
    pool threads busy-wait between operators. Off by default: the graph has ~2000 small nodes, and on
    a CPU shared with anything else (GDAL, other jobs) spinning threads burn the time the working
    ones need: on a 2-core machine with one core busy, 2 threads took 0.53-0.60 s per 512^2 tile with
    spinning and 0.36-0.37 s without (one thread: 0.34-0.35 s).
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        providers: list[str] | None = None,
        threads: int | None = None,
        spin: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(unavailable("onnxruntime", "runtime")) from e
        p = Path(path)
        if not p.is_file():
            raise ModelFileError(f"ONNX file not found: {p}")
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if device.startswith("cuda"):
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise BackendUnavailable(
                        "device 'cuda' requested but this onnxruntime has no CUDAExecutionProvider "
                        "(install onnxruntime-gpu)"
                    )
                # the GPU asked for: without device_id ONNX Runtime ran cuda:1 on GPU 0, silently
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_index(device)}))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(p), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            if "dakd_edge:" in str(e):
                raise ModelFileError(_PLUGIN_ONNX.format(path=p)) from e
            raise ModelFileError(f"cannot load {p} with onnxruntime: {' '.join(str(e).split())}") from e
        self.meta = _onnx_meta(self.session.get_modelmeta().custom_metadata_map, p)
        on_gpu = self.session.get_providers()[0] == "CUDAExecutionProvider"  # in use, not asked for
        self.device = (device if device.startswith("cuda") else "cuda") if on_gpu else "cpu"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed = tuple(d if isinstance(d, int) else None for d in inp.shape)
        out_shape = self.session.get_outputs()[0].shape
        k = out_shape[1] if len(out_shape) == 4 else None
        if isinstance(k, int) and k != self.meta.num_classes:  # else the first tile failed, deep inside
            raise ModelFileError(
                f"{p}: the graph outputs {k} classes but its metadata says {self.meta.num_classes}"
            )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise BackendUnavailable("this ONNX Runtime backend was closed; load the model again")
        x = _check_batch(batch, self.meta)
        n_fixed, _, h_fixed, w_fixed = self.fixed
        n, _, h, w = x.shape
        if (h_fixed and h > h_fixed) or (w_fixed and w > w_fixed):
            raise InputError(f"tile {h}x{w} exceeds the exported fixed shape {h_fixed}x{w_fixed}")
        ph, pw = (h_fixed - h if h_fixed else 0), (w_fixed - w if w_fixed else 0)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")
        step = n_fixed or n
        outs = []
        for i in range(0, n, step):
            part = x[i : i + step]
            short = step - part.shape[0]
            if short:
                part = np.concatenate([part, np.zeros((short, *part.shape[1:]), np.float32)])
            y = self.session.run(None, {self.input_name: part})[0]
            outs.append(y[: step - short])
        return np.concatenate(outs)[:, :, :h, :w].astype(np.float32, copy=False)

    def close(self) -> None:
        """Drop the session (its weights and thread pool); ``predict`` then raises."""
        self.session = None


def _onnx_meta(props: dict[str, str], p: Path) -> ModelMeta:
    """The dakd-edge metadata among an ONNX file's properties (validated: files come from anywhere)."""
    if ONNX.meta_key not in props:
        raise ModelFileError(f"{p} has no dakd-edge metadata; export it with `dakd-edge export`")
    if props.get(ONNX.ops_key, "standard") != "standard":
        raise ModelFileError(_PLUGIN_ONNX.format(path=p))
    return ModelMeta.from_json(props[ONNX.meta_key], source=p)


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """Metadata of an ONNX file through ONNX Runtime (no ``onnx`` package: works torch-free)."""
    backend = OnnxRuntimeBackend(path)
    backend.close()
    return backend.meta


def read_engine_sidecar(engine: str | Path) -> dict[str, Any]:
    """The JSON written next to an engine by :mod:`dakd_edge.export.tensorrt` (``<engine>.json``).

    Checked to be an object whose ``meta`` is valid model metadata, so callers can index it safely.
    """
    side = engine_sidecar(engine)
    if not side.is_file():
        raise ModelFileError(
            f"engine metadata {side} is missing; rebuild with `dakd-edge export --format engine`"
        )
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError, unreadable
        raise ModelFileError(f"engine metadata {side} is not valid JSON: {e}") from e
    if not isinstance(info, dict) or ENGINE.meta_key not in info:
        raise ModelFileError(f"engine metadata {side} is not an object with a {ENGINE.meta_key!r} field")
    ModelMeta.from_dict(info[ENGINE.meta_key], source=side)
    return info


def check_engine_compat(
    info: dict[str, Any],
    trt_version: str,
    cuda_version: str | None,
    gpu: tuple[str | None, str | None] = (None, None),
) -> None:
    """Refuse engines built by another TensorRT (or CUDA major) version, or for a GPU of another compute
    capability (``gpu``: this machine's (name, capability)): engines are not portable, and TensorRT's
    own refusal names neither GPU."""
    built = info.get("tensorrt_version")
    if built != trt_version:
        raise ModelFileError(
            f"engine was built with TensorRT {built} but this machine has TensorRT {trt_version}; "
            "engines are not portable: rebuild it here with `dakd-edge export MODEL --format engine`"
        )
    built_cuda = info.get("cuda_version")
    if built_cuda and cuda_version and built_cuda.split(".")[0] != cuda_version.split(".")[0]:
        raise ModelFileError(
            f"engine was built for CUDA {built_cuda} but this machine runs CUDA {cuda_version}; rebuild it here"
        )
    built_cc, (name, cc) = info.get("compute_capability"), gpu
    if built_cc and cc and str(built_cc) != cc:
        raise ModelFileError(
            f"engine was built for {info.get('gpu') or 'a GPU'} (compute capability {built_cc}) but this "
            f"machine's GPU is {name or 'another'} ({cc}); engines are not portable: rebuild it here with "
            "`dakd-edge export MODEL --format engine`"
        )


class TensorRTBackend(Backend):
    """A serialized TensorRT engine plus its JSON sidecar (metadata, versions, shape profile).

    Device memory and the stream come from ``cuda-python`` (no torch). Inputs outside the profile's
    min/max sizes are padded (smaller) or refused (larger); batches are split to the profile's max
    batch and the last one padded to its min (a fixed-batch engine).
    Needs TensorRT >= 8.5 (JetPack >= 5.1): the name-based tensor API used here starts there.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda") -> None:
        p = Path(path)
        if not p.is_file():
            raise ModelFileError(f"engine file not found: {p}")
        info = read_engine_sidecar(p)
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendUnavailable(unavailable("tensorrt", "trt")) from e
        from dakd_edge.cuda import check_tensorrt_version

        check_tensorrt_version(trt.__version__)
        self._cudart = import_cudart()
        check_engine_compat(
            info, trt.__version__, cuda_runtime_version(self._cudart), gpu_identity(self._cudart)
        )
        if info.get(ENGINE.ops_key) == "plugin":
            from dakd_edge.export.plugins import register_plugins

            register_plugins()
        self.meta = ModelMeta.from_dict(info[ENGINE.meta_key], source=engine_sidecar(p))
        self.device = device
        self.info = info
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(p.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"TensorRT could not deserialize {p} (corrupt, or built for another GPU)")
        self.context = self.engine.create_execution_context()
        self.profile = info.get("profile", {})
        self._stream = cuda_call(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cuda_call(self._cudart.cudaFree(ptr))
            ptr = cuda_call(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _run(self, x: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        kind = cudart.cudaMemcpyKind
        if self.context.set_input_shape(INPUT_NAME, x.shape) is False:
            raise InputError(
                f"input {tuple(x.shape)} is outside the engine's shape profile "
                f"(min {self.profile.get('min')}, max {self.profile.get('max')}); rebuild it with --shape"
            )
        out_shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
        out = np.empty(out_shape, dtype=np.float32)
        d_in = self._device_buffer(INPUT_NAME, x.nbytes)
        d_out = self._device_buffer(OUTPUT_NAME, out.nbytes)
        self.context.set_tensor_address(INPUT_NAME, d_in)
        self.context.set_tensor_address(OUTPUT_NAME, d_out)
        cuda_call(
            cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, kind.cudaMemcpyHostToDevice, self._stream)
        )
        if not self.context.execute_async_v3(self._stream):
            raise ModelFileError("TensorRT execution failed (see the TensorRT log above)")
        cuda_call(
            cudart.cudaMemcpyAsync(
                out.ctypes.data, d_out, out.nbytes, kind.cudaMemcpyDeviceToHost, self._stream
            )
        )
        cuda_call(cudart.cudaStreamSynchronize(self._stream))
        return out

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = _check_batch(batch, self.meta)
        n, _, h, w = x.shape
        lo = self.profile.get("min", [1, self.meta.in_chans, 1, 1])
        hi = self.profile.get("max", [n, self.meta.in_chans, h, w])
        if h > hi[2] or w > hi[3]:
            raise InputError(
                f"tile {h}x{w} exceeds the engine's max shape {hi[2]}x{hi[3]}; rebuild with --shape"
            )
        ph, pw = max(0, lo[2] - h), max(0, lo[3] - w)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        step, least = max(1, int(hi[0])), max(1, int(lo[0]))
        outs = []
        for i in range(0, n, step):
            part = x[i : i + step]
            k = len(part)
            if k < least:  # a fixed-batch engine (--shape N x ...): the last tiles padded with zeros
                part = np.concatenate([part, np.zeros((least - k, *part.shape[1:]), part.dtype)])
            outs.append(self._run(np.ascontiguousarray(part))[:k])
        return np.concatenate(outs)[:, :, :h, :w]

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None


# What to run a file of another format with, per backend (a checkpoint given to ONNX Runtime failed with
# "Protobuf parsing failed"; to TensorRT, with a missing engine side-car).
_NEEDS = {
    "torch": "a PyTorch checkpoint (.safetensors/.pt); run this file with --backend auto",
    "onnxruntime": "an .onnx file; export one with `dakd-edge export MODEL -o model.onnx`",
    "tensorrt": "a TensorRT engine file; build one with `dakd-edge export MODEL --format engine -o m.engine`",
}


def open_backend(
    path: str | Path, backend: str = "auto", device: str = "cpu", threads: int | None = None, **kw: Any
) -> Backend:
    """Instantiate the backend for ``path``; backend-specific options pass through ``kw``.

    ``threads``: CPU threads for inference (ONNX Runtime's intra-op pool; PyTorch's, process-wide);
    None leaves each runtime's default (all physical cores). ``device`` and a file whose suffix names
    another backend are refused here, in one line each.
    """
    name = backend_for(path, backend)
    device = resolve_device(device, name)
    fmt = format_of(path)
    if fmt is not None and fmt.backend != name:
        raise ModelFileError(f"{path}: the {name} backend needs {_NEEDS[name]}")
    if name == "torch":
        torch_backend = TorchBackend(path, device=device, **kw)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        return torch_backend
    if name == "onnxruntime":
        return OnnxRuntimeBackend(path, device=device, threads=threads, **kw)
    return TensorRTBackend(path, device="cuda" if device == "cpu" else device, **kw)
