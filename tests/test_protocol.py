"""The evaluation protocol file, goal sources, the data policy choice and the per-cell metrics."""

from __future__ import annotations

import json

import hydra
import numpy as np
import pytest

from conftest import TINY, compose_config
from grasp.planners import build
from grasp.errors import ConfigError
from grasp.envs.base import Task
from grasp.eval.metrics import summarize, wilson_interval
from grasp.eval.protocol import Protocol, make_protocol
from grasp.models.analytic import LinearWorldModel
from grasp.job import evaluation_protocol, resolve
from grasp.eval.mpc import run_mpc
from grasp.envs.exploration import exploration_actions


@pytest.fixture
def wall():
    task = hydra.utils.instantiate(compose_config().env)
    yield task
    task.close()


def cell_config(tmp_path, *extra):
    return compose_config(TINY + [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", *extra])


def test_protocol_file_round_trips(tmp_path, wall):
    protocol = make_protocol(wall, episodes=5, seed=3, horizon=10, goal_source="random")
    protocol.save(tmp_path / "p.json")
    again = Protocol.load(tmp_path / "p.json")
    assert again.episode_seeds == protocol.episode_seeds and again.env == "wall" and again.horizon == 10
    np.testing.assert_array_equal(again.starts, protocol.starts)
    np.testing.assert_array_equal(again.goals, protocol.goals)
    # episode i depends only on (seed, i): a longer protocol starts with the shorter one
    longer = make_protocol(wall, episodes=8, seed=3, horizon=10)
    np.testing.assert_array_equal(longer.head(5).goals, protocol.goals)


def test_every_planner_of_a_cell_gets_the_same_pairs_from_one_file(tmp_path, wall):
    cem, gd = (evaluation_protocol(resolve(cell_config(tmp_path, f"planner={p}"), task=wall)) for p in ("cem", "gd"))
    (path,) = (tmp_path / "outputs" / "cache" / "protocols" / "wall").glob("*.json")
    np.testing.assert_array_equal(cem.starts, gd.starts)
    np.testing.assert_array_equal(cem.goals, gd.goals)
    # another horizon is another cell, with its own file
    evaluation_protocol(resolve(cell_config(tmp_path, "horizon=9"), task=wall))
    assert len(list(path.parent.glob("*.json"))) == 2


def test_rollout_goals_are_reached_by_the_data_policy(wall):
    protocol = make_protocol(wall, episodes=3, seed=1, horizon=12, goal_source="rollout", policy="colored")
    for seed, start, goal in zip(protocol.episode_seeds, protocol.starts, protocol.goals):
        rng = np.random.default_rng(seed)
        np.testing.assert_allclose(wall.reset(wall.sample_state(rng)), start)
        for action in exploration_actions(rng, 12, 2, "colored", 0.8):
            state = wall.step(action)
        np.testing.assert_allclose(state, goal)
        assert np.linalg.norm(goal[:2] - start[:2]) > 0.05  # the agent went somewhere


def test_rollout_goals_already_met_at_the_start_are_redrawn(wall, monkeypatch):
    # three colored steps often leave the agent within the success radius of where it started
    kwargs = dict(episodes=20, seed=0, horizon=3, goal_source="rollout", policy="colored")
    monkeypatch.setattr("grasp.eval.protocol.ROLLOUT_TRIES", 1)
    first_draws = make_protocol(wall, **kwargs)
    assert wall.success(first_draws.starts, first_draws.goals).any()
    monkeypatch.undo()
    protocol = make_protocol(wall, **kwargs)
    assert not wall.success(protocol.starts, protocol.goals).any()


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.update(env="pusht"), "is for env 'pusht'"),
    (lambda r: r.update(episode_seeds=r["episode_seeds"][:1], starts=r["starts"][:1], goals=r["goals"][:1]),
     "holds 1 episodes, eval.episodes asks for 2"),
    (lambda r: r.update(version=99), "version 99"),
    (lambda r: r.pop("goals"), "not a readable protocol"),
])
def test_a_bad_protocol_file_is_one_clear_error(tmp_path, wall, edit, message):
    path = tmp_path / "p.json"
    make_protocol(wall, episodes=2, seed=0, horizon=6).save(path)
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=rf"eval.protocol: .*{path}.*{message}|eval.protocol: .*{message}"):
        resolve(cell_config(tmp_path, f"eval.protocol={path}"), task=wall)


