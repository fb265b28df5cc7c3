"""Closed-loop evaluation: plan in the model, act in the simulator, replan (or plan once)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from grasp.envs.base import Task
from grasp.planners.base import Planner, WarmStart, select_problems
from grasp.planners.noise import NoiseStreams
from grasp.utils import Stopwatch


@dataclass
class EpisodeOutcome:
    """What one episode did. Times are wall-clock seconds since the batch started."""

    success: bool = False
    steps: int = 0
    final_distance: float = float("nan")
    plan_time: float = 0.0
    plan_calls: int = 0
    time_to_success: float = float("nan")
    #: per plan() call: true model rollout cost of the returned plan, and iterations run
    final_cost: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    #: this episode's slice of the first plan() call's info (per-iteration curves)
    first_plan_info: dict | None = None
    #: model-vs-simulator divergence of the executed plans: task.distance between the state the
    #: model predicted after each executed action (from the state the plan started at) and the
    #: state the simulator reached; mean and max over the executed steps
    divergence: float = float("nan")
    max_divergence: float = float("nan")
    #: the actions executed in the simulator, in order (for replay and videos)
    actions: list[np.ndarray] = field(default_factory=list)
    #: pixel models: the observation at the start and the goal's, the current frame (3, S, S)
    #: seen after each executed step, and the model's latent prediction of each of those steps
    start_observation: np.ndarray | None = None
    goal_observation: np.ndarray | None = None
    frames: list[np.ndarray] = field(default_factory=list)
    predicted: list[torch.Tensor] = field(default_factory=list)


class StateObserver:
    """What a state model sees: the task's state vector. The interface of every observer: the
    goals' observations, the observations after `reset`, and one episode's after a step."""

    def goals(self, tasks: list[Task], goals: np.ndarray) -> np.ndarray:
        return np.asarray(goals, dtype=np.float32)

    def reset(self, tasks: list[Task], states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float32).copy()

    def step(self, i: int, task: Task, state: np.ndarray) -> np.ndarray:
        return state


class PixelObserver:
    """What a pixel model sees: the last `history` frames of each episode (goal markers hidden),
    and the goal state rendered the same way."""

    def __init__(self, frame_size: int, history: int) -> None:
        self.frame_size, self.history = int(frame_size), int(history)
        self.histories: list = []

    def goals(self, tasks: list[Task], goals: np.ndarray) -> np.ndarray:
        from grasp.envs.observe import goal_observation

        return np.stack([goal_observation(task, goal, self.frame_size, self.history)
                         for task, goal in zip(tasks, goals)])

    def reset(self, tasks: list[Task], states: np.ndarray) -> np.ndarray:
        from grasp.envs.observe import FrameHistory

        self.histories = [FrameHistory(self.frame_size, self.history) for _ in tasks]
        return np.stack([frames.reset(task) for frames, task in zip(self.histories, tasks)])

    def step(self, i: int, task: Task, state: np.ndarray) -> np.ndarray:
        return self.histories[i].push(task)


def run_mpc(
    tasks: list[Task],
    planner: Planner,
    starts: np.ndarray,
    goals: np.ndarray,
    max_steps: int,
    replan_every: int = 1,
    open_loop: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
    observer=None,
    stopwatch: Stopwatch | None = None,
    noise_keys: Sequence[int] | None = None,
) -> list[EpisodeOutcome]:
    """Run len(tasks) episodes side by side: one batched plan() per MPC step for the episodes
    still running, then each simulator executes the first `replan_every` actions.

    MPC stops an episode at success or after `max_steps` model steps. `open_loop` plans once
    and executes the whole plan; success is then judged on the final state only. The model
    plans from what `observer` shows it (default: the state; pixel models: frame stacks);
    success is always judged on the simulator's true state. `stopwatch` gets the time of the
    sections "plan" (the planner calls), "env" (simulators and observations) and "divergence".

    Random draws: one stream for each plan call's batch from `generator`, or, with `noise_keys`
    (one integer per episode), per-episode streams: an episode's plans then do not depend on which
    other episodes are running.
    """
    if noise_keys is not None and len(noise_keys) != len(tasks):
        raise ValueError(f"need one noise key per task, got {len(noise_keys)} for {len(tasks)} tasks")
    streams = None if noise_keys is None else NoiseStreams.from_seeds(noise_keys, planner.device)
    calls = 0
    watch = Stopwatch() if stopwatch is None else stopwatch
    n = len(tasks)
    if not (len(starts) == len(goals) == n):
        raise ValueError(f"need one start and one goal per task, got {len(starts)}, {len(goals)} for {n} tasks")
    model = planner.world_model
    device = planner.device
    horizon = planner.horizon
    execute = horizon if open_loop else int(replan_every)
    budget = horizon if open_loop else int(max_steps)
    observer = StateObserver() if observer is None else observer
    with watch("env"):
        goal_obs = observer.goals(tasks, goals)
        states = np.stack([task.reset(start) for task, start in zip(tasks, starts)])
        observations = observer.reset(tasks, states)
    with torch.no_grad():
        goal_model = model.encode(torch.as_tensor(goal_obs, device=device).float())
    outcomes = [EpisodeOutcome() for _ in range(n)]
    if getattr(model, "observation", "state") == "pixels":
        for i, outcome in enumerate(outcomes):
            outcome.start_observation, outcome.goal_observation = observations[i].copy(), goal_obs[i]
    active = np.ones(n, dtype=bool)
    warm: WarmStart | None = None  # previous plans of all n episodes, rows of finished ones unused
    t0 = time.perf_counter()
    bar = tqdm(total=budget, desc="mpc", unit="step", disable=not progress, leave=False, mininterval=1.0)
    steps_done = 0
    chunks: list[tuple[np.ndarray, torch.Tensor, torch.Tensor, list[list[np.ndarray]]]] = []
    while active.any() and steps_done < budget:
        idx = np.flatnonzero(active)
        plan_start = time.perf_counter()
        with watch("plan"):
            with torch.no_grad():
                s0 = model.encode(torch.as_tensor(observations[idx], device=device).float())
            draws = generator if streams is None else streams[torch.as_tensor(idx)].fork(calls)
            result = planner.plan(s0, goal_model[idx], warm_start=None if warm is None else warm[idx],
                                  generator=draws)
            calls += 1
            actions = result.actions.detach()
            actions_np = actions.cpu().numpy()
        plan_seconds = time.perf_counter() - plan_start
        shifted = result.warm_start(execute)
        if warm is None:
            lifted = None if shifted.states is None else shifted.states.new_zeros(n, *shifted.states.shape[1:])
            warm = WarmStart(torch.zeros(n, horizon, planner.action_dim, device=device), lifted)
        warm[idx] = shifted
        final_cost = result.info["final_cost"]
        for row, i in enumerate(idx):
            outcomes[i].plan_time += plan_seconds
            outcomes[i].plan_calls += 1
            outcomes[i].final_cost.append(float(final_cost[row]))
            outcomes[i].iterations.append(int(result.info.get("iterations", 0)))
            if outcomes[i].first_plan_info is None:
                outcomes[i].first_plan_info = select_problems(result.info, row)
        n_exec = min(execute, budget - steps_done)
        reached: list[list[np.ndarray]] = [[] for _ in idx]  # (state, observation) after each step
        chunks.append((idx, s0, actions[:, :n_exec], reached))
        with watch("env"):
            for j in range(n_exec):
                for row, i in enumerate(idx):
                    if not active[i]:
                        continue
                    states[i] = tasks[i].step(actions_np[row, j])
                    observations[i] = observer.step(i, tasks[i], states[i])
                    reached[row].append((states[i].copy(), observations[i].copy()))
                    outcomes[i].actions.append(actions_np[row, j])
                    outcomes[i].steps += 1
                    if not open_loop and tasks[i].success(states[i], goals[i]):
                        outcomes[i].success = True
                        outcomes[i].time_to_success = time.perf_counter() - t0
                        active[i] = False
        steps_done += n_exec
        bar.update(n_exec)
    bar.close()
    with watch("divergence"):
        _measure_divergence(model, tasks, chunks, outcomes)
    for i, task in enumerate(tasks):
        outcomes[i].final_distance = float(task.distance(states[i], goals[i]))
        if open_loop and bool(task.success(states[i], goals[i])):
            outcomes[i].success = True
            outcomes[i].time_to_success = time.perf_counter() - t0
    return outcomes


def _measure_divergence(model, tasks: list[Task], chunks, outcomes: list[EpisodeOutcome]) -> None:
    """After the episodes (so it never counts as planning or time to success): replay each
    executed chunk in the model from the state its plan started at and compare. State models:
    the task's distance between predicted and reached states. Pixel models: the RMS over latent
    entries between the predicted latents and the encoded frames that were really seen."""
    gaps: list[list[float]] = [[] for _ in outcomes]
    pixels = getattr(model, "observation", "state") == "pixels"
    with torch.no_grad():
        for idx, s0, actions, reached in chunks:
            latents = model.rollout(s0, actions)
            predicted = None if pixels else model.decode(latents).cpu().numpy().astype(np.float64)
            for row, i in enumerate(idx):
                if not reached[row]:
                    continue
                if pixels:
                    seen = torch.as_tensor(np.stack([obs for _, obs in reached[row]]), device=latents.device)
                    predicted_latents = latents[row, : len(seen)]
                    gap = (predicted_latents - model.encode(seen.float())).pow(2).mean(-1).sqrt()
                    gaps[i].extend(gap.cpu().tolist())
                    outcomes[i].frames.extend(obs[-3:] for _, obs in reached[row])
                    outcomes[i].predicted.extend(predicted_latents.cpu())
                else:
                    real = np.stack([state for state, _ in reached[row]])
                    gaps[i].extend(np.atleast_1d(tasks[i].distance(predicted[row, : len(real)], real)).tolist())
    for outcome, episode_gaps in zip(outcomes, gaps):
        if episode_gaps:
            outcome.divergence = float(np.mean(episode_gaps))
            outcome.max_divergence = float(np.max(episode_gaps))
