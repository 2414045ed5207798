"""Root click group with lazily imported sub-commands and the single error boundary."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import sys
from pathlib import Path

import click

from dakd_edge import __version__
from dakd_edge.errors import DakdError

# command name -> (import path of the click command, one-line help), as in click's lazy-loading
# LazyGroup: a command's module is imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dakd_edge.cli.segment.demo", "Synthesise a scene, segment it with the bundled model, show it."),
    "segment": ("dakd_edge.cli.segment.segment", "Segment GeoTIFF scenes of any size (tiled, streaming)."),
    "synth": ("dakd_edge.cli.synth.synth", "Write a synthetic georeferenced SAR scene (+ labels)."),
    "synth-product": (
        "dakd_edge.cli.synth.synth_product",
        "Write a Sentinel-1 GRD product (.SAFE/.zip) with synthetic pixels.",
    ),
    "info": ("dakd_edge.cli.synth.info", "Describe a raster: size, bands, CRS, nodata, value range."),
    "models": ("dakd_edge.cli.models.models", "List registered model architectures."),
    "train": ("dakd_edge.cli.train.train", "Train SAROSS-Net or a baseline (DAKD: + generated data)."),
    "evaluate": ("dakd_edge.cli.evaluate.evaluate", "Score a model on OSD, SOS, a folder, or a whole scene."),
    "jointnet": ("dakd_edge.cli.jointnet.jointnet", "SAR-JointNet: balance, train, generate, report."),
    "export": ("dakd_edge.cli.export.export", "Export to ONNX or a TensorRT engine, with parity check."),
    "bench": ("dakd_edge.cli.bench.bench", "Latency/throughput across backends; CI regression gate."),
    "batch": ("dakd_edge.cli.batch.batch", "Many scenes on Ray: resumable, one merged spill layer."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].rsplit(".", 1)
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:  # command not available in this install
            from dakd_edge.extras import memory_hint

            msg = memory_hint(f"'{name}' is unavailable in this installation: {e}")

            @click.command(name, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise DakdError(msg)

            return unavailable

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's, plus the nearest command name for a misspelt one (as it does for options)."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            close = difflib.get_close_matches(args[0], COMMANDS, n=1) if args else []
            if close and args[0] not in COMMANDS:
                raise click.UsageError(f"{e.message} Did you mean '{close[0]}'?", ctx) from None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="dakd-edge")
def cli() -> None:
    """dakd-edge: find oil spills in SAR scenes, fast, on Jetson boards and GPU servers."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the single error boundary of the CLI.

    User-facing errors (:class:`DakdError`, click usage errors, OS errors such as a full disk) print
    one line and exit 2; SIGINT / SIGTERM remove this run's temporaries and exit 130 / 143 within
    about a second (see :func:`dakd_edge.cli.signals.interruptible`).
    """
    from dakd_edge.cli.notices import notices_as_lines
    from dakd_edge.cli.signals import Interrupted, interruptible

    try:
        with interruptible(), notices_as_lines():  # every command's Notices: one line each
            rv = cli.main(args=argv, prog_name="dakd-edge", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except _NO_ARGS_IS_HELP as e:  # `dakd-edge` or `dakd-edge jointnet` alone: the help, as it is
        click.echo(e.ctx.get_help() if e.ctx is not None else e.format_message(), err=True)
        sys.exit(e.exit_code)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx is not None else _command_path(argv)
        _fail(f"{e.format_message()} (see '{cmd} --help')", e.exit_code)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except click.Abort:
        _fail("aborted", 1)
    except DakdError as e:
        _fail(_worker_error(str(e)), 2)
    except Interrupted as e:
        click.echo("dakd-edge: interrupted", err=True)
        _exit_now_after_ray(e.code)
        sys.exit(e.code)
    except KeyboardInterrupt:
        click.echo("dakd-edge: interrupted", err=True)
        sys.exit(130)
    except MemoryError:
        _fail(f"out of memory (try a smaller {_memory_options(argv)})", 2)
    except UnicodeEncodeError as e:  # rasterio / GDAL take UTF-8 names only
        if "surrogates not allowed" not in str(e):
            raise
        _fail(f"{_non_utf8_argument(argv)}: a file name that is not valid UTF-8, which GDAL cannot open or "
              "write; rename it", 2)  # fmt: skip
    except OSError as e:  # not raised through a DakdError: name the file and the reason
        from dakd_edge.atomic import describe_write_error, is_disk_full

        where = Path(e.filename) if getattr(e, "filename", None) else Path(".")
        msg = describe_write_error(e, where) if is_disk_full(e) else _os_line(e)
        _fail(msg, 2)
    except Exception as e:  # a runtime's own out-of-memory error (ONNX Runtime's bad_alloc, torch's)
        if not _out_of_memory(e):
            raise
        _fail(f"out of memory: {_first_line(e)} (try a smaller {_memory_options(argv)})", 2)
    sys.exit(rv if isinstance(rv, int) else 0)


# click >= 8.2 raises this usage error for a group called without a command (older click printed the
# help itself and exited 0); its message is the whole help, which _fail would squash into one line.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _command_path(argv: list[str] | None) -> str:
    """``dakd-edge CMD [SUB]`` from the arguments, for a usage error click raised without a context
    (an option missing its value: "see 'dakd-edge --help'" pointed at the wrong help)."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    path = ["dakd-edge"]
    if words and words[0] in COMMANDS:
        path.append(words[0])
        group = cli.get_command(click.Context(cli), words[0])
        if isinstance(group, click.Group) and len(words) > 1 and words[1] in group.commands:
            path.append(words[1])
    return " ".join(path)


