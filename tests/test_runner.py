"""The runner end to end in subprocesses, as a user launches it: collect -> train -> evaluate,
results.csv, a W&B offline run read back from its files, caching, and a -m sweep."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT, TINY, run_cli
from grasp.eval.metrics import RESULT_COLUMNS
from wandb_files import read_offline_run

pytestmark = pytest.mark.slow


def test_end_to_end_run_results_wandb_and_cache(tmp_path):
    base = TINY + [f"paths.root_dir={tmp_path}", "planner=cem"]
    proc = run_cli(base + [f"hydra.run.dir={tmp_path}/run1", "logger.wandb.mode=offline",
                           "logger.wandb.log_checkpoint=true"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = pd.read_csv(tmp_path / "run1" / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 2 and set(results["planner"]) == {"cem"} and set(results["env"]) == {"wall"}
    assert (results["steps"] >= 1).all() and (results["plan_time"] > 0).all()
    assert "success_%" in proc.stdout, "the summary table is printed at the end"
    assert (tmp_path / "run1" / "summary.md").exists() and (tmp_path / "run1" / ".hydra" / "config.yaml").exists()
    # where every row came from: this checkout's commit and state, the versions, the device, the model file
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    (checkpoint,) = (tmp_path / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt")
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert len(head) == 40 and set(results["git_commit"]) == {head} and set(results["git_dirty"]) == {dirty}
    assert set(results["device"]) == {"cpu"} and set(results["checkpoint_sha256"]) == {sha}
    assert set(results["precision"]) == {"fp32"}, "the run's default precision, as the planner used it"
    assert f"torch={torch.__version__}" in results["versions"][0] and "mujoco=" in results["versions"][0]

    (run_dir,) = (tmp_path / "run1" / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert run["run"].run_group == "default" and run["run"].display_name == "cem-H6-0"
    assert run["run"].job_type == "cem"
    assert {"env:wall", "planner:cem", "H:6"} <= set(run["run"].tags)
    # the resolved config in nested sections (dashboards group and filter on any knob), with the overrides
    assert run["config"]["planner"]["_target_"] == "grasp.planners.cem.CEMPlanner"
    assert run["config"]["eval"]["episodes"] == 2 and run["config"]["variant"] == "cem"
    assert "planner=cem" in run["config"]["overrides"].split()
    assert run["config"]["provenance"]["git_commit"] == head and run["config"]["provenance"]["device"] == "cpu"
    assert run["summary"]["provenance/checkpoint_sha256"] == sha
    # training curves on their own step; the checkpoint as a model artifact (logger.wandb.log_checkpoint)
    axes = {m.glob_name: m.step_metric for m in run["metrics"] if m.glob_name}
    assert axes["train/*"] == "train/step" and axes["val/*"] == "train/step"
    (artifact,) = [a for a in run["artifacts"] if a.type == "model"]
    assert artifact.name.startswith("world-model-wall-") and json.loads(artifact.metadata)["sha256"] == sha
    assert run["summary"]["eval/episodes"] == 2
    assert 0.0 <= run["summary"]["eval/success_rate"] <= 1.0
    # simulator success beside success at any step, in the model, and the model's oracle ceiling
    for key, column in (("eval/success_any_step_rate", "success_any_step"), ("eval/model_success_rate", "model_success"),
                        ("eval/oracle_success_rate", "model_oracle_success")):
        assert run["summary"][key] == pytest.approx(results[column].astype(float).mean()), key
    assert (results["success_any_step"] >= results["success"]).all()
    assert run["summary"]["world_model/val/oracle_success@6"] == pytest.approx(results["model_oracle_success"][0])
    assert "oracle success@6 (6 env steps)" in proc.stdout, "the model's oracle success is printed after training"
    assert any("train/loss" in row for row in run["history"])
    assert sum("episode/final_distance" in row for row in run["history"]) == 2
    # the first plan's per-iteration curves of both episodes, on their own axis
    curves = [row for row in run["history"] if "plan/iteration" in row]
    assert [row["plan/iteration"] for row in curves] == list(range(25))  # TINY: planner.iterations=25
    assert all({"plan/ep0/best_cost", "plan/ep1/best_cost"} <= set(row) for row in curves)
    assert (results["plan_iterations"] == 25).all() and (results["model_final_cost"] >= 0).all()
    # the training curves are drawn to a PNG and logged to W&B as an image
    assert (tmp_path / "run1" / "pictures" / "training_curves.png").stat().st_size > 1000
    (image,) = [row for row in run["history"] if "pictures/training_curves/_type" in row]
    assert image["pictures/training_curves/_type"] == "image-file"
    assert (run_dir / "files" / image["pictures/training_curves/path"]).exists(), "W&B keeps its copy of the PNG"

    # where the time went: every stage's section, adding up to the job's wall time
    timings = json.loads((tmp_path / "run1" / "timings.json").read_text())
    assert {"setup_s", "collect_s", "train_s", "plan_s", "env_s", "divergence_s", "logging_s", "other_s"} <= set(timings)
    assert all(v >= 0 for v in timings.values()) and timings["plan_s"] > 0 and timings["collect_s"] > 0
    assert sum(v for k, v in timings.items() if k != "total_s") == pytest.approx(timings["total_s"], abs=0.01)
    assert run["summary"]["time/plan_s"] == timings["plan_s"]

    datasets = list((tmp_path / "outputs" / "cache" / "data" / "wall").glob("*.npz"))
    checkpoints = list((tmp_path / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt"))
    assert len(datasets) == 1 and len(checkpoints) == 1
    stamps = [p.stat().st_mtime_ns for p in datasets + checkpoints]

    # Same config again: data and model come from the cache, results are identical.
    proc = run_cli(base + [f"hydra.run.dir={tmp_path}/run2"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing cached world model" in proc.stdout + proc.stderr
    assert [p.stat().st_mtime_ns for p in datasets + checkpoints] == stamps
    again = pd.read_csv(tmp_path / "run2" / "results.csv")
    deterministic = ["episode_seed", "success", "steps", "final_distance"]
    pd.testing.assert_frame_equal(again[deterministic], results[deterministic])
    # the world model's held-out errors ride along in every row, from training and from the cache
    assert run["summary"]["world_model/val/one_step_mse"] == pytest.approx(results["model_val_mse"][0])
    assert results["model_val_rollout_rmse"].gt(0).all()
    quality = ["model_val_mse", "model_val_rollout_rmse", "model_oracle_success", "model_success", "model_final_distance"]
    pd.testing.assert_frame_equal(again[quality], results[quality])
    assert not (tmp_path / "run2" / "wandb").exists(), "mode=disabled writes no W&B files"

    # A different model config trains a new checkpoint from the same cached dataset.
    proc = run_cli(base + [f"hydra.run.dir={tmp_path}/run3", "world_model.hidden_dim=16"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing cached dataset" in proc.stdout + proc.stderr
    assert len(list((tmp_path / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt"))) == 2


def test_bad_override_fails_before_any_work(tmp_path):
    proc = run_cli(TINY + [f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run", "device=tpu"], cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "grasp: error: config key 'device' = 'tpu' is invalid: allowed one of ['auto', 'cpu', 'cuda', 'cuda:N']"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "outputs" / "cache").exists(), "nothing was collected or trained"


def test_hydra_full_error_shows_a_bad_values_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    proc = run_cli(TINY + [f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run", "device=tpu"], cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "grasp.errors.ConfigError: config key 'device'" in proc.stderr


def test_a_bad_value_in_any_job_of_a_sweep_stops_it_before_the_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "planner=grasp,cem",
                    "planner.iterations=25,-1"], cwd=REPO_ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    # jobs in Hydra's order: iterations (first set by TINY) x planner; job 2 is the first bad one
    assert "sweep job 2 (planner.iterations=-1 planner=grasp)" in proc.stderr
    assert "planner.iterations=-1: allowed range is [1, inf]" in proc.stderr
    assert not (sweep / "0").exists() and not (tmp_path / "outputs" / "cache").exists(), "no job ran"


def test_multirun_sweeps_planners_and_aggregates(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "planner=grasp,gd"],
                   cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    per_job = [pd.read_csv(sweep / str(i) / "results.csv") for i in (0, 1)]
    assert [set(df["planner"]) for df in per_job] == [{"grasp"}, {"gd"}]
    combined = pd.read_csv(sweep / "results.csv")
    assert len(combined) == 4 and set(combined["planner"]) == {"grasp", "gd"}
    summary = (sweep / "summary.md").read_text()
    assert "grasp" in summary and "gd" in summary
    assert "Sweep summary" in proc.stdout
    # Both jobs shared one dataset and one checkpoint.
    assert len(list((tmp_path / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt"))) == 1
    # ... and one protocol file: both planners were evaluated on the same start/goal pairs.
    assert len(list((tmp_path / "outputs" / "cache" / "protocols" / "wall").glob("*.json"))) == 1
    assert list(per_job[0]["episode_seed"]) == list(per_job[1]["episode_seed"])
    assert "success_ci95_%" in summary and per_job[0]["model_divergence"].notna().all()


@pytest.mark.parametrize("override, says", [
    ("planner=nosuch", "Could not find 'planner/nosuch'"),
    ("nosuchkey=1", "Could not override 'nosuchkey'"),
    ("eval.episodes=[", "no viable alternative"),
])
def test_a_config_hydra_cannot_compose_exits_2_without_a_traceback(tmp_path, override, says):
    proc = run_cli([f"paths.root_dir={tmp_path}", override], cwd=REPO_ROOT)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr and not (tmp_path / "outputs").exists()

