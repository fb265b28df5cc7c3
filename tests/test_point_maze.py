"""The PointMaze tasks on real MuJoCo (gymnasium-robotics): motion, walls, the gym env's own
dynamics, rendering, success, start/goal pairs, config composition and data collection."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
from conftest import compose_config

from grasp.envs.point_maze import MAZES, PointMazeTask
from grasp.train.dataset import collect

MAZE_NAMES = ["umaze", "medium", "large"]
# unit steps along x / y and the action that pushes that way
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "up": (-1, 0), "down": (1, 0)}  # (d_row, d_col)


@pytest.fixture
def task():
    t = PointMazeTask("umaze")
    yield t
    t.close()


@pytest.fixture(params=MAZE_NAMES)
def any_task(request):
    t = PointMazeTask(request.param)
    yield t
    t.close()


def center(task, cell):
    return task._maze.cell_rowcol_to_xy(np.array(cell))


def cell_with_neighbour(grid, d_row, d_col, neighbour_is_wall):
    """The first free cell whose neighbour (d_row, d_col) away is a wall (or free)."""
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value != 1 and (grid[i + d_row][j + d_col] == 1) == neighbour_is_wall:
                return i, j
    raise AssertionError("no such cell")


def push(task, start_xy, action, steps):
    state = task.reset(np.array([*start_xy, 0.0, 0.0]))
    for _ in range(steps):
        state = task.step(np.array(action, dtype=float))
    return state


def action_of(d_row, d_col):
    return np.array([d_col, -d_row], dtype=float)  # row index grows downwards (-y)


@pytest.mark.parametrize("maze", MAZE_NAMES)
def test_hydra_configs_compose_and_instantiate(maze):
    cfg = compose_config([f"env=point_maze_{maze}"])
    task = hydra.utils.instantiate(cfg.env)
    try:
        assert isinstance(task, PointMazeTask) and task.name == f"point_maze_{maze}"
        assert (task.state_dim, task.action_dim, task.goal_dims) == (4, 2, (0, 1))
        assert task.frame_skip == 5 and task.success_threshold == 0.45
        np.testing.assert_array_equal(task.action_low, [-1, -1])
        np.testing.assert_array_equal(task.action_high, [1, 1])
    finally:
        task.close()


def test_reset_round_trips_and_steps_are_deterministic(task):
    state = np.array([-0.8, 1.1, 0.7, -0.3])
    np.testing.assert_array_equal(task.reset(state), state)
    np.testing.assert_array_equal(task.get_state(), state)
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 2))
    runs = []
    for _ in range(2):
        task.reset(state)
        runs.append(np.stack([task.step(a) for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_actions_move_the_ball_their_way_in_open_space(any_task, direction):
    d_row, d_col = DIRECTIONS[direction]
    cell = cell_with_neighbour(MAZES[any_task.maze], d_row, d_col, neighbour_is_wall=False)
    start = center(any_task, cell)
    state = push(any_task, start, action_of(d_row, d_col), 1)
    axis, sign = (0, d_col) if d_col else (1, -d_row)
    # from rest a full force moves the ball ~0.036 units in one model step (5 MuJoCo steps)
    assert 0.03 < sign * (state[axis] - start[axis]) < 0.04
    assert sign * state[2 + axis] > 1.0
    assert state[1 - axis] == start[1 - axis] and state[3 - axis] == 0.0


def test_one_model_step_is_frame_skip_gym_env_steps(task):
    """Our stepping reproduces gymnasium-robotics' own env step for step (velocity clip, walls)."""
    rng = np.random.default_rng(3)
    actions = np.concatenate([np.tile([1.0, 0.0], (12, 1)), rng.uniform(-1, 1, (6, 2)), np.tile([0.0, -1.0], (12, 1))])
    start = np.array([-1.0, 1.0, 0.0, 0.0])
    task.reset(start)
    ours = np.stack([task.step(a) for a in actions])
    gym_env = task.env.point_env
    gym_env.set_state(start[:2], start[2:])
    theirs = np.stack([[gym_env.step(a)[0] for _ in range(task.frame_skip)][-1] for a in actions])
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    assert np.abs(ours[:, 2:]).max() > 4.0  # reached the speed limit, and hit the right wall


def test_actions_are_clipped_to_bounds(task):
    start = center(task, (1, 2))
    np.testing.assert_array_equal(push(task, start, (5.0, -7.0), 4), push(task, start, (1.0, -1.0), 4))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_walls_block(any_task, direction):
    d_row, d_col = DIRECTIONS[direction]
    cell = cell_with_neighbour(MAZES[any_task.maze], d_row, d_col, neighbour_is_wall=True)
    start = center(any_task, cell)
    axis, sign = (0, d_col) if d_col else (1, -d_row)
    any_task.reset(np.array([*start, 0.0, 0.0]))
    for _ in range(20):
        state = any_task.step(action_of(d_row, d_col))
        # never past the wall face (0.5 from the centre) minus the ball's radius (0.1)
        assert sign * (state[axis] - start[axis]) < 0.45
        assert any_task.cell_of(state) == cell
    assert sign * (state[axis] - start[axis]) > 0.3, "the ball did not reach the wall"


