"""Optional dependencies: a command that needs one says which extra to install, before any work."""

from __future__ import annotations

import pytest

import dakd_edge.extras as extras


@pytest.mark.parametrize(
    "missing, argv, said",
    [
        # safetensors reads and writes every checkpoint: train crashed at its first save, minutes in
        ("safetensors", ["train", "--data", "x", "--out", "y"], "'train' needs PyTorch and safetensors"),
        ("safetensors", ["export", "-o", "m.onnx"], "'export' needs PyTorch, safetensors and onnx"),
        # its parity check runs the graph in ONNX Runtime: that failed only after the export, 9 s in
        ("onnxruntime", ["export", "-o", "m.onnx"], "'export --ops standard' needs ONNX Runtime"),
        # the teacher is a diffusers UNet: jointnet balance / train / generate were tracebacks
        ("diffusers", ["jointnet", "balance", "--synthetic", "2"], "'jointnet balance' needs PyTorch, safetensors and diffusers"),
        ("diffusers", ["jointnet", "generate", "x.pt", "--out", "y", "--n", "1"], "'jointnet generate' needs"),
    ],
)  # fmt: skip
def test_a_missing_module_of_an_extra_is_named_up_front(
    monkeypatch, capsys, tmp_path, missing, argv, said
) -> None:
    from dakd_edge.cli.app import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pt").write_bytes(b"")  # there: a missing file is said first (before torch's import)
    monkeypatch.setattr(extras, "available", lambda m: m != missing)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"dakd-edge: error: {said}") and "pip install -c" in err, err


def test_batch_geoparquet_needs_pyarrow_before_any_scene(monkeypatch, tmp_path) -> None:
    """--format parquet without pyarrow ran every scene, then failed with a traceback on the layer."""
    from dakd_edge.batch import run
    from dakd_edge.errors import DakdError

    monkeypatch.setattr(extras, "available", lambda m: m != "pyarrow")
    with pytest.raises(DakdError, match="'batch' needs ray, shapely and pyarrow"):
        run([tmp_path / "none.tif"], tmp_path / "out", fmt="parquet")
    assert not (tmp_path / "out").exists()


def test_a_baseline_without_smp_names_the_extra(monkeypatch) -> None:
    """Without segmentation-models-pytorch (or the timm / torchvision it imports), `dakd-edge models`
    and training a baseline ended in a ModuleNotFoundError traceback."""
    from dakd_edge import create_model

    monkeypatch.setattr(extras, "available", lambda m: m != "segmentation_models_pytorch")
    with pytest.raises(extras.MissingExtra, match="the unet baseline' needs segmentation-models-pytorch"):
        create_model("unet")


def test_an_installed_module_that_does_not_load_is_not_told_to_install(monkeypatch) -> None:
    """Under a memory limit torch's libraries fail to map: 'needs PyTorch: pip install ...' sent users
    to reinstall what they had. The failure is named, with the memory limit when that is the cause."""
    import importlib

    from dakd_edge import extras

    def fail(name: str, *a, **k):
        raise OSError("libtorch_cuda.so: failed to map segment from shared object")

    monkeypatch.setattr(importlib, "import_module", fail)
    line = extras.unavailable("json", "torch")  # json is installed: find_spec finds it
    assert line.startswith("json is installed but does not load (libtorch_cuda.so: failed to map segment")
    assert "ulimit -v" in line
    assert extras.unavailable("no_such_module_xyz", "runtime") == (
        f"no_such_module_xyz is not installed: {extras.install_hint('runtime')}"
    )


def test_memory_hint_names_the_memory_limit_only_when_a_library_could_not_be_mapped() -> None:
    from dakd_edge.extras import memory_hint

    assert memory_hint("libgomp.so.1: failed to map segment from shared object").endswith(
        "(ulimit -v) too low?"
    )
    assert memory_hint("No module named 'torch'") == "No module named 'torch'"
