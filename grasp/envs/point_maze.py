"""PointMaze: a force-actuated ball in a D4RL maze (the paper's PointMaze), on gymnasium-robotics.

The simulator is gymnasium-robotics' `PointMazeEnv` (maps U_MAZE, MEDIUM_MAZE, LARGE_MAZE; cells
of 1 x 1 unit, the maze centred on the origin, x to the right and y up, row 0 of the map on top).
We take its MuJoCo model and data and drive them directly, so that a start state is set exactly
and `frame_skip` counts MuJoCo steps:

* one MuJoCo step is one step of the gym env (its PointEnv has frame_skip 1 and timestep 0.01 s);
  like the gym env we clip the velocity to [-max_speed, max_speed] before each MuJoCo step, so with
  `frame_skip=k` one model step equals k gym env steps with the action held;
* the default `frame_skip=5` is DINO-WM's PointMaze frameskip (the paper's setting): one model step
  is 0.05 s; from rest a full action moves the ball ~0.036 units in the first model step and
  ~0.25 units per model step at the speed limit of 5 units/s.
"""

from __future__ import annotations

import contextlib
import io
import os

import mujoco
import numpy as np

from grasp.envs.base import Task
from grasp.envs.planar_point import PlanarPointState
from grasp.envs.rendering import GOAL_GROUP, FrameRenderer

# gymnasium_robotics prints a notice about its Adroit hand envs on import; irrelevant here.
with contextlib.redirect_stderr(io.StringIO()):
    from gymnasium_robotics.envs.maze import maps
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

MAZES = {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}
#: gymnasium-robotics' own success radius (PointMazeEnv's info["success"])
GYM_GOAL_RADIUS = 0.45


