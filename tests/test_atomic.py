"""dakd_edge.atomic: temporaries (files and staging folders) of dead processes are cleaned up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dakd_edge.atomic import clean_stale, remove_temp, temp_path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_clean_stale_removes_files_and_staging_folders_of_dead_processes(tmp_path: Path) -> None:
    final = tmp_path / "out.tif"
    pid = _dead_pid()
    dead_file = tmp_path / f".out.tif.dakd-{pid}-ab12.tmp.tif"
    dead_file.write_text("x")
    dead_dir = tmp_path / f".out.tif.dakd-{pid}-cd34.tmp.tif"
    (dead_dir / "inner").mkdir(parents=True)
    (dead_dir / "inner" / "f").write_text("x")
    mine = temp_path(final)  # this process: alive, kept
    mine.mkdir()
    other = tmp_path / f".other.tif.dakd-{pid}-ef56.tmp.tif"  # another output's: not ours to clean
    other.write_text("x")
    assert sorted(clean_stale(final)) == sorted([dead_file, dead_dir])
    assert not dead_file.exists() and not dead_dir.exists() and mine.is_dir() and other.exists()
    remove_temp(mine)  # a staging folder goes with its contents
    assert not mine.exists()


def test_removing_a_temporary_removes_gdal_side_cars(tmp_path: Path) -> None:
    """A SIGTERM while GDAL built a COG's overviews left its 7.5 MB ``.ovr.tmp`` behind."""
    tmp = temp_path(tmp_path / "p.tif")
    cars = [tmp.with_name(tmp.name + s) for s in ("", ".ovr.tmp", ".ovr", ".aux.xml", ".msk")]
    for c in cars:
        c.write_text("x")
    remove_temp(tmp)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_in_any_library_s_words_is_one_output_error(tmp_path: Path) -> None:
    """torch.save raises RuntimeError (ENOSPC only in its context), safetensors and SQLite their own
    error types with the words: all were tracebacks; now "no space left on ..." and no temporary is
    left."""
    import errno

    import pytest

    from dakd_edge.atomic import Transaction
    from dakd_edge.errors import OutputError

    class SafetensorError(Exception):
        pass

    def torch_like(tmp: Path) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
            ) from None

    def safetensors_like(tmp: Path) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def sqlite_like(tmp: Path) -> None:
        import sqlite3

        raise sqlite3.OperationalError("database or disk is full")

    for fail in (torch_like, safetensors_like, sqlite_like):
        with pytest.raises(OutputError, match=r"^no space left on .* \(writing .*m\.pt\)$"):
            with Transaction({"out": tmp_path / "m.pt"}) as tx:
                tx.temp("out").write_bytes(b"partial")
                fail(tx.temp("out"))
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError), Transaction({"out": tmp_path / "m.pt"}):  # other errors pass through
        raise ValueError("not a write error")


def _tiff_error():
    """libtiff's ``TIFFError(module, "%s", text)``: how GDAL's TIFF I/O layer reports a failed write or
    seek (through libtiff's process-wide handler, which prints to stderr)."""
    import ctypes

    import pytest

    pytest.importorskip("rasterio")
    from dakd_edge import gtiff

    path = next((p for p in gtiff._libtiff_paths() if "tiff" in Path(p).name), None)
    if path is None:
        pytest.skip("no libtiff library found in this process")
    lib = ctypes.CDLL(path)
    # the text as the format (no variadic argument: those are passed on the stack on macOS arm64,
    # which ctypes does not do for a function without argtypes)
    return lambda module, text: lib.TIFFError(module.encode(), text.replace("%", "%%").encode())


def test_libtiff_lines_are_collected_not_printed(capfd) -> None:
    import errno

    from dakd_edge.atomic import is_disk_full
    from dakd_edge.gtiff import LibtiffErrors

    tiff_error = _tiff_error()
    with LibtiffErrors() as outer:
        with LibtiffErrors() as inner:
            tiff_error("_tiffWriteProc", "No space left on device")
        tiff_error("_tiffSeekProc", "No space left on device")
    assert inner.lines == ["_tiffWriteProc: No space left on device"]
    assert outer.lines == [*inner.lines, "_tiffSeekProc: No space left on device"]
    err = outer.error()
    assert err is not None and err.errno == errno.ENOSPC and is_disk_full(err)
    assert str(err) == "_tiffWriteProc: No space left on device; _tiffSeekProc: No space left on device"
    assert capfd.readouterr().err == ""
    tiff_error("_tiffSeekProc", "Input/output error")  # closed: libtiff has its own handler back
    assert capfd.readouterr().err == "_tiffSeekProc: Input/output error.\n"
    assert LibtiffErrors().error() is None


