"""What runs inside a Ray worker: one model load, then whole scenes through ``segment_scene``.

Kept free of Ray imports (the runner wraps :class:`SceneWorker` with ``ray.remote``), so the same code
is what the plain-loop benchmark and the tests call in-process. A worker never raises for a scene: it
returns a record with the one-line error, so the driver decides about retries and the manifest.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dakd_edge.errors import DakdError, DakdWarning, InputError, OutputError

# A model is a file path (None: the bundled model), or a zero-argument factory returning a Predictor:
# a callable picklable by reference, or "package.module:function".
ModelSpec = str | os.PathLike | Callable[[], Any] | None


def is_factory(spec: ModelSpec) -> bool:
    return callable(spec) or (isinstance(spec, str) and ":" in spec and not Path(spec).exists())


def make_predictor(spec: ModelSpec, load: dict[str, Any]) -> Any:
    """The worker's :class:`Predictor`: ``spec()`` for a factory, else ``inference.load(spec, **load)``."""
    if is_factory(spec):
        if isinstance(spec, str):
            module, _, attr = spec.partition(":")
            spec = getattr(importlib.import_module(module), attr)
        return spec()  # type: ignore[operator]
    from dakd_edge.inference import load as load_predictor
    from dakd_edge.weights import bundled_path

    path = spec if spec is not None else bundled_path(load.get("backend", "auto"))
    return load_predictor(str(path), **load)  # threads: ONNX Runtime's intra-op pool or PyTorch's


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def one_line(e: BaseException) -> str:
    """Our errors are one line already; anything else is named by its type (a bug, not bad input)."""
    text = " ".join(str(e).split())
    if isinstance(e, DakdError):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class SceneWorker:
    """Holds one loaded model; :meth:`process` segments one scene into ``out/<id>/`` (one transaction)."""

    def __init__(self, spec: ModelSpec, load: dict[str, Any]) -> None:
        self.error: str | None = None
        self.predictor = None
        try:
            self.predictor = make_predictor(spec, load)
        except Exception as e:  # reported by ready(): the driver stops before any scene
            self.error = f"cannot load the model: {one_line(e)}"

    def ready(self) -> str | None:
        """None when the model is loaded, else the one-line reason."""
        return self.error

    def tiling(self) -> dict[str, int] | None:
        """The tile and overlap the model runs with (defaults resolved); None if it does not say."""
        c = getattr(self.predictor, "tiling", None)
        return None if c is None else {"tile": int(c.tile), "overlap": int(c.overlap)}

    def process(
        self, scene: dict[str, Any], out: str, attempt: int, overwrite: bool, seg: dict[str, Any]
    ) -> dict:
        """Segment ``scene`` (``{"id", "path", "meta"}``); returns its manifest record.

        ``overwrite`` only for a scene the manifest records (or whose worker died mid-commit in this
        run): any other file under the scene's output names is not ours to replace.
        """
        from dakd_edge.atomic import file_sha256
        from dakd_edge.batch.manifest import CHECKED, file_stat, scene_outputs
        from dakd_edge.inference.segment import segment_scene

        paths = scene_outputs(Path(out), scene["id"])
        rec: dict[str, Any] = {
            "id": scene["id"],
            "input": scene["path"],
            "outputs": {k: str(p.relative_to(out)) for k, p in paths.items()},
            "attempts": attempt,
            "started": now(),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }
        t0 = time.perf_counter()
        folder, made = paths["classes"].parent, False
        try:
            if not overwrite:
                _check_unrecorded(paths, Path(out))
            made = not folder.exists()
            folder.mkdir(exist_ok=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = segment_scene(
                    self.predictor,
                    scene["path"],
                    paths["classes"],
                    vector=paths["vector"],
                    report=paths["report"],
                    overwrite=overwrite,
                    **seg,
                )
            product = report.get("product") or {}
            meta = scene.get("meta") or {}
            rec.update(
                status="ok",
                error=None,
                sha256={k: file_sha256(paths[k]) for k in CHECKED},
                stat={k: file_stat(paths[k]) for k in CHECKED},
                start_time=product.get("start_time") or meta.get("start_time"),
                platform=product.get("mission") or meta.get("platform"),
                width=report["width"],
                height=report["height"],
                megapixels=report["megapixels"],
                spills=report["spills"],
                oil_area_m2=report.get("oil_area_m2"),
                mpix_per_s=report["mpix_per_s"],
                warnings=[str(w.message) for w in caught if issubclass(w.category, DakdWarning)],
                input_stat=input_stat(Path(scene["path"])),  # a replaced input runs again on --resume
            )
        except Exception as e:
            final = isinstance(e, InputError | _Unrecorded)  # would fail the same way again
            rec.update(status="failed", error=one_line(e), retry=not final)
            if isinstance(e, InputError):  # a damaged input: --resume skips it while it stays unchanged
                rec["input_stat"] = input_stat(Path(scene["path"]))
            if made:  # an empty out/<id>/ per failed scene would look like a scene with lost outputs
                try:
                    folder.rmdir()
                except OSError:  # not empty (a concurrent writer's file): leave it
                    pass
        rec["time_s"] = round(time.perf_counter() - t0, 3)
        rec["finished"] = now()
        return rec


def input_stat(path: Path) -> list[int] | None:
    """:func:`~dakd_edge.batch.manifest.file_stat` of an input file (a zip, a GeoTIFF; an extracted
    ASF HyP3 product's co-polarised image, the file it reads), None for another folder (a ``.SAFE``
    repaired inside keeps its folder's stat) or an unreadable path."""
    from dakd_edge.batch.manifest import file_stat
    from dakd_edge.data.products import is_hyp3_rtc_name
    from dakd_edge.inference.readers import co_pol_member

    try:
        if path.is_dir() and is_hyp3_rtc_name(path.name):  # one look into the folder, not two
            path = Path(co_pol_member(path) or path)
        return file_stat(path) if path.is_file() else None
    except (OSError, DakdError):
        return None


class _Unrecorded(OutputError):
    """A scene's output name is taken by a file the manifest does not record."""


def _check_unrecorded(paths: dict[str, Path], out: Path) -> None:
    for p in paths.values():
        if p.exists() or p.is_symlink():
            raise _Unrecorded(
                f"{p.relative_to(out)} exists but the manifest does not record this scene: "
                f"move {p.parent.name}/ away to run it"
            )
