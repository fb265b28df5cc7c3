"""A linear readout from a latent model's state to the task's state vector.

Success in the model is judged by the task's own rule, which reads task states (block pose,
position). A latent model has none, so after training a ridge regression from latents to the
task states of the same observations is fitted on the training set; its held-out error says how
far judgements through it can be trusted.
"""

from __future__ import annotations

import torch


def fit_linear_readout(latents: torch.Tensor, states: torch.Tensor, ridge: float = 1e-4) -> torch.Tensor:
    """Least squares with a small ridge: latents (N, Z), states (N, D) -> weight (Z + 1, D), the
    last row the bias. Fitted in float64, so an exactly linear map is recovered to rounding."""
    x = torch.cat([latents.double(), torch.ones(len(latents), 1, dtype=torch.float64, device=latents.device)], dim=1)
    y = states.double()
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    return torch.linalg.solve(gram, x.T @ y).float()


def apply_linear_readout(weight: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """(..., Z) latents -> (..., D) task states."""
    weight = weight.to(latents.device, latents.dtype)
    return latents @ weight[:-1] + weight[-1]
