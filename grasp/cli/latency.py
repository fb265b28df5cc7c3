"""Plan calls against their latency bound: how close each planner gets to the time its world-model
calls alone must take.

A plan call makes a fixed sequence of model calls (CEM: iterations x T serial steps over B x S
rows; GD: iterations x T steps with their backward; GRASP: one lifted call over B x T rows per
iteration plus the sync's serial steps). Their order is forced (each step needs the last), so the
call can take no less than the sum of those calls' own costs. This script counts the calls one
plan() really makes (by wrapping the model's `step`), measures what one call of each size costs
alone (forward, or forward and backward when the call records a graph), and reports

  plan_s   median wall time of one plan() call
  bound_s  sum over the counted calls of their measured cost (each size timed as a call inside a
           serial chain of T calls, one backward through it when the call records a graph)
  ratio    plan_s / bound_s: 1 is the bound; the rest is the planner's own work (optimiser steps,
           noise, cost, clamping, Python)

  python scripts/latency_bound.py                       # default planners and sizes (Wall: B=10, T=30)
  python scripts/latency_bound.py --planners grasp --batch 64 --horizon 100 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from grasp.cli import bench
from grasp.models.base import WorldModel
from grasp.planners.base import Planner, frozen_parameters
from grasp.utils import resolve_device, use_device

#: (rows, records a graph) of one model call
CallKey = tuple[int, bool]
DEFAULT_PLANNERS = ["grasp", "gd", "cem"]


class CallCounter:
    """Counts the model's `step` calls by (rows, grad enabled) while active (`with counter:`)."""

    def __init__(self, model: WorldModel) -> None:
        self.model, self.calls, self.active = model, Counter(), False
        inner = model.step

        def counted(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            if self.active:
                self.calls[(state.numel() // state.shape[-1], torch.is_grad_enabled())] += 1
            return inner(state, action)

        model.step = counted

    def __enter__(self) -> "CallCounter":
        self.calls.clear()
        self.active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False


def call_cost(model: WorldModel, key: CallKey, chain: int, repeats: int = 10) -> float:
    """Median seconds of one `step` call of `rows` rows, as a call inside a serial chain of
    `chain` calls costs (one backward through the chain when `grad`, so the backward's fixed
    cost is shared as in a rollout; the parameters frozen, as a planner holds them): a lower
    bound for calls of that size wherever they occur."""
    rows, grad = key
    device = model.device
    gen = torch.Generator().manual_seed(rows)
    state0 = torch.randn(rows, model.state_dim, generator=gen).to(device)
    actions = (torch.rand(chain, rows, model.action_dim, generator=gen) * 2 - 1).to(device)
    times = []
    with frozen_parameters(model), torch.set_grad_enabled(grad):
        for i in range(repeats + 2):  # two warm-up chains
            a = actions.clone().requires_grad_(True) if grad else actions
            bench.synchronize(device)
            start = time.perf_counter()
            state = state0
            for t in range(chain):
                state = model.step(state, a[t])
            if grad:
                torch.autograd.grad(state.sum(), [a])
            bench.synchronize(device)
            if i >= 2:
                times.append((time.perf_counter() - start) / chain)
    return statistics.median(times)


def measure(planner: Planner, counter: CallCounter, problem: bench.Problem, repeats: int, seed: int,
            costs: dict[CallKey, float]) -> dict[str, Any]:
    """One planner's row: its plan time, its counted calls and their bound."""
    bench.run_plan(planner, problem, seed)  # warm-up (allocator, lazy initialisation)
    with counter:
        bench.run_plan(planner, problem, seed)
    calls = dict(counter.calls)
    times = [bench.run_plan(planner, problem, seed)[0] for _ in range(repeats)]
    for key in calls:
        if key not in costs:
            costs[key] = call_cost(planner.world_model, key, planner.horizon)
    bound = sum(n * costs[key] for key, n in calls.items())
    plan_s = statistics.median(times)
    parts = ", ".join(f"{n} x {'fwd+bwd' if grad else 'fwd'}({rows}) {costs[(rows, grad)] * 1e3:.3g} ms"
                      for (rows, grad), n in sorted(calls.items(), key=lambda kv: -kv[1] * costs[kv[0]]))
    return {"plan_s": plan_s, "bound_s": bound, "ratio": plan_s / bound, "model_calls": sum(calls.values()),
            "calls": parts}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--planners", type=bench.choice_list(list(bench.VARIANTS), "planner"), default=DEFAULT_PLANNERS,
                   help="comma-separated (grasp is the shipped config, sync included)")
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--state-dim", type=int, default=4, help="default: the Wall task's")
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed plan() calls (median)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write latency_bound.csv and .md here")
    return p


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for key in ("horizon", "batch", "state_dim", "action_dim", "hidden_dim", "repeats"):
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    try:
        device = use_device(resolve_device(args.device))
    except RuntimeError as exc:
        raise SystemExit(f"--device: {exc}") from None
    model_args = argparse.Namespace(seed=args.seed, depth=None, state_dim=args.state_dim, action_dim=args.action_dim,
                                    hidden_dim=args.hidden_dim, residual_scale=0.1, action_gain=10.0, compile=None)
    model = bench.build_model("mlp", model_args, device)
    counter = CallCounter(model)
    problem = bench.make_problem(model, args.horizon, args.batch, args.seed, 0.1)
    costs: dict[CallKey, float] = {}
    rows = []
    for name in args.planners:
        variant = bench.VARIANTS["grasp_sync" if name == "grasp" else name]
        planner = bench.make_planner(bench.variant_node(variant, args.horizon), model)
        rows.append({"planner": name, "device": str(device), "threads": torch.get_num_threads(), "batch": args.batch,
                     "horizon": args.horizon, **measure(planner, counter, problem, args.repeats, args.seed, costs)})
    frame = pd.DataFrame(rows)
    text = "\n".join([f"# Plan calls against their latency bound ({device}, B={args.batch}, T={args.horizon})", "",
                      "`python scripts/latency_bound.py " + " ".join(argv) + "`", "",
                      frame.to_markdown(index=False, floatfmt=".3g"), ""])
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out / "latency_bound.csv", index=False)
        (args.out / "latency_bound.md").write_text(text)
    print(text)
    return frame


if __name__ == "__main__":
    main()
