"""One `dakd-edge batch` run per batch folder (``DIR/batch.lock``): refused at once, naming the run
that holds it; stale after kill -9 without blocking anything; a clear fallback where flock() fails."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dakd_edge.batch import lock as lock_mod
from dakd_edge.batch.lock import LOCK, hold
from dakd_edge.errors import Notice, OutputError

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


def test_a_second_hold_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = hold(tmp_path)
    holder = json.loads((tmp_path / LOCK).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == HOST
    with pytest.raises(OutputError) as e:
        hold(tmp_path)  # flock: another open file of this same process conflicts too
    assert str(e.value).startswith(
        f"{tmp_path} is in use by another batch run (pid {os.getpid()} on {HOST}, started "
    )
    assert str(e.value).endswith("): wait for it to end, or give another --out")
    first.release()
    first.release()  # idempotent
    assert not (tmp_path / LOCK).exists()
    with hold(tmp_path):
        pass
    assert not (tmp_path / LOCK).exists()


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding the lock of ``folder`` (a batch run, as far as the lock can tell)."""
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom dakd_edge.batch.lock import hold\n"
        f"hold(Path({str(folder)!r}))\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_stale_lock_after_kill_9_blocks_nothing(tmp_path: Path) -> None:
    from dakd_edge.batch import runner

    proc = _holder(tmp_path)
    try:
        with pytest.raises(
            OutputError, match=f"in use by another batch run .pid {proc.pid} on {HOST}, started"
        ):
            hold(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == proc.pid  # left behind, stale
    # not someone's files: a folder holding only a stale lock file is an empty folder to a new batch
    options = runner._options(None, "auto", None, None, {})
    for resume in (False, True):
        assert runner._prepare(tmp_path, options, resume) == (None, None)
    with hold(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_the_cli_refuses_a_second_run_at_once_in_one_line(tmp_path: Path, capsys) -> None:
    """A batch already running on the folder (here: another process holding its lock): the second run
    stops before Ray, the scenes or the folder are touched, with exit status 2 and one line."""
    pytest.importorskip("ray")
    pytest.importorskip("shapely")
    from dakd_edge.cli.app import main
    from tests.inference.fake import blob_scene, write_tif

    scene = write_tif(tmp_path / "scene0.tif", blob_scene(64, 64))
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()  # a run that just started in it
    old.mkdir()
    (old / "batch.json").write_text("{}")  # an earlier run's folder, resumed by a cron job
    procs = {new: _holder(new), old: _holder(old)}
    try:
        t0 = time.monotonic()
        for out, extra in ((new, []), (old, ["--resume"])):
            argv = ["batch", str(scene), "-o", str(out), "--model", "tests.batch_fake:make_predictor", "-q"]
            with pytest.raises(SystemExit) as e:
                main([*argv, *extra])
            assert e.value.code == 2
            started = json.loads((out / LOCK).read_text())["started"]
            assert capsys.readouterr().err.splitlines() == [
                f"dakd-edge: error: {out} is in use by another batch run (pid {procs[out].pid} on {HOST}, "
                f"started {started}): wait for it to end, or give another --out"
            ]
        assert time.monotonic() - t0 < 10
        assert sorted(p.name for p in new.iterdir()) == [LOCK]
        assert sorted(p.name for p in old.iterdir()) == ["batch.json", LOCK]
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=10)


def test_where_flock_fails_the_pid_in_the_file_is_the_lock(tmp_path: Path, monkeypatch) -> None:
    """ENOLCK / EOPNOTSUPP (NFS without lockd, some FUSE mounts): said in a Notice, then the file is
    a pid file: a live pid of this host refuses; a dead one is taken over; another host's run cannot
    be checked from here, so it refuses and names the file to delete once that run is gone."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(Notice, match=r"flock\(\) fails there \(No locks available\): another batch run"):
        first = hold(tmp_path)
    assert not first.flocked and json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    with pytest.warns(Notice), pytest.raises(OutputError, match=f"pid {os.getpid()} on {HOST}"):
        hold(tmp_path)
    first.release()
    assert not (tmp_path / LOCK).exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = {**lock_mod._me(), "pid": int(dead.stdout)}
    (tmp_path / LOCK).write_text(json.dumps(stale))
    with pytest.warns(Notice):
        taken = hold(tmp_path)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    taken.release()
    (tmp_path / LOCK).write_text(json.dumps({**stale, "host": "other-node"}))
    with pytest.warns(Notice), pytest.raises(OutputError) as e:
        hold(tmp_path)
    assert f"(pid {stale['pid']} on other-node, started" in str(e.value)
    assert str(e.value).endswith(f"; if that run is gone, delete {tmp_path / LOCK}")


def test_an_nfs_mount_with_local_locks_is_not_trusted(tmp_path: Path) -> None:
    """flock() on an NFS mount with ``nolock`` / ``local_lock`` sees only this machine's runs."""
    point = str(tmp_path.resolve())
    line = "36 25 0:32 / {} rw,relatime shared:1 - {} srv:/export rw,vers=3,{}\n"
    other = line.format("/", "ext4", "errors=remount-ro")
    for fs, opts, want in (
        ("nfs", "nolock,proto=tcp", "its NFS mount keeps locks local to this machine (nolock)"),
        ("nfs4", "local_lock=flock", "(local_lock=flock)"),
        ("nfs4", "local_lock=none", None),
        ("ext4", "nolock", None),
    ):
        got = lock_mod._local_only_locks(tmp_path, other + line.format(point, fs, opts))
        assert (got is None) if want is None else want in got


def test_the_cli_says_so_in_one_line_where_flock_fails(tmp_path: Path, monkeypatch, capsys) -> None:
    import fcntl

    pytest.importorskip("ray")
    pytest.importorskip("shapely")
    from dakd_edge.cli.app import main
    from tests.inference.fake import blob_scene, write_tif

    def no_flock(fd, op):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    scene = write_tif(tmp_path / "scene0.tif", blob_scene(64, 64))
    out = tmp_path / "batch"
    argv = [
        "batch",
        str(scene),
        "-o",
        str(out),
        "--model",
        "tests.batch_fake:make_predictor",
        "-q",
        "--limit",
        "0",
    ]
    with pytest.raises(SystemExit) as e:
        main(argv)  # --limit 0: a batch folder, no scene run, no Ray
    assert e.value.code == 0
    captured = capsys.readouterr()
    err, summary = captured.err.splitlines(), captured.out
    assert err == [
        f"dakd-edge: warning: {out}: flock() fails there (Operation not supported): another batch run on this "
        f"folder is detected by the pid in {LOCK} instead, which cannot tell whether a run on another machine "
        "is still going"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "layer.json", "spills.gpkg"]
    assert summary.rstrip().endswith("(no scene run: no manifest)"), summary  # it named manifest.jsonl
