"""Exploration data: collect trajectories in the task, save/load them, cache by config hash."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from grasp.envs.base import Task
from grasp.envs.exploration import policy_steps
from grasp.envs.observe import frame
from grasp.envs.rendering import EFFECTS
from grasp.utils import atomic_path

log = logging.getLogger(__name__)

DATASET_VERSION = 1
#: how the frames of frame datasets are drawn, recorded in their meta and part of their cache key:
#: without the goal marker (earlier ones drew it at its default place, which a model trained on them
#: would expect to see) and without shadows and reflections (earlier dm-control frames had them)
FRAME_STYLE = {"frames_show_goal": False, "frames_effects": EFFECTS}


def frame_style(frame_size: int | None) -> dict:
    """The meta entries of FRAME_STYLE: its values for frame datasets, None for state-only ones."""
    return {key: None if frame_size is None else value for key, value in FRAME_STYLE.items()}


@dataclass
class TrajectoryDataset:
    """states (N, L+1, D) and actions (N, L, A) of N exploration episodes of L model steps;
    for pixel models also the frame of every state, frames (N, L+1, 3, S, S) uint8."""

    states: np.ndarray
    actions: np.ndarray
    meta: dict
    frames: np.ndarray | None = None

    @property
    def num_transitions(self) -> int:
        return self.actions.shape[0] * self.actions.shape[1]

    def split(self, val_fraction: float) -> tuple["TrajectoryDataset", "TrajectoryDataset"]:
        """Split by episode (the last episodes go to validation; collection order is random)."""
        n_val = max(1, int(round(len(self.states) * val_fraction)))
        n_train = len(self.states) - n_val
        if n_train < 1:
            raise ValueError(f"val_fraction={val_fraction} leaves no training episodes out of {len(self.states)}")
        frames = (None, None) if self.frames is None else (self.frames[:n_train], self.frames[n_train:])
        train = TrajectoryDataset(self.states[:n_train], self.actions[:n_train], self.meta, frames[0])
        val = TrajectoryDataset(self.states[n_train:], self.actions[n_train:], self.meta, frames[1])
        return train, val

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flattened (s, a, s') arrays for one-step training."""
        d, a = self.states.shape[-1], self.actions.shape[-1]
        return (self.states[:, :-1].reshape(-1, d), self.actions.reshape(-1, a), self.states[:, 1:].reshape(-1, d))

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                extra = {} if self.frames is None else {"frames": self.frames}
                np.savez_compressed(fh, states=self.states, actions=self.actions, meta=json.dumps(self.meta), **extra)

    @classmethod
    def load(cls, path: str | Path) -> "TrajectoryDataset":
        """Read a dataset file; a truncated, foreign or inconsistent file is one ValueError naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in ("meta", "states", "actions") if key not in data.files]
                if missing:
                    raise ValueError(f"it lacks the arrays {missing}")
                meta = json.loads(str(data["meta"]))
                frames = data["frames"] if "frames" in data.files else None
                dataset = cls(states=data["states"], actions=data["actions"], meta=meta, frames=frames)
        except FileNotFoundError:
            raise
        except Exception as exc:  # zipfile, numpy and json raise many kinds for a truncated or foreign file
            raise ValueError(f"dataset {path} could not be read as a grasp dataset ({exc}); "
                             "delete it to recollect") from exc
        dataset.check_shapes(path)
        return dataset

    def check_shapes(self, path: str | Path) -> None:
        """states (N, L+1, D), actions (N, L, A), frames (N, L+1, 3, S, S), finite states and actions."""
        n = len(self.states)
        ok = (self.states.ndim == 3 and self.actions.ndim == 3 and len(self.actions) == n
              and self.states.shape[1] == self.actions.shape[1] + 1)
        if self.frames is not None:
            ok = ok and self.frames.ndim == 5 and self.frames.shape[:2] == self.states.shape[:2]
        if not ok:
            shapes = {"states": self.states.shape, "actions": self.actions.shape,
                      "frames": None if self.frames is None else self.frames.shape}
            raise ValueError(f"dataset {path} has inconsistent arrays {shapes}: expected states (N, L+1, D), "
                             "actions (N, L, A) and frames (N, L+1, 3, S, S); delete it to recollect")
        if not (np.isfinite(self.states).all() and np.isfinite(self.actions).all()):
            raise ValueError(f"dataset {path} holds NaN or Inf states or actions; delete it to recollect")


def collect(task: Task, episodes: int, episode_len: int, policy: str, correlation: float,
            seed: int | np.random.SeedSequence, progress: bool = True,
            frame_size: int | None = None, random_steps: float = 0.0) -> TrajectoryDataset:
    """Exploration episodes on one random stream; with `frame_size`, the frame of every state too
    (headless renders without the goal marker, which a pixel model must not be shown);
    `random_steps`: grasp.envs.exploration.policy_steps'."""
    frame_size = _checked_frame_size(frame_size)
    rng = np.random.default_rng(seed)
    frames = None if frame_size is None else np.empty((episodes, episode_len + 1, 3, frame_size, frame_size),
                                                      dtype=np.uint8)
    states = np.empty((episodes, episode_len + 1, task.state_dim), dtype=np.float32)
    actions = np.empty((episodes, episode_len, task.action_dim), dtype=np.float32)
    for ep in tqdm(range(episodes), desc="collect", unit="ep", disable=not progress, mininterval=1.0):
        states[ep, 0] = task.reset(task.sample_state(rng))
        if frames is not None:
            frames[ep, 0] = frame(task, frame_size)
        steps = policy_steps(task, rng, episode_len, policy, correlation, np.float32, random_steps)
        for t, (action, state) in enumerate(steps):
            actions[ep, t], states[ep, t + 1] = action, state
            if frames is not None:
                frames[ep, t + 1] = frame(task, frame_size)
    meta = {"version": DATASET_VERSION, "env": task.name, "state_dim": task.state_dim,
            "action_dim": task.action_dim, "action_chunk": task.action_chunk, "episodes": episodes,
            "episode_len": episode_len,
            "policy": policy, "seed": seed if isinstance(seed, int) else None, "frame_size": frame_size,
            **({"random_steps": random_steps} if random_steps else {}),
            **frame_style(frame_size), "stats": statistics(states, actions)}
    return TrajectoryDataset(states, actions, meta, frames)


