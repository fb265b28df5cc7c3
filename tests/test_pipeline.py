"""Runner wiring that needs no training: planner construction from the composed config."""

from __future__ import annotations

import hydra
import pytest
import torch

from conftest import compose_config
from grasp.config import ConfigError
from grasp.envs.wall import WallTask
from grasp.pipeline import build_planner, data_key, model_key, protocol_key
from grasp.train.trainer import build_world_model


@pytest.fixture
def parts():
    cfg = compose_config(["world_model.hidden_dim=8"])
    task = hydra.utils.instantiate(cfg.env)
    model = build_world_model(cfg.world_model, task.state_dim, task.action_dim)
    yield task, model
    task.close()


@pytest.mark.parametrize("planner", ["grasp", "cem", "gd"])
def test_goal_costs_default_to_the_tasks_goal_dims(planner, parts):
    task, model = parts
    cfg = compose_config([f"planner={planner}"])
    built = build_planner(cfg, model, task)
    assert built.state_weights.tolist() == [1.0, 1.0, 0.0, 0.0]  # positions, not velocities
    assert built.action_low.tolist() == [-1.0, -1.0] and built.horizon == cfg.horizon


def test_explicit_state_weights_are_kept(parts):
    task, model = parts
    cfg = compose_config(["planner.state_weights=[1,1,0.5,0.5]"])
    assert build_planner(cfg, model, task).state_weights.tolist() == [1.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize("override, words", [
    ("planner.sigma_schedule=wavy", "sigma_schedule"),
    ("planner.alpha=2", "alpha"),
    ("planner.iterations=0", "iterations"),
    ("planner.optimizer=lbfgs", "optimizer"),
])
def test_bad_planner_knob_is_one_clear_error(override, words, parts):
    task, model = parts
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=rf"config section 'planner'.*{words}"):
        build_planner(cfg, model, task)


def test_cache_keys_track_what_determines_each_artifact(monkeypatch):
    base = compose_config([])
    assert data_key(base) == data_key(compose_config(["planner=cem", "eval.episodes=3", "train.steps=7"]))
    assert data_key(base) != data_key(compose_config(["data.episodes=7"]))
    assert data_key(base) != data_key(compose_config(["env.door_width=0.4"]))
    assert model_key(base) == model_key(compose_config(["planner=gd", "seed=4"]))
    assert model_key(base) != model_key(compose_config(["train.steps=7"]))
    assert model_key(base) != model_key(compose_config(["world_model.depth=2"]))
    assert model_key(base) != model_key(compose_config(["data.seed=3"]))
    # a new version of a task's code (state layout, dynamics): new dataset, model and start/goal pairs
    before = data_key(base), model_key(base), protocol_key(base, "colored")
    monkeypatch.setattr(WallTask, "version", WallTask.version + 1)
    after = data_key(base), model_key(base), protocol_key(base, "colored")
    assert all(old != new for old, new in zip(before, after))


def test_plan_curves_put_every_curve_and_each_sync_on_the_iteration_axis():
    from grasp.models.analytic import LinearWorldModel
    from grasp.pipeline import plan_curves
    from grasp.planners.base import select_problems
    from test_planners import make_planner

    model = LinearWorldModel.double_integrator()
    planner = make_planner("grasp", model, horizon=6, iterations=10, sync_every=5, eval_every=2)
    info = planner.plan(torch.zeros(2, 4), torch.ones(2, 4)).info
    rows = plan_curves([select_problems(info, 0), select_problems(info, 1)])
    assert [row["plan/iteration"] for row in rows] == list(range(10))
    for ep in (0, 1):
        assert [row[f"plan/ep{ep}/dynamics"] for row in rows] == info["dynamics"][:, ep].tolist()
        assert [row[f"plan/ep{ep}/sigma"] for row in rows] == info["sigma"].tolist()
        assert [k for k, row in enumerate(rows) if f"plan/ep{ep}/sync_cost" in row] == [4, 9]
        assert [k for k, row in enumerate(rows) if f"plan/ep{ep}/rollout_cost" in row] == [1, 3, 5, 7, 9]
    assert plan_curves([None, {}]) == []
