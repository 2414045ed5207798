"""Model files: weights + :class:`~dakd_edge.meta.ModelMeta`, enough to rebuild the model alone.

Preferred format: ``.safetensors`` with the metadata JSON in the safetensors header (key
``dakd_meta``), so nothing is ever unpickled and the torch-free runtime can read the metadata
(:func:`read_meta`). ``.pt``/``.pth`` files are also accepted: a dict ``{"format", "meta" (JSON),
"state_dict"}`` read with ``torch.load(weights_only=True)``. Suffixes and keys: :mod:`dakd_edge.formats`.

``meta.name`` is the registry name and ``meta.arch`` the constructor kwargs besides ``num_classes``
and ``in_chans``: ``create_model(meta.name, meta.num_classes, meta.in_chans, **meta.arch)``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from dakd_edge import jsonin
from dakd_edge.atomic import atomic_path, new_file_mode
from dakd_edge.errors import ModelFileError, quiet
from dakd_edge.extras import available, install_hint
from dakd_edge.formats import PYTORCH, SAFETENSORS, format_of
from dakd_edge.meta import ModelMeta

FORMAT = "dakd-edge-model"
# Config fields that are not builder kwargs (given separately, or implied by the registry name).
_NOT_ARCH = ("num_classes", "in_chans", "arch")
# Builder kwargs that must never be replayed when rebuilding from a file (would load other weights).
_LOAD_TIME_ONLY = ("encoder_weights", "pretrained")
HOW_TO_PRODUCE = (
    "train one with `dakd-edge train` (it writes a .safetensors model file), or omit the model "
    "path to use the bundled one"
)


def arch_kwargs(model: Any) -> dict[str, Any]:
    """The builder kwargs that rebuild ``model`` (its config minus num_classes / in_chans), JSON-able."""
    cfg = asdict(model.config)
    return json.loads(json.dumps({k: v for k, v in cfg.items() if k not in _NOT_ARCH}))


def rebuild_kwargs(meta: ModelMeta) -> dict[str, Any]:
    """The builder kwargs that rebuild the architecture ``meta`` describes (no load-time options)."""
    return {k: v for k, v in meta.arch.items() if k not in _LOAD_TIME_ONLY and k not in _NOT_ARCH}


def save_model(path: str | os.PathLike, model: Any, meta: ModelMeta, overwrite: bool = True) -> ModelMeta:
    """Write ``model``'s weights and ``meta`` atomically; returns the metadata actually stored.

    ``meta.arch`` is (re)filled from ``model.config`` so the file always rebuilds the exact model;
    ``meta.num_classes`` / ``meta.in_chans`` must agree with the model.
    """
    import torch

    cfg = model.config
    if meta.num_classes != cfg.num_classes or meta.in_chans != cfg.in_chans:
        raise ModelFileError(
            f"metadata says {meta.num_classes} classes / {meta.in_chans} input channels but the model "
            f"has {cfg.num_classes} / {cfg.in_chans}"
        )
    meta = replace(meta, arch=arch_kwargs(model))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    p = Path(path)
    fmt = format_of(p)
    with atomic_path(p, overwrite=overwrite, bundled_ok=True) as tmp:  # saving models is how they install
        if fmt is SAFETENSORS:
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"format": FORMAT, fmt.meta_key: meta.to_json()})
            os.chmod(tmp, new_file_mode())  # safetensors creates its files 0600, unlike torch.save
        elif fmt is PYTORCH:
            torch.save({"format": FORMAT, fmt.meta_key: meta.to_json(), "state_dict": state}, tmp)
        else:
            raise ModelFileError(f"unsupported model file suffix {p.suffix!r} (use .safetensors or .pt)")
    return meta


def _check_exists(p: Path) -> None:
    if not p.is_file():
        raise ModelFileError(f"model file not found: {p} ({HOW_TO_PRODUCE})")
    if format_of(p) not in (None, SAFETENSORS, PYTORCH):
        raise ModelFileError(
            f"{p} is an exported model, not a PyTorch model file; run it with dakd_edge.load_model()"
        )


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """Metadata of a model file without building the model (safetensors: no torch needed)."""
    p = Path(path)
    _check_exists(p)
    if format_of(p) is SAFETENSORS:
        return _meta_from_json(_safetensors_header(p).get(SAFETENSORS.meta_key), p)
    return _read_pt(p)[0]


def _safetensors_header(p: Path) -> dict[str, str]:
    """The string metadata of a safetensors header (read directly: no safetensors/torch needed)."""
    try:
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = jsonin.loads(f.read(n))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{p} is not a readable safetensors file: {e}") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(meta, dict | None):
        what = "header" if not isinstance(header, dict) else "header metadata (__metadata__)"
        raise ModelFileError(f"{p} is not a valid safetensors file: its {what} is not a JSON object")
    return meta or {}


def _meta_from_json(raw: Any, p: Path) -> ModelMeta:
    if not raw:
        raise ModelFileError(
            f"{p} has no dakd-edge model metadata (not written by dakd_edge.models.checkpoint.save_model)"
        )
    if isinstance(raw, str | bytes):
        return ModelMeta.from_json(raw, source=p)
    return ModelMeta.from_dict(raw, source=p)


def _read_pt(p: Path) -> tuple[ModelMeta, dict[str, Any]]:
    if not available("torch"):  # a .pt is a torch zip of pickles: nothing else can read it
        raise ModelFileError(f"{p}: reading a .pt model file needs PyTorch: {install_hint('torch')}")
    import torch

    if not weights_only_is_safe(torch.__version__):
        raise ModelFileError(
            f"{p}: not reading a .pt model file with PyTorch {torch.__version__}: before 2.6 a crafted .pt "
            "can run code even in a weights-only load (CVE-2025-32434); use the model's .safetensors file, "
            "or upgrade PyTorch to 2.6 or later"
        )
    try:
        with quiet(UserWarning, FutureWarning):  # "Detected pickle protocol 4": noise before our line
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled classes are refused by weights_only, truncated files, ...
        raise ModelFileError(_pt_load_error(p, e)) from e
    if not isinstance(obj, dict) or PYTORCH.meta_key not in obj:
        raise ModelFileError(f"{p} has no dakd-edge model metadata (not written by save_model)")
    meta = _meta_from_json(obj[PYTORCH.meta_key], p)
    state = obj.get("state_dict", obj.get("model"))
    if not isinstance(state, dict):
        raise ModelFileError(f"{p} holds no state dict")
    return meta, state


def weights_only_is_safe(version: str) -> bool:
    """Whether ``torch.load(weights_only=True)`` of this PyTorch version is safe on untrusted files."""
    m = re.match(r"(\d+)\.(\d+)", str(version))
    return m is not None and (int(m[1]), int(m[2])) >= (2, 6)


def _pt_load_error(p: Path, e: Exception) -> str:
    """One line for a failed ``torch.load``: torch's own messages span several lines of advice."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(e)).split())
    refused = re.search(r"WeightsUnpickler error: (.+?)(?:\. | Check the documentation|$)", text)
    if refused:
        return (
            f"cannot read model file {p}: a weights-only load refuses it ({refused.group(1)}); "
            "dakd-edge .pt files hold only tensors and metadata"
        )
    first = re.split(r"(?<=[.!?]) ", text, maxsplit=1)[0][:200].rstrip(".") or type(e).__name__
    return f"cannot read model file {p}: not a PyTorch file, or truncated/corrupt ({first})"


