"""Run the Triton kernels on the CPU interpreter when no GPU is visible.

Triton decides interpreter vs compiled when a ``@triton.jit`` function is decorated, so the variable is
set here, at conftest import (before any test module imports ``dakd_edge.kernels.selective_scan`` or
``.transposed_attention``). With a GPU the variable stays unset: the kernels compile for real, the
``gpu`` tests run, and the CPU-interpreter tests skip. ``setdefault`` lets ``TRITON_INTERPRET=0`` opt out.
Outside this folder the variable only matters to code that asks for ``kernels="triton"`` on CPU tensors.
"""

from __future__ import annotations

import os

import pytest

try:
    import torch

    _CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a test dependency
    _CUDA = False

if not _CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """``cpu`` runs the kernels under the interpreter; ``cuda`` compiles them (``gpu`` marker)."""
    if request.param == "cpu" and not interpreted():
        pytest.skip("CPU kernel tests need TRITON_INTERPRET=1 (unset when a GPU is visible)")
    return request.param
