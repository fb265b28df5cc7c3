"""Per-episode result rows and the per-planner summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from grasp.utils import atomic_path

RESULT_COLUMNS = [
    "exp_name", "planner", "variant", "env", "horizon", "horizon_env_steps", "seed", "episode", "episode_seed", "open_loop",
    # success in the simulator (final state; any executed env step) and in the model (its prediction
    # of the executed plan's final state), the distances behind them
    "success", "success_any_step", "model_success", "steps", "final_distance", "model_final_distance",
    "plan_time", "plan_calls", "time_to_success", "time_to_success_any_step",
    "plan_iterations", "model_final_cost", "plan_time_per_step", "model_divergence", "model_max_divergence",
    "nonfinite_plans",
    # the world model's held-out quality: one-step MSE, rollout RMSE, oracle success at this horizon,
    # a latent model's state readout error
    "model_val_mse", "model_val_rollout_rmse", "model_oracle_success", "model_readout_rmse",
    # where the row came from (grasp.provenance.stamp), and the precision the planner optimised in
    # (fp32 or bf16: what the run's `precision` gave it on this machine)
    "git_commit", "git_dirty", "versions", "device", "checkpoint_sha256", "precision",
]
#: the wall-clock columns of a results row: every other column is the same run to run on one machine
TIMING_COLUMNS = ("plan_time", "time_to_success", "time_to_success_any_step", "plan_time_per_step")


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate: sensible at 0 % and 100 % and for the few
    trials a CPU run affords, unlike the normal approximation."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def has_variants(results: pd.DataFrame) -> bool:
    """Whether rows are labelled by ablation variants rather than only by their planner."""
    return "variant" in results and bool((results["variant"].astype(str) != results["planner"].astype(str)).any())


def success_statistics(group: pd.DataFrame) -> dict[str, float]:
    """A cell's episodes, success % with its 95 % Wilson interval, median seconds to success over
    the successful episodes, and mean final distance."""
    solved = group["success"].astype(bool)
    low, high = wilson_interval(int(solved.sum()), len(group))
    times = group.loc[solved, "time_to_success"]
    return {"episodes": len(group), "success_%": 100.0 * solved.mean(), "ci95_low_%": 100.0 * low,
            "ci95_high_%": 100.0 * high, "median_time_to_success_s": float(times.median()) if len(times) else np.nan,
            "mean_final_distance": group["final_distance"].mean(), **model_statistics(group)}


def _percent(group: pd.DataFrame, column: str) -> float:
    """Mean of a 0/1 column in %, over the rows where it is known (NaN when none is)."""
    if column not in group:
        return np.nan
    values = pd.to_numeric(group[column], errors="coerce").astype(float)
    return 100.0 * float(values.mean()) if values.notna().any() else np.nan


def model_statistics(group: pd.DataFrame) -> dict[str, float]:
    """What the simulator success of a cell is to be read against: any-step success, success in
    the model (judged on its prediction of the executed plan) and the model's oracle success at
    the cell's horizon (the ceiling of an open-loop planner), in %."""
    return {"success_any_step_%": _percent(group, "success_any_step"),
            "model_success_%": _percent(group, "model_success"),
            "oracle_success_%": _percent(group, "model_oracle_success")}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (env, horizon, planner), and per variant where the rows have ablation variants:
    success % with its 95% (Wilson) interval, any-step success, success in the model and the
    model's oracle success (model_statistics), median
    time to success over the successful episodes, mean final distance, planning time per call
    and per env step, the model-vs-simulator divergence of the executed plans, and the world
    model's held-out errors (one-step MSE, open-loop rollout RMSE)."""
    keys = ["env", "horizon", "planner"] + (["variant"] if has_variants(results) else [])

    def one(group: pd.DataFrame) -> pd.Series:
        stats = success_statistics(group)
        optional = {key: group[column].mean() for key, column in (
            ("plan_time_per_step_s", "plan_time_per_step"), ("mean_model_divergence", "model_divergence"),
            ("model_val_mse", "model_val_mse"), ("model_val_rollout_rmse", "model_val_rollout_rmse"))
            if column in group}
        return pd.Series({
            "episodes": stats["episodes"],
            "success_%": stats["success_%"],
            "success_ci95_%": f"{stats['ci95_low_%']:.0f}-{stats['ci95_high_%']:.0f}",
            "success_any_step_%": stats["success_any_step_%"],
            "model_success_%": stats["model_success_%"],
            "oracle_success_%": stats["oracle_success_%"],
            "median_time_to_success_s": stats["median_time_to_success_s"],
            "mean_final_distance": stats["mean_final_distance"],
            "plan_time_per_call_s": (group["plan_time"] / group["plan_calls"].clip(lower=1)).mean(),
            **optional,
        })

    rows = [one(group).rename(name) for name, group in results.groupby(keys, sort=True)]
    table = pd.DataFrame(rows)
    table.index = pd.MultiIndex.from_tuples(table.index, names=keys)
    table["episodes"] = table["episodes"].astype(int)
    return table.reset_index()


def tuning_objective(results: pd.DataFrame, time_weight: float) -> float:
    """Success rate minus time_weight x mean planning seconds per episode: what hparams_search
    maximises (success first; with a small weight, time settles near-ties)."""
    if not len(results):
        raise ValueError("tuning_objective needs at least one episode")
    return float(results["success"].astype(bool).mean() - time_weight * results["plan_time"].mean())


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".3g")


def write_results(results: pd.DataFrame, output_dir: Path) -> pd.DataFrame:
    """results.csv and summary.md (each written whole or not at all); returns the summary table."""
    with atomic_path(output_dir / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    table = summarize(results)
    with atomic_path(output_dir / "summary.md") as tmp:
        tmp.write_text(to_markdown(table) + "\n")
    return table
