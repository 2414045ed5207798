"""Start a training run from a model file's weights (``TrainConfig.init``, ``dakd-edge train --init``).

Fine-tuning the bundled model on a team's own labelled scenes is the cheap way to adapt it to a region
or sensor: a CPU cannot train SAROSS-Net from scratch to the bundled model's level in a working day.
The run keeps the file's architecture (overrides in ``model_cfg`` that change no tensor, such as
``caft_window``, are allowed) and input normalisation. Classes are matched by meaning
(:func:`dakd_edge.meta.class_meaning`: ``sea`` is the bundled model's ``background``), so the classifier
rows of shared classes are kept, reordered where the data orders them otherwise; classes the file does
not know start from fresh rows, with a notice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dakd_edge.errors import InputError
from dakd_edge.meta import ModelMeta, class_meaning

BUNDLED_NAME = "bundled"  # ``--init bundled``: the model shipped in the package


def resolve_init(init: str | os.PathLike) -> Path:
    """The model file ``init`` names: ``bundled`` (the package's weights) or a path."""
    if str(init) == BUNDLED_NAME:
        from dakd_edge.weights import bundled_path

        return bundled_path("torch")
    p = Path(init)
    if not p.is_file():
        raise InputError(f"--init {init}: no such model file (give 'bundled' or a .safetensors / .pt file)")
    return p


def classifier_prefix(model: nn.Module, num_classes: int) -> str:
    """Name of the model's classifier: the last convolution or linear layer with one output per class
    (SAROSS-Net's ``head``, segmentation_models_pytorch's ``segmentation_head.0``)."""
    last = None
    for name, m in model.named_modules():
        out = getattr(m, "out_channels", getattr(m, "out_features", None))
        if isinstance(m, nn.Conv2d | nn.Linear) and out == num_classes:
            last = name
    if last is None:
        raise InputError(f"{type(model).__name__}: no layer with one output per class ({num_classes})")
    return last


def init_model(
    name: str, model_cfg: dict[str, Any], init: str | os.PathLike, class_names: tuple[str, ...]
) -> tuple[nn.Module, ModelMeta, list[str]]:
    """A model for ``class_names`` built with ``init``'s architecture (``model_cfg`` on top) and its
    weights; returns ``(model, init's metadata, notes)``. ``name`` is the architecture the run asks
    for: another than the file's is refused."""
    from dakd_edge.models.checkpoint import load_model_file, rebuild_kwargs
    from dakd_edge.registry import create_model

    path = resolve_init(init)
    src, meta = load_model_file(path)
    if meta.name != name:
        raise InputError(f"--init {init} holds a {meta.name!r} model, not {name!r}: drop --model or match it")
    arch = {**rebuild_kwargs(meta), **model_cfg}
    if meta.in_chans != 1:
        raise InputError(f"--init {init} takes {meta.in_chans} input channels; training feeds 1")
    try:
        model = create_model(name, num_classes=len(class_names), in_chans=1, **arch)
    except (TypeError, ValueError) as e:
        raise InputError(f"--model-cfg does not fit --init {init}'s architecture: {e}") from e
    head = classifier_prefix(src, meta.num_classes)
    own, theirs = model.state_dict(), src.state_dict()
    body = {k: v for k, v in theirs.items() if not k.startswith(head + ".")}
    misfit = [k for k, v in body.items() if k not in own or own[k].shape != v.shape]
    if misfit or any(k not in theirs for k in own if not k.startswith(head + ".")):
        raise InputError(
            f"--model-cfg changes the architecture of --init {init} (e.g. {(misfit or ['new layers'])[0]}): "
            "only options that change no weight (caft_window) may differ"
        )
    # classifier rows by meaning: data class i takes the file's class of the same key, if any
    keys = [class_meaning(n) for n in meta.class_names]
    rows = {i: keys.index(class_meaning(n)) for i, n in enumerate(class_names) if class_meaning(n) in keys}
    with torch.no_grad():
        for k in (k for k in own if k.startswith(head + ".")):
            new = own[k].clone()
            for i, j in rows.items():
                new[i] = theirs[k][j]
            body[k] = new
    model.load_state_dict(body, strict=True)
    notes = []
    fresh = [n for i, n in enumerate(class_names) if i not in rows]
    if fresh:
        notes.append(
            f"--init {init}: class{'es' * (len(fresh) > 1)} {', '.join(fresh)} start untrained (the model "
            f"knows {', '.join(meta.class_names)}); the others keep its classifier"
        )
    return model, meta, notes
