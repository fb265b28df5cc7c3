"""Hydra callback: at the end of a -m sweep, gather every job's results.csv into one table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from grasp.eval.metrics import to_markdown, write_results

log = logging.getLogger(__name__)


def aggregate_sweep(sweep_dir: Path) -> pd.DataFrame | None:
    """Concatenate <sweep_dir>/*/results.csv; write results.csv and summary.md beside them."""
    files = sorted(Path(sweep_dir).glob("*/results.csv"))
    if not files:
        return None
    results = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    return write_results(results, Path(sweep_dir))


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = aggregate_sweep(sweep_dir)
        if table is None:
            log.warning("sweep %s produced no results.csv", sweep_dir)
            return
        print(f"\nSweep summary ({sweep_dir}):\n{to_markdown(table)}\n", flush=True)
