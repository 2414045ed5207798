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
