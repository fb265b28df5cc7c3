"""Sweeps as users launch them, in subprocesses: two jobs through the submitit_local launcher
(each its own process, as on SLURM) and an Optuna search of two trials; each job's results file
and its offline W&B run (config, group, job type, summary) are read back."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, TINY, run_cli
from wandb_files import read_offline_run

pytestmark = pytest.mark.slow


def job_runs(sweep, jobs: int) -> list[dict]:
    runs = []
    for job in range(jobs):
        (run_dir,) = (sweep / str(job) / "wandb").glob("offline-run-*")
        runs.append(read_offline_run(run_dir))
    return runs


def test_submitit_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "launcher=submitit_local",
                    "planner=grasp,cem", "exp_name=submitit_test", "logger.wandb.mode=offline"], cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit kept each job's log"
    per_job = [pd.read_csv(sweep / str(job) / "results.csv") for job in (0, 1)]
    assert [set(df["planner"]) for df in per_job] == [{"grasp"}, {"cem"}]
    assert len(pd.read_csv(sweep / "results.csv")) == 4, "the sweep callback gathered both jobs"
    for run, planner in zip(job_runs(sweep, 2), ("grasp", "cem")):
        assert run["run"].run_group == "submitit_test" and run["run"].job_type == planner
        assert run["run"].display_name == f"{planner}-H6-0"
        assert run["config"]["planner"]["horizon"] == 6 and run["config"]["exp_name"] == "submitit_test"
        assert run["summary"]["eval/episodes"] == 2
        assert run["summary"]["eval/success_rate"] == pytest.approx(per_job[("grasp", "cem").index(planner)]
                                                                     ["success"].mean())
    # the sweep becomes a table: a row for the horizon, a column per planner
    tables = subprocess.run([sys.executable, "scripts/make_tables.py", str(sweep)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert tables.returncode == 0, tables.stderr
    layout = pd.read_csv(sweep / "tables" / "table.csv")
    assert list(layout.columns) == ["env", "H (env steps)", "oracle %", "cem", "cem any-step %", "cem model %",
                                    "grasp", "grasp any-step %", "grasp model %"]
    assert list(layout["H (env steps)"]) == [6]


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}",
                    "hparams_search=grasp_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                    "exp_name=optuna_test", "logger.wandb.mode=offline"], cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and set(best["best_params"]) >= {"planner.lr_states", "planner.sync_every"}
    runs = job_runs(sweep, 2)
    objectives = [run["summary"]["eval/objective"] for run in runs]
    assert best["best_value"] == pytest.approx(max(objectives))
    for job, run in enumerate(runs):
        results = pd.read_csv(sweep / str(job) / "results.csv")
        assert set(results["planner"]) == {"grasp"} and (results["seed"] == 100).all(), "validation pairs: seed 100"
        assert run["run"].run_group == "optuna_test"
        # each trial's sampled knobs are in its config and its overrides
        assert 0.003 <= run["config"]["planner"]["lr_states"] <= 0.3
        assert f"planner.lr_states={run['config']['planner']['lr_states']}" in run["config"]["overrides"].split()
    assert runs[0]["config"]["planner"]["lr_states"] != runs[1]["config"]["planner"]["lr_states"]
