"""Our CEM and MPPI against stable-worldmodel's solvers on one cost, one budget and the same
problems, timed interleaved in one process: the peer parity of docs/benchmarks/README.md.

The peer is not one of grasp's dependencies. Install it anywhere and point --peer-path there:

  pip install --no-deps --target /tmp/swm stable_worldmodel==0.1.1 loguru
  python scripts/peer_parity.py --peer-path /tmp/swm --out DIR

Its package __init__ imports its dataset and environment stacks; only `stable_worldmodel.solver`
is loaded here, which needs torch, numpy, gymnasium and loguru.

What is held equal: the world model (bench's seeded MLP), the problems (bench.make_problem), the
cost (squared distance of the final state to the goal), samples, elites, iterations and the
initial std; no action bounds (the peer has none; ours still runs its clamp, on infinite bounds);
no std floor. The peer's MPPI is run with topk=None, so both weight all samples. The noise
differs (each draws its own), so final costs are compared as medians over problems and repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from grasp.cli import bench
from grasp.models.base import WorldModel
from grasp.planners import factory as planners

SOLVERS = ("cem", "mppi")
INSTALL_HINT = "pip install --no-deps --target DIR stable_worldmodel==0.1.1 loguru, then --peer-path DIR"


def load_peer_solvers(path: Path | None) -> types.ModuleType:
    """`stable_worldmodel.solver` without its package __init__ (which pulls the peer's data stack)."""
    if path is not None:
        if not (path / "stable_worldmodel" / "solver").is_dir():
            raise SystemExit(f"--peer-path {path}: no stable_worldmodel/solver/ there ({INSTALL_HINT})")
        sys.path.insert(0, str(path))
    spec = importlib.util.find_spec("stable_worldmodel")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"stable_worldmodel is not importable ({INSTALL_HINT})")
    package = types.ModuleType("stable_worldmodel")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("stable_worldmodel", package)
    try:
        return importlib.import_module("stable_worldmodel.solver")
    except ImportError as exc:
        raise SystemExit(f"stable_worldmodel.solver failed to import: {exc} ({INSTALL_HINT})") from None


