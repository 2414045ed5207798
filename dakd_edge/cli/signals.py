"""SIGINT / SIGTERM / SIGHUP for the CLI: stop within about a second, leave no temporary behind.

The first signal raises :class:`Interrupted` in the main thread, so every ``with Transaction`` block
unwinds and removes its temporaries. Python runs signal handlers only between bytecodes, so a main
thread busy inside C (an ONNX Runtime call, a GDAL COG copy of a big scene) would hear it late: a
watchdog thread, woken through :func:`signal.set_wakeup_fd` the moment the signal arrives, removes
this process's temporaries itself and exits if the main thread has not finished within ``grace``
seconds. A second signal exits at once (after the same cleanup).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from dakd_edge.atomic import remove_live_temps

# SIGHUP: a dropped ssh session or a closed terminal; it left every temporary behind (exit 129, silent).
SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Interrupted(BaseException):  # noqa: N818 - a BaseException like KeyboardInterrupt, not an error
    """Raised in the main thread by SIGINT / SIGTERM / SIGHUP; ``code`` is the exit status (128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.code = 128 + signum


def _hard_exit(signum: int) -> None:
    remove_live_temps()
    os.write(2, b"dakd-edge: interrupted\n")
    os._exit(128 + signum)


@contextlib.contextmanager
def interruptible(grace: float = 1.0) -> Iterator[None]:
    """Install the handlers and the watchdog for the duration of one CLI call (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    finished = threading.Event()
    heard: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if heard:  # second signal: no more unwinding
            _hard_exit(signum)
        heard.append(signum)
        raise Interrupted(signum)

    def watchdog() -> None:
        while True:
            data = os.read(r, 1)
            if not data or finished.is_set():
                return
            if data[0] in SIGNALS and not finished.wait(grace):
                _hard_exit(data[0])

    # a hangup the parent ignores stays ignored: `nohup dakd-edge batch ...` must outlive its terminal
    hup = getattr(signal, "SIGHUP", None)
    skip = {hup} if hup is not None and signal.getsignal(hup) is signal.SIG_IGN else set()
    old = {s: signal.signal(s, handler) for s in SIGNALS if s not in skip}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    thread = threading.Thread(target=watchdog, name="dakd-edge-signals", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        with contextlib.suppress(OSError):
            os.write(w, b"\0")
        thread.join(timeout=1.0)
        os.close(r)
        os.close(w)
