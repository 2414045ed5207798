"""JSON read from files anyone may hand us (model headers, GeoJSON, classes.json, baselines).

:func:`json.loads` raises :class:`RecursionError` for deeply nested text (``[[[[...``) and
:class:`MemoryError` for text too large, neither of which is a :class:`ValueError`: callers that
catch ``ValueError`` to report a bad file in one line would print a traceback instead. :func:`loads`
turns both into ``ValueError``, and refuses documents nested deeper than any of ours so the code
walking the result (recursively, as :func:`dataclasses.asdict` and :func:`dakd_edge.jsonout.finite`
do) cannot hit the limit.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any file we read (GeoJSON: about 8 levels; model metadata and baselines: fewer).
MAX_DEPTH = 100


def loads(text: str | bytes | bytearray, max_depth: int | None = MAX_DEPTH) -> Any:
    """:func:`json.loads`, with every failure a :class:`ValueError` whose text says what is wrong.

    ``max_depth=None`` skips the depth check (a walk of every list: seconds for a million-point
    GeoJSON, whose reader catches a RecursionError of its own instead)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except MemoryError:
        raise ValueError("JSON too large to read into memory") from None
    if max_depth is not None and _too_deep(doc, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return doc


def _too_deep(doc: Any, max_depth: int) -> bool:
    """Whether ``doc`` nests lists / objects more than ``max_depth`` deep (iterative: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        if depth > max_depth:
            return True
        stack.extend((x, depth + 1) for x in v if isinstance(x, dict | list))
    return False
