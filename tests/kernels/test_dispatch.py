"""Dispatch while a graph is recorded: a Triton launch is no graph op, so tracing takes the reference."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dakd_edge.errors import BackendUnavailable
from dakd_edge.kernels import dispatch, ref, support

pytest.importorskip("triton", minversion="3.4")  # the kernels need triton.knobs
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:FutureWarning")

CUDA_TENSOR = SimpleNamespace(is_cuda=True)  # resolve() only asks where the tensor lives


def _scan_inputs(device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 3, 5, generator=g), 0.5 * torch.randn(1, 3, 5, generator=g)
    A = -torch.rand(3, 2, generator=g) - 0.1
    B, C = torch.randn(1, 2, 5, generator=g), torch.randn(1, 2, 5, generator=g)
    return [t.to(device) for t in (u, delta, A, B, C)]


def test_auto_takes_reference_while_tracing() -> None:
    """``auto`` picks the kernels for CUDA tensors, except inside torch.jit.trace / ONNX export."""
    assert dispatch.resolve(CUDA_TENSOR, "auto") == "triton"
    seen = []

    def f(t: torch.Tensor) -> torch.Tensor:
        seen.append(dispatch.resolve(CUDA_TENSOR, "auto"))
        return t * 2

    torch.jit.trace(f, torch.ones(2), check_trace=False)
    assert seen == ["torch"]


def test_forced_triton_refuses_tracing(device) -> None:
    """``triton`` under tracing says why it cannot run (it used to fail inside the launcher)."""
    u, delta, A, B, C = _scan_inputs(device)
    v = torch.randn(1, 1, 3, 8, device=device)

    def scan(x: torch.Tensor) -> torch.Tensor:
        return dispatch.selective_scan(x, delta, A, B, C, kernels="triton")

    def attention(x: torch.Tensor) -> torch.Tensor:
        return dispatch.transposed_attention(x, x, x, torch.ones(1, device=device), kernels="triton")

    for fn, arg in ((scan, u), (attention, v)):
        with pytest.raises(BackendUnavailable, match="traced or exported"):
            torch.jit.trace(fn, arg)


@pytest.mark.gpu
def test_auto_trace_on_cuda_records_reference() -> None:
    """On CUDA ``auto`` runs the kernels eagerly, and a trace of the same call holds the reference ops."""
    u, delta, A, B, C = _scan_inputs("cuda")
    traced = torch.jit.trace(lambda x: dispatch.selective_scan(x, delta, A, B, C, kernels="auto"), u)
    assert "PythonOp" not in str(traced.graph)
    torch.testing.assert_close(traced(u), ref.selective_scan_ref(u, delta, A, B, C), rtol=1e-5, atol=1e-5)


CUDA64 = SimpleNamespace(is_cuda=True, dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"dstate": 17}, "state size N of 1 to 16, not 17"),
        ({"channels": 1024}, "at most 512 channels per head, not 1024"),
        ({}, None),
    ],
)
def test_auto_sends_what_the_kernels_cannot_take_to_the_reference(kwargs, reason) -> None:
    """On CUDA ``auto`` launched the kernels for fp64 (the attention kernels do not compile for it), a
    scan state over 16 and a head over 512 channels (over an H100's shared memory): the reference runs
    them; ``triton`` refuses them in one line (they failed inside Triton, on a GPU only)."""
    x = SimpleNamespace(is_cuda=True, dtype=torch.float32)
    why = support.unsupported(x, **kwargs)
    assert (why is None and reason is None) or reason in why
    assert dispatch.resolve(CUDA_TENSOR, "auto", why) == ("triton" if why is None else "torch")
    why64 = support.unsupported(x, CUDA64)  # the promoted dtype of the operands
    assert "not float64" in why64 and dispatch.resolve(CUDA_TENSOR, "auto", why64) == "torch"
    with pytest.raises(
        BackendUnavailable, match=r"kernels='triton': the Triton kernels take fp32, fp16 or bf16"
    ):
        dispatch.resolve(CUDA_TENSOR, "triton", why64)


def test_fp64_runs_under_auto_and_is_refused_by_triton(device) -> None:
    u, delta, A, B, C = (t.double() for t in _scan_inputs(device))
    y = dispatch.selective_scan(u, delta, A, B, C, kernels="auto")
    torch.testing.assert_close(y, ref.selective_scan_ref(u, delta, A, B, C), rtol=0, atol=0)
    q = torch.randn(1, 1, 3, 8, device=device, dtype=torch.float64)
    with pytest.raises(BackendUnavailable, match="not float64"):
        dispatch.transposed_attention(q, q, q, torch.ones(1, device=device), kernels="triton")


def test_set_kernels_reaches_other_threads() -> None:
    """set_kernels was a context variable: a thread pool's workers still saw 'auto'."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        dispatch.set_kernels("torch")
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(dispatch.get_kernels).result() == "torch"
        with dispatch.use_kernels("triton"):  # a block still wins in its own thread
            assert dispatch.get_kernels() == "triton"
            with ThreadPoolExecutor(1) as pool:
                assert pool.submit(dispatch.get_kernels).result() == "torch"
    finally:
        dispatch.set_kernels(None)
    assert dispatch.get_kernels() == "auto"


def test_triton_on_cpu_asks_the_kernels_whether_they_interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRITON_INTERPRET=1 set after the kernel modules were imported passed the check, then the launch
    failed with Triton's "0 active drivers": the modules' own flag decides."""
    import dakd_edge.kernels._triton_common as common

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(common, "INTERPRETED", False)
    with pytest.raises(BackendUnavailable, match="set before dakd_edge.kernels' Triton modules are imported"):
        dispatch.resolve(torch.zeros(1), "triton")
    monkeypatch.setattr(common, "INTERPRETED", True)
    assert dispatch.resolve(torch.zeros(1), "triton") == "triton"


def test_an_older_triton_is_treated_as_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.4-2.7 pin Triton 3.0-3.3, which lacks triton.knobs: every CUDA call with kernels=auto
    crashed on import of the kernels. auto takes the reference; triton says which version it needs."""
    import triton

    monkeypatch.setattr(triton, "__version__", "3.0.0")
    assert "triton >= 3.4" in dispatch.triton_problem()
    assert dispatch.resolve(CUDA_TENSOR, "auto") == "torch"
    with pytest.raises(BackendUnavailable, match=r"needs? triton >= 3.4 \(torch >= 2.8\), found 3.0.0"):
        dispatch.resolve(CUDA_TENSOR, "triton")


def test_recording_graph_without_torch_compiler_is_exporting(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compiler.is_exporting arrived in torch 2.7; on 2.4-2.6 its lookup raised AttributeError."""
    monkeypatch.delattr(torch.compiler, "is_exporting", raising=False)
    assert dispatch._recording_graph() is False
