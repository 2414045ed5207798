"""Typed errors. The CLI turns any :class:`DakdError` into one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
import threading
import warnings
from collections.abc import Iterator


class DakdError(Exception):
    """Base class for errors caused by the user's input, files or environment (not by a bug)."""


class InputError(DakdError):
    """Bad input raster or image (unreadable, empty, wrong band, NaN-only, unknown scaling) or a value
    out of its domain (tile size, backend name). Not a ``ValueError``: the library's own ``except
    ValueError`` blocks would catch it and bury its message in another."""


class DatasetError(DakdError):
    """A dataset folder is missing, empty, or inconsistent (size mismatch, off-palette labels)."""


class ModelFileError(DakdError):
    """A checkpoint, ONNX file or engine is missing, corrupt, or does not fit the requested model."""


class OutputError(DakdError):
    """An output cannot be written: exists without --overwrite, directory missing or read-only."""


class BackendUnavailable(DakdError):
    """A requested backend (CUDA, TensorRT, Triton, ONNX Runtime) is not usable on this machine."""


class ExportError(DakdError):
    """Export failed or the exported model does not match PyTorch within tolerance."""


class TrainingError(DakdError):
    """Training cannot continue (non-finite loss, incompatible resume checkpoint, ...)."""


class DakdWarning(UserWarning):
    """A warning the CLI prints as one line: a :class:`Notice` (good to know) or an
    :class:`~dakd_edge.data.scaling.InputDomainWarning` (the results may be wrong).

    Made inside :func:`in_api_words` (the public Python entry points), its message names the
    options as Python keywords (``scale=db``), as their errors do, not as CLI options. Warn with an
    instance, ``warnings.warn(Notice(text), stacklevel=...)``: given a string and a category,
    ``warnings`` matches filters (and its once-per-place record) against the string as passed, so a
    filter on the words the user reads would not match."""

    def __init__(self, *args: object) -> None:
        if _API_WORDS.get() and args and isinstance(args[0], str):
            args = (api_words(args[0]), *args[1:])
        super().__init__(*args)


class Notice(DakdWarning):
    """Something the user should know that is not an error. Silencing notices
    (``warnings.simplefilter("ignore", Notice)``) leaves ``InputDomainWarning`` on."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first line outside this package: the caller's
    own (``model.segment(...)`` in a notebook), not a line deep in the pipeline, so the location shown
    is theirs and a filter on their module matches it. Call it as ``warnings.warn(..., stacklevel=
    user_stacklevel())``."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).partition(".")[0] == "dakd_edge":
        frame, level = frame.f_back, level + 1
    return level


_QUIET = threading.Lock()
_QUIETED: dict[type[Warning], int] = {}  # category -> blocks inside quiet() that ignore it


@contextlib.contextmanager
def quiet(*categories: type[Warning]) -> Iterator[None]:
    """Ignore ``categories`` (none: every warning) inside the block, safely across threads.

    ``warnings.catch_warnings`` saves and restores the process-wide filter list (before Python 3.14):
    two threads inside it at once (``Predictor.segment`` from a thread pool) could leave one's list
    installed for good, an "ignore everything" that hid every later warning of the process. Here each
    category's "ignore" filter is added by the first block that needs it and that exact entry removed
    by the last one to leave, under a lock held only for that bookkeeping (the blocks themselves, COG
    copies of whole scenes among them, run concurrently). The filters are process-wide: while a block
    ignores a category, other threads' warnings of it are ignored too, so blocks name the categories
    they silence."""
    cats = categories or (Warning,)
    with _QUIET:
        for c in cats:
            if not _QUIETED.get(c):
                warnings.filterwarnings("ignore", category=c)
            _QUIETED[c] = _QUIETED.get(c, 0) + 1
    try:
        yield
    finally:
        with _QUIET:
            for c in cats:
                _QUIETED[c] -= 1
                if not _QUIETED[c]:
                    del _QUIETED[c]
                    _drop_filter(c)


# warnings' own hook after a change to its filter list (renamed _filters_mutated_lock_held in 3.14)
_FILTERS_MUTATED = getattr(warnings, "_filters_mutated", None) or warnings._filters_mutated_lock_held


def _drop_filter(category: type[Warning]) -> None:
    """Remove the first ``("ignore", category)`` entry :func:`quiet` added (gone already: nothing)."""
    entry = ("ignore", None, category, None, 0)
    with contextlib.suppress(ValueError):
        warnings.filters.remove(entry)
        _FILTERS_MUTATED()  # as warnings.filterwarnings does: warn()'s per-module caches are stale now


# The CLI's options the library's entry points take, in argument form: flags become a value, options
# a name (other --words, and any inside a path or a value, are left as they are).
_API_FLAGS = {
    "overwrite": "overwrite=True", "no-land-mask": "land_mask=None", "no-denoise": "denoise=False",
    "no-polygons": "polygons=False", "geocode": "geocode=True", "flatten": "flatten=True",
    "match-level": "match_level=True",
}  # fmt: skip
_API_OPTIONS = frozenset({
    "input-scale", "tile", "overlap", "batch", "device", "backend", "threads", "band", "pol", "land-mask",
    "min-area", "probs-dtype", "border-noise", "coast-buffer", "probs", "vector", "report",
})  # fmt: skip
_API_RENAMED = {"input-scale": "scale"}  # the others: their name with '_' for '-'
_VALUE = (
    r"-?\d[\d.]*(?:px|%)?|'[^']*'|[A-Z]+(?:px)?\b|(?:uint8|float16|fp16|fp32|int8|db|linear|amplitude|cpu|"
    r"cuda(?::\d+)?|auto|torch|onnxruntime|tensorrt|globe|none|mask|keep|VV|VH|HH|HV)\b"
)
_OPTION = re.compile(rf"(?<![\w/.-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w-])(?: ({_VALUE}))?")


def api_words(text: str) -> str:
    """A message in the library's words: ``--tile 16`` -> ``tile=16``, ``--input-scale uint8`` ->
    ``scale=uint8``, ``pass --overwrite`` -> ``pass overwrite=True``. The CLI's own messages keep its
    options; the public Python entry points (:func:`dakd_edge.load_model`, ``Predictor.predict`` and
    ``.segment``) say them this way. Only the options they take are rewritten, never inside a path."""

    def one(m: re.Match) -> str:
        if m[1] in _API_FLAGS:
            return _API_FLAGS[m[1]] + (f" {m[2]}" if m[2] else "")
        if m[1] in _API_OPTIONS:
            return f"{_API_RENAMED.get(m[1], m[1].replace('-', '_'))}={m[2] or ''}"
        return m[0]

    return _OPTION.sub(one, text)


# Set inside in_api_words(): the DakdWarnings raised there (in this thread or task) speak api_words.
_API_WORDS: contextvars.ContextVar[bool] = contextvars.ContextVar("dakd_api_words", default=False)


@contextlib.contextmanager
def in_api_words() -> Iterator[None]:
    """Inside, :class:`DakdWarning` messages are in :func:`api_words`; a :class:`DakdError` from inside
    is re-raised with its message in them."""
    token = _API_WORDS.set(True)
    try:
        yield
    except DakdError as e:
        text = api_words(str(e))
        if text == str(e):
            raise
        raise type(e)(text).with_traceback(e.__traceback__) from e.__cause__
    finally:
        _API_WORDS.reset(token)