def load_model_file(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    *,
    name: str | None = None,
    num_classes: int | None = None,
) -> tuple[Any, ModelMeta]:
    """Rebuild the model a file describes and load its weights; returns ``(model.eval(), meta)``.

    ``name`` / ``num_classes``, when given, are what the caller expects; a file for another
    architecture or class count raises :class:`ModelFileError` saying so. Weights that do not fit the
    architecture named in the metadata fail the same way.
    """
    from dakd_edge.registry import list_models

    p = Path(path)
    _check_exists(p)
    state: dict[str, Any] | None = None
    if format_of(p) is SAFETENSORS:
        meta = read_meta(p)
        shapes = _safetensors_shapes(p)
    else:
        meta, state = _read_pt(p)
        shapes = _shapes(state)
    if name is not None and meta.name != name:
        raise ModelFileError(f"{p} holds a {meta.name!r} model, expected {name!r} (wrong architecture)")
    if num_classes is not None and meta.num_classes != num_classes:
        raise ModelFileError(
            f"{p} was trained for {meta.num_classes} classes, expected {num_classes} (wrong class count)"
        )
    if meta.name not in list_models():
        raise ModelFileError(f"{p}: unknown architecture {meta.name!r} (known: {', '.join(list_models())})")
    expected = _expected_shapes(meta, p)
    if expected is not None:  # before allocating: the metadata alone may ask for a 100 GB model
        _check_fit(expected, shapes, meta, p)
    if state is None:
        from safetensors.torch import load_file

        try:
            state = load_file(str(p))
        except Exception as e:  # SafetensorError, OSError, ...
            raise ModelFileError(f"cannot read weights from {p}: {' '.join(str(e).split())}") from e
    model = _rebuild(meta, p)
    if expected is None:  # the meta-device build failed: check the real one's shapes instead
        _check_fit({k: tuple(v.shape) for k, v in model.state_dict().items()}, _shapes(state), meta, p)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval(), meta


