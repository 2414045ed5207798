"""Creation options of the plain GeoTIFFs dakd-edge writes (staging files, generated products), and
:class:`LibtiffErrors`, which keeps libtiff's own error lines off stderr while they are written.

A profile for ``rasterio.open(path, "w", **profile)``; no rasterio import here, so any layer may use it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any


def gtiff_profile(
    height: int,
    width: int,
    dtype: str | None = None,
    *,
    count: int = 1,
    block: int | None = 256,
    compress: str = "deflate",
    **extra: Any,
) -> dict[str, Any]:
    """A GTiff of ``count`` bands, tiled in ``block`` x ``block`` squares (``None``: strips), compressed,
    BigTIFF when it could pass 4 GB. ``extra`` adds or overrides options (``crs``, ``nodata``, ...).
    Three or more bands are grey bands (``PHOTOMETRIC=MINISBLACK``): GDAL tags 3 / 4 byte bands RGB / RGBA
    by default, which made the 4th class's probability an alpha band in every GIS."""
    profile: dict[str, Any] = dict(driver="GTiff", width=width, height=height, count=count)
    if count >= 3:
        profile["photometric"] = "MINISBLACK"
    if dtype is not None:
        profile["dtype"] = dtype
    if block is None:
        profile["tiled"] = False
    else:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    profile.update(compress=compress, BIGTIFF="IF_SAFER", **extra)
    return profile


# ----------------------------------------------------------------------------- libtiff's own error lines
# GDAL's TIFF I/O layer (tif_vsi.c) reports a failed write or seek with TIFFErrorExt(), which goes to
# libtiff's process-wide handler, not to GDAL's: with libtiff >= 4.5 GDAL installs only per-file
# handlers, so libtiff's default prints "_tiffWriteProc: No space left on device." straight to the C
# stderr, past rasterio's error handling, above the one line the CLI prints for the same failure.
# Only those two I/O procedures' lines are collected. Any other line goes on to the handler that was
# there before: a GDAL built on libtiff < 4.5 (rasterio 1.3 wheels: GDAL 3.6) installs its own
# process-wide handler, which then receives every libtiff error, reads of input files included (a
# damaged next-IFD offset that GDAL reads past), and turns them into GDAL errors as it always did.
_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_IO_MODULES = (b"_tiffWriteProc", b"_tiffSeekProc")  # tif_vsi.c's failed writes and seeks
_CAPTURES: list[list[str]] = []  # the lines of every open LibtiffErrors; all get every line
_SAVED: dict[int, tuple[Any, int | None]] = {}  # setter address -> (setter, libtiff's handler before)
_FORWARD: Any = None  # the handler before ours (callable), for the lines that are not collected
_SETTERS: list[Any] | None = None  # TIFFSetErrorHandler of GDAL's libtiff, once found
_LOCK = threading.Lock()


def _vsnprintf() -> Any:
    """C ``vsnprintf`` (formats the message from the handler's ``va_list``), None where not found."""
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        f = getattr(libc, "_vsnprintf" if sys.platform == "win32" else "vsnprintf")
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    f.restype = ctypes.c_int
    return f


_FORMAT = _vsnprintf()


def _on_error(module: int | None, fmt: int | None, ap: int | None) -> None:
    """libtiff's error handler while a :class:`LibtiffErrors` is open: record the I/O layer's lines,
    hand any other one (untouched) to the handler before ours; never print, never raise."""
    try:
        name = ctypes.string_at(module) if module else b""
        if name not in _IO_MODULES:
            forward = _FORWARD
            if forward is not None:
                forward(module, fmt, ap)
            return
        if _FORMAT is not None and fmt:
            buf = ctypes.create_string_buffer(1024)
            _FORMAT(buf, len(buf), fmt, ap)
            text = buf.value.decode(errors="replace")
        else:
            text = ctypes.string_at(fmt).decode(errors="replace") if fmt else ""
        line = f"{name.decode(errors='replace')}: {text}"
        for lines in tuple(_CAPTURES):
            lines.append(line)
    except BaseException:  # an exception cannot cross back into C
        pass


_HANDLER = _HANDLER_TYPE(_on_error)  # kept alive: libtiff holds a raw pointer to it
_HANDLER_ADDRESS = ctypes.cast(_HANDLER, ctypes.c_void_p).value


