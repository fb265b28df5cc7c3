"""Smoke test of scripts/bench_planners.py at tiny sizes: the files it writes, their rows and
columns, and GRASP's chunked activation memory (a deterministic count). No timing is compared
with a target: timings on a shared test machine say nothing."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "bench_planners.py"
COLUMNS = {"device", "threads", "model", "planner", "chunked", "chunk_size", "horizon", "batch", "sec_per_iter",
           "time_to_threshold_s", "iters_to_threshold", "threshold", "threshold_reached", "act_mem_mb",
           "peak_mem_mb", "mem_method"}


def load_script():
    """The benchmark's module (scripts/bench_planners.py and grasp-bench call it)."""
    from grasp.cli import bench

    return bench


@pytest.fixture
def one_thread():
    """Single-threaded torch for in-process measurements, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_quick_run_writes_csv_png_md(tmp_path):
    # one thread: on a busy machine OpenMP threads waiting on each other make tiny timings erratic
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--planners", "grasp,gd,cem", "--out",
                           str(tmp_path), "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "bench_planners.csv")
    assert COLUMNS <= set(frame.columns)
    # every model x planner (+ chunked GRASP) x horizon x batch, once
    cells = set(zip(frame["model"], frame["planner"], frame["chunked"], frame["horizon"], frame["batch"]))
    variants = [("grasp", False), ("grasp", True), ("gd", False), ("cem", False)]
    want = {(m, p, c, t, b) for m, (p, c), t, b in itertools.product(("mlp", "pixel"), variants, (5, 10), (1, 2))}
    assert cells == want and len(frame) == len(want)
    assert (frame["sec_per_iter"] > 0).all() and frame["sec_per_iter"].map(math.isfinite).all()
    assert (frame["threads"] == 1).all() and (frame["device"] == "cpu").all()
    # time to threshold: finite exactly when reached
    assert (frame["threshold"] > 0).all()
    assert (frame["time_to_threshold_s"].map(math.isfinite) == frame["threshold_reached"]).all()
    # activation memory: the sampler keeps no graph; GRASP's chunks (2 transitions) keep less than all T
    assert (frame.loc[frame["planner"] == "cem", "act_mem_mb"] == 0).all()
    assert (frame.loc[frame["planner"] != "cem", "act_mem_mb"] > 0).all()
    grasp = frame[frame["planner"] == "grasp"].set_index(["model", "horizon", "batch", "chunked"])["act_mem_mb"]
    for model, horizon, batch in itertools.product(("mlp", "pixel"), (5, 10), (1, 2)):
        assert grasp[(model, horizon, batch, True)] < grasp[(model, horizon, batch, False)]
    assert (tmp_path / "bench_planners.png").stat().st_size > 0
    report = (tmp_path / "bench_planners.md").read_text()
    assert "grasp/gd s/it" in report and "grasp/cem s/it" in report
    assert "PASS [mlp] GRASP activation memory" in report
    assert "GRASP/GD s/it at T=5, B=1" in proc.stdout


def test_grasp_with_sync_is_timed_over_whole_sync_periods(one_thread):
    bench = load_script()
    args = bench.parse_args(["--quick", "--models", "mlp", "--planners", "grasp_sync", "--sync-every", "2",
                             "--threshold-iters", "4"])
    model = bench.build_model("mlp", args, torch.device("cpu"))
    row = bench.measure(bench.Case("mlp", bench.VARIANTS["grasp_sync"], 4, 1), model, args, torch.device("cpu"))
    assert (row["iters_short"], row["iters_long"]) == (2, 4)
    assert row["sec_per_iter"] > 0 and row["act_mem_mb"] > 0
    assert row["threshold_reached"] == math.isfinite(row["time_to_threshold_s"])


def test_saved_tensor_meter_counts_what_backward_needs():
    bench = load_script()
    x = torch.randn(1000, requires_grad=True)
    with bench.SavedTensorMeter(exclude=set()) as meter:
        y = x.exp()  # saves its result: 4000 bytes
        y.sum().backward()
        assert meter.current == 0  # freed by the backward pass
    assert meter.peak == 4000


def test_bad_cli_values_name_the_allowed_ones(capsys):
    bench = load_script()
    with pytest.raises(SystemExit):
        bench.parse_args(["--planners", "grasp,nope"])
    err = capsys.readouterr().err
    assert "unknown planner 'nope'" in err and "grasp_sync" in err and "mppi" in err
    with pytest.raises(SystemExit):
        bench.parse_args(["--horizons", "0"])
    assert ">= 1" in capsys.readouterr().err
