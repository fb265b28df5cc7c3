"""An ensemble of K state world models: planners step the members' mean, and the members'
disagreement says where the data did not pin the dynamics down (there a planner finds "paths"
no member would agree on; `disagreement_weight` on a planner makes it pay for them)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from grasp.models.base import WorldModel
from grasp.models.mlp import MLPWorldModel


class EnsembleWorldModel(WorldModel):
    """K MLPWorldModels with their own initial weights and the same data statistics; `step` is
    the mean of their next states, `disagreement` the std across members. Each member trains on
    its own open-loop rollouts of every window (the loss is the members' mean)."""

    #: the config's other keys are the members' (grasp.schema reads them from this class)
    kwargs_go_to = MLPWorldModel
    reports_disagreement = True

    def __init__(self, state_dim: int, action_dim: int, members: int = 5, **member: Any) -> None:
        super().__init__()
        if not (isinstance(members, int) and members >= 2):
            raise ValueError(f"world_model.members={members!r}: allowed an integer >= 2 (one model: world_model=mlp)")
        self.members = nn.ModuleList(MLPWorldModel(state_dim, action_dim, **member) for _ in range(members))
        first = self.members[0]
        self.state_dim, self.action_dim, self.pred_steps = first.state_dim, first.action_dim, first.pred_steps

    def prepare(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        for model in self.members:
            model.prepare(states, actions)

    def training_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = torch.stack([model.training_loss(obs, actions)[0] for model in self.members])
        return losses.mean(), {"member_loss_spread": losses.detach().std()}

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.members[0].encode(obs)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return self.members[0].decode(state)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        with contextlib.ExitStack() as frozen:
            frozen.enter_context(super().frozen())
            for model in self.members:
                frozen.enter_context(model.frozen())
            yield

    def member_steps(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Every member's next state: (K, ..., D)."""
        return torch.stack([model.step(state, action) for model in self.members])

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.member_steps(state, action).mean(0)

    def disagreement(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The members' std of the next state, averaged over its entries (model units): (...)."""
        return self.member_steps(state, action).std(0).mean(-1)

    @torch.no_grad()
    def validation_metrics(self, episodes, rollout_len: int) -> dict[str, float]:
        """The default errors of the mean model, and the members' disagreement on every held-out
        transition (`val/disagreement`, model units)."""
        states = self.encode(episodes.states[:, :-1])
        return {**super().validation_metrics(episodes, rollout_len),
                "val/disagreement": self.disagreement(states, episodes.actions).mean().item()}
