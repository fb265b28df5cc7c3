"""scripts/latency_bound.py counts the model calls a plan() really makes (the bound is built on
them) and writes its table; the counts are checked against what each planner's loop must do."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from grasp.cli import bench, latency
from grasp.precision import native_bf16_cpu

TINY = argparse.Namespace(seed=0, depth=None, state_dim=3, action_dim=2, hidden_dim=16, residual_scale=0.1,
                          action_gain=10.0, compile=None)


def counted_calls(config: str, horizon: int, batch: int, precision: str = "fp32", **knobs) -> dict:
    model = bench.build_model("mlp", TINY, bench.resolve_device("cpu"))
    counter = latency.CallCounter(model)
    node = bench.planners.planner_config(config, horizon=horizon, **knobs)
    planner = bench.make_planner(node, model, precision)
    problem = bench.make_problem(model, horizon, batch, 0, 0.1)
    with counter:
        bench.run_plan(planner, problem, 0)
    return dict(counter.calls)


def test_cem_makes_iterations_x_horizon_serial_calls_over_every_sample():
    calls = counted_calls("cem", horizon=5, batch=2, iterations=3, samples=8, elites=2)
    # 3 iterations x 5 steps over 2 x 8 sample rows, then plan()'s final rollout of the 2 plans
    assert calls == {(16, False, "fp32"): 15, (2, False, "fp32"): 5}


def test_grasp_makes_one_lifted_call_per_iteration_and_the_syncs_serial_ones():
    calls = counted_calls("grasp", horizon=5, batch=2, iterations=4, sync_every=2, sync_steps=3)
    # lifted: 4 calls over 2 x 5 (state, action) pairs with grad; 2 syncs of 3 shooting steps
    # (5 serial calls with grad each) and a last scoring pass; plan()'s final rollout
    assert calls == {(10, True, "fp32"): 4, (2, True, "fp32"): 2 * 3 * 5, (2, False, "fp32"): 2 * 5 + 5}


def test_each_call_is_counted_in_the_precision_it_ran_in(monkeypatch):
    monkeypatch.setattr("grasp.precision.native_bf16_cpu", lambda: True)
    calls = counted_calls("grasp", horizon=5, batch=2, precision="auto", iterations=4, sync_every=2, sync_steps=3)
    # auto on a CPU with native bf16: the lifted calls in bf16, the sync's serial ones and the final rollout in fp32
    assert calls == {(10, True, "bf16"): 4, (2, True, "fp32"): 2 * 3 * 5, (2, False, "fp32"): 2 * 5 + 5}
    assert set(counted_calls("cem", horizon=3, batch=2, precision="auto", iterations=2, samples=8, elites=2)) == {
        (16, False, "bf16"), (2, False, "fp32")}


def test_gd_counts_and_the_written_table(tmp_path):
    assert counted_calls("gd", horizon=4, batch=3, iterations=5) == {(3, True, "fp32"): 20, (3, False, "fp32"): 8}
    frame = latency.main(["--planners", "gd,cem", "--horizons", "3,4", "--batches", "2", "--hidden-dim", "16",
                          "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)])
    written = pd.read_csv(tmp_path / "latency_bound.csv")
    assert list(zip(written.planner, written.horizon)) == [("gd", 3), ("cem", 3), ("gd", 4), ("cem", 4)] and (written.bound_s > 0).all() and (written.plan_s > 0).all()
    assert (written.ratio - written.plan_s / written.bound_s).abs().max() < 1e-9
    assert "| gd" in (tmp_path / "latency_bound.md").read_text() and len(frame) == 4
    assert (tmp_path / "latency_bound.png").stat().st_size > 0  # the growth plot, one line per planner


def test_each_precision_is_a_row_whose_bound_is_timed_in_it(tmp_path):
    frame = latency.main(["--planners", "cem,gd", "--horizons", "3", "--batches", "2", "--hidden-dim", "16",
                          "--repeats", "1", "--device", "cpu", "--precisions", "fp32,bf16,auto"])
    assert list(zip(frame.planner, frame.precision)) == [("cem", "fp32"), ("cem", "bf16"), ("cem", "auto"),
                                                         ("gd", "fp32"), ("gd", "bf16"), ("gd", "auto")]
    auto_cem = "bf16" if native_bf16_cpu() else "fp32"
    assert list(frame.autocast) == ["fp32", "bf16", auto_cem, "fp32", "bf16", "fp32"]
    assert (frame.bound_s > 0).all() and (frame.plan_s > 0).all()
    with pytest.raises(SystemExit):
        latency.main(["--precisions", "fp16"])


def test_bad_sizes_are_refused(capsys):
    with pytest.raises(SystemExit):
        latency.main(["--batches", "0"])
    err = capsys.readouterr().err
    assert "--batches" in err and "integer >= 1" in err
    with pytest.raises(SystemExit, match="--hidden-dim must be >= 1"):
        latency.main(["--hidden-dim", "0"])
