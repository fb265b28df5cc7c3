"""Optimizer-agnostic planner interface.

Every planner is built with ``hydra.utils.instantiate(cfg.planner, world_model=wm)`` and
plans a batch of B independent problems in one call, batch-first:

    plan(state0 (B, D), goal (B, D), warm_start (B, T, A) | None) -> PlanResult

``state0`` and ``goal`` live in the world model's (normalised) state space. The returned
actions are in the task's action space, inside [action_low, action_high].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from grasp.models.base import WorldModel


@dataclass
class PlanResult:
    """actions (B, T, A); info: per-iteration curves (iters,) or (iters, B) and per-problem
    summaries (B,), all tensors on the CPU, plus plain python scalars."""

    actions: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class Planner:
    """Base class: holds the model, horizon, action bounds and goal-dimension weights."""

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_weights: Sequence[float] | None = None,
    ) -> None:
        if int(horizon) < 1:
            raise ValueError(f"planner.horizon must be >= 1, got {horizon}")
        self.world_model = world_model
        self.horizon = int(horizon)
        self.action_dim = world_model.action_dim
        self.state_dim = world_model.state_dim
        device = world_model.device
        self.action_low = torch.as_tensor(action_low, dtype=torch.float32, device=device).expand(self.action_dim).clone()
        self.action_high = torch.as_tensor(action_high, dtype=torch.float32, device=device).expand(self.action_dim).clone()
        if state_weights is None:
            self.state_weights = torch.ones(self.state_dim, device=device)
        else:
            self.state_weights = torch.as_tensor(state_weights, dtype=torch.float32, device=device)
            if self.state_weights.shape != (self.state_dim,):
                raise ValueError(
                    f"planner.state_weights must have {self.state_dim} entries (the model's state_dim), "
                    f"got {list(self.state_weights.shape)}"
                )

    @property
    def device(self) -> torch.device:
        return self.world_model.device

    def plan(
        self,
        state0: torch.Tensor,
        goal: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PlanResult:
        raise NotImplementedError

    # ---- helpers shared by the planners -------------------------------------------------
    def clamp_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def goal_cost(self, states: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Weighted squared distance to the goal over the last dim: (..., D) -> (...)."""
        return (self.state_weights * (states - goal) ** 2).sum(-1)

    def rollout_cost(self, state0: torch.Tensor, actions: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """True shooting cost ||rollout(s0, a)_T - g||^2 per problem: (B,)."""
        final = self.world_model.rollout(state0, actions)[..., -1, :]
        return self.goal_cost(final, goal)

    def initial_actions(self, batch: int, warm_start: torch.Tensor | None) -> torch.Tensor:
        """Zeros, or the warm start (e.g. the shifted previous MPC plan) checked for shape."""
        shape = (batch, self.horizon, self.action_dim)
        if warm_start is None:
            return torch.zeros(shape, device=self.device)
        if tuple(warm_start.shape) != shape:
            raise ValueError(f"warm_start must have shape {shape} (B, T, A), got {tuple(warm_start.shape)}")
        return self.clamp_actions(warm_start.to(self.device, torch.float32))


def shift_plan(actions: torch.Tensor, executed: int) -> torch.Tensor:
    """Warm start for the next MPC step: drop the executed actions, repeat zeros at the end."""
    if executed <= 0:
        return actions
    tail = torch.zeros_like(actions[:, :executed])
    return torch.cat([actions[:, executed:], tail], dim=1)[:, : actions.shape[1]]
