"""State frames: a task-provided change of coordinates a state model predicts in.

A model that sees the Push-T pusher in the block's own frame learns one push for every pose of
the block instead of one per pose. A frame says what the network reads (`features`, the actions
as seen from the state: `local_action`) and what it predicts (`relative`: the motion from a state
to the next, in that state's frame), and maps a predicted motion back (`apply`, the exact inverse:
apply(s, relative(s, s')) == s'). Tasks ship theirs (grasp.envs.pusht_frame) and a world-model
config names it under `frame:`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class StateFrame(Protocol):
    #: the task's state size it works on, and the sizes of what it produces
    state_dim: int
    feature_dim: int
    motion_dim: int

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """(..., state_dim) raw states -> (..., feature_dim) network inputs."""

    def local_action(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Actions (..., A) as seen in the frame of `state` (same shape)."""

    def relative(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """The motion (..., motion_dim) from `state` to `next_state`, in the frame of `state`."""

    def apply(self, state: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """The next state that `motion` (in the frame of `state`) leads to: relative's inverse."""
