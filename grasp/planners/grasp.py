"""GRASP: gradient-based planning over lifted (virtual) states with a stop-gradient on the
world model's state input, state noise, dense goal shaping and periodic shooting sync.

All T transitions are evaluated in one batched call of F per iteration, so the cost of an
iteration does not grow serially with the horizon (see design.md section 1).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import Planner, PlanResult
from grasp.planners.schedules import check_choice, check_problem, check_range, check_schedule, schedule_values

OPTIMIZERS = ("adam", "sgd")
INITS = ("interp", "zeros", "rollout")


def make_optimizer(kind: str, groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups) if kind == "adam" else torch.optim.SGD(groups)


def sample_normal(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """N(0, I) from `generator` (drawn on the generator's own device, so a CPU generator
    gives the same numbers whatever device the model is on)."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


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
    pred: torch.Tensor  # (B, T, D) one-step predictions F(s_t, a_t)


def grasp_energy(world_model: WorldModel, state0: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                 goal: torch.Tensor, alpha: float = 0.0,
                 goal_cost: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> Energy:
    """Lifted energy terms per problem. state0, goal (B, D); states (B, T-1, D) = s_1..s_{T-1};
    actions (B, T, A). s_0 and s_T = g are fixed ends; F runs once over all (B, T) pairs."""
    full = torch.cat([state0[:, None], states, goal[:, None]], dim=1)  # (B, T+1, D)
    pred = world_model.step(reshape_state_grad(full[:, :-1], alpha), actions)
    dynamics = ((pred - full[:, 1:]) ** 2).sum(dim=(-2, -1))
    to_goal = goal_cost(pred, goal[:, None]) if goal_cost is not None else ((pred - goal[:, None]) ** 2).sum(-1)
    return Energy(dynamics, to_goal.sum(-1), pred)


class GraspPlanner(Planner):
    """GRASP planner. Every ingredient has an "off" value (alpha=1, sigma=0, gamma=0,
    sync_every=0), so the ablations and the LatCo baseline are configs, not code."""

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 300,
        optimizer: str = "adam",
        lr_states: float = 0.1,
        lr_actions: float = 0.05,
        alpha: float = 0.0,
        gamma_init: float = 1.0,
        gamma_final: float = 1.0,
        gamma_schedule: str = "constant",
        sigma_init: float = 0.01,
        sigma_final: float = 0.0,
        sigma_schedule: str = "linear",
        sync_every: int = 50,
        sync_steps: int = 10,
        sync_lr: float = 0.05,
        init: str = "interp",
        init_noise: float = 0.0,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(world_model, horizon, action_low, action_high, state_weights)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.lr_states = check_range("lr_states", lr_states, 0.0)
        self.lr_actions = check_range("lr_actions", lr_actions, 0.0)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        check_schedule("gamma", gamma_schedule, gamma_init, gamma_final)
        check_schedule("sigma", sigma_schedule, sigma_init, sigma_final)
        self.gamma = (gamma_schedule, float(gamma_init), float(gamma_final))
        self.sigma = (sigma_schedule, float(sigma_init), float(sigma_final))
        self.sync_every = check_range("sync_every", sync_every, 0, integer=True)
        self.sync_steps = check_range("sync_steps", sync_steps, 0, integer=True)
        self.sync_lr = check_range("sync_lr", sync_lr, 0.0)
        self.init = check_choice("init", init, INITS)
        self.init_noise = check_range("init_noise", init_noise, 0.0)

    def energy(self, state0, states, actions, goal) -> Energy:
        return grasp_energy(self.world_model, state0, states, actions, goal, self.alpha, self.goal_cost)

    def initial_states(self, state0, goal, actions, generator=None) -> torch.Tensor:
        """Virtual states s_1..s_{T-1} (B, T-1, D): the straight line s0 -> g at t/T, zeros,
        or the rollout of the initial actions (e.g. a warm start); plus optional noise."""
        T = self.horizon
        if self.init == "interp":
            frac = torch.arange(1, T, device=self.device, dtype=torch.float32)[:, None] / T
            states = state0[:, None] + frac * (goal - state0)[:, None]
        elif self.init == "zeros":
            states = state0.new_zeros(state0.shape[0], T - 1, self.state_dim)
        else:
            with torch.no_grad():
                states = self.world_model.rollout(state0, actions)[:, :-1]
        if self.init_noise > 0:
            states = states + self.init_noise * sample_normal(states.shape, generator, self.device)
        return states

    def plan(self, state0, goal, warm_start=None, generator=None) -> PlanResult:
        start = time.perf_counter()
        state0, goal = check_problem(self, state0, goal)
        n = self.iterations
        gammas, sigmas = schedule_values(*self.gamma, n), schedule_values(*self.sigma, n)
        do_sync = self.sync_every > 0 and self.sync_steps > 0
        with torch.enable_grad():
            actions = self.initial_actions(state0.shape[0], warm_start).clone().requires_grad_(True)
            states = self.initial_states(state0, goal, actions.detach(), generator).detach().requires_grad_(True)

            def fresh_optimizer() -> torch.optim.Optimizer:
                return make_optimizer(self.optimizer, [{"params": [states], "lr": self.lr_states},
                                                       {"params": [actions], "lr": self.lr_actions}])

            opt = fresh_optimizer()
            curves: dict[str, list] = {k: [] for k in ("loss", "dynamics", "goal_term", "grad_norm_states",
                                                       "grad_norm_actions", "time", "sync_cost", "sync_cost_before")}
            for k in range(n):
                energy = self.energy(state0, states, actions, goal)
                loss = energy.dynamics + gammas[k] * energy.goal_term  # (B,): summed, each problem its own grad
                states.grad, actions.grad = torch.autograd.grad(loss.sum(), [states, actions])
                opt.step()
                with torch.no_grad():
                    if sigmas[k] > 0:
                        states.add_(sigmas[k] * sample_normal(states.shape, generator, self.device))
                    actions.copy_(self.clamp_actions(actions))
                curves["loss"].append(loss.detach())
                curves["dynamics"].append(energy.dynamics.detach())
                curves["goal_term"].append(energy.goal_term.detach())
                curves["grad_norm_states"].append(states.grad.norm())
                curves["grad_norm_actions"].append(actions.grad.norm())
                if do_sync and (k + 1) % self.sync_every == 0:
                    before, after = self.sync(state0, actions, goal)
                    curves["sync_cost_before"].append(before)
                    curves["sync_cost"].append(after)
                    opt = fresh_optimizer()  # stale moments would fight the synced actions
                curves["time"].append(time.perf_counter() - start)
        actions = self.clamp_actions(actions.detach())
        with torch.no_grad():
            final_cost = self.rollout_cost(state0, actions, goal)
        info = {key: torch.stack(vals).cpu() for key, vals in curves.items() if vals and key != "time"}
        info.update(time=torch.tensor(curves["time"]), sigma=torch.tensor(sigmas), gamma=torch.tensor(gammas),
                    final_cost=final_cost.cpu(), iterations=n)
        return PlanResult(actions, info)

    def sync(self, state0, actions, goal) -> tuple[torch.Tensor, torch.Tensor]:
        """Shooting steps on the actions alone (full backprop through the serial rollout), which
        pull the plan back onto what the model really does. Each problem keeps its best iterate
        (Adam's first steps have size ~lr whatever the gradient, and could spoil a converged
        plan), so a sync never raises the true cost. Returns the true cost before and after."""
        opt = torch.optim.Adam([actions], lr=self.sync_lr)
        best = actions.detach().clone()
        for j in range(self.sync_steps + 1):  # the extra pass only scores the last iterate
            with torch.set_grad_enabled(j < self.sync_steps):
                cost = self.rollout_cost(state0, actions, goal)
            if j == 0:
                before = best_cost = cost.detach()
            else:
                better = cost.detach() < best_cost
                best = torch.where(better[:, None, None], actions.detach(), best)
                best_cost = torch.where(better, cost.detach(), best_cost)
            if j < self.sync_steps:
                (actions.grad,) = torch.autograd.grad(cost.sum(), [actions])
                opt.step()
                with torch.no_grad():
                    actions.copy_(self.clamp_actions(actions))
        with torch.no_grad():
            actions.copy_(best)
        return before, best_cost
