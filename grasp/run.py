"""Hydra entry point: `python -m grasp.run [overrides]` (add -m for sweeps)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig

from grasp import runner
from grasp.config import CONF_DIR  # importing grasp.config registers the resolvers Hydra needs
from grasp.errors import BAD_INPUT_STATUS, bad_input_exits
from grasp.eval.runner import run_objective


#: what Hydra raises for a config it cannot compose; it reports them itself and exits with 1
COMPOSITION_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Returns the run's objective (eval.objective_time_weight) for sweepers such as Optuna's;
    None when no evaluation ran."""
    with bad_input_exits():
        results = runner.run(cfg, HydraConfig.get().runtime.output_dir)
    if results is None:
        return None
    return run_objective(cfg, results)


def main() -> None:
    """The command line (`python -m grasp.run`, `grasp-run`). A bad config value or input file
    exits with status 2 and one line naming it (grasp.errors.bad_input_exits); so does a config Hydra cannot compose (an
    unknown group option or key, a malformed override), which Hydra reports in its own words. A
    job that fails for another reason keeps Hydra's status 1."""
    try:
        _hydra_main()
    except SystemExit as stop:
        if stop.code == 1 and isinstance(stop.__context__, COMPOSITION_ERRORS):
            raise SystemExit(BAD_INPUT_STATUS) from None
        raise


if __name__ == "__main__":
    main()
