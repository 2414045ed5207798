"""Atomic outputs: write to a temporary sibling, rename on success, remove on failure.

An interrupted run therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dakd_edge.errors import OutputError


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done; returns it as a Path."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputError(f"output exists: {p} (pass --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory is not writable: {parent}")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on clean exit it is renamed onto ``path``."""
    final = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL, safetensors) create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        # GDAL may leave side-car files (e.g. .aux.xml, .ovr) next to the temporary name.
        for side in final.parent.glob(tmp_path.name + ".*"):
            with contextlib.suppress(OSError):
                side.unlink()
