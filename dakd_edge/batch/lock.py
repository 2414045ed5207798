"""``DIR/batch.lock``: one batch run at a time per batch folder.

A cron job that starts while the previous run still goes, or two CI jobs on one folder, would run the
same scenes twice and append to one manifest. The driver holds an exclusive ``flock`` on
``DIR/batch.lock`` for the whole run and writes its pid, host and start time into the file, so that a
second run refuses at once and says who holds the folder. The kernel drops the lock when its holder
dies (``kill -9``, power loss), so a stale file never blocks a later run or ``--resume``; a run that
ends normally removes the file (an older batch folder has none: nothing changes for it).

Where ``flock`` cannot be used (some FUSE / network filesystems answer ENOLCK or EOPNOTSUPP, an NFS
mount with ``nolock`` or ``local_lock`` keeps locks local to each machine), the file itself is the
lock: created with O_EXCL, taken over only when it names a process of this host that is gone. A run
on another host cannot be checked from here: the refusal says so and names the file to delete once
that run is gone. This is said in a :class:`~dakd_edge.errors.Notice`, never silently.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dakd_edge.errors import Notice, OutputError, user_stacklevel

LOCK = "batch.lock"
# errors of flock() that say "locks do not work here", not "someone holds it"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL, errno.EIO}
_HELD = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}


class FolderLock:
    """The lock of one batch folder, held from :func:`hold` until :meth:`release`."""

    def __init__(self, path: Path, fd: int | None, flocked: bool) -> None:
        self.path, self.fd, self.flocked = path, fd, flocked

    def release(self) -> None:
        """Remove the lock file and let go of it (idempotent). The file goes first, while still held:
        a run that opened it meanwhile finds, once it holds it, that it is no longer the lock file."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self.path, self.fd):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # drops the flock
        self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def check_free(folder: Path) -> None:
    """Raise :class:`OutputError` naming the run that holds ``folder``'s lock, if one does; creates
    nothing (before the folder's own checks: "in use" says more than a check of what it is doing)."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or none that can be opened): :func:`hold` decides
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _HELD:
            raise OutputError(_in_use(folder, _read(fd))) from None
    finally:
        os.close(fd)  # drops the flock, if taken


def hold(folder: Path) -> FolderLock:
    """Lock ``folder`` (which must exist) for this process, or raise :class:`OutputError` naming the
    run that holds it."""
    path = folder / LOCK
    local = _local_only_locks(folder)
    if local is None:
        for _ in range(10):  # the file may be removed by its holder between open and flock
            try:
                fd, created = _open(path)
            except FileNotFoundError:  # removed by its holder between two opens
                continue
            except OSError as e:
                raise OutputError(f"{path}: cannot create the lock file ({e.strerror or e})") from None
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read(fd)
                if created and e.errno not in _HELD:  # not left behind for the pid-file fallback
                    with contextlib.suppress(OSError):
                        path.unlink()
                os.close(fd)
                if e.errno in _HELD:
                    raise OutputError(_in_use(folder, holder)) from None
                if e.errno not in _UNSUPPORTED:
                    raise OutputError(f"{path}: cannot lock ({e.strerror or e})") from None
                local = f"flock() fails there ({e.strerror or errno.errorcode.get(e.errno, e.errno)})"
                break
            if not _same_file(path, fd):  # its holder removed it meanwhile: take the current one
                os.close(fd)
                continue
            _write(fd, _me())
            return FolderLock(path, fd, flocked=True)
        else:
            raise OutputError(f"{path}: cannot lock (the file keeps being replaced)")
    warnings.warn(
        Notice(
            f"{folder}: {local}: another batch run on this folder is detected by the pid in {LOCK} "
            "instead, which cannot tell whether a run on another machine is still going"
        ),
        stacklevel=user_stacklevel(),
    )
    return _hold_by_pid(folder, path)


def _open(path: Path) -> tuple[int, bool]:
    """(fd, whether this call created the file) of the lock file, opened for reading and writing."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC), False


def _hold_by_pid(folder: Path, path: Path) -> FolderLock:
    """The lock file as a pid file: created with O_EXCL; an existing one is taken over only when it
    names a process of this host that is gone (or a run that ended without a word)."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            holder = _read_path(path)
            if _alive(holder):
                raise OutputError(_in_use(folder, holder, checkable=_here(holder))) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a dead run's file
            continue
        except OSError as e:
            raise OutputError(f"{path}: cannot create the lock file ({e.strerror or e})") from None
        _write(fd, _me())
        return FolderLock(path, fd, flocked=False)
    raise OutputError(f"{path}: cannot lock (the file keeps being replaced)")


def _in_use(folder: Path, holder: dict[str, Any] | None, checkable: bool = True) -> str:
    if holder:
        who = f"pid {holder.get('pid')} on {holder.get('host')}"
        if holder.get("started"):
            who += f", started {holder['started']}"
    else:
        who = "one that is starting"
    line = f"{folder} is in use by another batch run ({who}): wait for it to end, or give another --out"
    if not checkable:
        line += f"; if that run is gone, delete {folder / LOCK}"
    return line


def _me() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "boot": _boot_id(),
        "ticks": _start_ticks(os.getpid()),
    }


def _write(fd: int, holder: dict[str, Any]) -> None:
    data = (json.dumps(holder, sort_keys=True) + "\n").encode()
    with contextlib.suppress(OSError):  # the lock is the flock; the text only names its holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _read(fd: int) -> dict[str, Any] | None:
    try:
        return _parse(os.pread(fd, 4096, 0))
    except OSError:
        return None


def _read_path(path: Path) -> dict[str, Any] | None:
    try:
        return _parse(path.read_bytes()[:4096])
    except OSError:
        return None


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data.decode(errors="replace"))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _same_file(path: Path, fd: int) -> bool:
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _here(holder: dict[str, Any] | None) -> bool:
    """Whether ``holder`` ran on this machine since its last boot (its pid can be checked)."""
    return bool(holder) and holder.get("host") == socket.gethostname() and holder.get("boot") == _boot_id()


def _alive(holder: dict[str, Any] | None) -> bool:
    """Whether the run a pid-file lock names may still go: yes for a file without a readable holder
    (being written) or one of another machine; on this machine, while its process lives (the same
    process: the pid may have been reused since)."""
    if not holder:
        return True
    if not _here(holder):
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = holder.get("ticks")
    return ticks is None or _start_ticks(pid) in (None, ticks)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22): tells a reused pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _local_only_locks(folder: Path, mountinfo: str | None = None) -> str | None:
    """Why flock() would not see a run on another machine, for an NFS mount that keeps locks local
    (``nolock``, ``local_lock=flock|all``); None otherwise (and where /proc cannot tell).
    ``mountinfo``: the text of ``/proc/self/mountinfo`` (read when None)."""
    try:
        if mountinfo is None:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        lines = mountinfo.splitlines()
        real = str(folder.resolve())
    except OSError:
        return None
    best: tuple[int, str, str] | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if real == point or real.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) > best[0]:
                best = (len(point), tail[0], ",".join((fields[5], tail[2])))
    if best is None or not best[1].startswith("nfs"):
        return None
    opts = set(best[2].split(","))
    for o in ("nolock", "local_lock=flock", "local_lock=all"):
        if o in opts:
            return f"its NFS mount keeps locks local to this machine ({o})"
    return None