def _libtiff_paths() -> list[str]:
    """GDAL's libtiff: a libtiff beside a loaded libgdal (not Pillow's own copy), and libgdal itself for
    an internal copy. From /proc/self/maps (Linux), else rasterio's bundled libraries."""
    try:
        with open("/proc/self/maps") as f:
            loaded = {Path(ln.split(None, 5)[5].strip()) for ln in f if len(ln.split(None, 5)) == 6}
    except OSError:
        here = Path(getattr(sys.modules.get("rasterio"), "__file__", None) or ".").parent
        loaded = {p for d in (here / ".dylibs", here.parent / "rasterio.libs") for p in d.glob("*")}
    gdal = {p for p in loaded if p.name.startswith(("libgdal", "gdal"))}
    folders = {p.parent for p in gdal}
    tiff = {p for p in loaded if p.name.startswith(("libtiff", "tiff")) and p.parent in folders}
    return [str(p) for p in sorted(tiff) + sorted(gdal)]


def _find_setters() -> list[Any]:
    """``TIFFSetErrorHandler`` of GDAL's libtiff (an internal copy's is ``gdal_``-prefixed)."""
    setters: dict[int, Any] = {}
    for path in _libtiff_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("TIFFSetErrorHandler", "gdal_TIFFSetErrorHandler"):
            f = getattr(lib, name, None)
            if f is not None:
                f.argtypes, f.restype = [ctypes.c_void_p], ctypes.c_void_p
                setters[ctypes.cast(f, ctypes.c_void_p).value or 0] = f
    return list(setters.values())


def _setters() -> list[Any]:
    global _SETTERS
    if _SETTERS is None:
        if "rasterio" not in sys.modules:  # GDAL (and its libtiff) not loaded yet: look again later
            return []
        _SETTERS = _find_setters()
    return _SETTERS


class LibtiffErrors:
    """Collect libtiff's own error lines in :attr:`lines` while open, instead of letting it print them:
    those of GDAL's TIFF I/O layer (``_tiffWriteProc``, ``_tiffSeekProc``: a failed write or seek); any
    other line goes on to the handler that was there before (GDAL's own, on libtiff < 4.5).

    The caller decides what they mean: folded into its one-line error when the write failed
    (:meth:`error`: GDAL's exception then says only "Write error at scanline N"), or printed as libtiff
    would (:meth:`echo`) when they are the only sign of a failure. Lines are process-wide (the segment
    writer thread's too); nesting is fine. Where libtiff's handler cannot be reached (no rasterio loaded
    yet, no /proc, a GDAL without its libtiff's symbols) this does nothing and libtiff prints as before.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __enter__(self) -> LibtiffErrors:
        global _FORWARD
        with _LOCK:
            for setter in _setters():
                key = ctypes.cast(setter, ctypes.c_void_p).value or 0
                before = setter(_HANDLER_ADDRESS)
                # first one in, or GDAL's one-time driver set-up (libtiff < 4.5) replaced ours since
                if before != _HANDLER_ADDRESS:
                    _SAVED[key] = (setter, before)
            before = next((b for _, b in _SAVED.values() if b), None)
            _FORWARD = _HANDLER_TYPE(before) if before else None
            _CAPTURES.append(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        global _FORWARD
        with _LOCK:
            _CAPTURES[:] = [c for c in _CAPTURES if c is not self.lines]
            if not _CAPTURES:  # the last one out gives libtiff its handler back
                for setter, before in _SAVED.values():
                    current = setter(before)
                    if current != _HANDLER_ADDRESS:  # one set meanwhile (GDAL's own) stays
                        setter(current)
                _SAVED.clear()
                _FORWARD = None

    def error(self) -> OSError | None:
        """The lines as one OSError (errno ENOSPC, EDQUOT or EIO when their words say so); None when
        libtiff said nothing."""
        if not self.lines:
            return None
        err = OSError("; ".join(dict.fromkeys(self.lines)))  # "_tiffSeekProc: ..." repeats per seek
        err.errno = next(
            (n for n in (errno.ENOSPC, errno.EDQUOT, errno.EIO) if os.strerror(n) in str(err)), None
        )
        return err

    def echo(self) -> None:
        """Print the lines to stderr as libtiff's default handler does."""
        for line in self.lines:
            print(f"{line}.", file=sys.stderr)
