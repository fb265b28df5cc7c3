"""Optimizer-agnostic planner interface.

Every planner is built with ``hydra.utils.instantiate(cfg.planner, world_model=wm)`` and
plans a batch of B independent problems in one call, batch-first:

    plan(state0 (B, D), goal (B, D), warm_start=None, generator=None) -> PlanResult

``state0`` and ``goal`` live in the world model's (normalised) state space. The returned
actions are in the task's action space, inside [action_low, action_high]. ``warm_start`` is
a (B, T, A) action tensor or a :class:`WarmStart` (e.g. the previous MPC plan, shifted).

The base class owns what every planner shares: input checks, warm starts, restarts (R plans
per problem in one batch, the best kept by its true rollout cost) and the final cost; a
planner implements :meth:`Planner._optimize` on the expanded batch of B * R problems.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.noise import NoiseStreams
from grasp.planners.schedules import check_range
from grasp.precision import autocast_dtype, precision_name


def import_optimizer_machinery() -> None:
    """Pay torch's one-time import of torch._dynamo, which it makes when a process builds its
    first optimizer (about 0.9 s on one CPU core), so it lands in set-up rather than in the
    first timed plan or training step."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


class PlanInfo(dict):
    """A plan's diagnostics, read as a dict (info["sigma"]), with every tensor entry declared by
    the planner that wrote it, so readers never guess from a shape:

    - curves (`add_curves`): one value per optimisation iteration, (iters,) for the whole batch
      or (iters, B) per problem;
    - events (`add_events`): values at some iterations only, (k,) or (k, B), whose iterations
      are the entry named `at`;
    - per-problem values (`add_per_problem`): (..., B), one per problem on the last axis
      (final_cost, nonfinite, restart_costs (R, B), ...);
    - snapshots (`add_snapshots`): a list of (B, T-1, D) states and the iterations they were taken at;
    - anything set plainly (info["iterations"] = n) is batch-wide.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curves: set[str] = set()
        self.events: dict[str, str] = {}  # event -> the entry holding its iterations
        self.per_problem: set[str] = set()

    def add_curves(self, per_problem: bool, **curves: Any) -> None:
        self.update(curves)
        self.curves.update(curves)
        if per_problem:
            self.per_problem.update(curves)

    def add_events(self, at: str, per_problem: bool, **events: Any) -> None:
        self.update(events)
        self.events.update(dict.fromkeys(events, at))
        if per_problem:
            self.per_problem.update(events)

    def add_per_problem(self, **values: Any) -> None:
        self.update(values)
        self.per_problem.update(values)

    def add_snapshots(self, snapshots: list[torch.Tensor], iterations: list[int]) -> None:
        """States after some iterations (a list: the horizon may grow between them)."""
        if snapshots:
            self.update(snapshots=snapshots, snapshot_iteration=iterations[: len(snapshots)])

    def per_problem_series(self) -> list[str]:
        """The curves and events with a value per problem: where a problem's NaN/Inf shows."""
        return [key for key in self.per_problem if key in self.curves or key in self.events]

    def select(self, rows) -> "PlanInfo":
        """The info of some problems (`rows`: an index tensor, or an int for one problem):
        per-problem entries indexed, batch-wide ones kept."""
        picked = PlanInfo()
        picked.curves, picked.events = set(self.curves), dict(self.events)
        picked.per_problem = set(self.per_problem) if not isinstance(rows, int) else set()
        for key, value in self.items():
            if key == "snapshots":
                picked[key] = [snapshot[rows] for snapshot in value]
            else:
                picked[key] = value[..., rows] if key in self.per_problem else value
        return picked


