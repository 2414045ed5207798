"""Shared fixtures: the `gpu` marker skips without CUDA; real data is read from ../shared/data; the
benchmark scripts load as modules."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("kernels")`` executes the script ``benchmarks/kernels.py`` and returns it as a
    module (``benchmarks/`` holds scripts, not a package): a fresh module at every call, so tests that
    load a script twice share no module state."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            f"dakd_bench_{name}", REPO / "benchmarks" / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None, name
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


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
