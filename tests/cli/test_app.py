"""The CLI frame: version, help listing, and the one-line/exit-2 error boundary."""

from __future__ import annotations

import subprocess
import sys

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


def test_unknown_command_is_usage_error() -> None:
    r = subprocess.run([sys.executable, "-m", "dakd_edge", "no-such-cmd"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_console_script_installed() -> None:
    r = subprocess.run(["dakd-edge", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout
