"""Fine-tuning from a model file (``TrainConfig.init``, ``dakd-edge train --init``): the file's
architecture, weights, normalisation and tiling, and classifier rows matched to the data's classes."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.errors import InputError
from dakd_edge.models.checkpoint import load_model_file, read_meta
from dakd_edge.train.finetune import classifier_prefix, init_model
from dakd_edge.weights import bundled_path
from tests.train.tiny import write_blob_folder


@pytest.fixture(scope="module")
def bundled():
    return load_model_file(bundled_path("torch"))


def _states(a: torch.nn.Module, b: torch.nn.Module, skip: str = "head.") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not k.startswith(skip):
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_same_classes_start_from_the_file_exactly(bundled) -> None:
    src, meta = bundled
    assert classifier_prefix(src, 2) == "head"
    model, got, notes = init_model("saross-edge", {}, "bundled", ("background", "oil"))
    _states(model, src, skip="\0")
    assert got.tile == meta.tile and notes == []


def test_classes_are_matched_by_meaning_not_position(bundled) -> None:
    """Own data naming its classes (oil, sea): the bundled (background, oil) rows swap places."""
    src, _ = bundled
    model, _, notes = init_model("saross-edge", {}, "bundled", ("oil", "sea"))
    _states(model, src)
    for k in ("head.weight", "head.bias"):
        torch.testing.assert_close(model.state_dict()[k], src.state_dict()[k].flip(0), rtol=0, atol=0)
    assert notes == []


def test_new_classes_start_untrained_with_a_note(bundled) -> None:
    """OSD's five classes from the binary bundled model: sea and oil keep its rows, the rest are new."""
    src, _ = bundled
    model, _, notes = init_model("saross-edge", {}, "bundled", ("sea", "oil", "look-alike", "ship", "land"))
    _states(model, src)
    w, w0 = model.state_dict()["head.weight"], src.state_dict()["head.weight"]
    assert w.shape[0] == 5
    torch.testing.assert_close(w[:2], w0, rtol=0, atol=0)
    assert not torch.equal(w[2], w0[0]) and not torch.equal(w[2], w0[1])
    assert len(notes) == 1 and "classes look-alike, ship, land start untrained" in notes[0]


def test_architecture_follows_the_file(bundled, tmp_path) -> None:
    with pytest.raises(InputError, match="holds a 'saross-edge' model, not 'saross-t'"):
        init_model("saross-t", {}, "bundled", ("background", "oil"))
    with pytest.raises(InputError, match="changes the architecture"):
        init_model("saross-edge", {"decoder_channels": [32, 16, 16, 8, 8]}, "bundled", ("background", "oil"))
    model, _, _ = init_model("saross-edge", {"caft_window": 128}, "bundled", ("background", "oil"))
    _states(model, bundled[0], skip="\0")  # an option that changes no weight
    with pytest.raises(InputError, match="no such model file"):
        init_model("saross-edge", {}, tmp_path / "missing.safetensors", ("background", "oil"))


def _folder(root, n=6, size=64):
    write_blob_folder(root, n, size)


def test_cli_fine_tunes_the_bundled_model(tmp_path) -> None:
    """`train --init bundled` without --model: the bundled architecture, normalisation and 256/16
    tiling carry into the fine-tuned file, which loads and differs from the start by training."""
    _folder(tmp_path / "ds")
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "ds"), "--out", str(run), "--init", "bundled", "--crop", "64",
            "--batch", "2", "--steps", "2", "--warmup", "1", "--val-every", "2", "--lr", "1e-4", "--quiet"]  # fmt: skip
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    meta, start = read_meta(run / "model.safetensors"), read_meta(bundled_path("torch"))
    assert (meta.name, meta.tile, meta.overlap, meta.normalization) == (
        start.name, start.tile, start.overlap, start.normalization,
    )  # fmt: skip
    assert json.loads((run / "config.json").read_text())["init"] == "bundled"
    # the shipped file names the data folder, not its place on this machine (the run's config.json does)
    assert meta.extra["train"]["config"]["data"] == "ds" and str(tmp_path) not in json.dumps(meta.extra)
    assert json.loads((run / "config.json").read_text())["data"] == str(tmp_path / "ds")
    tuned, _ = load_model_file(run / "model.safetensors")
    base = dict(load_model_file(bundled_path("torch"))[0].named_parameters())
    diff = max(float((p - base[k]).abs().max()) for k, p in tuned.named_parameters())
    assert 0 < diff < 0.05
    bad = CliRunner().invoke(
        cli, [*args[:4], str(tmp_path / "r2"), "--init", str(tmp_path / "none.safetensors")]
    )
    assert bad.exit_code != 0 and "no such model file" in str(bad.exception)
