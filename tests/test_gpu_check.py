"""scripts/gpu_check.sh, the prepared GPU check, runs on the CPU at tiny sizes (--cpu), so it does
not rot on machines without a GPU: every section finishes, writes its file, and the report holds
them; and its host-sync counter files a synchronising warning by where it was raised."""

from __future__ import annotations

import os
import subprocess
import warnings

import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT
from grasp.cli.gpu_check import SyncWarnings
from grasp.models.analytic import LinearWorldModel
from grasp.planners.gd import GDPlanner

SYNC_MESSAGE = "called a synchronizing CUDA operation"


def test_the_cpu_check_runs_every_section(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"report.md", "run.csv", "sync_warnings.csv", "agreement.csv", "bench_eager.csv",
                     "bench_bf16.csv", "latency.csv"}  # compile is left out on the CPU
    run = pd.read_csv(tmp_path / "run.csv")
    assert list(run.planner) == ["grasp", "cem", "gd"] and (run.episodes == 2).all() and (run.plan_calls > 0).all()
    agreement = pd.read_csv(tmp_path / "agreement.csv")
    assert len(agreement) == 6 and (agreement.max_action_diff == 0).all()  # CPU against CPU: the same plan
    bench = pd.read_csv(tmp_path / "bench_bf16.csv")
    assert set(bench.planner) == {"grasp_sync", "gd", "cem"} and set(bench.precision) == {"bf16"}
    assert bench.complete.all()
    latency = pd.read_csv(tmp_path / "latency.csv")
    assert list(latency.planner) == ["grasp", "gd", "cem"] and (latency.bound_s > 0).all()
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Run", "## CPU against device", "## Latency bound", "## Benchmark: eager", "## Benchmark: bf16"):
        assert heading in report
    assert "| run       | ok" in report and "timed out" not in report


class WarningGD(GDPlanner):
    """GD that raises torch's sync-debug warning inside its loop, once per plan."""

    def _optimize(self, *args, **kwargs):
        warnings.warn(SYNC_MESSAGE)
        return super()._optimize(*args, **kwargs)


def test_the_sync_counter_files_warnings_inside_plan_loops(monkeypatch):
    from grasp.planners import base

    monkeypatch.setattr(base.Planner, "plan", base.Planner.plan)  # undone after the test
    counter = SyncWarnings()
    counter.install()
    planner = WarningGD(LinearWorldModel(torch.eye(2), torch.eye(2)), horizon=3, iterations=2)
    for _ in range(3):
        planner.plan(torch.zeros(1, 2), torch.ones(1, 2))
    with pytest.warns(UserWarning):
        warnings.warn(SYNC_MESSAGE)  # outside plan(): shown as usual, not recorded
    frame = counter.frame()
    assert len(frame) == 1 and bool(frame.in_plan_loop[0]) and int(frame["count"][0]) == 3
    assert frame["where"][0].startswith("base.py:")  # the innermost line of the grasp package
