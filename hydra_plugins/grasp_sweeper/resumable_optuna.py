"""Optuna's Hydra sweeper, resumable: with a persistent `storage` (the presets keep the study in
<sweep dir>/optuna.db), the same command run again after a kill or a preemption continues the
study instead of starting another `n_trials`.

On start it loads the study, marks the trials a killed sweep left running as failed (their jobs
did not finish), asks only for the trials still missing from `n_trials` completed ones, and numbers
the new jobs after the old ones, so no trial's run dir is overwritten. Several sweeps pointed at one
storage and study name share the study (trials in parallel across cluster jobs).

It is `hydra/sweeper: resumable_optuna` (conf/hparams_search/optuna.yaml).
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


@dataclass
class ResumableOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.grasp_sweeper.resumable_optuna.ResumableOptunaSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="resumable_optuna", node=ResumableOptunaSweeperConf,
                             provider="grasp")


class ResumableOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: List[str]) -> None:
        impl = self.sweeper
        if impl.storage is not None:
            self._continue_study()
        return impl.sweep(arguments)

    def _continue_study(self) -> None:
        import optuna  # late: Hydra imports every plugin at start-up, even for --help

        impl = self.sweeper
        if str(impl.storage).startswith("sqlite:///"):  # the sweep dir does not exist before its first job
            Path(str(impl.storage)[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=impl.study_name, storage=impl.storage,
                                    directions=impl._get_directions(), load_if_exists=True)
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == optuna.trial.TrialState.RUNNING:  # its sweep was killed mid-trial
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        done = sum(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
        if trials:
            log.info("optuna: resuming study %r in %s: %d of %d trials complete, %d to run", study.study_name,
                     impl.storage, done, impl.n_trials, max(impl.n_trials - done, 0))
        impl.n_trials = max(impl.n_trials - done, 0)
        impl.job_idx += len(trials)  # new jobs' run dirs follow the old ones
