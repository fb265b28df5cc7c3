"""Every task as a gymnasium goal-conditioned environment: `gymnasium.make("grasp/PushT-v0")`.

Observations are gymnasium-robotics' goal dict: `observation` (the task's state vector),
`achieved_goal` (its goal dims) and `desired_goal` (the goal's). One `step` is one model step of the
task (`action_chunk` stacked env actions when the env config stacks them). The reward is the
negative goal distance of the task (its own metric, e.g. Push-T's position + weighted angle error),
`terminated` is the task's success rule and `info["is_success"]` says the same. Importing
grasp.envs registers the ids (gymnasium 1.x loads no plugins by itself), so
`gymnasium.make("grasp.envs:grasp/PushT-v0")` works from a bare interpreter. Constructor
arguments default to conf/env/<name>.yaml and any of them can be passed to make().
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from omegaconf import OmegaConf

from grasp.envs.base import Task

#: gymnasium id -> (conf/env file, episode length in model steps: the suite preset's eval.max_steps)
ENVS: dict[str, tuple[str, int]] = {
    "grasp/PushT-v0": ("pusht", 50),
    "grasp/Wall-v0": ("wall", 60),
    "grasp/PointMass-v0": ("point_mass", 50),
    "grasp/Reacher-v0": ("reacher", 50),
    "grasp/PointMazeUMaze-v0": ("point_maze_umaze", 50),
    "grasp/PointMazeMedium-v0": ("point_maze_medium", 50),
    "grasp/PointMazeLarge-v0": ("point_maze_large", 50),
}


def make_task(env: str, **overrides: Any) -> Task:
    """The task of conf/env/<env>.yaml, with constructor arguments overridden."""
    from hydra.utils import instantiate

    from grasp.config import CONF_DIR

    path = CONF_DIR / "env" / f"{env}.yaml"
    if not path.is_file():
        raise ValueError(f"no env config {path}: allowed {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return instantiate(OmegaConf.merge(OmegaConf.load(path), overrides))


class GoalTaskEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env: str, render_mode: str | None = None, render_size: int = 128, **task_kwargs: Any) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}: allowed None or {self.metadata['render_modes']}")
        self.task = make_task(env, **task_kwargs)
        self.render_mode, self.render_size = render_mode, int(render_size)
        self._goal_dims = list(self.task.goal_dims)
        self.action_space = spaces.Box(self.task.action_low.astype(np.float32), self.task.action_high.astype(np.float32),
                                       dtype=np.float32)

        def box(size: int) -> spaces.Box:
            return spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float64)

        self.observation_space = spaces.Dict({"observation": box(self.task.state_dim),
                                              "achieved_goal": box(len(self._goal_dims)),
                                              "desired_goal": box(len(self._goal_dims))})
        self._state = self._goal = None

    # ---- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A start/goal pair drawn as the evaluation draws them, or given: options={"start": s, "goal": g}
        (full state vectors)."""
        super().reset(seed=seed)
        options = options or {}
        start, goal = self.task.sample_start_goal(self.np_random)
        start = np.asarray(options.get("start", start), dtype=np.float64)
        self._goal = np.asarray(options.get("goal", goal), dtype=np.float64)
        self._state = self.task.reset(start)
        self.task.set_goal(self._goal)
        return self._observation(), self._info()

    def step(self, action):
        self._state = self.task.step(np.asarray(action, dtype=np.float64))
        info = self._info()
        reward = float(-self.task.distance(self._state, self._goal))
        return self._observation(), reward, bool(info["is_success"]), False, info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.task.render(size=self.render_size, show_goal=True)
        return None

    def close(self) -> None:
        self.task.close()

    # ---- goal-env API (gymnasium-robotics' GoalEnv) ---------------------------------------------
    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        """The reward of (batches of) achieved/desired goals, as step() gives it: what hindsight
        relabelling needs."""
        return -self.task.distance(self._as_state(achieved_goal), self._as_state(desired_goal))

    def compute_terminated(self, achieved_goal, desired_goal, info) -> np.ndarray:
        return self.task.success(self._as_state(achieved_goal), self._as_state(desired_goal))

    def compute_truncated(self, achieved_goal, desired_goal, info) -> np.ndarray:
        return np.zeros(np.shape(achieved_goal)[:-1], dtype=bool)

    # ---- helpers ---------------------------------------------------------------------------------
    def _as_state(self, goal) -> np.ndarray:
        """Goal entries in full state vectors (the tasks' metrics read only goal_dims)."""
        goal = np.asarray(goal, dtype=np.float64)
        state = np.zeros((*goal.shape[:-1], self.task.state_dim))
        state[..., self._goal_dims] = goal
        return state

    def _observation(self) -> dict[str, np.ndarray]:
        return {"observation": self._state.copy(), "achieved_goal": self._state[self._goal_dims].copy(),
                "desired_goal": self._goal[self._goal_dims].copy()}

    def _info(self) -> dict[str, Any]:
        return {"is_success": bool(self.task.success(self._state, self._goal)),
                "distance": float(self.task.distance(self._state, self._goal))}


def register_envs() -> None:
    """Register every task's id with gymnasium (grasp.envs does on import); idempotent."""
    for env_id, (env, steps) in ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="grasp.envs.gymnasium_env:GoalTaskEnv", kwargs={"env": env},
                               max_episode_steps=steps)
