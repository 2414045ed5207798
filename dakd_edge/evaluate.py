"""Dataset evaluation the way the paper reports it: one confusion matrix over the whole split.

Each image is predicted at full resolution through the :class:`~dakd_edge.inference.predictor.Predictor`
(so images larger than the model's tile are tiled with blending, exactly as ``segment`` does) from
the dataset's unit luminance, with the model's own normalisation (no 8-bit round trip). Works with any backend: a PyTorch checkpoint,
an ONNX file or a TensorRT engine (:func:`dakd_edge.inference.load`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.data.scaling import as_chw, normalize
from dakd_edge.errors import DatasetError, InputError, Notice, OutputError, quiet, user_stacklevel
from dakd_edge.meta import IGNORE_INDEX
from dakd_edge.metrics import ConfusionMatrix


def open_for_model(
    data: str | os.PathLike,
    classes: int | Sequence[str],
    split: str = "test",
    kind: str = "auto",
    sensor: str | None = None,
) -> Any:
    """Open ``data`` in the model's label space, matching classes by name, never by position alone.

    ``classes``: the model's class names (or only their count, for a model without names). A binary
    model scores any set as oil vs the rest, its oil and the data's oil found by name (a model whose
    classes are ("oil", "background") scored 0.02 mIoU by position); a model of K > 2 classes needs the
    data's K classes, in any order (ids are mapped by name) or unnamed (``class0``...). Anything else
    is a :class:`DatasetError` listing both sets.
    """
    from dakd_edge.data import open_dataset
    from dakd_edge.meta import class_key, class_meaning, oil_ids_of

    ds = open_dataset(data, split=split, kind=kind, sensor=sensor, classes="native")
    names = [f"class{i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    ours = list(ds.class_names)
    if len(names) == 2:
        with quiet(Notice):  # the model's own fallback is said when it is loaded
            model_oil = oil_ids_of(names)[0]
        lut = np.full(256, 1 - model_oil, np.uint8)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        lut[oil_ids_of(ours)] = model_oil
        if len(ours) != 2:
            rest = [n for i, n in enumerate(ours) if lut[i] != model_oil]
            warnings.warn(
                Notice(
                    f"{data} has {len(ours)} classes; the binary model is scored on oil vs the rest "
                    f"({', '.join(rest)} count as {names[1 - model_oil]})"
                ),
                stacklevel=user_stacklevel(),
            )
        return ds if (lut[:2] == (0, 1)).all() and len(ours) == 2 else _Relabelled(ds, lut, names)
    if len(ours) == len(names):
        if _generic(names) or _generic(ours):
            return ds
        for key in (class_key, class_meaning):  # exact names first; synonyms only when unambiguous
            theirs, mine = [key(n) for n in names], [key(n) for n in ours]
            if sorted(theirs) != sorted(mine) or len(set(theirs)) != len(theirs):
                continue
            if theirs == mine:
                return ds
            lut = np.full(256, IGNORE_INDEX, np.uint8)
            lut[: len(ours)] = [theirs.index(k) for k in mine]
            return _Relabelled(ds, lut, names)
    raise DatasetError(
        f"the model's {len(names)} classes ({', '.join(names)}) are not those of {data} "
        f"({len(ours)}: {', '.join(ours)}); evaluate a model trained on this label set"
    )


def _generic(names: Sequence[str]) -> bool:
    """Names a model or set gets when nobody named its classes (``ModelMeta.default_for``)."""
    return all(re.fullmatch(r"class\d+", n) for n in names)


class _Relabelled:
    """A dataset whose mask ids are mapped through ``lut`` (256 entries, 255 stays 255) to a model's."""

    def __init__(self, ds: Any, lut: np.ndarray, class_names: Sequence[str]) -> None:
        self._ds, self._lut = ds, lut
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = dict(self._ds[i])
        s["mask"] = self._lut[np.asarray(s["mask"]).astype(np.uint8)].astype(np.int64)
        return s

    def __getattr__(self, name: str) -> Any:  # files, root, ... of the set itself
        if name.startswith("_"):  # not yet set (copy, pickle): no endless recursion through _ds
            raise AttributeError(name)
        return getattr(self._ds, name)


def _stem(ds: Any, i: int) -> str:
    files = getattr(ds, "files", None)
    if files is not None and i < len(files):
        f = files[i]
        f = f[0] if isinstance(f, list | tuple) else f
        return Path(str(f)).stem
    return f"{i:05d}"


