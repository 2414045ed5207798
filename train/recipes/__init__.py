"""Reproducible training recipes (e.g. the bundled default model), and what the probes share."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dakd_edge.train.config import TrainConfig


def bundled_init(dest: Path) -> Path:
    """The installed bundled weights, copied once to ``dest``: where a probe's fine-tunes start."""
    from dakd_edge.weights import bundled_path

    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundled_path("torch"), dest)
    return dest


def fine_tune(cfg: TrainConfig, out: Path) -> list[dict[str, Any]]:
    """Train ``cfg`` into ``out`` (resuming a stopped run; a finished one is reused, not retrained) and
    return the run's validation records."""
    from dakd_edge.train.saross import train

    last = out / "last.pt"
    if not (out / "model.safetensors").is_file():
        t0 = time.time()
        # no checkpoint yet: what is there is a run stopped before its first one, started anew
        resume = last if last.is_file() else None
        summary = train(cfg, out, resume=resume, progress=False, overwrite=resume is None)
        if not summary.get("stopped"):  # what `bundled --from-run` installs from
            summary["wall_seconds"] = time.time() - t0
            (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"val' in line]
