"""Cross-entropy method and iCEM (Pinneri et al. 2020): refit a diagonal Gaussian to the
lowest-cost samples. iCEM adds temporally coloured noise, elites kept across iterations,
a shrinking sample count and returns the best sequence seen rather than the mean."""

from __future__ import annotations

from typing import Any

import torch

from grasp.models.base import WorldModel
from grasp.planners.sampling import SamplingPlanner
from grasp.planners.schedules import check_range


class CEMPlanner(SamplingPlanner):
    """Elite refit with optional momentum (weight of the old mean/std) and a std floor."""

    def __init__(self, world_model: WorldModel, horizon: int, elites: int = 32, momentum: float = 0.0,
                 **sampling: Any) -> None:
        """`sampling`: SamplingPlanner's knobs (iterations, samples, init_std, ...) and the shared ones."""
        super().__init__(world_model, horizon, **sampling)
        self.elites = check_range("elites", elites, 1, self.samples, integer=True)
        self.momentum = check_range("momentum", momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("planner.momentum=1.0: allowed range is [0, 1) (1 would never update the mean)")

    def elite_samples(self, actions: torch.Tensor, cost: torch.Tensor, count: int) -> torch.Tensor:
        idx = torch.topk(cost, min(count, cost.shape[1]), dim=1, largest=False).indices
        return torch.gather(actions, 1, idx[:, :, None, None].expand(-1, -1, *actions.shape[2:]))

    def refit(self, actions, cost, mean, std):
        elite = self.elite_samples(actions, cost, self.elites)
        m = self.momentum
        return m * mean + (1 - m) * elite.mean(1), m * std + (1 - m) * elite.std(1, correction=0)


class ICEMPlanner(CEMPlanner):
    """CEM + coloured noise (noise_beta), the best keep_elites fraction of the elites carried
    into the next draw, samples shrinking by sample_decay per iteration (never below
    2 * elites), and the best sequence seen returned."""

    def __init__(self, world_model: WorldModel, horizon: int, keep_elites: float = 0.3, sample_decay: float = 1.25,
                 momentum: float = 0.1, noise_beta: float = 2.0, return_best: bool = True, **cem: Any) -> None:
        super().__init__(world_model, horizon, momentum=momentum, noise_beta=noise_beta, return_best=return_best, **cem)
        self.keep_elites = check_range("keep_elites", keep_elites, 0.0, 1.0)
        self.sample_decay = check_range("sample_decay", sample_decay, 1.0)

    def sample_count(self, iteration: int) -> int:
        floor = min(self.samples, 2 * self.elites)
        return max(floor, int(self.samples * self.sample_decay ** (-iteration)))

    def carried(self, actions, cost):
        count = int(self.keep_elites * self.elites)
        return self.elite_samples(actions, cost, count) if count > 0 else None