def _rebuild(meta: ModelMeta, p: Path) -> Any:
    """The (untrained) model ``meta`` describes; :class:`ModelFileError` if its ``arch`` is refused."""
    from dakd_edge.registry import create_model

    try:
        return create_model(
            meta.name, num_classes=meta.num_classes, in_chans=meta.in_chans, **rebuild_kwargs(meta)
        )
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{p}: cannot rebuild {meta.name!r} from its metadata: {e}") from e


def _expected_shapes(meta: ModelMeta, p: Path) -> dict[str, tuple[int, ...]] | None:
    """Shapes of the state dict ``meta`` describes, from a model built on the meta device (shapes, no
    memory), so a file whose metadata asks for a huge model fails :func:`_check_fit` instead of the
    allocator. None when the builder cannot run there (then the real build is checked, as before)."""
    import torch

    try:
        with torch.device("meta"), _schedules_on_cpu():
            model = _rebuild(meta, p)
    except ModelFileError:
        raise
    except Exception:  # e.g. a builder reading a meta tensor's value; the check after building remains
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _schedules_on_cpu() -> Any:
    """A torch function mode that makes ``linspace`` / ``logspace`` real (CPU) tensors under
    ``torch.device("meta")``: builders read drop-path schedules from them with ``.item()`` (SegFormer)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = dict(kwargs or {})
            if func in (torch.linspace, torch.logspace) and kwargs.get("device") is None:
                kwargs["device"] = "cpu"
            return func(*args, **kwargs)

    return Mode()


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...] | None]:
    """Each entry's shape; None for what is no tensor (a .pt may hold plain numbers)."""
    import torch

    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}


def _safetensors_shapes(p: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading (or allocating) the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ...
        raise ModelFileError(f"cannot read weights from {p}: {' '.join(str(e).split())}") from e


def _check_fit(
    own: dict[str, tuple[int, ...]], state: dict[str, tuple[int, ...] | None], meta: ModelMeta, p: Path
) -> None:
    """Refuse weights (their shapes, ``state``) that do not fit the model's (``own``), in one line."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, state[k], v) for k, v in own.items() if k in state]
    mismatched = [(k, a, b) for k, a, b in shapes if a != b]
    if not (missing or unexpected or mismatched):
        return
    heads = [
        (k, a) for k, a, b in mismatched if b and b[0] == meta.num_classes and a and a[0] != meta.num_classes
    ]
    if heads and len(heads) == len(mismatched) and not (missing or unexpected):
        raise ModelFileError(
            f"{p}: weights are for {heads[0][1][0]} classes but the metadata says {meta.num_classes} "
            f"(wrong class count at {heads[0][0]})"
        )
    detail = []
    if missing:
        detail.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
    if unexpected:
        detail.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
    if mismatched:
        detail.append("shape mismatch " + ", ".join(f"{k} {a} vs {b}" for k, a, b in mismatched[:3]))
    raise ModelFileError(
        f"{p}: weights do not fit the {meta.name!r} architecture (wrong architecture): " + "; ".join(detail)
    )
