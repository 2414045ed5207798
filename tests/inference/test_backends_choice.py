"""Device strings and backend-vs-file mismatches: one clear line each, before any work (audit F5,
F7.6, F10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dakd_edge.cli.app import main
from dakd_edge.cuda import check_device
from dakd_edge.errors import InputError, ModelFileError
from dakd_edge.inference import load
from dakd_edge.weights import bundled_path


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_devices_pass(device: str) -> None:
    assert check_device(device) == device


@pytest.mark.parametrize("device", ["tpu", "CPU", "", "cpu:1", "cuda:", "cuda:x", " cuda", "cuda:0 "])
def test_invalid_device_is_refused_before_the_model_loads(device: str) -> None:
    # ONNX Runtime used to run these on the CPU silently; torch raised its own traceback
    for backend in ("auto", "onnxruntime", "torch"):
        with pytest.raises(InputError, match="use cpu, cuda, cuda:N or auto"):
            load(None, backend=backend, device=device)


@pytest.mark.parametrize(
    "suffix, backend, needle",
    [
        (".safetensors", "onnxruntime", "needs an .onnx file"),  # was "Protobuf parsing failed"
        (".safetensors", "tensorrt", "needs a TensorRT engine file"),  # was "engine metadata ... missing"
        (".pt", "tensorrt", "dakd-edge export MODEL --format engine"),
        (".onnx", "torch", "needs a PyTorch checkpoint"),
        (".engine", "onnxruntime", "needs an .onnx file"),
    ],
)
def test_file_of_another_format_names_what_the_backend_needs(
    tmp_path: Path, suffix: str, backend: str, needle: str
) -> None:
    model = tmp_path / f"m{suffix}"
    model.write_bytes(b"not read")
    with pytest.raises(ModelFileError, match=needle):
        load(model, backend=backend)


def test_cli_device_and_bundled_tensorrt_are_one_line(tmp_path: Path, capsys) -> None:
    scene = tmp_path / "missing-is-fine.tif"
    for extra, needle in (
        (["--device", "tpu", "--backend", "torch"], "--device 'tpu' is not a device"),
        (["--backend", "tensorrt"], "needs a TensorRT engine file"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["evaluate", "--data", str(scene), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and needle in err[0], err


def test_bundled_files_still_open_with_their_own_backend() -> None:
    assert load(bundled_path("onnxruntime"), backend="onnxruntime", device="cpu").meta.num_classes == 2


def test_auto_takes_the_bundled_checkpoint_when_onnx_runtime_is_missing(monkeypatch) -> None:
    """With PyTorch but not ONNX Runtime installed, segment / demo / evaluate refused ("onnxruntime is
    not installed") where the torch backend would have run the same model."""
    import dakd_edge.extras

    assert bundled_path("auto").suffix == ".onnx"
    monkeypatch.setattr(dakd_edge.extras, "available", lambda m: m != "onnxruntime")
    assert bundled_path("auto").suffix == ".safetensors"
    assert bundled_path("onnxruntime").suffix == ".onnx"  # asked for: its own error names the extra
    pred = load(None, backend="auto")
    assert pred.backend.name == "torch"


def test_every_command_takes_auto_and_cuda_n(monkeypatch) -> None:
    """segment / evaluate / demo refused --device auto and bench refused cuda:1; ONNX Runtime ran
    cuda:1 on GPU 0 (no device_id given to its CUDA provider)."""
    import onnxruntime as ort

    import dakd_edge.cuda
    from dakd_edge.cuda import resolve_device

    assert resolve_device("auto") == ("cuda" if dakd_edge.cuda.cuda_usable() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1"
    want = resolve_device("auto", "onnxruntime")
    assert load(None, backend="onnxruntime", device="auto").backend.device == want
    # a GPU PyTorch sees, beside the CPU-only onnxruntime package: auto is per backend
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_device("auto", "torch") == "cuda" and resolve_device("auto", "onnxruntime") == "cpu"
    assert load(None, backend="onnxruntime", device="auto").backend.device == "cpu"
    seen = {}

    class Session:  # records the providers the backend asks for, then fails as a CPU-only box would
        def __init__(self, path, sess_options=None, providers=None):
            seen["providers"] = providers
            raise RuntimeError("no GPU here")

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", Session)
    with pytest.raises(ModelFileError, match="no GPU here"):
        load(None, backend="onnxruntime", device="cuda:1")
    assert seen["providers"] == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
