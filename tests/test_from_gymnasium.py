"""The gymnasium adapter (grasp.envs.from_gymnasium) and the original Push-T through it: the adapter's
states are the env's own, a set state replays exactly, actions map onto the env's Box, the success
rules are DINO-WM's, and bad configs fail before anything runs. tests/test_tasks_e2e.py plans both
adapter tasks (gym_reacher, gym_pusht) through the runner."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

from grasp.envs.from_gymnasium import AttributeState, GymnasiumTask, MujocoState
from grasp.envs.gymnasium_env import make_task


@pytest.fixture
def reacher():
    task = make_task("gym_reacher")
    yield task
    task.close()


@pytest.fixture
def pusht():
    task = make_task("gym_pusht")
    yield task
    task.close()


def test_the_adapter_steps_the_env_as_gymnasium_itself_does(reacher):
    own = gymnasium.make("Reacher-v5").unwrapped
    own.reset(seed=3)
    start = reacher.sample_state(np.random.default_rng(1))
    reacher.reset(start)
    own.set_state(start[:4], start[4:])
    actions = np.random.default_rng(2).uniform(-1, 1, (20, 2))
    for action in actions:
        state = reacher.env_step(action)
        own.step(action.astype(np.float32))
        np.testing.assert_array_equal(state, np.concatenate([own.data.qpos, own.data.qvel]))
    assert np.abs(state[:2] - start[:2]).max() > 0.1  # the arm moved
    own.close()


@pytest.mark.parametrize("name", ["gym_reacher", "gym_pusht"])
def test_a_state_read_mid_motion_replays_exactly(name):
    task = make_task(name)
    rng = np.random.default_rng(0)
    task.reset(task.sample_state(rng))
    for _ in range(5):
        task.env_step(task.exploration_action(rng, task.get_state()) if name == "gym_pusht" else rng.uniform(-1, 1, 2))
    middle = task.get_state()
    actions = rng.uniform(-1, 1, (8, 2))
    first = [task.env_step(a) for a in actions]
    task.reset(middle)
    np.testing.assert_array_equal(task.get_state(), middle)
    np.testing.assert_array_equal([task.env_step(a) for a in actions], first)
    assert not np.array_equal(first[-1], middle)
    task.close()


def test_actions_in_the_unit_box_are_the_envs_box(pusht):
    """gym-pusht's action is a target in 0..512 px: -1 -> 0, 0 -> 256, 1 -> 512; the agent goes there."""
    np.testing.assert_allclose(pusht.to_env_action(np.array([-1.0, 0.0])), [0.0, 256.0])
    np.testing.assert_allclose(pusht.to_env_action(np.array([1.0, 7.0])), [512.0, 512.0])  # clipped
    state = np.zeros(11)
    state[[0, 1, 2, 3, 4]] = [60.0, 60.0, 400.0, 400.0, 1.0]  # agent in one corner, block far off
    pusht.reset(state)
    for _ in range(15):
        state = pusht.env_step(np.array([-0.5, 0.0]))  # target (128, 256)
    np.testing.assert_allclose(state[:2], [128.0, 256.0], atol=3.0)


def test_the_original_pusht_success_rule_is_dinowms(pusht):
    goal = np.zeros(11)
    goal[2:6] = [256.0, 256.0, 1.0, 0.0]

    def at(dx: float, angle: float) -> np.ndarray:
        state = goal.copy()
        state[2] += dx
        state[4:6] = [math.cos(angle), math.sin(angle)]
        return state

    assert pusht.success(at(19.0, 0.3), goal) and pusht.success(at(0.0, 2 * math.pi - 0.3), goal)
    assert not pusht.success(at(21.0, 0.0), goal) and not pusht.success(at(0.0, 0.36), goal)
    assert pusht.distance(at(10.0, 0.5), goal) == pytest.approx(10.0 + 51.2 * 0.5)
    assert pusht.distance(at(19.0, 0.3), goal) < pusht.success_threshold


def test_the_original_pusht_data_policy_moves_the_block(pusht):
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(10):
        start = pusht.reset(pusht.sample_state(rng))
        for _ in range(50):
            state = pusht.env_step(pusht.exploration_action(rng, pusht.get_state()))
        moved += pusht.distance(state, start) > 20.0
    assert moved >= 6


def test_classic_control_state_attributes_work_too():
    task = GymnasiumTask("Pendulum-v1", AttributeState("state"), goal_dims=[0], success_threshold=0.1)
    assert task.state_dim == 2 and task.env_action_dim == 1
    task.reset(np.array([math.pi, 0.0]))
    np.testing.assert_allclose(task.env_step(np.zeros(1)), [math.pi, 0.0], atol=1e-6)  # balanced on top
    np.testing.assert_allclose(task.to_env_action(np.array([1.0])), [2.0])  # Pendulum's torque bound
    task.close()


@pytest.mark.parametrize("kwargs, match", [
    ({"id": "NoSuchEnv-v0"}, "env.id='NoSuchEnv-v0'"),
    ({"goal_dims": [0, 8]}, "env.goal_dims"),
    ({"state": object()}, "env.state="),
    ({"success_threshold": 0.0}, "env.success_threshold"),
    ({"state": MujocoState(attr="model")}, "not a gymnasium MujocoEnv"),
])
def test_bad_adapter_configs_name_their_key(kwargs, match):
    args = {"id": "Reacher-v5", "state": MujocoState(), "goal_dims": [0, 1], "success_threshold": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        GymnasiumTask(**args)
