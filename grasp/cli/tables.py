"""Turn sweep results into the paper's tables and figures.

    .venv/bin/python scripts/make_tables.py outputs/paper_long_horizon/multirun/<date>/<time> [more dirs]

Reads every results.csv of the given sweep (or run) folders and writes, to --out (default: the
first folder's tables/): table.md and table.csv in the paper's layout (rows = horizon in env
steps, columns = planner or ablation row, cells = success % (95 % interval) / median seconds to
success; the paper's Table 1 beside ours for open-loop Push-T; for ablation sweeps, rows = ablation
rows and columns = horizons, as the paper's Table 2), cells.csv (one row per cell), and
success_vs_horizon.png, success_vs_budget.png, final_distance.png; and, where the results carry
success in the model, limits.md: per cell the simulator's, any-step and model success beside the
model's oracle success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grasp.eval import plots
from grasp.eval.metrics import has_variants
from grasp.eval.tables import (ablation_layout, cells, is_table1, limits_layout, paper_layout,
                               read_results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run folders (or results.csv files)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first dir>/tables)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper's numbers")
    args = parser.parse_args(argv)
    try:
        results = read_results(args.dirs)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    out = args.out or (args.dirs[0] if args.dirs[0].is_dir() else args.dirs[0].parent) / "tables"
    out.mkdir(parents=True, exist_ok=True)

    table = cells(results)
    table.to_csv(out / "cells.csv", index=False)
    ablation = has_variants(results)
    layout = ablation_layout(table) if ablation else paper_layout(table, with_paper=not args.no_paper)
    layout.to_csv(out / "table.csv", index=False)
    title = "Success % (95 % interval) / median seconds to success"
    note = ""
    if not ablation and is_table1(results) and not args.no_paper:
        note = ("\n\n(paper) columns: Psenka et al. 2026, Table 1 (500 trials, DINO-WM world model, "
                "frameskip 5); ours: this sweep's trials per cell.")
    if any(column.endswith(("model %", "any-step %")) or column == "oracle %" for column in layout.columns):
        note += ("\n\n`<planner> model %`: success judged on the world model's prediction of the executed plan; "
                 "`any-step %`: the goal region reached at any executed env step; `oracle %`: held-out trajectories "
                 "whose real actions the model predicts to within the success rule (an open-loop planner's ceiling). "
                 "Model success far above the simulator's means the model, not the planner, limits the cell.")
    markdown = f"{title}\n\n{layout.to_markdown(index=False)}{note}\n"
    (out / "table.md").write_text(markdown)
    limits = None if ablation else limits_layout(table)
    if limits is not None:  # simulator, any-step and model success beside the oracle ceiling, compactly
        (out / "limits.md").write_text("Success % in the simulator / at any env step / in the model; oracle %: the "
                                       f"model's ceiling on real actions\n\n{limits.to_markdown(index=False)}\n")
    figures = [plots.success_vs_horizon(table, out / "success_vs_horizon.png"),
               plots.success_vs_budget(results, out / "success_vs_budget.png"),
               plots.final_distances(results, out / "final_distance.png")]
    print(markdown)
    print(f"{len(results)} episodes from {len(args.dirs)} folder(s); wrote {out / 'table.md'}, table.csv, cells.csv, "
          + ", ".join(p.name for p in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
