"""``python -m tests.reliability.slowcli ARGS``: the real CLI with a slow numpy fake model.

Used by the interruption tests: a run lasts long enough (``DAKD_FAKE_SLEEP`` seconds per tile) to be
signalled or killed mid-scene, in a separate process, exactly like a user's ``dakd-edge``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from dakd_edge.cli import segment as seg_cli
from dakd_edge.cli.app import main
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


class SlowBackend(FakeBackend):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(float(os.environ.get("DAKD_FAKE_SLEEP", "0.2")))
        return super().predict(batch)


def load(model, backend, device, tile, overlap, batch, threads=None):
    return Predictor(SlowBackend(tile=64), tile=tile, overlap=overlap, batch=batch)


if __name__ == "__main__":
    seg_cli.load_predictor = load
    main(sys.argv[1:])
