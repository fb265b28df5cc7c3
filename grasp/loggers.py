"""Weights & Biases run for one job, laid out for dashboards: group = experiment, job_type =
planner, name = <variant>-H<horizon>-<seed>, tags (env, planner, horizon, ablation), and the full
resolved config flattened to dotted keys ("planner.sigma_init"), so any knob can group or filter.

Results files never depend on this: with mode=disabled every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def flat_config(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """{"planner.sigma_init": 0.01, ...}: every leaf of the resolved config under its dotted path
    (lists stay values)."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class WandbRun:
    def __init__(self, wandb_cfg: DictConfig, run_dir: Path, name: str, config: dict[str, Any], tags: list[str],
                 run_id: str | None = None, job_type: str | None = None) -> None:
        """`config`: what W&B stores (flat_config of the job's config, plus extras); `run_id`
        continues that run (an interrupted job's, read from its resume state)."""
        self.mode = wandb_cfg.mode
        self.run = None
        if self.mode == "disabled":
            return
        import wandb  # imported lazily: it takes a second and spawns a service

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            mode=self.mode,
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
        log.info("wandb: %s run %s in %s", self.mode, self.run.id, self.run.dir)

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
