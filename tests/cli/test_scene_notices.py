"""A scene's notes printed when raised (a scene that failed or was interrupted midway said none of
them), and no progress bar where stderr is no terminal (segment, demo and batch drew one into logs)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

import dakd_edge.inference as inference
from dakd_edge.cli import batch as batch_cli
from dakd_edge.cli import segment as seg_cli
from dakd_edge.cli.signals import Interrupted
from dakd_edge.errors import DakdError
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, blob_scene, write_tif

BAR = "\u2501"  # what rich draws a progress bar with


class FailsOnSecondCall(FakeBackend):
    """The numpy fake that raises ``exc`` on its second call: the scene stops midway."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(tile=64)
        self.exc = exc

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.calls:
            raise self.exc
        return super().predict(batch)


def _db_scene(path: Path) -> Path:
    """Float sigma0 in dB (-20 dB and -10 dB halves), 192 x 192: its scale is guessed, with a note."""
    a = np.full((192, 192), -20.0, np.float32)
    a[:, 96:] = -10.0
    return write_tif(path, a)


def _guess_note(scene: Path) -> str:
    return (
        f"dakd-edge: warning: {scene}: float values (-20 to -10, 1st-99th percentile) read as backscatter "
        "in dB, guessed from their range; if they are not, pass --input-scale"
    )


STOPS = [
    pytest.param(
        lambda: DakdError("the backend broke"), 2, "dakd-edge: error: the backend broke", id="error"
    ),
    pytest.param(lambda: Interrupted(signal.SIGINT), 130, "dakd-edge: interrupted", id="sigint"),
]


@pytest.mark.parametrize("stop, code, last", STOPS)
def test_segment_says_the_notes_raised_before_a_failure_or_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli, stop, code: int, last: str
) -> None:
    backend = FailsOnSecondCall(stop())
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: Predictor(backend, tile=64, batch=1))
    scene = _db_scene(tmp_path / "db.tif")
    got, out, err = run_cli(["segment", str(scene), "-o", str(tmp_path / "c.tif"), "-q"])
    assert (got, out) == (code, "")
    assert err.splitlines() == [_guess_note(scene), last]
    assert len(backend.calls) == 1 and not (tmp_path / "c.tif").exists()


@pytest.mark.parametrize("stop, code, last", STOPS)
def test_evaluate_scene_says_the_notes_raised_before_a_failure_or_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli, stop, code: int, last: str
) -> None:
    backend = FailsOnSecondCall(stop())
    monkeypatch.setattr(inference, "load", lambda *a, **k: Predictor(backend, tile=64, batch=1))
    scene = _db_scene(tmp_path / "db.tif")
    truth = write_tif(tmp_path / "t.tif", np.zeros((192, 192), np.uint8))
    got, out, err = run_cli(["evaluate", "--scene", str(scene), "--truth", str(truth)])
    assert (got, out) == (code, "")
    assert err.splitlines() == [_guess_note(scene), last]


def test_a_note_is_said_once_per_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:
    """Printed when raised, not again at the end; the same note of the next scene is said too."""
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(tile=64), tile=64))
    a, b = _db_scene(tmp_path / "a.tif"), _db_scene(tmp_path / "b.tif")
    code, _, err = run_cli(["segment", str(a), str(b), "-o", str(tmp_path / "{stem}_c.tif"), "-q"])
    assert code == 0, err
    assert err.splitlines() == [_guess_note(a), _guess_note(b)]


@pytest.mark.parametrize("command", ["segment", "demo"])
def test_no_progress_bar_when_stderr_is_no_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli, command: str
) -> None:
    """Without -q, a log got the bar's last frame (a line of U+2501); synth and evaluate --data drew
    none. On a terminal the bar is still drawn."""
    pytest.importorskip("dakd_edge.data.synthetic")
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(tile=64), tile=64))
    scene = write_tif(tmp_path / "s.tif", blob_scene(128, 128, seed=1))

    def argv(name: str) -> list[str]:
        if command == "demo":
            return ["demo", "-o", str(tmp_path / name), "--size", "128"]
        return ["segment", str(scene), "-o", str(tmp_path / f"{name}.tif")]

    code, _, err = run_cli(argv("a"))
    assert code == 0 and BAR not in err, err
    monkeypatch.setattr(seg_cli, "stderr_is_terminal", lambda: True)
    code, _, err = run_cli(argv("b"))
    assert code == 0 and BAR in err, err


def test_batch_asks_for_a_progress_bar_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    import dakd_edge.batch as batch_lib

    progress: list[bool] = []

    def run(inputs, out, **kw) -> dict:
        progress.append(kw["progress"])
        return {"ok": [], "skipped": [], "failed": [], "not_run": [], "retried": [], "scenes": 0,
                "time_s": 0.0, "workers": 1, "layer": "spills.gpkg", "features": 0, "manifest": None,
                "warnings": {}}  # fmt: skip

    monkeypatch.setattr(batch_lib, "run", run)
    argv = ["batch", str(tmp_path), "--out", str(tmp_path / "b")]
    assert run_cli(argv)[0] == 0
    monkeypatch.setattr(batch_cli, "stderr_is_terminal", lambda: True)
    assert run_cli(argv)[0] == 0 and run_cli([*argv, "-q"])[0] == 0
    assert progress == [False, True, False]


@pytest.mark.parametrize("command", ["train", "jointnet train", "jointnet generate"])
def test_training_asks_for_a_progress_bar_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli, command: str
) -> None:
    """As every other command: a training run logged to a file got the bar's last frame."""
    pytest.importorskip("torch")
    progress: list[bool] = []

    def record(*a, **kw):
        progress.append(kw["progress"])
        raise DakdError("stop")

    if command == "train":
        import dakd_edge.train.saross as lib

        monkeypatch.setattr(lib, "train", record)
        argv = ["train", "--data", str(tmp_path), "-o", str(tmp_path / "run")]
    elif command == "jointnet train":
        import dakd_edge.train.jointnet as lib

        monkeypatch.setattr(lib, "train_jointnet", record)
        argv = ["jointnet", "train", "--synthetic", "4", "--b", "1", "-o", str(tmp_path / "run")]
    else:
        import dakd_edge.train.generate as lib

        monkeypatch.setattr(lib, "generate_augmented", record)
        (tmp_path / "ck.pt").write_bytes(b"")
        argv = ["jointnet", "generate", str(tmp_path / "ck.pt"), "-o", str(tmp_path / "aug")]
    code, _, err = run_cli(argv)
    assert (code, err) == (2, "dakd-edge: error: stop\n")
    monkeypatch.setattr(f"dakd_edge.cli.{command.split()[0]}.stderr_is_terminal", lambda: True)
    assert run_cli(argv)[0] == 2 and run_cli([*argv, "-q"])[0] == 2
    assert progress == [False, True, False]
