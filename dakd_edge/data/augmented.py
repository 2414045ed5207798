"""The augmented set D^a written by SAR-JointNet generation and read back for DAKD training.

Layout of a folder::

    manifest.json   {"format": "dakd-augmented", "version": 1, "num_classes": K, "class_names": [...],
                     "balancing_factor": b, "generator": {...}, "samples": [{"id", "image", "logits"}, ...]}
    images/{id}.png     8-bit grey PNG (unit luminance * 255)
    logits/{id}.npy     float16 (K, H, W) teacher logits

Every file is written atomically and the manifest is rebuilt from what is on disk, so a generation run
that is killed can be resumed (``AugmentedWriter.has`` tells which ids are done). A generation writes
the manifest before its first sample with ``"complete": false`` and ``"requested": n`` and sets
``complete`` only when all ``n`` samples are on disk, so a killed run leaves its provenance behind and
readers refuse an unfinished set. numpy + pillow only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dakd_edge.atomic import atomic_path
from dakd_edge.data.folder import open_image
from dakd_edge.errors import DatasetError, OutputError
from dakd_edge.meta import oil_ids_of

FORMAT = "dakd-augmented"
VERSION = 1
MANIFEST = "manifest.json"
# Generator settings that decide what sample i is: an existing set is only extended when they match
# (batch, device and precision too: they change the numbers, so a resumed set would differ from a
# one-shot run). Keys a manifest lacks (older versions) are not compared.
SAME_SET_KEYS = (
    "checkpoint", "step", "stage", "weights", "ddim_steps", "seed", "size", "batch", "device", "amp", "model",
)  # fmt: skip
_KEY_NAMES = {"checkpoint": "teacher checkpoint", "step": "teacher step", "stage": "teacher stage",
              "ddim_steps": "steps", "model": "model config"}  # fmt: skip
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_id(sample_id: str) -> str:
    sample_id = str(sample_id)
    if not _ID_RE.match(sample_id) or sample_id.startswith("."):
        raise ValueError(f"invalid sample id {sample_id!r}: use letters, digits, '_', '-', '.'")
    return sample_id


def _paths(sample_id: str) -> tuple[str, str]:
    return f"images/{sample_id}.png", f"logits/{sample_id}.npy"


def is_augmented(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a dakd-augmented manifest."""
    m = Path(root) / MANIFEST
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Load and validate ``manifest.json``; raises DatasetError naming the problem."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: no manifest (not an augmented set written by `dakd-edge jointnet`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest: {e}") from e
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise DatasetError(
            f"{path}: unsupported version {manifest.get('version')!r} (this reader: {VERSION})"
        )
    for key in ("num_classes", "class_names", "samples"):
        if key not in manifest:
            raise DatasetError(f"{path}: missing key {key!r}")
    if len(manifest["class_names"]) != manifest["num_classes"]:
        raise DatasetError(
            f"{path}: {len(manifest['class_names'])} class names for {manifest['num_classes']}"
        )
    return manifest


def sample_files(root: str | os.PathLike) -> list[Path]:
    """Sample files (``images/*.png``, ``logits/*.npy`` with sample-id names) under ``root``."""
    root = Path(root)
    return [
        p
        for sub, ext in (("images", ".png"), ("logits", ".npy"))
        if (root / sub).is_dir()
        for p in (root / sub).glob(f"*{ext}")
        if _ID_RE.match(p.stem) and not p.name.startswith(".")
    ]


def complete_ids(root: str | os.PathLike) -> list[str]:
    """Ids whose image and logits are both on disk (atomic writes: no partial files)."""
    root = Path(root)
    ids = [p.stem for p in sample_files(root) if p.suffix == ".png"]
    return sorted(i for i in ids if (root / _paths(i)[1]).is_file())


def check_same_set(root: Path, old: dict[str, Any], num_classes: int, info: dict[str, Any]) -> None:
    """Merging is for resuming one generation: samples of another teacher, size or seed would make a set
    no manifest describes."""
    if old["num_classes"] != num_classes:
        raise DatasetError(f"{root}: existing set has {old['num_classes']} classes, writer has {num_classes}")
    before = old.get("generator") or {}
    keys = [k for k in SAME_SET_KEYS if k in before and k in info and before[k] != info[k]]
    diff = [f"{_KEY_NAMES[k]} differs" if k == "model" else f"{_KEY_NAMES.get(k, k)} {before[k]!r} -> {info[k]!r}"
            for k in keys]  # fmt: skip
    if diff:
        raise OutputError(
            f"{root} holds a set made with other generator settings ({'; '.join(diff[:3])}); "
            "pass --overwrite to replace it, or choose another --out"
        )


