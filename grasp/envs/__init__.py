"""Goal-conditioned MuJoCo tasks behind one interface (see base.Task)."""

from grasp.envs.base import Task
from grasp.envs.gymnasium_env import register_envs

register_envs()  # gymnasium.make("grasp/PushT-v0") once grasp.envs is imported

__all__ = ["Task"]
