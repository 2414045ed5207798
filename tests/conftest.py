"""Shared fixtures: the `gpu` marker skips without CUDA; real data is read from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("DAKD_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real OSD/SOS subsets; skips the test when they are absent."""
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DAKD_SHARED_DATA)")
    return root


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch at 2 threads so parallel test workers do not oversubscribe a small CI box."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)
