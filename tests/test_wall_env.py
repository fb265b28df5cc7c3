"""The Wall task on real MuJoCo: motion, walls, the door, rendering, success, start/goal pairs."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
from omegaconf import OmegaConf

from grasp.config import CONF_DIR


def make(**overrides):
    return hydra.utils.instantiate(OmegaConf.merge(OmegaConf.load(CONF_DIR / "env" / "wall.yaml"), overrides))


@pytest.fixture
def task():
    t = make()
    yield t
    t.close()


def push(task, start, action, steps):
    state = task.reset(np.array([*start, 0.0, 0.0]))
    for _ in range(steps):
        state = task.step(np.array(action, dtype=float))
    return state


@pytest.mark.parametrize("action, axis, sign", [((1, 0), 0, 1), ((-1, 0), 0, -1), ((0, 1), 1, 1), ((0, -1), 1, -1)])
def test_actions_move_the_agent_at_terminal_speed(task, action, axis, sign):
    state = push(task, (-0.5, -0.3), action, 3)
    before = state[axis]
    after = task.step(np.array(action, dtype=float))[axis]
    # terminal speed gear/damping = 1 unit/s over 0.1 s per model step, reached to ~95% after 3 steps
    assert 0.085 < sign * (after - before) < 0.105
    assert abs(state[1 - axis] - (-0.5, -0.3)[1 - axis]) < 1e-9


def test_actions_are_clipped_to_bounds(task):
    big = push(task, (-0.5, -0.3), (5.0, -7.0), 4)
    bound = push(task, (-0.5, -0.3), (1.0, -1.0), 4)
    np.testing.assert_array_equal(big, bound)


def test_wall_blocks_and_door_lets_through(task):
    blocked = push(task, (-0.5, 0.7), (1, 0), 20)
    assert blocked[0] < 0, "the agent went through the wall"
    through = push(task, (-0.5, 0.0), (1, 0), 20)
    assert through[0] > 0.2, "the agent did not pass the door"
    moved = make(door_center=0.6)
    assert push(moved, (-0.5, 0.0), (1, 0), 20)[0] < 0
    assert push(moved, (-0.5, 0.6), (1, 0), 20)[0] > 0.2


def test_reset_round_trips_and_steps_are_deterministic(task):
    state = np.array([0.3, -0.4, 0.2, -0.1])
    np.testing.assert_allclose(task.reset(state), state)
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 2))
    runs = []
    for _ in range(2):
        task.reset(state)
        runs.append(np.stack([task.step(a) for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_render_headless(task):
    task.reset(np.array([-0.5, 0.5, 0, 0]))
    frame = task.render(64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
    task.reset(np.array([0.5, -0.5, 0, 0]))
    assert np.abs(task.render(64).astype(int) - frame).sum() > 0


def test_success_and_distance(task):
    goal = np.array([0.5, 0.5, 0.0, 0.0])
    assert task.success(np.array([0.5, 0.5, 0.7, -0.3]), goal)  # velocity does not matter
    assert not task.success(np.array([0.8, 0.5, 0.0, 0.0]), goal)
    states = np.array([[0.5, 0.55, 0, 0], [0.5, 0.8, 0, 0]])
    np.testing.assert_allclose(task.distance(states, goal), [0.05, 0.3], atol=1e-12)
    np.testing.assert_array_equal(task.success(states, goal), [True, False])


def test_start_goal_pairs(task):
    pairs = [task.sample_start_goal(np.random.default_rng(s)) for s in range(200)]
    again = task.sample_start_goal(np.random.default_rng(7))
    np.testing.assert_array_equal(again[0], pairs[7][0])
    other_room = np.array([(s[0] > 0) != (g[0] > 0) for s, g in pairs])
    assert 0.65 < other_room.mean() < 0.85  # cross_prob = 0.75
    blocked = np.array([task.crosses_wall(s, g) for s, g in pairs])
    assert blocked[other_room].mean() > 0.6 and not blocked[~other_room].any()
    for start, goal in pairs[:50]:
        assert np.linalg.norm(goal[:2] - start[:2]) >= task.min_goal_distance
        for state in (start, goal):
            np.testing.assert_allclose(task.reset(state), state)  # free space: nothing pushes it
            np.testing.assert_allclose(task.step(np.zeros(2)), state, atol=1e-9)


def test_bad_door_is_refused():
    from grasp.envs.wall import WallTask

    with pytest.raises(ValueError, match="door_width"):
        WallTask(door_width=0.05)