def _exit_now_after_ray(code: int) -> None:
    """Exit without interpreter teardown when this process killed its local Ray on the interrupt
    (``batch``; the run has unwound, its temporaries and lock are gone): Ray's exit hook then took
    seconds (``ray.shutdown``) while its native teardown could crash the process (``free(): invalid
    pointer``, a segfault when ``ray.init`` was interrupted: exit -6 / -11, not 130 / 143)."""
    cluster = sys.modules.get("dakd_edge.batch.cluster")
    if not getattr(cluster, "killed_on_interrupt", False):  # only a run that killed its local Ray
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _worker_error(message: str) -> str:
    """A DataLoader worker's error re-raised by torch carries the worker's whole traceback in its text
    ("Caught X in DataLoader worker process 0. Original Traceback ..."): keep the original message."""
    if "Original Traceback" not in message:
        return message
    last = [ln for ln in message.splitlines() if ln.strip()][-1]
    name, sep, text = last.partition(": ")
    return text if sep and " " not in name else last


# Out-of-memory errors that runtimes raise as plain exceptions (ONNX Runtime's Fail / RuntimeException
# around std::bad_alloc, torch's CPU allocator, CUDA) and a thread that cannot start for lack of memory.
_OOM_TEXT = ("bad_alloc", "Failed to allocate memory", "can't allocate memory", "out of memory",
             "can't start new thread")  # fmt: skip


def _out_of_memory(e: BaseException) -> bool:
    runtime = isinstance(e, RuntimeError) or type(e).__module__.startswith(("onnxruntime", "torch"))
    return runtime and any(t in str(e) for t in _OOM_TEXT)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def _non_utf8_argument(argv: list[str] | None) -> str:
    """The first argument holding bytes that are not UTF-8 (surrogate escapes), shown as escapes."""
    args = sys.argv[1:] if argv is None else argv
    bad = next((a for a in args if any("\udc80" <= c <= "\udcff" for c in a)), None)
    return ascii(os.fsencode(bad))[2:-1] if bad is not None else "a file name"


def _memory_options(argv: list[str] | None) -> str:
    """The options that size a command's memory use, for the out-of-memory hint."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), "")
    if command == "train":
        return "--crop or --batch"
    if command == "jointnet":
        return "--crop or --batch-size (generate: --batch)"
    return "--tile or --batch"


def _os_line(e: OSError) -> str:
    from dakd_edge.extras import memory_hint

    what = e.strerror or " ".join(str(e).split())
    return memory_hint(f"{e.filename}: {what}" if getattr(e, "filename", None) else what)


def _fail(message: str, code: int) -> None:
    click.echo(f"dakd-edge: error: {' '.join(message.split())}", err=True)
    sys.exit(code)
