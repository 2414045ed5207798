"""`dakd-edge train` / `dakd-edge evaluate` called the way a user calls them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.train.common import read_jsonl
from tests.train.tiny import TINY, blob_sample, write_folder


def _folder(root, n=10, size=40):
    pairs = []
    for i in range(n):
        s = blob_sample(i, size)
        pairs.append((np.rint(s["image"][0] * 255).astype(np.uint8), s["mask"].astype(np.uint8)))
    write_folder(root, pairs)


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
