"""Cross-entropy method: sample action sequences around a per-problem Gaussian, refit it to
the elites. Gradient-free, so immune to sharp model Jacobians, but its sample count must
grow with the dimension T * A of the plan."""

from __future__ import annotations

import time
from typing import Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import Planner, PlanResult
from grasp.planners.grasp import sample_normal
from grasp.planners.schedules import check_problem, check_range


class CEMPlanner(Planner):
    """Returns the mean of the final distribution; B problems x N samples roll out together."""

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 6,
        samples: int = 256,
        elites: int = 32,
        init_std: float = 0.5,
        min_std: float = 0.05,
        momentum: float = 0.0,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(world_model, horizon, action_low, action_high, state_weights)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.samples = check_range("samples", samples, 1, integer=True)
        self.elites = check_range("elites", elites, 1, self.samples, integer=True)
        self.init_std = check_range("init_std", init_std, 0.0)
        self.min_std = check_range("min_std", min_std, 0.0)
        self.momentum = check_range("momentum", momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("planner.momentum=1.0: allowed range is [0, 1) (1 would never update the mean)")

    @torch.no_grad()
    def plan(self, state0, goal, warm_start=None, generator=None) -> PlanResult:
        start = time.perf_counter()
        state0, goal = check_problem(self, state0, goal)
        B, N, T, A = state0.shape[0], self.samples, self.horizon, self.action_dim
        mean = self.initial_actions(B, warm_start)
        std = torch.full_like(mean, max(self.init_std, self.min_std))
        curves: dict[str, list] = {"best_cost": [], "elite_cost": [], "std": [], "time": []}
        for _ in range(self.iterations):
            noise = sample_normal((B, N, T, A), generator, self.device)
            noise[:, 0] = 0.0  # sample 0 is the current mean: a good mean is never lost to bad draws
            actions = self.clamp_actions(mean[:, None] + std[:, None] * noise)
            s0 = state0[:, None].expand(B, N, -1).reshape(B * N, -1)
            final = self.world_model.rollout(s0, actions.reshape(B * N, T, A))[:, -1].view(B, N, -1)
            cost = self.goal_cost(final, goal[:, None])  # (B, N)
            elite_cost, idx = torch.topk(cost, self.elites, dim=1, largest=False)
            elite = torch.gather(actions, 1, idx[:, :, None, None].expand(-1, -1, T, A))
            m = self.momentum
            mean = m * mean + (1 - m) * elite.mean(1)
            std = (m * std + (1 - m) * elite.std(1, correction=0)).clamp_min(self.min_std)
            curves["best_cost"].append(elite_cost[:, 0])
            curves["elite_cost"].append(elite_cost.mean(1))
            curves["std"].append(std.mean())
            curves["time"].append(time.perf_counter() - start)
        mean = self.clamp_actions(mean)
        final_cost = self.rollout_cost(state0, mean, goal)
        info = {k: torch.stack(v).cpu() for k, v in curves.items() if k != "time"}
        info.update(time=torch.tensor(curves["time"]), final_cost=final_cost.cpu(), iterations=self.iterations)
        return PlanResult(mean, info)