def test_render_headless_and_goal_marker(any_task):
    rng = np.random.default_rng(0)
    any_task.reset(any_task.sample_state(rng))
    frame = any_task.render(64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
    start, goal = any_task.sample_start_goal(rng)
    any_task.set_goal(goal)
    with_goal = any_task.render(64)
    assert np.abs(with_goal.astype(int) - frame).sum() > 0, "set_goal did not move the marker"
    any_task.reset(start)
    assert np.abs(any_task.render(64).astype(int) - with_goal).sum() > 0, "the ball is not drawn"
    assert any_task.render(128).shape == (128, 128, 3)


def test_render_is_top_down_over_the_whole_maze(any_task):
    """Every cell centre's pixel shows a wall (orange) exactly where the map has one."""
    grid = MAZES[any_task.maze]
    any_task.set_goal(center(any_task, (0, 0)))  # hide the marker inside a corner wall
    ball_cell = cell_with_neighbour(grid, 0, 1, neighbour_is_wall=False)
    any_task.reset(np.array([*center(any_task, ball_cell), 0.0, 0.0]))
    size = 128
    frame = any_task.render(size).astype(int)
    half = max(len(grid), len(grid[0])) / 2 + 0.05
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if (i, j) == ball_cell:
                continue
            x, y = center(any_task, (i, j))
            r, c = int((1 - y / half) / 2 * size), int((1 + x / half) / 2 * size)
            red, _, blue = frame[r, c]
            assert (red > blue) == (value == 1), f"cell {(i, j)} of the {any_task.maze} maze"


def test_success_and_distance(task):
    goal = np.array([0.0, 1.0, 0.0, 0.0])
    assert task.success(goal, goal)
    assert task.success(np.array([0.0, 1.0, 3.0, -2.0]), goal)  # velocity does not matter
    assert task.success(np.array([0.44, 1.0, 0.0, 0.0]), goal)
    assert not task.success(np.array([0.46, 1.0, 0.0, 0.0]), goal)
    assert not task.success(np.array([-1.0, -1.0, 0.0, 0.0]), goal)
    states = np.array([[0.3, 1.4, 0, 0], [1.0, -1.0, 0, 0]])
    np.testing.assert_allclose(task.distance(states, goal), [0.5, np.sqrt(5)], atol=1e-12)


def assert_valid_rest_state(task, state):
    grid = MAZES[task.maze]
    i, j = task.cell_of(state)
    assert grid[i][j] != 1, f"{state} lies in a wall cell"
    assert np.all(np.abs(state[:2] - center(task, (i, j))) <= task.cell_noise)
    assert state[2] == 0.0 and state[3] == 0.0
    np.testing.assert_array_equal(task.reset(state), state)
    np.testing.assert_allclose(task.step(np.zeros(2)), state, atol=1e-12)  # touches no wall


def test_start_goal_pairs(any_task):
    pairs = [any_task.sample_start_goal(np.random.default_rng(s)) for s in range(100)]
    again = any_task.sample_start_goal(np.random.default_rng(7))
    np.testing.assert_array_equal(again[0], pairs[7][0])
    np.testing.assert_array_equal(again[1], pairs[7][1])
    for start, goal in pairs:
        assert any_task.cell_of(start) != any_task.cell_of(goal)
        assert np.linalg.norm(goal[:2] - start[:2]) >= any_task.min_goal_distance
        assert not any_task.success(start, goal)
    for start, goal in pairs[:20]:
        assert_valid_rest_state(any_task, start)
        assert_valid_rest_state(any_task, goal)
    cells = {any_task.cell_of(s) for pair in pairs for s in pair}
    assert len(cells) == len(any_task.free_cells), "some free cells are never drawn"


def test_min_goal_distance_is_respected():
    far = PointMazeTask("medium", min_goal_distance=4.0)
    try:
        for s in range(50):
            start, goal = far.sample_start_goal(np.random.default_rng(s))
            assert np.linalg.norm(goal[:2] - start[:2]) >= 4.0
    finally:
        far.close()


def test_sample_state_is_valid_and_deterministic(task):
    states = [task.sample_state(np.random.default_rng(s)) for s in range(50)]
    np.testing.assert_array_equal(task.sample_state(np.random.default_rng(3)), states[3])
    for state in states:
        assert_valid_rest_state(task, state)
    assert len({task.cell_of(s) for s in states}) == len(task.free_cells)


@pytest.mark.parametrize("knob, value", [
    ("maze", "huge"), ("frame_skip", 0), ("success_threshold", 0.0), ("min_goal_distance", 50.0),
    ("min_goal_distance", -1.0), ("cell_noise", 0.45), ("cell_noise", -0.1), ("max_speed", 0.0),
])
def test_bad_knobs_are_refused(knob, value):
    with pytest.raises(ValueError, match=f"env.{knob}="):
        PointMazeTask(**{knob: value})


def test_close_is_idempotent():
    task = PointMazeTask("umaze")
    task.render(32)
    task.close()
    task.close()


def test_data_collection():
    task = hydra.utils.instantiate(compose_config(["env=point_maze_umaze"]).env)
    try:
        data = collect(task, episodes=3, episode_len=5, policy="colored", correlation=0.8, seed=0, progress=False)
        again = collect(task, episodes=3, episode_len=5, policy="colored", correlation=0.8, seed=0, progress=False)
    finally:
        task.close()
    assert data.states.shape == (3, 6, 4) and data.actions.shape == (3, 5, 2)
    assert data.meta["env"] == "point_maze_umaze"
    np.testing.assert_array_equal(data.states, again.states)
    assert np.all(np.abs(data.actions) <= 1.0)
    assert np.all(np.abs(data.states[..., :2]) < 2.5)  # inside the maze's outer walls
    assert np.any(data.states[:, 1:, :2] != data.states[:, :1, :2])