def check_existing(
    root: str | os.PathLike, num_classes: int, info: dict[str, Any], resume: bool, overwrite: bool
) -> None:
    """Refuse an output folder a generation must not write into: a set without ``resume`` or
    ``overwrite``, a set of other settings with ``resume``, or sample files no manifest vouches for
    (their settings cannot be checked, and an ``images/`` folder may be someone's real data)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} exists and is not a folder")
    if not (root / MANIFEST).is_file():
        if sample_files(root):
            raise OutputError(
                f"{root} holds images/ or logits/ files but no {MANIFEST}, so their settings cannot be "
                "checked; choose another --out, or remove them"
            )
        return
    old = read_manifest(root)
    if overwrite:
        return
    if not resume:
        have = len(complete_ids(root))
        state = "" if old.get("complete", True) else f", unfinished: {have} of {old.get('requested')}"
        raise OutputError(
            f"{root} already holds an augmented set ({have} samples{state}); pass --resume to continue or "
            "extend it, or --overwrite to replace it"
        )
    check_same_set(root, old, num_classes, info)


class AugmentedWriter:
    """Writes generated (image, logits) pairs; resumable.

    Args:
        root: output folder (created if missing). If it already holds a manifest, its class count and
            the ``generator_info`` settings both manifests name (:data:`SAME_SET_KEYS`) must match and
            the new samples are merged with the old ones (a resumed generation).
        num_classes, class_names: label space of the logits.
        balancing_factor: the b used by the generator (recorded for provenance).
        generator_info: free-form JSON-able description (checkpoint, steps, seed, ...).
        overwrite: remove an existing set's samples and manifest first instead of merging with them.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        num_classes: int,
        class_names: Sequence[str],
        balancing_factor: float,
        generator_info: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.root = Path(root)
        self.num_classes = int(num_classes)
        self.class_names = [str(c) for c in class_names]
        self.balancing_factor = float(balancing_factor)
        self.generator_info = dict(generator_info or {})
        if (self.root / MANIFEST).is_file() and overwrite:
            self._remove_set()
        elif (self.root / MANIFEST).is_file():
            check_same_set(self.root, read_manifest(self.root), self.num_classes, self.generator_info)
        try:
            (self.root / "images").mkdir(parents=True, exist_ok=True)
            (self.root / "logits").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create augmented set folder {self.root}: {e}") from e

    def _remove_set(self) -> None:
        for p in sample_files(self.root):
            p.unlink()
        (self.root / MANIFEST).unlink()

    def has(self, sample_id: str) -> bool:
        """True when both files of ``sample_id`` are complete on disk (atomic writes: no partial files)."""
        img, lg = _paths(_check_id(sample_id))
        return (self.root / img).is_file() and (self.root / lg).is_file()

    def add(self, sample_id: str, image: np.ndarray, logits: np.ndarray) -> None:
        """Write one pair. ``image``: uint8 (H, W); ``logits``: (K, H, W), stored as float16."""
        sample_id = _check_id(sample_id)
        image = np.asarray(image)
        logits = np.asarray(logits)
        if image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"image must be uint8 (H, W), got {image.dtype} {image.shape}")
        if logits.ndim != 3 or logits.shape[0] != self.num_classes or logits.shape[1:] != image.shape:
            raise ValueError(
                f"logits must be ({self.num_classes}, {image.shape[0]}, {image.shape[1]}), got {logits.shape}"
            )
        logits16 = logits.astype(np.float16)
        if not np.isfinite(logits16).all():
            raise ValueError(f"sample {sample_id}: logits are not finite in float16 (|value| > 65504 or NaN)")
        img_rel, lg_rel = _paths(sample_id)
        # Logits first, image last: has() needs both, so a crash in between leaves the id "not done".
        with atomic_path(self.root / lg_rel, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(logits16), allow_pickle=False)
        try:
            with atomic_path(self.root / img_rel, overwrite=True) as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
        except BaseException:  # no half sample left behind (a full disk, an interrupt)
            (self.root / lg_rel).unlink(missing_ok=True)
            raise

    def sample_ids(self) -> list[str]:
        """Ids complete on disk (whether written by this writer or an earlier run)."""
        return complete_ids(self.root)

    def close(self, expected: Sequence[str] | None = None, done: bool = True) -> Path:
        """Write ``manifest.json`` atomically listing the complete samples on disk; returns its path.

        ``expected``: the ids the set is to hold (a generation's ``0..n-1``): only those are listed, and
        ``complete`` says whether all are there (never while ``done`` is False: a run in progress).
        """
        have = self.sample_ids()
        progress = {}
        if expected is not None:
            want = set(expected)
            have = [i for i in have if i in want]
            progress = {"requested": len(want), "complete": done and len(have) == len(want)}
        samples = [{"id": i, "image": _paths(i)[0], "logits": _paths(i)[1]} for i in have]
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "balancing_factor": self.balancing_factor,
            "generator": self.generator_info,
            **progress,
            "samples": samples,
        }
        path = self.root / MANIFEST
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
        return path

    def __enter__(self) -> AugmentedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def binary_logits(logits: np.ndarray, positive: int = 1) -> np.ndarray:
    """K-class logits -> 2-class (rest, positive) logits with the same softmax probability of ``positive``.

    The 'rest' logit is the log-sum-exp of the other classes, so softmax over the two equals
    (1 - p_positive, p_positive) of the K-class softmax.
    """
    others = np.delete(logits, positive, axis=0).astype(np.float64)
    m = others.max(axis=0)
    rest = m + np.log(np.exp(others - m).sum(axis=0))
    return np.stack([rest, logits[positive].astype(np.float64)]).astype(np.float32)