def collect_shards(task: Task, make_task: Callable[[], Task], episodes: int, episode_len: int, policy: str,
                   correlation: float, seed: int, shards: int, workers: int | None = None, progress: bool = True,
                   frame_size: int | None = None, random_steps: float = 0.0) -> TrajectoryDataset:
    """The episodes split into `shards` contiguous shards, shard i drawn from its own stream
    SeedSequence(seed, spawn_key=(i,)), so shards collect in parallel: `workers` processes (None:
    one per shard, at most one per CPU), each simulating with its own `make_task()`. The dataset
    depends on `shards`, never on `workers`; `shards=1` is `collect`'s one stream from `seed`."""
    frame_size = _checked_frame_size(frame_size)
    if shards == 1:
        return collect(task, episodes, episode_len, policy, correlation, seed, progress, frame_size, random_steps)
    sizes = [len(part) for part in np.array_split(np.arange(episodes), shards)]
    streams = [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(shards)]
    workers = min(shards, usable_cpus() if workers is None else workers)
    bar = tqdm(total=shards, desc=f"collect ({workers} workers)", unit="shard", disable=not progress)
    if workers == 1:
        parts = []
        for size, stream in zip(sizes, streams):
            parts.append(collect(task, size, episode_len, policy, correlation, stream, False, frame_size, random_steps))
            bar.update()
    else:
        # spawn, not fork: the job's process holds torch's threads and maybe a GL context
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_collect_shard, make_task, size, episode_len, policy, correlation, stream,
                                   frame_size, random_steps) for size, stream in zip(sizes, streams)]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            parts = [future.result() for future in futures]
    bar.close()
    states = np.concatenate([part.states for part in parts])
    actions = np.concatenate([part.actions for part in parts])
    frames = None if frame_size is None else np.concatenate([part.frames for part in parts])
    meta = {**parts[0].meta, "episodes": episodes, "seed": seed, "shards": shards,
            "stats": statistics(states, actions)}
    return TrajectoryDataset(states, actions, meta, frames)


