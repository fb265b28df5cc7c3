"""grasp's Hydra plugins: the preflight sweeper (grasp_sweeper.py)."""
