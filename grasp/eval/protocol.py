"""The evaluation protocol: start/goal pairs drawn once from seeds, saved to a file and reused
by every planner, so planners are compared on identical problems.

Goal sources (DINO-WM's habits): `random` draws a (start, goal) pair from the task's own
sampler; `rollout` starts from a random valid state and takes the state reached `horizon`
model steps into a trajectory of the data policy, so goals are reachable in the horizon.
Episode i depends only on (seed, i); its seed is stored so any episode can be replayed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from filelock import FileLock

from grasp.config import GOAL_SOURCES
from grasp.envs.base import Task
from grasp.envs.exploration import policy_steps
from grasp.utils import atomic_path, derive_seed

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


def episode_seed(seed: int, episode: int) -> int:
    return derive_seed(seed, episode)


@dataclass
class Protocol:
    """Start/goal pairs of one evaluation cell. starts, goals (N, D) in the task's state space."""

    env: str
    state_dim: int
    horizon: int
    seed: int
    goal_source: str
    episode_seeds: list[int]
    starts: np.ndarray
    goals: np.ndarray
    #: draws thrown away because the start already met its goal (None: a file from before this count)
    redrawn: int | None = 0

    def __len__(self) -> int:
        return len(self.episode_seeds)

    def head(self, episodes: int) -> "Protocol":
        """The first `episodes` pairs (episode i is the same whatever the total)."""
        return replace(self, episode_seeds=self.episode_seeds[:episodes], starts=self.starts[:episodes],
                       goals=self.goals[:episodes])

    def save(self, path: str | Path) -> None:
        record = {**asdict(self), "version": PROTOCOL_VERSION, "starts": self.starts.tolist(),
                  "goals": self.goals.tolist()}
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Protocol":
        path = Path(path)
        try:
            record = json.loads(path.read_text())
            if record.get("version") != PROTOCOL_VERSION:
                raise ValueError(f"version {record.get('version')!r}, expected {PROTOCOL_VERSION}")
            fields = {k: record[k] for k in ("env", "state_dim", "horizon", "seed", "goal_source", "episode_seeds")}
            starts = np.asarray(record["starts"], dtype=np.float64).reshape(len(fields["episode_seeds"]), -1)
            goals = np.asarray(record["goals"], dtype=np.float64).reshape(starts.shape)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"protocol file {path} is not a readable protocol: {exc}") from exc
        return cls(**fields, starts=starts, goals=goals, redrawn=record.get("redrawn"))

    def check(self, task: Task, path: str | Path, episodes: int) -> None:
        """One clear error when this file does not fit the run."""
        if self.env != task.name or self.state_dim != task.state_dim or self.starts.shape[1] != task.state_dim:
            raise ValueError(f"protocol file {path} is for env {self.env!r} with state_dim {self.state_dim}, "
                             f"but this run's env is {task.name!r} with state_dim {task.state_dim}")
        if len(self) < episodes:
            raise ValueError(f"protocol file {path} holds {len(self)} episodes, eval.episodes asks for {episodes}")


def make_protocol(task: Task, episodes: int, seed: int, horizon: int, goal_source: str = "random",
                  policy: str = "colored", correlation: float = 0.8) -> Protocol:
    """Draw the pairs. `rollout` goals follow `policy` (the data policy) for `horizon` steps."""
    if goal_source not in GOAL_SOURCES:
        raise ValueError(f"eval.goal_source={goal_source!r}: allowed values are {', '.join(GOAL_SOURCES)}")
    seeds = [episode_seed(seed, i) for i in range(episodes)]
    starts, goals, redrawn = [], [], 0
    for s in seeds:
        rng = np.random.default_rng(s)
        if goal_source == "random":
            start, goal, tries = _redrawn(task, lambda: task.sample_start_goal(rng))
        else:
            start, goal, tries = _redrawn(task, lambda: _rollout_pair(task, rng, horizon, policy, correlation))
        starts.append(np.asarray(start, dtype=np.float64))
        goals.append(np.asarray(goal, dtype=np.float64))
        redrawn += tries
    if redrawn:
        log.info("evaluate: redrew %d start/goal pair(s) whose start already met the goal", redrawn)
    return Protocol(task.name, task.state_dim, int(horizon), int(seed), goal_source, seeds,
                    np.stack(starts), np.stack(goals), redrawn)


#: pairs whose start already satisfies the goal are redrawn (same rng stream) up to this many times
ROLLOUT_TRIES = 20


def _redrawn(task: Task, draw):
    """A (start, goal) pair from `draw()`, drawn again while the start already meets the goal (a
    pair solved by doing nothing says nothing about a planner), and how many draws were thrown away."""
    for tries in range(ROLLOUT_TRIES):
        start, goal = draw()
        if not bool(task.success(np.asarray(start)[None], np.asarray(goal)[None])[0]):
            break
    return start, goal, tries


def _rollout_pair(task: Task, rng: np.random.Generator, horizon: int, policy: str, correlation: float):
    """A data-policy rollout's start and end."""
    start = state = task.reset(task.sample_state(rng))
    for _, state in policy_steps(task, rng, horizon, policy, correlation):
        pass
    return start, state


def load_or_make_protocol(path: Path, task: Task, episodes: int, seed: int, horizon: int, goal_source: str,
                          policy: str, correlation: float) -> Protocol:
    """The protocol at `path`, drawn and saved first when missing (one process at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            protocol = Protocol.load(path)
            protocol.check(task, path, episodes)
            log.info("evaluate: reusing start/goal pairs %s", path)
            return protocol.head(episodes)
        protocol = make_protocol(task, episodes, seed, horizon, goal_source, policy, correlation)
        protocol.save(path)
        log.info("evaluate: wrote start/goal pairs %s (%d episodes, goals: %s)", path, episodes, goal_source)
        return protocol

