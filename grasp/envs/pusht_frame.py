"""Push-T's block frame for state world models (grasp.models.frames.StateFrame).

The network reads the pusher's position and every velocity in the block's frame (origin at its
centroid, axes turned with it), the block's angular velocity, and the block's pose in the arena
(the walls are not turned with it), and it predicts, in the frame of the current state, the
pusher's and the block's displacements, the block's turn as a point (cos, sin) on the circle,
and the next velocities. The pusher's commands are turned into the block frame too, so one
learned push serves every orientation of the block.

State layout (grasp.envs.pusht): [px, py, bx, by, cos, sin, pvx, pvy, bvx, bvy, w].
"""

from __future__ import annotations

import torch

STATE_DIM = 11


def _to_frame(c: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """World vectors (..., n, 2) into the frame turned by (c, s) (...,)."""
    c, s = c[..., None], s[..., None]
    return torch.stack([c * v[..., 0] + s * v[..., 1], c * v[..., 1] - s * v[..., 0]], dim=-1)


def _from_frame(c: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Frame vectors (..., n, 2) back to the world (the inverse of _to_frame)."""
    c, s = c[..., None], s[..., None]
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], dim=-1)


def _pairs(state: torch.Tensor, *starts: int) -> torch.Tensor:
    """The 2-vectors of `state` starting at each index: (..., n, 2)."""
    return torch.stack([state[..., i : i + 2] for i in starts], dim=-2)


class BlockFrame:
    """The block frame of Push-T states; `apply(state, relative(state, next))` is `next`."""

    state_dim = STATE_DIM
    feature_dim = 11
    motion_dim = 11

    def features(self, state: torch.Tensor) -> torch.Tensor:
        c, s = state[..., 4], state[..., 5]
        offset = (state[..., 0:2] - state[..., 2:4])[..., None, :]
        local = _to_frame(c, s, torch.cat([offset, _pairs(state, 6, 8)], dim=-2)).flatten(-2)
        return torch.cat([local, state[..., 10:11], state[..., 2:6]], dim=-1)

    def local_action(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        c, s = state[..., 4], state[..., 5]
        commands = action.reshape(*action.shape[:-1], -1, 2)
        return _to_frame(c, s, commands).reshape(action.shape)

    def relative(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        c, s = state[..., 4], state[..., 5]
        moves = torch.stack([next_state[..., 0:2] - state[..., 0:2], next_state[..., 2:4] - state[..., 2:4],
                             next_state[..., 4:6]], dim=-2)
        local = _to_frame(c, s, torch.cat([moves, _pairs(next_state, 6, 8)], dim=-2)).flatten(-2)
        return torch.cat([local, next_state[..., 10:11]], dim=-1)

    def apply(self, state: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        c, s = state[..., 4], state[..., 5]
        world = _from_frame(c, s, motion[..., :10].reshape(*motion.shape[:-1], 5, 2))
        heading = world[..., 2, :] / world[..., 2, :].norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return torch.cat([state[..., 0:2] + world[..., 0, :], state[..., 2:4] + world[..., 1, :], heading,
                          world[..., 3, :], world[..., 4, :], motion[..., 10:11]], dim=-1)
