"""Push-T on real MuJoCo: the pusher, contacts with the T, walls, the goal test, sampling,
rendering, the scripted pushing policy and data collection with it."""

from __future__ import annotations

import math

import hydra
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from grasp.config import CONF_DIR
from grasp.envs.pusht import BLOCK_GYRATION, OUTLINE, PX, PushTTask, block_distance, block_pose, make_state, wrap_angle


def make(**overrides) -> PushTTask:
    return hydra.utils.instantiate(OmegaConf.merge(OmegaConf.load(CONF_DIR / "env" / "pusht.yaml"), overrides))


@pytest.fixture(scope="module")
def task():
    t = make()
    yield t
    t.close()


def state(pusher=(0.7, 0.7), block=(0.0, 0.0, 0.0), velocity=(0.0,) * 5) -> np.ndarray:
    return make_state(pusher, block, velocity)


def run(task, start, action, steps):
    s = task.reset(start)
    for _ in range(steps):
        s = task.step(np.array(action, dtype=float))
    return s


def block_motion(before, after) -> float:
    """Translation of the centroid plus the rotation's RMS displacement of the T's points."""
    before, after = block_pose(before), block_pose(after)
    return float(np.linalg.norm(after[:2] - before[:2]) + BLOCK_GYRATION * abs(wrap_angle(after[2] - before[2])))


def outline_world(pose) -> np.ndarray:
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return OUTLINE @ np.array([[c, s], [-s, c]]) + pose[:2]


def test_hydra_composes_the_task():
    t = hydra.utils.instantiate(compose_config(["env=pusht"]).env)
    try:
        assert isinstance(t, PushTTask) and t.name == "pusht"
        assert (t.state_dim, t.action_dim, t.goal_dims, t.frame_skip) == (11, 2, (2, 3, 4, 5), 20)
        assert t.success_pos == pytest.approx(20 / PX) and t.success_angle == pytest.approx(np.pi / 9)
        assert t.has_scripted_policy and t.default_data_policy == "scripted"
        assert t.step_length == pytest.approx(0.1)
    finally:
        t.close()


def test_reset_round_trips_and_the_angle_is_a_point_on_the_circle(task):
    s = state((0.3, -0.4), (0.1, 0.2, 0.5), (0.2, -0.1, 0.05, 0.0, 0.3))
    np.testing.assert_allclose(task.reset(s), s, atol=1e-12)
    np.testing.assert_allclose(task.reset(s.astype(np.float32)), s, atol=1e-6)
    np.testing.assert_allclose(task.reset(state((0.3, -0.4), (0.1, 0.2, 0.5 + 4 * np.pi), s[6:])), s, atol=1e-12)
    np.testing.assert_allclose(block_pose(s), [0.1, 0.2, 0.5], atol=1e-12)
    assert block_pose(state(block=(0, 0, np.pi)))[2] == pytest.approx(np.pi)
    # a (cos, sin) pair off the unit circle is read as its direction
    scaled = s.copy()
    scaled[4:6] *= 3.0
    np.testing.assert_allclose(task.reset(scaled), s, atol=1e-12)
    # the block turning through +-pi: the state moves continuously (no 2 pi jump)
    spinning = run(task, state(block=(0.0, 0.0, np.pi - 0.05), velocity=(0, 0, 0, 0, 6.0)), (0, 0), 0)
    steps = np.stack([spinning] + [task.step(np.zeros(2)) for _ in range(3)])
    assert block_pose(steps[-1])[2] < 0, "the block should have turned past pi"
    assert np.abs(np.diff(steps[:, 4:6], axis=0)).max() < 0.3
    np.testing.assert_allclose(task.reset(task.get_state()), task.get_state())


@pytest.mark.parametrize("action", [(1, 0), (-1, 0), (0, 1), (0, -1), (0.6, -0.8)])
def test_the_pusher_moves_in_the_action_direction(task, action):
    start = state(pusher=(0.0, -0.6), block=(0.0, 0.4, 0.0))
    before = run(task, start, action, 2)
    after = task.step(np.array(action, dtype=float))
    # terminal speed pusher_speed = 1 unit/s: 0.1 units per model step at full action
    np.testing.assert_allclose(after[:2] - before[:2], 0.1 * np.array(action), atol=2e-3)
    np.testing.assert_allclose(after[6:8], np.array(action), atol=2e-2)
    np.testing.assert_array_equal(after[2:6], start[2:6])  # the block is not touched


def test_actions_are_clipped(task):
    start = state(pusher=(0.0, -0.6), block=(0.0, 0.4, 0.0))
    np.testing.assert_array_equal(run(task, start, (5.0, -7.0), 3), run(task, start, (1.0, -1.0), 3))


