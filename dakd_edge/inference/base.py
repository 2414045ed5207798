"""The backend contract every runtime implements (numpy in, numpy out; no torch here)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from dakd_edge.meta import ModelMeta


class Backend(ABC):
    """Runs a model on batches of already-normalised tiles.

    ``predict(batch)`` takes float32 ``(N, in_chans, H, W)`` network input (see
    :func:`dakd_edge.data.scaling.normalize`) and returns float32 logits ``(N, num_classes, H, W)``.
    Backends that need fixed or multiple-of sizes pad internally and crop back.
    """

    name: str = "backend"
    meta: ModelMeta
    device: str = "cpu"

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device resources (sessions, engines, CUDA contexts)."""
