"""`dakd-edge` in-process, and the one-error-line contract the reliability tests check."""

from __future__ import annotations

import pytest

from dakd_edge.cli.app import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def one_error_line(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dakd-edge: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
