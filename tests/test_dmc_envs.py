"""The DeepMind Control Suite tasks (reacher, point_mass) on real MuJoCo: config, reset/step,
clipping, rendering, success, start/goal sampling, knob errors, data collection."""

from __future__ import annotations

import re

import hydra
import numpy as np
import pytest

from conftest import compose_config
from grasp.envs.dmc import PointMassTask, ReacherTask
from grasp.train.dataset import collect

ENVS = ["reacher", "point_mass"]


@pytest.fixture(scope="module", params=ENVS)
def task(request):
    """Each task built as a run builds it: conf/env/<name>.yaml through Hydra."""
    t = hydra.utils.instantiate(compose_config([f"env={request.param}"]).env)
    yield t
    t.close()


def rest(task, x=0.05):
    """A resting state away from the limits (reacher: the fingertip entries are recomputed)."""
    if task.name == "reacher":
        return np.array([0.3, 0.5, 0.0, 0.0, 0.0, 0.0])
    return np.array([x, -0.05, 0.0, 0.0])


def run(task, start, action, steps):
    task.reset(start)
    for _ in range(steps):
        state = task.step(np.asarray(action, dtype=float))
    return state


def test_hydra_builds_the_suite_task(task):
    expected = {"reacher": (ReacherTask, 6, (4, 5)), "point_mass": (PointMassTask, 4, (0, 1))}[task.name]
    assert type(task) is expected[0] and task.state_dim == expected[1] and task.goal_dims == expected[2]
    assert task.action_dim == 2
    np.testing.assert_array_equal(task.action_low, [-1, -1])
    np.testing.assert_array_equal(task.action_high, [1, 1])


