"""Planner benchmark: GRASP against GD, CEM and MPPI on the same world models, same problems, same run.

For every model x planner x horizon T x batch B it measures

  sec_per_iter         seconds per optimisation iteration: plan() timed at K and 2K iterations, the
                       difference divided by K (removes the fixed cost of a call: setup, final rollout)
  time_to_threshold_s  seconds until every problem of a fixed seeded batch has a true rollout cost
                       under a threshold (the planner's own `tolerance` early stop); inf if never
  act_mem_mb           peak bytes autograd holds for backward (saved-tensor hooks; deterministic,
                       device-independent); 0 for the gradient-free samplers
  peak_mem_mb          peak tensor memory allocated during one plan() (CUDA: max_memory_allocated;
                       CPU: torch's profiler with profile_memory=True)

and writes <out>/bench_planners.csv, <out>/bench_planners.png (time per iteration vs horizon) and
<out>/bench_planners.md (ratios GRASP/GD and GRASP/CEM, PASS/FAIL lines for the targets).
docs/benchmarks/README.md explains every column.

  python scripts/bench_planners.py                          # the full grid (long on a CPU)
  python scripts/bench_planners.py --quick --out /tmp/bench # seconds: a smoke run
  OMP_NUM_THREADS=4 python scripts/bench_planners.py --models mlp --batches 1 --horizons 50 100 200
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from grasp.config import COMPILE_MODES, DEVICES, REPO_ROOT, config_options
from grasp.models.base import WorldModel
from grasp.models.mlp import MLPWorldModel
from grasp.models.pixel import PixelWorldModel
from grasp import planners
from grasp.planners.base import Planner, PlanResult
from grasp.precision import PRECISIONS
from grasp.utils import compile_world_model, resolve_device, use_device


@dataclass(frozen=True)
class Variant:
    """A benchmarked planner: conf/planner/<config>.yaml plus knob overrides."""

    label: str
    config: str
    overrides: dict = field(default_factory=dict)
    chunk_size: int | None = None

    @property
    def name(self) -> str:
        return self.label if self.chunk_size is None else f"{self.label} (chunk {self.chunk_size})"


#: --planners choices: every config of conf/planner/ as shipped, except that grasp runs without its
#: shooting sync, so its per-iteration time is the lifted update alone; grasp_sync is the shipped
#: grasp config, the sync's serial cost amortised over sync_every.
VARIANTS = {name: Variant(name, name) for name in config_options("planner")} | {
    "grasp": Variant("grasp", "grasp", {"sync": "none"}),
    "grasp_sync": Variant("grasp_sync", "grasp"),
}
DEFAULT_PLANNERS = ["grasp", "grasp_sync", "gd", "cem", "mppi"]
MODELS = ("mlp", "pixel")
#: sizes of --quick (explicit flags still win)
QUICK = dict(horizons=[5, 10], batches=[1, 2], iterations=2, repeats=1, hidden_dim=32, samples=16,
             threshold_iters=10, threshold_iters_sampling=5, chunk_size=2, eval_every=2, target_horizons=[5, 10])
MIB = 2.0**20
#: targets (see docs/benchmarks/README.md)
MAX_GRASP_OVER_GD = 0.2
MAX_BATCH_FACTOR = 8.0
MAX_CHUNKED_FRACTION = 0.5


# ---- command line -----------------------------------------------------------------------------
def choice_list(allowed: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """argparse type: comma-separated names, each checked against `allowed` with a clear message."""

    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        for n in names:
            if n not in allowed:
                raise argparse.ArgumentTypeError(f"unknown {what} {n!r}: allowed {', '.join(allowed)}")
        return names

    return parse


def int_list(minimum: int) -> Callable[[str], list[int]]:
    """argparse type: comma-separated integers >= minimum."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected integers, e.g. 10,25,50") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: every value must be an integer >= {minimum}")
        return values

    return parse


