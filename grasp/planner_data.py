"""Planner data: DAgger-style rounds against model exploitation (docs/world_models.md).

Planners reach the goal in the model far more often than in the simulator: they steer into the
places where the model is wrong, which the exploration data never visits. A round plans fresh
start/goal pairs open loop with the round's planner on the current model, replays each plan in
the simulator, continues it with the data policy to the data's episode length, and trains the
model again from scratch on the exploration episodes plus every round's episodes so far (the
validation episodes stay the exploration data's own). Each round's episodes and model are cached
by key like the first model; planned batches are kept as they finish, so an interrupted round
loses at most the batch in flight."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from grasp.eval.mpc import run_mpc
from grasp.eval.protocol import make_protocol
from grasp.eval.runner import batch_generator, side_by_side
from grasp.job import Job, PlannerRound, build_round_planner
from grasp.models.base import WorldModel
from grasp.train.dataset import TrajectoryDataset
from grasp.utils import Stopwatch, atomic_path, derive_seed

log = logging.getLogger(__name__)


def replayed(task, start: np.ndarray, actions: list[np.ndarray], length: int, policy: str, correlation: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """states (length+1, D) and actions (length, A) of one episode: the plan replayed from `start`
    in the simulator, then the data policy up to `length` model steps."""
    from grasp.envs.exploration import policy_steps

    states, taken = [task.reset(start)], []
    for action in actions:
        taken.append(np.asarray(action, dtype=np.float32))
        states.append(task.step(taken[-1].astype(np.float64)))
    rest = length - len(taken)
    if rest > 0:
        for action, state in policy_steps(task, np.random.default_rng(seed), rest, policy, correlation, np.float32):
            taken.append(np.asarray(action, dtype=np.float32))
            states.append(state)
    return np.stack(states), np.stack(taken)


def plan_batch(job: Job, planner, protocol, index: range, pairs_seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """One batch of pairs planned open loop and replayed: states (n, L+1, D), actions (n, L, A),
    and the planner's simulator and model successes on them."""
    cfg, task = job.cfg, job.task
    length, correlation = int(cfg.data.episode_len), float(cfg.data.correlation)
    with side_by_side(job, len(index)) as tasks:
        outcomes = run_mpc(tasks, planner, protocol.starts[index], protocol.goals[index],
                           max_steps=planner.horizon, open_loop=True, generator=batch_generator(job, index[0]))
    pieces = [replayed(task, protocol.starts[i], o.actions, length, job.data_policy, correlation,
                       derive_seed(pairs_seed, 2, i)) for i, o in zip(index, outcomes)]
    for i, o, (states, _) in zip(index, outcomes, pieces):  # the replay is the run the planner was judged on
        if bool(task.success(states[o.steps][None], protocol.goals[i][None])[0]) != o.success:
            raise RuntimeError(f"planner data: pair {i}: the replayed plan does not end as the evaluated one did")
    counts = {"sim_successes": int(sum(o.success for o in outcomes)),
              "model_successes": int(np.nansum([o.model_success for o in outcomes]))}
    return np.stack([p[0] for p in pieces]), np.stack([p[1] for p in pieces]), counts


def load_or_plan(job: Job, planner_round: PlannerRound, name: str, model: WorldModel,
                 watch: Stopwatch) -> TrajectoryDataset:
    """Planner `name`'s episodes of the round: cached in its file, planned batch by batch when
    missing; finished batches wait in <file>.parts/ until they are all there."""
    settings, path = job.cfg.planner_data, dict(planner_round.planned)[name]
    episodes, batch = int(settings.episodes), int(settings.batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            log.info("planner data: reusing round %d's %s episodes %s", planner_round.index, name, path)
            return TrajectoryDataset.load(path)
        parts = Path(str(path) + ".parts")
        parts.mkdir(exist_ok=True)
        protocol = make_protocol(job.task, episodes, planner_round.seed, int(settings.horizon), "rollout",
                                 job.data_policy, float(job.cfg.data.correlation))
        planner = build_round_planner(job, name, model)
        bar = tqdm(total=episodes, desc=f"planner data, round {planner_round.index}, {name}", unit="pair",
                   disable=not job.cfg.progress, mininterval=1.0)
        for first in range(0, episodes, batch):
            index = range(first, min(first + batch, episodes))
            part = parts / f"{first:06d}.npz"
            if not part.exists():
                with watch("planner_data"):
                    states, actions, counts = plan_batch(job, planner, protocol, index, planner_round.seed)
                with atomic_path(part) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, states=states, actions=actions, counts=json.dumps(counts))
            bar.update(len(index))
        bar.close()
        data = _joined(sorted(parts.glob("*.npz")), name, planner_round, episodes, int(settings.horizon))
        data.save(path)
        for part in parts.glob("*.npz"):
            part.unlink()
        parts.rmdir()
        log.info("planner data: round %d: %s", planner_round.index, data.meta["planner_data"])
        return data


def _joined(parts: list[Path], name: str, planner_round: PlannerRound, episodes: int,
            horizon: int) -> TrajectoryDataset:
    states, actions, sim, model = [], [], 0, 0
    for part in parts:
        with np.load(part) as saved:
            states.append(saved["states"])
            actions.append(saved["actions"])
            counts = json.loads(str(saved["counts"]))
        sim, model = sim + counts["sim_successes"], model + counts["model_successes"]
    stats = {"round": planner_round.index, "planner": name, "pairs": episodes, "horizon": horizon,
             "sim_success": sim / episodes,
             "model_success": model / episodes}
    return TrajectoryDataset(np.concatenate(states).astype(np.float32), np.concatenate(actions).astype(np.float32),
                             {"source": "planner_data", "planner_data": stats})


def held_out_fraction(exploration_episodes: int, added_episodes: int, val_fraction: float) -> float:
    """The validation fraction that holds out the exploration data's own validation episodes (its
    last ones) once `added_episodes` are put before them."""
    n_val = max(1, int(round(exploration_episodes * val_fraction)))  # TrajectoryDataset.split's rounding
    fraction = n_val / (exploration_episodes + added_episodes)
    if max(1, int(round((exploration_episodes + added_episodes) * fraction))) != n_val:
        raise AssertionError(f"planner data: {fraction} would not hold out the same {n_val} validation episodes")
    return fraction


def merged(exploration: TrajectoryDataset, rounds: list[TrajectoryDataset], val_fraction: float) -> TrajectoryDataset:
    """The exploration training episodes, then the rounds', then the exploration validation
    episodes last, where held_out_fraction's split finds them: validation is unchanged."""
    train, val = exploration.split(val_fraction)
    states = np.concatenate([train.states, *(r.states.astype(train.states.dtype) for r in rounds), val.states])
    actions = np.concatenate([train.actions, *(r.actions.astype(train.actions.dtype) for r in rounds), val.actions])
    meta = {**exploration.meta, "planner_episodes": sum(len(r.states) for r in rounds)}
    return TrajectoryDataset(states, actions, meta)


def round_metrics(rounds: list[TrajectoryDataset]) -> dict[str, float]:
    """Each round's planner success on its own pairs, simulator and model, stored with the model."""
    metrics = {}
    for data in rounds:
        stats = data.meta["planner_data"]
        prefix = f"planner_data/round{stats['round']}_{stats['planner']}"
        metrics[f"{prefix}_sim_success"] = float(stats["sim_success"])
        metrics[f"{prefix}_model_success"] = float(stats["model_success"])
    return metrics
