"""Shared training utilities: RNG capture/restore, EMA, checkpoints, NaN guard, logger, AMP helpers."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest
import torch
from torch import nn

from dakd_edge.errors import ModelFileError, TrainingError
from dakd_edge.train import common


def _draw(g: np.random.Generator) -> tuple:
    return (random.random(), np.random.rand(), torch.rand(3).tolist(), g.random())  # noqa: NPY002


def test_rng_capture_restore_roundtrip_through_checkpoint(tmp_path) -> None:
    common.seed_everything(123)
    g = np.random.default_rng(5)
    _draw(g)
    model = nn.Linear(2, 2)
    state = common.capture_rng_state({"data": g})
    path = common.save_checkpoint(
        tmp_path / "c.pt", kind="test", config={"a": 1}, model=model, step=7, rng=state
    )
    first = _draw(g)
    _draw(g)  # move every stream on
    ck = common.load_checkpoint(path, kind="test")  # weights_only=True inside
    common.restore_rng_state(ck["rng"], {"data": g})
    assert _draw(g) == first
    assert ck["step"] == 7 and ck["config"] == {"a": 1}


def test_step_rng_depends_only_on_keys() -> None:
    a = common.step_rng(1, 10, 0).random(4)
    b = common.step_rng(1, 10, 0).random(4)
    c = common.step_rng(1, 11, 0).random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ema_tracks_and_roundtrips() -> None:
    torch.manual_seed(0)
    m = nn.Linear(3, 1)
    ema = common.EMA(m, decay=0.5, warmup=False)
    start = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    # shadow = 0.5 * old + 0.5 * new
    torch.testing.assert_close(ema.shadow["weight"], start + 0.5)
    other = common.EMA(nn.Linear(3, 1), decay=0.9)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.shadow["weight"], ema.shadow["weight"])
    assert other.num_updates == 1 and other.decay == 0.5
    with ema.swapped(m):
        torch.testing.assert_close(m.weight, start + 0.5)
    torch.testing.assert_close(m.weight, start + 1.0)


def test_ema_warmup_ramps_decay() -> None:
    ema = common.EMA(nn.Linear(1, 1), decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.num_updates = 10**6
    assert ema.current_decay() == pytest.approx(0.999)


def test_checkpoint_full_state_and_errors(tmp_path) -> None:
    torch.manual_seed(0)
    m = nn.Linear(4, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randn(3, 4)).sum().backward()
    opt.step()
    ema = common.EMA(m)
    scaler = common.make_grad_scaler(torch.device("cpu"))
    p = common.save_checkpoint(
        tmp_path / "ck.pt",
        kind="jointnet",
        config={"x": [1, 2]},
        model=m,
        step=3,
        optimizer=opt,
        ema=ema,
        scaler=scaler,
        rng=common.capture_rng_state(),
        extra={"stage": 2},
    )
    ck = common.load_checkpoint(p, kind="jointnet")
    assert set(ck) >= {"model", "ema", "optimizer", "scaler", "rng", "config", "step", "extra"}
    m2 = nn.Linear(4, 2)
    m2.load_state_dict(ck["model"])
    torch.testing.assert_close(m2.weight, m.weight)
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ModelFileError, match="expected 'saross'"):
        common.load_checkpoint(p, kind="saross")
    with pytest.raises(ModelFileError, match="not found"):
        common.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="cannot read"):
        common.load_checkpoint(tmp_path / "junk.pt")
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_check_finite_raises_with_checkpoint_hint(tmp_path) -> None:
    common.check_finite(torch.tensor(1.5), step=1, last_checkpoint=None)
    ck = tmp_path / "last.pt"
    ck.write_bytes(b"x")
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 4.*last good checkpoint kept"):
        common.check_finite(torch.tensor(float("nan")), step=4, last_checkpoint=ck)
    with pytest.raises(TrainingError, match="no checkpoint was written yet"):
        common.check_finite(float("inf"), step=1, last_checkpoint=None)


def test_jsonl_logger_resume_truncates(tmp_path) -> None:
    path = tmp_path / "log.jsonl"
    with common.JsonlLogger(path) as log:
        for s in range(1, 5):
            log.log({"step": s, "loss": torch.tensor(0.5 * s)})
    with common.JsonlLogger(path, resume_step=2) as log:
        log.log({"step": 3, "loss": 9.0})
    recs = common.read_jsonl(path)
    assert [r["step"] for r in recs] == [1, 2, 3] and recs[-1]["loss"] == 9.0
    with common.JsonlLogger(path):  # a fresh run starts a fresh log
        pass
    assert common.read_jsonl(path) == []


def test_training_json_is_strict(tmp_path) -> None:
    """A class missing from the validation split has IoU NaN: metrics.jsonl and the model file's
    metadata held a bare NaN, which jq and JavaScript refuse."""
    import json

    from dakd_edge.meta import ModelMeta

    path = tmp_path / "log.jsonl"
    with common.JsonlLogger(path) as log:
        log.log({"step": 1, "val_iou": [0.9, float("nan")], "val_miou": torch.tensor(0.5)})
    strict = {"parse_constant": lambda c: pytest.fail(f"non-JSON constant {c}")}
    assert json.loads(path.read_text(), **strict) == {"step": 1, "val_iou": [0.9, None], "val_miou": 0.5}
    meta = ModelMeta.default_for("m", 2, extra={"train": {"best": {"iou": [float("nan"), 0.5]}}})
    assert json.loads(meta.to_json(), **strict)["extra"]["train"]["best"]["iou"] == [None, 0.5]


def test_cpu_runs_without_amp_and_single_process() -> None:
    dev = torch.device("cpu")
    assert not common.make_grad_scaler(dev).is_enabled()
    with common.autocast(dev):
        assert torch.ones(1).dtype == torch.float32
    info = common.init_distributed("cpu")
    assert info.world_size == 1 and info.is_main and info.backend is None
    assert common.is_main()
    m = nn.Linear(1, 1)
    assert common.unwrap(m) is m


def test_progress_bar_smoke() -> None:
    with common.ProgressBar(3, enabled=True) as bar:
        bar.update(1, loss=0.5, stage=1)
    common.ProgressBar(3, enabled=False).update(1)


# --- a full disk while training: one line, the last checkpoint intact, resumable ---------------------


def _train_cli(data, out, capsys, *extra: str) -> tuple[int, str]:
    from dakd_edge.cli.app import main
    from tests.train.tiny import TINY  # registers the tiny model

    argv = ["train", "--data", str(data), "--out", str(out), "--model", TINY, "--model-cfg", "width=4",
            "--crop", "32", "--batch", "2", "--steps", "4", "--warmup", "1", "--val-every", "2",
            "--ckpt-every", "2", "--log-every", "1", "--device", "cpu", "--quiet", *extra]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), capsys.readouterr().err


def _blob_folder(root) -> None:
    from tests.train.tiny import blob_sample, write_folder

    pairs = [blob_sample(i, 40) for i in range(6)]
    write_folder(
        root, [(np.rint(s["image"][0] * 255).astype(np.uint8), s["mask"].astype(np.uint8)) for s in pairs]
    )


def test_full_disk_real_tmpfs_keeps_last_checkpoint_and_resumes(tmp_path, capsys) -> None:
    """torch.save's "iostream error" was a traceback; now one line, last.pt of step 2 intact, resumable."""
    from tests.fs import leftovers, resize, tmpfs

    _blob_folder(tmp_path / "ds")
    with tmpfs(tmp_path / "disk", "48k") as disk:  # one ~29 kB checkpoint fits, a second beside it not
        run = disk / "run"
        code, err = _train_cli(tmp_path / "ds", run, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert f"no space left on {disk} (writing {run / 'last.pt'})" in lines[0]
        assert f"training stopped at step 4; last good checkpoint kept: {run / 'last.pt'}" in lines[0]
        assert common.load_checkpoint(run / "last.pt", kind="saross")["step"] == 2
        assert leftovers(run) == ["best.safetensors", "config.json", "last.pt", "metrics.jsonl"]
        resize(disk, "256k")
        code, err = _train_cli(tmp_path / "ds", run, capsys, "--resume", str(run / "last.pt"))
        assert code == 0, err
        assert common.load_checkpoint(run / "last.pt")["step"] == 4 and (run / "model.safetensors").is_file()
        assert [r["step"] for r in common.read_jsonl(run / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]


def test_metrics_write_error_names_the_log_file(tmp_path, capsys, monkeypatch) -> None:
    """A failed metrics.jsonl write has no file name: the line named the working directory's device."""
    _blob_folder(tmp_path / "ds")
    real_init = common.JsonlLogger.__init__

    class FullFile:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.fh.close()

    def init(self, *a, **kw) -> None:
        real_init(self, *a, **kw)
        if self._fh is not None:
            self._fh = FullFile(self._fh)

    monkeypatch.setattr(common.JsonlLogger, "__init__", init)
    code, err = _train_cli(tmp_path / "ds", tmp_path / "run", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"(writing {tmp_path / 'run' / 'metrics.jsonl'}); training stopped at step 1" in err
    assert "no checkpoint was written yet" in err


def test_training_refused_up_front_without_room_for_checkpoints(tmp_path, capsys, monkeypatch) -> None:
    import dakd_edge.atomic as atomic

    _blob_folder(tmp_path / "ds")
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 1000)
    code, err = _train_cli(tmp_path / "ds", tmp_path / "run", capsys)
    assert code == 2 and "no space left on" in err and f"for the checkpoints of {tmp_path / 'run'}" in err
    assert not (tmp_path / "run").exists()


def test_progress_bar_draws_on_stderr(capsys) -> None:
    """train / jointnet / generate drew their bar on stdout, mixed into what a user redirects as results."""
    with common.ProgressBar(3, "train") as bar:
        bar.update(1, loss=0.5)
    out, err = capsys.readouterr()
    assert out == "" and "train" in err and "loss 0.5" in err
