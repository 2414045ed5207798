"""Strict JSON for what the CLI and ``bench`` print or write: JSON has no NaN / Infinity, and strict
parsers (jq, JavaScript) refuse the ``NaN`` Python's :func:`json.dumps` writes by default."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


def finite(v: Any, nonfinite: Callable[[float], Any] = lambda x: None) -> Any:
    """``v`` with every NaN / inf float replaced by ``nonfinite(x)``: None (null) for an undefined
    metric, ``str`` ("nan", "inf") where the value itself is meant (a raster's nodata)."""
    if isinstance(v, float) and not math.isfinite(v):
        return nonfinite(v)
    if isinstance(v, dict):
        return {k: finite(x, nonfinite) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [finite(x, nonfinite) for x in v]
    return v


def dumps(v: Any, nonfinite: Callable[[float], Any] = lambda x: None, **kw: Any) -> str:
    """:func:`json.dumps` of :func:`finite` ``(v)``, refusing any non-finite number left."""
    return json.dumps(finite(v, nonfinite), allow_nan=False, **kw)
