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
from grasp.planners.base import PlanInfo, Planner, WarmStart
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
    first_plan_info: PlanInfo | None = None
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
    plans from what `observer` shows it (default: the model's own, `model.observer()`);
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
    loop = _MPCLoop(envs, planner, np.asarray(goals), open_loop, int(replan_every), int(max_steps),
                    planner.world_model.observer() if observer is None else observer,
                    Stopwatch() if stopwatch is None else stopwatch)
    streams = None if noise_keys is None else NoiseStreams.from_seeds(noise_keys, planner.device)
    loop.reset(starts)
    bar = tqdm(total=loop.budget, desc="mpc", unit="step", disable=not progress, leave=False, mininterval=1.0)
    steps_done = 0
    while loop.active.any() and steps_done < loop.budget:
        idx = np.flatnonzero(loop.active)
        draws = generator if streams is None else streams[torch.as_tensor(idx)].fork(len(loop.calls))
        s0, actions, actions_np = loop.plan(idx, draws)
        n_exec = min(loop.execute, loop.budget - steps_done)
        loop.act(idx, s0, actions, actions_np, n_exec)
        steps_done += n_exec
        bar.update(n_exec)
    bar.close()
    return loop.outcomes()


class _MPCLoop:
    """The state of a batch of episodes under MPC, one method per phase of `run_mpc`."""

    def __init__(self, envs: TaskVector, planner: Planner, goals: np.ndarray, open_loop: bool, replan_every: int,
                 max_steps: int, observer, watch: Stopwatch) -> None:
        self.envs, self.planner, self.goals, self.open_loop = envs, planner, goals, open_loop
        self.observer, self.watch = observer, watch
        self.model, self.device, self.horizon = planner.world_model, planner.device, planner.horizon
        self.execute = self.horizon if open_loop else replan_every
        self.budget = self.horizon if open_loop else max_steps
        n = len(envs)
        self.active = np.ones(n, dtype=bool)
        self.steps = np.zeros(n, dtype=int)
        self.executed = np.zeros((n, self.budget, planner.action_dim), dtype=np.float32)
        self.time_to_success = np.full(n, np.nan)
        self.time_any_step = np.full(n, np.nan)  # first env step in the goal region
        self.predicted_final = np.full((n, envs.spec.state_dim), np.nan)  # the last plan's predicted final state
        self.plan_time = np.zeros(n)
        self.calls: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []  # rows, final costs, iterations, NaN flags
        self.first_info = None  # the first call plans every episode
        self.warm: WarmStart | None = None  # previous plans of all n episodes, rows of finished ones unused
        self.chunks: list[ExecutedChunk] = []

    def reset(self, starts: np.ndarray) -> None:
        with self.watch("env"):
            self.goal_obs = self.observer.goals(self.envs, self.goals)
            self.states = self.envs.reset(starts)
            self.observations = self.observer.reset(self.envs, self.states)
            self.start_observations = self.observations.copy()
        with torch.no_grad():
            self.goal_model = self.model.encode(torch.as_tensor(self.goal_obs, device=self.device).float())
        self.t0 = time.perf_counter()

    def plan(self, idx: np.ndarray, draws) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """One batched plan() for the running episodes `idx`; records its costs and warm start.
        Returns the start states, the actions and their host copy."""
        plan_start = time.perf_counter()
        with self.watch("plan"):
            with torch.no_grad():
                s0 = self.model.encode(torch.as_tensor(self.observations[idx], device=self.device).float())
            result = self.planner.plan(s0, self.goal_model[idx], generator=draws,
                                       warm_start=None if self.warm is None else self.warm[idx])
            actions = result.actions.detach()
            actions_np = actions.cpu().numpy()
        self.plan_time[idx] += time.perf_counter() - plan_start
        nonfinite = result.info.get("nonfinite")
        self.calls.append((idx, result.info["final_cost"].numpy(), int(result.info.get("iterations", 0)),
                           np.zeros(len(idx), dtype=bool) if nonfinite is None else nonfinite.numpy()))
        self.first_info = result.info if self.first_info is None else self.first_info
        with self.watch("divergence"):
            self.predicted_final[idx] = _predicted_final_state(self.model, s0, actions)
        shifted = result.warm_start(self.execute)
        if self.warm is None:
            lifted = None if shifted.states is None else shifted.states.new_zeros(len(self.active), *shifted.states.shape[1:])
            self.warm = WarmStart(torch.zeros(len(self.active), self.horizon, self.planner.action_dim, device=self.device),
                                  lifted)
        self.warm[idx] = shifted
        return s0, actions, actions_np

    def act(self, idx: np.ndarray, s0: torch.Tensor, actions: torch.Tensor, actions_np: np.ndarray,
            n_exec: int) -> None:
        """The first `n_exec` planned actions in the simulators of the episodes still running."""
        envs, goals, states, observations = self.envs, self.goals, self.states, self.observations
        chunk = ExecutedChunk(idx, s0, actions[:, :n_exec], np.zeros((len(idx), n_exec, states.shape[1])),
                              np.zeros((len(idx), n_exec, *observations.shape[1:]), dtype=observations.dtype),
                              np.zeros(len(idx), dtype=int))
        with self.watch("env"):
            for j in range(n_exec):
                live = self.active[idx]  # the chunk's rows still running
                if not live.any():
                    break
                rows = idx[live]
                visited = envs.step_chunk(rows, actions_np[live, j])  # (rows, action_chunk, D)
                states[rows] = visited[:, -1]
                reached = rows[envs.success(visited, goals[rows][:, None]).any(1) & np.isnan(self.time_any_step[rows])]
                self.time_any_step[reached] = time.perf_counter() - self.t0
                observations[rows] = self.observer.step(rows, envs, states[rows])
                chunk.states[live, j], chunk.observations[live, j] = states[rows], observations[rows]
                chunk.steps[live] += 1
                self.executed[rows, self.steps[rows]] = actions_np[live, j]
                self.steps[rows] += 1
                if not self.open_loop:
                    solved = rows[envs.success(states[rows], goals[rows])]
                    self.time_to_success[solved] = time.perf_counter() - self.t0
                    self.active[solved] = False
        self.chunks.append(chunk)

    def outcomes(self) -> list[EpisodeOutcome]:
        envs, goals, states, n = self.envs, self.goals, self.states, len(self.envs)
        success = np.isfinite(self.time_to_success)
        if self.open_loop:
            success = envs.success(states, goals)
            self.time_to_success[success] = time.perf_counter() - self.t0
        with self.watch("divergence"):
            divergence = _measure_divergence(self.model, self.observer, envs, self.chunks, n)
        final_distance = envs.distance(states, goals)
        known = np.isfinite(self.predicted_final).all(1)
        predicted = np.nan_to_num(self.predicted_final)
        model_success = np.where(known, envs.success(predicted, goals), np.nan)
        model_distance = np.where(known, envs.distance(predicted, goals), np.nan)
        outcomes = [EpisodeOutcome(success=bool(success[i]), success_any_step=bool(np.isfinite(self.time_any_step[i])),
                                   steps=int(self.steps[i]), final_distance=float(final_distance[i]),
                                   plan_time=float(self.plan_time[i]), time_to_success=float(self.time_to_success[i]),
                                   time_to_success_any_step=float(self.time_any_step[i]),
                                   model_success=float(model_success[i]), model_final_distance=float(model_distance[i]),
                                   first_plan_info=None if self.first_info is None else self.first_info.select(i),
                                   actions=list(self.executed[i, : self.steps[i]]))
                    for i in range(n)]
        for rows, costs, iterations, nonfinite in self.calls:
            for row, i in enumerate(rows):
                outcomes[i].plan_calls += 1
                outcomes[i].nonfinite_plans += int(nonfinite[row])
                outcomes[i].final_cost.append(float(costs[row]))
                outcomes[i].iterations.append(iterations)
        for i, outcome in enumerate(outcomes):
            outcome.divergence, outcome.max_divergence = divergence["mean"][i], divergence["max"][i]
        if divergence["trace"]:
            _keep_trace(outcomes, self.start_observations, self.goal_obs, divergence)
        return outcomes


def _predicted_final_state(model, start: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
    """The task state (rows, D) the model predicts at the end of `actions` from `start`, read out
    by the model (`task_state`); NaN rows where it has no readout."""
    with torch.no_grad():
        final = model.task_state(model.rollout(start, actions)[:, -1])
    if final is None:
        return np.nan
    return final.cpu().numpy().astype(np.float64)


def _measure_divergence(model, observer, envs: TaskVector, chunks: list[ExecutedChunk], n: int) -> dict:
    """After the episodes (so it never counts as planning or time to success): replay each
    executed chunk in the model from the state its plan started at and compare each predicted
    step with what the simulator then showed (`model.prediction_gap`: the task's distance for
    state models, the latent RMS against the encoded frames for pixel models).

    Returns per-episode mean and max (NaN for episodes that executed nothing) and, for observers
    that show frames, per chunk the episode of every executed step, its frame and the predicted
    model state."""
    total, count, worst = np.zeros(n), np.zeros(n), np.full(n, -np.inf)
    trace: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = []
    with torch.no_grad():
        for chunk in chunks:
            ran = chunk.ran()
            if not ran.any():
                continue
            episodes = np.repeat(chunk.rows, chunk.steps)  # the episode of each executed step, in order
            latents = model.rollout(chunk.start, chunk.actions)
            predicted = latents[torch.as_tensor(ran, device=latents.device)]
            seen_np = chunk.observations[ran]
            seen = torch.as_tensor(seen_np, device=latents.device).float()
            gaps = model.prediction_gap(predicted, seen, chunk.states[ran], envs.distance)
            if observer.current_frame(seen_np[0]) is not None:  # an observer that shows frames
                trace.append((episodes, np.stack([observer.current_frame(obs) for obs in seen_np]), predicted.cpu()))
            np.add.at(total, episodes, gaps)
            np.add.at(count, episodes, 1)
            np.maximum.at(worst, episodes, gaps)
    seen_any = count > 0
    mean = np.where(seen_any, total / np.maximum(count, 1), np.nan)
    return {"mean": mean, "max": np.where(seen_any, worst, np.nan), "trace": trace}


def _keep_trace(outcomes: list[EpisodeOutcome], start_observations: np.ndarray, goal_obs: np.ndarray,
                divergence: dict) -> None:
    """Pictures of models that see frames: each episode's start and goal observation, the frames it saw and
    the model's prediction of each, in time order."""
    for i, outcome in enumerate(outcomes):
        outcome.start_observation, outcome.goal_observation = start_observations[i], goal_obs[i]
    for episodes, frames, predicted in divergence["trace"]:
        for k, i in enumerate(episodes):
            outcomes[i].frames.append(frames[k])
            outcomes[i].predicted.append(predicted[k])