@dataclass
class WarmStart:
    """Initial guess for a plan: actions (B, T, A) and, for lifted planners, virtual states
    s_1..s_{T-1} (B, T-1, D)."""

    actions: torch.Tensor
    states: torch.Tensor | None = None

    def __getitem__(self, rows) -> "WarmStart":
        return WarmStart(self.actions[rows], None if self.states is None else self.states[rows])

    def __setitem__(self, rows, other: "WarmStart") -> None:
        self.actions[rows] = other.actions
        if self.states is not None and other.states is not None:
            self.states[rows] = other.states

    def shifted(self, executed: int) -> "WarmStart":
        """Drop what was executed; actions pad with zeros, states with their last value."""
        if executed <= 0:
            return self
        states = self.states
        if states is not None and states.shape[1] > 0:
            k = min(executed, states.shape[1])
            states = torch.cat([states[:, k:], states[:, -1:].expand(-1, k, -1)], dim=1)
        return WarmStart(shift_plan(self.actions, executed), states)


@dataclass
class PlanResult:
    """actions (B, T, A); states: final virtual states (B, T-1, D) of lifted planners, else None.

    info (a PlanInfo: every entry declared a curve, an event, per problem or batch-wide) holds
    the planner's curves; per problem final_cost (the true rollout cost of the returned actions)
    and nonfinite; with restarts, restart_costs (R, B), restart_cost_std and best_restart;
    plan_time (seconds) and iterations (the iterations actually run). With the `snapshots` knob,
    "snapshots" lists (B, T-1, D) states after the iterations in "snapshot_iteration": a lifted
    planner's virtual states, a shooting planner's model prediction along its current actions.
    Tensors are on the CPU.
    """

    actions: torch.Tensor
    info: PlanInfo = field(default_factory=PlanInfo)
    states: torch.Tensor | None = None
    #: (B, T, A) the planner's best plan that the model gave finite values for, where it keeps one:
    #: what a problem whose returned plan hits NaN/Inf gets before the initial guess is tried
    fallback: torch.Tensor | None = None

    def warm_start(self, executed: int) -> WarmStart:
        """Warm start for the next MPC step after executing the first `executed` actions."""
        return WarmStart(self.actions.detach(), None if self.states is None else self.states.detach()).shifted(executed)


