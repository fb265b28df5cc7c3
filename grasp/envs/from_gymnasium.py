"""Any gymnasium env whose simulator state can be read and set, as a Task: `env=` can point at one.

A Task needs what a gymnasium env does not promise: the full simulator state as a flat vector, a
way to put the simulator in a given state (planners are compared from the same start, goals are
states, a world model's input must be Markov), and a success rule on states. The env supplies the
dynamics and the rendering; a `StateAccess` supplies the first two; the config supplies the goal
dims and the success threshold (or a subclass its own rule, see grasp.envs.gym_pusht).

Actions: the env's Box is mapped affinely onto [-1, 1] per dimension, so planners and data policies
see the same action range on every task. `frame_skip` repeats one env action for that many calls
of the env's `step` (its own frame skip stays as it is). Episode limits and the env's reward are
not used: the evaluator owns both.

    # conf/env/gym_reacher.yaml
    _target_: grasp.envs.from_gymnasium.GymnasiumTask
    id: Reacher-v5
    state: {_target_: grasp.envs.from_gymnasium.MujocoState}
    goal_dims: [0, 1]
    success_threshold: 0.1
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np
from gymnasium import spaces

from grasp.envs.base import Task


@runtime_checkable
class StateAccess(Protocol):
    """Reads and writes the complete simulator state of an (unwrapped) gymnasium env."""

    def state_dim(self, env: gymnasium.Env) -> int:
        """Entries of the state vector."""

    def get_state(self, env: gymnasium.Env) -> np.ndarray:
        """The current state, flat float64."""

    def set_state(self, env: gymnasium.Env, state: np.ndarray) -> None:
        """Put the simulator in `state` (what get_state returned, or a goal drawn like it)."""


class MujocoState:
    """qpos then qvel of a gymnasium MuJoCo env (`MujocoEnv`), set through its `set_state`.
    `attr` names the attribute holding the MujocoEnv when the env wraps one (e.g. "point_env")."""

    def __init__(self, attr: str | None = None) -> None:
        self.attr = attr

    def _sim(self, env: gymnasium.Env):
        sim = getattr(env, self.attr) if self.attr else env
        if not (hasattr(sim, "data") and hasattr(sim, "set_state")):
            raise ValueError(f"env.state=MujocoState: {type(sim).__name__} is not a gymnasium MujocoEnv "
                             "(no .data and .set_state); name the attribute holding one with env.state.attr")
        return sim

    def state_dim(self, env: gymnasium.Env) -> int:
        data = self._sim(env).data
        return int(data.qpos.size + data.qvel.size)

    def get_state(self, env: gymnasium.Env) -> np.ndarray:
        data = self._sim(env).data
        return np.concatenate([data.qpos, data.qvel]).astype(np.float64)

    def set_state(self, env: gymnasium.Env, state: np.ndarray) -> None:
        sim = self._sim(env)
        nq = sim.data.qpos.size
        sim.set_state(np.asarray(state[:nq], dtype=np.float64), np.asarray(state[nq:], dtype=np.float64))


class AttributeState:
    """A state kept in one array attribute of the env, as gymnasium's classic-control envs keep
    theirs (`env.state`)."""

    def __init__(self, attr: str = "state") -> None:
        self.attr = attr

    def state_dim(self, env: gymnasium.Env) -> int:
        return int(np.asarray(getattr(env, self.attr)).size)

    def get_state(self, env: gymnasium.Env) -> np.ndarray:
        return np.asarray(getattr(env, self.attr), dtype=np.float64).ravel().copy()

    def set_state(self, env: gymnasium.Env, state: np.ndarray) -> None:
        setattr(env, self.attr, np.asarray(state, dtype=np.float64).copy())


class GymnasiumTask(Task):
    """A gymnasium env driven as a goal-conditioned Task (see the module docstring)."""

    def __init__(self, id: str, state: StateAccess, goal_dims: list[int], success_threshold: float,
                 make_kwargs: dict[str, Any] | None = None, name: str | None = None, frame_skip: int = 1,
                 action_chunk: int = 1, min_goal_distance: float = 0.0, seed: int = 0) -> None:
        if not isinstance(state, StateAccess):
            raise ValueError(f"env.state={state!r} reads and sets no state: give a StateAccess "
                             "(grasp.envs.from_gymnasium.MujocoState, AttributeState or your own)")
        if int(frame_skip) != frame_skip or frame_skip < 1:
            raise ValueError(f"env.frame_skip={frame_skip} must be an integer >= 1")
        if not success_threshold > 0:
            raise ValueError(f"env.success_threshold={success_threshold} must be > 0")
        try:
            wrapped = gymnasium.make(id, render_mode="rgb_array", **dict(make_kwargs or {}))
        except gymnasium.error.Error as err:
            raise ValueError(f"env.id={id!r}: gymnasium cannot make it ({err})") from err
        self.env = wrapped.unwrapped  # no time limit, no passive checker: the evaluator owns episodes
        if not isinstance(self.env.action_space, spaces.Box) or len(self.env.action_space.shape) != 1:
            raise ValueError(f"env.id={id!r}: its action space {self.env.action_space} is not a flat Box")
        self.access = state
        self.name = name or id.split("/")[-1].split("-v")[0].lower()
        self.frame_skip = int(frame_skip)
        self.set_action_chunk(action_chunk)
        self.min_goal_distance = float(min_goal_distance)
        self.env.reset(seed=int(seed))
        self.state_dim = self.access.state_dim(self.env)
        self.goal_dims = tuple(int(i) for i in goal_dims)
        if not self.goal_dims or not all(0 <= i < self.state_dim for i in self.goal_dims):
            raise ValueError(f"env.goal_dims={list(goal_dims)}: each must index the {self.state_dim}-D state")
        self.success_threshold = float(success_threshold)
        box = self.env.action_space
        self._low, self._high = box.low.astype(np.float64), box.high.astype(np.float64)
        if not (np.isfinite(self._low).all() and np.isfinite(self._high).all()):
            raise ValueError(f"env.id={id!r}: its action Box is unbounded; planners need finite bounds")
        self.env_action_dim = int(box.shape[0])

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] per dimension -> the env's Box."""
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._low + (unit + 1.0) * 0.5 * (self._high - self._low)).astype(self.env.action_space.dtype)

    def reset(self, state: np.ndarray) -> np.ndarray:
        self.access.set_state(self.env, np.asarray(state, dtype=np.float64))
        return self.get_state()

    def env_step(self, action: np.ndarray) -> np.ndarray:
        env_action = self.to_env_action(action)
        for _ in range(self.frame_skip):
            self.env.step(env_action)
        return self.get_state()

    def get_state(self) -> np.ndarray:
        return self.access.get_state(self.env)

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A state from the env's own reset distribution, seeded from `rng`."""
        self.env.reset(seed=int(rng.integers(2**31 - 1)))
        return self.get_state()

    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two reset states at least min_goal_distance apart (at most 100 draws)."""
        start = self.sample_state(rng)
        for _ in range(100):
            goal = self.sample_state(rng)
            if self.distance(start, goal) >= self.min_goal_distance:
                break
        return start, goal

    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        """The env's rgb_array frame, resized (nearest) to size x size. Whether the goal shows is
        the env's business: show_goal cannot hide what it draws."""
        frame = np.asarray(self.env.render())
        rows = np.arange(size) * frame.shape[0] // size
        cols = np.arange(size) * frame.shape[1] // size
        return np.ascontiguousarray(frame[rows][:, cols, :3]).astype(np.uint8)

    def close(self) -> None:
        self.env.close()
