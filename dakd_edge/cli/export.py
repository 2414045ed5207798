"""`dakd-edge export`: ONNX (standard ops or TensorRT plugin nodes) or a TensorRT engine, with parity."""

from __future__ import annotations

import json

import click

from dakd_edge.errors import ExportError
from dakd_edge.extras import require_extra


@click.command("export")
@click.argument("model", required=False)
@click.option("--format", "fmt", type=click.Choice(["onnx", "engine"]), default="onnx", show_default=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--shape", help="Fixed input shape NxCxHxW (e.g. 1x1x512x512); default: dynamic N, H, W.")
@click.option(
    "--ops",
    type=click.Choice(["auto", "standard", "plugin"]),
    default="auto",
    show_default=True,
    help="standard: plain ONNX ops (any runtime); plugin: dakd_edge nodes for the TensorRT plugins; "
    "auto: standard for ONNX, plugin for engines when TensorRT plugins are usable.",
)
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--scan-chunk", type=int, default=8, show_default=True,
              help="Chunk length of the standard-ops scan (8 suits CPUs; try 32-64 for TensorRT).")  # fmt: skip
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="Engine precision (ONNX export is always fp32).")  # fmt: skip
@click.option("--calib", type=click.Path(file_okay=False), help="Folder of tiles for INT8 calibration.")
@click.option("--calib-cache", type=click.Path(dir_okay=False), help="INT8 calibration cache (read/write).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache (read/write).")
@click.option("--workspace", type=float, default=4.0, show_default=True, help="TensorRT workspace (GiB).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Engine profile max batch.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Real image for a parity check.")
@click.option("--num-classes", type=int, default=2, show_default=True,
              help="Classes for a registry MODEL name (random init; for testing the export path).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--json", "json_out", is_flag=True, help="Print the export report as JSON.")
def export(
    model, fmt, out, shape, ops, opset, scan_chunk, simplify, precision, calib, calib_cache, timing_cache, workspace,
    max_batch, image, num_classes, overwrite, json_out,
) -> None:  # fmt: skip
    """Export MODEL (checkpoint path or registry name; none = the bundled model).

    Every export is checked against PyTorch (max abs / relative error, arg-max agreement) and fails,
    leaving no output, above tolerance (fp32: 1e-4 on logits and >= 99.9% agreement).
    """
    require_extra("torch", "export", "torch", "onnx")
    from dakd_edge.atomic import check_output
    from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, load_for_export, parse_shape

    check_output(out, overwrite)
    fixed = parse_shape(shape) if shape else None
    if fmt == "onnx":
        mode = "standard" if ops == "auto" else ops
        cfg = OnnxExportConfig(
            ops=mode, opset=opset, shape=fixed, simplify=simplify, image=image, scan_chunk=scan_chunk
        )
        model_obj, meta = load_for_export(model, num_classes=num_classes)
        report = export_onnx(model_obj, meta, out, cfg, overwrite=overwrite)
    else:
        from dakd_edge.export.plugins import plugins_status
        from dakd_edge.export.tensorrt import EngineConfig, default_profile, export_engine, tensorrt_status

        ok, reason = tensorrt_status()
        if not ok:
            raise ExportError(f"--format engine: {reason}")
        mode = ops
        if ops != "standard":
            usable, why = plugins_status()
            if not usable:
                if ops == "plugin":
                    raise ExportError(f"--ops plugin: {why}")
                click.echo(f"note: {why}; building the engine from standard ops", err=True)
            mode = "plugin" if usable else "standard"
        cfg = OnnxExportConfig(
            ops=mode, opset=opset, shape=fixed, simplify=simplify, image=image, scan_chunk=scan_chunk
        )
        model_obj, meta = load_for_export(model, num_classes=num_classes)
        prof = default_profile(meta, fixed, max_batch)
        ecfg = EngineConfig(
            precision=precision, min_shape=tuple(prof["min"]), opt_shape=tuple(prof["opt"]),
            max_shape=tuple(prof["max"]), workspace_gib=workspace, timing_cache=timing_cache,
            calib_dir=calib, calib_cache=calib_cache,
        )  # fmt: skip
        report = export_engine(model_obj, meta, out, ecfg, cfg, overwrite=overwrite)
    if json_out:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for r in report.parity:
        click.echo(r.line())
    click.echo(f"wrote {report.path} ({fmt}, ops={mode}, {report.seconds:.1f} s)")
