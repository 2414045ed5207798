"""``--json`` given alone prints to stdout on every command: ``bench --json`` (the README's habit from
``models --json``) was "requires an argument" while ``bench --json b.json`` wrote a file."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
import pytest
from click.testing import CliRunner

import dakd_edge.cli.bench  # noqa: F401  (reads run_bench's defaults at import: before the patch)
from dakd_edge import bench as lib
from dakd_edge.cli.streams import STDOUT, json_out_option


@click.command()
@click.argument("data", required=False)
@json_out_option("JSON here.")
@click.option("--n", default=1)
def _probe(data, json_out, n) -> None:
    click.echo(json.dumps([data, json_out, n]))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--json"], [None, STDOUT, 1]),
        (["--json", "--n", "2"], [None, STDOUT, 2]),
        (["d", "--json"], ["d", STDOUT, 1]),
        (["--json", "-"], [None, STDOUT, 1]),
        (["--json", "/dev/stdout"], [None, STDOUT, 1]),
        (["--json", "r.json", "d"], ["d", "r.json", 1]),
        ([], [None, None, 1]),
    ],
)
def test_json_option_alone_is_stdout_and_still_takes_a_file(argv, expected) -> None:
    result = CliRunner().invoke(_probe, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_bench_json_alone_prints_the_results_to_stdout(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    row = lib.Row("onnxruntime", "fp32", 256, 1, model="m.onnx", p50_ms=1.0, p99_ms=2.0, mpix_per_s=3.0)
    doc = {"format": lib.FORMAT, "environment": {}, "settings": {}, "method": {}, "results": [asdict(row)]}
    monkeypatch.setattr(lib, "run_bench", lambda **kw: doc)
    code, out, err = run_cli(["bench", "--json", "--device", "cpu"])
    assert code == 0, err
    assert json.loads(out)["results"][0]["mpix_per_s"] == 3.0
