"""`dakd-edge bench` audit: statistics from known timings, strict JSON, thread settings, what the gate
compares. Fake clocks and fake backends only: nothing here depends on how fast this machine is."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import dakd_edge.cli.bench  # noqa: F401 - reads run_bench's defaults at import, before a test patches it
from dakd_edge import bench as lib
from dakd_edge.errors import BackendUnavailable, InputError
from dakd_edge.weights import bundled_path

ONNX = bundled_path("onnxruntime")
REAL_WORKBENCH = lib.Workbench  # the fake_models fixture replaces it


# ----------------------------------------------------------------------------- fakes
class FakeClock:
    """``perf_counter`` that advances by the next duration (ms) each time a fake call runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1e3


class NoRSS:
    peak_mb = 1.0

    def __enter__(self) -> NoRSS:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


class FakeBench:
    """Stands in for :class:`lib.Workbench`: a 1-channel model, no torch reference."""

    made: list[FakeBench] = []
    predict = staticmethod(lambda x: np.zeros((x.shape[0], 2, *x.shape[2:]), np.float32))

    def __init__(self, spec, device, workdir, num_classes=2, threads=None) -> None:
        self.spec, self.device, self.workdir, self.threads = spec, device, workdir, threads
        self.meta = SimpleNamespace(tile=32, in_chans=1, normalization=None)
        FakeBench.made.append(self)

    def torch_model(self):
        raise BackendUnavailable("no torch reference")

    def runner(self, backend, precision, tile, batch, graphs=False) -> lib.Runner:
        return lib.Runner(predict=type(self).predict)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> type[FakeBench]:
    spec = SimpleNamespace(label="fake.onnx", size_mb=1.0, sha256="ab" * 32, kind="onnx", path=None)
    monkeypatch.setattr(lib.ModelSpec, "parse", classmethod(lambda cls, m: spec))
    monkeypatch.setattr(lib, "Workbench", FakeBench)
    monkeypatch.setattr(lib, "make_inputs", lambda t, n, c, meta: np.zeros((n, c, t, t), np.float32))
    monkeypatch.setattr(lib, "PeakRSS", NoRSS)
    FakeBench.made = []
    return FakeBench


def _fake_row_bench(predict) -> SimpleNamespace:
    spec = SimpleNamespace(label="m", size_mb=1.0, sha256=None)
    return SimpleNamespace(spec=spec, device="cpu", runner=lambda *a, **k: lib.Runner(predict=predict))