def test_a_write_only_libtiff_saw_fail_fails_the_commit(tmp_path: Path, capfd) -> None:
    """GDAL's close does not fail when libtiff cannot write the last tiles or the directory: synth
    said "wrote" over a cut-short file, with libtiff's lines on stderr the only sign."""
    import pytest

    from dakd_edge.atomic import Transaction, mount_point
    from dakd_edge.errors import OutputError

    tiff_error = _tiff_error()
    out = tmp_path / "s.tif"
    for words, message in (
        ("Input/output error", f"{out}: cannot write (_tiffSeekProc: Input/output error)"),
        ("No space left on device", f"no space left on {mount_point(tmp_path)} (writing {out})"),
    ):
        with pytest.raises(OutputError) as e:
            with Transaction({"out": out}) as tx:
                tx.temp("out").write_bytes(b"cut short")
                tiff_error("_tiffSeekProc", words)
                tx.commit()
        assert str(e.value) == message
        assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr().err == ""


def test_a_failed_write_is_worded_by_libtiff(tmp_path: Path, capfd) -> None:
    """GDAL's own exception says only "Write error at scanline 0"; libtiff says why."""
    import pytest

    from dakd_edge.atomic import Transaction
    from dakd_edge.errors import OutputError

    rasterio_errors = pytest.importorskip("rasterio.errors")
    tiff_error = _tiff_error()
    out = tmp_path / "s.tif"
    with pytest.raises(OutputError) as e:
        with Transaction({"out": out}) as tx:
            tx.temp("out").write_bytes(b"cut short")
            tiff_error("_tiffWriteProc", "Input/output error")
            raise rasterio_errors.RasterioIOError("TIFFAppendToStrip:Write error at scanline 0")
    assert str(e.value) == f"{out}: cannot write (_tiffWriteProc: Input/output error)"
    assert list(tmp_path.iterdir()) == [] and capfd.readouterr().err == ""


def test_other_libtiff_lines_go_on_to_the_handler_before(tmp_path: Path, capfd) -> None:
    """Only GDAL's I/O layer's lines (a failed write or seek) are collected. A GDAL on libtiff < 4.5
    (rasterio 1.3 wheels: GDAL 3.6) sends every libtiff error to the process-wide handler, reads of the
    input included: a damaged next-IFD offset that GDAL reads past failed the commit of a segment run
    ("out.tif: cannot write (TIFFFetchDirectory: in.tif: Can not read TIFF directory count; ...)")."""
    from dakd_edge.atomic import Transaction

    tiff_error = _tiff_error()
    out = tmp_path / "s.tif"
    with Transaction({"out": out}) as tx:
        tx.temp("out").write_bytes(b"whole")
        tiff_error("TIFFFetchDirectory", "in.tif: Can not read TIFF directory count")
        tx.commit()
    assert out.read_bytes() == b"whole"
    assert tx.tiff.lines == []
    # the handler before ours (here libtiff's default) got it, as it would have without us
    assert capfd.readouterr().err == "TIFFFetchDirectory: in.tif: Can not read TIFF directory count.\n"


def test_a_handler_set_while_open_stays(capfd) -> None:
    """GDAL on libtiff < 4.5 installs its own process-wide handler when its GTiff driver is first used,
    which may be inside a Transaction: the exit put libtiff's default back over it, which then printed
    every libtiff error of the rest of the process on stderr instead of GDAL reporting it."""
    import ctypes

    from dakd_edge import gtiff
    from dakd_edge.gtiff import LibtiffErrors

    tiff_error = _tiff_error()
    seen: list[bytes] = []
    gdal_like = gtiff._HANDLER_TYPE(lambda module, fmt, ap: seen.append(ctypes.string_at(module)))
    (setter,) = gtiff._setters()[:1]
    default = setter(None)  # libtiff's own handler, put back at the end
    setter(default)
    try:
        with LibtiffErrors() as t:
            setter(ctypes.cast(gdal_like, ctypes.c_void_p))  # "GTiffOneTimeInit" replaces ours
            with LibtiffErrors() as inner:  # a later one puts ours back, forwarding to GDAL's
                tiff_error("_tiffWriteProc", "No space left on device")
                tiff_error("TIFFReadDirectory", "a line for GDAL")
        tiff_error("TIFFReadDirectory", "after")
        assert seen == [b"TIFFReadDirectory", b"TIFFReadDirectory"]
        assert inner.lines == t.lines == ["_tiffWriteProc: No space left on device"]
        assert capfd.readouterr().err == ""
    finally:
        setter(default)


def test_a_zombie_s_temporaries_are_stale(tmp_path: Path) -> None:
    """A killed batch worker left as a zombie (its reaper, PID 1 in a container, never waits) counted as
    alive, so its temporaries were never removed."""
    import time

    import pytest

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    p = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: a zombie once it ends
    stat = Path(f"/proc/{p.pid}/stat")
    deadline = time.monotonic() + 30
    while ") Z" not in stat.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    final = tmp_path / "out.tif"
    temp = tmp_path / f".out.tif.dakd-{p.pid}-ab12.partial.tif"
    temp.write_text("x")
    try:
        assert clean_stale(final) == [temp] and not temp.exists()
    finally:
        p.wait()


