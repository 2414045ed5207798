"""A real small filesystem for full-disk tests: a tmpfs mounted for the test, always unmounted after."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """Mount a ``size`` tmpfs (e.g. "256k") on ``path`` (created); skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(path: Path, leave: int = 0) -> Path:
    """Write a file into ``path`` until about ``leave`` bytes are free; returns it."""
    hog = path / "hog.bin"
    with open(hog, "wb", buffering=0) as f:
        while True:
            st = os.statvfs(path)
            room = st.f_bavail * st.f_frsize - leave
            if room <= 0:
                break
            try:
                f.write(b"\0" * min(room, 1 << 16))
            except OSError:
                break
    return hog


def leftovers(folder: Path, keep: set[str] = frozenset()) -> list[str]:
    """Everything under ``folder`` but ``keep`` (finals, temporaries, staging folders)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in keep)
