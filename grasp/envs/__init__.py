"""Goal-conditioned MuJoCo tasks behind one interface (see base.Task)."""

from grasp.envs.base import Task

__all__ = ["Task"]