def flatten(groups: list[list] | None) -> list | None:
    """`--x a,b c` -> [a, b, c], duplicates dropped, order kept."""
    if groups is None:
        return None
    return list(dict.fromkeys(v for group in groups for v in group))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", type=choice_list(MODELS, "model"), default=[list(MODELS)],
                   help=f"world models ({', '.join(MODELS)})")
    p.add_argument("--planners", nargs="+", type=choice_list(list(VARIANTS), "planner"),
                   default=[DEFAULT_PLANNERS], help=f"planners ({', '.join(VARIANTS)})")
    p.add_argument("--horizons", nargs="+", type=int_list(1), default=[[10, 25, 50, 100, 200]])
    p.add_argument("--batches", nargs="+", type=int_list(1), default=[[1, 16, 64]])
    p.add_argument("--iterations", type=int, default=10,
                   help="K: plan() is timed at K and 2K iterations (grasp_sync: sync_every and 2 sync_every)")
    p.add_argument("--repeats", type=int, default=3, help="timed plan() calls per iteration count (median)")
    p.add_argument("--threshold-frac", type=float, default=0.1,
                   help="cost threshold = this x the median cost of the zero-action initial plan")
    p.add_argument("--threshold-iters", type=int, default=300, help="iteration cap of the gradient planners")
    p.add_argument("--threshold-iters-sampling", type=int, default=30, help="iteration cap of CEM/MPPI/iCEM")
    p.add_argument("--eval-every", type=int, default=5,
                   help="GRASP/LatCo: true-cost check every this many iterations (their early stop needs it)")
    p.add_argument("--chunk-size", type=int, default=10,
                   help="extra 'grasp (chunk N)' rows with GRASP's chunk_size=N (0: none)")
    p.add_argument("--samples", type=int, default=None, help="samples per iteration of the samplers (default: yaml)")
    p.add_argument("--sync-every", type=int, default=None,
                   help="grasp_sync's sync interval (default: the yaml's; changes how the sync is amortised)")
    p.add_argument("--state-dim", type=int, default=32, help="state (MLP) or latent (pixel) dimension")
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--depth", type=int, default=None, help="hidden layers of the dynamics MLP (default: the model's)")
    p.add_argument("--residual-scale", type=float, default=0.1,
                   help="scale of the random dynamics' last layer (1: untouched; see README)")
    p.add_argument("--action-gain", type=float, default=10.0,
                   help="scale of the random first-layer weights on the action inputs (1: untouched)")
    p.add_argument("--target-horizons", nargs=2, type=int, default=[100, 200], metavar=("T_MID", "T_LONG"),
                   help="horizons the PASS/FAIL targets are checked at")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)}")
    p.add_argument("--compile", default=None, choices=COMPILE_MODES,
                   help="torch.compile the models' step in this mode (the run's `compile` knob)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="autocast of the planners' optimisation (the run's `precision` knob)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run of seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, apply --quick's sizes where no flag was given, and check values."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:  # re-parse with quick defaults, so explicit flags keep priority
        parser.set_defaults(**{k: ([v] if k in ("horizons", "batches") else v) for k, v in QUICK.items()})
        args = parser.parse_args(argv)
    for key in ("models", "planners", "horizons", "batches"):
        setattr(args, key, flatten(getattr(args, key)))
    try:
        resolve_device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device: {exc}")
    for key, low in (("iterations", 1), ("repeats", 1), ("threshold_iters", 1), ("threshold_iters_sampling", 1),
                     ("eval_every", 1), ("chunk_size", 0), ("state_dim", 1), ("action_dim", 1),
                     ("hidden_dim", 1)):
        if getattr(args, key) < low:
            parser.error(f"--{key.replace('_', '-')} must be >= {low}, got {getattr(args, key)}")
    for key in ("samples", "depth", "sync_every"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            parser.error(f"--{key} must be >= 1, got {getattr(args, key)}")
    if not 0 < args.threshold_frac < 1:
        parser.error(f"--threshold-frac must be in (0, 1), got {args.threshold_frac}")
    if args.residual_scale <= 0 or args.action_gain <= 0:
        parser.error("--residual-scale and --action-gain must be > 0")
    return args


# ---- models and problems ----------------------------------------------------------------------
def build_model(kind: str, args: argparse.Namespace, device: torch.device) -> WorldModel:
    """A world model with seeded random weights. Planners only call step/rollout, so the pixel
    model's encoder and decoder are never used: its latent dynamics are what is timed."""
    torch.manual_seed(args.seed)
    depth = {} if args.depth is None else {"depth": args.depth}
    if kind == "mlp":
        model = MLPWorldModel(args.state_dim, args.action_dim, hidden_dim=args.hidden_dim, **depth)
    else:
        model = PixelWorldModel(args.state_dim, args.action_dim, latent_dim=args.state_dim, frame_size=16,
                                hidden_dim=args.hidden_dim, **depth)
    tame_dynamics(model, args.residual_scale, args.action_gain)
    model = model.to(device).eval()
    if args.compile:
        compile_world_model(model, args.compile)
    return model


@torch.no_grad()
def tame_dynamics(model: WorldModel, residual_scale: float, action_gain: float) -> None:
    """Rescale a random dynamics MLP (`model.net`, input [s, a]) so that 200-step rollouts stay
    bounded and actions move the state: untouched random weights make long rollouts diverge
    and barely feel the actions, which leaves no meaningful planning problem to time."""
    first, last = model.net[0], model.net[-1]
    first.weight[:, -model.action_dim:] *= action_gain
    last.weight *= residual_scale
    last.bias *= residual_scale


@dataclass
class Problem:
    """B start/goal pairs (B, D) and the cost threshold the planners must reach."""

    state0: torch.Tensor
    goal: torch.Tensor
    threshold: float


@torch.no_grad()
def make_problem(model: WorldModel, horizon: int, batch: int, seed: int, frac: float) -> Problem:
    """Problem i is drawn from its own seed (so B=1 is the first problem of B=16): a random
    start and, as goal, where the model goes under random actions, so every goal is reachable.
    Threshold: `frac` x the median cost of the zero-action plan all planners start from."""
    starts, goals = [], []
    for i in range(batch):
        gen = torch.Generator().manual_seed(seed * 100_003 + i)
        start = torch.randn(1, model.state_dim, generator=gen)
        actions = torch.rand(1, horizon, model.action_dim, generator=gen) * 2 - 1
        starts.append(start)
        goals.append(model.rollout(start.to(model.device), actions.to(model.device))[:, -1].cpu())
    state0, goal = torch.cat(starts).to(model.device), torch.cat(goals).to(model.device)
    zero = model.rollout(state0, state0.new_zeros(batch, horizon, model.action_dim))[:, -1]
    cost0 = ((zero - goal) ** 2).sum(-1)
    return Problem(state0, goal, frac * float(cost0.median()))


# ---- planners -------------------------------------------------------------------------------
def variant_node(variant: Variant, horizon: int, samples: int | None = None, sync_every: int | None = None,
                 ) -> DictConfig:
    """The variant's planner config at this horizon: its overrides, chunk size, and the sample
    count and sync interval when given (None keeps the yaml's)."""
    node = planners.planner_config(variant.config, horizon=horizon, **variant.overrides)
    if variant.chunk_size is not None:
        node.chunk_size = variant.chunk_size
    if sync_every is not None and node.get("sync", "none") != "none":
        node.sync_every = sync_every
    if samples is not None and "samples" in node:
        node.samples = samples
        if "elites" in node:
            node.elites = min(node.elites, samples)
    return node


def make_planner(node: DictConfig, model: WorldModel, precision: str = "fp32", **knobs: Any) -> Planner:
    planner = planners.build(node, model, action_low=-1.0, action_high=1.0, **knobs)
    planner.use_precision(precision)
    return planner


def is_sampling(node: DictConfig) -> bool:
    return "samples" in node


def sync_period(node: DictConfig) -> int | None:
    """GRASP's sync interval when its sync is on, else None."""
    return int(node.sync_every) if node.get("sync", "none") != "none" else None


# ---- measurements ----------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_plan(planner: Planner, problem: Problem, seed: int) -> tuple[float, PlanResult]:
    """Wall-clock seconds of one plan() call (device work included) and its result; the noise
    generator lives on the model's device so no host-device copies enter the timing."""
    device = planner.device
    gen = torch.Generator(device=device).manual_seed(seed)
    synchronize(device)
    start = time.perf_counter()
    result = planner.plan(problem.state0, problem.goal, generator=gen)
    synchronize(device)
    return time.perf_counter() - start, result


def time_per_iteration(short: Planner, long: Planner, problem: Problem, repeats: int, seed: int,
                       ) -> tuple[float, str, float]:
    """(seconds per iteration, how, median seconds of the short call): the median time difference
    between the long and the short plan over their iteration difference ("diff"); when noise makes
    that non-positive (tiny problems), the long plan's time over its iterations ("total"), an
    upper bound."""
    run_plan(short, problem, seed)  # warm-up: allocator, kernels, lazy init
    t_short, t_long = [], []
    for _ in range(repeats):
        t_short.append(run_plan(short, problem, seed)[0])
        t_long.append(run_plan(long, problem, seed)[0])
    k_short, k_long = short.iterations, long.iterations
    diff = (statistics.median(t_long) - statistics.median(t_short)) / (k_long - k_short)
    if diff > 0:
        return diff, "diff", statistics.median(t_short)
    return statistics.median(t_long) / k_long, "total", statistics.median(t_short)


class _Held:
    """A saved tensor in the autograd graph; its finalizer tells the meter when it is freed."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorMeter:
    """Peak bytes held by autograd for backward, counted once per distinct storage and without
    the model's parameters: the activation memory a planner's graphs need. Saved tensors are
    wrapped on save and counted until the graph drops them, so the count is exact and the same
    on every device and run."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.live: dict[int, list[int]] = {}  # storage pointer -> [references, bytes]
        self.current = self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor):
        try:
            storage = tensor.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without a plain storage
            return tensor
        if nbytes == 0 or ptr in self.exclude:
            return tensor
        held = _Held(tensor)
        entry = self.live.setdefault(ptr, [0, nbytes])
        if entry[0] == 0:
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        weakref.finalize(held, self._release, ptr)
        return held

    def _release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed


def activation_bytes(planner: Planner, problem: Problem, seed: int) -> int:
    """Peak saved-for-backward bytes of one plan() call."""
    model = planner.world_model
    exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    with SavedTensorMeter(exclude) as meter:
        run_plan(planner, problem, seed)
    return meter.peak


@contextlib.contextmanager
def quiet_stderr():
    """Silence C++ log lines on file descriptor 2 (the profiler prints start/stop banners)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(planner: Planner, problem: Problem, seed: int) -> tuple[float, str]:
    """(peak bytes allocated during one plan() above what was allocated before, method).
    CUDA: the caching allocator's max_memory_allocated. CPU: the running sum of the allocation
    and free events torch's profiler records with profile_memory=True (tensor memory only)."""
    device = planner.device
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run_plan(planner, problem, seed)
        return float(torch.cuda.max_memory_allocated(device) - base), "cuda_max_memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    try:
        with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run_plan(planner, problem, seed)
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except (AttributeError, RuntimeError):  # profiler internals moved: report nothing rather than guess
        return math.nan, "unavailable"
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return float(peak), "cpu_profiler"


def time_to_threshold(planner: Planner, problem: Problem, seed: int) -> tuple[float, float, bool, float]:
    """(seconds, iterations, reached, median final cost) of a plan() that stops early once every
    problem's true cost is under the threshold (seconds inf, iterations NaN when not reached)."""
    seconds, result = run_plan(planner, problem, seed)
    used = int(result.info["iterations"])
    final = result.info["final_cost"]
    reached = used < planner.iterations or bool((final <= problem.threshold).all())
    if not reached:
        return math.inf, math.nan, False, float(final.median())
    return seconds, float(used), True, float(final.median())


