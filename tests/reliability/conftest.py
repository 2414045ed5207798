"""Shared by the reliability tests: ``fake_model`` stands in for the model `segment` loads."""

from __future__ import annotations

import pytest

from dakd_edge.cli import segment as seg_cli
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(model, backend, device, tile, overlap, batch, threads=None):
        return Predictor(FakeBackend(tile=64), tile=tile, overlap=overlap, batch=batch)

    monkeypatch.setattr(seg_cli, "load_predictor", load)
