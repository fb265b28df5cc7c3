"""Hydra's basic sweeper, checking every job before any job runs.

Hydra composes all jobs of a sweep before launching them, so a bad key fails at once; a bad
value (a negative sigma in the fifth of ten jobs) would only fail when its job starts, after the
jobs before it ran for hours. This sweeper also runs each job's start-up checks
(grasp.job.resolve: schema, ranges, the planner's and model's constructors, given files)
on every composed job config first, and stops the sweep with one error naming the job.

It is `hydra/sweeper: preflight`, the default (conf/hydra/default.yaml); hparams_search presets
swap in Optuna's sweeper, whose jobs are sampled one trial at a time. It lives in the
`hydra_plugins` namespace because Hydra only instantiates sweepers found there.
"""


from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from omegaconf import open_dict


@dataclass
class PreflightSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.grasp_sweeper.grasp_sweeper.PreflightSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="preflight", node=PreflightSweeperConf, provider="grasp")


class PreflightSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(batch)  # Hydra's own: every job composes
        from grasp.errors import bad_input_exits  # late: Hydra imports every plugin at start-up, even for --help

        with bad_input_exits():  # one line and exit status 2, as a single run's bad value gives
            self._check_every_job(batch)

    def _check_every_job(self, batch: Sequence[Sequence[str]]) -> None:
        from grasp.job import resolve
        from grasp.config import config_hash
        from grasp.errors import ConfigError

        tasks: dict[str, object] = {}  # one simulator per env config, shared by the jobs' checks
        try:
            first = sum(len(done) for done in self.overrides[: self.batch_index - 1])  # jobs of earlier batches
            for number, overrides in enumerate(batch, start=first):
                job = self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                          sweep_overrides=list(overrides))
                with open_dict(job):
                    del job["hydra"]
                key = config_hash(job.env)
                try:
                    tasks[key] = resolve(job, task=tasks.get(key)).task
                except (ValueError, RuntimeError) as exc:  # ConfigError and the files' errors
                    varying = [o for o in overrides if any(o not in other for other in batch)] or list(overrides)
                    raise ConfigError(f"sweep job {number} ({' '.join(varying)}): {exc}; no job of the sweep "
                                      "was started") from exc
        finally:
            for task in tasks.values():
                task.close()
