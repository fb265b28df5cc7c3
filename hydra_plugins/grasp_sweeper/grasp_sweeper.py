"""Hydra's basic sweeper, checking every job before any job runs.

Hydra composes all jobs of a sweep before launching them, so a bad key fails at once; a bad
value (a negative sigma in the fifth of ten jobs) would only fail when its job starts, after the
jobs before it ran for hours. This sweeper also runs each job's start-up checks
(grasp.job.resolve: schema, ranges, the planner's and model's constructors, given files)
on every composed job config first, and stops the sweep with one error naming the job.

World models shared by jobs are trained first. When two or more jobs of a batch need the same
world model and it is not cached yet, a parallel launcher (joblib, submitit, SLURM) would start
them all, and all but one would wait on the training lock, holding their cores or cluster
allocation for the whole training. So the sweeper launches one `stages=[collect,train]` job per
missing shared model first (in the sweep folder's `pretrain/<n>/`, in parallel across models),
then the batch, whose jobs all find their model cached. `hydra.sweeper.pretrain=false` turns
this off. Under launcher=joblib, fewer pretrain jobs than its n_jobs share the machine's cores
among themselves (`threads=`), where joblib would give each the share of one of n_jobs workers.

Under launcher=joblib the workers start as the sweep does: while this process composes and checks
the jobs, each worker imports what a job needs (torch, MuJoCo, the runner, W&B), starts its W&B
service and pays torch's lazy import at its first optimizer, so no job waits on that.
`hydra.sweeper.warm_workers=false` turns this off.

It is `hydra/sweeper: preflight`, the default (conf/hydra/default.yaml); hparams_search presets
swap in Optuna's sweeper, whose jobs are sampled one trial at a time. It lives in the
`hydra_plugins` namespace because Hydra only instantiates sweepers found there.
"""


import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict


@dataclass
class PreflightSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.grasp_sweeper.grasp_sweeper.PreflightSweeper"
    #: train world models shared by several jobs in jobs of their own before the batch
    pretrain: bool = True
    #: under launcher=joblib, start the workers and their imports while the jobs are checked
    warm_workers: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="preflight", node=PreflightSweeperConf, provider="grasp")


log = logging.getLogger(__name__)


class PreflightSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 pretrain: bool = True, warm_workers: bool = True) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.pretrain = pretrain
        self.warm_workers = warm_workers
        self._pretrained = 0  # pretrain jobs launched so far (their folder numbers)
        self._warming: Iterator | None = None  # the workers' warm-up, until it is joined

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        settings = getattr(self.launcher, "joblib", None)
        if self.warm_workers and settings is not None:
            self._warming = _start_warm_up(settings, wandb=_logs_to_wandb(config))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # Hydra's own check, that every job composes; the checks below reuse the composed configs
        jobs = [self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                   sweep_overrides=list(overrides))
                for overrides in batch]
        from grasp.errors import bad_input_exits  # late: Hydra imports every plugin at start-up, even for --help

        try:
            with bad_input_exits():  # one line and exit status 2, as a single run's bad value gives
                missing = self._check_every_job(batch, jobs)
        finally:
            self._join_warm_up()
        if self.pretrain:
            self._train_shared_models(missing)

    def _join_warm_up(self) -> None:
        """Wait for the workers' warm-up (begun in setup), before anything is launched on them."""
        warming, self._warming = self._warming, None
        if warming is not None:
            try:
                for _ in warming:
                    pass
            except Exception as exc:  # a worker that cannot warm up fails its real job with the real error
                log.debug("sweep: warming the joblib workers failed: %r", exc)

    def _train_shared_models(self, missing: dict[Path, list[Sequence[str]]]) -> None:
        """One collect+train job per model that two or more jobs need and nobody has trained yet."""
        shared = [jobs[0] for jobs in missing.values() if len(jobs) > 1]
        if not shared:
            return
        first = self._pretrained
        threads = self._pretrain_threads(shared)
        pretrain = [[*(o for o in overrides if not o.startswith("stages=")), "stages=[collect,train]",
                     *([f"threads={threads}"] if threads else []), f"hydra.sweep.subdir=pretrain/{first + n}"]
                    for n, overrides in enumerate(shared)]
        self._pretrained += len(pretrain)
        log.info("sweep: training %d shared world model(s) first, in %s/pretrain/", len(pretrain),
                 self.config.hydra.sweep.dir)
        for result in self.launcher.launch(pretrain, initial_job_idx=first):
            _ = result.return_value  # a failed training stops the sweep here, before the batch

    def _pretrain_threads(self, shared: list[Sequence[str]]) -> int | None:
        """Torch threads of each pretrain job when joblib runs fewer of them than its n_jobs: its
        workers get cpu_count // n_jobs threads each, sized for a full batch, which would leave
        cores idle while the shared models train. None (leave the count) under other launchers,
        whose jobs have allocations of their own, and when the user fixed the count
        (OMP_NUM_THREADS, or threads=)."""
        settings = getattr(self.launcher, "joblib", None)
        if settings is None or "OMP_NUM_THREADS" in os.environ or self.config.get("threads") is not None \
                or any(o.startswith("threads=") for overrides in shared for o in overrides):
            return None
        from joblib import cpu_count, effective_n_jobs

        workers = effective_n_jobs(settings.get("n_jobs"))
        if len(shared) >= workers:
            return None
        return max(cpu_count() // len(shared), 1)

    def _check_every_job(self, batch: Sequence[Sequence[str]], jobs: Sequence[DictConfig]) -> dict[Path, list[Sequence[str]]]:
        """Resolve every job (`jobs`: the batch's composed configs; a bad one stops the sweep);
        return, per world model that is not cached and that some job would train, the overrides
        of the jobs that need it."""
        from grasp.job import resolve
        from grasp.config import config_hash
        from grasp.errors import ConfigError

        tasks: dict[str, object] = {}  # one simulator per env config, shared by the jobs' checks
        missing: dict[Path, list[Sequence[str]]] = {}
        try:
            first = sum(len(done) for done in self.overrides[: self.batch_index - 1])  # jobs of earlier batches
            for number, (overrides, job) in enumerate(zip(batch, jobs), start=first):
                with open_dict(job):
                    del job["hydra"]
                key = config_hash(job.env)
                try:
                    resolved = resolve(job, task=tasks.get(key))
                    tasks[key] = resolved.task
                except (ValueError, RuntimeError) as exc:  # ConfigError and the files' errors
                    varying = [o for o in overrides if any(o not in other for other in batch)] or list(overrides)
                    raise ConfigError(f"sweep job {number} ({' '.join(varying)}): {exc}; no job of the sweep "
                                      "was started") from exc
                trains = "train" in resolved.stages and job.get("checkpoint") is None
                if trains and not resolved.model_path.exists():  # planner-data rounds included
                    missing.setdefault(resolved.model_path, []).append(overrides)
        finally:
            for task in tasks.values():
                task.close()
        return missing


def _logs_to_wandb(config: DictConfig) -> bool:
    """Whether the sweep's jobs open W&B runs (a bad mode is left to the jobs' checks to report)."""
    from grasp.errors import ConfigError
    from grasp.loggers import wandb_mode

    try:
        return wandb_mode(config.get("logger", {}).get("wandb", {}).get("mode")) != "disabled"
    except ConfigError:
        return False


def _start_warm_up(settings: Any, wandb: bool) -> Iterator:
    """Warm each of the joblib launcher's workers in the background (one `_warm_worker` per
    worker) and return the results' iterator. The launcher's own Parallel, with the same settings,
    then reuses these workers (loky keeps one executor per set of arguments)."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed, effective_n_jobs

    config = {**settings, "backend": "loky"}  # as the launcher passes them to Parallel
    process_joblib_cfg(config)
    workers = effective_n_jobs(config.get("n_jobs"))
    return Parallel(**config, return_as="generator_unordered")(delayed(_warm_worker)(wandb) for _ in range(workers))


def _warm_worker(wandb: bool) -> int:
    """What a job's process pays before its work starts; returns the worker's pid."""
    try:
        import grasp.run  # noqa: F401  torch, MuJoCo, the runner
        from grasp.planners.base import import_optimizer_machinery

        import_optimizer_machinery()
        if wandb:
            from grasp.loggers import start_wandb

            start_wandb()
    except Exception:  # the job itself will report it
        pass
    return os.getpid()