def _collect_shard(make_task: Callable[[], Task], episodes: int, episode_len: int, policy: str, correlation: float,
                   stream: np.random.SeedSequence, frame_size: int | None, random_steps: float) -> TrajectoryDataset:
    task = make_task()
    try:
        return collect(task, episodes, episode_len, policy, correlation, stream, False, frame_size, random_steps)
    finally:
        task.close()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _checked_frame_size(frame_size) -> int | None:
    if frame_size is not None:
        if isinstance(frame_size, bool) or not isinstance(frame_size, (int, np.integer)) or frame_size < 1:
            raise ValueError(f"data.frame_size={frame_size!r}: allowed null (state datasets) or an integer >= 1")
        frame_size = int(frame_size)
    return frame_size


def statistics(states: np.ndarray, actions: np.ndarray) -> dict[str, list[float]]:
    """Per-dimension mean/std/min/max of the states and actions, saved with the dataset."""
    out: dict[str, list[float]] = {}
    for name, values in (("state", states), ("action", actions)):
        flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
        for stat, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
            out[f"{name}_{stat}"] = fn(flat, axis=0).tolist()
    return out


def load_or_collect(path: Path, task: Task, data_cfg, config_hash: str, allow_collect: bool,
                    progress: bool = True, make_task: Callable[[], Task] | None = None) -> TrajectoryDataset:
    """The cached dataset at `path`, collecting it first when missing (one process at a time);
    `make_task` builds the simulator of each worker process of a sharded collection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            data = TrajectoryDataset.load(path)
            _check_matches(data, path, task, config_hash, data_cfg.get("frame_size"))
            log.info("collect: reusing cached dataset %s (%d transitions)", path, data.num_transitions)
            return data
        if not allow_collect:
            raise FileNotFoundError(
                f"no cached dataset at {path} for this data config, and 'collect' is not in `stages`; "
                "add it back to `stages` or point `checkpoint` at a trained world model"
            )
        shards, workers = int(data_cfg.get("shards", 1)), data_cfg.get("workers")
        if shards > 1 and make_task is None and workers != 1:
            raise ValueError("data.shards > 1 collects in worker processes, which need make_task to build the task")
        data = collect_shards(task, make_task, data_cfg.episodes, data_cfg.episode_len, data_cfg.policy,
                              data_cfg.correlation, data_cfg.seed, shards, workers, progress=progress,
                              frame_size=data_cfg.get("frame_size"), random_steps=float(data_cfg.get("random_steps", 0.0)))
        data.meta["config_hash"] = config_hash
        data.save(path)
        log.info("collect: wrote %s (%d transitions)", path, data.num_transitions)
        return data


def _check_matches(data: TrajectoryDataset, path: Path, task: Task, config_hash: str,
                   frame_size: int | None = None) -> None:
    expected = {"version": DATASET_VERSION, "env": task.name, "state_dim": task.state_dim,
                "action_dim": task.action_dim, "config_hash": config_hash, "frame_size": frame_size,
                **frame_style(frame_size)}
    wrong = {k: (data.meta.get(k), v) for k, v in expected.items() if data.meta.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: file has {got!r}, expected {want!r}" for k, (got, want) in wrong.items())
        raise ValueError(f"dataset {path} does not match this config ({detail}); delete it to recollect")
