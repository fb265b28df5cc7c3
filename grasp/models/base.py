"""The world-model contract: everything the trainer, the evaluation and the planners call.

Planners work in the model's own (normalised or latent) state space: `encode` maps an
observation to it, `step` advances it one model step, `rollout` chains steps. What the model
reads (state vectors or frame stacks) is its observer's business (`observer()`), so no code
outside `grasp.models` asks which kind it is.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from grasp.models.observation import Observer, StateObserver


class WorldModel(nn.Module):
    """F: (s, a) -> s' on the model's state space, batched over any leading dims.

    Constructed as ``cls(state_dim=<task D>, action_dim=<task A>, **world_model config)``.
    Training goes through `prepare`, `training_loss` and `calibrate`, so one trainer serves every
    model; `validation_metrics` measures it on held-out episodes.
    """

    state_dim: int
    action_dim: int
    #: transitions per training window
    pred_steps: int = 1
    #: frames the model's dataset must hold, rendered at this size (None: state vectors only)
    frame_size: int | None = None
    #: whether model states are a learned latent, read out to the task's state by a fitted
    #: linear map (`state_readout`) rather than decoded
    latent: bool = False

    # ---- observations ------------------------------------------------------------------------
    def observer(self) -> Observer:
        """A fresh observer (per batch of episodes) of what `encode` takes; default: the state."""
        return StateObserver()

    # ---- the planners' interface -------------------------------------------------------------
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observation -> model state. Identity-with-normalisation for state models."""
        raise NotImplementedError

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """Model state -> observation space (inverse of encode where one exists)."""
        raise NotImplementedError

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One model step: states (..., D) and actions (..., A) -> next states (..., D)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The weights fixed for the block, as planning holds them: out of autograd (planners
        differentiate through the model, never into its weights, and autograd then skips the
        weight gradients), so a model may lay out what it computes from them once for every call
        inside. The flags are restored afterwards: the same model may be trained in this process."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in trainable:
                p.requires_grad_(True)

    def rollout(self, state0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Serial rollout. state0 (..., D), actions (..., T, A) -> states (..., T, D) = s_1..s_T."""
        states = []
        state = state0
        for t in range(actions.shape[-2]):
            state = self.step(state, actions[..., t, :])
            states.append(state)
        return torch.stack(states, dim=-2)

    #: whether `disagreement` is implemented (ensembles): planners' disagreement_weight needs it
    reports_disagreement: bool = False

    def disagreement(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """How much an ensemble's members disagree on the next state of (s, a): (...)."""
        raise NotImplementedError(f"{type(self).__name__} has one member and no disagreement (world_model=ensemble)")

    # ---- what success and divergence are judged on --------------------------------------------
    def task_state(self, state: torch.Tensor) -> torch.Tensor | None:
        """The task's state vector (..., task D) that model states (..., D) stand for: what the
        task's success rule is applied to when success is judged in the model. State models
        decode; a latent model answers with its fitted readout, or None before it has one."""
        return self.decode(state)

    def prediction_gap(self, predicted: torch.Tensor, seen: torch.Tensor, reached: np.ndarray,
                       distance: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """How far predicted model states (N, D) are from what the simulator then showed: its
        observations `seen` (N, ...) and task states `reached` (N, task D). Default: the task's
        `distance` between the decoded prediction and the reached state."""
        return distance(self.decode(predicted).cpu().numpy().astype(np.float64), reached)

    # ---- training ------------------------------------------------------------------------------
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
        raise NotImplementedError(f"{type(self).__name__} has nothing to train (no training_loss)")

    @torch.no_grad()
    def validation_metrics(self, episodes, rollout_len: int) -> dict[str, float]:
        """Held-out errors on `episodes` (grasp.train.trainer.Episodes: states (N, L+1, D),
        actions (N, L, A), observations(episode, time)), in eval mode. Default for models that
        encode states: one-step MSE in model space over every transition, and the error after
        an open-loop rollout of `rollout_len` steps from every start (model-space MSE, raw RMSE)."""
        states, actions = episodes.states, episodes.actions
        one_step = torch.mean((self.step(self.encode(states[:, :-1]), actions) - self.encode(states[:, 1:])) ** 2)
        n_starts = states.shape[1] - rollout_len
        windows = torch.stack([actions[:, i : i + rollout_len] for i in range(n_starts)], dim=1)
        targets = states[:, rollout_len : rollout_len + n_starts]
        predicted = self.rollout(self.encode(states[:, :n_starts]), windows)[..., -1, :]
        multi_norm = torch.mean((predicted - self.encode(targets)) ** 2).item()
        multi_raw = torch.sqrt(torch.mean((self.decode(predicted) - targets) ** 2)).item()
        return {"val/one_step_mse": one_step.item(), f"val/rollout{rollout_len}_mse": multi_norm,
                f"val/rollout{rollout_len}_rmse_raw": multi_raw}

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")
