"""Atomic outputs: temporaries beside the final paths, renamed together on success, removed otherwise.

Every temporary is named ``.<final name>.dakd-<pid>-<token>.<role><suffix>`` in the final file's folder
(so the rename never crosses a filesystem) and registered in this process, so that:

- an exception or an interrupt removes them (:meth:`Transaction.__exit__`, :func:`remove_live_temps`
  from the signal watchdog of :mod:`dakd_edge.cli.app`);
- a run killed with SIGKILL leaves them behind, and the next run on the same output finds them by name
  and removes those whose pid is no longer alive (:func:`clean_stale`), leaving a live run's alone.

:class:`Transaction` commits all outputs of one job (a scene's class map, probabilities, polygons,
report) together: nothing appears under a final name until every output is written and verified.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dakd_edge.errors import DakdError, OutputError
from dakd_edge.gtiff import LibtiffErrors

_LIVE: set[Path] = set()  # temporaries of this process not yet renamed or removed
_LOCK = threading.Lock()
_TEMP_RE = re.compile(r"\.dakd-(\d+)-[0-9a-f]+\.")
# Files a writer may put beside a temporary: GDAL side-cars, SQLite journals.
# ".ovr.tmp": GDAL's overview file while a COG's overviews are built (7.5 MB left by a SIGTERM then).
_SIDECARS = (".aux.xml", ".ovr", ".ovr.tmp", ".msk", "-journal", "-wal", "-shm")
# Paths by a name for messages: a mapping, or pairs where one name covers several paths.
Named = Mapping[str, Path] | Iterable[tuple[str, Path]]
_NODE_KINDS = (
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
)


_NAME_MAX = 255  # bytes in one file name (ext4, XFS, APFS, NTFS)
# Room a temporary's name needs besides the output's: ".", ".dakd-PID-TOKEN.", its role and suffix, and a
# GDAL / SQLite side-car (".aux.xml", ".ovr.tmp", "-journal").
_TEMP_ROOM = 48


def temp_stem(final: Path) -> str:
    """The part of ``final``'s name its temporaries carry: the whole name, or for a name near the file
    system's limit (a temporary adds ~40 characters, so a valid 220-character output could not be
    written) its start and a hash of the whole, short enough."""
    raw = os.fsencode(final.name)  # bytes as the file system sees them (a non-UTF-8 name too)
    if len(raw) + len(os.fsencode(final.suffix)) + _TEMP_ROOM <= _NAME_MAX:
        return final.name
    keep = _NAME_MAX - _TEMP_ROOM - len(os.fsencode(final.suffix)) - 10
    try:  # cut a UTF-8 name between characters (GDAL takes UTF-8 names only)
        raw.decode("utf-8")
        head = raw[:keep].decode("utf-8", errors="ignore")
    except UnicodeDecodeError:
        head = os.fsdecode(raw[:keep])
    return head + "~" + hashlib.sha256(raw).hexdigest()[:8]


def temp_path(final: Path, role: str = "tmp") -> Path:
    """A new registered temporary beside ``final`` (not created: writers create their files)."""
    p = final.parent / f".{temp_stem(final)}.dakd-{os.getpid()}-{secrets.token_hex(4)}.{role}{final.suffix}"
    with _LOCK:
        _LIVE.add(p)
    return p


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def register_temp(p: Path) -> Path:
    """Register an existing temporary (a work folder made elsewhere, e.g. by :mod:`tempfile`) so the
    interrupt path (:func:`remove_live_temps`) removes it too; :func:`remove_temp` forgets it."""
    with _LOCK:
        _LIVE.add(p)
    return p


@contextlib.contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A private work folder in the system's temporary folder (exported models, a scored scene's class
    map: up to hundreds of MB), registered (:func:`register_temp`) so that an interrupt which ends the
    process from the signal watchdog removes it too, not only a normal unwind."""
    _sweep_work_dirs(prefix)
    tmp = register_temp(Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")))
    try:
        yield tmp
    finally:
        remove_temp(tmp)


def _sweep_work_dirs(prefix: str) -> None:
    """Remove this user's ``prefix<pid>-*`` work folders whose process is dead: a SIGKILLed ``evaluate
    --scene`` left its scored class map (hundreds of MB) in the temporary folder for good."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for q in root.glob(f"{glob_escape(prefix)}*-*"):
            m = re.fullmatch(re.escape(prefix) + r"(\d+)-[^/]+", q.name)
            if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                st = q.lstat()
                if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                    shutil.rmtree(q)


def new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file under this process's umask (0o644 under 022)."""
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _remove(q: Path) -> None:
    """Unlink a temporary file, or remove a temporary folder (a staging folder) with its contents."""
    if q.is_dir() and not q.is_symlink():
        shutil.rmtree(q)
    else:
        q.unlink()


def remove_temp(p: Path) -> None:
    """Remove a temporary (file or staging folder) and its side-cars; forget it."""
    for q in (p, *(p.with_name(p.name + s) for s in _SIDECARS)):
        with contextlib.suppress(OSError):
            _remove(q)
    with _LOCK:
        _LIVE.discard(p)


def remove_live_temps() -> None:
    """Remove every temporary of this process (interrupt path; safe to call from another thread)."""
    with _LOCK:
        live = list(_LIVE)
    for p in live:
        remove_temp(p)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie does not: a batch worker killed on an interrupt is
    reparented to PID 1, which in a container often never reaps it, and its temporaries stayed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # Linux only
        return proc_stat_fields(pid)[0] != "Z"
    return True


def proc_stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...): split after the last
    ")", since a name may hold spaces and parentheses. OSError where there is no such process (or no
    /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def clean_stale(final: Path) -> list[Path]:
    """Remove temporaries (files or staging folders) of ``final`` left by dead processes (SIGKILL,
    power loss); returns them."""
    removed = []
    with contextlib.suppress(OSError):
        stem = temp_stem(final)
        for q in final.parent.glob(f".{glob_escape(stem)}.dakd-*"):
            m = _TEMP_RE.search(q.name[len(stem) + 1 :])
            if m is None:
                continue
            pid = int(m.group(1))
            if pid != os.getpid() and not _pid_alive(pid):
                with contextlib.suppress(OSError):
                    _remove(q)
                    removed.append(q)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: ``os.access`` says yes for /proc and /sys as root."""
    probe = folder / f".dakd-probe-{os.getpid()}-{secrets.token_hex(4)}"
    with _LOCK:
        _LIVE.add(probe)  # an interrupt between create and unlink still removes it
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create files there ({e.strerror or e})") from None
    finally:
        remove_temp(probe)


def check_not_bundled(p: Path) -> None:
    """Refuse an output that is (or links to) a file of the package's bundled model: a class map or
    a report written over the weights would break every later run, ``--overwrite`` or not."""
    from dakd_edge.weights import installed_files

    for name, q in installed_files().items():
        if same_file(p, q):
            raise OutputError(f"output {p} is the {name}: refusing to overwrite the package's model")


def check_regular(p: Path) -> None:
    """Refuse an existing output (symlinks followed) that is not a regular file: renaming a temporary
    onto ``/dev/null`` or a FIFO would replace the device node itself, ``--overwrite`` or not."""
    try:
        mode = p.stat().st_mode
    except OSError:  # missing, dangling link, loop: nothing to replace, or another check reports it
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"output {p} is a directory")
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _NODE_KINDS if test(mode)), "special file")
        raise OutputError(f"output {p} is a {kind}, not a regular file")


def check_output(path: str | os.PathLike, overwrite: bool = False, bundled_ok: bool = False) -> Path:
    """Validate an output path before any work is done (exists, regular file, folder, writable);
    returns it.

    Also removes temporaries of this output left by killed runs. Only the recipe that installs the
    bundled model passes ``bundled_ok`` (:func:`check_not_bundled`).
    """
    p = Path(path)
    if not bundled_ok:
        check_not_bundled(p)
    check_regular(p)
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputError(f"output exists: {p} (pass --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory does not exist: {parent}")
    probe_writable(parent)
    clean_stale(p)
    return p


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: equal resolved paths (symlinks) or one inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _pairs(named: Named | None) -> list[tuple[str, Path]]:
    if named is None:
        return []
    return list(named.items()) if isinstance(named, Mapping) else list(named)


def check_distinct(outputs: Named, inputs: Named | None = None) -> None:
    """Refuse two outputs on one path, and any output that is (or links to) an input.

    Names are what the user typed or reads (``"-o"``, ``"model"``); messages add the paths, so a name
    should not contain its path: ``-o x.tif is the input scene x.tif: refusing to overwrite an input``.
    """
    outs, ins = _pairs(outputs), _pairs(inputs)
    for i, (name, p) in enumerate(outs):
        for other_name, other in outs[:i]:
            if same_file(p, other):
                raise OutputError(f"{other_name} and {name} are the same path: {p}")
    for name, p in outs:
        for iname, q in ins:
            if same_file(p, q):
                raise OutputError(f"{name} {p} is the {iname} {q}: refusing to overwrite an input")


def mount_point(path: Path) -> Path:
    p = path.resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def check_free_space(folder: Path, need: int, what: str) -> None:
    """Refuse before any work when ``folder``'s filesystem has less than ``need`` bytes free."""
    free = free_bytes(folder)
    if free < need:
        raise OutputError(
            f"no space left on {mount_point(folder)} for {what}: needs about {_mb(need)}, {_mb(free)} free"
        )


def check_room(path: Path, need: int, what: str) -> None:
    """:func:`check_free_space` for outputs under ``path``, which may not exist yet: on its nearest
    existing folder, probed first (:func:`probe_writable`: a read-only folder is not "no space left")."""
    folder = next(p for p in (path, *path.parents) if p.is_dir())
    probe_writable(folder)
    check_free_space(folder, need, what)


def topmost_missing(folder: Path) -> Path | None:
    """The topmost of ``folder`` and its parents that does not exist (None when ``folder`` exists):
    what ``mkdir -p folder`` would create first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    return missing[-1] if missing else None


def make_dirs(folder: Path) -> Path | None:
    """``mkdir -p folder``; returns the topmost folder it created (None when ``folder`` existed)."""
    top = topmost_missing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return top


def remove_made_dirs(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` (those :func:`make_dirs` created) while empty."""
    if top is None:
        return
    for p in (folder, *folder.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def _mb(n: int) -> str:
    """Megabytes, with a decimal below 10 MB ("needs about 0 MB, 0 MB free" said nothing)."""
    return f"{n / 2**20:.{1 if n < 10 * 2**20 else 0}f} MB"


def _causes(e: BaseException) -> Iterator[BaseException]:
    seen = set()
    c: BaseException | None = e
    while c is not None and id(c) not in seen:
        seen.add(id(c))
        yield c
        c = c.__cause__ or c.__context__


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, raised by Python or reported in a message (GDAL; SQLite: "database or disk is
    full")."""
    for c in _causes(e):
        if isinstance(c, OSError) and c.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        s = str(c).lower()
        if any(words in s for words in ("no space left", "disk full", "disk is full", "quota exceeded")):
            return True
    return False


def out_of_space(folder: Path) -> bool:
    """Less than 1 MiB free: libtiff reports a full disk on stderr only, and GDAL's exception then
    says just "Write error at scanline ..." (check before the temporaries are removed)."""
    try:
        return free_bytes(folder) < 1 << 20
    except OSError:
        return False


def describe_write_error(e: BaseException, path: Path) -> str:
    """One line for a failed write: disk full names the device and the path."""
    if is_disk_full(e) or out_of_space(path.parent):
        return f"no space left on {mount_point(path.parent)} (writing {path})"
    return f"{path}: cannot write ({reason(e)})"


def write_failure(e: BaseException, path: Path) -> str | None:
    """:func:`describe_write_error` for an I/O error (OSError, GDAL) or a full disk in any library's
    words (torch and safetensors raise RuntimeError & co.); None for other errors."""
    if isinstance(e, DakdError) or not (_is_io_error(e) or is_disk_full(e)):
        return None
    return describe_write_error(e, path)


def reason(e: BaseException) -> str:
    """Why ``e`` happened, on one line: its innermost message (GDAL's own words, where rasterio's
    outer error only says "see previous exception"), or the error's type when no cause says more."""
    return " ".join(str(deepest(e)).split()) or type(e).__name__


def deepest(e: BaseException) -> BaseException:
    """The innermost cause with a message (GDAL's own words are at the bottom of rasterio's chain)."""
    last = e
    for c in _causes(e):
        if str(c).strip():
            last = c
    return last


def rename_new(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final`` only where ``final`` does not exist: two runs on one output, neither
    with ``--overwrite``, both passed the start's check, and the later one replaced the other's files
    silently. A hard link fails atomically where the name exists; a folder, or a file system without
    hard links, is checked just before the rename instead."""
    if tmp.is_file() and not tmp.is_symlink():
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (FAT, gcsfuse's ENOSYS, some sshfs servers): check instead
            pass
        else:
            os.unlink(tmp)
            return
    if final.exists() or final.is_symlink():
        raise FileExistsError(errno.EEXIST, "File exists", str(final))
    os.replace(tmp, final)


class Transaction:
    """Outputs committed together: ``temp(key)`` beside each final path, renamed by :meth:`commit`.

    Any exception inside the ``with`` block removes every temporary (and any non-user error while
    writing becomes one :class:`OutputError` line, "no space left on ..." for a full disk).
    ``verify[key](temp)`` checks a finished file before anything is renamed. libtiff's own error lines
    (:class:`~dakd_edge.gtiff.LibtiffErrors`) go into that line instead of onto stderr above it, and a
    write GDAL did not fail but libtiff reported fails the commit.
    """

    def __init__(
        self,
        outputs: Mapping[str, str | os.PathLike | None],
        overwrite: bool = False,
        bundled_ok: bool = False,
    ) -> None:
        self.finals = {k: Path(p) for k, p in outputs.items() if p is not None}
        check_distinct(self.finals)
        for p in self.finals.values():
            check_output(p, overwrite, bundled_ok)
        self.overwrite = overwrite
        self.temps: dict[str, Path] = {}
        self.scratch: list[Path] = []
        self.committed = False
        self.tiff = LibtiffErrors()

    def temp(self, key: str) -> Path:
        """The temporary that becomes output ``key`` on commit."""
        if key not in self.temps:
            self.temps[key] = temp_path(self.finals[key])
        return self.temps[key]

    def scratch_path(self, key: str, role: str) -> Path:
        """A work file beside output ``key`` that is always removed (staging rasters)."""
        p = temp_path(self.finals[key], role)
        self.scratch.append(p)
        return p

    def commit(self, verify: Mapping[str, Callable[[Path], Any]] | None = None) -> dict[str, Path]:
        """Verify every written temporary, then rename them all onto their final names."""
        tiff = self.tiff.error()
        if tiff is not None:
            raise OutputError(describe_write_error(tiff, next(iter(self.finals.values()), Path("."))))
        for key, tmp in self.temps.items():
            if not tmp.exists():
                raise OutputError(f"{self.finals[key]}: was not written")
            check = (verify or {}).get(key)
            if check is not None:
                try:
                    check(tmp)
                except DakdError:
                    raise
                except Exception as e:
                    raise OutputError(describe_write_error(e, self.finals[key])) from None
        for key in self.temps:  # a FIFO or device made since the check must not be replaced either
            check_regular(self.finals[key])
        done: list[Path] = []
        try:
            for key, tmp in self.temps.items():
                if self.overwrite:
                    os.replace(tmp, self.finals[key])
                else:
                    rename_new(tmp, self.finals[key])
                done.append(self.finals[key])
                with _LOCK:
                    _LIVE.discard(tmp)
        except OSError as e:
            for p in done:  # keep "all or nothing" as far as it can be kept
                with contextlib.suppress(OSError):
                    p.unlink()
            if isinstance(e, FileExistsError):
                raise OutputError(
                    f"output exists: {self.finals[key]} (another run wrote it while this one ran; pass "
                    "--overwrite to replace it)"
                ) from None
            raise OutputError(describe_write_error(e, self.finals[key])) from None
        self.committed = True
        return {k: self.finals[k] for k in self.temps}

    def abort(self) -> None:
        for p in [*self.temps.values(), *self.scratch]:
            remove_temp(p)

    def __enter__(self) -> Transaction:
        self.tiff.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        self.tiff.__exit__()
        # worded before the temporaries go: a full disk is still full then
        message = write_failure(e, self._final_named_in(e)) if e is not None else None
        tiff = self.tiff.error()
        if message is not None and tiff is not None:  # libtiff's words, not "Write error at scanline 0"
            message = describe_write_error(tiff, self._final_named_in(e))
        elif e is None and tiff is not None:  # after the commit: the only sign, so it stays on stderr
            self.tiff.echo()
        if self.committed:
            for p in self.scratch:
                remove_temp(p)
        else:
            self.abort()
        if message is not None:
            raise OutputError(message) from None

    def _final_named_in(self, e: BaseException) -> Path:
        """The output whose temporary the error is about (GDAL names files in its messages)."""
        text = " ".join(f"{getattr(c, 'filename', '') or ''} {c}" for c in _causes(e))
        for final in self.finals.values():
            if f".{temp_stem(final)}.dakd-" in text or str(final) in text:
                return final
        return next(iter(self.finals.values()), Path("."))


def _is_io_error(e: BaseException) -> bool:
    """OSError or a GDAL/rasterio error (without importing rasterio here)."""
    return isinstance(e, OSError) or type(e).__module__.startswith("rasterio")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False, bundled_ok: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on clean exit it is renamed onto ``path``."""
    with Transaction({"out": path}, overwrite, bundled_ok) as tx:
        yield tx.temp("out")
        tx.commit()