def test_steps_are_deterministic(task):
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 2))
    runs = []
    for _ in range(2):
        task.reset(state(pusher=(-0.3, 0.1)))
        runs.append(np.stack([task.step(a) for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_pushing_moves_the_block_and_it_stops_when_released(task):
    # the T lies with its stem pointing to -x; the pusher, left of the stem's end, pushes to +x
    # through the centroid
    start = state(pusher=(-0.45, 0.0), block=(0.0, 0.0, -np.pi / 2))
    pushed = run(task, start, (1, 0), 8)
    assert pushed[2] > 0.4, "the block was not pushed"
    assert abs(pushed[3]) < 0.01 and abs(block_pose(pushed)[2] + np.pi / 2) < 0.05, "a centred push should translate the T"
    assert pushed[0] < pushed[2] - 0.3, "the pusher stays behind the block"
    assert 0.6 < pushed[8] < 1.0  # ~ pusher_gain * pusher_speed / (pusher_gain + block_damping) = 0.8
    for _ in range(3):
        released = task.step(np.zeros(2))
    assert np.abs(released[6:]).max() < 1e-3, "the block does not come to rest"
    still = task.step(np.zeros(2))
    np.testing.assert_allclose(still[2:6], released[2:6], atol=1e-6)
    # pushing the stem below the centroid to +x turns the T counter-clockwise
    turned = run(task, state(pusher=(-0.3, -0.2)), (1, 0), 6)
    assert turned[2] > 0.05 and block_pose(turned)[2] > 0.3


def test_an_untouched_block_stays_put(task):
    start = state(pusher=(0.7, 0.7), block=(-0.3, -0.3, 1.0))
    moved = run(task, start, (-1, 0.3), 10)
    assert moved[0] < 0.0, "the pusher should have travelled"
    np.testing.assert_array_equal(moved[2:6], start[2:6])
    np.testing.assert_array_equal(moved[8:], 0.0)
    # a sliding block is stopped by the table drag within a few model steps
    coasting = run(task, state(block=(-0.3, -0.3, 1.0), velocity=(0, 0, 1.0, 0, 0)), (0, 0), 4)
    assert 0.0 < coasting[2] + 0.3 < 0.1 and np.abs(coasting[8:]).max() < 1e-3


def test_walls_hold_the_pusher_and_the_block(task):
    pusher = run(task, state(pusher=(0.5, 0.5), block=(-0.5, -0.5, 0.0)), (1, 1), 20)
    assert 0.85 < pusher[0] < 1.0 and 0.85 < pusher[1] < 1.0
    jammed = run(task, state(pusher=(-0.45, 0.03), block=(0.0, 0.0, -np.pi / 2)), (1, 0), 30)
    extent = outline_world(block_pose(jammed))[:, 0].max()
    assert 0.99 < extent < 1.005, f"the block should rest against the wall, reaches x = {extent}"
    assert abs(block_pose(jammed)[2] + np.pi / 2) < 0.01, "the bar should lie flat against the wall"


def test_success_thresholds_and_angle_wrap(task):
    goal = state(pusher=(0.9, -0.9), block=(0.2, -0.1, 0.4))
    assert task.success(goal, goal)
    assert task.success(state(pusher=(-0.5, 0.5), block=(0.2 + 0.05, -0.1, 0.4 + 0.3), velocity=(1,) * 5), goal)
    assert not task.success(state(block=(0.2, -0.1, 0.4 + task.success_angle + 0.02)), goal)
    assert not task.success(state(block=(0.2, -0.1, 0.4 - task.success_angle - 0.02)), goal)
    assert not task.success(state(block=(0.2 + task.success_pos + 0.005, -0.1, 0.4)), goal)
    near_pi = state(block=(0.0, 0.0, np.pi - 0.01))
    near_minus_pi = state(block=(0.0, 0.0, -np.pi + 0.01))
    assert task.success(near_pi, near_minus_pi) and task.success(near_minus_pi, near_pi)
    assert task.distance(near_pi, near_minus_pi) == pytest.approx(task.angle_weight * 0.02)
    # batches: distance = pos_err + angle_weight * |wrapped angle error|
    batch = np.stack([goal, state(block=(0.5, 0.3, 0.4)), state(block=(0.2, -0.1, 0.4 + 2 * np.pi - 0.1))])
    np.testing.assert_allclose(task.distance(batch, goal), [0.0, 0.5, task.angle_weight * 0.1], atol=1e-12)
    np.testing.assert_array_equal(task.success(batch, goal), [True, False, True])
    assert task.distance(batch[None], goal).shape == (1, 3)
    # success implies a distance below success_threshold
    assert task.success_threshold == pytest.approx(task.success_pos + task.angle_weight * task.success_angle)


def test_render_is_headless_and_shows_the_goal(task):
    task.reset(state(pusher=(-0.6, 0.6), block=(0.2, -0.2, 0.3)))
    task.set_goal(state(block=(0.5, 0.5, 0.0)))
    frame = task.render(64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
    task.set_goal(state(block=(-0.5, -0.5, 1.5)))
    moved_goal = task.render(64)
    assert np.abs(moved_goal.astype(int) - frame).sum() > 0
    assert task.reset(task.get_state()) is not None
    np.testing.assert_array_equal(task.render(64), moved_goal)  # the goal survives reset
    task.reset(state(pusher=(0.6, -0.6), block=(0.2, -0.2, 0.3)))
    assert np.abs(task.render(64).astype(int) - moved_goal).sum() > 0
    # the goal T does not collide: the block can sit on it
    on_goal = state(pusher=(0.8, 0.8), block=(-0.5, -0.5, 1.5))
    np.testing.assert_allclose(run(task, on_goal, (0, 0), 2), on_goal, atol=1e-12)


def test_start_goal_pairs(task):
    pairs = [task.sample_start_goal(np.random.default_rng(s)) for s in range(40)]
    again = task.sample_start_goal(np.random.default_rng(7))
    np.testing.assert_array_equal(again[0], pairs[7][0])
    np.testing.assert_array_equal(again[1], pairs[7][1])
    assert len({tuple(np.round(s[2:6], 6)) for s, _ in pairs}) == len(pairs)
    for start, goal in pairs:
        far = np.linalg.norm(goal[2:4] - start[2:4]) >= task.min_goal_distance
        turned = abs(wrap_angle(block_pose(goal)[2] - block_pose(start)[2])) >= task.min_goal_angle
        assert far or turned
        assert not task.success(start, goal)
        for s in (start, goal):
            assert np.all(s[6:] == 0.0) and np.hypot(s[4], s[5]) == pytest.approx(1.0)
            assert np.abs(outline_world(block_pose(s))).max() < 1.0, "the T must lie inside the arena"
            assert block_distance(s[:2], block_pose(s)) >= task.pusher_radius + task.margin - 1e-12
            task.reset(s)
            assert task.data.ncon == 0
            np.testing.assert_allclose(task.step(np.zeros(2)), s, atol=1e-9)  # nothing pushes anything


def test_scripted_policy_moves_the_block(task):
    rng = np.random.default_rng(0)
    moves = []
    for _ in range(5):
        s = start = task.reset(task.sample_state(rng))
        for _ in range(40):
            action = task.exploration_action(rng, s)
            assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
            s = task.step(action)
        moves.append(block_motion(start, s))
    assert sum(m > 0.1 for m in moves) >= 4, f"the scripted policy barely moved the block: {moves}"


def test_scripted_policy_is_deterministic_given_rng(task):
    def episode(seed):
        rng = np.random.default_rng(seed)
        s = task.reset(task.sample_state(rng))
        return np.stack([s := task.step(task.exploration_action(rng, s)) for _ in range(25)])

    np.testing.assert_array_equal(episode(3), episode(3))


@pytest.mark.parametrize("policy", ["scripted", "colored"])
def test_collect_works_with_the_task(task, policy):
    from grasp.train.dataset import collect

    data = collect(task, episodes=4, episode_len=20, policy=policy, correlation=0.8, seed=0, progress=False)
    assert data.states.shape == (4, 21, 11) and data.actions.shape == (4, 20, 2)
    assert np.isfinite(data.states).all() and np.abs(data.actions).max() <= 1.0
    assert data.meta["env"] == "pusht" and data.meta["policy"] == policy
    np.testing.assert_allclose(np.hypot(data.states[..., 4], data.states[..., 5]), 1.0, atol=1e-5)
    if policy == "scripted":
        moved = [block_motion(ep[0].astype(float), ep[-1].astype(float)) for ep in data.states]
        assert sum(m > 0.05 for m in moved) >= 3, moved


@pytest.mark.parametrize("knob, value", [
    ("frame_skip", 0), ("timestep", 0.05), ("success_pos", 0.0), ("success_angle", 4.0), ("angle_weight", -1.0),
    ("min_goal_distance", 0.01), ("min_goal_angle", 0.1), ("block_range", 0.9), ("block_mass", 0.0),
    ("block_friction", -0.5), ("block_damping", 0.0), ("pusher_gain", -1.0), ("pusher_radius", 0.5),
    ("policy_noise", -0.1),
])
def test_bad_knobs_are_refused(knob, value):
    with pytest.raises(ValueError, match=f"env.{knob}={value}"):
        PushTTask(**{knob: value})
