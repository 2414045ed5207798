"""Training runs that users break: resumed elsewhere or on other data, NaN gradients behind a finite loss,
a file that fails mid-run. Each ends in one line that says what to do, before any damage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dakd_edge.errors import DatasetError, TrainingError
from dakd_edge.train.losses import DAKDLoss
from dakd_edge.train.saross import SlotBatches, TrainConfig, train
from tests.train.tiny import TINY, BlobDataset, one_thread  # noqa: F401


def _cfg(**kw) -> TrainConfig:
    base = dict(model=TINY, crop=16, batch=2, steps=4, warmup=1, val_every=2, ckpt_every=2, log_every=1)
    return TrainConfig(**{**base, **kw})


def test_resume_into_another_folder_is_refused_before_training(tmp_path):
    """The best model of a run lives beside its checkpoint: resumed into a new --out, the run trained
    every remaining step and only then failed to copy best.safetensors, with no model written."""
    data = (BlobDataset(6, 16), None)
    train(_cfg(), tmp_path / "run", progress=False, datasets=data, stop_after=2)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    with pytest.raises(TrainingError, match=r"cannot resume into .*moved.*best model so far \(step 2"):
        train(_cfg(), tmp_path / "moved", progress=False, datasets=data, resume=tmp_path / "run" / "last.pt")
    assert not (tmp_path / "moved").exists()  # refused before the folder was made
    r = train(_cfg(), tmp_path / "run", progress=False, datasets=data, resume=tmp_path / "run" / "last.pt")
    assert r["steps"] == 4 and (tmp_path / "run" / "model.safetensors").is_file()


def test_resume_on_changed_data_is_refused(tmp_path):
    """The train/validation split is drawn over the file list: resumed after an image was removed (say,
    a corrupt one) or added, validation images went into training without a word."""
    train(_cfg(), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None), stop_after=2)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(TrainingError, match=r"training images changed .*\(6 then, 5 now\)"):
        train(_cfg(), tmp_path / "run", progress=False, datasets=(BlobDataset(5, 16), None), resume=last)
    assert torch.load(last, weights_only=True)["extra"]["data_files"]["count"] == 6
    renamed = BlobDataset(6, 16)
    renamed.files[3] = "other.png"
    with pytest.raises(TrainingError, match=r"\(6 then, 6 now, other files\)"):
        train(_cfg(), tmp_path / "run", progress=False, datasets=(renamed, None), resume=last)


def _nan_gradients_from(monkeypatch, call: int) -> None:
    """From the ``call``-th loss on, a finite loss whose gradient is NaN (a sqrt at 0 in backward)."""
    real = DAKDLoss.forward
    calls = []

    def nan_grad(self, logits, *a, **kw):
        calls.append(1)
        parts = real(self, logits, *a, **kw)
        if len(calls) >= call:
            parts["loss"] = parts["loss"] + 0.0 * torch.sqrt(logits.sum() * 0.0)  # value +0, gradient NaN
        return parts

    monkeypatch.setattr(DAKDLoss, "forward", nan_grad)


@pytest.mark.parametrize("clip", [{}, {"grad_clip": 0.0}])
def test_non_finite_gradient_behind_a_finite_loss_stops_before_the_weights_change(
    tmp_path, monkeypatch, clip
):
    """A finite loss with NaN gradients (a sqrt at 0, an overflow in backward) made the weights NaN;
    the next checkpoint saved them and the next step's NaN loss named that checkpoint as 'good'. With
    --grad-clip 0 no norm was measured, so the gradients went on unchecked."""
    _nan_gradients_from(monkeypatch, 1)
    with pytest.raises(TrainingError, match=r"non-finite gradient \(nan\) .* no checkpoint was written yet"):
        train(
            _cfg(ckpt_every=1, **clip), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None)
        )
    assert not (tmp_path / "run" / "last.pt").exists()


def test_non_finite_gradient_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    _nan_gradients_from(monkeypatch, 3)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(TrainingError, match=rf"non-finite gradient .* kept: {last}"):
        train(_cfg(), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None))
    ck = torch.load(last, weights_only=True)
    assert ck["step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in ck["model"].values())
    assert all(bool(torch.isfinite(v).all()) for v in ck["ema"]["shadow"].values())


def test_file_failing_mid_run_names_the_checkpoint_to_resume_from(tmp_path, monkeypatch):
    """Images are read when drawn: a damaged one met at step 3 said only 'cannot read image ...',
    not how far the run got nor where to go on once the file is fixed."""
    real = SlotBatches.__getitem__

    def broken_at_3(self, step):
        if step == 2:
            raise DatasetError("cannot read image /data/images/x.png: image file is truncated")
        return real(self, step)

    monkeypatch.setattr(SlotBatches, "__getitem__", broken_at_3)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(
        DatasetError, match=rf"x\.png: .*truncated; training stopped at step 2; .*--resume {last}"
    ):
        train(_cfg(), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None))
    monkeypatch.setattr(SlotBatches, "__getitem__", real)  # the file fixed: the run goes on from step 2
    r = train(_cfg(), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None), resume=last)
    assert r["steps"] == 4 and np.isfinite(r["best"]["miou"])


def test_file_failing_in_a_dataloader_worker_keeps_its_line(tmp_path, monkeypatch):
    """From a worker the error's text is a whole traceback: the hint goes on its last line, the one the
    command line prints."""
    from dakd_edge.cli.app import _worker_error

    real = SlotBatches.__getitem__

    def broken_at_1(self, step):
        if step == 1:
            raise DatasetError("cannot read image /data/images/x.png: image file is truncated")
        return real(self, step)

    monkeypatch.setattr(SlotBatches, "__getitem__", broken_at_1)
    with pytest.raises(DatasetError) as e:
        train(_cfg(workers=1), tmp_path / "run", progress=False, datasets=(BlobDataset(6, 16), None))
    assert "Original Traceback" in str(e.value)
    assert _worker_error(str(e.value)) == (
        "cannot read image /data/images/x.png: image file is truncated; training stopped at step 1; "
        "no checkpoint was written yet"
    )
