"""Typed errors. The CLI turns any :class:`DakdError` into one line on stderr and exit code 2."""

from __future__ import annotations


class DakdError(Exception):
    """Base class for errors caused by the user's input, files or environment (not by a bug)."""


class InputError(DakdError):
    """Bad input raster or image: unreadable, empty, wrong band, NaN-only, unknown scaling, ..."""


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
