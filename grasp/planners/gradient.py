"""What the gradient planners (GRASP, LatCo, GD) share: the optimiser, the action
parameterisation that keeps actions inside the task's bounds, time resampling for horizon
curricula, and shooting descent on the true rollout cost (GD's whole loop, GRASP's sync)."""

from __future__ import annotations

import time
from typing import Collection, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from grasp.planners.base import Planner, sample_normal

OPTIMIZERS = ("adam", "sgd")
ACTION_PARAMS = ("clamp", "tanh")
#: tanh parameterisation: actions this close to a bound are mapped to a finite free value
TANH_EDGE = 1e-4


def make_optimizer(kind: str, groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups) if kind == "adam" else torch.optim.SGD(groups)


class ActionParam:
    """How optimised variables map to bounded actions.

    clamp: the variables are the actions, projected onto the box after every step.
    tanh: actions = mid + half * tanh(u); bounds hold by construction and gradients shrink
    smoothly near them instead of vanishing at a hard clamp.
    """

    def __init__(self, kind: str, low: torch.Tensor, high: torch.Tensor) -> None:
        self.kind = kind
        self.low, self.high = low, high
        self.mid, self.half = (high + low) / 2, (high - low) / 2

    def to_free(self, actions: torch.Tensor) -> torch.Tensor:
        actions = actions.detach()
        if self.kind == "clamp":
            return actions.clone()
        unit = ((actions - self.mid) / self.half).clamp(-1 + TANH_EDGE, 1 - TANH_EDGE)
        return torch.atanh(unit)

    def to_actions(self, free: torch.Tensor) -> torch.Tensor:
        if self.kind == "clamp":
            return free
        return self.mid + self.half * torch.tanh(free)

    @torch.no_grad()
    def project_(self, free: torch.Tensor) -> None:
        if self.kind == "clamp":
            free.clamp_(self.low, self.high)


def resample_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, C) -> (B, length, C) by linear interpolation in time, ends kept."""
    if x.shape[1] == length:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, length, -1).clone()
    return F.interpolate(x.transpose(1, 2), size=length, mode="linear", align_corners=True).transpose(1, 2)


class Shot(NamedTuple):
    free: torch.Tensor  # (N, T, A) best iterate per problem
    cost_before: torch.Tensor  # (N,) true cost of the starting actions
    cost: torch.Tensor  # (N,) true cost of the returned iterate
    costs: list[torch.Tensor]  # per step: (N,) cost of the iterate the step started from
    grad_norms: list[torch.Tensor]  # per step: (N,)
    times: list[float]  # per step: seconds since shoot() began
    snapshots: list[torch.Tensor]  # predicted states (N, T-1, D) after the steps in `snapshot_at`


def shoot(planner: Planner, state0: torch.Tensor, goal: torch.Tensor, free: torch.Tensor, param: ActionParam,
          steps: int, lr: float, optimizer: str = "adam", action_noise: Sequence[float] | None = None,
          generator: torch.Generator | None = None, tolerance: float = 0.0,
          snapshot_at: Collection[int] = ()) -> Shot:
    """Descent on ||rollout(s0, actions(free))_T - g||^2 with full backprop through the serial
    rollout. Every problem keeps its best iterate (Adam's first steps have size ~lr whatever
    the gradient, and could spoil a converged plan), so the cost never rises. Stops early once
    every problem's cost is within `tolerance` (0: never). Keeps the model's predicted states
    along the iterate after each step in `snapshot_at`."""
    start = time.perf_counter()
    free = free.detach().clone().requires_grad_(True)
    opt = make_optimizer(optimizer, [{"params": [free], "lr": lr}])
    best = free.detach().clone()
    costs: list[torch.Tensor] = []
    grad_norms: list[torch.Tensor] = []
    times: list[float] = []
    snapshots: list[torch.Tensor] = []
    for j in range(steps + 1):  # the extra pass only scores the last iterate
        with torch.set_grad_enabled(j < steps):
            cost = planner.rollout_cost(state0, param.to_actions(free), goal)
        value = cost.detach()
        if j == 0:
            before = best_cost = value
        else:
            better = value < best_cost
            best = torch.where(better[:, None, None], free.detach(), best)
            best_cost = torch.where(better, value, best_cost)
        if j == steps or (tolerance > 0 and bool((best_cost <= tolerance).all())):
            break
        (free.grad,) = torch.autograd.grad(cost.sum(), [free])  # summed: each problem its own gradient
        opt.step()
        with torch.no_grad():
            if action_noise is not None and action_noise[j] > 0:
                free.add_(action_noise[j] * sample_normal(free.shape, generator, free.device))
            param.project_(free)
        if j in snapshot_at:
            snapshots.append(planner.predicted_states(state0, param.to_actions(free.detach())))
        costs.append(value)
        grad_norms.append(free.grad.flatten(1).norm(dim=1))
        times.append(time.perf_counter() - start)
    return Shot(best, before, best_cost, costs, grad_norms, times, snapshots)
