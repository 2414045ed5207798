"""`dakd-edge train` / `dakd-edge evaluate` called the way a user calls them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.train.common import read_jsonl
from tests.train.tiny import TINY, write_blob_folder


def _folder(root, n=10, size=40):
    write_blob_folder(root, n, size)


def test_train_then_evaluate_cli(tmp_path):
    _folder(tmp_path / "ds")
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "ds"), "--out", str(run), "--model", TINY, "--model-cfg",
            "width=4", "--crop", "32", "--batch", "2", "--steps", "4", "--warmup", "1", "--val-every", "2",
            "--ckpt-every", "2", "--log-every", "1", "--class-weights", "1,2", "--quiet"]  # fmt: skip
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "best val mIoU" in r.output
    assert (run / "model.safetensors").is_file() and (run / "last.pt").is_file()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model_cfg"] == {"width": 4} and cfg["class_weights"] == [1.0, 2.0] and cfg["mix"] == 0.0
    assert [x["step"] for x in read_jsonl(run / "metrics.jsonl") if "loss" in x] == [1, 2, 3, 4]

    out = tmp_path / "m.json"
    args = ["evaluate", "--model", str(run / "model.safetensors"), "--data", str(tmp_path / "ds"),
            "--split", "train", "--json", str(out), "--save-png", str(tmp_path / "png")]  # fmt: skip
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "IoU" in r.output and "mean" in r.output
    res = json.loads(out.read_text())
    assert res["images"] == 10 and 0.0 <= res["miou"] <= 1.0 and len(res["iou"]) == 2
    assert len(list((tmp_path / "png").glob("*.png"))) == 10


def test_cli_errors_are_one_line_exit_2(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "dakd_edge", "evaluate", "--model", str(tmp_path / "missing.safetensors"),
         "--data", str(tmp_path)],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().startswith("dakd-edge: error:") and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run(
        [sys.executable, "-m", "dakd_edge", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"),
         "--steps", "1", "--quiet"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2 and "nope" in p.stderr, p.stderr


def test_cli_defaults_are_the_config_defaults():
    """Every option named after a config field defaults to the dataclass's value (one place)."""
    from dataclasses import fields

    from dakd_edge.cli.jointnet import jointnet
    from dakd_edge.cli.train import train
    from dakd_edge.train.config import JointNetTrainConfig, TrainConfig

    parsed = {"model_cfg", "class_weights", "stage_steps"}  # text options the command parses
    cli_own = {"synthetic_classes"}  # the command line's stated exception (5 classes)
    checked = 0
    for command, cls in ((train, TrainConfig), (jointnet.commands["train"], JointNetTrainConfig)):
        defaults = {f.name: f.default for f in fields(cls)}
        for p in command.params:
            if p.name in defaults and p.name not in parsed | cli_own and not p.required:
                assert p.default == defaults[p.name], (command.name, p.name)
                checked += 1
    assert checked > 40


def _tiny_train(tmp_path, *extra):
    return ["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--model", TINY,
            "--model-cfg", "width=4", "--crop", "32", "--batch", "2", "--steps", "1", "--warmup", "0",
            "--quiet", *extra]  # fmt: skip


def test_train_refuses_an_existing_run_unless_overwrite(tmp_path, run_cli):
    _folder(tmp_path / "ds", n=4)
    code, _, err = run_cli(_tiny_train(tmp_path, "--mix", "0.3", "--kd-weight", "2"))
    assert code == 0, err
    assert "warning: --mix, --kd-weight act on generated images only and have no effect without --aug" in err
    before = (tmp_path / "run" / "config.json").read_text()
    code, _, err = run_cli(_tiny_train(tmp_path, "--lr", "0.5"))
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (tmp_path / "run" / "config.json").read_text() == before
    code, _, err = run_cli(_tiny_train(tmp_path, "--lr", "0.5", "--overwrite"))
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.5


def test_train_bad_values_are_one_line_naming_the_option(tmp_path, run_cli):
    _folder(tmp_path / "ds", n=2, size=32)
    for extra, text in (
        (["--ema", "1.5"], "--ema must be in [0, 1)"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
        (["--mix", "1.5"], "1.5 is not in the range"),  # refused even without --aug
        (["--model-cfg", "width=bogus"], "--model-cfg width=bogus does not fit model"),
        (["--synthetic-ratio", "0.5", "--synthetic", "-3"], "--synthetic must be >= 0"),
        (["--steps", "0"], "--steps must be a finite number > 0, got 0"),  # was "--batch and steps ..."
        (["--synthetic-ratio", "2"], "--synthetic-ratio must be in [0, 1], got 2"),  # was "--mix and ..."
    ):
        code, _, err = run_cli(_tiny_train(tmp_path, *extra))
        assert code == 2 and text in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "run").exists()


def test_jointnet_cli_refuses_bad_values_before_training(tmp_path, run_cli):
    base = ["jointnet", "train", "--synthetic", "2", "--preset", "tiny", "--crop", "16", "--batch-size", "2",
            "--device", "cpu", "--no-progress", "--out", str(tmp_path / "jn")]  # fmt: skip
    for extra, text in (
        (["--stage-steps", "0,0,0"], "--stage-steps are all 0: nothing to train"),
        (["--crop", "7"], "--crop must be >= 8"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--ema-decay", "1.5"], "--ema-decay must be in [0, 1)"),
        (["--b", "-2"], "--b must be a finite number > 0"),
        (["--sample-every", "1", "--sample-steps", "0"], "--sample-steps must be >= 1"),
        (["--stop-after", "0"], "0 is not in the range x>=1"),
    ):
        code, _, err = run_cli(base + extra)
        assert code == 2 and text in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "jn").exists()


