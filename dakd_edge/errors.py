"""Typed errors. The CLI turns any :class:`DakdError` into one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Iterator


class DakdError(Exception):
    """Base class for errors caused by the user's input, files or environment (not by a bug)."""


class InputError(DakdError, ValueError):
    """Bad input raster or image (unreadable, empty, wrong band, NaN-only, unknown scaling) or a value
    out of its domain (tile size, backend name): a ``ValueError`` too, as callers expect of those."""


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
    :class:`~dakd_edge.data.scaling.InputDomainWarning` (the results may be wrong)."""


class Notice(DakdWarning):
    """Something the user should know that is not an error. Silencing notices
    (``warnings.simplefilter("ignore", Notice)``) leaves ``InputDomainWarning`` on."""


_QUIET = threading.RLock()


@contextlib.contextmanager
def quiet(*categories: type[Warning]) -> Iterator[None]:
    """``warnings.catch_warnings()`` with ``categories`` (none: every warning) ignored, one thread at a
    time. ``catch_warnings`` saves and restores the process-wide filter list (before Python 3.14), so
    two threads inside it at once (``Predictor.segment`` from a thread pool) could leave one's filters
    installed for good: an "ignore everything" that hid every later warning of the process."""
    with _QUIET, warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield


# The CLI's words for the library's arguments, where the names differ or a flag is a value.
_API_FLAGS = {
    "--overwrite": "overwrite=True",
    "--no-land-mask": "land_mask=None",
    "--no-denoise": "denoise=False",
}
_API_NAMES = {"input-scale": "scale"}
_OPTION = re.compile(
    r"--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
    r"(?: (-?\d[\d.]*|'[^']*'|[A-Z]+\b|(?:uint8|float16|fp16|fp32|int8|db|linear|amplitude|cpu|cuda(?::\d+)?|auto|torch|onnxruntime|tensorrt|globe|none)\b))?"
)


def api_words(text: str) -> str:
    """A message in the library's words: ``--tile 16`` -> ``tile=16``, ``--input-scale uint8`` ->
    ``scale=uint8``, ``pass --overwrite`` -> ``pass overwrite=True``. The CLI's own messages keep its
    options; the public Python entry points (:func:`dakd_edge.load_model`, ``Predictor.predict`` and
    ``.segment``) say them this way."""
    for flag, kw in _API_FLAGS.items():
        text = re.sub(rf"{flag}(?![\w-])", kw, text)
    return _OPTION.sub(lambda m: f"{_API_NAMES.get(m[1], m[1].replace('-', '_'))}={m[2] or ''}", text)


@contextlib.contextmanager
def in_api_words() -> Iterator[None]:
    """Re-raise a :class:`DakdError` from inside with its message in :func:`api_words`."""
    try:
        yield
    except DakdError as e:
        text = api_words(str(e))
        if text == str(e):
            raise
        raise type(e)(text).with_traceback(e.__traceback__) from None
