"""MPPI (Williams et al. 2017): the new mean is the softmax(-cost / temperature) weighted
average of the samples, so every sample counts, the good ones most."""

from __future__ import annotations

from typing import Any

import torch

from grasp.models.base import WorldModel
from grasp.planners.sampling import SamplingPlanner
from grasp.planners.schedules import check_range


class MPPIPlanner(SamplingPlanner):
    """Weighted mean update; the std stays at init_std unless update_std (weighted refit)."""

    def __init__(self, world_model: WorldModel, horizon: int, temperature: float = 0.1, update_std: bool = False,
                 **sampling: Any) -> None:
        """`sampling`: SamplingPlanner's knobs (iterations, samples, init_std, ...) and the shared ones."""
        super().__init__(world_model, horizon, **sampling)
        self.temperature = check_range("temperature", temperature, 0.0)
        if self.temperature == 0:
            raise ValueError("planner.temperature=0.0: allowed range is (0, inf)")
        self.update_std = bool(update_std)

    def weights(self, cost: torch.Tensor) -> torch.Tensor:
        """(N, S) softmax of -cost / temperature, shifted by the minimum for stability."""
        return torch.softmax(-(cost - cost.min(dim=1, keepdim=True).values) / self.temperature, dim=1)

    def refit(self, actions, cost, mean, std):
        w = self.weights(cost)[:, :, None, None]
        new_mean = (w * actions).sum(1)
        if not self.update_std:
            return new_mean, std
        return new_mean, (w * (actions - new_mean[:, None]) ** 2).sum(1).sqrt()
