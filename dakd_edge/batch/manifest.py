"""``DIR/manifest.jsonl``: one JSON line per finished scene, the record ``--resume`` trusts.

Append-only, written by the driver alone, each line flushed and fsynced: a run killed at any moment
leaves whole lines plus at most one torn last line, which :func:`read_manifest` ignores. A scene may
appear several times across runs (failed, then done on resume); the last line wins. A scene sent to a
worker first gets a :data:`STARTED` line (only when nothing lies under its output names yet; not
fsynced), which readers of finished scenes skip (:func:`read_claims` has them). A scene counts as
done only when its line says ``ok`` *and* its files are still there with the recorded checksums, so a
deleted or modified output is redone rather than trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from dakd_edge.atomic import describe_write_error, file_sha256
from dakd_edge.errors import OutputError

MANIFEST = "manifest.jsonl"
OPTIONS = "batch.json"  # the options a batch folder was started with; --resume must match them
# outputs of one scene, relative to DIR: key -> name pattern
OUTPUTS = {
    "classes": "{id}/{id}_classes.tif",
    "vector": "{id}/{id}_spills.geojson",
    "report": "{id}/{id}_report.json",
}
CHECKED = ("classes", "vector")  # outputs whose sha256 the manifest records
# the status of a line written before a scene goes to a worker (not a finished scene): a run stopped
# (Ctrl-C, kill -9) after the worker committed the scene's outputs but before its record was written
# would otherwise leave files that --resume takes for someone else's
STARTED = "started"


def scene_outputs(out: Path, scene_id: str) -> dict[str, Path]:
    """Absolute output paths of a scene in the batch folder ``out``."""
    return {k: out / v.format(id=scene_id) for k, v in OUTPUTS.items()}


def is_batch_folder(folder: Path) -> bool:
    """True for a folder a batch run wrote (its options or its manifest): never searched for scenes."""
    return (folder / OPTIONS).is_file() or (folder / MANIFEST).is_file()


def read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """Last record of each finished scene id; torn or foreign lines and :data:`STARTED` lines are
    skipped."""
    return read_claims(out)[0]


def read_claims(out: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(:func:`read_manifest`, the ids whose last line is :data:`STARTED`: a run sent the scene to a
    worker and stopped before it recorded the outcome, so the files under its output names, if any,
    are the batch's own)."""
    records: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    p = out / MANIFEST
    if not p.exists():
        return records, claimed
    for line in p.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            if rec.get("status") == STARTED:
                claimed.add(rec["id"])
            else:
                records[rec["id"]] = rec
                claimed.discard(rec["id"])
    return records, claimed


def append_record(out: Path, record: dict[str, Any], sync: bool = True) -> None:
    """Append one line (O_APPEND, one write, fsync unless not ``sync``) so that it is either whole or
    torn, never mixed.

    A full disk takes part of a write without an error: the file is cut back to its old end and
    :class:`OutputError` says why, rather than a torn line that silently loses the scene's record.
    """
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    p = out / MANIFEST
    # a torn last line of a killed run would swallow this one: start on a fresh line
    sep = b"\n" if p.exists() and p.stat().st_size and _last_byte(p) != b"\n" else b""
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(describe_write_error(e, p)) from None
    try:
        end = os.fstat(fd).st_size
        data = sep + line
        while data:
            data = data[os.write(fd, data) :]
        if sync:
            os.fsync(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)
        raise OutputError(describe_write_error(e, p)) from None
    finally:
        os.close(fd)


def _last_byte(p: Path) -> bytes:
    with open(p, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def file_stat(path: Path) -> list[int]:
    """[size, mtime in ns, inode] of a file: what changes when it is written to or replaced."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verified(out: Path, record: dict[str, Any] | None) -> bool:
    """True when ``record`` says ok and every output exists with the recorded checksum.

    A file whose size, modification time and inode are still those its record took along with its
    checksum (``stat``, since this version) is not read again: a ``--resume`` of a finished archive
    would otherwise read every class map (GBs, at ~1 GB/s). Any write or replacement changes them
    (only a deliberate ``touch -d`` back to the same time, at the same size, would not); a copied
    folder (new inodes) and older records are checked by their checksums."""
    if not record or record.get("status") != "ok":
        return False
    sums = record.get("sha256") or {}
    stats = record.get("stat") or {}
    paths = scene_outputs(out, record["id"])
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        return all(
            k in sums and (stats.get(k) == file_stat(paths[k]) or file_sha256(paths[k]) == sums[k])
            for k in CHECKED
        )
    except OSError:
        return False
