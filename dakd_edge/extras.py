"""Optional dependency groups ("extras") and the one check a command makes before it needs one.

The core install (numpy, click, rich, rasterio, pyproj, pillow) plus ``[runtime]`` (onnxruntime) must run
``segment``, ``demo``, ``info``, ``evaluate`` and ``bench --backend onnxruntime`` without PyTorch. Commands
that cannot work without an extra call :func:`require_extra` first, so a torch-free edge box gets one
line naming what to install instead of a ``ModuleNotFoundError`` traceback from deep inside an import.
"""

from __future__ import annotations

import importlib
from functools import cache

from dakd_edge.errors import BackendUnavailable

# extra -> the import names a command needing it checks by default (the rest of the extra comes with
# them; a command needing more names them, e.g. export: onnx, jointnet: diffusers). safetensors is
# checked with torch: every checkpoint is read or written with it (it was a traceback, even for train's
# first checkpoint after minutes of training).
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "safetensors"),
    "runtime": ("onnxruntime",),
    "trt": ("tensorrt",),
}
# import name -> how a user knows it.
LABELS = {
    "torch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "tensorrt": "TensorRT",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
}


class MissingExtra(BackendUnavailable):
    """An optional dependency group is not installed (a backend row in ``bench`` is skipped with it)."""


@cache
def available(module: str) -> bool:
    """Whether ``module`` imports (not only whether it is on disk: a broken install counts as absent)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError):  # OSError: a wheel whose shared libraries do not load
        return False
    return True


def load_failure(module: str) -> str | None:
    """Why an installed ``module`` does not import (a broken wheel, or a process memory limit too low
    to map its libraries: torch needs some 3 GB of address space), or None when it is not installed
    (or imports): a missing package and a failing one need different fixes."""
    import importlib.util

    try:
        if importlib.util.find_spec(module) is None:
            return None
        importlib.import_module(module)
    except (ImportError, OSError, ValueError) as e:
        return memory_hint(" ".join(str(e).split()))
    return None


def memory_hint(text: str) -> str:
    """``text``, plus a hint when it names a library the loader could not map for lack of memory."""
    starved = any(k in text for k in ("map segment", "allocate memory", "Cannot allocate"))
    return text + ("; out of memory: is the process's memory limit (ulimit -v) too low?" if starved else "")


def unavailable(module: str, extra: str) -> str:
    """One line for a module that does not import: the install command, or why it fails to load."""
    failure = load_failure(module)
    label = LABELS.get(module, module)
    if failure is not None:
        return f"{label} is installed but does not load ({failure})"
    return f"{label} is not installed: {install_hint(extra)}"


def install_hint(extra: str) -> str:
    """The command that adds ``extra`` to an install from a clone (dakd-edge is not on a package index)."""
    return f'pip install -c constraints.txt -e ".[{extra}]" in the dakd-edge clone'


def require_extra(extra: str, command: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` unless ``modules`` (default: the extra's :data:`EXTRAS`) all import.

    The message names every module the command needs, not only the missing ones, so one install fixes it.
    """
    needed = modules or EXTRAS[extra]
    if all(available(m) for m in needed):
        return
    broken = [(m, f) for m in needed if not available(m) and (f := load_failure(m)) is not None]
    if broken:
        m, failure = broken[0]
        raise MissingExtra(
            f"'{command}' needs {LABELS.get(m, m)}, which is installed but does not load ({failure})"
        )
    names = [LABELS.get(m, m) for m in needed]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    raise MissingExtra(f"'{command}' needs {listed}: {install_hint(extra)}")