class Planner:
    """Base class: holds the model, horizon, action bounds, goal-dimension weights and the knobs
    every planner shares (restarts, restart_noise, warm_start, tolerance); subclasses take
    their own knobs and pass these on as ``**base``."""

    #: whether plan() builds torch optimizers (the gradient planners; see warm_up)
    uses_optimizer: bool = False

    #: dtype the optimisation autocasts to (the run's `precision`: set by grasp.job.build_planner); None = fp32
    autocast_dtype: torch.dtype | None = None
    #: dtype of the wide batched calls of a planner that also makes small serial ones (GRASP's
    #: lifted iterations against its sync); None = autocast_dtype's
    wide_autocast_dtype: torch.dtype | None = None
    #: whether the optimisation's model calls are wide batched forward passes (samples x problems
    #: rows), which bf16 speeds up where the hardware has it: what `precision=auto` asks
    wide_calls: bool = False

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
        restarts: int = 1,
        restart_noise: float = 0.3,
        warm_start: bool = True,
        tolerance: float = 0.0,
        snapshots: int = 0,
        disagreement_weight: float = 0.0,
    ) -> None:
        self.horizon = check_range("horizon", horizon, 1, integer=True)
        self.world_model = world_model
        self.action_dim = world_model.action_dim
        self.state_dim = world_model.state_dim
        self.action_low = self._per_action("action_low", action_low)
        self.action_high = self._per_action("action_high", action_high)
        if not bool((self.action_low < self.action_high).all()):
            raise ValueError(f"planner action bounds need action_low < action_high, got "
                             f"{self.action_low.tolist()} and {self.action_high.tolist()}")
        if state_weights is None:
            self.state_weights = torch.ones(self.state_dim, device=self.device)
        else:
            self.state_weights = torch.as_tensor(state_weights, dtype=torch.float32, device=self.device)
            if self.state_weights.shape != (self.state_dim,):
                raise ValueError(
                    f"planner.state_weights must have {self.state_dim} entries (the model's state_dim), "
                    f"got {list(self.state_weights.shape)}"
                )
            check_range("state_weights", float(self.state_weights.min()), 0.0)
        self.restarts = check_range("restarts", restarts, 1, integer=True)
        self.restart_noise = check_range("restart_noise", restart_noise, 0.0)
        self.use_warm_start = bool(warm_start)
        self.tolerance = check_range("tolerance", tolerance, 0.0)
        self.snapshots = check_range("snapshots", snapshots, 0, integer=True)
        self.disagreement_weight = check_range("disagreement_weight", disagreement_weight, 0.0)
        if self.disagreement_weight > 0 and not world_model.reports_disagreement:
            raise ValueError(f"planner.disagreement_weight={disagreement_weight} needs a world model that reports "
                             f"its members' disagreement (world_model=ensemble); {type(world_model).__name__} does not")

    def _per_action(self, key: str, value) -> torch.Tensor:
        bound = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        if bound.ndim > 1 or (bound.ndim == 1 and bound.shape[0] not in (1, self.action_dim)):
            raise ValueError(f"planner.{key} needs 1 or {self.action_dim} entries (the model's action_dim), "
                             f"got {list(bound.shape)}")
        return bound.expand(self.action_dim).clone()

    @property
    def device(self) -> torch.device:
        return self.world_model.device

    def warm_up(self) -> None:
        """Pay the one-time costs of a process's first plan() here, before plans are timed (for
        gradient planners, import_optimizer_machinery)."""
        if self.uses_optimizer:
            import_optimizer_machinery()

    def use_precision(self, precision: str) -> None:
        """Autocast as the run's `precision` says (`auto`: bf16 only for wide calls on a CPU with
        native bf16, grasp.precision.autocast_dtype)."""
        self.autocast_dtype = autocast_dtype(precision, self.device, self.wide_calls)
        self.wide_autocast_dtype = autocast_dtype(precision, self.device, True)

    @property
    def precision(self) -> str:
        """What the optimisation's model calls ran in (the results' `precision` column)."""
        return precision_name(self.autocast_dtype)

    # ---- the planning call ------------------------------------------------------------------
    def plan(
        self,
        state0: torch.Tensor,
        goal: torch.Tensor,
        warm_start: torch.Tensor | WarmStart | None = None,
        generator: torch.Generator | NoiseStreams | None = None,
    ) -> PlanResult:
        """`generator`: where random draws come from. A torch.Generator is one stream for the whole
        batch; NoiseStreams (one per problem) make each problem's plan independent of the batch."""
        start = time.perf_counter()
        state0, goal = self.check_problem(state0, goal)
        B, R = state0.shape[0], self.restarts
        warm = self.check_warm_start(warm_start, B)
        if isinstance(generator, NoiseStreams):
            if generator.rows != B:
                raise ValueError(f"plan() got NoiseStreams of {generator.rows} rows for {B} problems")
            generator = generator.expand(R) if R > 1 else generator
        actions = torch.zeros(B, self.horizon, self.action_dim, device=self.device) if warm is None else warm.actions
        states = None if warm is None else warm.states
        if R > 1:  # problem b's restarts are rows b*R .. b*R + R-1
            state0, goal, actions = (x.repeat_interleave(R, dim=0) for x in (state0, goal, actions))
            states = None if states is None else states.repeat_interleave(R, dim=0)
            spread = self.restart_noise * sample_normal(actions.shape, generator, self.device)
            spread.view(B, R, *actions.shape[1:])[:, 0] = 0.0  # restart 0 is the plain initial guess
            actions = self.clamp_actions(actions + spread)
        initial = actions.detach().clone()
        with torch.enable_grad(), self.world_model.frozen(), self._autocast():  # the MPC loop may hold no_grad
            result = self._optimize(state0, goal, actions, states, generator)
        with torch.no_grad():
            actions = self.clamp_actions(result.actions.detach().float())
            cost = self.rollout_cost(state0, actions, goal)
            candidates = ([] if result.fallback is None else [self.clamp_actions(result.fallback.detach().float())])
            actions, cost, nonfinite = self._finite_fallback(result.info, actions, cost, candidates + [initial],
                                                             state0, goal)
        result = replace(result, actions=actions, fallback=None)
        result.info.add_per_problem(final_cost=cost.cpu(), nonfinite=nonfinite)
        if R > 1:
            result = self._best_restart(result, B, R)
        result.info["plan_time"] = time.perf_counter() - start
        return result

    def _finite_fallback(self, info: PlanInfo, actions: torch.Tensor, cost: torch.Tensor,
                         candidates: list[torch.Tensor], state0: torch.Tensor, goal: torch.Tensor,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """NaN/Inf from the model or in the optimisation: a problem whose per-iteration curves, plan
        or true cost hold one, or that the planner flagged itself (info["nonfinite"]), is flagged
        (the (N,) bool `nonfinite`, on the CPU). One whose plan or cost is not finite gets the
        first of `candidates` (the planner's fallback, then the initial guess: the warm start or
        zeros) whose cost is finite, so MPC always executes a finite plan."""
        N = actions.shape[0]
        broken = ~(torch.isfinite(actions).flatten(1).all(1) & torch.isfinite(cost))
        flagged = broken.cpu() | info.get("nonfinite", torch.zeros(N, dtype=torch.bool))  # planners may flag too
        for key in info.per_problem_series():
            flagged = flagged | ~torch.isfinite(info[key]).all(0)
        for candidate in candidates:
            if not bool(broken.any()):
                break
            candidate_cost = self.rollout_cost(state0, candidate, goal)
            use = broken & (torch.isfinite(candidate_cost) | (candidate is candidates[-1]))  # the last one in any case
            actions = torch.where(use[:, None, None], candidate, actions)
            cost = torch.where(use, candidate_cost, cost)
            broken = broken & ~use
        return actions, cost, flagged

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision of the optimisation (the run's `precision`); the final cost stays fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _optimize(self, state0: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor,
                  states: torch.Tensor | None, generator: torch.Generator | None) -> PlanResult:
        """Optimise N problems (restarts already expanded) from the initial actions (N, T, A)
        and, when warm-started, virtual states (N, T-1, D); return the plan and its curves."""
        raise NotImplementedError

    @staticmethod
    def _best_restart(result: PlanResult, B: int, R: int) -> PlanResult:
        """Keep each problem's restart with the lowest true rollout cost; report the spread."""
        costs = result.info["final_cost"].view(B, R)
        best = torch.nan_to_num(costs, nan=torch.inf).argmin(dim=1)
        rows = torch.arange(B) * R + best
        info = result.info.select(rows)
        info.add_per_problem(restart_costs=costs.T, restart_cost_std=costs.std(dim=1, correction=0), best_restart=best,
                             nonfinite=result.info["nonfinite"].view(B, R).any(dim=1))
        dev_rows = rows.to(result.actions.device)
        states = None if result.states is None else result.states[dev_rows]
        return PlanResult(result.actions[dev_rows], info, states)

    # ---- checks -------------------------------------------------------------------------------
    def check_problem(self, state0, goal) -> tuple[torch.Tensor, torch.Tensor]:
        """state0 and goal as (B, D) float tensors on the planner's device, or a clear error."""
        state0 = torch.as_tensor(state0, dtype=torch.float32, device=self.device)
        goal = torch.as_tensor(goal, dtype=torch.float32, device=self.device)
        D = self.state_dim
        if state0.ndim != 2 or state0.shape[1] != D or goal.shape != state0.shape:
            raise ValueError(f"plan() needs state0 and goal of shape (B, {D}), "
                             f"got {list(state0.shape)} and {list(goal.shape)}")
        return state0, goal

    def check_warm_start(self, warm_start, batch: int) -> WarmStart | None:
        if warm_start is None or not self.use_warm_start:
            return None
        if torch.is_tensor(warm_start):
            warm_start = WarmStart(warm_start)
        shape = (batch, self.horizon, self.action_dim)
        if tuple(warm_start.actions.shape) != shape:
            raise ValueError(f"warm_start actions must have shape {shape} (B, T, A), "
                             f"got {tuple(warm_start.actions.shape)}")
        states = warm_start.states
        if states is not None:
            want = (batch, self.horizon - 1, self.state_dim)
            if tuple(states.shape) != want:
                raise ValueError(f"warm_start states must have shape {want} (B, T-1, D), got {tuple(states.shape)}")
            states = states.to(self.device, torch.float32)
        return WarmStart(self.clamp_actions(warm_start.actions.to(self.device, torch.float32)), states)

    # ---- snapshots: what a plan looks like during optimisation, for pictures ---------------------
    def snapshot_iterations(self, iterations: int) -> set[int]:
        """`snapshots` evenly spaced iterations of 0..iterations-1 (none when the knob is 0)."""
        if not self.snapshots:
            return set()
        return set(torch.linspace(0, iterations - 1, self.snapshots).round().long().tolist())

    @torch.no_grad()
    def predicted_states(self, state0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The states s_1..s_{T-1} (N, T-1, D) the model predicts along `actions`, on the CPU: a
        shooting planner's counterpart of GRASP's virtual states."""
        return self.world_model.rollout(state0, actions)[:, :-1].cpu()

    # ---- helpers shared by the planners -------------------------------------------------------
    def clamp_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.clamp(actions, self.action_low, self.action_high)  # one kernel, tensor bounds

    def goal_cost(self, states: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Weighted squared distance to the goal over the last dim: (..., D) -> (...)."""
        return (self.state_weights * (states - goal) ** 2).sum(-1)

    def rollout_cost(self, state0: torch.Tensor, actions: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """True shooting cost ||rollout(s0, a)_T - g||^2 (+ the disagreement penalty) per problem: (...)."""
        states = self.world_model.rollout(state0, actions)
        return self.goal_cost(states[..., -1, :], goal) + self.disagreement_cost(state0, states, actions)

    def disagreement_cost(self, state0: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor | float:
        """disagreement_weight * sum_t disagreement(s_t, a_t) along the path s_0, states (..., T, D)
        (the states each action is taken from); 0 with the knob off."""
        if not self.disagreement_weight:
            return 0.0
        inputs = torch.cat([state0[..., None, :].expand_as(states[..., :1, :]), states[..., :-1, :]], dim=-2)
        return self.disagreement_weight * self.world_model.disagreement(inputs, actions).sum(-1)


def sample_normal(shape, generator: torch.Generator | NoiseStreams | None, device: torch.device) -> torch.Tensor:
    """N(0, I) from `generator`: a torch.Generator (drawn on its own device, so a CPU generator
    gives the same numbers whatever device the model is on) or per-problem NoiseStreams (row b of
    the draw from problem b's stream)."""
    if isinstance(generator, NoiseStreams):
        return generator.normal(shape, device)
    if generator is None:
        return torch.randn(shape, device=device)
    draw = torch.randn(shape, generator=generator, device=generator.device)
    if draw.device.type == "cpu" and device.type == "cuda":
        # from pinned memory the upload is queued on the stream instead of blocking the host (the
        # one host sync per iteration that gpu_check found in GRASP's loop)
        return draw.pin_memory().to(device, non_blocking=True)
    return draw.to(device)


def shift_plan(actions: torch.Tensor, executed: int) -> torch.Tensor:
    """Warm start for the next MPC step: drop the executed actions, repeat zeros at the end."""
    if executed <= 0:
        return actions
    tail = torch.zeros_like(actions[:, :executed])
    return torch.cat([actions[:, executed:], tail], dim=1)[:, : actions.shape[1]]