class PointMazeTask(PlanarPointState, Task):
    """State [x, y, vx, vy]; actions are forces in [-1, 1]^2 (gear 100 on a 4.19 kg ball)."""

    state_dim = 4
    env_action_dim = 2
    goal_dims = (0, 1)

    def __init__(self, maze: str = "umaze", frame_skip: int = 5, success_threshold: float = GYM_GOAL_RADIUS,
                 min_goal_distance: float = 1.0, cell_noise: float = 0.25, max_speed: float = 5.0,
                 action_chunk: int = 1) -> None:
        if maze not in MAZES:
            raise ValueError(f"env.maze={maze!r}: allowed values are {', '.join(MAZES)}")
        if int(frame_skip) != frame_skip or frame_skip < 1:
            raise ValueError(f"env.frame_skip={frame_skip} must be an integer >= 1")
        if not success_threshold > 0:
            raise ValueError(f"env.success_threshold={success_threshold} must be > 0")
        if not max_speed > 0:
            raise ValueError(f"env.max_speed={max_speed} must be > 0")
        self.maze = maze
        self.name = f"point_maze_{maze}"
        self.frame_skip = int(frame_skip)
        self.set_action_chunk(action_chunk)
        self.success_threshold = float(success_threshold)
        self.min_goal_distance = float(min_goal_distance)
        self.cell_noise = float(cell_noise)
        self.max_speed = float(max_speed)

        self.env = PointMazeEnv(maze_map=MAZES[maze])
        # the library writes its generated MJCF to a temporary file that it never removes
        with contextlib.suppress(OSError):
            os.remove(self.env.tmp_xml_file_path)
        self.model: mujoco.MjModel = self.env.model
        self.data: mujoco.MjData = self.env.data
        self._maze = self.env.maze
        self._target_site = self.env.target_site_id
        self.model.site_group[self._target_site] = GOAL_GROUP  # so that render(show_goal=False) can leave it out
        self._goal_height = self._maze.maze_height / 2 * self._maze.maze_size_scaling
        self._frames = FrameRenderer(self.model)

        agent = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "particle_geom")
        #: largest offset from a cell centre at which the ball cannot touch that cell's walls
        self.max_cell_noise = float(0.5 * self._maze.maze_size_scaling - self.model.geom_size[agent, 0]
                                    - self.model.geom_margin[agent])
        if not 0.0 <= self.cell_noise < self.max_cell_noise:
            raise ValueError(f"env.cell_noise={cell_noise} must lie in [0, {self.max_cell_noise:.3f}) "
                             f"so that sampled states do not touch a wall")
        self.free_cells = [(i, j) for i, row in enumerate(MAZES[maze]) for j, cell in enumerate(row) if cell != 1]
        self.cell_centers = np.stack([self._maze.cell_rowcol_to_xy(np.array(c)) for c in self.free_cells])
        farthest = float(np.max(np.linalg.norm(self.cell_centers[:, None] - self.cell_centers[None], axis=-1)))
        if not 0.0 <= self.min_goal_distance <= farthest:
            raise ValueError(f"env.min_goal_distance={min_goal_distance} must lie in [0, {farthest:.3f}] "
                             f"(the farthest two cell centres of the {maze} maze)")

        # top-down free camera over the whole maze, looking at the wall tops
        half = max(self._maze.map_width, self._maze.map_length) / 2 * self._maze.maze_size_scaling + 0.05
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.lookat[:] = (0.0, 0.0, 2 * self._goal_height)
        self._camera.distance = half / np.tan(np.radians(self.model.vis.global_.fovy / 2))
        self._camera.azimuth = 90.0
        self._camera.elevation = -90.0

    # ---- simulation ----------------------------------------------------------------------
    def env_step(self, action: np.ndarray) -> np.ndarray:
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        for _ in range(self.frame_skip):
            # the gym env's velocity limit, applied before each of its (one MuJoCo step) steps
            np.clip(self.data.qvel, -self.max_speed, self.max_speed, out=self.data.qvel)
            mujoco.mj_step(self.model, self.data, nstep=1)
        return self.get_state()

    # ---- maze geometry -------------------------------------------------------------------
    def cell_of(self, state: np.ndarray) -> tuple[int, int]:
        """The (row, column) of the map cell that holds the state's position."""
        i, j = self._maze.cell_xy_to_rowcol(np.asarray(state, dtype=np.float64)[:2])
        return int(i), int(j)

    def is_free(self, state: np.ndarray) -> bool:
        """Whether the state's position lies in a free (non-wall) cell of the map."""
        i, j = self.cell_of(state)
        grid = MAZES[self.maze]
        return 0 <= i < len(grid) and 0 <= j < len(grid[0]) and grid[i][j] != 1

    # ---- sampling ------------------------------------------------------------------------
    def _sample_in_cell(self, rng: np.random.Generator, cell: int) -> np.ndarray:
        xy = self.cell_centers[cell] + rng.uniform(-self.cell_noise, self.cell_noise, 2)
        return np.array([xy[0], xy[1], 0.0, 0.0])

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._sample_in_cell(rng, int(rng.integers(len(self.free_cells))))

    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.free_cells)
        for _ in range(1000):
            cell = int(rng.integers(n))
            start = self._sample_in_cell(rng, cell)
            goal_cell = int(rng.integers(n - 1))
            goal = self._sample_in_cell(rng, goal_cell + (goal_cell >= cell))  # any other cell
            if np.linalg.norm(goal[:2] - start[:2]) >= self.min_goal_distance:
                return start, goal
        raise RuntimeError(f"env.min_goal_distance={self.min_goal_distance} is too large for the {self.maze} maze")

    # ---- pictures ------------------------------------------------------------------------
    def set_goal(self, goal: np.ndarray) -> None:
        """Move the maze env's target site (a red ball of radius 0.2) to the goal position."""
        xy = np.asarray(goal, dtype=np.float64)[:2]
        self.env.goal = xy.copy()
        self.model.site_pos[self._target_site] = (xy[0], xy[1], self._goal_height)
        mujoco.mj_kinematics(self.model, self.data)  # site_xpos, which the renderer draws from

    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        return self._frames.frame(self.data, size, self._camera, show_goal)

    def close(self) -> None:
        self._frames.close()
        if self.env is not None:
            self.env.close()
            self.env = None
