"""Strict JSON for what the CLI and ``bench`` print or write: JSON has no NaN / Infinity, and strict
parsers (jq, JavaScript) refuse the ``NaN`` Python's :func:`json.dumps` writes by default."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
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


def write_report(report: Any, path: str | os.PathLike | None = None, echo: bool = False) -> str:
    """The benchmarks' one way out: ``report`` as strict, indented JSON, written atomically to ``path``
    (with a final newline; a run stopped mid-write leaves the previous file) and printed when there is
    no ``path`` or ``echo``. Returns the text."""
    from dakd_edge.atomic import atomic_path

    text = dumps(report, indent=2)
    if path is not None:
        with atomic_path(path, overwrite=True) as tmp:
            Path(tmp).write_text(text + "\n")
    if path is None or echo:
        print(text)
    return text
