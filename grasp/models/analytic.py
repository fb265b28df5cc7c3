"""Linear world models with known dynamics: exact answers for planner tests and toy problems.

Usable wherever a WorldModel is (any planner, the MPC loop); states need no normalisation.
"""

from __future__ import annotations

import torch

from grasp.models.base import WorldModel


class LinearWorldModel(WorldModel):
    """s' = s A^T + a B^T (+ c). A, B, c are buffers: the model has nothing to train."""

    def __init__(self, A, B, c=None) -> None:
        super().__init__()
        A = torch.as_tensor(A, dtype=torch.float32)
        B = torch.as_tensor(B, dtype=torch.float32)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or B.ndim != 2 or B.shape[0] != A.shape[0]:
            raise ValueError(f"LinearWorldModel needs A (D, D) and B (D, A), got {list(A.shape)} and {list(B.shape)}")
        self.state_dim, self.action_dim = A.shape[0], B.shape[1]
        c = torch.zeros(self.state_dim) if c is None else torch.as_tensor(c, dtype=torch.float32)
        if c.shape != (self.state_dim,):
            raise ValueError(f"LinearWorldModel bias c must have shape ({self.state_dim},), got {list(c.shape)}")
        self.register_buffer("A", A)
        self.register_buffer("B", B)
        self.register_buffer("c", c)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state @ self.A.T + action @ self.B.T + self.c

    @classmethod
    def single_integrator(cls, dim: int = 2, dt: float = 0.1) -> "LinearWorldModel":
        """A point moved by velocity commands: s' = s + dt * a (D = A = dim)."""
        return cls(torch.eye(dim), dt * torch.eye(dim))

    @classmethod
    def double_integrator(cls, dim: int = 2, dt: float = 0.1) -> "LinearWorldModel":
        """State [position (dim), velocity (dim)], actions are accelerations (exact
        zero-order-hold discretisation): p' = p + dt v + dt^2/2 a, v' = v + dt a."""
        eye, zero = torch.eye(dim), torch.zeros(dim, dim)
        A = torch.cat([torch.cat([eye, dt * eye], 1), torch.cat([zero, eye], 1)], 0)
        B = torch.cat([0.5 * dt**2 * eye, dt * eye], 0)
        return cls(A, B)

    @classmethod
    def unstable(cls, radius: float = 1.03, angle: float = 0.1, dt: float = 0.1) -> "LinearWorldModel":
        """A 2-D system spinning outwards: A = radius * rotation(angle) (spectral radius
        `radius` > 1, so errors in early actions grow like radius**T), B = dt * I."""
        c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
        return cls(radius * torch.stack([torch.stack([c, -s]), torch.stack([s, c])]), dt * torch.eye(2))


class PointWallModel(WorldModel):
    """A 2-D point moved by velocity commands (s' = s + dt * a) that cannot cross the wall
    x = 0 except through the door |y| < door: a blocked step stops just short of the wall.
    Piecewise linear, so gradient planners meet a non-convex landscape with a known answer
    (go through the door)."""

    def __init__(self, dt: float = 0.1, door: float = 0.2, margin: float = 1e-3) -> None:
        super().__init__()
        self.state_dim = self.action_dim = 2
        self.dt, self.door, self.margin = float(dt), float(door), float(margin)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        moved = state + self.dt * action
        x0, x1 = state[..., 0], moved[..., 0]
        crosses = (x0 * x1) <= 0
        # where the segment meets x = 0
        frac = (x0 / (x0 - x1).where((x0 - x1).abs() > 1e-12, torch.ones_like(x0))).clamp(0, 1)
        y_cross = state[..., 1] + frac * (moved[..., 1] - state[..., 1])
        blocked = crosses & (y_cross.abs() >= self.door) & (x0 != 0)
        stop_x = torch.sign(x0) * self.margin
        x = torch.where(blocked, stop_x, x1)
        return torch.stack([x, moved[..., 1]], dim=-1)
