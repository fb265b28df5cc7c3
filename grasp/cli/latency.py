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
  python scripts/latency_bound.py --planners grasp --batches 64 --horizons 100 --device cuda
  python scripts/latency_bound.py --horizons 10,50,100,200 --batches 1,16,64 --out DIR   # growth curves
  python scripts/latency_bound.py --precisions fp32,bf16,auto   # each planner in each precision, interleaved
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from tqdm import tqdm

from grasp.cli import bench
from grasp.models.base import WorldModel
from grasp.planners.base import Planner
from grasp.precision import AUTOCAST_DTYPES, PRECISIONS, precision_name
from grasp.utils import resolve_device, use_device

#: (rows, records a graph, the autocast it ran under: fp32 or bf16) of one model call
CallKey = tuple[int, bool, str]
DEFAULT_PLANNERS = ["grasp", "gd", "cem"]


class CallCounter:
    """Counts the model's `step` calls by (rows, grad enabled, autocast) while active (`with counter:`)."""

    def __init__(self, model: WorldModel) -> None:
        self.model, self.calls, self.active = model, Counter(), False
        inner = model.step

        def counted(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            if self.active:
                self.calls[(state.numel() // state.shape[-1], torch.is_grad_enabled(), running_precision(state.device))] += 1
            return inner(state, action)

        model.step = counted

    def __enter__(self) -> "CallCounter":
        self.calls.clear()
        self.active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False


def running_precision(device: torch.device) -> str:
    """The precision a model call made here runs in: the autocast active on `device`, if any."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        enabled, dtype = torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type)
    elif device.type == "cpu":
        enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    else:
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return precision_name(dtype) if enabled else "fp32"


def call_cost(model: WorldModel, key: CallKey, chain: int, budget_s: float = 2.0) -> float:
    """Median seconds of one `step` call of `rows` rows, as a call inside a serial chain of
    `chain` calls costs (one backward through the chain when `grad`, so the backward's fixed
    cost is shared as in a rollout; the parameters frozen, as a planner holds them; under
    autocast as the call ran): a lower bound for calls of that size wherever they occur. Repeats
    the chain up to 10 times, or fewer once `budget_s` is spent (at least 3)."""
    rows, grad, precision = key
    dtype = AUTOCAST_DTYPES[precision]
    device = model.device
    gen = torch.Generator().manual_seed(rows)
    state0 = torch.randn(rows, model.state_dim, generator=gen).to(device)
    actions = (torch.rand(chain, rows, model.action_dim, generator=gen) * 2 - 1).to(device)
    times: list[float] = []
    spent, i = 0.0, 0
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with model.frozen(), torch.set_grad_enabled(grad), autocast:
        while len(times) < 10 and (len(times) < 3 or spent < budget_s):
            a = actions.clone().requires_grad_(True) if grad else actions
            bench.synchronize(device)
            start = time.perf_counter()
            state = state0
            for t in range(chain):
                state = model.step(state, a[t])
            if grad:
                torch.autograd.grad(state.sum(), [a])
            bench.synchronize(device)
            took = time.perf_counter() - start
            spent, i = spent + took, i + 1
            if i > 1:  # the first chain warms up
                times.append(took / chain)
    return statistics.median(times)


def measure(planner: Planner, counter: CallCounter, problem: bench.Problem, repeats: int, seed: int,
            costs: dict[tuple[int, bool, str, int], float], budget_s: float = 20.0) -> dict[str, Any]:
    """One planner's row: its plan time (the median of up to `repeats` calls after a counted
    first one, fewer once `budget_s` is spent; the first alone when it took the whole budget),
    its counted calls and their bound."""
    with counter:
        first, _ = bench.run_plan(planner, problem, seed)
    calls = dict(counter.calls)
    times, spent = [], first
    while len(times) < repeats and spent < budget_s:
        times.append(bench.run_plan(planner, problem, seed)[0])
        spent += times[-1]
    chain = min(planner.horizon, 20)
    for key in calls:
        if (*key, chain) not in costs:  # the bound's calls in the precision each ran in
            costs[(*key, chain)] = call_cost(planner.world_model, key, chain)
    cost = {key: costs[(*key, chain)] for key in calls}
    bound = sum(n * cost[key] for key, n in calls.items())
    plan_s = statistics.median(times) if times else first
    several = len({precision for _, _, precision in calls}) > 1
    parts = ", ".join(f"{n} x {'fwd+bwd' if grad else 'fwd'}({rows}{', ' + precision if several else ''}) "
                      f"{cost[(rows, grad, precision)] * 1e3:.3g} ms"
                      for (rows, grad, precision), n in sorted(calls.items(), key=lambda kv: -kv[1] * cost[kv[0]]))
    return {"plan_s": plan_s, "plan_calls_timed": max(len(times), 1), "bound_s": bound, "ratio": plan_s / bound,
            "model_calls": sum(calls.values()), "calls": parts}


def plot(frame: pd.DataFrame, path: Path) -> None:
    """Plan time (solid) and its bound (dotted) against T, one panel per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted(frame.batch.unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.6), squeeze=False, sharey=True)
    for ax, batch in zip(axes[0], batches):
        several = frame.precision.nunique() > 1
        for (name, precision), rows in frame[frame.batch == batch].groupby(["planner", "precision"], sort=False):
            rows = rows.sort_values("horizon")
            line, = ax.plot(rows.horizon, rows.plan_s, "o-", label=f"{name} {precision}" if several else name)
            ax.plot(rows.horizon, rows.bound_s, ":", color=line.get_color())
        ax.set(title=f"B = {batch}", xlabel="horizon T (model steps)", xscale="log", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("seconds per plan call (dotted: bound)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--planners", type=bench.choice_list(list(bench.VARIANTS), "planner"), default=DEFAULT_PLANNERS,
                   help="comma-separated (grasp is the shipped config, sync included)")
    p.add_argument("--horizons", type=bench.int_list(1), default=[30], help="comma-separated, e.g. 10,50,100,200")
    p.add_argument("--batches", type=bench.int_list(1), default=[10], help="comma-separated, e.g. 1,16,64")
    p.add_argument("--state-dim", type=int, default=4, help="default: the Wall task's")
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed plan() calls after the counted one (median)")
    p.add_argument("--budget", type=float, default=20.0, help="seconds of plan() calls per cell before repeats stop")
    p.add_argument("--precisions", type=bench.choice_list(list(PRECISIONS), "precision"), default=["fp32"],
                   help="comma-separated: each planner in each (the run's `precision` knob; auto: bf16 for the "
                        "wide calls, the samplers' and GRASP's lifted ones, on a CPU with native bf16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="write latency_bound.csv, .md and .png here")
    return p


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for key in ("state_dim", "action_dim", "hidden_dim", "repeats"):
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
    costs: dict[tuple[int, bool, str, int], float] = {}
    cells = [(b, t, name, precision) for b in args.batches for t in args.horizons for name in args.planners
             for precision in args.precisions]
    rows = []
    for batch, horizon, name, precision in tqdm(cells, desc="latency", disable=args.no_progress):
        problem = bench.make_problem(model, horizon, batch, args.seed, 0.1)
        variant = bench.VARIANTS["grasp_sync" if name == "grasp" else name]
        planner = bench.make_planner(bench.variant_node(variant, horizon), model, precision)
        rows.append({"planner": name, "precision": precision, "autocast": planner.precision,
                     "device": str(device), "threads": torch.get_num_threads(), "batch": batch,
                     "horizon": horizon, **measure(planner, counter, problem, args.repeats, args.seed, costs,
                                                   args.budget)})
        if args.out is not None:  # what is measured so far survives an interruption
            args.out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(args.out / "latency_bound.csv", index=False)
    frame = pd.DataFrame(rows)
    text = "\n".join([f"# Plan calls against their latency bound ({device})", "",
                      "`python scripts/latency_bound.py " + " ".join(argv) + "`", "",
                      frame.to_markdown(index=False, floatfmt=".3g"), ""])
    if args.out is not None:
        (args.out / "latency_bound.md").write_text(text)
        if len(args.horizons) > 1:
            plot(frame, args.out / "latency_bound.png")
    print(text)
    return frame


if __name__ == "__main__":
    main()
