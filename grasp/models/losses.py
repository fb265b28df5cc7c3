"""The multi-step (open-loop rollout) training loss every world model trains with.

A model trained only on one-step errors is never shown what its own errors do to the next
input; planners roll it out for tens of steps. Rolling each training window out open loop from
its first state, and weighting the error of every step, trains it on the inputs it will see.
"""

from __future__ import annotations

from typing import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def step_weights(steps: int, discount: float, device: torch.device | None = None) -> torch.Tensor:
    """(steps,) weights discount**k / sum: 1 weighs every step alike, < 1 favours the first
    steps (an easier start for a model whose long rollouts are still wild)."""
    if not steps >= 1:
        raise ValueError(f"world_model.pred_steps={steps}: allowed an integer >= 1")
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"world_model.rollout_discount={discount}: allowed a number in (0, 1]")
    weights = torch.tensor([float(discount) ** k for k in range(int(steps))], device=device)
    return weights / weights.sum()


def rollout_loss(step: Step, state0: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
                 weights: torch.Tensor, scale: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_k weights[k] * mean(((s_k - targets[:, k]) / scale)^2), where s_k is the open-loop
    rollout of `step` from state0 (B, D) along actions (B, K, A) and targets is (B, K, D).
    Returns the loss and the detached per-step errors (K,)."""
    if actions.shape[1] != targets.shape[1] or weights.shape != (actions.shape[1],):
        raise ValueError(f"rollout_loss needs K actions, K targets and K weights, got {actions.shape[1]}, "
                         f"{targets.shape[1]} and {tuple(weights.shape)}")
    errors = []
    state = state0
    for k in range(actions.shape[1]):
        state = step(state, actions[:, k])
        errors.append((((state - targets[:, k]) / scale) ** 2).mean())
    per_step = torch.stack(errors)
    return (weights * per_step).sum(), per_step.detach()
