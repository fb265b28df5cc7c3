"""The MPC loop acts in the real simulator, replans with warm starts and stops on success."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from grasp.planners import build
from grasp.planners.base import WarmStart, shift_plan
from grasp.eval.mpc import run_mpc
from grasp.train.dataset import collect
from grasp.train.trainer import build_world_model, train_world_model


@pytest.fixture(scope="module")
def wall_model():
    cfg = compose_config(["world_model.hidden_dim=64", "world_model.depth=2"])
    task = hydra.utils.instantiate(cfg.env)
    data = collect(task, episodes=150, episode_len=30, policy="colored", correlation=0.8, seed=1, progress=False)
    model = build_world_model(cfg.world_model, task.state_dim, task.action_dim)
    train_cfg = OmegaConf.merge(cfg.train, {"steps": 1500, "eval_every": 1500, "batch_size": 256, "rollout_len": 5})
    train_world_model(model, data, train_cfg, 0.1, progress=False)
    return cfg, model




def same_room_problems():
    starts = np.array([[-0.7, -0.6, 0.0, 0.0], [0.3, 0.5, 0.0, 0.0]])
    goals = np.array([[-0.3, -0.2, 0.0, 0.0], [0.7, 0.1, 0.0, 0.0]])
    return starts, goals


def test_mpc_reaches_goal_and_stops_on_success(wall_model):
    cfg, model = wall_model
    tasks = [hydra.utils.instantiate(cfg.env) for _ in range(2)]
    starts, goals = same_room_problems()
    planner = build("cem", model, horizon=10)
    gen = torch.Generator().manual_seed(0)
    outcomes = run_mpc(tasks, planner, starts, goals, max_steps=40, replan_every=1, generator=gen)
    for task, start, goal, out in zip(tasks, starts, goals, outcomes):
        assert out.success, f"CEM-MPC did not reach {goal[:2]} from {start[:2]}: final distance {out.final_distance}"
        assert out.steps < 40 and out.plan_calls == out.steps  # replanned every step, stopped early
        assert out.final_distance < task.success_threshold
        assert out.time_to_success > 0 and out.plan_time > 0
        # Replaying the executed actions in a fresh simulator: success first holds at the last step.
        replay = hydra.utils.instantiate(cfg.env)
        state = replay.reset(start)
        reached = []
        for action in out.actions:
            state = replay.step(action)
            reached.append(bool(replay.success(state, goal)))
        assert reached[-1] and not any(reached[:-1])


def test_open_loop_executes_the_whole_plan_once(wall_model):
    cfg, model = wall_model
    tasks = [hydra.utils.instantiate(cfg.env) for _ in range(2)]
    starts, goals = same_room_problems()
    planner = build("gd", model, horizon=12, iterations=20)
    outcomes = run_mpc(tasks, planner, starts, goals, max_steps=100, open_loop=True)
    for task, out, start in zip(tasks, outcomes, starts):
        assert out.plan_calls == 1 and out.steps == 12 and len(out.actions) == 12
        assert not np.allclose(task.get_state()[:2], start[:2])  # the sim really moved


def test_mpc_respects_step_budget_and_replan_interval(wall_model):
    cfg, model = wall_model
    tasks = [hydra.utils.instantiate(cfg.env)]
    starts = np.array([[-0.7, 0.7, 0.0, 0.0]])
    goals = np.array([[0.7, -0.7, 0.0, 0.0]])  # far, in the other room: not reachable in 9 steps
    planner = build("grasp", model, horizon=10, iterations=10, sync_every=5)
    (out,) = run_mpc(tasks, planner, starts, goals, max_steps=9, replan_every=4)
    assert not out.success and out.steps == 9 and out.plan_calls == 3


def test_shift_plan_drops_executed_actions():
    plan = torch.arange(10.0).reshape(1, 5, 2)
    shifted = shift_plan(plan, 2)
    assert shifted.shape == plan.shape
    torch.testing.assert_close(shifted[0, :3], plan[0, 2:])
    assert torch.all(shifted[0, 3:] == 0)


def test_warm_start_shifts_states_and_rows_update_in_place():
    actions = torch.arange(12.0).reshape(2, 3, 2)
    states = torch.arange(8.0).reshape(2, 2, 2)  # s_1, s_2 of a 3-step plan
    shifted = WarmStart(actions, states).shifted(1)
    torch.testing.assert_close(shifted.actions[:, :2], actions[:, 1:])
    assert torch.all(shifted.actions[:, 2] == 0)
    torch.testing.assert_close(shifted.states, torch.stack([states[:, 1], states[:, 1]], dim=1))  # last repeated
    everyone = WarmStart(torch.zeros(3, 3, 2), torch.zeros(3, 2, 2))
    everyone[np.array([0, 2])] = shifted
    torch.testing.assert_close(everyone[np.array([0, 2])].actions, shifted.actions)
    assert torch.all(everyone.actions[1] == 0) and torch.all(everyone.states[1] == 0)


def test_mpc_hands_grasp_its_previous_virtual_states(wall_model):
    _, model = wall_model
    planner = build("grasp", model, horizon=8, iterations=10, sync_every=5, init="warm")
    seen = []
    original = planner._optimize

    def spy(state0, goal, actions, states, generator):
        seen.append(states)
        return original(state0, goal, actions, states, generator)

    planner._optimize = spy
    tasks = [hydra.utils.instantiate(wall_model[0].env)]
    starts = np.array([[-0.7, 0.7, 0.0, 0.0]])
    goals = np.array([[0.7, -0.7, 0.0, 0.0]])
    run_mpc(tasks, planner, starts, goals, max_steps=4, replan_every=2)
    assert seen[0] is None and seen[1] is not None and seen[1].shape == (1, 7, 4)
