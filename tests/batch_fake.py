"""Model factories for batch tests: Ray workers are separate processes, so they import these by name."""

from __future__ import annotations

import os
from pathlib import Path

from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


def make_predictor() -> Predictor:
    """The fake 'oil = locally dark' model with small tiles (fast, deterministic)."""
    return Predictor(FakeBackend(tile=64), tile=64, overlap=16)


class CrashOnce(FakeBackend):
    """Kills its own process (``os._exit``) at its ``at``-th tile call, once per ``marker`` file.

    The marker is created with O_EXCL just before dying, so exactly one worker dies exactly once,
    in the middle of whichever scene it is segmenting (temporaries already on disk).
    """

    def __init__(self, marker: str, at: int = 3) -> None:
        super().__init__(tile=64)
        self.marker, self.at, self.n = Path(marker), at, 0

    def predict(self, batch):
        self.n += 1
        if self.n == self.at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().predict(batch)


def make_crashing_predictor(marker: str) -> Predictor:
    return Predictor(CrashOnce(marker), tile=64, overlap=16)


class Slow(FakeBackend):
    """The fake model, slowed down, so that an interrupt lands in the middle of a scene."""

    def predict(self, batch):
        import time

        time.sleep(0.1)
        return super().predict(batch)


def make_slow_predictor() -> Predictor:
    return Predictor(Slow(tile=64), tile=64, overlap=16)


def make_sleepy_predictor() -> Predictor:
    """A model load that outlasts any test: workers that never get ready."""
    import time

    time.sleep(120)
    return make_predictor()
