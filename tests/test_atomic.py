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
