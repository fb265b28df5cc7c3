"""GRASP: gradient-based planning over lifted (virtual) states with a stop-gradient on the
world model's state input, state noise, dense goal shaping and periodic shooting sync.

All T transitions are evaluated in one batched call of F per iteration (or in a few chunks,
to cap memory), so the cost of an iteration does not grow serially with the horizon.
Every ingredient has an "off" value, so ablations and the LatCo
baseline are configs, not code.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, NamedTuple, Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import PlanInfo, Planner, PlanResult, sample_normal
from grasp.planners.cem import CEMPlanner
from grasp.planners.gradient import ACTION_PARAMS, OPTIMIZERS, ActionParam, make_optimizer, resample_time, shoot
from grasp.planners.schedules import check_choice, check_range, check_schedule, schedule_values
from grasp.precision import precision_name

INITS = ("interp", "zeros", "rollout", "warm")
SYNCS = ("none", "gd", "cem")
#: per-iteration curves with one value per problem (the others are batch-wide)
PROBLEM_CURVES = ("loss", "dynamics", "goal_term", "grad_norm_states", "grad_norm_actions")


def reshape_state_grad(states: torch.Tensor, alpha: float) -> torch.Tensor:
    """Same forward value, gradient scaled by alpha (exactly zero at alpha = 0).

    Learned models' state Jacobians are sharp (adversarial for vision encoders), so GRASP
    lets no gradient reach s_t through F(s_t, a_t); alpha = 1 is plain collocation.
    """
    if alpha == 0:
        return states.detach()
    if alpha == 1:
        return states
    frozen = states.detach()
    return frozen + alpha * (states - frozen)


class Energy(NamedTuple):
    dynamics: torch.Tensor  # (B,) sum_t ||F(s_t, a_t) - s_{t+1}||^2
    goal_term: torch.Tensor  # (B,) sum_t goal_cost(F(s_t, a_t), g)
    pred: torch.Tensor  # (B, t1 - t0, D) one-step predictions F(s_t, a_t)


def lifted_path(state0: torch.Tensor, states: torch.Tensor, goal: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows lo..hi-1 of the lifted trajectory [s_0, s_1..s_{T-1}, g] (B, T+1, D), built from
    its pieces so a chunk never materialises the whole path."""
    T = states.shape[1] + 1
    parts = [state0[:, None]] if lo == 0 else []
    parts.append(states[:, max(lo, 1) - 1: min(hi, T) - 1])
    if hi == T + 1:
        parts.append(goal[:, None])
    return torch.cat(parts, dim=1)


def grasp_energy(world_model: WorldModel, state0: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                 goal: torch.Tensor, alpha: float = 0.0,
                 goal_cost: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 start: int = 0, disagreement_weight: float = 0.0) -> Energy:
    """Lifted energy terms per problem over transitions start .. start + len(actions) - 1.
    state0, goal (B, D); states (B, T-1, D) = s_1..s_{T-1}; actions (B, n, A). s_0 and s_T = g
    are fixed ends; F runs once over all (B, n) pairs."""
    end = start + actions.shape[1]
    inputs = lifted_path(state0, states, goal, start, end)
    targets = lifted_path(state0, states, goal, start + 1, end + 1)
    pred = world_model.step(reshape_state_grad(inputs, alpha), actions)
    dynamics = ((pred - targets) ** 2).sum(dim=(-2, -1))
    to_goal = goal_cost(pred, goal[:, None]) if goal_cost is not None else ((pred - goal[:, None]) ** 2).sum(-1)
    if disagreement_weight:  # the ensemble's penalty rides on the goal term, weighted as it is
        to_goal = to_goal + disagreement_weight * world_model.disagreement(reshape_state_grad(inputs, alpha), actions)
    return Energy(dynamics, to_goal.sum(-1), pred)