def test_generate_and_report_refuse_empty_work(tmp_path, run_cli):
    from dakd_edge.train.generate import generate_augmented

    for extra in (["--steps", "0"], ["--steps", "5000"], ["--size", "-32"], ["--size", "0"]):
        code, _, err = run_cli(["jointnet", "generate", str(tmp_path / "x.pt"), "--out", str(tmp_path / "a"),
                                *extra])  # fmt: skip
        assert code == 2 and "is not in the range" in err, (extra, err)
    for kw in ({"steps": 5000}, {"size": -32}):
        with pytest.raises(ValueError, match="must be"):
            generate_augmented(tmp_path / "x.pt", tmp_path / "a", 2, **kw)
    assert not (tmp_path / "a").exists()
    code, _, err = run_cli(["jointnet", "report", str(tmp_path), "--real", str(tmp_path), "--limit", "0"])
    assert code == 2 and "--limit" in err
    for opt in ("--limit", "--size"):
        code, _, err = run_cli(["jointnet", "balance", "--synthetic", "2", opt, "0"])
        assert code == 2 and opt in err and "Traceback" not in err


def test_worker_errors_and_memory_hints_are_short():
    from dakd_edge.cli.app import _memory_options, _worker_error

    caught = (
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise DatasetError(m)\n'
        "dakd_edge.errors.DatasetError: cannot read augmented sample 000000: truncated file\n"
    )
    assert _worker_error(caught) == "cannot read augmented sample 000000: truncated file"
    assert _worker_error("plain: message") == "plain: message"
    assert _memory_options(["train", "--crop", "9"]) == "--crop or --batch"
    assert _memory_options(["jointnet", "train"]).startswith("--crop or --batch-size")
    assert _memory_options(["segment", "a.tif"]) == "--tile or --batch"


def test_dataset_notices_are_one_line_in_jointnet(tmp_path, run_cli):
    """A mask without an image is skipped with a counted warning: one ``dakd-edge: warning:`` line, not
    Python's warning with a source line (``jointnet`` printed the latter)."""
    _folder(tmp_path / "ds", n=4, size=16)
    (tmp_path / "ds" / "images" / "s002.png").unlink()
    code, out, err = run_cli(["jointnet", "balance", "--data", str(tmp_path / "ds")])
    assert code == 0 and "b = " in out, err
    assert err.strip().splitlines() == [
        f"dakd-edge: warning: 1 mask(s) without an image in {tmp_path / 'ds' / 'images'} are not used "
        f"(first: {tmp_path / 'ds' / 'masks' / 's002.png'})"
    ]


def test_jointnet_stage_steps_default_to_design_for_the_data(tmp_path):
    """The paper trains OSD's Label-Net stage longer (50K / 250K / 100K) than SOS's (50K / 150K / 50K);
    the default followed SOS for every dataset. An explicit --stage-steps is kept as given."""
    from dakd_edge.cli.jointnet import _design_steps

    osd = tmp_path / "osd" / "train"
    (osd / "images").mkdir(parents=True)
    (osd / "labels").mkdir()
    base = {"data": str(tmp_path / "osd"), "data_kind": "auto", "synthetic": 0}
    assert _design_steps(base) == (50_000, 250_000, 100_000)
    assert _design_steps({**base, "data_kind": "sos"}) == (50_000, 150_000, 50_000)
    assert _design_steps({"data": None, "data_kind": "auto", "synthetic": 8}) == (50_000, 150_000, 50_000)
    (tmp_path / "sos" / "train" / "palsar").mkdir(parents=True)
    assert _design_steps({**base, "data": str(tmp_path / "sos")}) == (50_000, 150_000, 50_000)


def test_jointnet_stage_steps_help_names_the_defaults_not_an_unshipped_file():
    """The help pointed at "DESIGN.md", a file neither the package nor the repository holds."""
    out = CliRunner().invoke(cli, ["jointnet", "train", "--help"], terminal_width=200).output
    assert "DESIGN.md" not in out
    assert "the paper's for the data: 50000,250000,100000 for OSD, else 50000,150000,50000" in out


def test_train_says_what_data_it_read(tmp_path, run_cli):
    """`train` said nothing of its data: own RGB labels (oil red) in images/ + labels/ were read with the
    OSD colours (red = look-alike) and a set without oil trained without a word."""
    from PIL import Image

    _folder(tmp_path / "ds", n=3)
    code, out, err = run_cli(_tiny_train(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == [
        f"data: {tmp_path / 'ds'} (folder), 3 pairs: 2 to train on, 1 held out for validation",
        "masks: class ids in masks/, classes guessed from them (no classes.json)",
    ]
    assert lines[2].startswith("classes (pixel share of 3 masks): 0 background ") and not err
    (tmp_path / "ds" / "masks").rename(tmp_path / "ds" / "labels")
    for p in (tmp_path / "ds" / "labels").iterdir():  # own colours: oil red
        ids = np.asarray(Image.open(p))
        Image.fromarray(np.array([(0, 0, 0), (255, 0, 0)], np.uint8)[ids]).save(p)
    code, out, err = run_cli(_tiny_train(tmp_path, "--overwrite"))
    assert code == 0, err
    assert "masks: labels/ colours read as the OSD palette (black sea, cyan oil, red look-alike" in out
    assert (
        "dakd-edge: warning: no oil in the data: class 'oil' covers 0% of the labelled pixels of 3 masks"
        in err
    )
