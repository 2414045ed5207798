"""Devices (``--device``: cpu, cuda, cuda:N, auto) and CUDA runtime helpers through ``cuda-python`` (no
torch): shared by every backend, the TensorRT runner and builder."""

from __future__ import annotations

import re
from typing import Any

from dakd_edge.errors import BackendUnavailable, InputError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` if it is ``cpu``, ``cuda`` or ``cuda:N``; else one :class:`InputError` line.

    The one check for every command: ONNX Runtime read anything but ``cuda*`` as the CPU, so ``tpu``,
    ``CPU`` or ``""`` ran silently on it, and torch raised its own traceback.
    """
    if not isinstance(device, str) or _DEVICE.fullmatch(device) is None:
        raise InputError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or auto")
    return device


def resolve_device(device: str, backend: str | None = None) -> str:
    """``device`` checked (:func:`check_device`), with ``auto`` resolved: ``cuda`` when ``backend``
    (``torch``, ``onnxruntime``, ``tensorrt``; None: any) can use a GPU here, else ``cpu``. Every command
    takes the same ``--device`` values this way (``segment`` refused ``auto``; ``bench`` refused
    ``cuda:1``). Per backend: a PyTorch that sees a GPU beside the CPU-only ``onnxruntime`` package
    must not send the bundled ONNX model to a CUDA provider that is not there."""
    if device != "auto":
        return check_device(device)
    return "cuda" if cuda_usable(backend) else "cpu"


def cuda_usable(backend: str | None = None) -> bool:
    """Whether ``backend`` can run on a CUDA GPU here (None: PyTorch's view, else ONNX Runtime's)."""
    if backend == "tensorrt":
        return True  # TensorRT runs on the GPU only; its runner says so when there is none
    if backend in (None, "torch"):
        try:
            import torch
        except ImportError:
            if backend == "torch":
                return False
        else:
            return bool(torch.cuda.is_available())
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # what it was built with
        return False
    try:  # ... is no GPU: where PyTorch is installed, ask it whether one is visible
        import torch
    except ImportError:
        return True
    return bool(torch.cuda.is_available())


def device_index(device: str) -> int:
    """The GPU index of ``cuda:N`` (``cuda``: 0)."""
    return int(device.partition(":")[2] or 0)


def import_cudart() -> Any:
    """The ``cudart`` module of cuda-python (new and old package layouts)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise BackendUnavailable(
                "the TensorRT backend needs cuda-python (pip install cuda-python)"
            ) from e
    return cudart


def cuda_call(result: Any) -> Any:
    """cuda-python returns ``(err, *values)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA error {err}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def cuda_runtime_version(cudart: Any) -> str | None:
    """'12.6' style version of the CUDA runtime, or None when it cannot be queried."""
    try:
        v = cuda_call(cudart.cudaRuntimeGetVersion())
    except BackendUnavailable:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def gpu_identity(cudart: Any) -> tuple[str | None, str | None]:
    """(name, ``"8.7"``-style compute capability) of device 0, (None, None) where CUDA cannot say.
    A TensorRT engine runs only on GPUs of the compute capability it was built for."""
    try:
        props = cuda_call(cudart.cudaGetDeviceProperties(0))
        name = props.name
        name = name.decode(errors="replace").rstrip("\0") if isinstance(name, bytes) else str(name)
        return name, f"{int(props.major)}.{int(props.minor)}"
    except Exception:  # informational: an old cuda-python or a driver that does not answer
        return None, None


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT or CUDA version string: ``"8.5.2.2"`` -> ``(8, 5)``, ``"10.3.0"`` ->
    ``(10, 3)``. Here, not in the builder, so the plugin check can use it without importing the export."""
    nums = [int(n) for n in re.findall(r"\d+", str(text))[:2]]
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


MIN_TENSORRT = (8, 5)  # IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3


def tensorrt_too_old(version: str) -> str | None:
    """Why TensorRT ``version`` cannot build or run dakd-edge engines (one line), or None if it can."""
    if parse_version(version) >= MIN_TENSORRT:
        return None
    return (
        f"TensorRT {version} is too old: dakd-edge needs TensorRT >= 8.5 (JetPack >= 5.1), whose "
        "name-based tensor API (set_input_shape, set_tensor_address, execute_async_v3) the runner uses"
    )


def check_tensorrt_version(version: str) -> None:
    """Raise :class:`BackendUnavailable` (one line) for a TensorRT older than :data:`MIN_TENSORRT`."""
    reason = tensorrt_too_old(version)
    if reason:
        raise BackendUnavailable(reason)