def test_truncated_protocol_file_is_one_clear_error(tmp_path, wall):
    path = tmp_path / "p.json"
    make_protocol(wall, episodes=2, seed=0, horizon=6).save(path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(ConfigError, match="not a readable protocol"):
        resolve(cell_config(tmp_path, f"eval.protocol={path}"), task=wall)


def test_data_policy_auto_and_scripted(tmp_path, wall):
    assert resolve(cell_config(tmp_path), task=wall).data_policy == "colored"  # auto -> the wall's default
    assert resolve(cell_config(tmp_path, "data.policy=uniform"), task=wall).data_policy == "uniform"
    with pytest.raises(ConfigError, match="data.policy=scripted: env 'wall' has no scripted"):
        resolve(cell_config(tmp_path, "data.policy=scripted"), task=wall).data_policy


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(250, 500)
    assert high - low < 0.09  # 500 trials pin it down to about +-4 points


def test_summary_has_interval_and_median_over_successes():
    import pandas as pd

    rows = pd.DataFrame({"env": "e", "horizon": 5, "planner": "p", "success": [True, True, False, False],
                         "time_to_success": [1.0, 3.0, np.nan, np.nan], "final_distance": [0.0, 0.1, 1.0, 2.0],
                         "plan_time": [1.0] * 4, "plan_calls": [2] * 4, "plan_time_per_step": [0.5] * 4,
                         "model_divergence": [0.1, 0.2, 0.3, 0.4]})
    row = summarize(rows).iloc[0]
    assert row["success_%"] == 50 and row["success_ci95_%"] == "15-85" and row["median_time_to_success_s"] == 2.0
    assert row["mean_model_divergence"] == pytest.approx(0.25) and row["plan_time_per_step_s"] == 0.5


class LinearTask(Task):
    """A task whose simulator is exactly s' = A s + B a (numpy), so a model can be perfect."""

    name = "linear"
    goal_dims = (0, 1)
    success_threshold = 1e-9  # never: the episodes run their whole budget

    def __init__(self, model: LinearWorldModel) -> None:
        self.A, self.B = model.A.numpy().astype(np.float64), model.B.numpy().astype(np.float64)
        self.state_dim, self.env_action_dim = self.B.shape
        self.state = np.zeros(self.state_dim)

    def reset(self, state):
        self.state = np.asarray(state, dtype=np.float64).copy()
        return self.state.copy()

    def env_step(self, action):
        self.state = self.A @ self.state + self.B @ np.clip(action, -1, 1)
        return self.state.copy()

    def get_state(self):
        return self.state.copy()

    def sample_state(self, rng):
        return rng.uniform(-1, 1, self.state_dim)

    def sample_start_goal(self, rng):
        return self.sample_state(rng), self.sample_state(rng)

    def render(self, size=64):
        return np.zeros((size, size, 3), np.uint8)


def test_divergence_is_zero_for_an_exact_model_and_grows_with_model_error():
    exact = LinearWorldModel.double_integrator()
    tasks = [LinearTask(exact) for _ in range(2)]
    starts = np.array([[0.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.0, 0.0]])
    goals = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    planner = build("gd", exact, horizon=6, iterations=5)
    outcomes = run_mpc(tasks, planner, starts, goals, max_steps=6, replan_every=3)
    assert all(o.steps == 6 and o.divergence < 1e-6 for o in outcomes)
    wrong = LinearWorldModel(exact.A, 1.5 * exact.B)  # actions 50 % too strong in the model
    outcomes = run_mpc(tasks, build("gd", wrong, horizon=6, iterations=5), starts, goals, max_steps=6,
                       replan_every=3)
    assert all(o.divergence > 1e-3 and o.max_divergence >= o.divergence for o in outcomes)
