"""Keyword options take any case (``--input-scale DB``, ``--backend ONNXRUNTIME`` were refused while
``--pol vv`` was taken), ``--sensor both`` means what its help says, and ``batch --device`` names what
batch takes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
import rasterio

from dakd_edge.cli import segment as seg_cli
from dakd_edge.cli.app import cli
from dakd_edge.errors import DakdError
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, write_tif


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    ctx = click.Context(group)
    found = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            found.update(_commands(cmd, (*path, name)))
        else:
            found[" ".join((*path, name))] = cmd
    return found


COMMANDS = _commands()


def test_every_choice_option_takes_any_case() -> None:
    choices = {
        f"{name} {p.opts[-1]}": p.type
        for name, cmd in COMMANDS.items()
        for p in cmd.params
        if isinstance(p.type, click.Choice)
    }
    assert len(choices) >= 30  # every command's keywords, not an empty walk
    assert [opt for opt, t in choices.items() if t.case_sensitive] == []


def _param(command: str, opt: str) -> click.Parameter:
    return next(p for p in COMMANDS[command].params if opt in p.opts)


def test_segment_passes_keywords_in_the_librarys_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    loads: list[tuple] = []

    def load(model, backend, device, *a):
        loads.append((backend, device))
        return Predictor(FakeBackend(tile=64), tile=64)

    monkeypatch.setattr(seg_cli, "load_predictor", load)
    scene = write_tif(tmp_path / "s.tif", np.full((64, 64), -18.0, np.float32))
    probs = tmp_path / "p.tif"
    code, out, err = run_cli(
        ["segment", str(scene), "-o", str(tmp_path / "c.tif"), "--probs", str(probs), "-q", "--report", "-",
         "--input-scale", "DB", "--backend", "Auto", "--probs-dtype", "FLOAT16", "--border-noise", "KEEP"]
    )  # fmt: skip
    assert code == 0, err
    assert loads == [("auto", "cpu")] and json.loads(out)["input_scale"] == "db"
    with rasterio.open(probs) as ds:  # float16 is stored as 16-bit floats in a float32 band
        assert (ds.dtypes[0], ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")) == ("float32", "16")


SENSOR_OPTIONS = [
    ("evaluate", ["--sensor"], "sensor"),
    ("train", ["--data", "d", "-o", "run", "--sensor"], "sensor"),
    ("jointnet balance", ["--sensor"], "sensor"),
    ("jointnet train", ["-o", "run", "--sensor"], "sensor"),
    ("jointnet report", ["gen", "--real", "real", "--real-sensor"], "real_sensor"),
]


@pytest.mark.parametrize("command, argv, name", SENSOR_OPTIONS)
def test_sensor_both_is_what_leaving_it_out_means(command: str, argv: list[str], name: str) -> None:
    """The help says "[default: both]", and --sensor both was "'both' is not one of 'palsar', 'sentinel'"."""
    param = COMMANDS[command]

    def parsed(*value: str) -> object:
        args = argv + list(value) if value else argv[:-1]
        return param.make_context(command, args).params[name]

    assert "[default: both]" in (_param(command, argv[-1]).help or "")
    assert parsed() is None
    assert parsed("both") is None and parsed("BOTH") is None
    assert parsed("Palsar") == "palsar" and parsed("sentinel") == "sentinel"


# (ids without "gpu", which tests/conftest.py skips on a machine without one)
@pytest.mark.parametrize("device", ["gpu", "auto", "cuda:x"], ids=["word", "auto", "bad-index"])
def test_batch_device_error_names_what_batch_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli, device: str
) -> None:
    """`batch --device gpu` said "use cpu, cuda, cuda:N or auto", and auto is refused by batch."""
    import dakd_edge.batch as batch_lib

    monkeypatch.setattr(batch_lib, "run", lambda *a, **k: pytest.fail("batch ran with a bad --device"))
    code, out, err = run_cli(["batch", str(tmp_path), "--out", str(tmp_path / "b"), "--device", device])
    assert (code, out) == (2, "")
    assert err == (
        f"dakd-edge: error: batch --device {device!r}: give cpu, cuda or cuda:N (Ray reserves one GPU per "
        "worker)\n"
    )


def test_batch_takes_cpu_cuda_and_cuda_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:
    import dakd_edge.batch as batch_lib

    devices: list[str] = []

    def run(inputs, out, **kw) -> dict:
        devices.append(kw["device"])
        raise DakdError("stop")

    monkeypatch.setattr(batch_lib, "run", run)
    for device in ("cpu", "cuda", "cuda:1"):
        code, _, err = run_cli(["batch", str(tmp_path), "--out", str(tmp_path / "b"), "--device", device])
        assert (code, err) == (2, "dakd-edge: error: stop\n")
    assert devices == ["cpu", "cuda", "cuda:1"]
