"""Notices printed as one line as they happen, for every command (entered once, in ``cli.app.main``)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import click

from dakd_edge.errors import DakdWarning


def warning_line(message: object) -> None:
    """Print ``message`` as one ``dakd-edge: warning:`` line on stderr, as every command does."""
    click.echo(f"dakd-edge: warning: {message}", err=True)


@contextlib.contextmanager
def notices_as_lines() -> Iterator[None]:
    """Print each :class:`~dakd_edge.errors.DakdWarning` (notice or input-domain warning) as one ``dakd-edge: warning:`` line when it is raised (not at the end
    of a run that may last hours, and not as Python's two-line warning with a source line); other
    warnings are shown as before."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kw: Any) -> None:
            if issubclass(category, DakdWarning):
                warning_line(message)
            else:
                shown(message, category, *args, **kw)

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def scene_notices() -> Iterator[None]:
    """One scene's run: each notice or input-domain warning printed when raised, every time (the same note for the
    next scene is news too), so a failure or an interrupt mid-scene still leaves the notes said before
    it. Other warnings (GDAL's, numpy's) are dropped, as they always were here."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")

        def show(message: Any, category: type[Warning], *args: Any, **kw: Any) -> None:
            if issubclass(category, DakdWarning):
                warning_line(message)

        warnings.showwarning = show
        yield
