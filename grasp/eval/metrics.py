"""Per-episode result rows and the per-planner summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd

RESULT_COLUMNS = [
    "exp_name", "planner", "env", "horizon", "seed", "episode", "episode_seed", "open_loop",
    "success", "steps", "final_distance", "plan_time", "plan_calls", "time_to_success",
    "plan_iterations", "model_final_cost",
]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (env, horizon, planner): success %, median time to success over the
    successful episodes, mean final distance, mean planning time per call."""
    keys = ["env", "horizon", "planner"]

    def one(group: pd.DataFrame) -> pd.Series:
        solved = group.loc[group["success"].astype(bool), "time_to_success"]
        return pd.Series({
            "episodes": len(group),
            "success_%": 100.0 * group["success"].astype(bool).mean(),
            "median_time_to_success_s": float(solved.median()) if len(solved) else np.nan,
            "mean_final_distance": group["final_distance"].mean(),
            "plan_time_per_call_s": (group["plan_time"] / group["plan_calls"].clip(lower=1)).mean(),
        })

    rows = [one(group).rename(name) for name, group in results.groupby(keys, sort=True)]
    table = pd.DataFrame(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=keys)
    table["episodes"] = table["episodes"].astype(int)
    return table.reset_index()


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".3g")
