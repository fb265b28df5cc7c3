"""How GRASP and its baselines behave on planning problems with a known answer.

Problems (batch of start/goal pairs, fixed seeds; actions bounded to [-1, 1] unless a
configuration says otherwise):
  single    2-D single integrator s' = s + 0.1 a, goal 1.0 away
  double    2-D double integrator (actions reach positions only through velocity), goal 1.0
            away at rest; the goal cost looks at positions only, as the runner's default
  unstable  2-D linear system with spectral radius 1.03 (A = 1.03 * rotation(0.1)), goal 1.0 away
  wall      2-D point, single integrator, wall at x = 0 with a door |y| < 0.2; start in the
            left room, goal in the right one (non-convex)

Every planner is built from its real conf/planner/*.yaml plus the overrides listed here, so
the numbers describe the shipped configs. Writes a CSV and prints a Markdown table.

  python scripts/grasp_study.py                                 # the comparison table
  python scripts/grasp_study.py --problems double --horizons 50 \
      --planners grasp --grid alpha=0,0.5,1 sync_every=10,25    # a knob sweep
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from grasp import planners
from grasp.config import REPO_ROOT
from grasp.models.analytic import LinearWorldModel, PointWallModel

SUCCESS = 0.05  # a plan succeeds when its final (goal-weighted) distance is under this

#: label -> (planner config, overrides). "author" is the first author's later code defaults
#: (the paper's reference code): constant goal weight, full stop-grad, no action bounds.
CONFIGS: dict[str, tuple[str, dict]] = {
    "grasp": ("grasp", {}),
    # the defaults shipped before this study: larger action steps, a 10-step sync at lr 0.05
    "grasp_coarse": ("grasp", dict(lr_actions=0.05, sync_steps=10, sync_lr=0.05)),
    "grasp_author": ("grasp", dict(iterations=750, lr_states=0.1, lr_actions=0.005, sigma_init=0.005,
                                   sigma_final=0.005, sigma_schedule="constant", gamma_init=1.0, gamma_final=1.0,
                                   gamma_schedule="constant", sync_every=50, sync_steps=10, sync_lr=0.05,
                                   action_low=-1e3, action_high=1e3)),
    "grasp_author_bounded": ("grasp", dict(iterations=750, lr_states=0.1, lr_actions=0.005, sigma_init=0.005,
                                           sigma_final=0.005, sigma_schedule="constant", gamma_init=1.0,
                                           gamma_final=1.0, gamma_schedule="constant", sync_every=50)),
    "grasp_long": ("grasp_long", {}),
    "grasp_no_sync": ("grasp", {"sync": "none"}),
    "gd": ("gd", {}),
    "cem": ("cem", {}),
    "latco": ("latco", {}),
}


def make_problems(name: str, batch: int, seed: int):
    """(model, start (B, D), goal (B, D), goal weights (D,))."""
    gen = torch.Generator().manual_seed(seed)
    angle = torch.rand(batch, generator=gen) * 2 * math.pi
    step = torch.stack([angle.cos(), angle.sin()], 1)
    if name == "single":
        start = torch.rand(batch, 2, generator=gen) * 2 - 1
        return LinearWorldModel.single_integrator(), start, start + step, torch.ones(2)
    if name == "double":
        start = torch.rand(batch, 2, generator=gen) * 2 - 1
        zeros = torch.zeros(batch, 2)
        return (LinearWorldModel.double_integrator(), torch.cat([start, zeros], 1),
                torch.cat([start + step, zeros], 1), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    if name == "unstable":
        start = torch.rand(batch, 2, generator=gen) - 0.5
        return LinearWorldModel.unstable(), start, start + step, torch.ones(2)
    if name == "wall":
        u = torch.rand(batch, 4, generator=gen)
        start = torch.stack([-1 + 0.7 * u[:, 0], 2 * u[:, 1] - 1], 1)
        goal = torch.stack([0.3 + 0.7 * u[:, 2], 2 * u[:, 3] - 1], 1)
        return PointWallModel(), start, goal, torch.ones(2)
    raise SystemExit(f"unknown problem {name!r}: choose from single, double, unstable, wall")


def build(config: str, overrides: dict, model, horizon: int, weights: torch.Tensor):
    return planners.build(config, model, horizon=horizon, action_low=-1.0, action_high=1.0,
                          state_weights=weights.tolist(), **overrides)


def evaluate(problem: str, horizon: int, label: str, config: str, overrides: dict, batch: int, seed: int) -> dict:
    model, start, goal, weights = make_problems(problem, batch, seed)
    planner = build(config, overrides, model, horizon, weights)
    began = time.perf_counter()
    result = planner.plan(start, goal, generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - began
    error = result.info["final_cost"].sqrt()
    row = {"problem": problem, "horizon": horizon, "planner": label, "success_%": 100.0 * (error < SUCCESS).float().mean().item(),
           "median_error": error.median().item(), "max_error": error.max().item(), "time_s": seconds,
           "iterations": result.info["iterations"]}
    for key in ("dynamics",):
        if key in result.info:
            row["final_dynamics_violation"] = result.info[key][-1].median().item()
    return row


def parse_grid(items: list[str]) -> list[dict]:
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        axes.append([(key, yaml_value(v)) for v in re.split(r",(?![^\[]*\])", values)])  # commas outside [...]
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def yaml_value(text: str):
    """'0.5' -> 0.5, 'true' -> True, '[0.25,0.5]' -> list, 'gd' -> 'gd' (YAML's rules)."""
    return yaml.safe_load(text)


def summary_tables(frame: pd.DataFrame) -> str:
    """One Markdown table per problem: rows = horizon, columns = planner, cells =
    'success % / median error (seconds)'."""
    frame = frame.assign(cell=frame.apply(
        lambda r: f"{r['success_%']:.0f} / {r['median_error']:.3g} ({r['time_s']:.1f} s)", axis=1))
    parts = []
    for problem, group in frame.groupby("problem", sort=False):
        table = group.pivot(index="horizon", columns="planner", values="cell")[list(dict.fromkeys(group["planner"]))]
        parts.append(f"**{problem}**\n\n" + table.to_markdown())
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=["single", "double", "unstable", "wall"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[25, 50, 100, 200])
    parser.add_argument("--planners", nargs="+", default=list(CONFIGS), help=f"from {', '.join(CONFIGS)}")
    parser.add_argument("--grid", nargs="*", default=[], help="knob=v1,v2 ... applied to every planner "
                        "(values in YAML: curriculum=[],[0.25,0.5])")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "grasp_study.csv")
    parser.add_argument("--table", type=Path, help="only print a written CSV as 'success % / median error' tables")
    args = parser.parse_args()
    if args.table:
        print(summary_tables(pd.read_csv(args.table)))
        return
    torch.set_num_threads(args.threads)
    unknown = set(args.planners) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown planner labels {sorted(unknown)}: choose from {', '.join(CONFIGS)}")
    rows = []
    for problem, horizon, label, knobs in itertools.product(args.problems, args.horizons, args.planners,
                                                            parse_grid(args.grid)):
        config, overrides = CONFIGS[label]
        name = label + "".join(f" {k}={v}" for k, v in knobs.items())
        row = evaluate(problem, horizon, name, config, {**overrides, **knobs}, args.batch, args.seed)
        rows.append(row)
        print(f"{problem:9s} T={horizon:<4d} {name:40s} success {row['success_%']:5.1f}%  median error "
              f"{row['median_error']:.4f}  max {row['max_error']:.4f}  {row['time_s']:.2f} s", flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print()
    print(table.to_markdown(index=False, floatfmt=".3g"))
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