def colorize(classes: np.ndarray, palette: Any) -> np.ndarray:
    """Class ids (H, W) -> RGB (H, W, 3) uint8 with the model's palette (ignore/nodata: white)."""
    lut = np.full((256, 3), 255, np.uint8)
    for i, rgb in enumerate(palette):
        lut[i] = rgb
    return lut[classes.astype(np.uint8)]


# Folders of the dataset layouts the loaders read (OSD images/ labels/ labels_1D/, SOS sat/ gt/ and the
# sensor folders holding train pairs, generic images/ masks/), in any split and label form.
DATA_FOLDER_NAMES = frozenset({"images", "labels", "labels_1d", "masks", "sat", "gt", "palsar", "sentinel"})


def png_folder(save_png: str | os.PathLike | None, data: str | os.PathLike | None = None) -> Path | None:
    """The ``--save-png`` folder, created and probed with a real file (``os.access`` says yes to root on
    a read-only mount): a folder that cannot take the PNGs fails here, before any image is scored.

    Inside the dataset ``data``, a folder of its layout (:data:`DATA_FOLDER_NAMES`, of any split or
    label form) or under one is refused, ``--overwrite`` or not: PNGs named like the dataset's files
    replaced OSD's ``labels/img_0001.png``, and in SOS's ``sat/`` the next evaluation read ``1_sat.png``
    as one more image. Other folders of its tree (``DATA/predictions/``) are fine."""
    from dakd_edge.atomic import probe_writable

    if not save_png:
        return None
    d = Path(save_png)
    if data is not None:
        root, here = Path(data).resolve(), d.resolve()
        inside = here == root or root in here.parents
        if inside and any(part.lower() in DATA_FOLDER_NAMES for part in here.relative_to(root).parts):
            raise OutputError(
                f"--save-png {d} is a folder of the dataset's images or labels: its PNGs would replace "
                "them or be read as more images next time; give another folder"
            )
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the prediction PNG folder {d} ({e.strerror or e})") from None
    probe_writable(d)
    return d


def _dataset_folders(ds: Any) -> set[Path]:
    """The folders the dataset's images and masks are read from."""
    out = set()
    for f in getattr(ds, "files", None) or []:
        for x in f if isinstance(f, list | tuple) else [f]:
            out.add(Path(str(x)).resolve().parent)
    return out


def png_paths(ds: Any, n: int, folder: Path, overwrite: bool) -> list[Path]:
    """Where the PNG of each of the first ``n`` samples goes: ``{image stem}.png`` (``{index}_{stem}``
    where stems repeat, as two sensors' folders may), refusing existing files unless ``overwrite``.

    A folder the dataset reads its images or masks from is refused, ``--overwrite`` or not: PNGs named
    like its files replaced OSD's ``labels/img_0001.png``, and in SOS's ``sat/`` the next evaluation
    read ``1_sat.png`` as one more image. A folder elsewhere in the dataset's tree is fine."""
    if folder.resolve() in _dataset_folders(ds):
        raise OutputError(
            f"--save-png {folder} is a folder of the dataset's images or labels: its PNGs would replace "
            "them or be read as more images next time; give another folder"
        )
    stems = [_stem(ds, i) for i in range(n)]
    if len(set(stems)) < n:
        stems = [f"{i:05d}_{s}" for i, s in enumerate(stems)]
    paths = [folder / f"{s}.png" for s in stems]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{existing[0]} exists ({len(existing)} of the {n} prediction PNGs do); pass --overwrite, or "
            "another --save-png folder"
        )
    return paths