# ----------------------------------------------------------------------------- statistics
def test_statistics_match_the_raw_timings_and_exclude_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    warm = [5000.0, 4000.0]  # first calls (compilation, allocator): never in the numbers
    timed = [12.0, 10.0, 11.0, 50.0, 10.5, 9.0, 10.0, 13.0, 10.0, 30.0]
    durations = iter([*warm, *timed, 7000.0])  # the last call: the untimed memory pass (current code)

    def predict(x):
        clock.advance(next(durations))
        return np.zeros((x.shape[0], 2, *x.shape[2:]), np.float32)

    monkeypatch.setattr(lib, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(lib, "PeakRSS", NoRSS)
    x = np.zeros((4, 1, 64, 64), np.float32)
    row = lib._one_row(_fake_row_bench(predict), "onnxruntime", "fp32", 64, 4, x, None, 2, len(timed))
    assert row.status == "ok", row.reason
    p50, p90, p99 = np.percentile(timed, [50, 90, 99])
    assert (row.p50_ms, row.p90_ms, row.p99_ms) == pytest.approx((p50, p90, p99))
    assert (row.p50_ms, row.p90_ms, row.p99_ms) == pytest.approx((10.75, 32.0, 48.2))  # by hand
    assert row.mean_ms == pytest.approx(sum(timed) / len(timed))
    # throughput: batch tiles per mean call; megapixels are tile^2 per tile
    assert row.tiles_per_s == pytest.approx(4 / (sum(timed) / len(timed) / 1e3))
    assert row.mpix_per_s == pytest.approx(row.tiles_per_s * 64 * 64 / 1e6)


def test_a_clock_that_reads_zero_gives_no_throughput_instead_of_a_crash(monkeypatch) -> None:
    clock = FakeClock()  # never advances: a call shorter than the timer's resolution
    monkeypatch.setattr(lib, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(lib, "PeakRSS", NoRSS)
    x = np.zeros((1, 1, 32, 32), np.float32)
    row = lib._one_row(_fake_row_bench(FakeBench.predict), "onnxruntime", "fp32", 32, 1, x, None, 0, 3)
    assert row.status == "ok" and row.p50_ms == 0 and row.tiles_per_s is None and row.mpix_per_s is None


# ----------------------------------------------------------------------------- strict JSON
def test_nan_logits_are_reported_and_the_json_stays_strict(monkeypatch, tmp_path, capsys) -> None:
    """An fp16 engine that overflows gives NaN logits: max_abs_err was NaN, written as a bare NaN
    token that jq, JavaScript and strict parsers reject."""
    from dakd_edge.cli.app import main

    x = np.zeros((1, 1, 32, 32), np.float32)
    ref = np.zeros((1, 2, 32, 32), np.float32)
    nan_out = np.full((1, 2, 32, 32), np.nan, np.float32)
    monkeypatch.setattr(lib, "PeakRSS", NoRSS)
    row = lib._one_row(_fake_row_bench(lambda _: nan_out), "tensorrt", "fp16", 32, 1, x, ref, 0, 2)
    doc = {"environment": {}, "results": [lib.asdict(row)]}
    monkeypatch.setattr(lib, "run_bench", lambda *a, **k: copy.deepcopy(doc))
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main(["bench", "--backend", "onnxruntime", "--tile", "32", "--batch", "1", "--json", str(out)])
    assert e.value.code in (0, None)
    (r,) = _strict(out.read_text())["results"]
    assert r["max_abs_err"] is None and r["extra"]["nonfinite_outputs"] == 2 * 32 * 32


# ----------------------------------------------------------------------------- settings and environment
def test_results_record_settings_and_what_was_timed(fake_models) -> None:
    doc = lib.run_bench(["m"], ["onnxruntime"], tiles=[32], batches=[2], warmup=3, iters=4, device="cpu")
    assert doc["format"] == lib.FORMAT
    assert doc["settings"] | {"warmup": 3, "iters": 4, "device": "cpu", "threads": None} == doc["settings"]
    assert "per call of `batch` tiles" in doc["method"]["latency"]
    assert "not timed" in doc["method"]["timed"] and "--scene" in doc["method"]["timed"]
    (row,) = doc["results"]
    assert row["model_sha256"] == "ab" * 32 and (row["tile"], row["batch"]) == (32, 2)


def test_environment_records_usable_cpus_threads_and_jetson_power_mode(monkeypatch) -> None:
    monkeypatch.setattr(lib.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    files = {
        "/etc/nv_tegra_release": "# R35 (release), REVISION: 4.1",
        "/proc/device-tree/model": "Jetson AGX Orin",
    }
    monkeypatch.setattr(lib, "_read_text", files.get, raising=False)
    real_first_line = lib._first_line
    monkeypatch.setattr(
        lib,
        "_first_line",
        lambda cmd, *a, **k: "NV Power Mode: MAXN" if cmd[0] == "nvpmodel" else real_first_line(cmd, *a, **k),
    )
    env = lib.environment(threads=3)
    assert env["cpus_usable"] == 2  # a cpuset / taskset: cores alone says the host's count
    assert env["threads"] == 3 and env["onnxruntime_intra_op_threads"] == 3
    assert env["thread_env"] == {"OMP_NUM_THREADS": "1"}
    assert env["jetson_power_mode"] == "MAXN" and env["jetson_model"] == "Jetson AGX Orin"
    assert env["l4t_release"].startswith("# R35")
    assert "load_avg_1m" in env


def test_threads_reach_torch_and_onnxruntime_and_are_recorded(fake_models, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    seen = []
    monkeypatch.setattr(
        FakeBench, "predict", staticmethod(lambda x: seen.append(torch.get_num_threads()) or x)
    )
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    doc = lib.run_bench(
        ["m"], ["torch"], tiles=[32], batches=[1], warmup=1, iters=2, device="cpu", threads=want
    )
    assert (
        seen and set(seen) == {want} and torch.get_num_threads() == before
    )  # set for the run, restored after
    assert fake_models.made[0].threads == want
    assert doc["settings"]["threads"] == want and doc["environment"]["torch_threads"] == want
    assert doc["results"][0]["extra"]["threads"] == want

    import dakd_edge.inference.backends as backends

    got = {}

    class FakeOrt:
        def __init__(self, path, device="cpu", threads=None, **k) -> None:
            got.update(path=path, threads=threads)
            self.device, self.close, self.predict = "cpu", lambda: None, None

    monkeypatch.setattr(backends, "OnnxRuntimeBackend", FakeOrt)
    spec = SimpleNamespace(kind="onnx", path=Path("m.onnx"), label="m.onnx")
    REAL_WORKBENCH(spec, "cpu", Path("."), threads=want).onnxruntime_runner("fp32")
    assert got == {"path": Path("m.onnx"), "threads": want}


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "-2"]])
def test_bad_thread_count_is_one_line_before_any_work(argv, monkeypatch, capsys) -> None:
    from dakd_edge.cli.app import main

    monkeypatch.setattr(lib, "run_bench", _no_rows)
    with pytest.raises(SystemExit) as e:
        main(["bench", "--backend", "onnxruntime", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--threads must be >= 1" in err and len(err.splitlines()) == 1


def _no_rows(*a, **k):
    raise AssertionError("benchmark rows ran")


# ----------------------------------------------------------------------------- interrupt
def test_the_work_folder_is_a_registered_temporary(fake_models, monkeypatch) -> None:
    """Exported ONNX files and engines live there; an interrupt while the main thread is inside a
    runtime call ends the process from the signal watchdog (remove_live_temps, then os._exit), which
    skipped the TemporaryDirectory cleanup and left the folder in /tmp."""
    from dakd_edge import atomic

    seen = []

    def predict(x):
        if not seen:
            folder = fake_models.made[-1].workdir
            assert folder.is_dir()
            atomic.remove_live_temps()  # what the watchdog does before os._exit
            seen.append(folder.exists())
        return x

    monkeypatch.setattr(FakeBench, "predict", staticmethod(predict))
    lib.run_bench(["m"], ["onnxruntime"], tiles=[32], batches=[1], warmup=0, iters=1, device="cpu")
    assert seen == [False]


# ----------------------------------------------------------------------------- threshold
@pytest.mark.parametrize("text", ["nan", "NaN%", "inf", "1", "5", "10"])
def test_threshold_that_never_fails_or_is_ambiguous_is_refused(text: str) -> None:
    """NaN made every comparison false (the gate could never fail); a bare 5 meant 500 %."""
    with pytest.raises(InputError, match="max-regression"):
        lib.parse_threshold(text)
    assert lib.parse_threshold("5%") == pytest.approx(0.05)
    assert lib.parse_threshold("150%") == pytest.approx(1.5)
    assert lib.parse_threshold("0.5") == pytest.approx(0.5)


# ----------------------------------------------------------------------------- what the gate compares
def _row(**over) -> dict:
    r = lib.asdict(
        lib.Row("onnxruntime", "fp32", 256, 4, p50_ms=10.0, mean_ms=10.0, mpix_per_s=26.0, model="m")
    )
    r.update(over)
    return r


def _docs(base_rows: list[dict], cur_rows: list[dict]) -> tuple[dict, dict]:
    return {"environment": {}, "results": base_rows}, {"environment": {}, "results": cur_rows}


def test_gate_does_not_compare_a_gpu_baseline_with_a_cpu_row() -> None:
    base, cur = _docs([_row(device="cuda", p50_ms=1.0, mean_ms=1.0, mpix_per_s=260.0)], [_row(device="cpu")])
    with pytest.raises(InputError, match="device differs"):
        lib.compare(cur, base, 0.10)
    base, cur = _docs([_row(device="cpu")], [_row(device="cuda", p50_ms=1.0, mean_ms=1.0, mpix_per_s=260.0)])
    with pytest.raises(InputError, match="device differs"):  # a GPU row beating a CPU baseline is no pass
        lib.compare(cur, base, 0.10)


def test_gate_does_not_compare_two_models_of_one_file_name() -> None:
    base, cur = _docs([_row(model_sha256="a" * 64)], [_row(model_sha256="b" * 64)])
    with pytest.raises(InputError, match="model file content differs"):
        lib.compare(cur, base, 0.10)
    base["results"][0]["model_sha256"] = None  # older baselines record no hash: still compared
    assert lib.compare(cur, base, 0.10) == []


def test_a_row_that_ran_in_the_baseline_and_fails_now_is_a_regression() -> None:
    failed = _row(tile=512, batch=1, status="failed", reason="RuntimeError: boom", p50_ms=None, mean_ms=None)
    base, cur = _docs([_row(), _row(tile=512, batch=1)], [_row(), failed])
    problems = lib.compare(cur, base, 0.10)
    assert len(problems) == 1 and "failed now" in problems[0] and "boom" in problems[0]
    notes: list[str] = []
    skipped = {**failed, "status": "skipped", "reason": "TensorRT is not installed"}
    assert lib.compare({"results": [_row(), skipped]}, base, 0.10, notes=notes) == []
    assert any("skipped now" in n for n in notes)


def test_a_gpu_row_that_fails_before_it_runs_is_a_regression_not_another_device() -> None:
    """A row whose runner cannot be made (an engine that no longer builds, an export that fails) kept
    the Row's default device "cpu": against a GPU baseline the gate called it unlike ("device differs",
    exit 2 or a note) instead of the regression it is."""

    def broken(*a, **k):
        raise RuntimeError("engine build failed")

    bench = SimpleNamespace(
        spec=SimpleNamespace(label="m", size_mb=1.0, sha256=None), device="cuda", runner=broken
    )
    x = np.zeros((4, 1, 256, 256), np.float32)
    row = lib.asdict(lib._one_row(bench, "tensorrt", "fp16", 256, 4, x, None, 0, 1))
    assert row["status"] == "failed" and row["device"] == "cuda"
    base = _row(
        backend="tensorrt", precision="fp16", device="cuda", p50_ms=1.0, mean_ms=1.0, mpix_per_s=260.0
    )
    problems = lib.compare({"results": [row]}, {"results": [base]}, 0.10)
    assert len(problems) == 1 and "failed now (RuntimeError: engine build failed)" in problems[0]


def test_baseline_rows_for_another_device_do_not_cover_the_run() -> None:
    base = {"results": [_row(device="cuda")]}
    keys = [("m", "onnxruntime", "fp32", 256, 4)]
    with pytest.raises(InputError, match="no row of baseline"):
        lib.check_baseline_covers(base, keys, "b.json", device="cpu")
    lib.check_baseline_covers({"results": [_row()]}, keys, "b.json", device="cpu")
    lib.check_baseline_covers({"results": [_row(device=None)]}, keys, "b.json", device="cpu")


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("NaN", "p50_ms is nan"),
        ("Infinity", "p50_ms is inf"),
        ("-1.0", "p50_ms is -1.0"),
    ],
)
def test_baseline_metric_that_is_not_a_finite_number_is_refused(
    tmp_path: Path, bad: str, needle: str
) -> None:
    """json.loads reads NaN; every comparison with it is false, so that row could never fail."""
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"results": [_row()]}).replace('"p50_ms": 10.0', f'"p50_ms": {bad}'))
    with pytest.raises(InputError, match=needle):
        lib.load_json(p)