class GraspPlanner(Planner):
    """GRASP planner; conf/planner/grasp.yaml documents every knob and its "off" value."""

    uses_optimizer = True

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 100,
        optimizer: str = "adam",
        lr_states: float = 0.03,
        lr_actions: float = 0.01,
        alpha: float = 0.0,
        gamma_init: float = 1.0,
        gamma_final: float = 0.0,
        gamma_schedule: str = "linear",
        sigma_init: float = 0.01,
        sigma_final: float = 0.0,
        sigma_schedule: str = "linear",
        dynamics_weight_init: float = 1.0,
        dynamics_weight_final: float = 1.0,
        dynamics_weight_schedule: str = "constant",
        sync: str = "gd",
        sync_every: int = 25,
        sync_steps: int = 30,
        sync_lr: float = 0.01,
        sync_samples: int = 64,
        sync_std: float = 0.1,
        init: str = "interp",
        init_noise: float = 0.0,
        action_param: str = "clamp",
        curriculum: Sequence[float] = (),
        state_clip: float | None = None,
        chunk_size: int | None = None,
        eval_every: int = 0,
        **base: Any,
    ) -> None:
        super().__init__(world_model, horizon, **base)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.lr_states = check_range("lr_states", lr_states, 0.0)  # 0 holds the virtual states at their init
        self.lr_actions = check_range("lr_actions", lr_actions, 0.0)  # 0 holds the actions (noise-only studies)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        for key, kind, init_value, final in (("gamma", gamma_schedule, gamma_init, gamma_final),
                                             ("sigma", sigma_schedule, sigma_init, sigma_final),
                                             ("dynamics_weight", dynamics_weight_schedule, dynamics_weight_init,
                                              dynamics_weight_final)):
            check_schedule(key, kind, init_value, final)
        self.gamma = (gamma_schedule, float(gamma_init), float(gamma_final))
        self.sigma = (sigma_schedule, float(sigma_init), float(sigma_final))
        self.dynamics_weight = (dynamics_weight_schedule, float(dynamics_weight_init), float(dynamics_weight_final))
        self.sync = check_choice("sync", sync, SYNCS)
        self.sync_every = check_range("sync_every", sync_every, 1, integer=True)
        if self.sync != "none" and self.sync_every > self.iterations:
            raise ValueError(f"planner.sync_every={sync_every} is more than planner.iterations={iterations}: "
                             f"the sync would never run (use sync=none to turn it off)")
        self.sync_steps = check_range("sync_steps", sync_steps, 1, integer=True)
        self.sync_lr = check_range("sync_lr", sync_lr, above=0.0)
        self.sync_samples = check_range("sync_samples", sync_samples, 2, integer=True)
        self.sync_std = check_range("sync_std", sync_std, 0.0)
        # sync=cem: one CEM over the actions, built once (its bounds stay on the device)
        self.sync_cem = None if self.sync != "cem" else CEMPlanner(
            world_model, self.horizon, iterations=self.sync_steps, samples=self.sync_samples,
            elites=max(1, self.sync_samples // 8), init_std=self.sync_std, min_std=0.0, return_best=True,
            action_low=self.action_low, action_high=self.action_high, state_weights=self.state_weights)
        self.init = check_choice("init", init, INITS)
        self.init_noise = check_range("init_noise", init_noise, 0.0)
        self.param = ActionParam(check_choice("action_param", action_param, ACTION_PARAMS),
                                 self.action_low, self.action_high)
        self.curriculum = [check_range("curriculum", f, 0.0, 1.0) for f in (curriculum or [])]
        if any(f in (0.0, 1.0) for f in self.curriculum) or self.curriculum != sorted(set(self.curriculum)):
            raise ValueError(f"planner.curriculum={list(curriculum)}: needs strictly increasing fractions of the "
                             f"horizon in (0, 1), e.g. [0.25, 0.5]; [] turns it off")
        if len(self.stage_horizons()) > self.iterations:
            raise ValueError(f"planner.curriculum has {len(self.stage_horizons())} stages but only "
                             f"{self.iterations} iterations")
        self.state_clip = None if state_clip is None else check_range("state_clip", state_clip, 0.0)
        if self.state_clip == 0:
            raise ValueError("planner.state_clip=0: allowed values are null (off) or > 0 (std units)")
        self.chunk_size = None if chunk_size is None else check_range("chunk_size", chunk_size, 1, integer=True)
        self.eval_every = check_range("eval_every", eval_every, 0, integer=True)
        if self.tolerance > 0 and self.sync == "none" and self.eval_every == 0:
            raise ValueError("planner.tolerance needs the true rollout cost: set planner.eval_every > 0 or a sync")

    # ---- pieces -------------------------------------------------------------------------------
    def stage_horizons(self) -> list[int]:
        """Horizon of each curriculum stage, ending at T (stages that round alike merge)."""
        steps = [max(1, round(f * self.horizon)) for f in self.curriculum] + [self.horizon]
        return sorted(set(steps))

    def energy(self, state0, states, actions, goal, start: int = 0) -> Energy:
        return grasp_energy(self.world_model, state0, states, actions, goal, self.alpha, self.goal_cost, start,
                            self.disagreement_weight)

    @property
    def lifted_dtype(self) -> torch.dtype | None:
        """The autocast of the wide calls: the lifted iterations (one batched call over every
        (problem, time) pair) and a sync=cem's samples, where a sync=gd's serial calls are small."""
        return self.wide_autocast_dtype if self.wide_autocast_dtype is not None else self.autocast_dtype

    def _wide_autocast(self) -> contextlib.AbstractContextManager:
        """lifted_dtype inside the optimisation's own autocast, where the two differ."""
        lifted = self.lifted_dtype
        if lifted in (None, self.autocast_dtype):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=lifted)

    @property
    def precision(self) -> str:
        lifted, rest = precision_name(self.lifted_dtype), precision_name(self.autocast_dtype)
        sync = lifted if self.sync == "cem" else rest
        if self.sync == "none":
            return lifted if lifted == rest else f"{lifted} lifted"
        return lifted if lifted == sync else f"{lifted} lifted, {sync} sync"

    def accumulate_gradients(self, state0, states, free, goal, gamma: float, dyn_weight: float,
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backpropagate dyn_weight * dynamics + gamma * goal_term into states.grad and
        free.grad, chunk_size transitions at a time (the energy is a sum over transitions,
        so chunks give the same gradients with a fraction of the activation memory).
        Returns the (B,) dynamics and goal terms."""
        T = free.shape[1]
        size = self.chunk_size or T
        states.grad, free.grad = None, None
        dynamics = torch.zeros(state0.shape[0], device=self.device)
        goal_term = torch.zeros_like(dynamics)
        for lo in range(0, T, size):
            hi = min(lo + size, T)
            with self._wide_autocast():
                e = self.energy(state0, states, self.param.to_actions(free[:, lo:hi]), goal, start=lo)
            (dyn_weight * e.dynamics + gamma * e.goal_term).sum().backward()  # summed: each problem its own grad
            dynamics += e.dynamics.detach()
            goal_term += e.goal_term.detach()
        if states.grad is None:  # T = 1: no virtual states
            states.grad = torch.zeros_like(states)
        return dynamics, goal_term

    def initial_states(self, state0, goal, actions, warm_states=None, generator=None) -> torch.Tensor:
        """Virtual states s_1..s_{T-1} (B, T-1, D) for a plan of actions.shape[1] steps: the line
        s0 -> g at t/T, zeros, the rollout of the initial actions, or the warm start's states
        (line when there are none); plus optional noise."""
        T = actions.shape[1]
        if self.init == "warm" and warm_states is not None:
            path = torch.cat([state0[:, None], warm_states, goal[:, None]], dim=1)
            states = resample_time(path, T + 1)[:, 1:-1]
        elif self.init in ("interp", "warm"):
            frac = torch.arange(1, T, device=self.device, dtype=torch.float32)[:, None] / T
            states = state0[:, None] + frac * (goal - state0)[:, None]
        elif self.init == "zeros":
            states = state0.new_zeros(state0.shape[0], T - 1, self.state_dim)
        else:
            with torch.no_grad():
                states = self.world_model.rollout(state0, actions)[:, :-1]
        if self.init_noise > 0:
            states = states + self.init_noise * sample_normal(states.shape, generator, self.device)
        return states.detach().clone()

    def grow(self, state0, goal, states, free, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Upsample a plan to a longer horizon: the lifted path and the actions are
        interpolated in time (the ends s_0 and g stay put)."""
        path = torch.cat([state0[:, None], states.detach(), goal[:, None]], dim=1)
        actions = resample_time(self.param.to_actions(free.detach()), horizon)
        return resample_time(path, horizon + 1)[:, 1:-1].clone(), self.param.to_free(actions)

    # ---- the optimisation -------------------------------------------------------------------------
    def _optimize(self, state0, goal, actions, warm_states, generator) -> PlanResult:
        start = time.perf_counter()
        n = self.iterations
        gammas, sigmas = schedule_values(*self.gamma, n), schedule_values(*self.sigma, n)
        dyn_weights = schedule_values(*self.dynamics_weight, n)
        horizons = self.stage_horizons()
        stage_start = {round(i * n / len(horizons)): h for i, h in enumerate(horizons)}
        if horizons[0] != self.horizon:  # warm states are resampled in initial_states
            actions = resample_time(actions, horizons[0])
        free = self.param.to_free(actions).requires_grad_(True)
        states = self.initial_states(state0, goal, actions, warm_states, generator).requires_grad_(True)

        def fresh_optimizer() -> torch.optim.Optimizer:
            return make_optimizer(self.optimizer, [{"params": [states], "lr": self.lr_states},
                                                   {"params": [free], "lr": self.lr_actions}])

        opt = fresh_optimizer()
        # each problem's last iterate the model gave a finite loss for: what a NaN/Inf falls back to;
        # virtual states that went non-finite restart from their initial guess (a warm start for MPC)
        finite_free, initial_states = free.detach().clone(), states.detach().clone()
        snapshot_at = self.snapshot_iterations(n)
        snapshots: list[torch.Tensor] = []
        curves: dict[str, list] = {k: [] for k in ("loss", "dynamics", "goal_term", "grad_norm_states",
                                                   "grad_norm_actions", "horizon", "time")}
        events: dict[str, list] = {k: [] for k in ("sync_cost_before", "sync_cost", "sync_iteration",
                                                   "rollout_cost", "rollout_iteration")}
        for k in range(n):
            if k > 0 and k in stage_start:  # curriculum: grow to the next horizon, fresh optimiser
                grown_states, grown_free = self.grow(state0, goal, states, free, stage_start[k])
                # the fallbacks grow from the fallbacks, so a problem gone NaN before a stage keeps a finite one
                initial_states, finite_free = self.grow(state0, goal, initial_states, finite_free, stage_start[k])
                states, free = grown_states.requires_grad_(True), grown_free.requires_grad_(True)
                opt = fresh_optimizer()
            dynamics, goal_term = self.accumulate_gradients(state0, states, free, goal, gammas[k], dyn_weights[k])
            with torch.no_grad():  # the iterate just evaluated is finite for the model: keep it (before the step)
                ok = (torch.isfinite(dynamics + goal_term) & torch.isfinite(free).flatten(1).all(1))[:, None, None]
                finite_free = torch.where(ok, free, finite_free)  # a new tensor: opt.step() leaves it alone
            opt.step()
            with torch.no_grad():
                if sigmas[k] > 0:  # noise on the states only, after the step
                    states.add_(sigmas[k] * sample_normal(states.shape, generator, self.device))
                if self.state_clip is not None:
                    states.clamp_(-self.state_clip, self.state_clip)
                self.param.project_(free)
            curves["loss"].append(dyn_weights[k] * dynamics + gammas[k] * goal_term)
            curves["dynamics"].append(dynamics)
            curves["goal_term"].append(goal_term)
            curves["grad_norm_states"].append(states.grad.flatten(1).norm(dim=1))
            curves["grad_norm_actions"].append(free.grad.flatten(1).norm(dim=1))
            curves["horizon"].append(free.shape[1])
            if k in snapshot_at:
                snapshots.append(states.detach().cpu().clone())
            latest = None
            if self.sync != "none" and (k + 1) % self.sync_every == 0:
                before, latest = self.run_sync(state0, goal, free, generator)
                events["sync_cost_before"].append(before)
                events["sync_cost"].append(latest)
                events["sync_iteration"].append(k)
                opt = fresh_optimizer()  # stale moments would fight the synced actions
            if self.eval_every and (k + 1) % self.eval_every == 0:
                if latest is None:
                    with torch.no_grad():
                        latest = self.rollout_cost(state0, self.param.to_actions(free), goal)
                events["rollout_cost"].append(latest)
                events["rollout_iteration"].append(k)
            curves["time"].append(time.perf_counter() - start)
            if (self.tolerance > 0 and latest is not None and free.shape[1] == self.horizon
                    and bool((latest <= self.tolerance).all())):
                break
        used = len(curves["time"])
        schedules = {"sigma": sigmas[:used], "gamma": gammas[:used], "dynamics_weight": dyn_weights[:used]}
        info = _plan_info(curves, events, schedules)
        info.add_snapshots(snapshots, sorted(snapshot_at))  # virtual states, for pictures
        finite = torch.isfinite(states.detach()).flatten(1).all(1)[:, None, None]
        states = torch.where(finite, states.detach(), initial_states)
        return PlanResult(self.param.to_actions(free.detach()), info, states, fallback=self.param.to_actions(finite_free))

    def run_sync(self, state0, goal, free, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Pull the plan back onto what the model really does: shooting steps on the actions
        alone (gd) or a short CEM around them (cem). Each problem keeps its best iterate, so
        a sync never raises the true cost. Updates `free` in place; returns the true cost
        before and after."""
        if self.sync == "gd":
            shot = shoot(self, state0, goal, free, self.param, self.sync_steps, self.sync_lr)
            best, before, after = shot.free, shot.cost_before, shot.cost
        else:
            with torch.no_grad():
                actions = self.param.to_actions(free.detach())
                before = self.rollout_cost(state0, actions, goal)
                with self._wide_autocast():
                    refined = self.sync_cem._optimize(state0, goal, actions, None, generator)
                after = refined.info["best_cost"][-1].to(self.device)
                better = after < before
                best = torch.where(better[:, None, None], self.param.to_free(refined.actions), free.detach())
                after = torch.minimum(after, before)
        with torch.no_grad():
            free.copy_(best)
        return before, after


class LatCoPlanner(GraspPlanner):
    """LatCo-style collocation (Rybkin et al. 2021): lifted states with full gradients, no
    noise, no goal shaping, no sync; optionally a growing dynamics-violation multiplier
    (dynamics_weight_*). Exactly GraspPlanner with those knobs at their "off" values."""

    def __init__(self, world_model: WorldModel, horizon: int, *, alpha: float = 1.0,
                 gamma_init: float = 0.0, gamma_final: float = 0.0, gamma_schedule: str = "constant",
                 sigma_init: float = 0.0, sigma_final: float = 0.0, sigma_schedule: str = "constant",
                 sync: str = "none", **kwargs) -> None:
        super().__init__(world_model, horizon, alpha=alpha, gamma_init=gamma_init, gamma_final=gamma_final,
                         gamma_schedule=gamma_schedule, sigma_init=sigma_init, sigma_final=sigma_final,
                         sigma_schedule=sigma_schedule, sync=sync, **kwargs)


def _plan_info(curves: dict[str, list], events: dict[str, list], schedules: dict[str, list]) -> PlanInfo:
    """The declared info of one GRASP optimisation: per-problem curves, batch-wide ones (the
    horizon, time and the schedules' values), and the sync and rollout costs at their iterations."""
    info = PlanInfo(iterations=len(curves["time"]))
    info.add_curves(True, **{k: torch.stack(curves[k]).cpu() for k in PROBLEM_CURVES})
    info.add_curves(False, horizon=torch.tensor(curves["horizon"]), time=torch.tensor(curves["time"]),
                    **{k: torch.tensor(v) for k, v in schedules.items()})
    for at, names in (("sync_iteration", ("sync_cost_before", "sync_cost")), ("rollout_iteration", ("rollout_cost",))):
        if events[at]:
            info[at] = torch.tensor(events[at])
            info.add_events(at, True, **{k: torch.stack(events[k]).cpu() for k in names})
    return info
