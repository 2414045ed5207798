"""Keyword options of every command: case-insensitive, as ``--pol vv`` always was (``--input-scale DB``
and ``--backend ONNXRUNTIME`` were refused), and passed on in the library's own spelling."""

from __future__ import annotations

from collections.abc import Sequence

import click


def keywords(choices: Sequence[str]) -> click.Choice:
    """``click.Choice`` of ``choices`` in any case; the value is the choice as written here."""
    return click.Choice(list(choices), case_sensitive=False)


# --sensor of train, evaluate and jointnet: leaving it out means both sensors, which may also be said
SENSORS = keywords(["palsar", "sentinel", "both"])


def both_is_none(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: ``both`` is the library's ``None`` (both SOS sensors, the option's default)."""
    return None if value == "both" else value
