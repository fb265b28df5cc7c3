"""Gradient-descent shooting: optimise the actions through the serial model rollout.

The baseline GRASP is measured against: exact gradients of the true objective, but a
product of T state Jacobians per gradient, serial over T.
"""

from __future__ import annotations

from typing import Any

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import PlanInfo, Planner, PlanResult
from grasp.planners.gradient import ACTION_PARAMS, OPTIMIZERS, ActionParam, shoot
from grasp.planners.schedules import check_choice, check_range, check_schedule, schedule_values


class GDPlanner(Planner):
    """min_a ||rollout(s0, a)_T - g||^2 with Adam or SGD; each problem returns its best iterate.
    Optional Gaussian action noise after each step (DINO-WM style), annealed like GRASP's."""

    uses_optimizer = True

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 100,
        lr: float = 0.1,
        optimizer: str = "adam",
        action_param: str = "clamp",
        action_noise_init: float = 0.0,
        action_noise_final: float = 0.0,
        action_noise_schedule: str = "constant",
        **base: Any,
    ) -> None:
        super().__init__(world_model, horizon, **base)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.lr = check_range("lr", lr, above=0.0)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.param = ActionParam(check_choice("action_param", action_param, ACTION_PARAMS),
                                 self.action_low, self.action_high)
        check_schedule("action_noise", action_noise_schedule, action_noise_init, action_noise_final)
        self.action_noise = (action_noise_schedule, float(action_noise_init), float(action_noise_final))

    def _optimize(self, state0, goal, actions, states, generator) -> PlanResult:
        noise = schedule_values(*self.action_noise, self.iterations)
        snapshot_at = self.snapshot_iterations(self.iterations)
        shot = shoot(self, state0, goal, self.param.to_free(actions), self.param, self.iterations, self.lr,
                     self.optimizer, noise, generator, self.tolerance, snapshot_at)
        used = len(shot.costs)
        info = PlanInfo(iterations=used)
        info.add_curves(False, action_noise=torch.tensor(noise[:used]), time=torch.tensor(shot.times))
        if used:
            info.add_curves(True, cost=torch.stack(shot.costs).cpu(), grad_norm=torch.stack(shot.grad_norms).cpu())
        info.add_snapshots(shot.snapshots, sorted(snapshot_at))
        return PlanResult(self.param.to_actions(shot.free).detach(), info)
