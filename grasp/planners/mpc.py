"""Closed-loop evaluation: plan in the model, act in the simulator, replan (or plan once)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from grasp.envs.base import Task
from grasp.envs.vector import TaskVector
from grasp.planners.base import Planner, WarmStart, select_problems
from grasp.planners.noise import NoiseStreams
from grasp.utils import Stopwatch


@dataclass
class EpisodeOutcome:
    """What one episode did. Times are wall-clock seconds since the batch started."""

    #: the goal test on the simulator's final state (MPC: the state it stopped at)
    success: bool = False
    #: the goal region reached at any executed env step (inside stacked actions too)
    success_any_step: bool = False
    steps: int = 0
    final_distance: float = float("nan")
    plan_time: float = 0.0
    plan_calls: int = 0
    time_to_success: float = float("nan")
    #: wall time until the env step that first reached the goal region (success_any_step)
    time_to_success_any_step: float = float("nan")
    #: the goal test and distance on the model's prediction of the last plan's final state, from
    #: the state that plan started at (open loop: the whole plan); NaN where the model has no
    #: readout of the task's state
    model_success: float = float("nan")
    model_final_distance: float = float("nan")
    #: per plan() call: true model rollout cost of the returned plan, and iterations run
    final_cost: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    #: plan() calls whose optimisation hit NaN/Inf (the planner fell back to its best finite plan)
    nonfinite_plans: int = 0
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
    goals' observations, the observations after `reset`, and those of some rows after a step."""

    def goals(self, envs: TaskVector, goals: np.ndarray) -> np.ndarray:
        return np.asarray(goals, dtype=np.float32)

    def reset(self, envs: TaskVector, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float32).copy()

    def step(self, rows: np.ndarray, envs: TaskVector, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float32)


class PixelObserver:
    """What a pixel model sees: the last `history` frames of each episode (goal markers hidden),
    and the goal state rendered the same way."""

    def __init__(self, frame_size: int, history: int) -> None:
        self.frame_size, self.history = int(frame_size), int(history)
        self.histories: list = []

    def goals(self, envs: TaskVector, goals: np.ndarray) -> np.ndarray:
        from grasp.envs.observe import goal_observation

        return np.stack([goal_observation(task, goal, self.frame_size, self.history)
                         for task, goal in zip(envs.tasks, goals)])

    def reset(self, envs: TaskVector, states: np.ndarray) -> np.ndarray:
        from grasp.envs.observe import FrameHistory

        self.histories = [FrameHistory(self.frame_size, self.history) for _ in envs.tasks]
        return np.stack([frames.reset(task) for frames, task in zip(self.histories, envs.tasks)])

    def step(self, rows: np.ndarray, envs: TaskVector, states: np.ndarray) -> np.ndarray:
        return np.stack([self.histories[i].push(envs.tasks[i]) for i in rows])


@dataclass
class ExecutedChunk:
    """What the simulators did with one plan() call's first actions, for the divergence check:
    the planned rows (episodes), the model state each plan started from, the actions executed
    (rows, K, A), the states and observations reached after each (rows, K, ...), and how many of
    the K steps each row really ran (it stops at success)."""

    rows: np.ndarray
    start: torch.Tensor
    actions: torch.Tensor
    states: np.ndarray
    observations: np.ndarray
    steps: np.ndarray

    def ran(self) -> np.ndarray:
        """(rows, K) mask of the steps that ran; each row's are a prefix."""
        return np.arange(self.states.shape[1])[None, :] < self.steps[:, None]


