"""grasp: long-horizon planning with learned world models (GRASP and baselines)."""

import os

# MuJoCo picks its GL backend at import time; egl renders headless on CPU machines too.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