def test_baseline_formats(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"format": lib.FORMAT + 1, "results": [_row()]}))
    with pytest.raises(InputError, match="from a newer dakd-edge"):
        lib.load_json(p)
    p.write_text(json.dumps({"environment": {"cpu": "x"}, "results": [_row()]}))  # format 1: no key
    assert lib.load_json(p)["results"][0]["p50_ms"] == 10.0


def test_environment_differences() -> None:
    env = {"cpu": "Xeon", "cores": 2, "gpu": None, "torch_threads": 2, "torch": "2.4", "time_utc": "a"}
    same = {**env, "time_utc": "b", "load_avg_1m": 3.0}
    assert lib.environment_differences(same, env) == ([], [])
    other = {**env, "cpu": "Cortex-A78AE", "torch_threads": 6, "torch": "2.5"}
    machine, notes = lib.environment_differences(other, env)
    assert [m.split(":")[0] for m in machine] == ["cpu", "torch_threads"]
    assert notes == ["torch: baseline '2.4', this run '2.5'"]
    assert lib.environment_differences(env, {})[1] == [
        "the baseline records no environment: it cannot be checked to be from this machine"
    ]
    assert lib.environment_differences({**env, "cpus_usable": 2}, env) == ([], [])  # older baseline


def _baseline_file(tmp_path: Path, env: dict) -> Path:
    row = _row(model=ONNX.name, tile=64, batch=1, mpix_per_s=0.4, device="cpu")
    p = tmp_path / "base.json"
    p.write_text(json.dumps({"environment": env, "results": [row]}))
    return p


