"""``-`` for standard output in the options that write JSON, and the names a shell user gives it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

STDOUT = "-"
# What users type for standard output instead of "-". Written through as a path they fail: atomic
# replacement refuses a pipe or terminal (a device node must not be replaced), and a redirect to a file
# reads as an existing output.
STDOUT_NAMES = frozenset({"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", f"/proc/{os.getpid()}/fd/1"})


def stderr_is_terminal() -> bool:
    """Whether progress bars are drawn (rich's view of stderr, ``FORCE_COLOR`` / ``TTY_COMPATIBLE``
    included): in a log or a CI capture a bar's last frame was a line of box characters."""
    from rich.console import Console

    return Console(stderr=True).is_terminal


def stdout_alias(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: ``/dev/stdout`` (and its ``/dev/fd/1`` / ``/proc/self/fd/1`` spellings) is ``-``."""
    return STDOUT if value is not None and os.path.normpath(value) in STDOUT_NAMES else value


def json_out_option(help: str) -> Callable[[Any], Any]:
    """``--json [FILE]`` of evaluate, bench and jointnet report: a file, or ``-`` / ``/dev/stdout``.

    Given alone, ``--json`` is ``-``, as on the commands where it is a flag (models, export, info,
    demo): ``bench --json`` was "requires an argument" where ``models --json`` printed JSON.
    """
    return click.option(
        "--json",
        "json_out",
        type=click.Path(dir_okay=False),
        is_flag=False,
        flag_value=STDOUT,
        callback=stdout_alias,
        help=help,
    )
