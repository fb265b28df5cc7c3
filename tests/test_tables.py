"""The paper's table layout and figures from results files: cells with known counts, the paper's
Table 1 beside ours, and scripts/make_tables.py on a sweep folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from grasp.eval.metrics import RESULT_COLUMNS, has_variants, wilson_interval
from grasp.eval.paper import TABLE1
from grasp.eval.tables import ablation_layout, cells, is_table1, limits_layout, paper_layout, read_results


def results(planner: str, horizon: int, successes: int, episodes: int, seconds: float, env: str = "pusht",
            variant: str | None = None) -> pd.DataFrame:
    """Episode rows: the first `successes` solved, at seconds, 2 * seconds, ..."""
    frame = pd.DataFrame({column: np.nan for column in RESULT_COLUMNS}, index=range(episodes))
    frame["planner"], frame["variant"], frame["env"] = planner, variant or planner, env
    frame["horizon"], frame["horizon_env_steps"], frame["open_loop"] = horizon // 5, horizon, True
    frame["success"] = np.arange(episodes) < successes
    frame["time_to_success"] = np.where(frame["success"], seconds * (1 + np.arange(episodes)), np.nan)
    frame["final_distance"] = np.linspace(0.0, 1.0, episodes)
    return frame


@pytest.fixture
def sweep(tmp_path):
    """A sweep folder as Hydra leaves it: one results.csv per job."""
    jobs = [results("grasp", 40, 3, 4, 1.0), results("cem", 40, 1, 4, 10.0), results("grasp", 50, 0, 4, 1.0),
            results("cem", 50, 2, 4, 5.0)]
    for number, job in enumerate(jobs):
        (tmp_path / str(number)).mkdir()
        job.to_csv(tmp_path / str(number) / "results.csv", index=False)
    return tmp_path


def test_cells_count_successes_and_take_the_median_time_of_the_solved(sweep):
    table = cells(read_results([sweep])).set_index(["horizon_env_steps", "variant"])
    grasp = table.loc[(40, "grasp")]
    assert grasp["episodes"] == 4 and grasp["success_%"] == 75.0
    low, high = wilson_interval(3, 4)
    assert grasp["ci95_low_%"] == pytest.approx(100 * low) and grasp["ci95_high_%"] == pytest.approx(100 * high)
    assert grasp["median_time_to_success_s"] == 2.0  # solved at 1, 2, 3 s
    assert np.isnan(table.loc[(50, "grasp"), "median_time_to_success_s"])


def test_layout_rows_are_horizons_columns_planners_with_the_papers_numbers_beside(sweep):
    data = read_results([sweep])
    assert is_table1(data)
    layout = paper_layout(cells(data))
    assert list(layout["H (env steps)"]) == [40, 50]
    assert list(layout.columns) == ["env", "H (env steps)", "cem", "cem (paper)", "grasp", "grasp (paper)"]
    first = layout.iloc[0]
    assert first["grasp"].startswith("75.0 (") and first["grasp"].endswith("/ 2.0")
    assert first["grasp (paper)"] == f"{TABLE1[40]['grasp'][0]:.1f} / {TABLE1[40]['grasp'][1]:.1f}"
    assert layout.iloc[1]["grasp"].endswith("/ –"), "no success: no time"
    assert "grasp (paper)" not in paper_layout(cells(data), with_paper=False)
    # a wall sweep is not Table 1: no paper columns
    wall = pd.concat([results("grasp", 40, 1, 2, 1.0, env="wall")])
    assert not is_table1(wall) and list(paper_layout(cells(wall)).columns) == ["env", "H (env steps)", "grasp"]


def test_ablation_rows_are_labelled_by_their_variant(tmp_path):
    data = pd.concat([results("grasp", 40, 0, 4, 1.0, variant="no_noise"), results("grasp", 40, 2, 4, 1.0,
                                                                                      variant="full")])
    assert has_variants(data) and not has_variants(results("grasp", 40, 2, 4, 1.0))
    layout = ablation_layout(cells(data))
    assert list(layout["variant"]) == ["full", "no_noise"], "the full method first, as in the paper's Table 2"
    assert list(layout.columns) == ["variant", "pusht H=40"]
    assert layout.iloc[0]["pusht H=40"].startswith("50.0 (") and layout.iloc[1]["pusht H=40"].endswith("/ –")


def test_make_tables_writes_markdown_csv_and_figures(sweep, tmp_path):
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, "scripts/make_tables.py", str(sweep), "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| pusht |" in proc.stdout and "(paper)" in proc.stdout
    assert pd.read_csv(out / "table.csv").shape == (2, 6)
    assert len(pd.read_csv(out / "cells.csv")) == 4
    for figure in ("success_vs_horizon.png", "success_vs_budget.png", "final_distance.png"):
        assert (out / figure).stat().st_size > 5000, figure
    missing = subprocess.run([sys.executable, "scripts/make_tables.py", str(tmp_path / "nowhere")], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nowhere: no results.csv" in missing.stderr


def test_table1_shows_success_in_the_model_and_the_oracle_beside_the_simulators(sweep):
    data = read_results([sweep])
    data["success_any_step"] = data["success"]
    data["model_success"] = 1.0  # every plan reaches the goal in the model
    data["model_oracle_success"] = np.where(data["horizon_env_steps"] == 40, 0.5, 0.25)
    table = cells(data).set_index(["horizon_env_steps", "variant"])
    assert table.loc[(40, "cem"), "model_success_%"] == 100.0 and table.loc[(40, "cem"), "success_%"] == 25.0
    assert table.loc[(50, "grasp"), "oracle_success_%"] == 25.0
    layout = paper_layout(cells(data), with_paper=False).set_index("H (env steps)")
    assert list(layout.columns) == ["env", "oracle %", "cem", "cem any-step %", "cem model %", "grasp",
                                    "grasp any-step %", "grasp model %"]
    assert layout.loc[40, "oracle %"] == "50" and layout.loc[50, "oracle %"] == "25"
    assert layout.loc[40, "grasp model %"] == "100" and layout.loc[40, "grasp any-step %"] == "75"
    limits = limits_layout(cells(data)).set_index("H (env steps)")
    assert limits.loc[40, "grasp sim / any / model %"] == "75 / 75 / 100" and limits.loc[40, "oracle %"] == "50"
    assert limits_layout(cells(read_results([sweep]))) is None, "no model success measured: no limits table"
