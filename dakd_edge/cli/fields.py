"""Click options backed by the fields of a config dataclass: one place for every default.

``field_option(TrainConfig, "lr")`` is ``--lr`` with the dataclass default (shown in ``--help``) and the
field's name as the parameter name; ``config_from(TrainConfig, options)`` builds the config from every
option named after a field. A command then restates no default and copies no field by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

import click
from click.core import ParameterSource

C = TypeVar("C")


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` of ``cls`` (its factory's value for mutable ones)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def field_option(cls: type, name: str, *decls: str, **kw: Any) -> Callable[[Any], Any]:
    """``click.option`` for field ``name``: flag ``--name-with-dashes`` unless ``decls`` are given,
    default from the dataclass (``show_default``) unless ``default`` is given."""
    if "default" not in kw:
        kw["default"] = field_default(cls, name)
    if kw["default"] is not None and not kw.get("is_flag"):
        kw.setdefault("show_default", True)
    return click.option(*(decls or ("--" + name.replace("_", "-"),)), name, **kw)


def config_from(cls: Callable[..., C], options: Mapping[str, Any], **overrides: Any) -> C:
    """``cls`` built from the ``options`` named after its fields, then ``overrides``."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{**{k: v for k, v in options.items() if k in known}, **overrides})


def given(ctx: click.Context, name: str) -> bool:
    """Whether the command line (or the environment) set parameter ``name``, not its default."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def flags_of(ctx: click.Context, names: Iterable[str]) -> list[str]:
    """The flag of each parameter in ``names`` as users type it, its longest (``balancing_factor`` ->
    ``--b``, ``data_kind`` -> ``--kind``): not its name with dashes, which may be no option at all."""
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params if p.opts}
    return [flags[n] for n in names]
