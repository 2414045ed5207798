"""`dakd-edge models`: lists the registry with parameter counts, as a table or JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from dakd_edge.cli.app import cli


def test_table_lists_matching_models() -> None:
    res = CliRunner().invoke(cli, ["models", "saross-*"])
    assert res.exit_code == 0, res.output
    for name in ("saross-nano", "saross-t", "saross-s", "saross-b", "saross-r34"):
        assert name in res.output
    assert "unet" not in res.output


def test_json_counts_parameters() -> None:
    res = CliRunner().invoke(cli, ["models", "saross-nano", "--json", "--num-classes", "5"])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    from dakd_edge import create_model

    model = create_model("saross-nano", num_classes=5)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["exportable"] is True and row["config"]["num_classes"] == 5


def test_no_match_is_one_line_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dakd_edge", "models", "no-such-*"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dakd-edge: error: no model matches")
    assert "Traceback" not in proc.stderr


def test_non_positive_num_classes_is_a_usage_error() -> None:
    for n in ("0", "-3"):
        res = CliRunner().invoke(cli, ["models", "saross-nano", "--num-classes", n])
        assert res.exit_code == 2, res.output
        assert "Invalid value for '--num-classes'" in res.output


def test_models_says_which_model_exports_at_fixed_shapes_only() -> None:
    """pspnet was listed "export: yes" though a dynamic (default) export fails."""
    res = CliRunner().invoke(cli, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert "multiples of 96" in rows["pspnet"]["export_shapes"] and rows["unet"]["export_shapes"] is None


def test_json_given_a_file_name_says_it_is_a_flag() -> None:
    """`models --json out.json` said "no model matches 'out.json'" (bench and evaluate take --json FILE)."""
    res = CliRunner().invoke(cli, ["models", "--json", "out.json"])
    assert res.exit_code == 2 and "--json is a flag here" in res.output and "> out.json" in res.output


def test_a_narrow_terminal_keeps_names_and_sizes_whole() -> None:
    """At 40 columns the table cut names to "saross…": an operator could not read or copy them."""
    res = CliRunner().invoke(cli, ["models", "saross-*"], env={"COLUMNS": "40"}, terminal_width=40)
    assert res.exit_code == 0, res.output
    import re

    assert (
        "saross-edge" in res.output and "saross-nano" in res.output and re.search(r"108\.\d\dM", res.output)
    )


def test_a_model_a_user_registered_is_listed(monkeypatch) -> None:
    """A model registered with dakd_edge.registry.register_model (a plain nn.Module with its own config)
    made `dakd-edge models` fail with AttributeError: 'cfg' has no attribute 'arch'."""
    from dataclasses import dataclass

    import torch

    from dakd_edge import registry

    @dataclass
    class MineConfig:
        width: int = 4

    class Mine(torch.nn.Module):
        """A team's own segmenter."""

        exportable = False

        def __init__(self, num_classes: int = 2, in_chans: int = 1) -> None:
            super().__init__()
            self.config = MineConfig()
            self.conv = torch.nn.Conv2d(in_chans, num_classes, 1)

    monkeypatch.setitem(
        registry._REGISTRY, "mine-test", lambda num_classes=2, in_chans=1, **cfg: Mine(num_classes, in_chans)
    )
    res = CliRunner().invoke(cli, ["models", "--json", "mine-*"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["description"] == "Mine: A team's own segmenter." and row["config"] == {"width": 4}
    assert row["exportable"] is False and row["params"] == 4
