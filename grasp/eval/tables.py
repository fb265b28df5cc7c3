"""The paper's table layout from sweep results: rows = horizon (env steps), columns = planner (or
ablation row), cells = success % with its 95% interval / median seconds to success."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from grasp.eval.metrics import success_statistics
from grasp.eval.paper import TABLE1

#: the planners' column order in tables (others follow alphabetically)
PLANNER_ORDER = ["cem", "gd", "latco", "grasp"]


def read_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every results.csv of the given sweep folders' jobs (or of run folders, or given directly),
    concatenated; `source` names each row's file, i.e. its job."""
    frames = []
    for path in map(Path, paths):
        if path.is_file():
            files = [path]
        else:  # a sweep's jobs (each its own source: one budget of one planner), else a run
            files = sorted(path.glob("*/results.csv")) or sorted(path.glob("results.csv"))
        if not files:
            raise FileNotFoundError(f"{path}: no results.csv in it or in its job folders")
        frames += [pd.read_csv(f).assign(source=str(f)) for f in files]
    results = pd.concat(frames, ignore_index=True)
    if "variant" not in results:  # results written before variants existed
        results["variant"] = results["planner"]
    if "horizon_env_steps" not in results:
        results["horizon_env_steps"] = results["horizon"]
    return results


def cells(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (env, horizon_env_steps, variant): episodes, success % and its Wilson 95 %
    interval, median seconds to success over the successful episodes, mean final distance."""
    rows = [{"env": env, "horizon_env_steps": horizon, "variant": variant, "planner": group["planner"].iloc[0],
             **success_statistics(group)}
            for (env, horizon, variant), group in results.groupby(["env", "horizon_env_steps", "variant"], sort=True)]
    return pd.DataFrame(rows)


def column_order(variants: Iterable[str]) -> list[str]:
    variants = sorted(set(variants))
    return [v for v in PLANNER_ORDER if v in variants] + [v for v in variants if v not in PLANNER_ORDER]


def format_cell(success: float, low: float, high: float, median_s: float) -> str:
    time = "–" if np.isnan(median_s) else f"{median_s:.1f}"
    return f"{success:.1f} ({low:.0f}-{high:.0f}) / {time}"


def _known(value) -> bool:
    return value is not None and bool(np.isfinite(float(value)))


def _row_start(env: str, horizon: float) -> dict:
    return {"env": env, "H (env steps)": int(horizon) if float(horizon).is_integer() else horizon}


def _oracle(group: pd.DataFrame) -> str | None:
    """The cell row's oracle success % (one model per row), or None where it was not measured."""
    known = [v for v in group.get("oracle_success_%", pd.Series(dtype=float)) if _known(v)]
    return f"{known[0]:.0f}" if known else None


def paper_layout(table: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """Rows = (env, horizon in env steps), columns = variants; with_paper adds the paper's Table 1
    cell beside each of ours where it has one. Where the results carry them, each variant's
    simulator cell has its success judged in the model (`<variant> model %`) and at any env step
    (`<variant> any-step %`) beside it, and each row the model's oracle success (`oracle %`: the
    share of held-out trajectories the model predicts to within the success rule from their real
    actions), so a reader sees where the model, not the planner, sets the limit."""
    out = []
    for (env, horizon), group in table.groupby(["env", "horizon_env_steps"], sort=True):
        row = _row_start(env, horizon)
        if _oracle(group) is not None:
            row["oracle %"] = _oracle(group)
        by_variant = group.set_index("variant")
        for variant in column_order(table["variant"]):
            if variant not in by_variant.index:
                continue
            c = by_variant.loc[variant]
            row[variant] = format_cell(c["success_%"], c["ci95_low_%"], c["ci95_high_%"], c["median_time_to_success_s"])
            for key, label in (("success_any_step_%", "any-step %"), ("model_success_%", "model %")):
                if _known(c.get(key)):
                    row[f"{variant} {label}"] = f"{c[key]:.0f}"
            paper = TABLE1.get(int(horizon), {}).get(variant) if with_paper and env == "pusht" else None
            if paper is not None:
                row[f"{variant} (paper)"] = f"{paper[0]:.1f} / {'–' if paper[1] is None else f'{paper[1]:.1f}'}"
        out.append(row)
    return pd.DataFrame(out).fillna("–")  # a cell this sweep did not run


def limits_layout(table: pd.DataFrame) -> pd.DataFrame | None:
    """What limits each cell, compactly: rows = (env, horizon in env steps), the model's oracle
    success, then per variant `simulator / any step / model` success % (no intervals or times).
    None when the results carry no success in the model (files from before it was measured)."""
    if "model_success_%" not in table or not table["model_success_%"].notna().any():
        return None
    out = []
    for (env, horizon), group in table.groupby(["env", "horizon_env_steps"], sort=True):
        row = {**_row_start(env, horizon), "oracle %": _oracle(group) or "–"}
        by_variant = group.set_index("variant")
        for variant in column_order(table["variant"]):
            if variant in by_variant.index:
                c = by_variant.loc[variant]
                row[f"{variant} sim / any / model %"] = " / ".join(
                    f"{c[key]:.0f}" if _known(c[key]) else "–"
                    for key in ("success_%", "success_any_step_%", "model_success_%"))
        out.append(row)
    return pd.DataFrame(out).fillna("–")


def ablation_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation table's layout (the paper's Table 2): rows = ablation variants (in the order
    of conf/ablation's `full` first), columns = (env, horizon) cells."""
    out = []
    variants = sorted(set(table["variant"]), key=lambda v: (v != "full", v))
    for variant in variants:
        row = {"variant": variant}
        for _, c in table[table["variant"] == variant].sort_values(["env", "horizon_env_steps"]).iterrows():
            key = f"{c['env']} H={c['horizon_env_steps']:g}"
            row[key] = format_cell(c["success_%"], c["ci95_low_%"], c["ci95_high_%"], c["median_time_to_success_s"])
        out.append(row)
    return pd.DataFrame(out).fillna("–")


def is_table1(results: pd.DataFrame) -> bool:
    """Results in Table 1's setting: open-loop Push-T at some of the paper's horizons."""
    return (set(results["env"]) == {"pusht"} and bool(results["open_loop"].astype(bool).all())
            and bool(results["horizon_env_steps"].isin(list(TABLE1)).any()))
