"""Typed errors. The CLI turns any :class:`DakdError` into one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
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


class Notice(UserWarning):
    """Something the user should know that is not an error (the CLI prints it as one line)."""


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
