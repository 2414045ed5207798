"""Model files round-trip and fail loudly on the wrong architecture or class count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dakd_edge import create_model
from dakd_edge.errors import ModelFileError
from dakd_edge.meta import ModelMeta
from dakd_edge.models.checkpoint import load_model_file, read_meta, save_model, weights_only_is_safe

# Pickled weights (.pt / .pth) are refused before torch 2.6 (CVE-2025-32434), as the product says.
_PICKLE_OK = pytest.mark.skipif(
    not weights_only_is_safe(torch.__version__), reason="torch < 2.6 refuses pickled weights by design"
)


@pytest.fixture(scope="module")
def nano5() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("saross-nano", num_classes=5, skip="conv").eval()


@pytest.mark.parametrize("suffix", [".safetensors", pytest.param(".pt", marks=_PICKLE_OK)])
def test_round_trip_rebuilds_same_model(tmp_path: Path, nano5: torch.nn.Module, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    saved = save_model(path, nano5, ModelMeta.default_for("saross-nano", 5, tile=256))
    assert saved.arch["skip"] == "conv"  # arch comes from the model config, not from the caller
    model, meta = load_model_file(path)
    assert meta == saved and read_meta(path) == saved
    assert model.config == nano5.config
    x = torch.randn(1, 1, 40, 56)
    with torch.no_grad():
        assert torch.equal(model(x), nano5(x))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_saved_file_gets_the_umask_mode(tmp_path: Path, nano5: torch.nn.Module, suffix: str) -> None:
    """A model file is shared like any other file: safetensors' own 0600 must not leak through."""
    import os

    old = os.umask(0o027)
    try:
        path = tmp_path / f"model{suffix}"
        save_model(path, nano5, ModelMeta.default_for("saross-nano", 5, tile=256))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_expected_name_and_classes(tmp_path: Path, nano5: torch.nn.Module) -> None:
    path = tmp_path / "m.safetensors"
    save_model(path, nano5, ModelMeta.default_for("saross-nano", 5))
    with pytest.raises(ModelFileError, match="5 classes, expected 2"):
        load_model_file(path, num_classes=2)
    with pytest.raises(ModelFileError, match="wrong architecture"):
        load_model_file(path, name="saross-b")


def _rewrite_meta(src: Path, dst: Path, **changes: object) -> None:
    from safetensors.torch import load_file, save_file

    meta = json.loads(read_meta(src).to_json())
    meta.update(changes)
    save_file(load_file(str(src)), str(dst), metadata={"dakd_meta": json.dumps(meta)})


def test_weights_for_other_class_count_fail(tmp_path: Path, nano5: torch.nn.Module) -> None:
    src = tmp_path / "m.safetensors"
    save_model(src, nano5, ModelMeta.default_for("saross-nano", 5))
    bad = tmp_path / "bad.safetensors"
    _rewrite_meta(src, bad, num_classes=2, class_names=["a", "b"], palette=[[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ModelFileError, match="weights are for 5 classes but the metadata says 2"):
        load_model_file(bad)


def test_weights_for_other_architecture_fail(tmp_path: Path, nano5: torch.nn.Module) -> None:
    src = tmp_path / "m.safetensors"
    save_model(src, nano5, ModelMeta.default_for("saross-nano", 5))
    bad = tmp_path / "bad.safetensors"
    _rewrite_meta(src, bad, arch={"skip": "caft"})  # CAFT modules where the file has conv skips
    with pytest.raises(ModelFileError, match="wrong architecture"):
        load_model_file(bad)


def test_missing_file_names_file_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"not found: .*nope\.safetensors.*dakd-edge train"):
        load_model_file(tmp_path / "nope.safetensors")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"meta": "{}", "state_dict": {}, "obj": Path("x")}, path)
    with pytest.raises(ModelFileError, match="weights-only"):
        load_model_file(path)


def test_meta_must_agree_with_model(tmp_path: Path, nano5: torch.nn.Module) -> None:
    with pytest.raises(ModelFileError, match="metadata says 2 classes"):
        save_model(tmp_path / "m.safetensors", nano5, ModelMeta.default_for("saross-nano", 2))
