"""Residual MLP world model on normalised states (the state-based model of the foundation)."""

from __future__ import annotations

import torch
from torch import nn

from grasp.models.base import WorldModel

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


class MLPWorldModel(WorldModel):
    """s' = s + delta_mean + delta_std * net([s, a]) with s normalised by dataset statistics.

    Predicting a standardised residual keeps the network's targets O(1) whatever the task's
    units, and makes the identity (no motion) the easy default.
    """

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 256, depth: int = 3,
                 activation: str = "silu", state_margin: float | None = 0.5) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"world_model.activation={activation!r}: allowed {sorted(ACTIVATIONS)}")
        if depth < 1 or hidden_dim < 1:
            raise ValueError(f"world_model.depth and hidden_dim must be >= 1, got {depth}, {hidden_dim}")
        if state_margin is not None and not state_margin >= 0:
            raise ValueError(f"world_model.state_margin={state_margin}: allowed null (no bound) or a number >= 0")
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        self.state_margin = None if state_margin is None else float(state_margin)
        layers: list[nn.Module] = []
        width = state_dim + action_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), ACTIVATIONS[activation]()]
            width = hidden_dim
        layers.append(nn.Linear(width, state_dim))
        self.net = nn.Sequential(*layers)
        for name in ("state_mean", "delta_mean"):
            self.register_buffer(name, torch.zeros(state_dim))
        for name in ("state_std", "delta_std"):
            self.register_buffer(name, torch.ones(state_dim))
        # the box predicted states are held in (normalised units), from the training data
        self.register_buffer("state_low", torch.full((state_dim,), -torch.inf))
        self.register_buffer("state_high", torch.full((state_dim,), torch.inf))

    def prepare(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        self.fit_normalization(states[:, :-1].reshape(-1, self.state_dim), states[:, 1:].reshape(-1, self.state_dim))

    def training_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Standardised one-step residual error on (B, 2, D) state windows."""
        with torch.no_grad():
            state = self.encode(obs[:, 0])
            target = (self.encode(obs[:, 1]) - state - self.delta_mean) / self.delta_std
        loss = torch.mean((self.predict_delta(state, actions[:, 0]) - target) ** 2)
        return loss, {}

    @torch.no_grad()
    def fit_normalization(self, states: torch.Tensor, next_states: torch.Tensor, eps: float = 1e-6) -> None:
        """Set statistics from raw transitions (N, D): states first, then residuals in that space."""
        self.state_mean.copy_(states.mean(0))
        self.state_std.copy_(states.std(0).clamp_min(eps))
        delta = self.encode(next_states) - self.encode(states)
        self.delta_mean.copy_(delta.mean(0))
        self.delta_std.copy_(delta.std(0).clamp_min(eps))
        if self.state_margin is not None:
            seen = self.encode(torch.cat([states, next_states]))
            low, high = seen.min(0).values, seen.max(0).values
            self.state_low.copy_(low - self.state_margin * (high - low))
            self.state_high.copy_(high + self.state_margin * (high - low))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.state_mean) / self.state_std

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return state * self.state_std + self.state_mean

    def predict_delta(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The network's standardised residual (the training target's space)."""
        return self.net(torch.cat([state, action], dim=-1))

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One model step, held inside the data's box widened by `state_margin` of its size: an
        open-loop rollout that leaves the data cannot compound its error without bound."""
        predicted = state + self.delta_mean + self.delta_std * self.predict_delta(state, action)
        return torch.maximum(torch.minimum(predicted, self.state_high), self.state_low)
