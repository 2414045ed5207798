"""`dakd-edge export`: ONNX (standard ops or TensorRT plugin nodes) or a TensorRT engine, with parity.

A thin layer: defaults come from :class:`OnnxExportConfig` / :class:`EngineConfig`, choices from
:mod:`dakd_edge.formats`, and the op-mode policy and engine profile from the export library.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click

from dakd_edge.cli.choices import keywords
from dakd_edge.cli.fields import flags_of, given
from dakd_edge.cli.notices import warning_line
from dakd_edge.errors import BackendUnavailable, DakdError, OutputError
from dakd_edge.export.onnx import OnnxExportConfig
from dakd_edge.export.tensorrt import EngineConfig
from dakd_edge.extras import require_extra
from dakd_edge.formats import AUTO, ENGINE, ONNX, OPS_MODES, check_model_files, engine_sidecar, format_of

ONNX_DEFAULTS = OnnxExportConfig()
ENGINE_DEFAULTS = EngineConfig()
ENGINE_ONLY = ("precision", "calib", "calib_cache", "timing_cache", "workspace", "max_batch")


@click.command("export")
@click.argument("model", required=False)
@click.option(
    "--format", "fmt", type=keywords([ONNX.name, ENGINE.name]),
    help=f"Output format [default: from the -o suffix ({'/'.join(ENGINE.suffixes)}: engine), else onnx].",
)  # fmt: skip
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--shape", help="Fixed input shape NxCxHxW (e.g. 1x1x512x512) [default: dynamic N, H, W].")
@click.option(
    "--ops",
    type=keywords([AUTO, *OPS_MODES]),
    default=AUTO,
    show_default=True,
    help="standard: plain ONNX ops (any runtime); plugin: dakd_edge nodes for the TensorRT plugins; "
    "auto: standard for ONNX, plugin for engines when TensorRT plugins are usable.",
)
@click.option("--opset", type=int, default=ONNX_DEFAULTS.opset, show_default=True,
              help="ONNX opset (engines: 16 when TensorRT is 8.5, which cannot parse LayerNormalization).")  # fmt: skip
@click.option("--scan-chunk", type=int, default=ONNX_DEFAULTS.scan_chunk, show_default=True,
              help="Chunk length of the standard-ops scan (8 suits CPUs; try 32-64 for TensorRT).")  # fmt: skip
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--precision", type=keywords(ENGINE.precisions), default=ENGINE_DEFAULTS.precision,
              show_default=True,
              help="Engine precision (ONNX export is always fp32).")  # fmt: skip
@click.option("--calib", type=click.Path(file_okay=False), help="Folder of tiles for INT8 calibration.")
@click.option("--calib-cache", type=click.Path(dir_okay=False), help="INT8 calibration cache (read/write).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache (read/write).")
@click.option("--workspace", type=click.FloatRange(0, min_open=True), default=ENGINE_DEFAULTS.workspace_gib,
              show_default=True, help="TensorRT workspace (GiB).")  # fmt: skip
@click.option("--max-batch", type=click.IntRange(1), default=ENGINE_DEFAULTS.max_batch, show_default=True,
              help="Engine profile max batch.")  # fmt: skip
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Real image for a parity check.")
@click.option("--num-classes", type=click.IntRange(1), default=2, show_default=True,
              help="Classes for a registry MODEL name (random init; for testing the export path).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--json", "json_out", is_flag=True, help="Print the export report as JSON.")
def export(
    model, fmt, out, shape, ops, opset, scan_chunk, simplify, precision, calib, calib_cache, timing_cache, workspace,
    max_batch, image, num_classes, overwrite, json_out,
) -> None:  # fmt: skip
    """Export MODEL (checkpoint path or registry name; none = the bundled model).

    Every export is checked against PyTorch (max abs / relative error, arg-max agreement) and fails,
    leaving no output, when the logits' max abs error exceeds tol = atol x max(1, max|logit|), the tol
    each parity line prints (atol 1e-4 for fp32, 2e-2 for fp16, 1e-1 for int8), or arg-max agreement is
    below 99.9% (fp16: 99%, int8: 95%).
    """
    if json_out and model is not None and model.lower().endswith(".json"):  # `--json FILE`, as bench takes it
        raise click.UsageError(f"--json is a flag here (the report goes to stdout): ... --json > {model}")
    with _json_error(json_out):  # --json: an error is JSON on stdout too, not nothing
        check_model_files(model)
        require_extra("torch", "export", "torch", "safetensors", "onnx")
        from dakd_edge.atomic import check_distinct, check_not_bundled, check_output
        from dakd_edge.export.onnx import check_opset, choose_ops, export_onnx, load_for_export, parse_shape

        model_in = {"input model": Path(model)} if model is not None and Path(model).exists() else {}
        check_distinct({"-o": Path(out)}, model_in)  # `export m.safetensors -o m.safetensors` replaced it
        fmt = output_format(out, fmt)
        ctx = click.get_current_context()
        if fmt == ONNX.name:  # engine options given for an ONNX file were ignored (an fp32 file for fp16)
            # --precision fp32 is what the ONNX file is: a CI matrix's value
            engine_only = [
                n for n in ENGINE_ONLY if given(ctx, n) and not (n == "precision" and precision == "fp32")
            ]
            if engine_only:
                raise click.UsageError(
                    f"{', '.join(flags_of(ctx, engine_only))}: engine option(s), but -o {out} is an ONNX file (always fp32); build an "
                    "engine with -o NAME.engine or --format engine"
                )
        # a cache named as the model, the output or the engine's sidecar was written over it (exit 0, a
        # 5-byte 'model')
        caches = {"--timing-cache": timing_cache, "--calib-cache": calib_cache}
        outputs = {"-o": Path(out), **{k: Path(v) for k, v in caches.items() if v}}
        if fmt == ENGINE.name:
            outputs["the engine's sidecar"] = engine_sidecar(out)
        check_distinct(outputs, model_in)
        for cache in caches.values():
            if cache:
                check_not_bundled(Path(cache))  # the bundled weights' folder, as for -o
        check_opset(opset)
        check_output(out, overwrite)
        fixed = parse_shape(shape) if shape else None
        if fmt == ENGINE.name:
            from dakd_edge.export.tensorrt import choose_engine_opset, tensorrt_status

            ok, reason = tensorrt_status()
            if not ok:  # its own kind in --json: a CI job skips on a runner without TensorRT
                raise BackendUnavailable(f"--format engine: {reason}")
            # TensorRT 8.5 needs opset 16: chosen when --opset is left out, an explicit 17 is refused
            opset, opset_note = choose_engine_opset(opset if given(ctx, "opset") else None)
            if opset_note:
                warning_line(opset_note)
        mode, note = choose_ops(ops, fmt)
        if fmt == ONNX.name and mode == "standard":  # the parity check runs it (it failed after the export)
            require_extra("runtime", "export --ops standard", "onnxruntime")
        if note:
            warning_line(note)
        cfg = OnnxExportConfig(
            ops=mode, opset=opset, shape=fixed, simplify=simplify, image=image, scan_chunk=scan_chunk
        )
        ecfg = None
        if fmt == ENGINE.name:  # its refusals (int8 without --calib) come before the model loads
            ecfg = EngineConfig(
                precision=precision, max_batch=max_batch, workspace_gib=workspace, timing_cache=timing_cache,
                calib_dir=calib, calib_cache=calib_cache,
            )  # fmt: skip
        model_obj, meta = load_for_export(model, num_classes=num_classes)
        if ecfg is None:
            report = export_onnx(model_obj, meta, out, cfg, overwrite=overwrite)
        else:
            from dakd_edge.export.tensorrt import export_engine

            report = export_engine(model_obj, meta, out, ecfg, cfg, overwrite=overwrite)
        if json_out:
            click.echo(json.dumps({"ok": True, **report.to_dict()}, indent=2))
            return
        for r in report.parity:
            click.echo(r.line())
        click.echo(f"wrote {report.path} ({fmt}, ops={mode}, {report.seconds:.1f} s)")


@contextlib.contextmanager
def _json_error(json_out: bool) -> Iterator[None]:
    """With --json, a failure also prints ``{"ok": false, "error": ..., "kind": ...}`` on stdout (a CI
    job's ``jq`` read nothing), before the one stderr line and exit 2 as always. ``kind`` tells a job
    what to do: ``BackendUnavailable`` (no TensorRT or CUDA here: skip), ``UsageError`` (its command
    line), anything else (the model, the export or its parity check: fail)."""
    try:
        yield
    except (DakdError, click.UsageError) as e:
        if json_out:
            kind = (  # a missing package (MissingExtra) is "not on this runner" too
                "UsageError" if isinstance(e, click.UsageError)
                else "BackendUnavailable" if isinstance(e, BackendUnavailable)
                else type(e).__name__
            )  # fmt: skip
            message = e.format_message() if isinstance(e, click.UsageError) else str(e)
            click.echo(json.dumps({"ok": False, "error": message, "kind": kind}, indent=2))
        raise


def output_format(out: str, fmt: str | None) -> str:
    """``--format``, or the one the suffix of ``-o`` names (``-o x.engine`` used to get ONNX bytes).

    An explicit format that contradicts the suffix, or a suffix of a format export never writes (a
    checkpoint), is refused: a file named for one format must not hold another. So is a name without
    a model suffix (``-o model``, ``-o m.bin``): every command that loads a model tells its format by
    the suffix, so such a file could not be used.
    """
    named = format_of(out)
    if named is None:
        want = ONNX.name if fmt in (None, ONNX.name) else ENGINE.name
        fix = f"{out}{ONNX.suffixes[0]}" if want == ONNX.name else f"{out}{ENGINE.suffixes[0]}"
        raise OutputError(
            f"-o {out}: name the file for its format (e.g. {fix}; engines: {', '.join(ENGINE.suffixes)}): "
            "the commands that load a model tell its format by the suffix"
        )
    if named is not None and named not in (ONNX, ENGINE):
        raise OutputError(
            f"-o {out}: export writes ONNX ({ONNX.suffixes[0]}) or engine files, not {named.name}"
        )
    if fmt is None:
        return named.name
    if named is not None and named.name != fmt:
        raise OutputError(f"--format {fmt} does not match -o {out}, whose suffix means {named.name}")
    return fmt