# ---- the grid ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    model: str
    variant: Variant
    horizon: int
    batch: int


def variants(args: argparse.Namespace) -> list[Variant]:
    """The chosen planners, plus a chunked GRASP row when --chunk-size > 0."""
    chosen = [VARIANTS[name] for name in args.planners]
    if args.chunk_size and "grasp" in args.planners:
        base = VARIANTS["grasp"]
        chosen.insert(args.planners.index("grasp") + 1, Variant(base.label, base.config, base.overrides,
                                                                args.chunk_size))
    return chosen


def measure(case: Case, model: WorldModel, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Every measurement of one grid cell, as one CSV row."""
    problem = make_problem(model, case.horizon, case.batch, args.seed, args.threshold_frac)
    node = variant_node(case.variant, case.horizon, args.samples, args.sync_every)
    period = sync_period(node)
    k = period or args.iterations  # with a sync, whole sync periods, so the difference holds one sync
    short, long = (make_planner(node, model, args.precision, iterations=n) for n in (k, 2 * k))
    sec_per_iter, how, total_short = time_per_iteration(short, long, problem, args.repeats, args.seed)
    # memory: --iterations iterations and, with a sync, one sync (its serial graph can set the peak)
    probe = make_planner(node, model, args.precision, iterations=args.iterations,
                         **({"sync_every": min(period, args.iterations)} if period else {}))
    act = activation_bytes(probe, problem, args.seed)
    peak, mem_method = peak_bytes(probe, problem, args.seed)
    cap = args.threshold_iters_sampling if is_sampling(node) else max(args.threshold_iters, period or 1)
    knobs: dict[str, Any] = {"iterations": cap, "tolerance": problem.threshold}
    if "eval_every" in node:  # GRASP's early stop needs the true cost between syncs
        knobs["eval_every"] = args.eval_every
    if is_sampling(node):  # samplers stop on their best sample: return it, so the plan meets the threshold
        knobs["return_best"] = True
    seconds, iters, reached, final = time_to_threshold(make_planner(node, model, args.precision, **knobs), problem, args.seed)
    return {
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "compile": args.compile or "off", "precision": args.precision, "model": case.model, "planner": case.variant.label, "config": case.variant.config,
        "chunked": case.variant.chunk_size is not None, "chunk_size": case.variant.chunk_size,
        "horizon": case.horizon, "batch": case.batch, "samples": node.get("samples"),
        "iters_short": k, "iters_long": 2 * k, "sec_per_iter": sec_per_iter, "timing": how,
        "call_overhead_s": max(0.0, total_short - k * sec_per_iter),
        "threshold": problem.threshold, "max_iters": cap, "time_to_threshold_s": seconds,
        "iters_to_threshold": iters, "threshold_reached": reached, "final_cost": final,
        "act_mem_mb": act / MIB, "peak_mem_mb": peak / MIB, "mem_method": mem_method,
    }


def run_grid(args: argparse.Namespace, device: torch.device, partial: Path | None = None) -> pd.DataFrame:
    """Every cell of the grid; with `partial`, the rows so far are rewritten there after each cell,
    so a long run that is stopped keeps what it measured. Horizon-major: a run cut off early has
    measured every planner at the shorter horizons."""
    cases = [Case(m, v, t, b) for m in args.models for t in args.horizons for v in variants(args)
             for b in args.batches]
    rows, models = [], {m: build_model(m, args, device) for m in args.models}
    bar = tqdm(cases, desc="bench", disable=args.no_progress, dynamic_ncols=True)
    for case in bar:
        bar.set_postfix_str(f"{case.model} {case.variant.name} T={case.horizon} B={case.batch}")
        rows.append(measure(case, models[case.model], args, device))
        if partial is not None:
            pd.DataFrame(rows).to_csv(partial, index=False)
    return pd.DataFrame(rows)


# ---- reports --------------------------------------------------------------------------------------
def per_iter(frame: pd.DataFrame, column: str = "sec_per_iter") -> pd.DataFrame:
    """Unchunked rows pivoted to (model, batch, horizon) x planner."""
    plain = frame[~frame["chunked"]]
    return plain.pivot_table(index=["model", "batch", "horizon"], columns="planner", values=column, aggfunc="first")


def ratio_table(frame: pd.DataFrame) -> pd.DataFrame:
    """GRASP's seconds per iteration and time to threshold over GD's and CEM's, per cell."""
    spi, ttt = per_iter(frame), per_iter(frame, "time_to_threshold_s")
    table = pd.DataFrame(index=spi.index)
    for label in ("grasp", "grasp_sync", "gd", "cem"):
        if label in spi:
            table[f"{label} s/it"] = spi[label]
    for num, den in (("grasp", "gd"), ("grasp", "cem"), ("grasp_sync", "gd")):
        if num in spi and den in spi:
            table[f"{num}/{den} s/it"] = spi[num] / spi[den]
    for num, den in (("grasp_sync", "gd"), ("grasp_sync", "cem"), ("grasp", "gd")):
        if num in ttt and den in ttt:  # NaN unless both reached the threshold
            both = ttt[num].map(math.isfinite) & ttt[den].map(math.isfinite)
            table[f"{num}/{den} time-to-thr"] = (ttt[num] / ttt[den]).where(both)
    return table.reset_index()


def lookup(frame: pd.DataFrame, **where: Any) -> pd.Series | None:
    """The single row matching `where`, or None."""
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return None if rows.empty else rows.iloc[0]


def check_targets(frame: pd.DataFrame, t_mid: int, t_long: int) -> list[str]:
    """PASS/FAIL/SKIP lines for the issue's targets, from this run's rows only."""
    lines, device = [], str(frame["device"].iloc[0])
    note = "" if device == "cpu" else f" [measured on {device}; the target is stated for CPU]"
    plain = frame[~frame["chunked"]]
    for model in frame["model"].unique():
        ratios = {}
        for t in (t_mid, t_long):
            g, d = (lookup(plain, model=model, planner=p, horizon=t, batch=1) for p in ("grasp", "gd"))
            ratios[t] = None if g is None or d is None else g.sec_per_iter / d.sec_per_iter
        if ratios[t_mid] is None:
            lines.append(f"SKIP [{model}] GRASP/GD s/it at T={t_mid}, B=1: needs grasp and gd rows there")
        else:
            verdict = "PASS" if ratios[t_mid] <= MAX_GRASP_OVER_GD else "FAIL"
            lines.append(f"{verdict} [{model}] GRASP/GD s/it at T={t_mid}, B=1 = {ratios[t_mid]:.3f} "
                         f"(target <= {MAX_GRASP_OVER_GD:g}){note}")
        if ratios[t_mid] is None or ratios[t_long] is None:
            lines.append(f"SKIP [{model}] GRASP/GD s/it at T={t_long} below T={t_mid}: needs both horizons at B=1")
        else:
            verdict = "PASS" if ratios[t_long] < ratios[t_mid] else "FAIL"
            lines.append(f"{verdict} [{model}] GRASP/GD s/it at T={t_long} = {ratios[t_long]:.3f} "
                         f"(target < {ratios[t_mid]:.3f}, the T={t_mid} ratio){note}")
        lines += batch_targets(plain[plain["model"] == model], model)
        lines += chunk_targets(frame[frame["model"] == model], model, t_long)
    return lines


def batch_targets(rows: pd.DataFrame, model: str) -> list[str]:
    """Per planner: the worst, over horizons, of s/it at the largest batch over s/it at B=1."""
    b_max = int(rows["batch"].max())
    if b_max == 1 or 1 not in set(rows["batch"]):
        return [f"SKIP [{model}] batch cost: needs B=1 and a larger batch"]
    lines = []
    for planner in rows["planner"].unique():
        mine = rows[rows["planner"] == planner].set_index(["horizon", "batch"])["sec_per_iter"]
        factors = {t: mine[(t, b_max)] / mine[(t, 1)] for t in sorted({t for t, _ in mine.index})
                   if (t, b_max) in mine.index and (t, 1) in mine.index}
        if not factors:
            continue
        worst = max(factors, key=factors.get)
        verdict = "PASS" if factors[worst] <= MAX_BATCH_FACTOR else "FAIL"
        lines.append(f"{verdict} [{model}] {planner}: s/it at B={b_max} / B=1 = {factors[worst]:.2f} at worst "
                     f"(T={worst}; target <= {MAX_BATCH_FACTOR:g})")
    return lines


def chunk_targets(rows: pd.DataFrame, model: str, t_long: int) -> list[str]:
    """GRASP's activation memory with chunk_size over without, at T_long (worst over batches)."""
    plain = rows[(rows["planner"] == "grasp") & ~rows["chunked"] & (rows["horizon"] == t_long)]
    chunked = rows[(rows["planner"] == "grasp") & rows["chunked"] & (rows["horizon"] == t_long)]
    if plain.empty or chunked.empty:
        return [f"SKIP [{model}] GRASP chunked memory at T={t_long}: needs grasp with --chunk-size > 0 there"]
    pairs = pd.merge(plain, chunked, on="batch", suffixes=("", "_chunked"))
    act = (pairs["act_mem_mb_chunked"] / pairs["act_mem_mb"]).max()
    peak = (pairs["peak_mem_mb_chunked"] / pairs["peak_mem_mb"]).max()
    size = int(chunked["chunk_size"].iloc[0])
    verdict = "PASS" if act < MAX_CHUNKED_FRACTION else "FAIL"
    return [f"{verdict} [{model}] GRASP activation memory chunk_size={size} / unchunked at T={t_long} = {act:.3f} "
            f"(target < {MAX_CHUNKED_FRACTION:g}; allocator peak ratio {peak:.3f}, for information)"]


def plot(frame: pd.DataFrame, path: Path) -> None:
    """Seconds per iteration vs horizon, log-log: a panel per model and batch, a line per planner
    (the same colour in every panel; chunked GRASP dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    models, batches = list(frame["model"].unique()), sorted(frame["batch"].unique())
    horizons = sorted(frame["horizon"].unique())
    names = frame["planner"] + frame["chunk_size"].map(lambda c: "" if pd.isna(c) else f" (chunk {int(c)})")
    colours = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(names))}
    fig, axes = plt.subplots(len(models), len(batches), figsize=(4 * len(batches), 3.3 * len(models)),
                             squeeze=False, sharex=True)
    for i, model in enumerate(models):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            cell = frame[(frame["model"] == model) & (frame["batch"] == batch)]
            for name in dict.fromkeys(names[cell.index]):
                line = cell[names[cell.index] == name].sort_values("horizon")
                ax.plot(line["horizon"], line["sec_per_iter"], marker="o", label=name, color=colours[name],
                        linestyle="--" if "chunk" in name else "-")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(horizons)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{model}, B={batch}")
            ax.set_ylabel("seconds / iteration")
            ax.grid(True, which="both", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("horizon T")
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = min(len(labels), 3 if len(batches) == 1 else 6)  # the legend must fit the figure's width
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    threads = int(frame["threads"].iloc[0])
    fig.suptitle(f"time per iteration ({frame['device'].iloc[0]}, {threads} thread{'s' if threads > 1 else ''})")
    rows_of_legend = -(-len(labels) // columns)
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.02, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(frame: pd.DataFrame, targets: list[str], argv: Sequence[str]) -> str:
    """The Markdown summary: setup, ratio table, target lines."""
    table = ratio_table(frame)
    head = frame.iloc[0]
    return "\n".join([
        "# Planner benchmark", "",
        f"`{' '.join(['python scripts/bench_planners.py', *argv])}`", "",
        f"device {head['device']}, {head['threads']} CPU threads, torch {head['torch']}, "
        f"compile {head.get('compile', 'off')}, precision {head.get('precision', 'fp32')}.", "",
        "## Ratios (same run)", "",
        table.to_markdown(index=False, floatfmt=".3g"), "",
        "## Targets", "",
        *[f"- {line}" for line in targets], "",
    ])


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = use_device(resolve_device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "bench_planners.partial.csv"
    frame = run_grid(args, device, partial)
    frame.to_csv(args.out / "bench_planners.csv", index=False)
    partial.unlink(missing_ok=True)
    plot(frame, args.out / "bench_planners.png")
    targets = check_targets(frame, *args.target_horizons)
    text = report(frame, targets, argv)
    (args.out / "bench_planners.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'bench_planners.csv'}, .png and .md")
    return frame


def console() -> int:
    """The grasp-bench console script (main returns the frame, which is no exit status)."""
    main()
    return 0


if __name__ == "__main__":
    main()