def evaluate(
    predictor: Any,
    data: str | os.PathLike,
    split: str = "test",
    kind: str = "auto",
    sensor: str | None = None,
    save_png: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``predictor`` on a dataset split; returns the metrics dict plus run facts.

    Keys: everything :meth:`ConfusionMatrix.compute` returns (fractions), and ``model``, ``backend``,
    ``data``, ``split``, ``sensor``, ``images``, ``data_read_as`` (what the set was read as, the lines
    ``train`` prints: :func:`dakd_edge.data.describe`), ``seconds``, ``mpix_per_s``. A set with no oil
    in its masks warns (:class:`Notice`).
    """
    if limit is not None and limit < 1:  # -1 used to give nan metrics over "-1 images"
        raise InputError(f"--limit must be >= 1, got {limit}")
    if not (hasattr(predictor, "meta") and hasattr(predictor, "stream")):  # was an AttributeError inside
        raise TypeError(
            f"evaluate needs a Predictor, not {type(predictor).__name__}: "
            "dakd_edge.inference.load(path) gives one for a model file"
        )
    meta = predictor.meta
    ds = open_for_model(data, meta.class_names, split, kind, sensor)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise DatasetError(f"{data} ({split}) has no images")
    png_dir = png_folder(save_png, data)
    pngs = png_paths(ds, n, png_dir, overwrite) if png_dir is not None else []
    from dakd_edge.data import describe

    summary, warns = describe(ds)  # a set misread without an error (no oil at all) scores without one too
    for w in warns:
        warnings.warn(Notice(w), stacklevel=user_stacklevel())
    cm = ConfusionMatrix(meta.num_classes, ignore_index=IGNORE_INDEX, class_names=list(meta.class_names))
    pixels, seconds = 0, 0.0
    with _progress(n, progress) as advance:
        for i in range(n):
            s = ds[i]
            t = time.perf_counter()
            pred = predict_unit(predictor, s["image"])
            seconds += time.perf_counter() - t
            pixels += pred.size
            mask = np.asarray(s["mask"])
            cm.update(np.where(pred == IGNORE_INDEX, 0, pred), mask)
            if pngs:
                _write_png(pngs[i], colorize(pred, meta.palette))
            advance()
    result = cm.compute()
    result.update(
        {
            "model": meta.name,
            "backend": getattr(predictor.backend, "name", "?") if hasattr(predictor, "backend") else "?",
            "data": str(data),
            "split": split,
            "sensor": sensor,
            "images": n,
            "data_read_as": summary,
            "seconds": seconds,
            "mpix_per_s": pixels / 1e6 / seconds if seconds > 0 else float("nan"),
        }
    )
    return result


def predict_unit(predictor: Any, unit: np.ndarray) -> np.ndarray:
    """Class ids ``(H, W)`` uint8 of a unit-luminance image ``(C, H, W)`` (a dataset sample), through
    the predictor's tiling with the model's normalisation; 255 where the input is NaN.

    The same as ``predictor.predict`` on the 8-bit image for 8-bit data, without converting to 8 bits
    and back (so float samples, e.g. generated ones, are not quantised).
    """
    from dakd_edge.inference.tiling import argmax0

    norm = predictor.meta.normalization
    unit = as_chw(np.asarray(unit, np.float32), predictor.meta.in_chans)
    valid = np.isfinite(unit).all(0)
    x = normalize(np.clip(unit, 0.0, 1.0), norm, fill=True)
    h, w = valid.shape
    probs = np.zeros((predictor.meta.num_classes, h, w), np.float32)
    for strip in predictor.stream(lambda y0, y1, x0, x1: (x[:, y0:y1, x0:x1], valid[y0:y1, x0:x1]), h, w):
        sh, sw = strip.valid.shape
        probs[:, strip.y0 : strip.y0 + sh, strip.x0 : strip.x0 + sw] = strip.probs
    pred = argmax0(probs)
    pred[~valid] = IGNORE_INDEX
    return pred


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A rich bar on stderr, yielding its advance function (the trainers' bar needs torch: not here)."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("evaluate", total=total)
        yield lambda: bar.advance(task)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from dakd_edge.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def paper_rows(result: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """(name, [IoU, F1, P, R] in %) per class plus the mean row, as the paper's tables list them."""
    rows = []
    for i, name in enumerate(result["class_names"]):
        rows.append((name, [100 * result[k][i] for k in ("iou", "f1", "precision", "recall")]))
    rows.append(("mean", [100 * result[k] for k in ("miou", "mf1", "mprecision", "mrecall")]))
    return rows


def render_table(result: dict[str, Any], title: str | None = None) -> Any:
    """A rich Table: per-class IoU/F1/P/R, the mean row (mIoU) and pixel accuracy A, in percent."""
    from rich.table import Table

    where = result["split"] + (f", {result['sensor']}" if result.get("sensor") else "")
    t = Table(title=title or f"{result['model']} on {result['data']} ({where})")
    for col in ("class", "IoU", "F1", "P", "R"):
        t.add_column(col, justify="left" if col == "class" else "right")
    rows = paper_rows(result)
    for name, vals in rows:
        cells = ["-" if math.isnan(v) else f"{v:.2f}" for v in vals]
        t.add_row(f"[bold]{name}[/bold]" if name == "mean" else name, *cells, end_section=name == rows[-2][0])
    t.caption = (
        f"A (pixel accuracy) {100 * result['pixel_accuracy']:.2f}%  |  {result['images']} images, "
        f"{result['pixels']} px  |  {result['mpix_per_s']:.2f} MPix/s ({result['backend']})"
    )
    return t