def test_a_long_output_name_gets_temporaries_within_the_name_limit(tmp_path: Path) -> None:
    """A valid 240-character output name was refused ('File name too long'): its temporary added ~40
    characters. Temporaries carry a shortened, hashed stem; stale ones are still found by it."""
    final = tmp_path / ("x" * 236 + ".tif")
    twin = tmp_path / ("x" * 235 + "y.tif")  # same start, another name: another hash
    t = temp_path(final, "partial")
    assert len((t.name + ".aux.xml").encode()) <= 255
    t.write_text("x")  # the file system takes it
    assert temp_path(twin).name.split(".dakd-")[0] != t.name.split(".dakd-")[0]
    dead = tmp_path / (t.name.split(".dakd-")[0] + f".dakd-{_dead_pid()}-ab12.tmp.tif")
    dead.write_text("x")
    assert clean_stale(final) == [dead] and t.exists()
    remove_temp(t)
    short = tmp_path / "out.tif"
    assert temp_path(short).name.startswith(".out.tif.dakd-")  # short names are kept whole


def test_a_run_without_overwrite_never_replaces_what_another_run_wrote_meanwhile(tmp_path: Path) -> None:
    """Two runs on one output, neither with --overwrite, both passed the start's check; the later one
    replaced the other's files silently (exit 0). Its commit now fails, leaving the other's intact."""
    import pytest

    from dakd_edge.atomic import Transaction
    from dakd_edge.errors import OutputError

    a, b = tmp_path / "c.tif", tmp_path / "v.geojson"
    with pytest.raises(OutputError, match=r"output exists: .*v\.geojson \(another run wrote it"):
        with Transaction({"a": a, "b": b}) as tx:
            tx.temp("a").write_text("mine")
            tx.temp("b").write_text("mine")
            b.write_text("theirs")  # the other run commits first
            tx.commit()
    assert b.read_text() == "theirs" and not a.exists()  # all or nothing: our c.tif went too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.geojson"]  # no temporary left
    with Transaction({"b": b}, overwrite=True) as tx:
        tx.temp("b").write_text("mine")
        tx.commit()
    assert b.read_text() == "mine"


def test_commit_without_hard_links_falls_back_to_a_check(tmp_path: Path, monkeypatch) -> None:
    """gcsfuse answers ENOSYS to link(): every run without --overwrite failed at its commit."""
    import errno
    import os

    import pytest

    from dakd_edge.atomic import Transaction
    from dakd_edge.errors import OutputError

    def no_links(*a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "c.tif"
    with Transaction({"a": out}) as tx:
        tx.temp("a").write_text("mine")
        tx.commit()
    assert out.read_text() == "mine"
    with pytest.raises(OutputError, match="another run wrote it"):
        with Transaction({"a": tmp_path / "d.tif"}) as tx:
            tx.temp("a").write_text("mine")
            (tmp_path / "d.tif").write_text("theirs")
            tx.commit()


def test_a_non_utf8_or_long_multibyte_name_gets_a_temporary(tmp_path: Path) -> None:
    """temp_stem encoded names as strict UTF-8: a non-UTF-8 --json name that worked before failed."""
    import os

    odd = tmp_path / os.fsdecode(b"r\xff.json")
    t = temp_path(odd)
    t.write_text("x")  # the file system takes it
    remove_temp(t)
    long = tmp_path / ("\u00e9" * 120 + ".tif")  # 240 bytes of two-byte characters
    t = temp_path(long)
    t.name.encode("utf-8")  # cut between characters: still UTF-8
    t.write_text("x")
    remove_temp(t)


def test_work_dirs_of_dead_processes_are_swept(tmp_path, monkeypatch):
    """A SIGKILLed `evaluate --scene` left its work folder (a whole class map) in TMPDIR for good: the
    next work folder of that kind removes those whose process is dead, and leaves live ones alone."""
    import os
    import subprocess
    import sys
    import tempfile

    from dakd_edge.atomic import work_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f"dakd-evaluate-{dead}-abc123"
    live = tmp_path / f"dakd-evaluate-{os.getppid()}-def456"
    other = tmp_path / f"dakd-bench-{dead}-ghi789"
    for d in (stale, live, other):
        d.mkdir()
        (d / "classes.tif").write_bytes(b"x" * 10)
    with work_dir("dakd-evaluate-") as tmp:
        assert tmp.name.startswith(f"dakd-evaluate-{os.getpid()}-") and tmp.is_dir()
    assert not stale.exists() and live.is_dir() and other.is_dir() and not tmp.exists()
