"""`dakd-edge export` refuses, in one line and before any work: its own input as output, a suffix that
contradicts the format, and sizes or opsets it cannot export (audit F3, F5, F9, F10)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dakd_edge.cli.app import main
from dakd_edge.errors import OutputError

pytest.importorskip("torch")


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(["export", *argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and not out, (out, err)
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_output_that_is_the_input_model_is_refused(nano_ckpt: Path, tmp_path: Path, capsys) -> None:
    before = nano_ckpt.read_bytes()
    link = tmp_path / "link.onnx"
    link.symlink_to(nano_ckpt)
    hard = tmp_path / "hard.onnx"
    os.link(nano_ckpt, hard)
    for out in (nano_ckpt, link, hard):  # the checkpoint used to become an ONNX file
        _one_line([str(nano_ckpt), "-o", str(out), "--overwrite"], capsys, "is the input model", "refusing")
    assert nano_ckpt.read_bytes() == before


@pytest.mark.parametrize(
    "name, fmt, needle",
    [
        ("m.engine", "onnx", "--format onnx does not match"),  # wrote ONNX bytes into m.engine
        ("m.plan", "onnx", "--format onnx does not match"),
        ("m.onnx", "engine", "--format engine does not match"),
        ("m.safetensors", None, "export writes ONNX"),
        ("m.pt", "onnx", "export writes ONNX"),
    ],
)
def test_suffix_and_format_must_agree(
    tmp_path: Path, capsys, name: str, fmt: str | None, needle: str
) -> None:
    out = tmp_path / name
    _one_line(["saross-nano", "-o", str(out), *(["--format", fmt] if fmt else [])], capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_format_follows_the_suffix() -> None:
    from dakd_edge.cli.export import output_format

    assert output_format("m.engine", None) == output_format("m.PLAN", None) == "engine"
    assert output_format("m.onnx", None) == output_format("m.ONNX", "onnx") == "onnx"
    # no model suffix: segment, evaluate and bench could not tell the written file's format
    for name, fmt, fix in (
        ("m", None, "m.onnx"),
        ("m.bin", None, "m.bin.onnx"),
        ("m.bin", "engine", "m.bin.engine"),
    ):
        with pytest.raises(OutputError, match=f"e.g. {fix}"):
            output_format(name, fmt)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--num-classes", "0"], "--num-classes"),  # was a ValueError traceback
        (["--opset", "99"], "--opset 99 is newer than"),  # printed ~1,400 graph lines first
        (["--opset", "11"], "too old"),
        (["--max-batch", "0"], "--max-batch"),
        (["--workspace", "0"], "--workspace"),
    ],
)
def test_bad_sizes_are_one_line(tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    _one_line(["saross-nano", "-o", str(tmp_path / "m.onnx"), *extra], capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_library_refuses_zero_classes() -> None:
    from dakd_edge.errors import InputError
    from dakd_edge.export.onnx import load_for_export

    with pytest.raises(InputError, match="must be >= 1"):
        load_for_export("saross-nano", num_classes=0)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--timing-cache", "{model}"], "--timing-cache {model} is the input model"),
        (["--calib-cache", "{model}"], "--calib-cache {model} is the input model"),
        (["--timing-cache", "{out}"], "-o and --timing-cache are the same path"),
        (["--calib-cache", "{out}.json"], "--calib-cache and the engine's sidecar are the same path"),
    ],
)
def test_a_cache_that_is_the_model_or_an_output_is_refused(
    nano_ckpt: Path, tmp_path: Path, capsys, extra, needle
) -> None:
    """--timing-cache m.safetensors wrote TensorRT's cache over the model (exit 0, a 5-byte 'model');
    one named as the engine left a 5-byte engine without its sidecar. Refused before any work, also
    where TensorRT is not installed."""
    before = nano_ckpt.read_bytes()
    out = tmp_path / "m.engine"
    names = {"model": str(nano_ckpt), "out": str(out)}
    argv = [str(nano_ckpt), "-o", str(out), *(a.format(**names) for a in extra)]
    _one_line(argv, capsys, needle.format(**names))
    assert nano_ckpt.read_bytes() == before and not out.exists()


def test_engine_options_for_an_onnx_file_are_refused(tmp_path: Path, capsys) -> None:
    """-o m.onnx --precision fp16 wrote an fp32 file, exit 0 (a CI job expecting a half-precision model)."""
    out = tmp_path / "m.onnx"
    line = _one_line(["-o", str(out), "--precision", "fp16", "--max-batch", "4"], capsys)
    assert "--precision, --max-batch: engine option(s)" in line and "is an ONNX file (always fp32)" in line
    assert not out.exists()


def test_precision_fp32_for_an_onnx_file_is_what_it_is(tmp_path: Path, capsys) -> None:
    """A CI matrix passing --precision $P to both formats: fp32 is what the ONNX file is, not refused."""
    with pytest.raises(SystemExit) as e:
        main(
            [
                "export",
                "saross-nano",
                "-o",
                str(tmp_path / "m.onnx"),
                "--precision",
                "fp32",
                "--shape",
                "1x1x64x64",
            ]
        )
    assert e.value.code in (0, None), capsys.readouterr().err
    assert (tmp_path / "m.onnx").is_file()


def test_json_says_success_and_failure_on_stdout(tmp_path: Path, capsys) -> None:
    """--json printed nothing on a failure (a CI job's jq read an empty stdout): an error is
    {"ok": false, ...} there too, beside the usual stderr line and exit 2; a success has "ok": true."""
    import json

    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "nosuch.safetensors"), "-o", str(tmp_path / "m.onnx"), "--json"])
    out, err = capsys.readouterr()
    assert (
        e.value.code == 2
        and err.strip() == f"dakd-edge: error: {tmp_path / 'nosuch.safetensors'}: no such file"
    )
    assert json.loads(out) == {
        "ok": False,
        "error": f"{tmp_path / 'nosuch.safetensors'}: no such file",
        "kind": "InputError",
    }
    with pytest.raises(SystemExit) as e:
        main(["export", "saross-nano", "-o", str(tmp_path / "m.onnx"), "--shape", "1x1x64x64", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert e.value.code in (0, None) and doc["ok"] is True and doc["path"] == str(tmp_path / "m.onnx")
    assert doc["size_bytes"] == (tmp_path / "m.onnx").stat().st_size and all(
        r["passed"] for r in doc["parity"]
    )


@pytest.mark.parametrize(
    "argv, kind",
    [
        (["--format", "engine", "-o", "m.engine"], "BackendUnavailable"),  # no TensorRT here: skip
        (["-o", "m.onnx", "--precision", "fp16"], "UsageError"),  # its command line
        (["-o", "m.onnx", "--opset", "3"], "ExportError"),
    ],
)
def test_json_kind_tells_a_runner_without_tensorrt_from_a_broken_export(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, argv: list[str], kind: str
) -> None:
    """Every failure was "ExportError" (or, for a usage error, no JSON at all), exit 2: a CI job could not
    tell "skip, this runner has no TensorRT" from "the export is broken"."""
    import json

    import dakd_edge.export.tensorrt as trt_mod

    monkeypatch.setattr(trt_mod, "tensorrt_status", lambda: (False, "TensorRT is not installed"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["export", "saross-nano", *argv, "--json"])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["kind"] == kind and doc["error"] in err


def test_json_kind_of_a_missing_package_is_backend_unavailable(tmp_path: Path, capsys, monkeypatch) -> None:
    """A missing extra (MissingExtra, a BackendUnavailable) said kind "MissingExtra", which a CI job that
    skips on "BackendUnavailable" did not skip."""
    import json

    from dakd_edge import extras
    from dakd_edge.extras import MissingExtra

    def missing(*a, **k):
        raise MissingExtra("onnxruntime is not installed: pip install ...")

    monkeypatch.setattr(extras, "require_extra", missing)
    monkeypatch.setattr("dakd_edge.cli.export.require_extra", missing, raising=False)
    with pytest.raises(SystemExit):
        main(["export", "saross-nano", "-o", str(tmp_path / "m.onnx"), "--json"])
    assert json.loads(capsys.readouterr().out)["kind"] == "BackendUnavailable"


def test_json_given_a_file_name_says_it_is_a_flag(tmp_path: Path, capsys) -> None:
    """`export -o m.onnx --json m.json` said "unknown model 'm.json'" (bench and evaluate take --json FILE)."""
    line = _one_line(
        ["-o", str(tmp_path / "m.onnx"), "--json", "m.json"], capsys, "--json is a flag here", "> m.json"
    )
    assert "unknown model" not in line and not (tmp_path / "m.onnx").exists()