ARGS = ["bench", "--model", str(ONNX), "--backend", "onnxruntime", "--tile", "64", "--batch", "1",
        "--device", "cpu", "--iters", "1", "--warmup", "0"]  # fmt: skip


def test_cli_refuses_a_baseline_from_another_machine_before_measuring(tmp_path, monkeypatch, capsys) -> None:
    from dakd_edge.cli.app import main

    env = lib.environment()
    base = _baseline_file(tmp_path, {**env, "cpu": "NVIDIA Carmel ARMv8.2", "gpu": "Orin"})
    monkeypatch.setattr(lib, "run_bench", _no_rows)
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--baseline", str(base)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert "another machine" in err and "cpu: baseline 'NVIDIA Carmel ARMv8.2'" in err and str(base) in err

    # --allow-other-machine: compared, and every difference said
    cur = json.loads(base.read_text())
    cur["environment"] = env
    monkeypatch.setattr(lib, "run_bench", lambda *a, **k: copy.deepcopy(cur))
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--baseline", str(base), "--allow-other-machine"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None), out
    assert "regression gate passed" in out and "differs from the baseline: cpu" in " ".join(out.split())


def test_cli_json_records_threads_and_is_strict(tmp_path, monkeypatch, capsys) -> None:
    from dakd_edge.cli.app import main

    calls = {}

    def fake_run(*a, **k):
        calls.update(k)
        return {"format": lib.FORMAT, "environment": {}, "settings": {"threads": k["threads"]}, "results": [
            _row(tile=64, batch=1, max_abs_err=math.inf)]}  # fmt: skip

    monkeypatch.setattr(lib, "run_bench", fake_run)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--threads", "1", "--json", str(out)])
    assert e.value.code in (0, None), capsys.readouterr()
    doc = _strict(out.read_text())
    assert calls["threads"] == 1 and doc["settings"]["threads"] == 1
    assert doc["results"][0]["max_abs_err"] is None