def run_mpc(
    tasks: Sequence[Task] | TaskVector,
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
    still running, then the simulators of those episodes execute the first `replan_every`
    actions as a vector (finished episodes are masked out).

    MPC stops an episode at success or after `max_steps` model steps. `open_loop` plans once
    and executes the whole plan; success is then judged on the final state only. The model
    plans from what `observer` shows it (default: the state; pixel models: frame stacks);
    success is always judged on the simulator's true state. `stopwatch` gets the time of the
    sections "plan" (the planner calls), "env" (simulators and observations) and "divergence".

    Random draws: one stream for each plan call's batch from `generator`, or, with `noise_keys`
    (one integer per episode), per-episode streams: an episode's plans then do not depend on which
    other episodes are running.
    """
    envs = tasks if isinstance(tasks, TaskVector) else TaskVector(tasks)
    n = len(envs)
    if noise_keys is not None and len(noise_keys) != n:
        raise ValueError(f"need one noise key per task, got {len(noise_keys)} for {n} tasks")
    if not (len(starts) == len(goals) == n):
        raise ValueError(f"need one start and one goal per task, got {len(starts)}, {len(goals)} for {n} tasks")
    streams = None if noise_keys is None else NoiseStreams.from_seeds(noise_keys, planner.device)
    watch = Stopwatch() if stopwatch is None else stopwatch
    model, device, horizon = planner.world_model, planner.device, planner.horizon
    execute = horizon if open_loop else int(replan_every)
    budget = horizon if open_loop else int(max_steps)
    observer = StateObserver() if observer is None else observer
    goals = np.asarray(goals)
    with watch("env"):
        goal_obs = observer.goals(envs, goals)
        states = envs.reset(starts)
        observations = observer.reset(envs, states)
        start_observations = observations.copy()
    with torch.no_grad():
        goal_model = model.encode(torch.as_tensor(goal_obs, device=device).float())

    active = np.ones(n, dtype=bool)
    steps = np.zeros(n, dtype=int)
    executed = np.zeros((n, budget, planner.action_dim), dtype=np.float32)
    time_to_success = np.full(n, np.nan)
    time_any_step = np.full(n, np.nan)  # first env step in the goal region
    predicted_final = np.full((n, envs.spec.state_dim), np.nan)  # the last plan's predicted final state
    plan_time = np.zeros(n)
    calls: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []  # per call: rows, final costs, iterations, NaN flags
    first_info: dict | None = None  # the first call plans every episode
    warm: WarmStart | None = None  # previous plans of all n episodes, rows of finished ones unused
    chunks: list[ExecutedChunk] = []
    t0 = time.perf_counter()
    bar = tqdm(total=budget, desc="mpc", unit="step", disable=not progress, leave=False, mininterval=1.0)
    steps_done = 0
    while active.any() and steps_done < budget:
        idx = np.flatnonzero(active)
        plan_start = time.perf_counter()
        with watch("plan"):
            with torch.no_grad():
                s0 = model.encode(torch.as_tensor(observations[idx], device=device).float())
            draws = generator if streams is None else streams[torch.as_tensor(idx)].fork(len(calls))
            result = planner.plan(s0, goal_model[idx], warm_start=None if warm is None else warm[idx],
                                  generator=draws)
            actions = result.actions.detach()
            actions_np = actions.cpu().numpy()
        plan_time[idx] += time.perf_counter() - plan_start
        nonfinite = result.info.get("nonfinite")
        calls.append((idx, result.info["final_cost"].numpy(), int(result.info.get("iterations", 0)),
                      np.zeros(len(idx), dtype=bool) if nonfinite is None else nonfinite.numpy()))
        first_info = result.info if first_info is None else first_info
        with watch("divergence"):
            predicted_final[idx] = _predicted_final_state(model, s0, actions)
        shifted = result.warm_start(execute)
        if warm is None:
            lifted = None if shifted.states is None else shifted.states.new_zeros(n, *shifted.states.shape[1:])
            warm = WarmStart(torch.zeros(n, horizon, planner.action_dim, device=device), lifted)
        warm[idx] = shifted

        n_exec = min(execute, budget - steps_done)
        chunk = ExecutedChunk(idx, s0, actions[:, :n_exec], np.zeros((len(idx), n_exec, states.shape[1])),
                              np.zeros((len(idx), n_exec, *observations.shape[1:]), dtype=observations.dtype),
                              np.zeros(len(idx), dtype=int))
        with watch("env"):
            for j in range(n_exec):
                live = active[idx]  # the chunk's rows still running
                if not live.any():
                    break
                rows = idx[live]
                visited = envs.step_chunk(rows, actions_np[live, j])  # (rows, action_chunk, D)
                states[rows] = visited[:, -1]
                reached = rows[envs.success(visited, goals[rows][:, None]).any(1) & np.isnan(time_any_step[rows])]
                time_any_step[reached] = time.perf_counter() - t0
                observations[rows] = observer.step(rows, envs, states[rows])
                chunk.states[live, j], chunk.observations[live, j] = states[rows], observations[rows]
                chunk.steps[live] += 1
                executed[rows, steps[rows]] = actions_np[live, j]
                steps[rows] += 1
                if not open_loop:
                    solved = rows[envs.success(states[rows], goals[rows])]
                    time_to_success[solved] = time.perf_counter() - t0
                    active[solved] = False
        chunks.append(chunk)
        steps_done += n_exec
        bar.update(n_exec)
    bar.close()
    success = np.isfinite(time_to_success)
    if open_loop:
        success = envs.success(states, goals)
        time_to_success[success] = time.perf_counter() - t0
    with watch("divergence"):
        divergence = _measure_divergence(model, envs, chunks, n)
    final_distance = envs.distance(states, goals)
    known = np.isfinite(predicted_final).all(1)
    model_success = np.where(known, envs.success(np.nan_to_num(predicted_final), goals), np.nan)
    model_distance = np.where(known, envs.distance(np.nan_to_num(predicted_final), goals), np.nan)
    outcomes = [EpisodeOutcome(success=bool(success[i]), success_any_step=bool(np.isfinite(time_any_step[i])),
                               steps=int(steps[i]), final_distance=float(final_distance[i]),
                               plan_time=float(plan_time[i]), time_to_success=float(time_to_success[i]),
                               time_to_success_any_step=float(time_any_step[i]),
                               model_success=float(model_success[i]), model_final_distance=float(model_distance[i]),
                               first_plan_info=None if first_info is None else select_problems(first_info, i),
                               actions=list(executed[i, : steps[i]]))
                for i in range(n)]
    for rows, costs, iterations, nonfinite in calls:
        for row, i in enumerate(rows):
            outcomes[i].plan_calls += 1
            outcomes[i].nonfinite_plans += int(nonfinite[row])
            outcomes[i].final_cost.append(float(costs[row]))
            outcomes[i].iterations.append(iterations)
    for i, outcome in enumerate(outcomes):
        outcome.divergence, outcome.max_divergence = divergence["mean"][i], divergence["max"][i]
    if getattr(model, "observation", "state") == "pixels":
        _keep_pixel_trace(outcomes, start_observations, goal_obs, divergence)
    return outcomes


def _predicted_final_state(model, start: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
    """The task state (rows, D) the model predicts at the end of `actions` from `start`, read out
    by the model (`task_state`); NaN rows where it has no readout."""
    with torch.no_grad():
        final = model.task_state(model.rollout(start, actions)[:, -1])
    if final is None:
        return np.nan
    return final.cpu().numpy().astype(np.float64)


def _measure_divergence(model, envs: TaskVector, chunks: list[ExecutedChunk], n: int) -> dict:
    """After the episodes (so it never counts as planning or time to success): replay each
    executed chunk in the model from the state its plan started at and compare. State models:
    the task's distance between predicted and reached states. Pixel models: the RMS over latent
    entries between the predicted latents and the encoded frames that were really seen.

    Returns per-episode mean and max (NaN for episodes that executed nothing) and, for pixel
    models, per chunk the episode of every executed step, its frame and the predicted latent."""
    total, count, worst = np.zeros(n), np.zeros(n), np.full(n, -np.inf)
    pixels = getattr(model, "observation", "state") == "pixels"
    trace: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = []
    with torch.no_grad():
        for chunk in chunks:
            ran = chunk.ran()
            if not ran.any():
                continue
            episodes = np.repeat(chunk.rows, chunk.steps)  # the episode of each executed step, in order
            latents = model.rollout(chunk.start, chunk.actions)
            if pixels:
                predicted = latents[torch.as_tensor(ran, device=latents.device)]
                seen = torch.as_tensor(chunk.observations[ran], device=latents.device).float()
                gaps = (predicted - model.encode(seen)).pow(2).mean(-1).sqrt().cpu().numpy()
                trace.append((episodes, chunk.observations[ran][:, -3:], predicted.cpu()))
            else:
                predicted = model.decode(latents).cpu().numpy().astype(np.float64)
                gaps = envs.distance(predicted, chunk.states)[ran]
            np.add.at(total, episodes, gaps)
            np.add.at(count, episodes, 1)
            np.maximum.at(worst, episodes, gaps)
    seen_any = count > 0
    mean = np.where(seen_any, total / np.maximum(count, 1), np.nan)
    return {"mean": mean, "max": np.where(seen_any, worst, np.nan), "trace": trace}


def _keep_pixel_trace(outcomes: list[EpisodeOutcome], start_observations: np.ndarray, goal_obs: np.ndarray,
                      divergence: dict) -> None:
    """Pixel models' pictures: each episode's start and goal observation, the frames it saw and
    the model's prediction of each, in time order."""
    for i, outcome in enumerate(outcomes):
        outcome.start_observation, outcome.goal_observation = start_observations[i], goal_obs[i]
    for episodes, frames, predicted in divergence["trace"]:
        for k, i in enumerate(episodes):
            outcomes[i].frames.append(frames[k])
            outcomes[i].predicted.append(predicted[k])
