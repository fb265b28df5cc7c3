"""MPPI (Williams et al. 2017): the new mean is the softmax(-cost / temperature) weighted
average of the samples, so every sample counts, the good ones most."""

from __future__ import annotations

from typing import Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.sampling import SamplingPlanner
from grasp.planners.schedules import check_range


class MPPIPlanner(SamplingPlanner):
    """Weighted mean update; the std stays at init_std unless update_std (weighted refit)."""

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 6,
        samples: int = 256,
        temperature: float = 0.1,
        init_std: float = 0.5,
        min_std: float = 0.05,
        update_std: bool = False,
        noise_beta: float = 0.0,
        return_best: bool = False,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
        restarts: int = 1,
        restart_noise: float = 0.3,
        warm_start: bool = True,
        tolerance: float = 0.0,
    ) -> None:
        super().__init__(world_model, horizon, iterations, samples, init_std, min_std, noise_beta, return_best,
                         action_low, action_high, state_weights, restarts, restart_noise, warm_start, tolerance)
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
