"""`--help` of every command: every option explained, 80 columns without broken words, one way of
writing an unshown default, the aliases, and help that says what the code does."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest

from dakd_edge.cli.app import cli

WIDTH = 80


def _walk(cmd: click.Command, path: tuple[str, ...], parent: click.Context | None = None) -> Iterator:
    ctx = click.Context(cmd, info_name=path[-1] if path else "dakd-edge", parent=parent)
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            yield from _walk(sub, (*path, name), ctx)


COMMANDS = {" ".join(path): cmd for path, cmd in _walk(cli, ()) if path}
OPTIONS = [
    pytest.param(name, p, id=f"{name} {p.opts[-1]}")
    for name, cmd in COMMANDS.items()
    for p in cmd.params
    if isinstance(p, click.Option)
]


def _help_text(run_cli, monkeypatch: pytest.MonkeyPatch, command: str) -> str:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    code, out, err = run_cli([*command.split(), "--help"])
    assert code == 0, err
    return out


def test_the_walk_reaches_every_command() -> None:
    assert {"segment", "batch", "demo", "bench", "train", "jointnet train", "jointnet report"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command, option", OPTIONS)
def test_every_option_has_help(command: str, option: click.Option) -> None:
    assert (option.help or "").strip(), f"{command} {option.opts[-1]} has no help"


@pytest.mark.parametrize("command, option", OPTIONS)
def test_unshown_defaults_are_written_one_way(command: str, option: click.Option) -> None:
    """``[default: X]``, as click itself writes a shown one; not ``(default: X)``, ``Default: X.`` or a
    bare ``[X]``."""
    text = option.help or ""
    assert not re.search(r"\(default|(?<!\[)default:", text, re.IGNORECASE), text
    assert all(text[i:].startswith("[default: ") for i, c in enumerate(text) if c == "["), text


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_two_options_share_a_name(command: str) -> None:
    names = [o for p in COMMANDS[command].params for o in (*p.opts, *p.secondary_opts)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_fits_80_columns_without_broken_words(
    run_cli, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """click wraps at hyphens and cuts long words: ``--log-`` / ``every`` was an option name no one
    could copy."""
    text = _help_text(run_cli, monkeypatch, command)
    assert all(len(line) <= WIDTH for line in text.splitlines()), text
    words = set(text.split())
    for p in COMMANDS[command].params:
        broken = [w for w in (getattr(p, "help", None) or "").split() if w not in words]
        assert not broken, (p.opts, broken)


def test_jointnet_lists_its_commands_without_cutting_them(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help_text(run_cli, monkeypatch, "jointnet")
    listing = text.split("Commands:", 1)[1].strip().splitlines()
    assert len(listing) == 4  # one line each
    for line in listing:
        name, short = line.split(None, 1)
        assert short == COMMANDS[f"jointnet {name}"].short_help, line
        assert "..." not in short and "(Eq.\n" not in text


@pytest.mark.parametrize(
    "command, argv, expected",
    [
        ("train", ["--data", "d", "-o", "run", "-q"], {"out_dir": "run", "quiet": True}),
        ("train", ["--data", "d", "--out", "run", "--quiet"], {"out_dir": "run", "quiet": True}),
        ("jointnet train", ["-o", "run", "-q"], {"out": "run", "no_progress": True}),
        ("jointnet train", ["--out", "run", "--quiet"], {"out": "run", "no_progress": True}),
        ("jointnet train", ["--out", "run", "--no-progress"], {"out": "run", "no_progress": True}),
        ("jointnet train", ["--out", "run"], {"out": "run", "no_progress": False}),
        ("jointnet generate", ["ck.pt", "-o", "aug", "-q"], {"out": "aug", "no_progress": True}),
        ("jointnet generate", ["ck.pt", "--out", "aug", "--quiet"], {"out": "aug", "no_progress": True}),
        (
            "jointnet generate",
            ["ck.pt", "--out", "aug", "--no-progress"],
            {"out": "aug", "no_progress": True},
        ),
    ],
)
def test_aliases(command: str, argv: list[str], expected: dict) -> None:
    """-o for --out and -q/--quiet for no progress bar, as the other commands spell them (the old
    names stay)."""
    ctx = COMMANDS[command].make_context(command, list(argv))
    assert {k: ctx.params[k] for k in expected} == expected


def test_input_scale_and_land_mask_help_name_every_choice() -> None:
    """The input-domain warning says "check --input-scale": its help must say what each value means."""
    from dakd_edge.data.scaling import SCALES

    for command in ("segment", "batch"):
        params = {p.name: p for p in COMMANDS[command].params}
        scale = params["input_scale"].help or ""
        assert all(f"{s}:" in scale for s in SCALES), scale
        land = params["land_mask"].help or ""
        assert all(v in land for v in ("auto", "globe", "none", "file")), land


def test_export_help_states_the_scaled_tolerance(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs print ``tol 1.1e-03``: the bar is atol x max(1, max|logit|), not a flat 1e-4."""
    from dakd_edge.export.parity import TOLERANCES

    text = " ".join(_help_text(run_cli, monkeypatch, "export").split())
    assert "max(1, max|logit|)" in text
    for precision, tol in TOLERANCES.items():
        atol = f"{tol.atol:.0e}".replace("e-0", "e-")
        assert f"{atol} for {precision}" in text, (precision, atol)
        assert f"{100 * tol.min_argmax_agreement:g}%" in text


def test_max_regression_help_matches_the_parser() -> None:
    from dakd_edge import bench as lib
    from dakd_edge.errors import InputError

    text = next(p.help for p in COMMANDS["bench"].params if p.name == "max_regression") or ""
    assert "10%" in text and "0.1" in text and "refused" in text
    assert lib.parse_threshold("10%") == pytest.approx(lib.parse_threshold("0.1")) == pytest.approx(0.1)
    with pytest.raises(InputError, match="ambiguous"):
        lib.parse_threshold("10")


def test_window_help_says_pixels_and_multiple_of_16() -> None:
    text = next(p.help for p in COMMANDS["synth"].params if p.name == "window") or ""
    assert "pixels" in text and "multiple of 16" in text
