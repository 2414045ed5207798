"""``dakd-edge`` command line: a thin click layer over library functions.

Each command lives in its own module and is imported only when invoked, so ``dakd-edge --help`` and
``dakd-edge info`` start fast and work without torch. Any :class:`~dakd_edge.errors.DakdError` becomes
one line on stderr and exit code 2 (never a traceback).
"""

from dakd_edge.cli.app import cli, main

__all__ = ["cli", "main"]
