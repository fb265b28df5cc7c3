"""Gradient-descent shooting: optimise the actions through the serial model rollout.

The baseline GRASP is measured against: exact gradients of the true objective, but a
product of T state Jacobians per gradient, serial over T.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import Planner, PlanResult
from grasp.planners.grasp import OPTIMIZERS, make_optimizer
from grasp.planners.schedules import check_choice, check_problem, check_range


class GDPlanner(Planner):
    """min_a ||rollout(s0, a)_T - g||^2 with Adam or SGD, actions clamped after each step."""

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 100,
        lr: float = 0.1,
        optimizer: str = "adam",
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(world_model, horizon, action_low, action_high, state_weights)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.lr = check_range("lr", lr, 0.0)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)

    def plan(self, state0, goal, warm_start=None, generator=None) -> PlanResult:
        """Deterministic: `generator` is accepted for interface parity and unused."""
        start = time.perf_counter()
        state0, goal = check_problem(self, state0, goal)
        costs, grad_norms, times = [], [], []
        with torch.enable_grad():
            actions = self.initial_actions(state0.shape[0], warm_start).clone().requires_grad_(True)
            opt = make_optimizer(self.optimizer, [{"params": [actions], "lr": self.lr}])
            for _ in range(self.iterations):
                cost = self.rollout_cost(state0, actions, goal)  # (B,); the sum gives each its own grad
                (actions.grad,) = torch.autograd.grad(cost.sum(), [actions])
                opt.step()
                with torch.no_grad():
                    actions.copy_(self.clamp_actions(actions))
                costs.append(cost.detach())
                grad_norms.append(actions.grad.norm())
                times.append(time.perf_counter() - start)
        actions = actions.detach()
        with torch.no_grad():
            final_cost = self.rollout_cost(state0, actions, goal)
        info = {"cost": torch.stack(costs).cpu(), "grad_norm": torch.stack(grad_norms).cpu(),
                "time": torch.tensor(times), "final_cost": final_cost.cpu(), "iterations": self.iterations}
        return PlanResult(actions, info)