class AugmentedDataset:
    """Reads an augmented set: samples with ``image`` (1,H,W) unit luminance, ``mask`` = argmax of the
    teacher logits (int64), ``logits`` float32 (K,H,W).

    ``classes="binary"`` folds K-class logits into (rest, oil) for training binary (SOS-style) models;
    the oil class is found by name (OSD's: id 1). An unfinished set (a generation still running, or stopped) is refused:
    training on it would silently use fewer samples than were asked for.
    """

    def __init__(self, root: str | os.PathLike, classes: str = "native") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"augmented set folder not found: {self.root}")
        self.manifest = read_manifest(self.root)
        if classes not in ("native", "binary"):
            raise DatasetError(f"classes must be 'native' or 'binary', got {classes!r}")
        self.binary = classes == "binary" and self.manifest["num_classes"] != 2
        self._oil = oil_ids_of(self.manifest["class_names"])[0] if self.binary else 1  # by name
        self.num_classes = 2 if classes == "binary" else int(self.manifest["num_classes"])
        self.class_names = (
            ["background", "oil"] if classes == "binary" else list(self.manifest["class_names"])
        )
        self.samples = list(self.manifest["samples"])
        if self.manifest.get("complete") is False:
            want = self.manifest.get("requested")
            raise DatasetError(
                f"{self.root}: unfinished augmented set ({min(len(complete_ids(self.root)), want or 0)} of "
                f"{want} samples); finish it with `dakd-edge jointnet generate ... --resume` (a smaller --n "
                "with --resume settles for the first N)"
            )
        if not self.samples:
            raise DatasetError(f"{self.root}: augmented set has no samples")
        missing = [s["id"] for s in self.samples if not (self.root / s["image"]).is_file()]
        missing += [s["id"] for s in self.samples if not (self.root / s["logits"]).is_file()]
        if missing:
            raise DatasetError(f"{self.root}: {len(missing)} listed files are missing (first: {missing[0]})")
        self.files = [(self.root / s["image"], self.root / s["logits"]) for s in self.samples]
        self.balancing_factor = self.manifest.get("balancing_factor")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        img_path, lg_path = self.files[index]
        try:
            with open_image(img_path) as im:
                image = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            logits = np.load(lg_path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError, EOFError) as e:  # a truncated .npy raises EOFError
            raise DatasetError(
                f"cannot read augmented sample {img_path.stem}: {e or type(e).__name__}"
            ) from e
        k = int(self.manifest["num_classes"])
        if logits.ndim != 3 or logits.shape[0] != k:
            raise DatasetError(
                f"{lg_path}: logits of shape {logits.shape}, the set's manifest says {k} classes "
                f"(expected ({k}, H, W))"
            )
        if logits.shape[1:] != image.shape:
            raise DatasetError(f"{img_path.stem}: image {image.shape} vs logits {logits.shape[1:]}")
        if not np.isfinite(logits).all():  # would stop training with a "non-finite loss" blamed on it
            raise DatasetError(
                f"{lg_path}: {int((~np.isfinite(logits)).sum())} teacher logit(s) are NaN or inf"
            )
        if self.binary:
            logits = binary_logits(logits, self._oil)
        return {
            "image": image[None],
            "mask": logits.argmax(axis=0).astype(np.int64),
            "logits": logits,
        }