def test_reset_round_trips_and_steps_are_deterministic(task):
    start = task.sample_state(np.random.default_rng(3))
    start[2] = 0.4  # a moving start too (entry 2 is the first velocity in both tasks)
    start = task.reset(start)
    np.testing.assert_array_equal(task.reset(start), start)
    actions = np.random.default_rng(0).uniform(-1, 1, (10, 2))
    runs = []
    for _ in range(2):
        task.reset(start)
        runs.append(np.stack([task.step(a) for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0][-1] - start).max() > 1e-3


def test_reacher_reset_recomputes_the_fingertip():
    task = ReacherTask()
    state = task.reset(np.array([0.0, 0.0, 0.0, 0.0, 9.0, 9.0]))  # fingertip entries are ignored
    np.testing.assert_allclose(state[4:], [0.24, 0.0], atol=1e-12)  # arm stretched along +x
    state = task.reset(np.array([np.pi / 2, -np.pi / 2, 0.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(state[4:], [0.12, 0.12], atol=1e-12)
    # the analytic kinematics used for sampling agree with the simulator, also after steps
    rng = np.random.default_rng(0)
    task.reset(task.sample_state(rng))
    for action in rng.uniform(-1, 1, (20, 2)):
        state = task.step(action)
        np.testing.assert_allclose(task.fingertip(state[:2]), state[4:], atol=1e-12)
    task.close()


@pytest.mark.parametrize("axis, sign", [(0, 1), (0, -1), (1, 1), (1, -1)])
def test_step_moves_in_the_direction_of_the_action(task, axis, sign):
    """point_mass: force on x / y moves x / y. reacher: shoulder / wrist torque turns that joint."""
    start = task.reset(rest(task))
    action = np.zeros(2)
    action[axis] = sign
    after = run(task, start, action, 3)
    assert sign * (after[axis] - start[axis]) > 1e-3
    assert sign * after[2 + axis] > 0  # and the matching velocity (entries 2, 3 in both tasks)


def test_one_model_step_moves_a_sensible_amount(task):
    """At full action, one model step moves the goal point ~0.02 m (point_mass) / ~0.05 m (reacher)."""
    states = [task.reset(rest(task, x=-0.25))]
    for _ in range(12):
        states.append(task.step(np.array([1.0, 0.0])))
    goal_point = np.stack(states)[:, list(task.goal_dims)]
    speed = np.linalg.norm(np.diff(goal_point, axis=0), axis=1)
    low, high = {"point_mass": (0.015, 0.021), "reacher": (0.03, 0.06)}[task.name]
    assert low < speed[-3:].mean() < high
    assert speed[0] < speed[-1] / 2  # starting from rest takes a few steps


def test_actions_are_clipped_to_bounds(task):
    start = task.reset(rest(task))
    big = run(task, start, (5.0, -7.0), 4)
    bound = run(task, start, (1.0, -1.0), 4)
    np.testing.assert_array_equal(big, bound)


def test_render_headless_and_goal_marker(task):
    rng = np.random.default_rng(1)
    start, goal = task.sample_start_goal(rng)
    task.reset(start)
    task.set_goal(start)
    frame = task.render(64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
    task.set_goal(goal)
    moved = task.render(64)
    assert np.abs(moved.astype(int) - frame).sum() > 0, "set_goal did not change the frame"
    task.reset(goal)
    assert np.abs(task.render(64).astype(int) - moved).sum() > 0, "the agent does not show in frames"


def test_success_and_distance(task):
    goal = task.sample_state(np.random.default_rng(5))
    gx, gy = task.goal_dims
    assert task.success(goal, goal)
    near, far = goal.copy(), goal.copy()
    near[gx] += 0.5 * task.success_threshold
    far[gy] += 5 * task.success_threshold
    moving = goal.copy()
    moving[[i for i in range(task.state_dim) if i not in task.goal_dims]] += 0.3  # only goal_dims count
    states = np.stack([near, far, moving])
    np.testing.assert_allclose(task.distance(states, goal),
                               [0.5 * task.success_threshold, 5 * task.success_threshold, 0.0], atol=1e-12)
    np.testing.assert_array_equal(task.success(states, goal), [True, False, True])


def test_reacher_success_on_reached_fingertip_not_on_joint_angles():
    """Two arm poses with the same fingertip (elbow left / right) both reach the goal."""
    task = ReacherTask()
    goal = task.reset(np.array([0.4, 1.0, 0.0, 0.0, 0.0, 0.0]))
    # mirror pose: the shoulder turns by the wrist angle, the wrist bends the other way
    mirror = task.reset(np.array([1.4, -1.0, 0.0, 0.0, 0.0, 0.0]))
    assert task.success(mirror, goal) and task.distance(mirror, goal) < 1e-12
    assert not task.success(task.reset(np.array([0.4 + np.pi, 1.0, 0, 0, 0, 0])), goal)
    task.close()


def test_start_goal_pairs(task):
    pairs = [task.sample_start_goal(np.random.default_rng(s)) for s in range(100)]
    again = task.sample_start_goal(np.random.default_rng(7))
    np.testing.assert_array_equal(again[0], pairs[7][0])
    np.testing.assert_array_equal(again[1], pairs[7][1])
    assert not np.array_equal(pairs[0][1], pairs[1][1])
    for start, goal in pairs:
        assert task.distance(start, goal) >= task.min_goal_distance
    for start, goal in pairs[:20]:
        for state in (start, goal):
            np.testing.assert_allclose(task.reset(state), state, atol=1e-12)  # valid: held unchanged
            np.testing.assert_allclose(task.step(np.zeros(2)), state, atol=1e-9)  # at rest, nothing pushes it


def test_pairs_respect_a_larger_min_goal_distance():
    task = PointMassTask(min_goal_distance=0.4)
    for s in range(30):
        start, goal = task.sample_start_goal(np.random.default_rng(s))
        assert task.distance(start, goal) >= 0.4
        assert np.all(np.abs(np.stack([start, goal])[:, :2]) <= 0.29 - task.margin)


@pytest.mark.parametrize("cls, knob, value", [
    (ReacherTask, "frame_skip", 0), (ReacherTask, "success_threshold", -0.1), (ReacherTask, "min_goal_distance", 1.0),
    (PointMassTask, "frame_skip", 2.5), (PointMassTask, "margin", 0.3), (PointMassTask, "min_goal_distance", -1),
])
def test_bad_knob_names_it(cls, knob, value):
    with pytest.raises(ValueError, match=re.escape(f"env.{knob}={value}")):
        cls(**{knob: value})


def test_data_collection_runs_on_it(task):
    data = collect(task, episodes=3, episode_len=5, policy="colored", correlation=0.8, seed=0, progress=False)
    assert data.states.shape == (3, 6, task.state_dim) and data.actions.shape == (3, 5, 2)
    assert np.isfinite(data.states).all() and data.meta["env"] == task.name
    assert np.abs(np.diff(data.states, axis=1)).max() > 0
