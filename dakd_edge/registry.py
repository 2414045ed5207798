"""Model registry: variants are small registered functions (timm style).

``create_model("saross-nano", num_classes=2, in_chans=1)`` is the one entry point. A builder receives
``num_classes``, ``in_chans`` and any config overrides and returns an ``nn.Module`` whose ``config``
attribute is a plain dataclass (saved beside every checkpoint so the checkpoint alone rebuilds it).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}
# Modules whose import registers models; imported on first use so `import dakd_edge` stays torch-free.
_MODEL_MODULES = ("dakd_edge.models.saross", "dakd_edge.models.baselines")
_loaded = False


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(num_classes, in_chans, **cfg) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)
    _loaded = True


def list_models(pattern: str | None = None) -> list[str]:
    _ensure_loaded()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name: str, num_classes: int = 2, in_chans: int = 1, **cfg: Any):
    from dakd_edge.meta import MAX_CLASSES, MIN_CLASSES, class_count_problem

    if not MIN_CLASSES <= num_classes <= MAX_CLASSES:  # before building: the class map could not hold it
        raise ValueError(class_count_problem(num_classes))
    _ensure_loaded()
    if name not in _REGISTRY:
        from dakd_edge.errors import ModelFileError

        raise ModelFileError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](num_classes=num_classes, in_chans=in_chans, **cfg)
