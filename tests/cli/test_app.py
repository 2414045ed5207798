"""The CLI frame: version, help listing, and the one-line/exit-2 error boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dakd_edge import __version__
from dakd_edge.cli.app import COMMANDS, main
from dakd_edge.errors import InputError


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_dakd_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import click

    from dakd_edge.cli import app as main_mod

    @click.command("boom")
    def boom() -> None:
        raise InputError("scene.tif: not a raster")

    monkeypatch.setattr(main_mod.LazyGroup, "get_command", lambda self, ctx, name: boom)
    with pytest.raises(SystemExit) as e:
        main(["boom"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "dakd-edge: error: scene.tif: not a raster"


def test_unknown_command_is_usage_error(run_cli) -> None:
    r = subprocess.run([sys.executable, "-m", "dakd_edge", "no-such-cmd"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "Did you mean" not in r.stderr
    code, _, err = run_cli(["segmnt", "x.tif"])
    assert code == 2 and "No such command 'segmnt'. Did you mean 'segment'?" in err


@pytest.mark.parametrize("argv", [[], ["jointnet"]])
def test_a_group_without_a_command_prints_its_help_as_it_is(run_cli, argv: list[str]) -> None:
    """click >= 8.2 raises the help as a usage error; it was squashed into one 'error:' line."""
    code, out, err = run_cli(argv)
    assert code == 2 and out == ""
    assert err.startswith("Usage: dakd-edge") and "error:" not in err
    assert "\nCommands:\n" in err and len(err.splitlines()) > 8


def test_console_script_installed() -> None:
    r = subprocess.run(["dakd-edge", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


@pytest.fixture
def fake_demo_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from dakd_edge.cli import segment as seg_cli
    from dakd_edge.inference.predictor import Predictor
    from tests.inference.fake import FakeBackend

    monkeypatch.setattr(
        seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(tile=64), tile=64, overlap=16)
    )


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), capsys.readouterr().err


def test_demo_negative_seed_is_one_line(
    tmp_path: Path, fake_demo_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """numpy refuses negative seeds with a ValueError: the user gets one line, not a traceback."""
    code, err = _run(["demo", "-o", str(tmp_path / "d"), "--seed", "-1", "--size", "64", "-q"], capsys)
    assert code == 2 and "seed" in err and err.count("\n") == 1 and "Traceback" not in err


def test_demo_usage_error_leaves_no_folder(
    tmp_path: Path, fake_demo_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run(["demo", "-o", str(tmp_path / "d"), "--seed", "-1", "--size", "64", "-q"], capsys)
    assert code == 2 and not (tmp_path / "d").exists()


def test_demo_out_dir_that_is_a_file(
    tmp_path: Path, fake_demo_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    code, err = _run(["demo", "-o", str(f), "--size", "64", "-q"], capsys)
    assert code == 2 and "is a file" in err and "does not exist" not in err
    assert f.read_text() == "x"


@pytest.mark.parametrize("command", ["segment", "batch", "export"])
def test_help_states_the_defaults_the_code_uses(run_cli, command: str) -> None:
    """--overlap defaults to the model's own overlap at its own tile (not always 64); an engine is
    chosen by every engine suffix, not only .engine."""
    from dakd_edge.formats import ENGINE
    from dakd_edge.inference.predictor import DEFAULT_OVERLAP

    code, out, _ = run_cli([command, "--help"])
    text = " ".join(out.split())
    assert code == 0
    if command == "export":
        assert all(s in text for s in ENGINE.suffixes)
    else:
        overlap = text.split("--overlap", 1)[1].split(" --", 1)[0]
        assert "model's" in overlap and str(DEFAULT_OVERLAP) in overlap


@pytest.mark.parametrize(
    "argv, help_of",
    [
        (["segment", "x.tif", "-o"], "dakd-edge segment"),
        (["jointnet", "train", "--out"], "dakd-edge jointnet train"),
    ],
)
def test_an_option_without_its_value_points_at_its_command_s_help(run_cli, argv, help_of) -> None:
    """click raises this usage error without a context: the line said "see 'dakd-edge --help'"."""
    code, _, err = run_cli(argv)
    assert code == 2 and err.strip().endswith(f"requires an argument. (see '{help_of} --help')"), err


def _raising(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    import click

    from dakd_edge.cli import app as main_mod

    @click.command("boom")
    @click.argument("path", required=False)
    def boom(path: str | None) -> None:
        raise error

    monkeypatch.setattr(main_mod.LazyGroup, "get_command", lambda self, ctx, name: boom)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[ONNXRuntimeError] : 1 : FAIL : std::bad_alloc"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 4 GB"),
        RuntimeError("can't start new thread"),
    ],
)
def test_a_runtime_s_out_of_memory_error_is_one_line(monkeypatch, capsys, error: Exception) -> None:
    """ONNX Runtime's bad_alloc and torch's allocator failure under a memory limit were 40-line
    tracebacks with exit 1; they are 'out of memory' lines with the options that size memory."""
    _raising(monkeypatch, error)
    with pytest.raises(SystemExit) as e:
        main(["segment"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dakd-edge: error: out of memory: ") and err.endswith(
        "(try a smaller --tile or --batch)"
    )


def test_other_runtime_errors_still_raise(monkeypatch) -> None:
    _raising(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["segment"])


def test_a_file_name_that_is_not_utf8_is_one_line(monkeypatch, capsys) -> None:
    """rasterio raised UnicodeEncodeError ('surrogates not allowed') as a traceback, exit 1."""
    import os

    name = os.fsdecode(b"bad\xff\xfename.tif")
    _raising(monkeypatch, UnicodeEncodeError("utf-8", name, 3, 4, "surrogates not allowed"))
    with pytest.raises(SystemExit) as e:
        main(["segment", name])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("dakd-edge: error: bad\\xff\\xfename.tif: a file name that is not valid UTF-8, which GDAL "
                   "cannot open or write; rename it")  # fmt: skip


def test_real_non_utf8_scene_name_through_segment(tmp_path: Path, capsys) -> None:
    import os

    from tests.inference.fake import blob_scene, write_tif

    raw = os.fsencode(str(tmp_path)) + b"/bad\xff.tif"
    src = write_tif(tmp_path / "ok.tif", blob_scene(32, 32))
    os.rename(src, raw)
    with pytest.raises(SystemExit) as e:
        main(["segment", os.fsdecode(raw), "-o", str(tmp_path / "c.tif"), "-q"])
    assert e.value.code == 2
    assert "not valid UTF-8" in capsys.readouterr().err
