"""What limits planning, measured: success at any env step beside success at the end, success
judged in the model beside success in the simulator, the model's oracle success on real actions,
and a latent model's linear readout of the task state."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from conftest import planner_config
from grasp.envs.base import Task
from grasp.eval.oracle import oracle_key, oracle_success
from grasp.eval.protocol import make_protocol
from grasp.models.analytic import LinearWorldModel
from grasp.models.readout import apply_linear_readout, fit_linear_readout
from grasp.eval.mpc import run_mpc
from grasp.train.dataset import collect


class IntegratorTask(Task):
    """A point on a line and a free second coordinate, moved by velocity commands: each env step
    s' = s + a (numpy, exact), `action_chunk` env steps per model step."""

    name = "integrator"
    state_dim = env_action_dim = 2
    goal_dims = (0, 1)
    success_threshold = 0.1

    def __init__(self, action_chunk: int = 1) -> None:
        self.set_action_chunk(action_chunk)
        self.state = np.zeros(2)

    def reset(self, state):
        self.state = np.asarray(state, dtype=np.float64).copy()
        return self.state.copy()

    def env_step(self, action):
        self.state = self.state + np.clip(action, -1, 1)
        return self.state.copy()

    def get_state(self):
        return self.state.copy()

    def sample_state(self, rng):
        return rng.uniform(-1, 1, 2)

    def sample_start_goal(self, rng):
        return self.sample_state(rng), self.sample_state(rng)

    def render(self, size=64, show_goal=True):
        return np.zeros((size, size, 3), np.uint8)


def gd(model, horizon: int):
    cfg = planner_config("gd")
    cfg.horizon, cfg.iterations, cfg.lr = horizon, 200, 0.1
    return hydra.utils.instantiate(cfg, world_model=model)


def test_a_plan_that_passes_through_the_goal_and_leaves_it_succeeds_at_some_step_only():
    """The model believes a stacked action moves the point by half of what it does: the planner
    asks for two full sub-actions to reach x = 1, the simulator reaches the goal after the first and
    leaves it with the second. In the model the plan succeeds, as the task's rule on its prediction."""
    task = IntegratorTask(action_chunk=2)
    half = LinearWorldModel(torch.eye(2), 0.5 * torch.cat([torch.eye(2), torch.eye(2)], dim=1))  # (2, 4)
    planner = gd(half, horizon=1)
    starts, goals = np.zeros((1, 2)), np.array([[1.0, 0.0]])
    [outcome] = run_mpc([task], planner, starts, goals, max_steps=1, open_loop=True)
    np.testing.assert_allclose(outcome.actions[0], [1.0, 0.0, 1.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(task.get_state(), [2.0, 0.0], atol=1e-3)
    assert outcome.success_any_step and not outcome.success
    assert np.isfinite(outcome.time_to_success_any_step) and np.isnan(outcome.time_to_success)
    predicted = half.rollout(torch.zeros(1, 2), torch.as_tensor(np.stack(outcome.actions)[None]))[0, -1].numpy()
    assert outcome.model_success == float(task.success(predicted, goals[0])) == 1.0
    assert outcome.model_final_distance == pytest.approx(float(task.distance(predicted, goals[0])), abs=1e-6)
    # an exact model plans a chunk that ends on the goal: success everywhere
    exact = LinearWorldModel(torch.eye(2), torch.cat([torch.eye(2), torch.eye(2)], dim=1))
    [outcome] = run_mpc([IntegratorTask(action_chunk=2)], gd(exact, horizon=1), starts, goals, max_steps=1,
                        open_loop=True)
    assert outcome.success and outcome.success_any_step and outcome.model_success == 1.0


def test_model_success_in_mpc_is_the_last_plans_prediction():
    """Closed loop with a model that is wrong in the second coordinate: the simulator misses, the
    model's prediction of the last plan (from its start) is judged by the task's rule."""
    task = IntegratorTask()
    skewed = LinearWorldModel(torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # y never moves in the model
    starts, goals = np.zeros((1, 2)), np.array([[0.5, 0.5]])
    [outcome] = run_mpc([task], gd(skewed, horizon=2), starts, goals, max_steps=4, replan_every=2)
    assert not outcome.success
    assert outcome.model_success == 0.0, "the model cannot move y, so even its prediction misses"
    goals = np.array([[0.5, 0.0]])
    [outcome] = run_mpc([IntegratorTask()], gd(skewed, horizon=2), starts, goals, max_steps=4, replan_every=2)
    assert outcome.success and outcome.model_success == 1.0


def _linear_data(episodes: int = 40):
    return collect(IntegratorTask(), episodes=episodes, episode_len=8, policy="colored", correlation=0.5, seed=0,
                   progress=False)


def test_oracle_success_is_one_for_the_exact_model_and_drops_for_a_perturbed_one():
    task, data = IntegratorTask(), _linear_data()
    _, val = data.split(0.5)
    exact = LinearWorldModel(torch.eye(2), torch.eye(2))
    metrics = oracle_success(exact, val, task.success, [2, 8, 20])
    assert metrics[oracle_key(2)] == metrics[oracle_key(8)] == 1.0
    assert np.isnan(metrics[oracle_key(20)]), "longer than the held-out episodes"
    perturbed = oracle_success(LinearWorldModel(torch.eye(2), 1.05 * torch.eye(2)), val, task.success, [2, 8])
    assert perturbed[oracle_key(8)] < perturbed[oracle_key(2)] and perturbed[oracle_key(8)] < 0.9, perturbed


def test_the_readout_recovers_a_known_linear_map():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(500, 6, generator=generator)
    weight, bias = torch.randn(6, 3, generator=generator), torch.randn(3, generator=generator)
    fitted = fit_linear_readout(latents, latents @ weight + bias)
    torch.testing.assert_close(fitted[:-1], weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fitted[-1], bias, atol=1e-4, rtol=1e-4)
    held_out = torch.randn(50, 6, generator=generator)
    torch.testing.assert_close(apply_linear_readout(fitted, held_out), held_out @ weight + bias, atol=1e-4, rtol=1e-4)


def test_protocols_redraw_starts_that_meet_their_goal_and_say_how_many():
    class NearTask(IntegratorTask):
        """Half of the sampled pairs start on their goal."""

        def sample_start_goal(self, rng):
            start = self.sample_state(rng)
            return start, (start if rng.random() < 0.5 else self.sample_state(rng))

    protocol = make_protocol(NearTask(), episodes=20, seed=0, horizon=3, goal_source="random")
    assert not NearTask().success(protocol.starts, protocol.goals).any()
    assert protocol.redrawn > 0
    assert make_protocol(IntegratorTask(), episodes=20, seed=0, horizon=3, goal_source="random").redrawn == 0


def test_the_protocol_file_keeps_the_redraw_count(tmp_path):
    from grasp.eval.protocol import Protocol

    class SlowTask(IntegratorTask):
        """Rollout goals of a policy that barely moves the point often meet their start."""

        def env_step(self, action):
            return super().env_step(0.15 * np.asarray(action))

    protocol = make_protocol(SlowTask(), episodes=10, seed=0, horizon=1, goal_source="rollout", policy="uniform")
    assert protocol.redrawn > 0 and not SlowTask().success(protocol.starts, protocol.goals).any()
    protocol.save(tmp_path / "p.json")
    assert Protocol.load(tmp_path / "p.json").redrawn == protocol.redrawn
    assert Protocol.load(tmp_path / "p.json").head(3).redrawn == protocol.redrawn