class GoalCost:
    """The peer's Costable: candidates (B, N, T, A) from info_dict's state and goal (B, N, D) to
    the squared distance of the final state to the goal (B, N), one batched rollout, as our
    samplers score theirs."""

    def __init__(self, model: WorldModel) -> None:
        self.model = model

    def get_cost(self, info_dict: dict, candidates: torch.Tensor) -> torch.Tensor:
        B, N, T, A = candidates.shape
        state = info_dict["state"].reshape(B * N, -1)
        with self.model.frozen():  # the model as our planners hold it (weights out of autograd, folded)
            final = self.model.rollout(state, candidates.reshape(B * N, T, A))[:, -1]
        return ((final - info_dict["goal"].reshape(B * N, -1)) ** 2).sum(-1).view(B, N)

    def final_cost(self, state0: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B,) cost of one plan per problem."""
        info = {"state": state0[:, None], "goal": goal[:, None]}
        return self.get_cost(info, actions[:, None].to(state0.device))[:, 0]


def our_planner(solver: str, model: WorldModel, args: argparse.Namespace, horizon: int):
    knobs: dict[str, Any] = dict(horizon=horizon, iterations=args.iterations, samples=args.samples,
                                 init_std=args.init_std, min_std=0.0)
    knobs |= {"elites": args.elites} if solver == "cem" else {"temperature": args.temperature}
    return planners.build(planners.planner_config(solver, **knobs), model, action_low=-math.inf, action_high=math.inf)


def peer_solver(peer: types.ModuleType, solver: str, cost: GoalCost, args: argparse.Namespace, horizon: int,
                batch: int, seed: int, device: torch.device):
    import gymnasium as gym
    import numpy as np

    common = dict(batch_size=batch, num_samples=args.samples, var_scale=args.init_std, n_steps=args.iterations,
                  device=device, seed=seed)
    if solver == "cem":
        made = peer.CEMSolver(cost, topk=args.elites, **common)
    else:
        made = peer.MPPISolver(cost, topk=None, temperature=args.temperature, **common)
    space = gym.spaces.Box(-np.inf, np.inf, shape=(batch, cost.model.action_dim), dtype=np.float32)
    made.configure(action_space=space, n_envs=batch, config=types.SimpleNamespace(horizon=horizon, action_block=1))
    return made


def timed(call) -> tuple[float, Any]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def measure_cell(peer, solver: str, model: WorldModel, args: argparse.Namespace, horizon: int, batch: int,
                 device: torch.device) -> dict[str, Any]:
    """Ours and the peer's, alternating which goes first, `repeats` times after one warm-up each."""
    problem = bench.make_problem(model, horizon, batch, args.seed, 0.1)
    cost = GoalCost(model)
    ours = our_planner(solver, model, args, horizon)
    info = {"state": problem.state0, "goal": problem.goal}
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    finals: dict[str, list[float]] = {"ours": [], "peer": []}
    for r in range(args.repeats + 1):
        seed = args.seed + r
        theirs = peer_solver(peer, solver, cost, args, horizon, batch, seed, device)
        runs = {
            "ours": lambda: ours.plan(problem.state0, problem.goal,
                                      generator=torch.Generator(device=device).manual_seed(seed)).actions,
            "peer": lambda: theirs.solve(info)["actions"],
        }
        order = ["ours", "peer"] if r % 2 == 0 else ["peer", "ours"]
        for who in order:
            with contextlib.redirect_stdout(io.StringIO()):  # the peer prints its solve time
                seconds, actions = timed(runs[who])
            if r > 0:  # the first round warms both up
                times[who].append(seconds)
                with torch.no_grad():
                    finals[who] += cost.final_cost(problem.state0, problem.goal, actions).tolist()
    row: dict[str, Any] = {"solver": solver, "batch": batch, "horizon": horizon, "samples": args.samples,
                           "iterations": args.iterations, "repeats": args.repeats}
    for who in ("ours", "peer"):
        row[f"{who}_s"] = statistics.median(times[who])
        row[f"{who}_final_cost"] = statistics.median(finals[who])
    row["time_ratio"] = row["ours_s"] / row["peer_s"]
    row["cost_ratio"] = row["ours_final_cost"] / row["peer_final_cost"]
    return row


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Our CEM/MPPI against stable-worldmodel's, same cost and budget.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--peer-path", type=Path, default=None, help="where stable_worldmodel is installed (--target)")
    p.add_argument("--solvers", type=bench.choice_list(SOLVERS, "solver"), default=list(SOLVERS))
    p.add_argument("--horizons", type=bench.int_list(1), default=[30])
    p.add_argument("--batches", type=bench.int_list(1), default=[8])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--init-std", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up round (median)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write peer_parity.csv and .md here")
    return p


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for key in ("samples", "elites", "iterations", "repeats", "hidden_dim"):
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.elites > args.samples:
        raise SystemExit(f"--elites {args.elites} must be <= --samples {args.samples}")
    peer = load_peer_solvers(args.peer_path)
    device = torch.device(args.device)
    model_args = argparse.Namespace(seed=args.seed, depth=None, state_dim=4, action_dim=2, hidden_dim=args.hidden_dim,
                                    residual_scale=0.1, action_gain=10.0, compile=None)
    model = bench.build_model("mlp", model_args, device)
    rows = []
    for batch in args.batches:
        for horizon in args.horizons:
            for solver in args.solvers:
                rows.append({"device": str(device), "threads": torch.get_num_threads(),
                             **measure_cell(peer, solver, model, args, horizon, batch, device)})
                if args.out is not None:  # what is measured so far survives an interruption
                    args.out.mkdir(parents=True, exist_ok=True)
                    pd.DataFrame(rows).to_csv(args.out / "peer_parity.csv", index=False)
    frame = pd.DataFrame(rows)
    text = "\n".join(["# grasp's samplers against stable-worldmodel's", "",
                      "`python scripts/peer_parity.py " + " ".join(argv) + "`", "",
                      frame.to_markdown(index=False, floatfmt=".3g"), ""])
    if args.out is not None:
        (args.out / "peer_parity.md").write_text(text)
    print(text)
    return frame


if __name__ == "__main__":
    main()
