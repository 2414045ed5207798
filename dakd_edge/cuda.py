"""CUDA runtime helpers through ``cuda-python`` (no torch): shared by the TensorRT runner and builder."""

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
        raise InputError(f"--device {device!r} is not a device: use cpu, cuda or cuda:N")
    return device


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
