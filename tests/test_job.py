"""The resolved job, which needs no training: one horizon, its cache keys and names, its planner."""

from __future__ import annotations

import pytest
import torch

from omegaconf.errors import ReadonlyConfigError

from conftest import compose_config, resolved
from grasp.planners import build
from grasp.envs.wall import WallTask
from grasp.errors import ConfigError
from grasp.job import build_planner, resolve
from grasp.train.trainer import build_world_model
from grasp.precision import native_bf16_cpu


def planner_of(*overrides: str):
    job = resolved(compose_config(["world_model.hidden_dim=8", *overrides]))
    model = build_world_model(job.cfg.world_model, job.task.state_dim, job.task.action_dim)
    return job, build_planner(job, model)


@pytest.mark.parametrize("planner", ["grasp", "cem", "gd"])
def test_goal_costs_default_to_the_tasks_goal_dims(planner):
    job, built = planner_of(f"planner={planner}")
    assert built.state_weights.tolist() == [1.0, 1.0, 0.0, 0.0]  # positions, not velocities
    assert built.action_low.tolist() == [-1.0, -1.0] and built.horizon == job.horizon == 30


@pytest.mark.parametrize("planner", ["cem", "gd", "grasp_mpc"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_the_runs_precision_reaches_each_planner(planner, precision):
    built = planner_of(f"planner={planner}", f"precision={precision}", "device=cpu")[1]
    bf16 = precision == "bf16" or (precision == "auto" and planner == "cem" and native_bf16_cpu())
    assert built.autocast_dtype == (torch.bfloat16 if bf16 else None)
    lifted_bf16 = planner == "grasp_mpc" and precision == "auto" and native_bf16_cpu()
    assert built.precision == ("bf16 lifted, fp32 sync" if lifted_bf16 else "bf16" if bf16 else "fp32")


def test_explicit_state_weights_are_kept():
    assert planner_of("planner.state_weights=[1,1,0.5,0.5]")[1].state_weights.tolist() == [1.0, 1.0, 0.5, 0.5]


def test_the_job_has_one_horizon_and_a_read_only_config():
    job, planner = planner_of("horizon=12")
    assert job.horizon == planner.horizon == job.cfg.planner.horizon == 12 and job.run_name == "grasp-H12-0"
    with pytest.raises(ReadonlyConfigError):
        job.cfg.eval.episodes = 3
    with pytest.raises(ConfigError, match=r"'planner.horizon' = 25 differs from 'horizon' = 40.*horizon=<T>"):
        resolve(compose_config(["horizon=40", "planner.horizon=25"]))
    assert resolved(compose_config(["horizon=25", "planner.horizon=25"])).horizon == 25  # agreeing is fine


@pytest.mark.parametrize("override, words", [
    ("planner.sigma_schedule=wavy", "sigma_schedule"),
    ("planner.alpha=2", "alpha"),
    ("planner.iterations=0", "iterations"),
    ("planner.optimizer=lbfgs", "optimizer"),
])
def test_bad_planner_knob_is_one_clear_error(override, words):
    with pytest.raises(ConfigError, match=rf"config section 'planner'.*{words}"):
        resolve(compose_config([override]))


def keys(*overrides: str) -> tuple[str, str, str]:
    job = resolved(compose_config(list(overrides)))
    return job.data_key, job.model_key, job.protocol_path.name


def test_cache_keys_track_what_determines_each_artifact(monkeypatch):
    data, model, protocol = keys()
    assert keys("planner=cem", "eval.episodes=3", "train.steps=7")[0] == data
    assert keys("data.episodes=70")[0] != data and keys("env.door_width=0.4")[0] != data
    assert keys("planner=gd", "seed=4")[1] == model
    assert all(keys(o)[1] != model for o in ("train.steps=7", "world_model.depth=2", "data.seed=3",
                                             "world_model.state_loss_weights=[1,1,2,2]"))
    assert keys("eval.episodes=3")[2] != protocol and keys("planner=cem", "train.steps=7")[2] == protocol
    # a new version of a task's code (state layout, dynamics): new dataset, model and start/goal pairs
    monkeypatch.setattr(WallTask, "version", WallTask.version + 1)
    assert all(old != new for old, new in zip((data, model, protocol), keys()))


def test_the_thread_count_is_in_no_cache_or_result_key():
    def every_key(*overrides: str) -> tuple[str, ...]:
        job = resolved(compose_config(list(overrides)))
        return job.data_key, job.model_key, job.protocol_path.name, job.evaluation_key

    assert every_key("threads=3") == every_key() and every_key("precision=bf16")[3] != every_key()[3]


def test_plan_curves_put_every_curve_and_each_sync_on_the_iteration_axis():
    from grasp.models.analytic import LinearWorldModel
    from grasp.tracking import plan_curves

    model = LinearWorldModel.double_integrator()
    planner = build("grasp", model, horizon=6, iterations=10, sync_every=5, eval_every=2)
    info = planner.plan(torch.zeros(2, 4), torch.ones(2, 4)).info
    rows = plan_curves([info.select(0), info.select(1)])
    assert [row["plan/iteration"] for row in rows] == list(range(10))
    for ep in (0, 1):
        assert [row[f"plan/ep{ep}/dynamics"] for row in rows] == info["dynamics"][:, ep].tolist()
        assert [row[f"plan/ep{ep}/sigma"] for row in rows] == info["sigma"].tolist()
        assert [k for k, row in enumerate(rows) if f"plan/ep{ep}/sync_cost" in row] == [4, 9]
        assert [k for k, row in enumerate(rows) if f"plan/ep{ep}/rollout_cost" in row] == [1, 3, 5, 7, 9]
    assert plan_curves([None, {}]) == []