def test_memory_sampler_does_not_run_during_timed_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RSS sampling thread (200 Hz) competed with the runtime's threads inside the timed loop."""
    clock, state, timed_while_sampling = FakeClock(), {"sampling": False}, []

    class Sampler(NoRSS):
        def __enter__(self) -> Sampler:
            state["sampling"] = True
            return self

        def __exit__(self, *exc: object) -> None:
            state["sampling"] = False

    real_counter = clock.perf_counter

    def counter() -> float:  # read at the start and end of every timed call
        timed_while_sampling.append(state["sampling"])
        return real_counter()

    def predict(x):
        clock.advance(10.0)
        return np.zeros((x.shape[0], 2, *x.shape[2:]), np.float32)

    monkeypatch.setattr(lib, "time", SimpleNamespace(perf_counter=counter))
    monkeypatch.setattr(lib, "PeakRSS", Sampler)
    timing, out, peak = lib._time_row(lib.Runner(predict=predict), np.zeros((1, 1, 32, 32), np.float32), 1, 5)
    assert timing.iters == 5 and timing.p50_ms == pytest.approx(10.0) and peak == 1.0
    assert len(timed_while_sampling) == 10 and not any(timed_while_sampling)


def test_git_commit_is_dakd_edge_s_own_or_none(monkeypatch, tmp_path) -> None:
    """Installed inside another repository, bench reported that repository's commit as dakd-edge's."""
    import subprocess

    from dakd_edge import bench

    here = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if here.returncode != 0:
        pytest.skip("not a git checkout")
    assert bench._git_commit() == here.stdout.strip()
    other = tmp_path / "other"
    pkg = other / "site-packages" / "dakd_edge"
    pkg.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setattr(bench, "__file__", str(pkg / "bench.py"))
    assert bench._git_commit() is None
