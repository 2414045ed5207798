"""Fixtures shared by the CLI tests: commands run through the console entry point, as a user runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dakd_edge.cli.app import main

RunCli = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """``run_cli(argv)`` runs ``dakd-edge *argv`` in-process through :func:`dakd_edge.cli.app.main`
    (which always exits) and returns ``(exit code, stdout, stderr)`` captured during the call."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        out, err = capsys.readouterr()
        return int(e.value.code or 0), out, err

    return run


@pytest.fixture(scope="session")
def nano_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saross-nano checkpoint (random weights) for the export commands; tests only read it."""
    from dakd_edge.export.onnx import load_for_export
    from dakd_edge.models.checkpoint import save_model

    model, meta = load_for_export("saross-nano", num_classes=2)
    path = tmp_path_factory.mktemp("ckpt") / "nano.safetensors"
    save_model(path, model, meta)
    return path
