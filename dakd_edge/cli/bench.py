"""`dakd-edge bench`: thin click layer over :mod:`dakd_edge.bench` (defaults are :func:`run_bench`'s)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from dakd_edge import bench as lib
from dakd_edge.cli.streams import STDOUT, json_out_option
from dakd_edge.cuda import resolve_device
from dakd_edge.errors import DakdError, InputError
from dakd_edge.formats import PRECISIONS, check_model_files

_RUN = inspect.signature(lib.run_bench).parameters


def _default(name: str) -> object:
    """``run_bench``'s default for an option; sequences as the comma list the option takes."""
    value = _RUN[name].default
    return ",".join(str(v) for v in value) if isinstance(value, tuple | list) else value


def _list_option(name: str, dest: str, what: str, default_help: str | None = None):
    """A comma-list option (``--tile 256,512``) with ``run_bench``'s default for ``dest``."""
    if default_help:  # run_bench's default is None: say what it means
        return click.option(name, dest, default=None, help=f"Comma list of {what} [default: {default_help}].")
    return click.option(name, dest, default=_default(dest), show_default=True, help=f"Comma list of {what}.")


def _csv(kind: type, text: str, name: str, choices: tuple[str, ...] = ()) -> list:
    try:
        items = [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise InputError(f"bad --{name} {text!r}: {e}") from e
    if not items:
        raise InputError(f"--{name} is empty")
    if not choices:
        return items
    canonical = {c.lower(): c for c in choices}  # keywords are case-insensitive, as click's choices
    for item in items:
        if item.lower() not in canonical:
            raise InputError(f"--{name}: unknown {name} {item!r}; choose from {', '.join(choices)}")
    return [canonical[item.lower()] for item in items]


def _check_sizes(plan: dict, device: str) -> None:
    """The tile and batch refusals of :func:`lib.run_bench`, made before the header is printed and
    before any model loads (``--scene``, ``--baseline``)."""
    if plan["tiles"]:
        lib.tile_batches(None, plan["tiles"], plan["batches"], resolve_device(device))
    elif plan["batches"] and min(plan["batches"]) < 1:
        raise InputError(f"--batch needs positive sizes, got {','.join(map(str, plan['batches']))}")


def _no_row_ran(results: list[dict]) -> str | None:
    """Why no combination was measured (each skipped or failed), or None when one ran: a CI job must
    not go green on a table of skipped rows (``--backend tensorrt`` on a machine without it)."""
    if any(r["status"] == "ok" for r in results):
        return None
    counts = {s: sum(r["status"] == s for r in results) for s in ("skipped", "failed")}
    why = list(dict.fromkeys(r["reason"] for r in results if r["reason"]))
    line = "no benchmark row ran (" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")"
    if why:
        line += f": {why[0]}" + (f"; and {len(why) - 1} other reason(s) listed above" if len(why) > 1 else "")
    return line


def _fmt(v: object, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


@click.command("bench")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Checkpoint, .onnx, .engine or registry name (repeatable) [default: bundled model].",
)
@_list_option("--backend", "backends", "backends: " + ", ".join(lib.BACKENDS))
@_list_option("--precision", "precisions", "precisions: " + ", ".join(PRECISIONS))
@_list_option("--tile", "tiles", "square tile sizes", "the model's own tile, as segment uses it")
@_list_option("--batch", "batches", "batch sizes", "segment's batch for each tile on --device")
@click.option(
    "--warmup", default=_default("warmup"), show_default=True, type=int, help="Untimed calls first."
)
@click.option("--iters", default=_default("iters"), show_default=True, type=int, help="Timed calls per row.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Intra-op threads (torch.set_num_threads, ONNX Runtime intra_op_num_threads) "
    "[default: each runtime's].",
)
@click.option(
    "--device",
    default=_default("device"),
    show_default=True,
    help="Where the rows run: cpu, cuda, cuda:N or auto (cuda when a GPU is usable, else cpu).",
)
@click.option(
    "--num-classes",
    default=_default("num_classes"),
    show_default=True,
    type=click.IntRange(2, 255),
    help="Classes for registry-name models.",
)
@click.option(
    "--scene",
    type=click.Path(exists=True),
    help="Also run the full segment pipeline on this scene or Sentinel-1 product (end-to-end MPix/s).",
)
@json_out_option("Write results JSON here ('-' or alone: stdout).")
@click.option(
    "--baseline", type=click.Path(dir_okay=False), help="Earlier JSON to compare against (CI gate)."
)
@click.option(
    "--max-regression",
    default="10%",
    show_default=True,
    help="Allowed slowdown per matched row: 10% and 0.1 both mean ten percent; a bare number of 1 or "
    "more (10) is refused as ambiguous.",
)
@click.option(
    "--allow-other-machine",
    is_flag=True,
    help="Gate against a baseline from another CPU/GPU/board/power mode or thread setting (warned, not refused).",
)
@click.option(
    "--cuda-graphs", is_flag=True, help="Replay the torch backends from a captured CUDA graph (GPU only)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def bench(
    models,
    backends,
    precisions,
    tiles,
    batches,
    warmup,
    iters,
    threads,
    device,
    num_classes,
    scene,
    json_out,
    baseline,
    max_regression,
    allow_other_machine,
    cuda_graphs,
    overwrite,
) -> None:
    """Measure latency (p50/p90/p99), throughput, memory and agreement with PyTorch fp32.

    Latency is per call of `batch` tiles on an in-memory batch (copy in, model, copy out), after the
    untimed warm-up; reading, tiling, blending and writing are timed only by --scene. Combinations that
    cannot run here are listed with the reason; when none ran (all skipped or failed) the command exits
    2 after the table and the JSON. With --baseline the command exits 1 when any matched row regresses
    by more than --max-regression (or failed where the baseline ran), and 2 (before measuring anything)
    when the baseline is malformed, none of its rows matches this run, or it was measured on another
    machine or thread setting (--allow-other-machine compares anyway).
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from dakd_edge.atomic import atomic_path, check_output, check_room

    check_model_files(*models)  # before the header and torch's import
    threshold = lib.parse_threshold(max_regression)
    lib.check_counts(warmup, iters, threads)
    plan = {
        "models": list(models) or [None],
        "backends": _csv(str, backends, "backend", lib.BACKENDS),
        "precisions": _csv(str, precisions, "precision", PRECISIONS),
        "tiles": _csv(int, tiles, "tile") if tiles is not None else None,
        "batches": _csv(int, batches, "batch") if batches is not None else None,
    }
    _check_sizes(plan, device)  # usage errors before the header (stdout) and before a model loads
    base_doc, env_notes = None, []
    if baseline:  # checked before any benchmark runs: a bad baseline should not cost a full run
        base_doc = lib.load_json(baseline)
        keys = lib.planned_keys(**plan, device=device, num_classes=num_classes)
        lib.check_baseline_covers(base_doc, keys, baseline, device=device)
        machine, env_notes = lib.environment_differences(
            lib.environment(threads), base_doc.get("environment")
        )
        if machine and not allow_other_machine:
            raise InputError(
                f"baseline {baseline} was measured on another machine or configuration ("
                + "; ".join(machine)
                + "): its numbers are no yardstick here (--allow-other-machine compares anyway)"
            )
        env_notes = [f"differs from the baseline: {m}" for m in machine] + env_notes
    if json_out and json_out != STDOUT:
        check_output(json_out, overwrite)
        # small, but a disk found full only after minutes of measuring lost every number
        check_room(Path(json_out), lib.json_bytes(lib.planned_rows(**plan)), json_out)
    scene_pred = lib.scene_predictor(scene, models[0] if models else None, device) if scene else None
    stream = sys.stderr if json_out == STDOUT else sys.stdout
    # Logs and CI captures are not terminals: rich would fold the table to 80 columns and cut values.
    console = Console(stderr=json_out == STDOUT, width=None if stream.isatty() else 160)
    console.print(
        f"[bold]dakd-edge bench[/bold] (warm-up {warmup}, {iters} iterations; latency per call of "
        "`batch` tiles in memory: copy in, model, copy out; no reading/tiling/writing)"
    )

    def live(row: lib.Row) -> None:
        state = row.status if row.status != "ok" else f"{row.p50_ms:.2f} ms p50"
        console.print(
            f"  {row.model} {row.backend} {row.precision} tile {row.tile} batch {row.batch}: {state}"
        )

    doc = lib.run_bench(
        **plan,
        warmup=warmup,
        iters=iters,
        device=device,
        num_classes=num_classes,
        on_row=live,
        cuda_graphs=cuda_graphs,
        threads=threads,
    )
    if scene:
        doc["scene"] = lib.run_scene(scene, predictor=scene_pred)

    table = Table(title="dakd-edge bench", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "backend", "prec", "tile x b", "status", "p50 ms/call", "p99 ms/call", "MPix/s", "peak MB",
                "argmax %", "max |err|"):  # fmt: skip
        table.add_column(col, no_wrap=col != "model")
    reasons = []
    for r in doc["results"]:
        status = r["status"]
        if r["reason"]:
            reasons.append(r["reason"])
            status = f"{status} [{len(reasons)}]"
        table.add_row(r["model"], r["backend"], r["precision"], f"{r['tile']}x{r['batch']}", status,
                      _fmt(r["p50_ms"]), _fmt(r["p99_ms"]), _fmt(r["mpix_per_s"], ".3f"),
                      _fmt(r["peak_mem_mb"], ".0f"), _fmt(r["argmax_agreement"], ".2f"),
                      _fmt(r["max_abs_err"], ".1e"))  # fmt: skip
    console.print(table)
    for i, reason in enumerate(reasons, 1):
        console.print(f"  [{i}] {reason}", markup=False, highlight=False)
    if "scene" in doc:
        s = doc["scene"]
        console.print(
            f"scene {s.get('scene')}: {s.get('mpix_per_s', 0):.3f} MPix/s end-to-end ({s.get('seconds', 0):.1f} s)"
        )

    text = lib.to_json(doc)  # strict JSON: a NaN / inf value is written as null
    if json_out == STDOUT:
        click.echo(text)
    elif json_out:
        with atomic_path(json_out, overwrite) as tmp:
            tmp.write_text(text)
        console.print(f"results written to {json_out}")

    if base_doc is not None:
        notes = list(env_notes)
        problems = lib.compare(doc, base_doc, threshold, source=baseline, notes=notes)
        for n in notes:
            console.print(f"  [yellow]note[/yellow] {n}", highlight=False)
        if problems:
            console.print(
                f"[red]regression gate FAILED[/red] ({len(problems)} rows over {threshold * 100:.1f}%):"
            )
            for p in problems:
                console.print(f"  {p}")
            sys.exit(1)
        console.print(f"[green]regression gate passed[/green] (limit {threshold * 100:.1f}%)")

    # the table and JSON say which rows and why; the exit status tells CI (a gate never passes on none)
    nothing = _no_row_ran(doc["results"])
    if nothing:
        raise DakdError(nothing)
