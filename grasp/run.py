"""Hydra entry point: `python -m grasp.run [overrides]` (add -m for sweeps)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from grasp import runner
from grasp.config import CONF_DIR  # importing grasp.config registers the resolvers Hydra needs
from grasp.errors import bad_input_exits
from grasp.eval.runner import run_objective


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Returns the run's objective (eval.objective_time_weight) for sweepers such as Optuna's;
    None when no evaluation ran. A bad config value or input file exits with status 2 and one
    line naming it (grasp.errors.bad_input_exits)."""
    with bad_input_exits():
        results = runner.run(cfg, HydraConfig.get().runtime.output_dir)
    if results is None:
        return None
    return run_objective(cfg, results)


if __name__ == "__main__":
    main()
