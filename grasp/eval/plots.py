"""The figures next to the tables: success vs horizon, success vs wall-clock budget (the paper's
Fig. 5), and final-distance distributions. PNG files, one call each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from grasp.eval.tables import column_order  # noqa: E402


def _colours(variants) -> dict[str, str]:
    """One colour per variant, the same in every panel and figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {v: cycle[i % len(cycle)] for i, v in enumerate(column_order(variants))}


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def success_vs_horizon(table: pd.DataFrame, path: Path) -> Path:
    """Success % against the horizon (env steps) per variant, with the 95 % intervals; one panel per env."""
    envs = sorted(set(table["env"]))
    colours = _colours(table["variant"])
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.2), squeeze=False)
    for axis, env in zip(axes[0], envs):
        for variant in column_order(table["variant"]):
            rows = table[(table["env"] == env) & (table["variant"] == variant)].sort_values("horizon_env_steps")
            if rows.empty:
                continue
            err = [rows["success_%"] - rows["ci95_low_%"], rows["ci95_high_%"] - rows["success_%"]]
            axis.errorbar(rows["horizon_env_steps"], rows["success_%"], yerr=err, marker="o", capsize=3, label=variant,
                          color=colours[variant])
        axis.set(title=env, xlabel="horizon (env steps)", ylabel="success %", ylim=(-2, 102))
        axis.legend(fontsize=7)
    return _save(fig, path)


def success_vs_budget(results: pd.DataFrame, path: Path) -> Path:
    """Success % against the wall-clock planning time per episode (log scale), one point per job
    (a planner's budget at one horizon), the jobs of a variant joined in order of time; one panel
    per horizon. Sweeping a planner's budget (planner.iterations, planner.samples) into folders
    given together draws the paper's Fig. 5 curves; one budget each gives the time-success
    trade-off of the tuned planners."""
    horizons = sorted(set(results["horizon_env_steps"]))
    colours = _colours(results["variant"])
    job = results["source"] if "source" in results else results["planner"]
    fig, axes = plt.subplots(1, len(horizons), figsize=(3.4 * len(horizons), 3.0), squeeze=False, sharey=True)
    for axis, horizon in zip(axes[0], horizons):
        here = results["horizon_env_steps"] == horizon
        for variant in column_order(results["variant"]):
            rows = results[here & (results["variant"] == variant)]
            if rows.empty:
                continue
            points = sorted((group["plan_time"].mean(), 100.0 * group["success"].astype(bool).mean())
                            for _, group in rows.groupby(job[rows.index]))
            axis.plot(*zip(*points), marker="o", label=variant, color=colours[variant])
        axis.set(xscale="log", title=f"H = {horizon:g}", xlabel="planning time per episode (s)")
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_ylabel("success %")
        axis.legend(fontsize=7)
    return _save(fig, path)


def final_distances(results: pd.DataFrame, path: Path) -> Path:
    """Box plots of the final distance to the goal per variant; one panel per horizon."""
    horizons = sorted(set(results["horizon_env_steps"]))
    fig, axes = plt.subplots(1, len(horizons), figsize=(3.4 * len(horizons), 3.0), squeeze=False, sharey=True)
    for axis, horizon in zip(axes[0], horizons):
        rows = results[results["horizon_env_steps"] == horizon]
        variants = [v for v in column_order(results["variant"]) if (rows["variant"] == v).any()]
        axis.boxplot([rows.loc[rows["variant"] == v, "final_distance"] for v in variants])
        axis.set_xticks(range(1, len(variants) + 1), variants, rotation=30, fontsize=7)
        axis.set(title=f"H = {horizon:g}", ylabel="final distance")
    return _save(fig, path)
