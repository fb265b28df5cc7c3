"""The world-model interface planners see: encode, step, rollout.

Planners work in the model's own (normalised) state space: `encode` maps an observation
(a raw state vector for state models) to it, `step` advances it one model step.
"""

from __future__ import annotations

import torch
from torch import nn


class WorldModel(nn.Module):
    """F: (s, a) -> s' on a normalised state space, batched over any leading dims.

    Training goes through two methods, so one trainer serves every model: `prepare` sees the
    training episodes once (normalisation statistics), `training_loss` gets windows of
    `pred_steps + 1` observations and `pred_steps` actions.
    """

    state_dim: int
    action_dim: int
    #: what `encode` takes: "state" (the task's state vector) or "pixels" (frame stacks)
    observation: str = "state"
    #: transitions per training window
    pred_steps: int = 1

    def prepare(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        """Called once before training with the training episodes' states (N, L+1, D) and
        actions (N, L, A); default: nothing to fit."""

    def calibrate(self, obs: torch.Tensor) -> None:
        """Called before each validation and after training with a fixed sample of training
        observations (N, ...): statistics that must match the final weights (e.g. a latent
        BatchNorm's) are refit here; default: nothing."""

    def training_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss on windows: obs (B, pred_steps + 1, ...), actions (B, pred_steps, A); plus its
        parts as detached 0-d tensors, which the trainer reads (a device sync) only when it logs."""
        raise NotImplementedError

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observation -> model state. Identity-with-normalisation for state models."""
        raise NotImplementedError

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """Model state -> observation space (inverse of encode where one exists)."""
        raise NotImplementedError

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def task_state(self, state: torch.Tensor) -> torch.Tensor | None:
        """The task's state vector (..., task D) that model states (..., D) stand for: what the
        task's success rule is applied to when success is judged in the model. State models
        decode; a latent model answers with its fitted readout, or None before it has one."""
        return self.decode(state) if self.observation == "state" else None

    def rollout(self, state0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Serial rollout. state0 (..., D), actions (..., T, A) -> states (..., T, D) = s_1..s_T."""
        states = []
        state = state0
        for t in range(actions.shape[-2]):
            state = self.step(state, actions[..., t, :])
            states.append(state)
        return torch.stack(states, dim=-2)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")
