"""Weights & Biases run for one job, laid out for dashboards: group = experiment, job_type =
planner, name = <variant>-H<horizon>-<seed>, tags (env, planner, horizon, ablation), and the full
resolved config as nested sections (W&B shows and filters them as "planner.sigma_init").

Results files never depend on this: with mode=disabled every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from grasp.errors import ConfigError

log = logging.getLogger(__name__)

#: seconds an online run may take to start before the run logs offline instead
ONLINE_TIMEOUT_S = 60


MODES = ("disabled", "offline", "online")
#: WANDB_MODE's other spellings wandb itself accepts
MODE_ALIASES = {"dryrun": "offline", "run": "online"}


def wandb_mode(configured: str | None) -> str:
    """The mode a run logs in: the config's `logger.wandb.mode` when it sets one, else the
    environment's WANDB_MODE, else offline (no network needed; `wandb sync` uploads later)."""
    if configured is not None:
        if configured not in MODES:
            raise ConfigError(f"config key 'logger.wandb.mode' = {configured!r} is invalid: allowed null (WANDB_MODE, "
                              f"else offline) or one of {list(MODES)}")
        return configured
    env = os.environ.get("WANDB_MODE", "").strip()
    if not env:
        return "offline"
    mode = MODE_ALIASES.get(env, env)
    if mode not in MODES:
        raise ConfigError(f"environment variable WANDB_MODE = {env!r} is invalid: allowed one of "
                          f"{list(MODES) + list(MODE_ALIASES)} (or set logger.wandb.mode)")
    return mode


def start_wandb():
    """Import W&B (lazily: it takes a second) and start this process's W&B service, which its
    first run would otherwise wait on; a sweep's warm workers call it ahead of their jobs."""
    os.environ.setdefault("WANDB_SILENT", "true")  # before the service starts, which reads it
    import wandb

    wandb.setup()
    return wandb


class WandbRun:
    def __init__(self, wandb_cfg: DictConfig, run_dir: Path, name: str, config: dict[str, Any], tags: list[str],
                 run_id: str | None = None, job_type: str | None = None) -> None:
        """`config`: what W&B stores (the job's resolved config, plus extras); `run_id`
        continues that run (an interrupted job's, read from its resume state)."""
        self.mode = wandb_mode(wandb_cfg.mode)
        self.run = None
        if self.mode == "disabled":
            return
        wandb = start_wandb()
        settings = dict(
            project=wandb_cfg.project,
            entity=wandb_cfg.entity,
            group=wandb_cfg.group,
            job_type=wandb_cfg.get("job_type") or job_type,
            name=wandb_cfg.name or name,
            tags=sorted(set(tags) | set(wandb_cfg.tags or [])),
            config=config,
            dir=str(run_dir),
            reinit="finish_previous",
            **({"id": run_id, "resume": "allow"} if run_id else {}),
        )
        if self.mode == "online":
            try:
                self.run = wandb.init(mode="online", settings=wandb.Settings(init_timeout=ONLINE_TIMEOUT_S), **settings)
            except Exception as exc:  # no API key, no network, a refused login: keep the run, offline
                log.warning("wandb: an online run could not start (%s: %s); logging offline instead, "
                            "`wandb sync` uploads it later", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self.mode = "offline"
        if self.run is None:
            self.run = wandb.init(mode=self.mode, **settings)
        if self.mode == "online":
            log.info("wandb: online run %s: %s", self.run.id, self.run.url)
        else:
            log.info("wandb: offline run %s in %s (upload it with `wandb sync %s`)", self.run.id, self.run.dir,
                     Path(self.run.dir).parent)

    @property
    def id(self) -> str | None:
        return None if self.run is None else self.run.id

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def define_axis(self, pattern: str, step_metric: str) -> None:
        """Plot metrics matching `pattern` against `step_metric` (e.g. episodes, not steps)."""
        if self.run is not None:
            self.run.define_metric(step_metric)
            self.run.define_metric(pattern, step_metric=step_metric)

    def log_file_artifact(self, path: Path, name: str, kind: str, metadata: dict[str, Any] | None = None) -> None:
        """One file as a W&B artifact (offline runs keep it for `wandb sync`)."""
        if self.run is not None:
            import wandb

            artifact = wandb.Artifact(name, type=kind, metadata=metadata or {})
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def log_table(self, key: str, frame: pd.DataFrame) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(dataframe=frame)})

    def log_media(self, images: dict[str, Path] | None = None, videos: dict[str, Path] | None = None) -> None:
        """PNG files as wandb.Image and MP4 files as wandb.Video (copied into the run's files)."""
        if self.run is None or not (images or videos):
            return
        import wandb

        media = {key: wandb.Image(str(path)) for key, path in (images or {}).items()}
        media.update({key: wandb.Video(str(path), format="mp4") for key, path in (videos or {}).items()})
        self.run.log(media)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
